"""What the derivative commands share: results checked against the reference, reports built."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from gradcli.core.autodiff import not_finite_cause, torch_error
from gradcli.core.check import Arbitration, Verdict, arbitrate, check_mode, compare
from gradcli.core.lower import (
    to_source,
)
from gradcli.core.numeric import Probe
from gradcli.core.parse import (
    index_text,
)
from gradcli.core.reference import (
    SymbolicGradient,
)
from gradcli.core.session import Session, float64_function
from gradcli.report import (
    GradReport,
    MethodResult,
    TensorData,
    VariableResult,
)
from gradcli.version import __version__


def tensor_data(t: torch.Tensor) -> TensorData:
    t = t.detach()
    return TensorData(t.to(device="cpu", dtype=torch.float64).numpy(), list(t.shape),
                      str(t.dtype).removeprefix("torch."), device=str(t.device))



def checked_result(name: str, st: Session, result: torch.Tensor, ref: SymbolicGradient | None, *, f_finite: bool,
                   value: torch.Tensor | None = None, mode: str = "auto", probe: Callable[[], Probe] | None = None,
                   **labels: Any) -> VariableResult:
    """A result and its verdict from the routes `mode` asks for (core/check.py's arbitrate).

    ref: sympy's derivative (None where the symbolic route did not run); probe: builds the
    finite-difference estimates of the same derivative (core/numeric.py), only when needed.
    """
    shown_value = tensor_data(value) if value is not None else None
    if mode == "none" or (ref is None and probe is None):
        return VariableResult(name, shown_value, tensor_data(result), None, None, Verdict.SKIPPED, **labels)
    verdict = route_verdict(st, st.tensors, result, ref, f_finite=f_finite, mode=mode, probe=probe)
    return VariableResult(name, shown_value, tensor_data(result), ref.formula if ref is not None else None,
                          tensor_data(ref.value) if ref is not None and ref.value is not None else None,
                          verdict.status, verdict.max_abs_error, verdict.max_rel_error, verdict.note,
                          routes=verdict.routes, erred=verdict.erred, **labels)


def route_verdict(st: Session, point: Mapping[str, torch.Tensor], result: torch.Tensor, ref: SymbolicGradient | None,
                  *, f_finite: bool, mode: str, probe: Callable[[], Probe] | None) -> Arbitration:
    """The verdict of the routes `mode` asks for, at `point` (core/check.py's arbitrate)."""
    cmp = compare(result, ref, f_finite=f_finite, rtol=st.rtol, atol=st.atol) if ref is not None else None
    built: list[Probe] = []

    def estimates() -> Probe:
        if not built:
            assert probe is not None
            built.append(probe())
        return built[0]

    numeric = (lambda: estimates().judge(result, rtol=st.rtol, atol=st.atol)) if probe is not None else None
    of_sympy = None
    if probe is not None and ref is not None and ref.value is not None:
        reference = ref.value
        of_sympy = lambda: estimates().judge(reference, rtol=st.rtol, atol=st.atol)  # noqa: E731
    try:
        return arbitrate(mode, cmp, numeric, of_sympy, rtol=st.rtol, atol=st.atol,
                         same_f=functools.partial(same_f, st, point))
    except RuntimeError as exc:  # torch failing on a float64 evaluation: report, don't crash
        raise torch_error(exc) from None



def same_f(st: Session, point: Mapping[str, torch.Tensor]) -> bool | None:
    """Does torch's f (float64) equal sympy's own evaluation of f (evalf, no lowering table) here?

    None where sympy cannot evaluate it alone: tensor variables, or a function with no numeric
    evaluation in sympy. Used only to settle a disagreement, so its cost does not matter.
    """
    import sympy

    if any(t.dim() for t in point.values()):
        return _same_f_in_matrix_form(st, point)
    subs = {var.symbol: sympy.Float(float(point[name]), 30) for name, var in st.parsed.variables.items()}
    try:
        exact = [sympy.N(c.xreplace(subs), 20) for c in st.parsed.components]
        if not all(v.is_real and v.is_finite for v in exact):
            return None
        expected = torch.tensor([float(v) for v in exact], dtype=torch.float64)
        with torch.no_grad():
            got = float64_function(st)({n: t.double().cpu() for n, t in point.items()}).reshape(-1)
    except (TypeError, ValueError, ArithmeticError, RuntimeError, AttributeError):
        return None
    if got.shape != expected.shape:
        return None
    return bool(torch.allclose(got, expected, rtol=1e-9, atol=1e-12))


def _same_f_in_matrix_form(st: Session, point: Mapping[str, torch.Tensor]) -> bool | None:
    """same_f for tensor variables: f in matrix form (numpy, float64), where it has one."""
    from gradcli.core import matrix_form

    expected = matrix_form.output_value(st.parsed.components, st.parsed.shape, st.table, point)
    if expected is None:
        return None
    with torch.no_grad():
        got = float64_function(st)({n: t.double().cpu() for n, t in point.items()}).reshape(-1)
    if tuple(got.shape) != expected.shape:
        return None
    return bool(torch.allclose(got, torch.from_numpy(expected), rtol=1e-9, atol=1e-12))


def build_report(st: Session, command: str, method: str, call: str, output: torch.Tensor, results: list[VariableResult],
            *, check: bool | str, reduction: str | None = None, differentiated: torch.Tensor | None = None,
            warnings: list[str] | None = None, methods: list[MethodResult] | None = None,
            vector: torch.Tensor | None = None, extra: dict[str, Any] | None = None) -> GradReport:
    warnings = list(st.notes) + list(warnings or [])
    if not bool(torch.isfinite(output).all()):
        cause = not_finite_cause(st.parsed.typed_components, st.parsed.shape, st.table, st.tensors)
        if cause is None:
            warnings.append("f is not finite at this point: outside the function's domain, or beyond what "
                            f"{st.dtype} can hold")
        else:
            warnings.append(f"f is not finite at this point: {cause}")
            for r in results:  # each verdict says why, in the same words (a table prints them once)
                if r.status is Verdict.NOT_FINITE:
                    r.note = warnings[-1]
    return GradReport(
        expression=st.expression, parsed=st.parsed.pretty(), dtype=st.dtype, device=str(st.device),
        device_note=st.device_note, method=method, call=call, f=tensor_data(output), reduction=reduction,
        differentiated=tensor_data(differentiated) if differentiated is not None else None,
        variables=results, values={n: tensor_data(t) for n, t in st.tensors.items()}, wrt=list(st.wrt),
        checked=check_mode(check) != "none", check_mode=check_mode(check),
        rtol=st.rtol, atol=st.atol, methods=methods or [], seed=st.seed, warnings=warnings,
        command=command, version=__version__, vector=tensor_data(vector) if vector is not None else None,
        extra=extra or {},
    )


def reduction_note(output: torch.Tensor, reduce: str) -> tuple[str | None, list[str]]:
    if output.dim() == 0:
        return None, []
    return reduce, [f"f has shape {list(output.shape)}: its {reduce} was differentiated "
                    f"(backward needs a scalar; --reduce chooses sum or mean)"]



MAX_ORDER = 50  # --order beyond this is refused: no one needs the 51st derivative
MAX_ACCUMULATE = 1000

# The pitfall each command's seeds teach, said once under --explain.
PITFALLS = {
    "grad": "gradients accumulate: .grad adds up over backward calls unless zeroed (x.grad.zero_()); "
            "gradcli gives every method fresh leaves",
    "order": "higher derivatives need create_graph=True, so each gradient is itself differentiable",
    "hessian": "a Hessian is the Jacobian of the gradient: it needs create_graph=True on the way",
    "jacobian": "backward() needs a scalar: a Jacobian is one backward per output row (retain_graph=True), "
                "or a vectorised jacrev/jacfwd",
    "vjp": "backward() on a non-scalar output needs a vector v of the output's shape: f.backward(v) gives vᵀ·J",
    "jvp": "forward mode pushes a direction v through f alongside its value: one pass gives J·v",
}


def explained(report: GradReport, st: Session, explain: bool) -> GradReport:
    """Add the account of how the result was computed (--explain)."""
    if not explain:
        return report
    code = [to_source(c, st.table) for c in st.parsed.typed_components]
    torch_code = code[0] if st.parsed.shape is None else "torch.stack([" + ", ".join(code) + "])"
    evaluated = st.parsed.pretty(evaluated=True)
    rewritten = "" if evaluated == st.parsed.pretty() else (
        f"; sympy evaluates it to {evaluated}, which only the symbolic reference differentiates")
    lines = [
        ("parsed", f"f = {st.parsed.pretty()}  (read into sympy by a whitelist parser: no Python was run; "
                   f"torch computes it as typed, so an overflow or a 0/0 in it shows{rewritten})"),
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
    numeric = [v for v in report.variables if "numeric" in v.routes]
    if numeric:
        modes = {str(v.routes["numeric"].get("mode")) for v in numeric}
        how = ("entry by entry" if modes == {"entries"} else
               "along seeded random directions (v·grad, J v, v·H v), so the cost does not grow with the entries")
        lines.append(("numeric", "central differences of f as typed, in float64, with Richardson extrapolation and "
                                 f"an error estimate per entry, compared {how}; tolerance: the dtype's plus 4 times "
                                 "the error estimate"))
    lines.append(("pitfall", PITFALLS[report.command]))
    report.explain = lines
    return report



def element_labels(st: Session, names: Sequence[str]) -> list[str]:
    labels = []
    for n in names:
        t = st.tensors[n]
        if t.dim() == 0:
            labels.append(n)
        else:
            labels += [f"{n}[{index_text(idx)}]" for idx in element_indices(tuple(t.shape))]
    return labels


def element_indices(shape: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    import itertools

    return itertools.product(*(range(n) for n in shape))


