"""gradcli eval and gradcli graph: the value alone, and the autograd graph that computes it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from gradcli.commands.assemble import (
    build_report,
    tensor_data,
)
from gradcli.core.autodiff import (
    autograd_graph,
    torch_error,
)
from gradcli.core.limits import DEFAULT_MAX_ELEMENTS
from gradcli.core.lower import (
    compile_components,
    to_source,
)
from gradcli.core.session import gc_paused, prepare
from gradcli.core.values import ValuesArg, resolve_dtype
from gradcli.report import (
    GradReport,
    GraphReport,
)
from gradcli.version import __version__


@gc_paused
def evaluate(expression: str, values: ValuesArg = (), *, dtype: str = "float32", device: str = "auto",
             seed: int | None = None, max_elements: int = DEFAULT_MAX_ELEMENTS, data: str | None = None,
             **named: Any) -> GradReport:
    """The value of f alone, under torch.no_grad(): no graph is recorded."""
    st = prepare(expression, values, wrt=None, dtype=dtype, device=device, rtol=None, atol=None, seed=seed,
                max_elements=max_elements, named=named, data=data, needs_variables=False)
    try:
        with torch.no_grad():
            out = st.fn(st.tensors)
    except (RuntimeError, TypeError, ValueError, IndexError, NotImplementedError) as exc:
        raise torch_error(exc) from None
    st.wrt = []
    note = (f"computed under torch.no_grad(): no graph was recorded "
            f"(f.requires_grad is {out.requires_grad}, f.grad_fn is {out.grad_fn})")
    return build_report(st, "eval", "no_grad", "with torch.no_grad(): f = ...", out, [], check=False, warnings=[note])


@gc_paused
def graph(expression: str, values: ValuesArg = (), *, wrt: str | Sequence[str] | None = None,
          dtype: str = "float32", device: str = "auto", seed: int | None = None,
          max_elements: int = DEFAULT_MAX_ELEMENTS, data: str | None = None, **named: Any) -> GraphReport:
    """The autograd graph of f, from f.grad_fn to the leaves, after backward."""
    st = prepare(expression, values, wrt=wrt, dtype=dtype, device=device, rtol=None, atol=None, seed=seed,
                max_elements=max_elements, named=named, data=data)
    trace: list[Any] = []
    fn = compile_components(st.parsed.typed_components, st.parsed.shape, st.table, dtype=resolve_dtype(dtype),
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


