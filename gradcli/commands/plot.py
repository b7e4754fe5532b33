"""The numbers behind `gradcli plot`: f and its derivatives over ranges, by autograd and by sympy.

Everything here is data (numpy arrays in TensorData); drawing is gradcli/render/plot.py's business,
and nothing here imports matplotlib, typer or rich.

Three shapes of plot:

- one variable with a range (x=-5:5:200): f and d^k f/dx^k for k = 1..order along x;
- several variables with ranges of the same length, as seed 003 does: the points are paired,
  (x_i, y_i), and each partial derivative is drawn along its own variable;
- --grid, two variables: f over the x-y grid and the gradient (df/dx, df/dy) at every node.

Variables given a single number are constants. The derivatives come from the same pipeline
as `gradcli grad`: autograd through the lowered expression (gradcli/core/autodiff.py), and sympy's
derivative lowered through the same table and evaluated in float64 (gradcli/core/reference.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradcli.commands.assemble import tensor_data
from gradcli.core.autodiff import gradient, not_finite_cause, nth_derivatives
from gradcli.core.check import CODES, Verdict, check_mode, pointwise_verdicts, uses_symbolic, worst, worst_codes
from gradcli.core.numeric import SAFETY, Estimate, derivative_along
from gradcli.core.reference import (
    SymbolicGradient,
    is_elementwise_in,
    symbolic_gradients,
    symbolic_order,
)
from gradcli.core.session import Session, float64_function, parse_cached, prepare
from gradcli.core.sympy_functions import expand_definitions
from gradcli.core.values import ValuesArg, ValueSpec, make_tensor, read_values
from gradcli.errors import GradcliError
from gradcli.report import PlotData, Series, TensorData

# A plot of more points than this says nothing more than one of fewer, and matplotlib slows to
# a crawl; --max-elements raises it (for a grid, it bounds nx * ny).
MAX_POINTS = 1_000_000
MAX_ORDER = 10  # a plot of ten derivatives is already unreadable

_SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def derivative_label(var: str, order: int, *, partial: bool = False, pretty: bool = False) -> str:
    """df/dx, d2f/dx2 (ASCII, for CSV headers and JSON); ∂²f/∂x² with pretty and partial."""
    if not pretty:
        return f"df/d{var}" if order == 1 else f"d{order}f/d{var}{order}"
    d = "∂" if partial else "d"
    if order == 1:
        return f"{d}f/{d}{var}"
    sup = str(order).translate(_SUPERSCRIPTS)
    return f"{d}{sup}f/{d}{var}{sup}"


@dataclass
class _Check:
    status: Verdict
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    compared: int = 0
    note: str | None = None
    points: np.ndarray | None = None


def _compare(label: str, autograd: torch.Tensor, ref: SymbolicGradient | None, f: np.ndarray, *, rtol: float,
             atol: float, estimate: Estimate | None = None) -> _Check:
    """Autograd against sympy at every point where a comparison means something.

    A range may cross the edge of f's domain (log(x) over -5:5), a pole (tan) or a kink (abs
    at 0): points where f or sympy's derivative is not finite, or too large for the user's
    dtype, are left out, and said. Elsewhere autograd must be finite too and agree.

    Each point is judged on its own, |autograd - sympy| <= atol*max(1, |sympy|) + rtol*|sympy|
    (core/check.py's pointwise_verdicts): near a pole the derivative is huge, and one huge value
    must not loosen the tolerance of every other point (as the largest magnitude does for
    `gradcli grad`'s single tensors).

    One verdict for one point: the series' verdict is the worst of its points' (core/check.py's
    `worst`), so a range through a point where `gradcli grad` says "not finite" says it too,
    with the same exit status. estimate: finite differences at every point (the numeric
    route) instead of sympy's values; their error estimate widens each point's tolerance.
    """
    slack = None
    if estimate is not None:
        r = torch.broadcast_to(estimate.value, autograd.shape).reshape(-1)
        slack = (SAFETY * torch.broadcast_to(estimate.error, autograd.shape).reshape(-1)).numpy()
        label_of_reference = "finite differences' "
    else:
        if ref is None:
            return _Check(Verdict.SKIPPED)
        if ref.value is None:
            return _Check(Verdict.UNAVAILABLE, note=ref.unavailable)
        r = torch.broadcast_to(ref.value.to(torch.float64), autograd.shape).reshape(-1)
        label_of_reference = "sympy's "
    a = autograd.detach().to(device="cpu", dtype=torch.float64).reshape(-1)
    largest = torch.finfo(autograd.dtype).max
    points = pointwise_verdicts(f.reshape(-1), a.numpy(), r.numpy(), rtol=rtol, atol=atol, largest=largest,
                                slack=slack, kinks=ref is None or ref.kinks != ())
    # Beyond the dtype's largest number (cot's 2/x^3 near 0 in float32) autograd can only say inf.
    representable = r.abs() <= largest
    defined = torch.from_numpy(np.isfinite(f).reshape(-1)) & torch.isfinite(r) & representable
    n = int(defined.sum())
    if n == 0:
        return _Check(Verdict.NOT_FINITE, note=f"f or {label_of_reference}{label} is not finite at any point of the "
                      "range", points=points)
    a, r = a[defined], r[defined]
    diff = (a - r).abs()
    size = r.abs()
    allowed = atol * size.clamp_min(1.0) + rtol * size
    if slack is not None:
        allowed = allowed + torch.from_numpy(slack)[defined]
    ok = torch.isfinite(a) & (diff <= allowed)
    finite = torch.isfinite(a)
    max_abs = float(diff[finite].max()) if bool(finite.any()) else None
    nonzero = finite & (size > 0)
    max_rel = float((diff[nonzero] / size[nonzero]).max()) if bool(nonzero.any()) else None
    left_out = autograd.numel() - n
    if not bool(finite.all()):
        bad = int((~finite).sum())
        return _Check(Verdict.DISAGREE, max_abs, max_rel, n,
                      f"autograd's {label} is not finite at {bad} point(s) where sympy's is", points)
    if not bool(ok.all()):
        return _Check(Verdict.DISAGREE, max_abs, max_rel, n,
                      f"autograd and {label_of_reference[:-3] if estimate is None else 'finite differences'} differ "
                      f"at {int((~ok).sum())} of {n} points, by up to {max_abs:.3g}", points)
    kinks = int((points == CODES[Verdict.KINK]).sum())
    not_finite = int((points == CODES[Verdict.NOT_FINITE]).sum())
    note = None
    if left_out:
        note = (f"compared at {n} of {autograd.numel()} points; at the other {left_out}, f or {label_of_reference}"
                f"{label} is not finite (outside the domain, a pole or a kink) or beyond what "
                f"{str(autograd.dtype)[6:]} can hold")
    if not_finite:
        # the word `gradcli grad` gives each of those points, and its exit status (1)
        return _Check(Verdict.NOT_FINITE, max_abs, max_rel, n,
                      f"f or its {label} is not finite at {not_finite} of {autograd.numel()} points (outside the "
                      f"domain, a pole, or beyond what {str(autograd.dtype)[6:]} can hold; those are left out of "
                      f"the plot); the other {n} agree" + (f", {kinks} of them at a kink" if kinks else ""), points)
    if kinks:
        note = (f"the derivative does not exist at {kinks} of {autograd.numel()} points (a kink): autograd's value "
                f"there is torch's convention; " + (note or f"the other {n} points agree"))
        return _Check(Verdict.KINK, max_abs, max_rel, n, note, points)
    return _Check(Verdict.AGREE, max_abs, max_rel, n, note, points)


def _check_plottable(st: Session, ranges: list[str]) -> None:
    if st.parsed.shape is not None:
        raise GradcliError("plot draws one function; [f1, f2, ...] is a vector function",
                           hint="plot each entry on its own")
    component = expand_definitions(st.parsed.components[0])
    for name in ranges:
        if not is_elementwise_in(component, st.table, name):
            raise GradcliError(
                f"plot draws f point by point, but this expression mixes the points of {name} "
                "(sum, mean, another reduction, or an element like x[0])",
                hint="gradcli grad differentiates a reduction at one point")


def plot_data(expression: str, values: ValuesArg = (), *, order: int = 1, grid: bool = False,
              dtype: str = "float32", device: str = "auto", check: bool | str = True, rtol: float | None = None,
              atol: float | None = None, seed: int | None = None, max_elements: int = MAX_POINTS,
              **named: Any) -> PlotData:
    """f and its derivatives over the ranges given (x=-5:5:200), by autograd and by sympy.

    order: derivatives up to this order along each variable (line plots). grid: two variables
    with ranges make a grid, and the gradient is computed at every node.
    """
    if not 1 <= order <= MAX_ORDER:
        raise GradcliError(f"--order must be between 1 and {MAX_ORDER} for a plot, not {order}")
    if grid and order != 1:
        raise GradcliError("--grid draws the gradient (first derivatives); --order is for line plots")
    parsed = parse_cached(expression)
    specs = read_values(values, named)
    missing = [n for n in parsed.variables if n not in specs]
    if missing:
        ranged = " ".join(f"{n}=-5:5:200" for n in missing)
        raise GradcliError(f"no value for {', '.join(missing)}",
                           hint=f"give each variable a range to plot over, or one value to hold it constant: {ranged}")
    ranges = [n for n, s in specs.items() if s.shape]
    if not ranges:
        raise GradcliError("nothing to plot over: every variable has a single value",
                           hint="give a variable a range, like x=-5:5:200 (200 points from -5 to 5)")
    for n in ranges:
        shape = list(specs[n].shape)
        if len(shape) != 1:
            raise GradcliError(f"{n} has shape {shape}: a plot runs along 1-D ranges",
                               hint=f"for example {n}=-5:5:200, {n}=linspace(0,1,50) or {n}=[1,2,4,8]")
        if shape[0] < 2:
            raise GradcliError(f"{n} has {shape[0]} point(s): a plot needs at least 2",
                               hint=f"for example {n}=-5:5:200")
    if grid:
        if len(ranges) != 2:
            raise GradcliError(f"--grid draws a function of two variables; {len(ranges)} have ranges "
                               f"({', '.join(ranges)})", hint="give the others a single value to hold them constant")
        size = specs[ranges[0]].numel * specs[ranges[1]].numel
        if size > max_elements:
            raise GradcliError(f"the grid would have {specs[ranges[0]].numel:,} x {specs[ranges[1]].numel:,} = "
                               f"{size:,} points; the limit is {max_elements:,}",
                               hint="use fewer points (arrows need few), or raise --max-elements")
        # y as a column, so that f(x, y) broadcasts to the grid (rows follow y, as in an image).
        specs[ranges[1]] = _column(specs[ranges[1]], ranges[1], max_elements)
    else:
        lengths = {n: specs[n].numel for n in ranges}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{n} has {k}" for n, k in lengths.items())
            raise GradcliError(f"ranges plotted together must have the same number of points: {listed}",
                               hint="their points are paired, (x_i, y_i); --grid draws a function of two "
                                    "variables over every pair instead")
    st = prepare(expression, specs, wrt=None, dtype=dtype, device=device, rtol=rtol, atol=atol, seed=seed,
                max_elements=max_elements, needs_variables=False)
    _check_plottable(st, ranges)
    return _grid(st, ranges, check=check) if grid else _lines(st, ranges, order, check=check)


def _column(spec: ValueSpec, name: str, max_elements: int) -> ValueSpec:
    """A 1-D value as an [n, 1] column, with the same numbers."""
    if spec.is_random:
        raise GradcliError(f"{name}={spec.text}: a grid runs along ranges, not random values",
                           hint=f"for example {name}=-5:5:50")
    column = make_tensor(spec, dtype=torch.float64, device=torch.device("cpu"), generator=None,
                         max_elements=max_elements, name=name).numpy().reshape(-1, 1)
    return ValueSpec(spec.text, "literal", column.shape, data=column)


def _constants(st: Session, ranges: Sequence[str]) -> dict[str, TensorData]:
    return {n: tensor_data(t) for n, t in st.tensors.items() if n not in ranges}


def _estimates(st: Session, var: str, order: int, shape: tuple[int, ...], mode: str,
               ref: SymbolicGradient | None) -> Estimate | None:
    """Finite differences at every point, where the mode asks for them (f acts point by point, so
    one derivative along a direction of ones gives each point its own)."""
    if mode == "numeric" or (mode in ("auto", "all") and (ref is None or ref.value is None)):
        env = dict(st.tensors)
        if shape != tuple(env[var].shape):  # a grid: every node its own point
            env = {n: torch.broadcast_to(t, shape) if n == var else t for n, t in env.items()}
        return derivative_along(float64_function(st), env, {var: torch.ones(tuple(env[var].shape),
                                                                             dtype=torch.float64)}, order=order)
    return None


def _judge(label: str, result: torch.Tensor, ref: SymbolicGradient | None, f_array: np.ndarray, st: Session,
           mode: str, estimate: Estimate | None) -> _Check:
    """The series' verdict under --check: sympy, finite differences, or both (the worse of the two)."""
    if mode == "none":
        return _Check(Verdict.SKIPPED)
    symbolic = (_compare(label, result, ref, f_array, rtol=st.rtol, atol=st.atol)
                if ref is not None and (estimate is None or mode == "all") else None)
    numeric = (_compare(label, result, None, f_array, rtol=st.rtol, atol=st.atol, estimate=estimate)
               if estimate is not None else None)
    if symbolic is None:
        return numeric if numeric is not None else _Check(Verdict.UNAVAILABLE)
    if numeric is None:
        return symbolic
    chosen = numeric if worst([symbolic.status, numeric.status]) is not symbolic.status else symbolic
    if symbolic.points is not None and numeric.points is not None:
        chosen.points = worst_codes(symbolic.points, numeric.points)
    return chosen


def _lines(st: Session, ranges: list[str], order: int, *, check: bool | str) -> PlotData:
    component = st.parsed.components[0]
    mode = check_mode(check)
    n_points = st.tensors[ranges[0]].numel()
    partial = len(ranges) > 1
    series: list[Series] = []
    f_values: torch.Tensor | None = None
    for var in ranges:
        run = nth_derivatives(st.fn, st.tensors, var, order, reduction="sum")
        if f_values is None:
            f_values = torch.broadcast_to(run.output, (n_points,))
        refs = (symbolic_order(component, st.table, st.tensors, var, order, "sum") if uses_symbolic(mode)
                else [None] * order)
        f_array = tensor_data(f_values).array
        for k in range(1, order + 1):
            label = derivative_label(var, k)
            result = run.results[str(k)]
            ref = refs[k - 1]
            c = _judge(label, result, ref, f_array, st, mode,
                       _estimates(st, var, k, tuple(result.shape), mode, ref) if mode != "none" else None)
            symbolic = (tensor_data(torch.broadcast_to(ref.value, result.shape)) if ref is not None
                        and ref.value is not None else None)
            series.append(Series(var, k, label, derivative_label(var, k, partial=partial, pretty=True),
                                 tensor_data(result), symbolic, ref.formula if ref is not None else None, c.status,
                                 c.max_abs_error, c.max_rel_error, c.compared, c.note, c.points))
    assert f_values is not None
    f_data = tensor_data(f_values)
    return PlotData(st.expression, st.parsed.pretty(), st.dtype, str(st.device), st.device_note, "line", order,
                    {n: tensor_data(st.tensors[n]) for n in ranges}, _constants(st, ranges), f_data, series,
                    mode != "none", st.rtol, st.atol, st.seed, warnings=_warnings(st, f_data))


def _grid(st: Session, ranges: list[str], *, check: bool | str) -> PlotData:
    xname, yname = ranges
    mode = check_mode(check)
    x, y = st.tensors[xname], st.tensors[yname].reshape(-1)
    # Rows follow y, columns follow x, as an image (and matplotlib's contourf) lays them out.
    # Every node gets its own leaves: the gradient of sum(f) is then the gradient at each node.
    ys, xs = torch.meshgrid(y, x, indexing="ij")
    tensors = dict(st.tensors)
    tensors[xname], tensors[yname] = xs.contiguous(), ys.contiguous()
    run = gradient(st.fn, tensors, [xname, yname], method="grad", reduction="sum")
    f_values = torch.broadcast_to(run.output, xs.shape)
    f_array = tensor_data(f_values).array
    refs = (symbolic_gradients(st.parsed.components, None, st.table, tensors, [xname, yname], "sum")
            if uses_symbolic(mode) else {})
    series = []
    for var in (xname, yname):
        label = derivative_label(var, 1)
        result = run.gradients[var]
        ref = refs.get(var)
        estimate = None
        if mode != "none":
            grid_st = dataclasses.replace(st, tensors=tensors)
            estimate = _estimates(grid_st, var, 1, tuple(result.shape), mode, ref)
        c = _judge(label, result, ref, f_array, st, mode, estimate)
        symbolic = tensor_data(ref.value) if ref is not None and ref.value is not None else None
        series.append(Series(var, 1, label, derivative_label(var, 1, partial=True, pretty=True), tensor_data(result),
                             symbolic, ref.formula if ref is not None else None, c.status, c.max_abs_error,
                             c.max_rel_error, c.compared, c.note, c.points))
    f_data = tensor_data(f_values)
    return PlotData(st.expression, st.parsed.pretty(), st.dtype, str(st.device), st.device_note, "grid", 1,
                    {xname: tensor_data(xs), yname: tensor_data(ys)}, _constants(st, ranges), f_data, series,
                    mode != "none", st.rtol, st.atol, st.seed, warnings=_warnings(st, f_data))


def _warnings(st: Session, f: TensorData) -> list[str]:
    warnings = list(st.notes)
    finite = np.isfinite(f.array)
    if not finite.all():
        bad = int((~finite).sum())
        warnings.append(f"f is not finite at {bad} of {f.array.size} points (outside its domain, or beyond what "
                        f"{st.dtype} can hold): those points are left out of the plot")
        cause = _first_cause(st, f)
        if cause:
            warnings.append(cause)
    return warnings


def _first_cause(st: Session, f: TensorData) -> str | None:
    """Why f is not finite at the first such point of a line plot, as `gradcli grad` says it there."""
    if f.array.ndim != 1 or any(t.dim() > 1 for t in st.tensors.values()):
        return None  # a grid: the point's coordinates are spread over a meshgrid
    i = int(np.argmax(~np.isfinite(f.array)))
    point = {n: (t[i] if t.dim() == 1 else t) for n, t in st.tensors.items()}
    cause = not_finite_cause(st.parsed.typed_components, st.parsed.shape, st.table, point)
    if cause is None:
        return None
    where = ", ".join(f"{n} = {float(t[i]):g}" for n, t in st.tensors.items() if t.dim() == 1)
    return f"at {where}: {cause}"
