"""gradcli vjp and gradcli jvp: products with the Jacobian that never build it."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch

from gradcli.commands.assemble import (
    build_report,
    checked_result,
    explained,
)
from gradcli.core.autodiff import jvp as jvp_by_autograd
from gradcli.core.autodiff import vjp as vjp_by_autograd
from gradcli.core.check import check_mode, uses_symbolic
from gradcli.core.limits import DEFAULT_MAX_ELEMENTS
from gradcli.core.numeric import Probe, jvp_probe, vjp_probe
from gradcli.core.reference import (
    symbolic_jvp,
    symbolic_vjps,
)
from gradcli.core.session import Session, float64_function, gc_paused, prepare
from gradcli.core.values import ValuesArg, ValueSpec, parse_value
from gradcli.errors import GradcliError
from gradcli.report import (
    GradReport,
)


def _vjp_probe(st: Session, name: str, v: torch.Tensor) -> Probe:
    return vjp_probe(float64_function(st), st.tensors, name, v)


def vector_tensor(st: Session, vector: Any, name: str = "v") -> torch.Tensor:
    if vector is None:
        if name in st.extra_specs:
            spec = st.extra_specs[name]
        else:
            raise GradcliError(f"no vector: give one as {name}=VALUE",
                               hint=f"for example {name}=ones(3); if the expression has its own variable "
                                    f"{name}, use --vector VALUE")
    else:
        spec = (vector if isinstance(vector, ValueSpec)
                else parse_value(vector if isinstance(vector, str) else repr(vector)))
    return st.tensor(spec, name)


@gc_paused
def vjp(expression: str, values: ValuesArg = (), *, vector: Any = None, wrt: str | Sequence[str] | None = None,
        dtype: str = "float32", device: str = "auto", check: bool | str = True,
        rtol: float | None = None, atol: float | None = None, seed: int | None = None,
        max_elements: int = DEFAULT_MAX_ELEMENTS, explain: bool = False, data: str | None = None,
        **named: Any) -> GradReport:
    """vᵀ·J for each wrt variable, by f.backward(v). v comes from `vector` or a value named v."""
    st = prepare(expression, values, wrt=wrt, dtype=dtype, device=device, rtol=rtol, atol=atol, seed=seed,
                max_elements=max_elements, vector_name="v" if vector is None else None,
                named=named, data=data)
    v = vector_tensor(st, vector)
    run = vjp_by_autograd(st.fn, st.tensors, st.wrt, v)
    f_finite = bool(torch.isfinite(run.output).all())
    mode = check_mode(check)
    refs = (symbolic_vjps(st.parsed.components, st.parsed.shape, st.table, st.tensors, st.wrt, v)
            if uses_symbolic(mode) else {})
    results = [checked_result(n, st, run.results[n], refs.get(n), f_finite=f_finite, value=st.tensors[n], mode=mode,
                              probe=functools.partial(_vjp_probe, st, n, v))
               for n in st.wrt]
    return explained(build_report(st, "vjp", "backward", run.call, run.output, results, check=check, vector=v),
                      st, explain)


@gc_paused
def jvp(expression: str, values: ValuesArg = (), *, vector: Any = None, wrt: str | Sequence[str] | None = None,
        dtype: str = "float32", device: str = "auto", check: bool | str = True,
        rtol: float | None = None, atol: float | None = None, seed: int | None = None,
        max_elements: int = DEFAULT_MAX_ELEMENTS, explain: bool = False, data: str | None = None,
        **named: Any) -> GradReport:
    """J·v along one input variable, by forward mode (torch.func.jvp)."""
    st = prepare(expression, values, wrt=wrt, dtype=dtype, device=device, rtol=rtol, atol=atol, seed=seed,
                max_elements=max_elements, vector_name="v" if vector is None else None,
                named=named, data=data)
    if len(st.wrt) != 1:
        raise GradcliError(f"jvp moves one input along v; these have several ({', '.join(st.wrt)})",
                           hint="choose the input with --wrt")
    var = st.wrt[0]
    v = vector_tensor(st, vector)
    run = jvp_by_autograd(st.fn, st.tensors, var, v)
    f_finite = bool(torch.isfinite(run.output).all())
    mode = check_mode(check)
    ref = (symbolic_jvp(st.parsed.components, st.parsed.shape, st.table, st.tensors, var, v) if uses_symbolic(mode)
           else None)
    result = checked_result(var, st, run.results[var], ref, f_finite=f_finite, value=st.tensors[var], mode=mode,
                            probe=lambda: jvp_probe(float64_function(st), st.tensors, var, v))
    return explained(build_report(st, "jvp", "fwd", run.call, run.output, [result], check=check, vector=v),
                      st, explain)
