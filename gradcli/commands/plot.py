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

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from gradcli import __version__
from gradcli.commands.assemble import tensor_data
from gradcli.core.autodiff import gradient, nth_derivatives
from gradcli.core.check import CODES, VERDICTS, Verdict, pointwise_verdicts
from gradcli.core.reference import (
    SymbolicGradient,
    is_elementwise_in,
    symbolic_gradients,
    symbolic_order,
)
from gradcli.core.session import parse_cached, prepare
from gradcli.core.sympy_functions import expand_definitions
from gradcli.core.values import ValuesArg, ValueSpec, make_tensor, read_values
from gradcli.errors import GradcliError
from gradcli.report import Report, TensorData

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
class Series:
    """One derivative over the plotted points: autograd's values, sympy's, and how far apart.

    `status` sums up the points: points where f or sympy's derivative is not finite are left
    out of the plot and of the verdict (a range may cross the edge of the domain), unless no
    point is left (not finite); then a disagreement anywhere is `disagree`, a point where the
    derivative does not exist is `kink`, and otherwise `agree`. `points` holds each point's
    own verdict (a code of core/check.py's CODES), judged as `gradcli grad --points` judges a row.
    """

    variable: str
    order: int
    label: str  # ASCII: df/dx, d2f/dx2
    pretty: str  # for people: df/dx, ∂f/∂x, d²f/dx²
    autograd: TensorData  # in the user's dtype, as float64 numbers
    symbolic: TensorData | None  # float64; None when not checked or sympy's cannot be evaluated
    formula: str | None  # sympy's derivative
    status: Verdict
    max_abs_error: float | None = None  # the largest |autograd - symbolic| over the compared points
    max_rel_error: float | None = None  # the largest |autograd - symbolic| / |symbolic| (symbolic not 0)
    compared: int = 0  # points where f and sympy's derivative are finite
    note: str | None = None
    points: np.ndarray | None = None  # each point's verdict code (None when not compared at all)

    def point_verdicts(self) -> list[str]:
        """Each point's verdict word (the series' own verdict at every point, when not compared)."""
        if self.points is None:
            return [self.status.value] * self.autograd.numel
        return np.array(CHECK_WORDS, dtype=object)[self.points].tolist()

    def counts(self) -> dict[str, int]:
        """How many points got each verdict."""
        if self.points is None:
            return {self.status.value: self.autograd.numel}
        found = np.bincount(self.points, minlength=len(VERDICTS))
        return {v.value: int(n) for v, n in zip(VERDICTS, found) if n}

    def to_dict(self) -> dict[str, Any]:
        return {
            "variable": self.variable, "order": self.order, "label": self.label,
            "autograd": self.autograd.to_dict(),
            "symbolic": {"formula": self.formula, "value": self.symbolic.to_dict() if self.symbolic else None},
            "check": {"status": self.status, "max_abs_error": self.max_abs_error,
                      "max_rel_error": self.max_rel_error, "compared_points": self.compared, "note": self.note,
                      "points": self.counts()},
        }


CHECK_WORDS: tuple[str, ...] = tuple(v.value for v in VERDICTS)  # CHECK_WORDS[code] is a point's verdict


@dataclass
class PlotData(Report):
    """What a plot shows: the coordinates, f, and each derivative by both routes."""

    expression: str
    parsed: str
    dtype: str
    device: str
    device_note: str
    kind: str  # "line" (one variable, or several paired ones) or "grid"
    order: int
    axes: dict[str, TensorData]  # each plotted variable at every point (for a grid, its meshgrid)
    constants: dict[str, TensorData]  # variables held at one value
    f: TensorData  # f at every point (the shape of the axes)
    series: list[Series]
    checked: bool
    rtol: float
    atol: float
    seed: int | None = None
    version: str = field(default=__version__, kw_only=True)
    command: str = field(default="plot", kw_only=True)

    @property
    def variables(self) -> list[str]:
        return list(self.axes)

    def verdicts(self) -> list[Verdict]:
        """failed when autograd and sympy disagree somewhere (or nothing could be compared)."""
        return [s.status for s in self.series]

    def columns(self) -> list[tuple[str, np.ndarray]]:
        """The data as named flat columns: the variables, f, then each derivative (and sympy's,
        and each point's verdict: an array of words, where the rest are numbers)."""
        cols = [(n, t.array.reshape(-1)) for n, t in self.axes.items()]
        cols.append(("f", self.f.array.reshape(-1)))
        for s in self.series:
            cols.append((s.label, s.autograd.array.reshape(-1)))
            if s.symbolic is not None:
                cols.append((f"{s.label} symbolic", s.symbolic.array.reshape(-1)))
            if self.checked:
                cols.append((f"{s.label} check", np.array(s.point_verdicts(), dtype=object)))
        return cols

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.header(),
            "parsed": self.parsed,
            "dtype": self.dtype,
            "device": self.device,
            "kind": self.kind,
            "order": self.order,
            "axes": {n: t.to_dict() for n, t in self.axes.items()},
            "constants": {n: t.to_dict() for n, t in self.constants.items()},
            "f": self.f.to_dict(),
            "series": [s.to_dict() for s in self.series],
            "check": {"performed": self.checked, "status": self.status, "rtol": self.rtol, "atol": self.atol,
                      "reference_dtype": "float64"},
            "seed": self.seed,
            "warnings": list(self.warnings),
        }


@dataclass
class _Check:
    status: Verdict
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    compared: int = 0
    note: str | None = None
    points: np.ndarray | None = None


def _compare(label: str, autograd: torch.Tensor, ref: SymbolicGradient | None, f: np.ndarray, *, rtol: float,
             atol: float) -> _Check:
    """Autograd against sympy at every point where a comparison means something.

    A range may cross the edge of f's domain (log(x) over -5:5), a pole (tan) or a kink (abs
    at 0): points where f or sympy's derivative is not finite, or too large for the user's
    dtype, are left out, and said. Elsewhere autograd must be finite too and agree.

    Each point is judged on its own, |autograd - sympy| <= atol*max(1, |sympy|) + rtol*|sympy|
    (core/check.py's pointwise_verdicts): near a pole the derivative is huge, and one huge value
    must not loosen the tolerance of every other point (as the largest magnitude does for
    `gradcli grad`'s single tensors).
    """
    if ref is None:
        return _Check(Verdict.SKIPPED)
    if ref.value is None:
        return _Check(Verdict.UNAVAILABLE, note=ref.unavailable)
    a = autograd.detach().to(device="cpu", dtype=torch.float64).reshape(-1)
    r = torch.broadcast_to(ref.value.to(torch.float64), autograd.shape).reshape(-1)
    largest = torch.finfo(autograd.dtype).max
    points = pointwise_verdicts(f.reshape(-1), a.numpy(), r.numpy(), rtol=rtol, atol=atol, largest=largest)
    # Beyond the dtype's largest number (cot's 2/x^3 near 0 in float32) autograd can only say inf.
    representable = r.abs() <= largest
    defined = torch.from_numpy(np.isfinite(f).reshape(-1)) & torch.isfinite(r) & representable
    n = int(defined.sum())
    if n == 0:
        return _Check(Verdict.NOT_FINITE, note=f"f or sympy's {label} is not finite at any point of the range",
                      points=points)
    a, r = a[defined], r[defined]
    diff = (a - r).abs()
    size = r.abs()
    ok = torch.isfinite(a) & (diff <= atol * size.clamp_min(1.0) + rtol * size)
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
                      f"autograd and sympy differ at {int((~ok).sum())} of {n} points, by up to {max_abs:.3g}",
                      points)
    kinks = int((points == CODES[Verdict.KINK]).sum())
    note = None
    if left_out:
        note = (f"compared at {n} of {autograd.numel()} points; at the other {left_out}, f or sympy's {label} is "
                f"not finite (outside the domain, a pole or a kink) or beyond what {str(autograd.dtype)[6:]} can hold")
    if kinks:
        note = (f"the derivative does not exist at {kinks} of {autograd.numel()} points (a kink): autograd's value "
                f"there is torch's convention; " + (note or f"the other {n} points agree"))
        return _Check(Verdict.KINK, max_abs, max_rel, n, note, points)
    return _Check(Verdict.AGREE, max_abs, max_rel, n, note, points)


def _check_plottable(st, ranges: list[str]) -> None:
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
              dtype: str = "float32", device: str = "auto", check: bool = True, rtol: float | None = None,
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


def _constants(st, ranges: Sequence[str]) -> dict[str, TensorData]:
    return {n: tensor_data(t) for n, t in st.tensors.items() if n not in ranges}


def _lines(st, ranges: list[str], order: int, *, check: bool) -> PlotData:
    component = st.parsed.components[0]
    n_points = st.tensors[ranges[0]].numel()
    partial = len(ranges) > 1
    series: list[Series] = []
    f_values: torch.Tensor | None = None
    for var in ranges:
        run = nth_derivatives(st.fn, st.tensors, var, order, reduction="sum")
        if f_values is None:
            f_values = torch.broadcast_to(run.output, (n_points,))
        refs = symbolic_order(component, st.table, st.tensors, var, order, "sum") if check else [None] * order
        f_array = tensor_data(f_values).array
        for k in range(1, order + 1):
            label = derivative_label(var, k)
            result = run.results[str(k)]
            ref = refs[k - 1]
            c = _compare(label, result, ref, f_array, rtol=st.rtol, atol=st.atol)
            symbolic = (tensor_data(torch.broadcast_to(ref.value, result.shape)) if ref is not None
                        and ref.value is not None else None)
            series.append(Series(var, k, label, derivative_label(var, k, partial=partial, pretty=True),
                                 tensor_data(result), symbolic, ref.formula if ref is not None else None, c.status,
                                 c.max_abs_error, c.max_rel_error, c.compared, c.note, c.points))
    assert f_values is not None
    f_data = tensor_data(f_values)
    return PlotData(st.expression, st.parsed.pretty(), st.dtype, str(st.device), st.device_note, "line", order,
                    {n: tensor_data(st.tensors[n]) for n in ranges}, _constants(st, ranges), f_data, series,
                    check, st.rtol, st.atol, st.seed, warnings=_warnings(st, f_data))


def _grid(st, ranges: list[str], *, check: bool) -> PlotData:
    xname, yname = ranges
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
            if check else {})
    series = []
    for var in (xname, yname):
        label = derivative_label(var, 1)
        result = run.gradients[var]
        ref = refs.get(var)
        c = _compare(label, result, ref, f_array, rtol=st.rtol, atol=st.atol)
        symbolic = tensor_data(ref.value) if ref is not None and ref.value is not None else None
        series.append(Series(var, 1, label, derivative_label(var, 1, partial=True, pretty=True), tensor_data(result),
                             symbolic, ref.formula if ref is not None else None, c.status, c.max_abs_error,
                             c.max_rel_error, c.compared, c.note, c.points))
    f_data = tensor_data(f_values)
    return PlotData(st.expression, st.parsed.pretty(), st.dtype, str(st.device), st.device_note, "grid", 1,
                    {xname: tensor_data(xs), yname: tensor_data(ys)}, _constants(st, ranges), f_data, series,
                    check, st.rtol, st.atol, st.seed, warnings=_warnings(st, f_data))


def _warnings(st, f: TensorData) -> list[str]:
    warnings = list(st.notes)
    finite = np.isfinite(f.array)
    if not finite.all():
        bad = int((~finite).sum())
        warnings.append(f"f is not finite at {bad} of {f.array.size} points (outside its domain, or beyond what "
                        f"{st.dtype} can hold): those points are left out of the plot")
    return warnings
