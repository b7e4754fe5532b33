"""gradcli hessian: the Hessian of a scalar f over the --wrt variables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from gradcli.commands.assemble import (
    build_report,
    checked_result,
    element_labels,
    explained,
    reduction_note,
)
from gradcli.core.autodiff import hessian as hessian_by_autograd
from gradcli.core.check import check_mode, uses_symbolic
from gradcli.core.limits import DEFAULT_MAX_ELEMENTS
from gradcli.core.numeric import Probe, hessian_probe
from gradcli.core.reference import (
    symbolic_hessian,
)
from gradcli.core.session import Session, float64_function, gc_paused, prepare
from gradcli.core.values import ValuesArg
from gradcli.errors import GradcliError
from gradcli.report import (
    GradReport,
)


@gc_paused
def hessian(expression: str, values: ValuesArg = (), *, wrt: str | Sequence[str] | None = None,
            dtype: str = "float32", device: str = "auto", reduce: str = "sum", check: bool | str = True,
            rtol: float | None = None, atol: float | None = None, seed: int | None = None,
            max_elements: int = DEFAULT_MAX_ELEMENTS, explain: bool = False, data: str | None = None,
            **named: Any) -> GradReport:
    """The Hessian of a scalar function over every element of the wrt variables."""
    st = prepare(expression, values, wrt=wrt, dtype=dtype, device=device, rtol=rtol, atol=atol, seed=seed,
                max_elements=max_elements, named=named, data=data)
    return explained(hessian_of(st, check=check, reduce=reduce), st, explain)


def hessian_of(st: Session, *, check: bool | str, reduce: str) -> GradReport:
    n = sum(st.tensors[v].numel() for v in st.wrt)
    if n * n > st.max_elements:
        raise GradcliError(f"the Hessian would have {n * n:,} entries; the limit is {st.max_elements:,}",
                           hint="use grad, or vjp for Hessian-free products; --max-elements raises the limit")
    run = hessian_by_autograd(st.fn, st.tensors, st.wrt, reduction=reduce)
    reduction, warnings = reduction_note(run.output, reduce)
    f_finite = bool(torch.isfinite(run.output).all())
    mode = check_mode(check)
    ref = symbolic_hessian(st.parsed.components, st.table, st.tensors, st.wrt, reduce) if uses_symbolic(mode) else None
    labels = element_labels(st, st.wrt)
    h = run.results["hessian"]
    largest = float((h.double() - h.double().T).abs().max()) if h.numel() else 0.0
    # A Hessian with NaN or inf in it: symmetry cannot be judged.
    asym = largest if math.isfinite(largest) else None
    def probe() -> Probe:
        return hessian_probe(float64_function(st), st.tensors, st.wrt, reduction=reduce)
    result = checked_result("hessian", st, h, ref, f_finite=f_finite, rows=labels, columns=labels,
                            label="Hessian", mode=mode, probe=probe)
    if asym:
        warnings.append(f"the Hessian is symmetric to within {asym:.3g}")
    symmetric = None if asym is None else asym <= st.atol * max(1.0, float(h.abs().max()) if h.numel() else 1.0)
    call = run.call
    if st.wrt != ["x"]:  # autodiff names its flat input x: say which variables it holds
        flat = ", ".join(f"{n}.reshape(-1)" for n in st.wrt)
        call = f"{run.call.replace('(f, x)', '(f, xs)')} with xs = torch.cat([{flat}])" \
            if "(f, x)" in run.call else run.call
    return build_report(st, "hessian", "hessian", call, run.output, [result], check=check, reduction=reduction,
                   warnings=warnings, extra={"symmetric": symmetric, "max_asymmetry": asym})


