"""The library API: each function runs the whole pipeline and returns a report.

    >>> import gradcli
    >>> report = gradcli.grad("2*x**2 + 5", {"x": 5})
    >>> report.variables[0].gradient.data
    20.0

The CLI is a thin layer over these functions.
"""

from __future__ import annotations

import functools
import gc
import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import sympy
import torch

from gradcli import __version__
from gradcli.autodiff import JACOBIAN_METHODS, METHODS, gradient, nth_derivatives, pick_jacobian_method, torch_error
from gradcli.autodiff import hessian as hessian_by_autograd
from gradcli.autodiff import jacobian as jacobian_by_autograd
from gradcli.autodiff import jvp as jvp_by_autograd
from gradcli.autodiff import accumulate as accumulate_by_backward
from gradcli.autodiff import autograd_graph
from gradcli.autodiff import vjp as vjp_by_autograd
from gradcli.errors import GradcliError
from gradcli.limits import DEFAULT_MAX_ELEMENTS
from gradcli.mathfuncs import expand_definitions
from gradcli.lower import compile_components, make_tensor, resolve_device, resolve_dtype, to_source
from gradcli.inputs import read_data_file
from gradcli.parse import (
    ParsedExpression,
    ValueSpec,
    array_value,
    index_text,
    indexed_shape,
    parse_assignment,
    parse_expression,
    parse_value,
)
from gradcli.report import GradReport, GraphReport, MethodResult, TensorData, VariableResult
from gradcli.verify import (
    TOLERANCES,
    _numel,
    _top_reductions as top_reductions,
    broadcast_shapes,
    SymbolicGradient,
    compare,
    is_elementwise_in,
    symbolic_gradients,
    symbolic_hessian,
    symbolic_jacobians,
    symbolic_jvp,
    symbolic_order,
    symbolic_vjps,
)

ValuesArg = Mapping[str, Any] | Sequence[str]

# gradcli batch and library loops repeat expressions: parse each text once. (A parsed
# expression is never changed after parsing; sympy caches the derivatives of its own.)
_parse = functools.lru_cache(maxsize=1024)(parse_expression)


def _gc_paused(fn):
    """Run one API call with Python's cycle collector paused.

    Parsing and differentiating a long expression allocates millions of short-lived sympy,
    ast and closure objects, and every full collection walks all of them again: a third of
    the time of a 100 KB expression (benchmarks/long_expression.py). Little of it is cyclic,
    and what is gets collected once the call returns and the collector runs again.
    """
    @functools.wraps(fn)
    def paused(*args, **kwargs):
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()
    return paused


def tensor_data(t: torch.Tensor) -> TensorData:
    t = t.detach()
    return TensorData(t.to(device="cpu", dtype=torch.float64).numpy(), list(t.shape),
                      str(t.dtype).removeprefix("torch."))


def read_values(values: ValuesArg, named: Mapping[str, Any] | None = None) -> dict[str, ValueSpec]:
    """{name: spec} from NAME=VALUE strings or a mapping of names to values, and from the
    library's keyword values (gradcli.grad("x*y", x=1, y=2)); a name given twice is an error."""
    specs: dict[str, ValueSpec] = {}
    if named:
        specs = read_values(values)
        for name, spec in read_values(dict(named)).items():
            if name in specs:
                raise GradcliError(f"{name} is given a value twice")
            specs[name] = spec
        return specs
    if isinstance(values, Mapping):
        items = []
        for name, v in values.items():
            items.append((name, v if isinstance(v, ValueSpec) else parse_value(v if isinstance(v, str) else repr(v))))
    else:
        items = [parse_assignment(a) for a in values]
    for name, spec in items:
        if name in specs:
            raise GradcliError(f"{name} is given a value twice")
        specs[name] = spec
    return specs


def _bind(parsed: ParsedExpression, specs: Mapping[str, ValueSpec]) -> None:
    """Every variable has a value, every value a variable, and every index fits its variable."""
    missing = [n for n in parsed.variables if n not in specs]
    if missing:
        example = " ".join(f"{n}=1" for n in missing)
        raise GradcliError(
            f"no value for {', '.join(missing)}", hint=f"give every variable a value, like: {example}"
        )
    extra = [n for n in specs if n not in parsed.variables]
    if extra:
        raise GradcliError(
            f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not in the expression "
            f"(its variables: {', '.join(parsed.variables) or 'none'})",
            hint="remove the value, or check the spelling",
        )
    for var in parsed.variables.values():
        shape = specs[var.name].shape
        for index in var.indices:
            label = f"{var.name}[{index_text(index)}]"
            if len(index) > len(shape):
                what = "a scalar" if not shape else f"of shape {list(shape)}"
                raise GradcliError(f"{label} has {len(index)} indices, but {var.name} is {what}",
                                   span=var.span)
            for i, n in zip(index, shape):
                if isinstance(i, int) and not -n <= i < n:
                    raise GradcliError(f"{label} is out of range: {var.name} has shape {list(shape)}",
                                       span=var.span)
            if 0 in indexed_shape(index, shape):
                raise GradcliError(f"{label} is empty: {var.name} has shape {list(shape)}", span=var.span)


def _wrt(parsed: ParsedExpression, specs: Mapping[str, ValueSpec], wrt: str | Sequence[str] | None) -> list[str]:
    if wrt is None or wrt == "" or wrt == []:
        return list(specs)  # in the order the values were given: the order a script expects
    names = [w.strip() for w in (wrt.split(",") if isinstance(wrt, str) else wrt) if w.strip()]
    if not names:
        raise GradcliError(f"--wrt {wrt!r} names no variable", hint="for example --wrt x,y")
    for n in names:
        if n not in parsed.variables:
            raise GradcliError(
                f"--wrt {n}: {n} is not a variable of the expression (its variables: {', '.join(parsed.variables)})"
            )
    if len(set(names)) != len(names):
        raise GradcliError("--wrt names a variable twice")
    return names


@dataclass
class _Setup:
    """What every command needs before it differentiates anything."""

    expression: str
    parsed: ParsedExpression
    tensors: dict[str, torch.Tensor]
    wrt: list[str]
    dtype: str
    device: torch.device
    device_note: str
    table: dict
    fn: Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
    rtol: float
    atol: float
    seed: int | None
    max_elements: int
    extra_specs: dict[str, ValueSpec]
    generator: torch.Generator | None
    notes: list[str]  # said once in the report's warnings (unused --data columns)

    def tensor(self, spec: ValueSpec, name: str) -> torch.Tensor:
        return make_tensor(spec, dtype=resolve_dtype(self.dtype), device=self.device, generator=self.generator,
                           max_elements=self.max_elements, name=name)


def _setup(expression: str, values: ValuesArg, *, wrt, dtype: str, device: str, rtol, atol, seed,
           max_elements: int, vector_name: str | None = None, named: Mapping[str, Any] | None = None,
           data: str | None = None, needs_variables: bool = True) -> _Setup:
    parsed = _parse(expression)
    specs = read_values(values, named)
    notes: list[str] = []
    if data is not None:
        columns = read_data_file(data)
        unused = [c for c in columns if c not in parsed.variables]
        for name, column in columns.items():
            if name in parsed.variables:
                if name in specs:
                    raise GradcliError(f"{name} has a value and is also a column of {data}")
                specs[name] = array_value(column, f"@{data}:{name}")
        if unused:
            notes.append(f"--data {data}: column(s) {', '.join(unused)} are not variables of the expression")
    extra: dict[str, ValueSpec] = {}
    if vector_name and vector_name in specs and vector_name not in parsed.variables:
        extra[vector_name] = specs.pop(vector_name)
    _bind(parsed, specs)
    names = _wrt(parsed, specs, wrt)
    if needs_variables and not names:
        raise GradcliError("the expression has no variable to differentiate",
                           hint="gradcli eval computes a value alone")
    torch_dtype = resolve_dtype(dtype)
    torch_device, device_note = resolve_device(device)
    default_rtol, default_atol = TOLERANCES[dtype]
    for label, tol in (("--rtol", rtol), ("--atol", atol)):
        if tol is not None and not (math.isfinite(tol) and tol >= 0):
            raise GradcliError(f"{label} must be a finite number >= 0, not {tol}")
    if max_elements < 1:
        raise GradcliError(f"--max-elements must be at least 1, not {max_elements}")
    if seed is not None and not 0 <= seed < 2**63:
        raise GradcliError(f"--seed must be between 0 and 2**63 - 1, not {seed}")
    used_seed = None
    generator = None
    if any(s.is_random for s in [*specs.values(), *extra.values()]):
        used_seed = seed if seed is not None else random.SystemRandom().randrange(2**31)
        generator = torch.Generator().manual_seed(used_seed)
    tensors = {
        n: make_tensor(specs[n], dtype=torch_dtype, device=torch_device, generator=generator,
                       max_elements=max_elements, name=n)
        for n in specs
    }
    table = parsed.symbol_table()
    # Lowered once per parsed expression, dtype and device: _parse hands a repeated expression
    # the same object (gradcli batch), and the function keeps no state between calls.
    lowered = parsed.__dict__.setdefault("_lowered", {})
    fn = lowered.get((torch_dtype, torch_device))
    if fn is None:
        fn = compile_components(parsed.components, parsed.shape, table, dtype=torch_dtype, device=torch_device)
        lowered[(torch_dtype, torch_device)] = fn
    _check_shapes(parsed, table, tensors)
    return _Setup(expression, parsed, tensors, names, dtype, torch_device, device_note, table, fn,
                  default_rtol if rtol is None else rtol, default_atol if atol is None else atol, used_seed,
                  max_elements, extra, generator, notes)


def _checked(name: str, st: _Setup, result: torch.Tensor, ref: SymbolicGradient | None, *, f_finite: bool,
             value: torch.Tensor | None = None, **labels) -> VariableResult:
    """A result and its verdict against the symbolic reference (None: --no-check)."""
    shown_value = tensor_data(value) if value is not None else None
    if ref is None:
        return VariableResult(name, shown_value, tensor_data(result), None, None, "skipped", **labels)
    cmp = compare(result, ref, f_finite=f_finite, rtol=st.rtol, atol=st.atol)
    return VariableResult(name, shown_value, tensor_data(result), ref.formula,
                          tensor_data(ref.value) if ref.value is not None else None,
                          cmp.status, cmp.max_abs_error, cmp.max_rel_error, cmp.note, **labels)


def _check_shapes(parsed: ParsedExpression, table: Mapping, tensors: Mapping[str, torch.Tensor]) -> None:
    """Shapes that cannot broadcast, named before torch meets them.

    Worked out from the variables' shapes alone: every elementwise part (outside reductions,
    and inside each reduction) must broadcast. Running f on shape-only 'meta' tensors would
    be simpler, but its first operation imports torch._dynamo: 1.9 s.
    """
    if all(t.dim() == 0 for t in tensors.values()):
        return  # scalars always fit together (_bind has refused an index into a scalar)

    def complain(used: Mapping[str, tuple]) -> GradcliError:
        listed = ", ".join(f"{n} {list(sh)}" for n, sh in sorted(used.items()))
        return GradcliError(f"the shapes do not fit together: {listed}",
                            hint="elementwise operations need, dimension by dimension from the right, "
                                 "equal sizes or 1 (as in torch)")

    def shapes_in(expr) -> dict:
        reductions = top_reductions(expr)
        flat = expr.xreplace({r: sympy.Dummy() for r in reductions})
        used = {}
        for sym in flat.free_symbols:
            if sym in table:
                name, index = table[sym]
                shape = tuple(tensors[name].shape)
                used[str(sym)] = shape if index is None else indexed_shape(index, shape)
        try:
            np.broadcast_shapes(*used.values())
        except ValueError:
            raise complain(used) from None
        for r in reductions:
            shapes_in(r.args[0])
        return used

    everything: dict = {}
    for component in parsed.components:
        everything.update(shapes_in(expand_definitions(component)))
    try:  # the entries of [f1, f2] are broadcast together, then stacked
        np.broadcast_shapes(*everything.values())
    except ValueError:
        raise complain(everything) from None


def _report(st: _Setup, command: str, method: str, call: str, output: torch.Tensor, results: list[VariableResult],
            *, check: bool, reduction: str | None = None, differentiated: torch.Tensor | None = None,
            warnings: list[str] | None = None, methods: list[MethodResult] | None = None,
            vector: torch.Tensor | None = None, extra: dict | None = None) -> GradReport:
    warnings = list(st.notes) + list(warnings or [])
    if not bool(torch.isfinite(output).all()):
        warnings.append("f is not finite at this point: outside the function's domain, or beyond what "
                        f"{st.dtype} can hold")
    return GradReport(
        expression=st.expression, parsed=st.parsed.pretty(), dtype=st.dtype, device=str(st.device),
        device_note=st.device_note, method=method, call=call, f=tensor_data(output), reduction=reduction,
        differentiated=tensor_data(differentiated) if differentiated is not None else None,
        variables=results, values={n: tensor_data(t) for n, t in st.tensors.items()}, wrt=list(st.wrt),
        checked=check, rtol=st.rtol, atol=st.atol, methods=methods or [], seed=st.seed, warnings=warnings,
        command=command, version=__version__, vector=tensor_data(vector) if vector is not None else None,
        extra=extra or {},
    )


def _reduction_note(output: torch.Tensor, reduce: str) -> tuple[str | None, list[str]]:
    if output.dim() == 0:
        return None, []
    return reduce, [f"f has shape {list(output.shape)}: its {reduce} was differentiated "
                    f"(backward needs a scalar; --reduce chooses sum or mean)"]


def _common(st: _Setup) -> tuple[int, ...]:
    """The broadcast shape of the components of a bracketed list (or of the one expression)."""
    try:
        return _component_shapes(st)
    except (RuntimeError, ValueError, IndexError) as exc:  # shapes that do not broadcast, say
        raise torch_error(exc) from None


def _component_shapes(st: _Setup) -> tuple[int, ...]:
    with torch.no_grad():
        env = {n: t for n, t in st.tensors.items()}
        shapes = [tuple(compile_components([c], None, st.table, dtype=resolve_dtype(st.dtype),
                                           device=st.device)(env).shape) for c in st.parsed.components]
    return tuple(broadcast_shapes(*shapes))


MAX_ORDER = 50  # --order beyond this is refused: no one needs the 51st derivative
MAX_ACCUMULATE = 1000

# The pitfall each command's seeds teach, said once under --explain.
_PITFALLS = {
    "grad": "gradients accumulate: .grad adds up over backward calls unless zeroed (x.grad.zero_()); "
            "gradcli gives every method fresh leaves",
    "order": "higher derivatives need create_graph=True, so each gradient is itself differentiable",
    "hessian": "a Hessian is the Jacobian of the gradient: it needs create_graph=True on the way",
    "jacobian": "backward() needs a scalar: a Jacobian is one backward per output row (retain_graph=True), "
                "or a vectorised jacrev/jacfwd",
    "vjp": "backward() on a non-scalar output needs a vector v of the output's shape: f.backward(v) gives vᵀ·J",
    "jvp": "forward mode pushes a direction v through f alongside its value: one pass gives J·v",
}


def _explained(report: GradReport, st: _Setup, explain: bool) -> GradReport:
    """Add the account of how the result was computed (--explain)."""
    if not explain:
        return report
    code = [to_source(c, st.table) for c in st.parsed.components]
    torch_code = code[0] if st.parsed.shape is None else "torch.stack([" + ", ".join(code) + "])"
    lines = [
        ("parsed", f"f = {st.parsed.pretty()}  (read into sympy by a whitelist parser: no Python was run; "
                   "sympy's automatic rewrites, such as x - x -> 0, apply to both routes)"),
        ("torch", f"f = {torch_code}"),
        ("leaves", ", ".join(f"{n} = torch.tensor(..., dtype=torch.{st.dtype}, requires_grad=True)" for n in st.wrt)
         or "none"),
        ("autograd", report.call),
    ]
    if report.reduction:
        lines.append(("reduce", f"f has shape {report.f.shape}: f.{report.reduction}() is the scalar differentiated"))
    if report.checked:
        formulas = "; ".join(f"{v.label or v.name}: {v.formula}" for v in report.variables if v.formula)
        lines.append(("symbolic", formulas or "—"))
        lines.append(("check", f"sympy's derivative, lowered through the same table, evaluated in float64 at the "
                               f"values rounded to {st.dtype}; agreement means |autograd - symbolic| <= "
                               f"atol*scale + rtol*|symbolic| with rtol {st.rtol:g}, atol {st.atol:g}"))
    lines.append(("pitfall", _PITFALLS[report.command]))
    report.explain = lines
    return report


@_gc_paused
def evaluate(expression: str, values: ValuesArg = (), *, dtype: str = "float32", device: str = "auto", seed=None,
             max_elements: int = DEFAULT_MAX_ELEMENTS, data: str | None = None, **named: Any) -> GradReport:
    """The value of f alone, under torch.no_grad(): no graph is recorded."""
    st = _setup(expression, values, wrt=None, dtype=dtype, device=device, rtol=None, atol=None, seed=seed,
                max_elements=max_elements, named=named, data=data, needs_variables=False)
    try:
        with torch.no_grad():
            out = st.fn(st.tensors)
    except (RuntimeError, TypeError, ValueError, IndexError, NotImplementedError) as exc:
        raise torch_error(exc) from None
    st.wrt = []
    note = (f"computed under torch.no_grad(): no graph was recorded "
            f"(f.requires_grad is {out.requires_grad}, f.grad_fn is {out.grad_fn})")
    return _report(st, "eval", "no_grad", "with torch.no_grad(): f = ...", out, [], check=False, warnings=[note])


@_gc_paused
def graph(expression: str, values: ValuesArg = (), *, wrt=None, dtype: str = "float32", device: str = "auto", seed=None,
          max_elements: int = DEFAULT_MAX_ELEMENTS, data: str | None = None, **named: Any) -> GraphReport:
    """The autograd graph of f, from f.grad_fn to the leaves, after backward."""
    st = _setup(expression, values, wrt=wrt, dtype=dtype, device=device, rtol=None, atol=None, seed=seed,
                max_elements=max_elements, named=named, data=data)
    trace: list = []
    fn = compile_components(st.parsed.components, st.parsed.shape, st.table, dtype=resolve_dtype(dtype),
                            device=st.device, trace=trace)
    try:
        nodes, root, out, intermediates = autograd_graph(fn, st.tensors, st.wrt, trace,
                                                         lambda node: to_source(node, st.table))
    except (RuntimeError, TypeError, ValueError, IndexError, NotImplementedError) as exc:
        raise torch_error(exc) from None
    warnings = list(st.notes)
    if root is None:
        warnings.append("f does not depend on any differentiated variable: it has no grad_fn and no graph")
    if out.dim() > 0:
        warnings.append(f"f has shape {list(out.shape)}: backward ran on f.sum()")
    return GraphReport(expression, st.parsed.pretty(), st.dtype, str(st.device), tensor_data(out), root, nodes,
                       intermediates, {n: tensor_data(t) for n, t in st.tensors.items()}, list(st.wrt),
                       version=__version__, warnings=warnings)


@_gc_paused
def grad(
    expression: str,
    values: ValuesArg = (),
    *,
    wrt: str | Sequence[str] | None = None,
    method: str = "grad",
    dtype: str = "float32",
    device: str = "auto",
    reduce: str = "sum",
    order: int = 1,
    check: bool = True,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int | None = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    explain: bool = False,
    accumulate: int = 0,
    data: str | None = None,
    **named: Any,
) -> GradReport:
    """The gradient of `expression` at `values` by autograd, checked against sympy.

    order > 1 gives every derivative up to that order of one variable; with several
    variables, order 2 is the Hessian. accumulate=K also calls backward K times without
    zeroing, to show the gradients adding up.
    """
    if not 1 <= order <= MAX_ORDER:
        raise GradcliError(f"--order must be between 1 and {MAX_ORDER}, not {order}")
    if method not in METHODS + ("all",):
        raise GradcliError(f"unknown method '{method}'", hint="choose " + ", ".join(METHODS) + " or all")
    if reduce not in ("sum", "mean"):
        raise GradcliError(f"unknown reduction '{reduce}'", hint="choose sum or mean")
    if not 0 <= accumulate <= MAX_ACCUMULATE:
        raise GradcliError(f"--accumulate must be between 1 and {MAX_ACCUMULATE}, not {accumulate}")
    if accumulate and order > 1:
        raise GradcliError("--accumulate and --order cannot be used together")
    st = _setup(expression, values, wrt=wrt, dtype=dtype, device=device, rtol=rtol, atol=atol, seed=seed,
                max_elements=max_elements, named=named, data=data)
    if order > 1:
        if len(st.wrt) > 1:
            if order == 2:
                return _explained(_hessian(st, check=check, reduce=reduce), st, explain)
            raise GradcliError(f"--order {order} with several variables: choose one with --wrt",
                               hint="--order 2 with several variables gives the Hessian")
        return _explained(_order(st, order, check=check, reduce=reduce), st, explain)
    if accumulate:
        method = "backward"

    methods = list(METHODS) if method == "all" else [method]
    runs = [gradient(st.fn, st.tensors, st.wrt, method=m, reduction=reduce) for m in methods]
    main = runs[0]
    reduction, warnings = _reduction_note(main.output, reduce)
    f_finite = bool(torch.isfinite(main.output).all())
    try:
        symbolic = (symbolic_gradients(st.parsed.components, st.parsed.shape, st.table, st.tensors, st.wrt, reduce)
                    if check else {})
    except RuntimeError as exc:  # torch failing on the float64 reference: report, don't crash
        raise torch_error(exc) from None
    results = [_checked(n, st, main.gradients[n], symbolic.get(n), f_finite=f_finite, value=st.tensors[n])
               for n in st.wrt]
    method_results = []
    if len(runs) > 1:
        for r in runs:
            agrees = all(
                torch.allclose(r.gradients[n].double().cpu(), main.gradients[n].double().cpu(),
                               rtol=st.rtol, atol=st.atol, equal_nan=True)
                for n in st.wrt
            )
            method_results.append(MethodResult(r.method, r.call, {n: tensor_data(r.gradients[n]) for n in st.wrt},
                                               agrees))
    extra = {}
    if accumulate:
        history = accumulate_by_backward(st.fn, st.tensors, st.wrt, accumulate, reduction=reduce)
        extra["accumulate"] = {
            "calls": accumulate,
            "grad_after_each_call": {n: [tensor_data(h[n]).to_dict() for h in history] for n in st.wrt},
            "after_zero_grad": {n: tensor_data(main.gradients[n]).to_dict() for n in st.wrt},
        }
        warnings.append(f"--accumulate {accumulate}: backward was called {accumulate} times on the same leaves "
                        "without zeroing, so .grad added up; zero it (x.grad.zero_()) between calls")
    report = _report(st, "grad", method, " | ".join(r.call for r in runs), main.output, results, check=check,
                     reduction=reduction, differentiated=main.differentiated, warnings=warnings,
                     methods=method_results, extra=extra)
    return _explained(report, st, explain)


def _order(st: _Setup, order: int, *, check: bool, reduce: str) -> GradReport:
    var = st.wrt[0]
    components = [expand_definitions(c) for c in st.parsed.components]
    if st.parsed.shape is not None or (st.tensors[var].dim() > 0 and not is_elementwise_in(components[0], st.table, var)):
        raise GradcliError(
            f"--order {order} needs a scalar {var} or an expression elementwise in {var}",
            hint="for second derivatives of a tensor function use gradcli hessian",
        )
    run = nth_derivatives(st.fn, st.tensors, var, order, reduction=reduce)
    reduction, warnings = _reduction_note(run.output, reduce)
    f_finite = bool(torch.isfinite(run.output).all())
    refs = symbolic_order(components[0], st.table, st.tensors, var, order, reduce) if check else [None] * order
    results = []
    for k in range(1, order + 1):
        results.append(_checked(str(k), st, run.results[str(k)], refs[k - 1], f_finite=f_finite,
                                label=f"order {k} ({'df/d' + var if k == 1 else f'd{k}f/d{var}^{k}'})"))
    return _report(st, "order", "grad", run.call, run.output, results, check=check, reduction=reduction,
                   warnings=warnings, extra={"order": order, "variable": var})


def _element_labels(st: _Setup, names: Sequence[str]) -> list[str]:
    labels = []
    for n in names:
        t = st.tensors[n]
        if t.dim() == 0:
            labels.append(n)
        else:
            labels += [f"{n}[{index_text(idx)}]" for idx in _indices(tuple(t.shape))]
    return labels


def _indices(shape: tuple[int, ...]):
    import itertools

    return itertools.product(*(range(n) for n in shape))


@_gc_paused
def hessian(expression: str, values: ValuesArg = (), *, wrt=None, dtype: str = "float32", device: str = "auto",
            reduce: str = "sum", check: bool = True, rtol=None, atol=None, seed=None,
            max_elements: int = DEFAULT_MAX_ELEMENTS, explain: bool = False, data: str | None = None, **named: Any) -> GradReport:
    """The Hessian of a scalar function over every element of the wrt variables."""
    st = _setup(expression, values, wrt=wrt, dtype=dtype, device=device, rtol=rtol, atol=atol, seed=seed,
                max_elements=max_elements, named=named, data=data)
    return _explained(_hessian(st, check=check, reduce=reduce), st, explain)


def _hessian(st: _Setup, *, check: bool, reduce: str) -> GradReport:
    n = sum(st.tensors[v].numel() for v in st.wrt)
    if n * n > st.max_elements:
        raise GradcliError(f"the Hessian would have {n * n:,} entries; the limit is {st.max_elements:,}",
                           hint="use grad, or vjp for Hessian-free products; --max-elements raises the limit")
    run = hessian_by_autograd(st.fn, st.tensors, st.wrt, reduction=reduce)
    reduction, warnings = _reduction_note(run.output, reduce)
    f_finite = bool(torch.isfinite(run.output).all())
    ref = symbolic_hessian(st.parsed.components, st.table, st.tensors, st.wrt, reduce) if check else None
    labels = _element_labels(st, st.wrt)
    h = run.results["hessian"]
    asym = float((h.double() - h.double().T).abs().max()) if h.numel() else 0.0
    if not math.isfinite(asym):  # a Hessian with NaN or inf in it: symmetry cannot be judged
        asym = None
    result = _checked("hessian", st, h, ref, f_finite=f_finite, rows=labels, columns=labels,
                      label="Hessian")
    if asym:
        warnings.append(f"the Hessian is symmetric to within {asym:.3g}")
    symmetric = None if asym is None else asym <= st.atol * max(1.0, float(h.abs().max()) if h.numel() else 1.0)
    return _report(st, "hessian", "hessian", run.call, run.output, [result], check=check, reduction=reduction,
                   warnings=warnings, extra={"symmetric": symmetric, "max_asymmetry": asym})


@_gc_paused
def jacobian(expression: str, values: ValuesArg = (), *, wrt=None, method: str = "auto", dtype: str = "float32",
             device: str = "auto", check: bool = True, rtol=None, atol=None, seed=None,
             max_elements: int = DEFAULT_MAX_ELEMENTS, explain: bool = False, data: str | None = None, **named: Any) -> GradReport:
    """The Jacobian of f with respect to each wrt variable: shape f.shape + variable.shape."""
    st = _setup(expression, values, wrt=wrt, dtype=dtype, device=device, rtol=rtol, atol=atol, seed=seed,
                max_elements=max_elements, named=named, data=data)
    valid = ("auto", "all") + JACOBIAN_METHODS
    if method not in valid:
        raise GradcliError(f"unknown method '{method}'", hint="choose " + ", ".join(valid))
    common = _common(st)
    out_shape = ((len(st.parsed.components),) if st.parsed.shape is not None else ()) + common
    if st.parsed.shape is not None:
        out_shape = tuple(st.parsed.shape) + common
    out_numel = _numel(out_shape)
    for n in st.wrt:
        size = out_numel * st.tensors[n].numel()
        if size > st.max_elements:
            raise GradcliError(
                f"the Jacobian with respect to {n} would have {size:,} entries "
                f"({list(out_shape)} outputs by {list(st.tensors[n].shape)} inputs); the limit is {st.max_elements:,}",
                hint="gradcli grad gives the gradient of the sum, gradcli vjp and jvp give products with "
                     "the Jacobian without building it; --max-elements raises the limit",
            )
    in_numel = sum(st.tensors[n].numel() for n in st.wrt)
    chosen = pick_jacobian_method(out_numel, in_numel) if method in ("auto", "all") else method
    note = []
    if method == "auto":
        note.append(f"method: {chosen} ({'forward' if chosen == 'fwd' else 'reverse'} mode: "
                    f"{in_numel} input(s), {out_numel} output(s))")
    methods = list(JACOBIAN_METHODS) if method == "all" else [chosen]
    runs = [jacobian_by_autograd(st.fn, st.tensors, st.wrt, method=m) for m in methods]
    main = runs[0]
    f_finite = bool(torch.isfinite(main.output).all())
    refs = symbolic_jacobians(st.parsed.components, st.parsed.shape, st.table, st.tensors, st.wrt) if check else {}
    out_labels = [f"f[{','.join(map(str, i))}]" for i in _indices(out_shape)] if out_shape else ["f"]
    results = []
    for n in st.wrt:
        two_d = len(out_shape) <= 1 and st.tensors[n].dim() <= 1
        results.append(_checked(n, st, main.results[n], refs.get(n), f_finite=f_finite, value=st.tensors[n],
                                rows=out_labels if two_d else None,
                                columns=_element_labels(st, [n]) if two_d else None))
    method_results = []
    if len(runs) > 1:
        for r in runs:
            agrees = all(torch.allclose(r.results[n].double().cpu(), main.results[n].double().cpu(),
                                        rtol=st.rtol, atol=st.atol, equal_nan=True) for n in st.wrt)
            method_results.append(MethodResult(r.method, r.call, {n: tensor_data(r.results[n]) for n in st.wrt},
                                               agrees))
    report = _report(st, "jacobian", chosen if method != "all" else "all", " | ".join(r.call for r in runs),
                     main.output, results, check=check, warnings=note, methods=method_results)
    return _explained(report, st, explain)


def _vector(st: _Setup, vector: Any, name: str = "v") -> torch.Tensor:
    if vector is None:
        if name in st.extra_specs:
            spec = st.extra_specs[name]
        else:
            raise GradcliError(f"no vector: give one as {name}=VALUE",
                               hint=f"for example {name}=ones(3); if the expression has its own variable "
                                    f"{name}, use --vector VALUE")
    else:
        spec = vector if isinstance(vector, ValueSpec) else parse_value(vector if isinstance(vector, str) else repr(vector))
    return st.tensor(spec, name)


@_gc_paused
def vjp(expression: str, values: ValuesArg = (), *, vector: Any = None, wrt=None, dtype: str = "float32",
        device: str = "auto", check: bool = True, rtol=None, atol=None, seed=None,
        max_elements: int = DEFAULT_MAX_ELEMENTS, explain: bool = False, data: str | None = None, **named: Any) -> GradReport:
    """vᵀ·J for each wrt variable, by f.backward(v). v comes from `vector` or a value named v."""
    st = _setup(expression, values, wrt=wrt, dtype=dtype, device=device, rtol=rtol, atol=atol, seed=seed,
                max_elements=max_elements, vector_name="v" if vector is None else None,
                named=named, data=data)
    v = _vector(st, vector)
    run = vjp_by_autograd(st.fn, st.tensors, st.wrt, v)
    f_finite = bool(torch.isfinite(run.output).all())
    refs = symbolic_vjps(st.parsed.components, st.parsed.shape, st.table, st.tensors, st.wrt, v) if check else {}
    results = [_checked(n, st, run.results[n], refs.get(n), f_finite=f_finite, value=st.tensors[n]) for n in st.wrt]
    return _explained(_report(st, "vjp", "backward", run.call, run.output, results, check=check, vector=v),
                      st, explain)


@_gc_paused
def jvp(expression: str, values: ValuesArg = (), *, vector: Any = None, wrt=None, dtype: str = "float32",
        device: str = "auto", check: bool = True, rtol=None, atol=None, seed=None,
        max_elements: int = DEFAULT_MAX_ELEMENTS, explain: bool = False, data: str | None = None, **named: Any) -> GradReport:
    """J·v along one input variable, by forward mode (torch.func.jvp)."""
    st = _setup(expression, values, wrt=wrt, dtype=dtype, device=device, rtol=rtol, atol=atol, seed=seed,
                max_elements=max_elements, vector_name="v" if vector is None else None,
                named=named, data=data)
    if len(st.wrt) != 1:
        raise GradcliError(f"jvp moves one input along v; these have several ({', '.join(st.wrt)})",
                           hint="choose the input with --wrt")
    var = st.wrt[0]
    v = _vector(st, vector)
    run = jvp_by_autograd(st.fn, st.tensors, var, v)
    f_finite = bool(torch.isfinite(run.output).all())
    ref = symbolic_jvp(st.parsed.components, st.parsed.shape, st.table, st.tensors, var, v) if check else None
    result = _checked(var, st, run.results[var], ref, f_finite=f_finite, value=st.tensors[var])
    return _explained(_report(st, "jvp", "fwd", run.call, run.output, [result], check=check, vector=v),
                      st, explain)
