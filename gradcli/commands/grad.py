"""gradcli grad: the gradient, every derivative up to --order, and --accumulate."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch

from gradcli.commands.assemble import (
    MAX_ACCUMULATE,
    MAX_ORDER,
    build_report,
    checked_result,
    explained,
    reduction_note,
    tensor_data,
)
from gradcli.commands.hessian import hessian_of
from gradcli.core.autodiff import (
    METHODS,
    gradient,
    nth_derivatives,
    torch_error,
)
from gradcli.core.autodiff import accumulate as accumulate_by_backward
from gradcli.core.check import check_mode, uses_symbolic
from gradcli.core.limits import DEFAULT_MAX_ELEMENTS, WORK_FACTOR
from gradcli.core.numeric import Probe, gradient_probe, order_probe
from gradcli.core.reference import (
    is_elementwise_in,
    symbolic_gradients,
    symbolic_order,
)
from gradcli.core.session import Session, float64_function, gc_paused, prepare
from gradcli.core.sympy_functions import expand_definitions
from gradcli.core.values import ValuesArg
from gradcli.errors import GradcliError
from gradcli.report import (
    GradReport,
    MethodResult,
)


@gc_paused
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
    check: bool | str = True,
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
    st = prepare(expression, values, wrt=wrt, dtype=dtype, device=device, rtol=rtol, atol=atol, seed=seed,
                max_elements=max_elements, named=named, data=data)
    if order > 1:
        if len(st.wrt) > 1:
            if order == 2:
                return explained(hessian_of(st, check=check, reduce=reduce), st, explain)
            raise GradcliError(f"--order {order} with several variables: choose one with --wrt",
                               hint="--order 2 with several variables gives the Hessian")
        return explained(derivatives_of_order(st, order, check=check, reduce=reduce), st, explain)
    if accumulate:
        method = "backward"

    mode = check_mode(check)
    methods = list(METHODS) if method == "all" else [method]
    runs = [gradient(st.fn, st.tensors, st.wrt, method=m, reduction=reduce) for m in methods]
    main = runs[0]
    reduction, warnings = reduction_note(main.output, reduce)
    f_finite = bool(torch.isfinite(main.output).all())
    try:
        symbolic = (symbolic_gradients(st.parsed.components, st.parsed.shape, st.table, st.tensors, st.wrt, reduce)
                    if uses_symbolic(mode) else {})
    except RuntimeError as exc:  # torch failing on the float64 reference: report, don't crash
        raise torch_error(exc) from None
    results = [checked_result(n, st, main.gradients[n], symbolic.get(n), f_finite=f_finite, value=st.tensors[n],
                              mode=mode, probe=functools.partial(_gradient_probe, st, n, reduce))
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
    report = build_report(st, "grad", method, " | ".join(r.call for r in runs), main.output, results, check=check,
                     reduction=reduction, differentiated=main.differentiated, warnings=warnings,
                     methods=method_results, extra=extra)
    return explained(report, st, explain)


def _gradient_probe(st: Session, name: str, reduce: str) -> Probe:
    return gradient_probe(float64_function(st), st.tensors, name, reduction=reduce)


def derivatives_of_order(st: Session, order: int, *, check: bool | str, reduce: str) -> GradReport:
    var = st.wrt[0]
    components = [expand_definitions(c) for c in st.parsed.components]
    if st.parsed.shape is not None or (st.tensors[var].dim() > 0
                                       and not is_elementwise_in(components[0], st.table, var)):
        raise GradcliError(
            f"--order {order} needs a scalar {var} or an expression elementwise in {var}",
            hint="for second derivatives of a tensor function use gradcli hessian",
        )
    run = nth_derivatives(st.fn, st.tensors, var, order, reduction=reduce,
                          max_work=WORK_FACTOR * st.max_elements)
    reduction, warnings = reduction_note(run.output, reduce)
    f_finite = bool(torch.isfinite(run.output).all())
    mode = check_mode(check)
    refs = (symbolic_order(components[0], st.table, st.tensors, var, order, reduce) if uses_symbolic(mode)
            else [None] * order)
    fn64 = float64_function(st) if mode != "none" else None
    results = []
    for k in range(1, order + 1):
        probe = (functools.partial(order_probe, fn64, st.tensors, var, k, reduction=reduce)
                 if fn64 is not None else None)
        results.append(checked_result(str(k), st, run.results[str(k)], refs[k - 1], f_finite=f_finite, mode=mode,
                                      probe=probe,
                                      label=f"order {k} ({'df/d' + var if k == 1 else f'd{k}f/d{var}^{k}'})"))
    return build_report(st, "order", "grad", run.call, run.output, results, check=check, reduction=reduction,
                   warnings=warnings, extra={"order": order, "variable": var})


