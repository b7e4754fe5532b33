"""The numeric route: finite differences in float64, with an error estimate for every entry.

Independent of autograd and of sympy: it only calls the lowered function f (the expression as
typed, lowered in float64 on the CPU) at points near the one asked about, the way
torch.autograd.gradcheck, jax's check_grads and matrixcalculus.org's checkGradient do.

How one derivative is estimated (numdifftools' approach)
    g(t) = f(x + t*v) along a direction v. Central differences of order k with steps
    h, h/2, h/4 (error O(h^2)), then Richardson extrapolation over them, which cancels the
    h^2 and h^4 terms. The error estimate of each entry is the gap between the last two
    extrapolations plus the rounding error (eps * max|g| / h^k, amplified by the stencil).
    A step that leaves the domain (a NaN or an infinity) or gives a large error estimate is
    tried again 8 and 64 times smaller; each entry keeps the step with the smallest estimate.
    Order 1 also compares the one-sided slopes (g(h) - g(0))/h and (g(0) - g(-h))/h: at a
    smooth point their gap shrinks with h, at a kink (abs, relu, a tie in max) it does not.

Entries or directions
    Few input elements (at most ENTRYWISE_LIMIT): one directional derivative per input element,
    so every entry of a gradient, Jacobian or Hessian has its own estimate. More: the answer
    is compared along DIRECTIONS random directions (seeded, so every run is the same), so the
    cost does not grow with the number of entries:
        gradient  v·grad f       against  d/dt f(x + t v)
        Jacobian  J v            against  d/dt F(x + t v)      (every output entry)
        Hessian   v·H v          against  d²/dt² f(x + t v)
        vjp       u·(vᵀJ)        against  d/dt vᵀF(x + t u)
        jvp       J v            against  d/dt F(x + t v)      (v given: no randomness)
    The tolerance of a projected answer is the exact image of the entry-by-entry rule
    (|a - r| <= atol*scale + rtol*|r| for every entry, hence summed along v), plus
    SAFETY times the finite-difference error estimate.

The public API, for commands and for other routes that want an arbiter:

    probe = gradient_probe(fn64, point, "x", reduction="sum")       # or jacobian_probe, ...
    check = probe.judge(autograd_gradient, rtol=1e-4, atol=1e-5)    # a NumericCheck
    check.status        # a Verdict: agree, disagree, not finite, kink, unavailable
    check.max_abs_error, check.tolerance, check.fd_error, check.note

`fn64` is any `Mapping[str, Tensor] -> Tensor` callable (gradcli's lowered functions are);
`point` holds every variable's value (any dtype: it is read in float64). A probe computes its
estimates once; `judge` may be called for several candidate answers (autograd's, sympy's).
Tensor-valued programs work the same way: only f's values are used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from gradcli.core.check import Verdict
from gradcli.core.torch_functions import PROBING

Function = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]

# Up to this many input elements, every entry gets its own estimate; beyond it, directions.
ENTRYWISE_LIMIT = 16
DIRECTIONS = 2  # random directions compared when there are many entries
LARGE = 65536  # from this many input elements on, one direction (cost stays a few evaluations of f)
SIGMAS = 6.0  # Hoeffding: a sum of random-signed errors exceeds 6 sigma with probability < 2e-8
SEED = 20240607  # the directions' seed: the same directions every run
SAFETY = 4.0  # times the error estimate, added to the dtype's tolerance
BASE_STEP = 2.0**-4  # the first step, times max(1, log1p|x|) per element (numdifftools' scaling)
STEPS = 3  # h, h/2, h/4: two Richardson levels
RETRIES = (1.0, 1 / 8, 1 / 64)  # step factors tried while an estimate is poor
_EPS = float(torch.finfo(torch.float64).eps)
# An estimate whose error is more than this fraction of its size cannot settle anything.
INCONCLUSIVE = 1e-3
GOOD_ENOUGH = 1e-7  # an error estimate this small (relative) needs no smaller step


@dataclass
class Estimate:
    """A derivative by finite differences: value and error estimate per entry (float64)."""

    value: torch.Tensor
    error: torch.Tensor  # >= 0; inf where no step gave a finite estimate
    kink: torch.Tensor | None = None  # order 1: True where the one-sided slopes differ
    left: torch.Tensor | None = None  # the one-sided slopes, where a kink was seen
    right: torch.Tensor | None = None
    f_finite: bool = True  # f itself at the point (every entry)


@dataclass
class NumericCheck:
    """One answer judged against finite differences."""

    status: Verdict
    max_abs_error: float | None = None  # largest |answer - estimate| (after projection)
    tolerance: float | None = None  # the largest tolerance applied to one compared entry
    fd_error: float | None = None  # the largest error estimate of the finite differences
    note: str | None = None
    mode: str = "entries"  # "entries" or "directions"
    directions: int = 0  # how many random directions ("directions" mode)


def _as64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(device="cpu", dtype=torch.float64)


def step_scale(x: torch.Tensor) -> torch.Tensor:
    """Per element, the scale of a step: max(1, log1p|x|) (numdifftools' default)."""
    return torch.log1p(_as64(x).abs()).clamp_min(1.0)


def _stencil(order: int) -> list[tuple[float, float]]:
    """(offset in steps, weight) of the central difference of this order: error O(h^2)."""
    return [(order / 2 - j, (-1.0) ** j * math.comb(order, j)) for j in range(order + 1)]


def _richardson(levels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Extrapolate central differences at h, h/2, h/4...: the best value and the truncation estimate."""
    table = [levels]
    for j in range(1, len(levels)):
        prev = table[-1]
        factor = 4.0**j
        table.append([(factor * prev[i + 1] - prev[i]) / (factor - 1) for i in range(len(prev) - 1)])
    best = table[-1][-1]
    # The gap to the previous level's last (most accurate) entry bounds the remaining error.
    truncation = (best - table[-2][-1]).abs() if len(table) > 1 else torch.full_like(best, math.inf)
    return best, truncation


def _along(fn: Function, point: Mapping[str, torch.Tensor], direction: Mapping[str, torch.Tensor],
           order: int, step: float) -> Estimate:
    """One try: central differences with STEPS halving steps from `step`, then Richardson."""
    def g(t: float) -> torch.Tensor:
        env = {n: torch.add(x, direction[n], alpha=t) if n in direction else x for n, x in point.items()}
        probing = PROBING.set(t != 0.0)
        try:
            with torch.no_grad():
                return _as64(fn(env))
        finally:
            PROBING.reset(probing)

    cache: dict[float, torch.Tensor] = {}

    def at(t: float) -> torch.Tensor:
        if t not in cache:
            cache[t] = g(t)
        return cache[t]

    levels = []
    largest = 0.0
    for i in range(STEPS):
        h = step / 2**i
        total = None
        for offset, weight in _stencil(order):
            value = at(offset * h)
            largest = max(largest, float(value.abs().max()) if value.numel() else 0.0)
            total = weight * value if total is None else total + weight * value
        assert total is not None
        levels.append(total / h**order)
    value, truncation = _richardson(levels)
    if len(levels) >= 3:
        # Richardson assumes errors in h^2, h^4: the gaps between successive differences then
        # shrink 4x. Where they do not (x*abs(x) at 0, a kink of a derivative), trust no more than
        # the last gap, as if the error were linear in h.
        first, last = (levels[-3] - levels[-2]).abs(), (levels[-2] - levels[-1]).abs()
        rate = first / last.clamp_min(1e-300)
        off = (last > 0) & ((rate < 2.5) | (rate > 6.5))
        truncation = torch.where(off, torch.maximum(truncation, 2 * last), truncation)
    h_min = step / 2 ** (STEPS - 1)
    # Rounding: each g carries eps*|g|; the stencil's weights sum to 2^order, Richardson's to about 2.
    rounding = 2.0 * 2.0**order * _EPS * max(largest, 1e-300) / h_min**order
    error = truncation + rounding
    error = torch.where(torch.isfinite(value), error, torch.full_like(error, math.inf))
    kink = left = right = None
    centre = at(0.0)  # f itself (is it finite?), and the middle of the one-sided slopes
    if order == 1:
        slopes = []
        # the stencil's own points (offsets of half a step): no evaluation more
        for h in (step / 2, step / 2 ** STEPS):
            slopes.append(((at(h) - centre) / h, (centre - at(-h)) / h))
        (r_big, l_big), (r_small, l_small) = slopes
        gap_big, gap_small = (r_big - l_big).abs(), (r_small - l_small).abs()
        scale = torch.maximum(r_small.abs(), l_small.abs()).clamp_min(1.0)
        # Smooth: the gap shrinks in proportion to h (4x over these steps). A kink keeps it.
        kink = (gap_small > 1e-6 * scale) & (gap_small > 0.5 * gap_big)
        left, right = l_small, r_small
    return Estimate(value, error, kink, left, right, bool(torch.isfinite(centre).all()))


def derivative_along(fn: Function, point: Mapping[str, torch.Tensor], direction: Mapping[str, torch.Tensor], *,
                     order: int = 1) -> Estimate:
    """d^order/dt^order f(point + t*direction) at t = 0, for every entry of f, with error estimates.

    point: every variable's value; direction: a tensor of the variable's shape for each variable
    that moves. Computed in float64; steps retried smaller where an estimate is poor.
    """
    point64 = {n: _as64(x) for n, x in point.items()}
    direction64 = {n: _as64(v) for n, v in direction.items()}
    best: Estimate | None = None
    for factor in RETRIES:
        est = _along(fn, point64, direction64, order, BASE_STEP * factor)
        if best is None:
            best = est
        else:
            better = est.error < best.error
            best = Estimate(torch.where(better, est.value, best.value), torch.where(better, est.error, best.error),
                            _pick(better, est.kink, best.kink), _pick(better, est.left, best.left),
                            _pick(better, est.right, best.right), best.f_finite)
        if bool((best.error <= GOOD_ENOUGH * best.value.abs().clamp_min(1.0)).all()):
            break  # good enough everywhere: no smaller step needed
    assert best is not None
    return best


def _pick(mask: torch.Tensor, a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None or b is None:
        return None
    return torch.where(mask, a, b)


def random_direction(point: Mapping[str, torch.Tensor], names: Sequence[str], index: int) -> dict[str, torch.Tensor]:
    """The index-th seeded random direction over `names`: a random sign per element (Rademacher).

    Random signs make the projection of an answer's per-entry errors a sum of independent
    terms, bounded by Hoeffding's inequality (see `Probe`), whatever the errors are.
    """
    generator = torch.Generator().manual_seed(SEED + index)
    out = {}
    for n in names:
        x = point[n]
        out[n] = torch.empty(tuple(x.shape), dtype=torch.float64).bernoulli_(0.5, generator=generator).mul_(2).sub_(1)
    return out


def direction_count(point: Mapping[str, torch.Tensor], names: Sequence[str], requested: int) -> int:
    """Fewer directions for huge inputs: one random direction already bounds every entry's error."""
    return 1 if sum(point[n].numel() for n in names) > LARGE else requested


def _unit(x: torch.Tensor, flat_index: int) -> torch.Tensor:
    e = torch.zeros(x.numel(), dtype=torch.float64)
    e[flat_index] = float(step_scale(x.reshape(-1)[flat_index]))
    return e.reshape(x.shape)


# --------------------------------------------------------------------------- probes

# project(answer, tol): the answer projected as the estimates were taken, and the tolerance of each
# projected entry, given the tolerance of each entry of the answer.
Projection = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _random_sum_bound(weighted_tol: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """A bound on sum(v_i e_i) over `dims` with random signs v_i and |e_i| <= tol_i (Hoeffding)."""
    return SIGMAS * weighted_tol.square().sum(dim=tuple(dims)).sqrt() if dims else weighted_tol


@dataclass
class Probe:
    """Finite-difference estimates of one derivative, and how a claimed answer maps onto them.

    `judge(answer)` gives each entry of the answer the dtype's tolerance, atol*scale + rtol*|a|
    (scale: the answer's largest magnitude, at least 1), projects answer and tolerances as the
    estimates were taken (entry by entry, or along the random directions, where the tolerance
    of a sum of random-signed entries is SIGMAS times the root of their squared tolerances),
    and adds SAFETY times the finite-difference error estimate.
    """

    estimate: Estimate
    project: Projection
    mode: str
    directions: int = 0
    f_finite: bool = True
    what: str = "the derivative"
    extra: dict[str, object] = field(default_factory=dict)

    def judge(self, answer: torch.Tensor, *, rtol: float, atol: float) -> NumericCheck:
        """Does `answer` agree with the finite differences, to these tolerances (plus their error)?"""
        est = self.estimate
        a = _as64(answer)
        size = a.abs()
        largest = float(size.max()) if size.numel() else 0.0  # max() propagates NaN and inf: the finiteness test
        if not math.isfinite(largest):
            finite_answer = torch.isfinite(a)
            largest = float(size[finite_answer].max()) if bool(finite_answer.any()) else 0.0
        scale = max(1.0, largest)
        entry_tol = size.mul_(rtol).add_(atol * scale)  # in place: a 500 x 500 Jacobian is copied once
        projected, projected_tol = self.project(a, entry_tol)
        fd_err = est.error
        finite_fd = torch.isfinite(est.value) & torch.isfinite(fd_err)
        largest_fd = float(fd_err[finite_fd].max()) if bool(finite_fd.any()) else None
        common: dict[str, object] = {"mode": self.mode, "directions": self.directions, "fd_error": largest_fd}
        if not self.f_finite:
            return NumericCheck(Verdict.NOT_FINITE, note="not compared: f itself is not finite here",
                                **common)  # type: ignore[arg-type]
        if est.kink is not None and bool(est.kink.any()):
            where = "here" if est.kink.numel() == 1 else f"in {int(est.kink.sum())} of {est.kink.numel()} entries"
            slopes = ""
            if est.left is not None and est.right is not None and est.kink.numel() == 1:
                slopes = f" (left slope {float(est.left):.6g}, right slope {float(est.right):.6g})"
            return NumericCheck(Verdict.KINK, note=f"finite differences see a kink {where}: the one-sided slopes "
                                f"differ{slopes}; autograd's value follows torch's convention",
                                **common)  # type: ignore[arg-type]
        if not bool(torch.isfinite(projected).all()):
            if bool(finite_fd.all()) and bool((fd_err <= INCONCLUSIVE * est.value.abs().clamp_min(1.0)).all()):
                return NumericCheck(Verdict.DISAGREE, note=f"{self.what} is not finite where finite differences are "
                                    f"(they estimate up to {_largest(est.value):.6g})",
                                    **common)  # type: ignore[arg-type]
            return NumericCheck(Verdict.NOT_FINITE, note="the derivative is not finite here",
                                **common)  # type: ignore[arg-type]
        if not bool(finite_fd.all()):
            return NumericCheck(Verdict.UNAVAILABLE, note="finite differences could not be computed here (a step "
                                "left the domain of f, even 64 times smaller)", **common)  # type: ignore[arg-type]
        diff = (projected - est.value).abs()
        tol = projected_tol + SAFETY * fd_err
        abs_err = float(diff.max()) if diff.numel() else 0.0
        largest_tol = float(tol.max()) if tol.numel() else 0.0
        common.update(max_abs_error=abs_err, tolerance=largest_tol)
        if bool((diff <= tol).all()):
            return NumericCheck(Verdict.AGREE, **common)  # type: ignore[arg-type]
        inconclusive = fd_err > INCONCLUSIVE * est.value.abs().clamp_min(1.0)
        if bool((inconclusive & (diff > tol)).any()) and not bool((~inconclusive & (diff > tol)).any()):
            return NumericCheck(Verdict.UNAVAILABLE, note=f"finite differences are too inaccurate here to settle "
                                f"it (error estimate {largest_fd:.3g})", **common)  # type: ignore[arg-type]
        return NumericCheck(Verdict.DISAGREE, note=f"{self.what} differs from finite differences by up to "
                            f"{abs_err:.3g} (tolerance {largest_tol:.3g})", **common)  # type: ignore[arg-type]


def _largest(t: torch.Tensor) -> float:
    finite = t[torch.isfinite(t)]
    return float(finite.abs().max()) if finite.numel() else math.nan


def _scalar(fn: Function, reduction: str) -> Function:
    def scalar(env: Mapping[str, torch.Tensor]) -> torch.Tensor:
        out = fn(env)
        if out.dim() == 0:
            return out
        return out.sum() if reduction == "sum" else out.mean()
    return scalar


def _f_finite(fn: Function, point: Mapping[str, torch.Tensor]) -> bool:
    with torch.no_grad():
        return bool(torch.isfinite(fn({n: _as64(x) for n, x in point.items()})).all())


def _use_entries(point: Mapping[str, torch.Tensor], names: Sequence[str], entrywise: bool | None) -> bool:
    if entrywise is not None:
        return entrywise
    return sum(point[n].numel() for n in names) <= ENTRYWISE_LIMIT


def _stack(estimates: list[Estimate]) -> Estimate:
    def together(parts: list[torch.Tensor | None]) -> torch.Tensor | None:
        present = [p for p in parts if p is not None]
        return torch.stack(present) if len(present) == len(parts) else None
    return Estimate(torch.stack([e.value for e in estimates]), torch.stack([e.error for e in estimates]),
                    together([e.kink for e in estimates]), together([e.left for e in estimates]),
                    together([e.right for e in estimates]), all(e.f_finite for e in estimates))


def _same(answer: torch.Tensor, tol: torch.Tensor, shape: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    return answer.reshape(tuple(shape)), tol.reshape(tuple(shape))


def jacobian_probe(fn: Function, point: Mapping[str, torch.Tensor], name: str, *,
                   entrywise: bool | None = None, directions: int = DIRECTIONS) -> Probe:
    """Probe of d f / d name, an answer of shape f.shape + name.shape (a gradient when f is a scalar)."""
    x = _as64(point[name])
    if _use_entries(point, [name], entrywise):
        scales = step_scale(x).reshape(-1)
        stacked = _stack([derivative_along(fn, point, {name: _unit(x, i)}, order=1) for i in range(x.numel())])
        out_dims = stacked.value.dim() - 1
        per = scales.reshape((-1,) + (1,) * out_dims)  # the steps were scaled per input element
        est = _move_inputs_last(Estimate(stacked.value / per, stacked.error / per, stacked.kink,
                                         None if stacked.left is None else stacked.left / per,
                                         None if stacked.right is None else stacked.right / per),
                                out_dims, tuple(x.shape))
        shape = tuple(est.value.shape)
        return Probe(est, lambda a, t: _same(a, t, shape), "entries", f_finite=stacked.f_finite)
    count = direction_count(point, [name], directions)
    vs = [random_direction(point, [name], k)[name] for k in range(count)]
    est = _stack([derivative_along(fn, point, {name: v}, order=1) for v in vs])
    xdims = x.dim()

    def along(answer: torch.Tensor, tol: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dims = list(range(answer.dim() - xdims, answer.dim()))
        out = [torch.tensordot(answer, v, dims=(dims, list(range(xdims)))) for v in vs]
        bound = _random_sum_bound(tol, dims)  # |v| = 1 everywhere: the same bound for every direction
        return torch.stack(out), torch.stack([bound] * len(vs))
    return Probe(est, along, "directions", count, f_finite=est.f_finite)


def _move_inputs_last(est: Estimate, out_dims: int, in_shape: tuple[int, ...]) -> Estimate:
    """[inputs, *out] -> [*out, *in_shape], the layout of a Jacobian."""
    def move(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        moved = t.permute(*range(1, out_dims + 1), 0) if out_dims else t
        return moved.reshape(tuple(moved.shape[:out_dims]) + in_shape)
    value, error = move(est.value), move(est.error)
    assert value is not None and error is not None
    return Estimate(value, error, move(est.kink), move(est.left), move(est.right))


def gradient_probe(fn: Function, point: Mapping[str, torch.Tensor], name: str, *, reduction: str = "sum",
                   entrywise: bool | None = None, directions: int = DIRECTIONS) -> Probe:
    """Probe of the gradient of f (summed, or averaged, to a scalar first) with respect to `name`."""
    probe = jacobian_probe(_scalar(fn, reduction), point, name, entrywise=entrywise, directions=directions)
    probe.what = "the gradient"
    return probe


def vjp_probe(fn: Function, point: Mapping[str, torch.Tensor], name: str, v: torch.Tensor, *,
              entrywise: bool | None = None, directions: int = DIRECTIONS) -> Probe:
    """Probe of vᵀ·J with respect to `name`: the gradient of sum(v * f)."""
    v64 = _as64(v)

    def weighted(env: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return (fn(env) * v64).sum()
    probe = jacobian_probe(weighted, point, name, entrywise=entrywise, directions=directions)
    probe.f_finite = _f_finite(fn, point)
    probe.what = "vᵀ·J"
    return probe


def jvp_probe(fn: Function, point: Mapping[str, torch.Tensor], name: str, v: torch.Tensor) -> Probe:
    """Probe of J·v along `name`: one directional derivative along v itself (each output entry)."""
    est = derivative_along(fn, point, {name: _as64(v)}, order=1)
    shape = tuple(est.value.shape)
    return Probe(est, lambda a, t: _same(a, t, shape), "entries", f_finite=est.f_finite, what="J·v")


def hessian_probe(fn: Function, point: Mapping[str, torch.Tensor], names: Sequence[str], *, reduction: str = "sum",
                  entrywise: bool | None = None, directions: int = DIRECTIONS) -> Probe:
    """Probe of the Hessian over every element of `names` (flattened, in order): an n x n answer.

    Entry by entry: second differences along e_i, and (e_i + e_j) and (e_i - e_j) for the
    mixed entries (their difference over 4 is H_ij). Along directions: v·H v.
    """
    scalar = _scalar(fn, reduction)
    finite = _f_finite(fn, point)
    shapes = [tuple(point[n].shape) for n in names]
    sizes = [math.prod(s) for s in shapes]
    n_total = sum(sizes)
    scale = torch.cat([step_scale(point[n]).reshape(-1) for n in names])

    def split(flat: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(flat, sizes)
        return {n: p.reshape(s) for n, p, s in zip(names, parts, shapes, strict=True)}

    def basis(i: int) -> torch.Tensor:
        e = torch.zeros(n_total, dtype=torch.float64)
        e[i] = scale[i]
        return e

    if _use_entries(point, names, entrywise):
        value = torch.zeros(n_total, n_total, dtype=torch.float64)
        error = torch.zeros(n_total, n_total, dtype=torch.float64)
        for i in range(n_total):
            for j in range(i, n_total):
                if i == j:
                    e = derivative_along(scalar, point, split(basis(i)), order=2)
                    v, err = e.value / scale[i] ** 2, e.error / scale[i] ** 2
                else:
                    plus = derivative_along(scalar, point, split(basis(i) + basis(j)), order=2)
                    minus = derivative_along(scalar, point, split(basis(i) - basis(j)), order=2)
                    v = (plus.value - minus.value) / (4 * scale[i] * scale[j])
                    err = (plus.error + minus.error) / (4 * scale[i] * scale[j])
                value[i, j] = value[j, i] = v
                error[i, j] = error[j, i] = err
        return Probe(Estimate(value, error), lambda a, t: _same(a, t, (n_total, n_total)), "entries",
                     f_finite=finite, what="the Hessian")
    count = direction_count(point, names, directions)
    vs = []
    for k in range(count):
        d = random_direction(point, names, k)
        vs.append(torch.cat([d[n].reshape(-1) for n in names]))
    second = _stack([derivative_along(scalar, point, split(v), order=2) for v in vs])

    def quadratic(answer: torch.Tensor, tol: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, t = answer.reshape(n_total, n_total), tol.reshape(n_total, n_total)
        # v_i v_j is a random sign off the diagonal, and 1 on it: Hoeffding there, a plain sum here.
        off = t - torch.diag(torch.diagonal(t))
        bound = SIGMAS * off.square().sum().sqrt() + torch.diagonal(t).sum()
        return torch.stack([v @ h @ v for v in vs]), torch.stack([bound] * len(vs))
    return Probe(Estimate(second.value, second.error), quadratic, "directions", count, f_finite=finite,
                 what="the Hessian")


def order_probe(fn: Function, point: Mapping[str, torch.Tensor], name: str, order: int, *, reduction: str = "sum",
                entrywise: bool | None = None, directions: int = DIRECTIONS) -> Probe:
    """Probe of the order-th derivative of f (elementwise in `name`, or `name` a scalar): name's shape.

    f elementwise in x: d^k/dt^k sum f(x + t v) = sum v_i^k f^(k)(x_i), so one direction checks every element.
    """
    scalar = _scalar(fn, reduction)
    x = _as64(point[name])
    finite = _f_finite(fn, point)
    if _use_entries(point, [name], entrywise):
        scales = step_scale(x).reshape(-1)
        parts = []
        for i in range(x.numel()):
            e = derivative_along(scalar, point, {name: _unit(x, i)}, order=order)
            parts.append(Estimate(e.value / scales[i] ** order, e.error / scales[i] ** order, e.kink))
        stacked = _stack(parts)
        est = Estimate(stacked.value.reshape(x.shape), stacked.error.reshape(x.shape),
                       None if stacked.kink is None else stacked.kink.reshape(x.shape))
        return Probe(est, lambda a, t: _same(a, t, tuple(x.shape)), "entries", f_finite=finite,
                     what=f"the order-{order} derivative")
    count = direction_count(point, [name], directions)
    vs = [random_direction(point, [name], k)[name] for k in range(count)]
    est = _stack([derivative_along(scalar, point, {name: v}, order=order) for v in vs])

    def along(answer: torch.Tensor, tol: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, t = answer.reshape(x.shape), tol.reshape(x.shape)
        # v_i^k: a random sign for odd k, 1 for even k (a plain sum of tolerances then)
        bound = _random_sum_bound(t, list(range(t.dim()))) if order % 2 else t.sum()
        return torch.stack([(v**order * a).sum() for v in vs]), torch.stack([bound] * len(vs))
    return Probe(est, along, "directions", count, f_finite=finite, what=f"the order-{order} derivative")
