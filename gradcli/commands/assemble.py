"""What the derivative commands share: results checked against the reference, reports built."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from gradcli.core.check import Verdict, compare
from gradcli.core.lower import (
    to_source,
)
from gradcli.core.parse import (
    index_text,
)
from gradcli.core.reference import (
    SymbolicGradient,
)
from gradcli.core.session import Session
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
             value: torch.Tensor | None = None, **labels: Any) -> VariableResult:
    """A result and its verdict against the symbolic reference (None: --no-check)."""
    shown_value = tensor_data(value) if value is not None else None
    if ref is None:
        return VariableResult(name, shown_value, tensor_data(result), None, None, Verdict.SKIPPED, **labels)
    cmp = compare(result, ref, f_finite=f_finite, rtol=st.rtol, atol=st.atol)
    return VariableResult(name, shown_value, tensor_data(result), ref.formula,
                          tensor_data(ref.value) if ref.value is not None else None,
                          cmp.status, cmp.max_abs_error, cmp.max_rel_error, cmp.note, **labels)



def build_report(st: Session, command: str, method: str, call: str, output: torch.Tensor, results: list[VariableResult],
            *, check: bool, reduction: str | None = None, differentiated: torch.Tensor | None = None,
            warnings: list[str] | None = None, methods: list[MethodResult] | None = None,
            vector: torch.Tensor | None = None, extra: dict[str, Any] | None = None) -> GradReport:
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


