"""Tolerances, the comparison of autograd with the reference, and the Verdict it ends in.

One vocabulary for every output (tables, JSON, CSV, NDJSON, --points, plot, batch, minimize):

    agree        autograd and sympy agree, to the user dtype's tolerance
    disagree     they differ somewhere both are finite (or autograd is not finite where sympy is)
    not finite   f or its derivative is not finite: outside the domain, a pole, or beyond the dtype
    kink         the derivative does not exist there, and autograd's value is torch's convention
    unavailable  no route could compare it (sympy's derivative could not be evaluated, and finite
                 differences could not be computed or were too inaccurate)
    skipped      not compared (--check none, --no-check)
    sympy error  sympy's formula disagrees with autograd and with finite differences, which agree
                 with each other: the symbolic route erred, the answer shown is confirmed

Three routes check autograd (--check symbolic|numeric|all|none; `check_mode`): sympy's symbolic
derivative (core/reference.py, `compare` here), finite differences (core/numeric.py), and for
`all` both. `arbitrate` turns the routes' answers into one verdict, by one rule for every command:
    auto      sympy where its derivative can be evaluated, finite differences where it cannot;
              when sympy disagrees, finite differences arbitrate and the verdict names the route
              that erred ("sympy error", or "disagree" with autograd's error named in the note)
    symbolic  sympy alone (unavailable where it cannot evaluate)
    numeric   finite differences alone
    all       both, each reported; any route's failure fails (sympy's error arbitrated as in auto)

There is no separate `jump`: sign, floor and ceil jump where abs, relu and max have kinks, and
the reference marks both by a NaN where autograd has a number. A comparison sees the NaN, not
which function put it there (an expression can hold both kinds), so both are `kink`, and the
note names torch's convention for each function involved (sign'(0) = 0, floor' = 0...).

`fails` is the one rule for which verdicts fail a check: a report whose results include one is
"failed", and the CLI exits 1 for it, in every command alike.

Only the standard library at import time: gradcli/report.py (which renderers read without
torch) imports the Verdict from here; torch and numpy are imported by the functions using them.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # Python 3.10 (requires-python) has no StrEnum: the same thing, str() and format() its value
    from enum import Enum

    class StrEnum(str, Enum):
        def __str__(self) -> str:
            return str.__str__(self)

        def __format__(self, format_spec: str) -> str:
            return str.__format__(self, format_spec)

if TYPE_CHECKING:
    import numpy as np
    import torch

    from gradcli.core.numeric import NumericCheck
    from gradcli.core.reference import SymbolicGradient


class Verdict(StrEnum):
    """How a result compares with the reference: its value is the word every output prints."""

    AGREE = "agree"
    DISAGREE = "disagree"
    NOT_FINITE = "not finite"
    KINK = "kink"
    UNAVAILABLE = "unavailable"
    SKIPPED = "skipped"
    SYMPY_ERROR = "sympy error"


VERDICTS: tuple[Verdict, ...] = tuple(Verdict)

# The verdicts that fail a check; a report with any of them has status "failed" (exit 1).
FAILING = frozenset({Verdict.DISAGREE, Verdict.NOT_FINITE})

# Which verdict wins when several results (the variables of a row, the points of a series) are
# summed up in one: a disagreement outweighs a point outside the domain, which outweighs a kink.
_SEVERITY = {Verdict.AGREE: 0, Verdict.SKIPPED: 0, Verdict.UNAVAILABLE: 0, Verdict.KINK: 1,
             Verdict.SYMPY_ERROR: 1, Verdict.NOT_FINITE: 2, Verdict.DISAGREE: 3}

# Verdicts that leave a result unchecked: a report holding one (and no failure) has status
# "unchecked", never "ok" (exit status 0: nothing disagreed, but nothing vouches for it either).
UNCHECKED = frozenset({Verdict.UNAVAILABLE, Verdict.SKIPPED})


def any_unchecked(verdicts: Iterable[Verdict | str]) -> bool:
    return any(Verdict(v) in UNCHECKED for v in verdicts)


def fails(verdict: Verdict | str) -> bool:
    """Does this verdict fail the check? (disagree, not finite)"""
    return Verdict(verdict) in FAILING


def any_fails(verdicts: Iterable[Verdict | str]) -> bool:
    return any(fails(v) for v in verdicts)


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The verdict that sums up several: the most severe one (agree when there are none)."""
    found = Verdict.AGREE
    for v in verdicts:
        if _SEVERITY[v] > _SEVERITY[found]:
            found = v
    return found


# (rtol, atol) by the user's dtype. atol is scaled by the largest magnitude in the gradient:
# rounding errors are relative to the size of the numbers the computation went through.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-7, 1e-9),
    "float32": (1e-4, 1e-5),
    "float16": (1e-2, 1e-3),
    "bfloat16": (4e-2, 1e-2),
}


@dataclass
class Comparison:
    status: Verdict
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    note: str | None = None

    @property
    def failed(self) -> bool:
        return fails(self.status)


# --------------------------------------------------------------------------- one tensor

def _compare_finite(a: torch.Tensor, r: torch.Tensor, *, rtol: float, atol: float) -> Comparison | None:
    """The common case, everything finite, in a few whole-tensor passes and no masks.

    None when something is not finite: compare() then sorts out kinks and domains. (Blocks
    sized for the cache were tried: with torch's threads on a busy 2-core machine, many
    small operations cost far more than the few large ones.)
    """
    import torch

    if not r.numel():
        return Comparison(Verdict.AGREE, 0.0, 0.0)
    diff = (a - r).abs_()
    r_abs = r.abs()
    # max() propagates NaN and infinity: two reductions that are also the finiteness test.
    largest, abs_err = float(r_abs.max()), float(diff.max())
    if not (math.isfinite(largest) and math.isfinite(abs_err)):
        return None
    scale = max(1.0, largest)
    rel_err = float((diff / r_abs.clamp_min(1e-300)).max())
    # |a - r| <= atol*scale + rtol*|r| everywhere  <=>  max(|a - r| - rtol*|r|) <= atol*scale
    if float(torch.sub(diff, r_abs, alpha=rtol).max()) <= atol * scale:
        return Comparison(Verdict.AGREE, abs_err, rel_err)
    return Comparison(Verdict.DISAGREE, abs_err, rel_err)


def _mismatch_or_rounding(a: torch.Tensor, reference: SymbolicGradient, abs_err: float | None,
                          rel_err: float | None, *, rtol: float, atol: float) -> Comparison:
    """A disagreement, unless sympy's derivative at 50 digits agrees with autograd after all."""
    import torch

    from gradcli.core.reference import PRECISE_DIGITS

    exact = reference.precise() if reference.precise is not None else None
    if exact is not None and math.isfinite(exact) and reference.value is not None:
        r = torch.tensor(exact, dtype=torch.float64)
        if bool(((a - r).abs() <= atol * max(1.0, abs(exact)) + rtol * abs(exact)).all()):
            reference.value = r.reshape(reference.value.shape)  # the better reference, shown as sympy's value
            return Comparison(Verdict.AGREE, float((a - r).abs().max()), None,
                              f"sympy's float64 value lost digits to rounding (it differs from autograd by "
                              f"{abs_err:.3g}); at {PRECISE_DIGITS} digits it is {exact:.17g}, and agrees")
    shown = f"{abs_err:.3g}" if abs_err is not None else "an unknown amount"
    return Comparison(Verdict.DISAGREE, abs_err, rel_err, f"autograd and sympy differ by up to {shown}")


def compare(autograd: torch.Tensor, reference: SymbolicGradient, *, f_finite: bool, rtol: float,
            atol: float) -> Comparison:
    """Does autograd's answer agree with the symbolic one, to the user dtype's tolerance?"""
    import torch

    from gradcli.core.functions import GENERIC_KINK_CONVENTION

    if reference.value is None:
        return Comparison(Verdict.UNAVAILABLE, note=reference.unavailable)
    a = autograd.detach().to(device="cpu", dtype=torch.float64)
    r = reference.value.to(torch.float64)
    if a.shape != r.shape:
        return Comparison(Verdict.DISAGREE,
                          note=f"shapes differ: autograd {list(a.shape)}, symbolic {list(r.shape)}")
    if not f_finite:
        return Comparison(Verdict.NOT_FINITE, note="not compared: f itself is not finite here")
    fast = _compare_finite(a, r, rtol=rtol, atol=atol)
    if fast is not None:
        if fast.status is Verdict.DISAGREE:
            return _mismatch_or_rounding(a, reference, fast.max_abs_error, fast.max_rel_error, rtol=rtol, atol=atol)
        return fast
    diff = (a - r).abs_()
    r_abs = r.abs()
    finite = torch.isfinite(a) & torch.isfinite(r)
    scale = max(1.0, float(r_abs[finite].max()) if finite.any() else 1.0)
    tol = atol * scale + rtol * r_abs
    close = finite & (diff <= tol)
    abs_err = float(diff[finite].max()) if finite.any() else None
    rel = diff[finite] / r_abs[finite].clamp_min(1e-300)
    rel_err = float(rel[r[finite] != 0].max()) if (finite & (r != 0)).any() else (0.0 if finite.any() else None)
    kink = torch.isnan(r) & torch.isfinite(a)
    if bool((close | kink).all()) and bool(kink.any()):
        where = "at this point" if r.numel() == 1 else "at every element" if bool(kink.all()) else (
            f"at {int(kink.sum())} of {r.numel()} elements (the others agree)")
        if reference.kinks == ():
            # No function of f has a kink: sympy's NaN is its formula overflowing or dividing 0 by
            # 0 in float64 (logsumexp at 1000), so it checks nothing there; another route must.
            return Comparison(Verdict.UNAVAILABLE, abs_err, rel_err,
                              f"sympy's derivative is nan {where} in float64 (its formula overflows or divides 0 "
                              "by 0 there; f has no kink)")
        conventions = "; ".join(reference.kinks or ()) or GENERIC_KINK_CONVENTION
        return Comparison(Verdict.KINK, abs_err, rel_err,
                          f"the derivative does not exist {where}; autograd's value follows torch's "
                          f"convention ({conventions})")
    if bool((finite & ~close).any()):  # a disagreement where both are finite outweighs the rest
        return _mismatch_or_rounding(a, reference, abs_err, rel_err, rtol=rtol, atol=atol)
    # Autograd not finite where sympy's derivative is: autograd is the one that is wrong (0*inf
    # in cbrt(x)**3 at 0, say), as pointwise_verdicts says of the same point in --points and plot.
    autograd_lost = torch.isfinite(r) & ~torch.isfinite(a)
    beyond = autograd_lost & (r.abs() > torch.finfo(autograd.dtype).max)
    if bool(autograd_lost.any()) and bool((autograd_lost == beyond).all()):
        # sympy's value is past the dtype's largest number: inf is all autograd can say (as
        # pointwise_verdicts judges the same point in --points and plot)
        return Comparison(Verdict.NOT_FINITE, abs_err, rel_err,
                          f"the derivative is beyond what {str(autograd.dtype).removeprefix('torch.')} can hold "
                          f"(up to {float(r.abs().max()):.3g}; its largest number is "
                          f"{torch.finfo(autograd.dtype).max:.3g})")
    if bool(autograd_lost.any()):
        note = (f"autograd is not finite where sympy's derivative is finite "
                f"({int(autograd_lost.sum())} of {r.numel()} elements)")
        if reference.where_trap:  # where()'s unselected branch: say why, and the safe form
            note += f". {reference.where_trap}"
        return Comparison(Verdict.DISAGREE, abs_err, rel_err, note)
    if not bool((torch.isfinite(a) & torch.isfinite(r)).all()):
        return Comparison(Verdict.NOT_FINITE, abs_err, rel_err, "the derivative is not finite at this point")
    return Comparison(Verdict.AGREE, abs_err, rel_err)  # everything finite, and close


# --------------------------------------------------------------------------- point by point

# A point's verdict as a small integer, for arrays of millions of points (--points, plot):
# VERDICTS[code] is the Verdict.
CODES: dict[Verdict, int] = {v: i for i, v in enumerate(VERDICTS)}


def pointwise_verdicts(f: np.ndarray, autograd: np.ndarray, reference: np.ndarray, *, rtol: float, atol: float,
                       largest: float, slack: np.ndarray | None = None, kinks: bool = True) -> np.ndarray:
    """Each point's verdict (as a code of CODES), judged on its own scale.

    |autograd - sympy| <= atol*max(1, |sympy|) + rtol*|sympy| at each point: one huge
    derivative near a pole must not loosen the tolerance of every other point. `largest` is
    the user dtype's largest number: a reference beyond it is one autograd can only call inf.
    The same rules as compare() for one point: f not finite or the reference not finite (or
    too large) is not finite; sympy's NaN where autograd has a number (and f is finite) is a
    kink; autograd not finite where sympy is, or too far from it, is a disagreement.
    slack: an allowance added to each point's tolerance (the numeric route's error estimate,
    when the reference is a finite difference).
    """
    import numpy as np

    a64 = np.asarray(autograd, dtype=np.float64)
    r64 = np.broadcast_to(np.asarray(reference, dtype=np.float64), a64.shape)
    f_finite = np.broadcast_to(np.isfinite(f), a64.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        size = np.abs(r64)
        allowed = atol * np.maximum(size, 1.0) + rtol * size
        if slack is not None:
            allowed = allowed + np.broadcast_to(np.asarray(slack, dtype=np.float64), a64.shape)
        close = np.abs(a64 - r64) <= allowed
    agree, disagree = CODES[Verdict.AGREE], CODES[Verdict.DISAGREE]
    not_finite, kink = CODES[Verdict.NOT_FINITE], CODES[Verdict.KINK]
    codes = np.full(a64.shape, agree, dtype=np.int8)
    if bool(f_finite.all()) and bool(close.all()) and bool((size <= largest).all()):
        return codes  # the usual case: every point agrees (close implies both finite)
    a_finite = np.isfinite(a64)
    reference_finite = np.isfinite(r64) & (size <= largest)
    codes = np.where(close, agree, disagree)
    codes = np.where(reference_finite & ~a_finite, disagree, codes)
    codes = np.where(~reference_finite, not_finite, codes)
    # NaN in sympy's value where f is finite: a kink, if f has a function with one (kinks);
    # else sympy's formula overflowed in float64 there, and the point is unchecked (as compare()).
    codes = np.where(np.isnan(r64) & a_finite & f_finite, kink if kinks else CODES[Verdict.UNAVAILABLE], codes)
    codes = np.where(~f_finite, not_finite, codes)
    return codes.astype(np.int8)


def worst_codes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Point by point, the more severe of two verdict codes (see `worst`)."""
    import numpy as np

    rank = np.array([_SEVERITY[v] for v in VERDICTS])
    return np.where(rank[b] > rank[a], b, a).astype(np.int8)


# --------------------------------------------------------------------------- routes and arbitration

CHECK_MODES = ("auto", "symbolic", "numeric", "all", "none")


def check_mode(check: bool | str) -> str:
    """The --check value: True is auto (the default), False is none (--no-check)."""
    if check is True:
        return "auto"
    if check is False:
        return "none"
    if check not in CHECK_MODES:
        from gradcli.errors import GradcliError

        raise GradcliError(f"unknown --check {check!r}", hint="choose " + ", ".join(CHECK_MODES))
    return str(check)


def uses_symbolic(mode: str) -> bool:
    """Is sympy's derivative computed under this mode? (numeric alone and none skip it)"""
    return mode in ("auto", "symbolic", "all")


@dataclass
class Arbitration:
    """The verdict of every route that ran, and the one verdict they add up to."""

    status: Verdict
    note: str | None
    erred: str | None  # "sympy" or "autograd" when finite differences settled a disagreement
    routes: dict[str, dict[str, object]]  # route -> {status, max_abs_error, tolerance, ..., note}
    max_abs_error: float | None = None
    max_rel_error: float | None = None


def _symbolic_route(cmp: Comparison, rtol: float, atol: float) -> dict[str, object]:
    return {"status": cmp.status, "max_abs_error": cmp.max_abs_error, "rtol": rtol, "atol": atol,
            "note": cmp.note}


def _numeric_route(n: NumericCheck, rtol: float, atol: float) -> dict[str, object]:
    return {"status": n.status, "max_abs_error": n.max_abs_error, "rtol": rtol, "atol": atol,
            "tolerance": n.tolerance, "fd_error": n.fd_error, "mode": n.mode, "directions": n.directions,
            "note": n.note}


def arbitrate(mode: str, symbolic: Comparison | None, numeric: Callable[[], NumericCheck] | None,
              numeric_of_sympy: Callable[[], NumericCheck] | None, *, rtol: float, atol: float,
              same_f: Callable[[], bool | None] | None = None) -> Arbitration:
    """One verdict from the routes that ran, by the rule in this module's docstring.

    symbolic: autograd against sympy (None when not computed); numeric: judges autograd's
    answer by finite differences, numeric_of_sympy sympy's (computed only when needed).
    same_f: does torch's f equal sympy's own evaluation of f here (None: cannot tell)? Finite
    differences differentiate torch's f, so they can blame sympy's derivative only when torch
    computes the same f: a wrong lowering of f gives autograd and finite differences the same
    wrong function, and the disagreement stays autograd's side's.
    """
    routes: dict[str, dict[str, object]] = {}
    if mode == "none":
        return Arbitration(Verdict.SKIPPED, None, None, routes)
    sym_ok = symbolic is not None and symbolic.status is not Verdict.UNAVAILABLE
    if symbolic is not None:
        routes["symbolic"] = _symbolic_route(symbolic, rtol, atol)
    sym_disagrees = symbolic is not None and symbolic.status is Verdict.DISAGREE
    run_numeric = numeric is not None and (
        mode in ("numeric", "all") or (mode == "auto" and (not sym_ok or sym_disagrees)))
    num = numeric() if run_numeric and numeric is not None else None
    if num is not None:
        routes["numeric"] = _numeric_route(num, rtol, atol)
    if symbolic is None and num is None:
        return Arbitration(Verdict.UNAVAILABLE, "no route could check this", None, routes)
    if num is None:
        assert symbolic is not None
        return Arbitration(symbolic.status, symbolic.note, None, routes, symbolic.max_abs_error, symbolic.max_rel_error)
    if symbolic is None or not sym_ok:
        note = num.note
        if symbolic is not None and symbolic.note and num.status is not Verdict.UNAVAILABLE:
            note = f"checked by finite differences ({symbolic.note})" + (f"; {num.note}" if num.note else "")
        elif symbolic is not None and num.status is not Verdict.UNAVAILABLE and num.note is None:
            note = "checked by finite differences: sympy's derivative could not be evaluated"
        return Arbitration(num.status, note, None, routes, num.max_abs_error)
    # both routes ran
    if symbolic.status is Verdict.DISAGREE:
        differ = symbolic.note or "autograd and sympy differ"
        if num.status is Verdict.AGREE and numeric_of_sympy is not None:
            of_sympy = numeric_of_sympy()
            routes["numeric"]["sympy_status"] = of_sympy.status
            verified = same_f() if same_f is not None else None
            if of_sympy.status is Verdict.DISAGREE and verified is False:
                return Arbitration(Verdict.DISAGREE, f"{differ}; torch's f differs from sympy's evaluation of f "
                                   "at this point: the lowering to torch erred (finite differences of torch's f agree "
                                   "with autograd)", "autograd", routes, symbolic.max_abs_error, symbolic.max_rel_error)
            if of_sympy.status is Verdict.DISAGREE and verified is None:
                return Arbitration(Verdict.DISAGREE, f"{differ}; sympy's formula disagrees with autograd and with "
                                   "finite differences, but torch's f could not be compared with sympy's own "
                                   "evaluation of f here, so the blame is not settled", None, routes,
                                   symbolic.max_abs_error, symbolic.max_rel_error)
            if of_sympy.status is Verdict.DISAGREE:
                return Arbitration(Verdict.SYMPY_ERROR, f"{differ}; sympy's formula disagrees with autograd and "
                                   "with finite differences: sympy's error (autograd's answer is confirmed by finite "
                                   "differences)", "sympy", routes, symbolic.max_abs_error, symbolic.max_rel_error)
        if num.status is Verdict.DISAGREE and numeric_of_sympy is not None:
            of_sympy = numeric_of_sympy()
            routes["numeric"]["sympy_status"] = of_sympy.status
            if of_sympy.status is Verdict.AGREE:
                return Arbitration(Verdict.DISAGREE, f"{differ}; autograd disagrees with sympy and with finite "
                                   "differences: autograd's error", "autograd", routes, symbolic.max_abs_error,
                                   symbolic.max_rel_error)
        return Arbitration(Verdict.DISAGREE, (symbolic.note or "autograd and sympy differ")
                           + "; finite differences cannot settle which is wrong", None, routes,
                           symbolic.max_abs_error, symbolic.max_rel_error)
    if symbolic.status is Verdict.AGREE and num.status is Verdict.DISAGREE:
        return Arbitration(Verdict.DISAGREE, f"autograd agrees with sympy, but not with finite differences "
                           f"({num.note})", None, routes, num.max_abs_error)
    status = worst([symbolic.status, num.status])
    note = symbolic.note if status is symbolic.status else num.note
    return Arbitration(status, note, None, routes, symbolic.max_abs_error, symbolic.max_rel_error)
