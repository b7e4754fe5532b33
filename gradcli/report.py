"""Plain data: the one thing the renderers see. No torch, no sympy, no rich (torch is imported
only when a library caller asks a result for its `.tensor`).

`to_dict` gives the JSON document; its layout is the contract documented in the README
under "JSON output" and versioned by SCHEMA_VERSION.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gradcli.core.check import VERDICTS, Verdict, any_fails, any_unchecked
from gradcli.version import __version__

if TYPE_CHECKING:  # numpy is imported where it is used, as TensorData does; torch only for .tensor
    import numpy as np
    import numpy.typing as npt
    import torch

# 2: the verdict words became one vocabulary (gradcli/core/check.py's Verdict): agree, disagree,
# not finite, kink, unavailable, skipped, where version 1 said ok, mismatch, domain, undefined.
# 3: status "unchecked" (a result not checked: no longer "ok"), the verdict "sympy error", the
# check's routes and mode, and inputs over 1000 elements written as their shape (--echo-values).
SCHEMA_VERSION = 3


class TensorData:
    """A tensor as float64 numbers (a numpy array), with its shape and the dtype it had.

    Holding an array rather than nested lists keeps a 10^7-element result at 80 MB instead of
    several hundred; `data` gives the nested lists (or one float) when a renderer wants them.
    """

    def __init__(self, data: Any, shape: list[int], dtype: str, device: str = "cpu"):
        import numpy as np

        if isinstance(data, np.ndarray):
            array = data.astype(np.float64, copy=False)
        else:
            array = np.asarray(_from_json_numbers(data), dtype=np.float64)
        self.array: npt.NDArray[np.float64] = array.reshape(tuple(shape))
        self.shape = list(shape)
        self.dtype = dtype
        self.device = device  # where it was computed: .tensor puts it back there

    @property
    def tensor(self) -> torch.Tensor:
        """The numbers as a torch tensor, in the dtype and on the device they were computed in
        (a new tensor each time: changing it changes nothing here)."""
        import torch

        return torch.from_numpy(self.array.copy()).to(dtype=getattr(torch, self.dtype), device=self.device)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorData:
        return cls(d["data"], d["shape"], d["dtype"])

    @property
    def data(self) -> Any:
        return self.array.tolist()

    def flat(self) -> list[float]:
        values: list[float] = self.array.reshape(-1).tolist()
        return values

    @property
    def numel(self) -> int:
        return int(self.array.size)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, TensorData) and self.shape == other.shape and self.dtype == other.dtype
                and self.data == other.data)

    def __repr__(self) -> str:
        return f"TensorData(shape={self.shape}, dtype={self.dtype})"

    def to_dict(self) -> dict[str, Any]:
        import numpy as np

        # A finite array needs no walk for NaN and infinities: at 10^6 elements that walk cost
        # more than writing the JSON.
        data = self.data if bool(np.isfinite(self.array).all()) else json_numbers(self.data)
        return {"data": data, "shape": self.shape, "dtype": self.dtype}

    def summary(self) -> dict[str, Any]:
        """The tensor without its numbers: what JSON says of an input too large to echo."""
        return {"shape": self.shape, "dtype": self.dtype, "elements": self.numel}

    def echoed(self, echo: bool) -> dict[str, Any]:
        """The tensor in full when `echo` or when it is small (ECHO_ELEMENTS), else its summary."""
        return self.to_dict() if echo or self.numel <= ECHO_ELEMENTS else self.summary()


# JSON echoes an input (and sympy's value beside a result) of at most this many elements;
# larger ones are summarised (shape, dtype, elements) unless --echo-values asks for them. The
# result itself is always written in full.
ECHO_ELEMENTS = 1000


def _from_json_numbers(x: Any) -> Any:
    if isinstance(x, list):
        return [_from_json_numbers(y) for y in x]
    if isinstance(x, str):
        return float(x)  # "nan", "inf", "-inf", as to_dict writes them
    return x


def json_numbers(x: Any) -> Any:
    """JSON has no NaN or infinity: those become the strings "nan", "inf", "-inf"."""
    if isinstance(x, list):
        return [json_numbers(y) for y in x]
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


@dataclass(kw_only=True)
class Report:
    """What every report shares: the header, a status that follows from its verdicts, warnings, to_dict().

    `status` is "failed" when one of `verdicts()` fails a check (core/check.py's `fails`:
    disagree, not finite) or `failed_otherwise()` says so (a divergence, an eval that is not
    finite), else "ok"; the CLI exits 1 for "failed", in every command alike. A report is
    data: renderers read it and never change it.
    """

    command: str = ""
    version: str = ""
    warnings: list[str] = field(default_factory=list)

    def verdicts(self) -> Iterable[Verdict]:
        """Every verdict the report holds (none, for a report with nothing to check)."""
        return ()

    def failed_otherwise(self) -> bool:
        """A failure that is no verdict of a comparison."""
        return False

    @property
    def status(self) -> str:
        """failed (exit 1), unchecked (a result no route could check, or --check none: exit 0, but
        never "ok"), or ok."""
        verdicts = list(self.verdicts())
        if self.failed_otherwise() or any_fails(verdicts):
            return "failed"
        return "unchecked" if any_unchecked(verdicts) else "ok"

    def header(self) -> dict[str, Any]:
        """The fields every JSON document starts with (and the expression, where there is one)."""
        doc: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "gradcli_version": self.version,
                               "command": self.command}
        expression = getattr(self, "expression", None)
        if expression is not None:
            doc["expression"] = expression
        return doc

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def _repr_html_(self) -> str | None:
        """The report in a notebook (Jupyter calls this): the table the terminal shows, with its
        verdict. None, and the notebook shows repr(), when no renderer is installed."""
        return _NOTEBOOK_RENDERERS[0](self) if _NOTEBOOK_RENDERERS else None


# The HTML renderer of reports in a notebook. The renderers sit above this module and may not be
# imported here; gradcli.api installs render/notebook.py's when it is loaded (gradcli.grad... is).
_NOTEBOOK_RENDERERS: list[Callable[[Report], str | None]] = []


def install_notebook_renderer(renderer: Callable[[Report], str | None]) -> None:
    """Show reports in notebooks with `renderer` (report -> HTML, or None for repr())."""
    _NOTEBOOK_RENDERERS[:] = [renderer]


@dataclass
class VariableResult:
    """One computed derivative (a gradient, a Jacobian, a k-th derivative...) and its check."""

    name: str  # the variable, or what the entry is ("hessian", "2" for the 2nd derivative)
    value: TensorData | None  # the variable's value, where the entry belongs to one variable
    gradient: TensorData  # by autograd, in the user's dtype
    formula: str | None  # the symbolic derivative, as sympy prints it
    symbolic: TensorData | None  # its value, computed in float64
    status: Verdict
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    note: str | None = None
    label: str | None = None  # how a table heads the entry (d2f/dx2), when not the name
    rows: list[str] | None = None  # labels of a matrix's rows (outputs), and columns (inputs)
    columns: list[str] | None = None
    # Each route that ran ("symbolic", "numeric"): its verdict, error, tolerance and note
    # (core/check.py's arbitrate); erred: "sympy" or "autograd" when finite differences settled
    # a disagreement between them.
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)
    erred: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "max_abs_error": self.max_abs_error,
            "max_rel_error": self.max_rel_error,
            "note": self.note,
            "routes": {name: {k: (str(v) if isinstance(v, Verdict) else _json_float(v)) for k, v in route.items()}
                       for name, route in self.routes.items()},
            "erred": self.erred,
        }


def _json_float(x: Any) -> Any:
    return json_numbers(x) if isinstance(x, float) else x


@dataclass
class JacobianMatrix:
    """The Jacobian over every differentiated variable at once (scalar or vector variables, an f
    of at most one dimension): rows are f's elements, columns the variables' elements in order.

    `formulas[i][j]` is sympy's derivative of f's i-th output by the variable
    `formula_columns[j]`: one formula for a scalar variable (the matrix's own entry), the row
    of them sympy gives for a vector one; None where f's outputs have no formulas of their own.
    """

    rows: list[str]
    columns: list[str]
    autograd: TensorData
    symbolic: TensorData | None
    formulas: list[list[str]] | None = None
    formula_columns: list[str] | None = None

    def to_dict(self, echo: bool = True) -> dict[str, Any]:
        return {"rows": self.rows, "columns": self.columns, "autograd": self.autograd.to_dict(),
                "symbolic": {"formulas": self.formulas,
                             "formula_columns": self.formula_columns if self.formulas is not None else None,
                             "value": self.symbolic.echoed(echo) if self.symbolic else None}}


@dataclass
class MethodResult:
    """One autograd method's results, when --method all runs several."""

    method: str
    call: str
    gradients: dict[str, TensorData]
    agrees: bool


# The JSON key under which each command puts its results.
RESULT_KEYS = {
    "grad": "gradient",
    "jacobian": "jacobian",
    "hessian": "hessian",
    "vjp": "vjp",
    "jvp": "jvp",
    "order": "derivatives",
    "eval": "value",
}


@dataclass
class GradReport(Report):
    expression: str  # as typed
    parsed: str  # as sympy reads it
    dtype: str
    device: str
    device_note: str
    method: str
    call: str
    f: TensorData  # the expression's value, before any reduction
    reduction: str | None  # "sum"/"mean" when f was reduced to a scalar, else None
    differentiated: TensorData | None  # the scalar that was differentiated, where one was
    variables: list[VariableResult]  # the results, in order
    values: dict[str, TensorData]  # every variable's value
    wrt: list[str]  # the variables differentiated; the others are constants
    checked: bool
    rtol: float
    atol: float
    methods: list[MethodResult] = field(default_factory=list)
    seed: int | None = None  # the random seed, when a value used rand/randn
    command: str = field(default="grad", kw_only=True)
    vector: TensorData | None = None  # v of vjp/jvp
    extra: dict[str, Any] = field(default_factory=dict)  # command-specific facts (symmetry...)
    explain: list[tuple[str, str]] = field(default_factory=list)  # (topic, text) for --explain
    matrix: JacobianMatrix | None = None  # jacobian: the assembled m x n matrix, where there is one
    check_mode: str = "auto"  # --check: auto, symbolic, numeric, all or none

    @property
    def result_key(self) -> str:
        return RESULT_KEYS[self.command]

    @property
    def constants(self) -> dict[str, TensorData]:
        return {n: t for n, t in self.values.items() if n not in self.wrt}

    # The results for Python callers, as numpy arrays (.array) and torch tensors (.tensor):
    # report.gradient["w"].array, report.jacobian["x"].tensor, report.hessian.array.
    @property
    def results(self) -> dict[str, TensorData]:
        """Every result by name (a variable, "hessian", or an order 1, 2...): what --json puts
        under the command's key."""
        return {v.name: v.gradient for v in self.variables}

    def _results_of(self, command: str) -> dict[str, TensorData]:
        if self.command != command:
            raise AttributeError(f"a {self.command} report has no {RESULT_KEYS[command]}: its results are "
                                 f"report.{RESULT_KEYS.get(self.command, 'results')} (and report.results)")
        return self.results

    @property
    def gradient(self) -> dict[str, TensorData]:
        """grad's gradient, by variable."""
        return self._results_of("grad")

    @property
    def jacobian(self) -> dict[str, TensorData]:
        """jacobian's Jacobian, by variable (of shape f.shape + the variable's shape)."""
        return self._results_of("jacobian")

    @property
    def hessian(self) -> TensorData:
        """hessian's Hessian, over every element of the variables differentiated."""
        return self._results_of("hessian")["hessian"]

    @property
    def vjp(self) -> dict[str, TensorData]:
        """vjp's vᵀ·J, by variable."""
        return self._results_of("vjp")

    @property
    def jvp(self) -> dict[str, TensorData]:
        """jvp's J·v, by variable."""
        return self._results_of("jvp")

    @property
    def value(self) -> TensorData:
        """f at the values (every report has it; eval's is its result)."""
        return self.f

    def verdicts(self) -> Iterable[Verdict]:
        return [v.status for v in self.variables]

    def failed_otherwise(self) -> bool:
        if self.command == "eval":  # nothing to check: a value outside the domain is the failure
            return any(not math.isfinite(x) for x in self.f.flat())
        return any(not m.agrees for m in self.methods)

    def to_dict(self, echo: bool = False) -> dict[str, Any]:
        """The JSON document; `echo` writes every input and sympy's values in full, not only the
        small ones (ECHO_ELEMENTS)."""
        doc: dict[str, Any] = {
            **self.header(),
            "parsed": self.parsed,
            "dtype": self.dtype,
            "device": self.device,
            "method": self.method,
            "call": self.call,
            "values": {n: t.echoed(echo) for n, t in self.values.items()},
            "wrt": list(self.wrt),
            "f": self.f.to_dict(),
            "reduction": self.reduction,
            "differentiated": self.differentiated.to_dict() if self.differentiated else None,
            self.result_key: ({v.name: v.gradient.to_dict() for v in self.variables}
                              if self.command != "eval" else self.f.to_dict()),
            "symbolic": {
                v.name: {"formula": v.formula, "value": v.symbolic.echoed(echo) if v.symbolic else None}
                for v in self.variables
            },
            "check": {
                "performed": self.checked,
                "status": self.status,
                "rtol": self.rtol,
                "atol": self.atol,
                "reference_dtype": "float64",
                "variables": {v.name: v.to_dict() for v in self.variables},
                "mode": self.check_mode,
                "routes": sorted({r for v in self.variables for r in v.routes}),
            },
            "seed": self.seed,
            "warnings": list(self.warnings),
        }
        if self.vector is not None:
            doc["v"] = self.vector.to_dict()
        if self.matrix is not None:
            doc["jacobian_matrix"] = self.matrix.to_dict(echo)
        if any(v.rows for v in self.variables):
            doc["labels"] = {v.name: {"rows": v.rows, "columns": v.columns} for v in self.variables if v.rows}
        doc.update(self.extra)
        if self.explain:
            doc["explain"] = [{"topic": t, "text": x} for t, x in self.explain]
        if self.methods:
            doc["methods"] = {
                m.method: {"call": m.call, "agrees": m.agrees,
                           "gradient": {n: t.to_dict() for n, t in m.gradients.items()}}
                for m in self.methods
            }
        return doc


@dataclass
class GraphReport(Report):
    """The autograd graph of f: nodes from f.grad_fn down to the leaves (AccumulateGrad)."""

    expression: str
    parsed: str
    dtype: str
    device: str
    f: TensorData
    root: int | None
    nodes: list[Any]  # autodiff.GraphNode-like: id, kind, label, leaf, children
    intermediates: list[dict[str, Any]]
    values: dict[str, TensorData]
    wrt: list[str]
    command: str = field(default="graph", kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.header(),
            "parsed": self.parsed,
            "dtype": self.dtype,
            "device": self.device,
            "values": {n: t.to_dict() for n, t in self.values.items()},
            "wrt": list(self.wrt),
            "f": self.f.to_dict(),
            "root": self.root,
            "nodes": [{"id": n.id, "kind": n.kind, "label": n.label, "leaf": _leaf_json(n.leaf)} for n in self.nodes],
            "edges": [[n.id, c] for n in self.nodes for c in (n.children or [])],
            "intermediates": self.intermediates,
            "warnings": list(self.warnings),
        }


def _leaf_json(leaf: dict[str, Any] | None) -> dict[str, Any] | None:
    if leaf is None:
        return None
    return {**leaf, "grad": json_numbers(leaf["grad"]) if leaf.get("grad") is not None else None}


# --------------------------------------------------------------------------- gradcli minimize

@dataclass
class Point:
    """Where a descent was at one step: the loss, the parameters and the gradient there."""

    step: int
    loss: float
    gradient_norm: float
    parameters: dict[str, TensorData]
    gradient: dict[str, TensorData]

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "loss": json_numbers(self.loss),
            "gradient_norm": json_numbers(self.gradient_norm),
            "parameters": {n: t.to_dict() for n, t in self.parameters.items()},
            "gradient": {n: t.to_dict() for n, t in self.gradient.items()},
        }


@dataclass
class MinimizeReport(Report):
    """A gradient descent: where it started, where it ended, why it stopped, and the checks.

    `checks` holds, for the first and the last point ("start", "end"), one VariableResult per
    parameter: autograd's gradient there against sympy's derivative.
    """

    expression: str
    parsed: str
    dtype: str
    device: str
    device_note: str
    optimizer: str  # sgd | momentum | adam | adamw | rmsprop | lbfgs
    call: str  # the torch.optim constructor, as a reader would write it
    hyperparameters: dict[str, Any]  # lr, and momentum where it applies
    wrt: list[str]  # the parameters; every other variable is a constant
    constants: dict[str, TensorData]
    reduction: str | None  # "sum"/"mean" when the loss was not a scalar
    start: Point
    end: Point  # after the last step; on divergence, the last point where the loss was finite
    steps_requested: int
    steps_taken: int
    evaluations: int  # loss-and-gradient evaluations (L-BFGS makes several per step)
    stopped: str  # steps | tol | diverged
    stop_text: str  # why it stopped, in words
    losses: list[float]  # the loss at step 0, 1, ... (the last one non-finite on divergence)
    checks: dict[str, list[VariableResult]]
    checked: bool
    rtol: float
    atol: float
    tol: float | None = None
    diverged_at: int | None = None  # the step whose loss was not finite
    hint: str | None = None
    trace: dict[str, str] | None = None  # {"path", "format"} of --trace
    seed: int | None = None
    command: str = field(default="minimize", kw_only=True)

    def verdicts(self) -> Iterable[Verdict]:
        return [v.status for vs in self.checks.values() for v in vs]

    def failed_otherwise(self) -> bool:
        return self.stopped == "diverged"

    def to_dict(self) -> dict[str, Any]:
        def check(v: VariableResult) -> dict[str, Any]:
            return {"formula": v.formula, "value": v.symbolic.to_dict() if v.symbolic else None, **v.to_dict()}

        return {
            **self.header(),
            "parsed": self.parsed,
            "dtype": self.dtype,
            "device": self.device,
            "optimizer": {"name": self.optimizer, "call": self.call, **self.hyperparameters},
            "wrt": list(self.wrt),
            "constants": {n: t.to_dict() for n, t in self.constants.items()},
            "reduction": self.reduction,
            "start": self.start.to_dict(),
            "end": self.end.to_dict(),
            "steps": {"requested": self.steps_requested, "taken": self.steps_taken, "evaluations": self.evaluations},
            "stopped": {"reason": self.stopped, "text": self.stop_text, "tol": self.tol,
                        "diverged_at_step": self.diverged_at, "hint": self.hint},
            "losses": json_numbers([float(x) for x in self.losses]),
            "check": {
                "performed": self.checked,
                "status": "failed" if any_fails(self.verdicts()) else "ok",
                "rtol": self.rtol,
                "atol": self.atol,
                "reference_dtype": "float64",
                "points": {where: {"step": (self.start if where == "start" else self.end).step,
                                   "variables": {v.name: check(v) for v in vs}}
                           for where, vs in self.checks.items()},
            },
            "status": self.status,
            "trace": self.trace,
            "seed": self.seed,
            "warnings": list(self.warnings),
        }


# --------------------------------------------------------------------------- gradcli plot

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
    points: npt.NDArray[np.int8] | None = None  # each point's verdict code (None when not compared at all)

    def point_verdicts(self) -> list[str]:
        """Each point's verdict word (the series' own verdict at every point, when not compared)."""
        import numpy as np

        if self.points is None:
            return [self.status.value] * self.autograd.numel
        words: list[str] = np.array(CHECK_WORDS, dtype=object)[self.points].tolist()
        return words

    def counts(self) -> dict[str, int]:
        """How many points got each verdict."""
        import numpy as np

        if self.points is None:
            return {self.status.value: self.autograd.numel}
        found = np.bincount(self.points, minlength=len(VERDICTS))
        return {v.value: int(n) for v, n in zip(VERDICTS, found, strict=True) if n}

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

    def columns(self) -> list[tuple[str, npt.NDArray[Any]]]:
        """The data as named flat columns: the variables, f, then each derivative (and sympy's,
        and each point's verdict: an array of words, where the rest are numbers)."""
        import numpy as np

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


# --------------------------------------------------------------------------- gradcli diff

@dataclass
class Derivative:
    variable: str
    order: int
    expr: Any  # a sympy.Expr (sympy is not imported here), kept for renderers that print it (pretty, latex)
    formula: str
    latex: str
    pretty: str
    simplified: bool


@dataclass
class DiffReport(Report):
    """Symbolic derivatives only: nothing is compared, so its status is always ok."""

    expression: str
    parsed: str
    derivatives: list[Derivative]
    command: str = field(default="diff", kw_only=True)
    version: str = field(default=__version__, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.header(),
            "parsed": self.parsed,
            "derivatives": [
                {"variable": d.variable, "order": d.order, "formula": d.formula, "latex": d.latex,
                 "simplified": d.simplified}
                for d in self.derivatives
            ],
            "warnings": list(self.warnings),
        }


# --------------------------------------------------------------------------- gradcli functions

@dataclass(frozen=True)
class FunctionInfo:
    """One function as `gradcli functions` shows it."""

    name: str
    aliases: list[str]
    signature: str  # huber(input, target, delta=1)
    category: str  # a functions.Category value: "elementwise", "reduction", ...
    description: str
    kink: str | None  # what torch does where the derivative does not exist; None: nowhere

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "aliases": list(self.aliases), "signature": self.signature,
                "category": self.category, "description": self.description, "kink": self.kink}


@dataclass
class FunctionsReport(Report):
    """What the registry declares: nothing is computed or compared, so its status is always ok."""

    functions: list[FunctionInfo] = field(default_factory=list)
    command: str = field(default="functions", kw_only=True)
    version: str = field(default=__version__, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        return {**self.header(), "functions": [f.to_dict() for f in self.functions]}
