"""gradcli jacobian: df/dx of shape f.shape + x.shape, by the chosen autograd route."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch

from gradcli.commands.assemble import (
    build_report,
    checked_result,
    element_indices,
    element_labels,
    explained,
    tensor_data,
)
from gradcli.core.autodiff import (
    JACOBIAN_METHODS,
    diagonal_jacobian,
    forward_nodes,
    pick_jacobian_method,
)
from gradcli.core.autodiff import jacobian as jacobian_by_autograd
from gradcli.core.check import check_mode, uses_symbolic
from gradcli.core.limits import DEFAULT_MAX_ELEMENTS, WORK_FACTOR, size_text
from gradcli.core.numeric import Probe, jacobian_probe
from gradcli.core.reference import (
    is_elementwise_in,
    numel,
    symbolic_gradients,
    symbolic_jacobians,
)
from gradcli.core.session import Session, common_shape, float64_function, gc_paused, prepare
from gradcli.core.sympy_functions import expand_definitions
from gradcli.core.values import ValuesArg
from gradcli.errors import GradcliError
from gradcli.report import (
    GradReport,
    JacobianMatrix,
    MethodResult,
    TensorData,
    VariableResult,
)


@gc_paused
def jacobian(expression: str, values: ValuesArg = (), *, wrt: str | Sequence[str] | None = None,
             method: str = "auto", dtype: str = "float32", device: str = "auto", check: bool | str = True,
             rtol: float | None = None, atol: float | None = None, seed: int | None = None,
             max_elements: int = DEFAULT_MAX_ELEMENTS, explain: bool = False, data: str | None = None,
             **named: Any) -> GradReport:
    """The Jacobian of f with respect to each wrt variable: shape f.shape + variable.shape."""
    st = prepare(expression, values, wrt=wrt, dtype=dtype, device=device, rtol=rtol, atol=atol, seed=seed,
                max_elements=max_elements, named=named, data=data)
    valid = ("auto", "all") + JACOBIAN_METHODS
    if method not in valid:
        raise GradcliError(f"unknown method '{method}'", hint="choose " + ", ".join(valid))
    common = common_shape(st)
    out_shape = ((len(st.parsed.components),) if st.parsed.shape is not None else ()) + common
    if st.parsed.shape is not None:
        out_shape = tuple(st.parsed.shape) + common
    out_numel = numel(out_shape)
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
    components = [expand_definitions(c) for c in st.parsed.components]
    if method == "auto" and st.parsed.shape is None and all(
            st.tensors[n].dim() > 0 and tuple(st.tensors[n].shape) == out_shape
            and is_elementwise_in(components[0], st.table, n) for n in st.wrt):
        chosen = "diagonal"
        note.append("method: diagonal (f is elementwise in " + ", ".join(st.wrt) + ": one backward gives the "
                    "diagonal; --method rev or fwd computes the dense Jacobian)")
    elif method == "auto":
        note.append(f"method: {chosen} ({'forward' if chosen == 'fwd' else 'reverse'} mode: "
                    f"{in_numel} input(s), {out_numel} output(s))")
    methods = list(JACOBIAN_METHODS) if method == "all" else [chosen]
    if chosen != "diagonal":
        _refuse_dense(st, methods, out_numel)
    runs = ([diagonal_jacobian(st.fn, st.tensors, st.wrt)] if chosen == "diagonal"
            else [jacobian_by_autograd(st.fn, st.tensors, st.wrt, method=m) for m in methods])
    main = runs[0]
    f_finite = bool(torch.isfinite(main.output).all())
    mode = check_mode(check)
    refs = (symbolic_jacobians(st.parsed.components, st.parsed.shape, st.table, st.tensors, st.wrt)
            if uses_symbolic(mode) else {})
    out_labels = [f"f[{','.join(map(str, i))}]" for i in element_indices(out_shape)] if out_shape else ["f"]
    results = []
    for n in st.wrt:
        two_d = len(out_shape) <= 1 and st.tensors[n].dim() <= 1
        results.append(checked_result(n, st, main.results[n], refs.get(n), f_finite=f_finite, value=st.tensors[n],
                                rows=out_labels if two_d else None,
                                columns=element_labels(st, [n]) if two_d else None, mode=mode,
                                probe=functools.partial(_jacobian_probe, st, n)))
    method_results = []
    if len(runs) > 1:
        for r in runs:
            agrees = all(torch.allclose(r.results[n].double().cpu(), main.results[n].double().cpu(),
                                        rtol=st.rtol, atol=st.atol, equal_nan=True) for n in st.wrt)
            method_results.append(MethodResult(r.method, r.call, {n: tensor_data(r.results[n]) for n in st.wrt},
                                               agrees))
    report = build_report(st, "jacobian", chosen if method != "all" else "all", " | ".join(r.call for r in runs),
                     main.output, results, check=check, warnings=note, methods=method_results)
    if chosen == "diagonal" and check:
        # f elementwise in each variable: the diagonal is the gradient of f's sum, in sympy's words too
        diagonal = symbolic_gradients(st.parsed.components, None, st.table, st.tensors, st.wrt, "sum")
        for v in results:
            if v.formula is not None and diagonal[v.name].formula != "?":
                v.formula = f"the diagonal: {diagonal[v.name].formula}"
    if len(out_shape) <= 1 and all(st.tensors[n].dim() <= 1 for n in st.wrt):
        formulas = _part_formulas(st, out_labels) if check else None
        if formulas is not None:
            # each variable's Jacobian in sympy's words: its column (a scalar) or rows (a vector) of formulas
            for column, v in enumerate(results):
                v.formula = ("[" + ", ".join(row[column] for row in formulas) + "]" if out_shape
                             else formulas[0][column])
        report.matrix = _assembled(st, results, out_labels, formulas)
    return explained(report, st, explain)


# Each entry's formula is worked out for a matrix a table can show (larger ones have the values only).
_FORMULA_ROWS, _FORMULA_COLUMNS = 16, 10


def _assembled(st: Session, results: list[VariableResult], rows: list[str],
               formulas: list[list[str]] | None) -> JacobianMatrix:
    """The m x n Jacobian over every wrt variable: each variable's Jacobian as its columns."""
    import numpy as np

    m = len(rows)

    def columns(t: TensorData) -> np.ndarray:
        return t.array.reshape(m, -1)
    autograd = np.concatenate([columns(v.gradient) for v in results], axis=1)
    symbolic = None
    if all(v.symbolic is not None for v in results):
        symbolic = np.concatenate([columns(v.symbolic) for v in results if v.symbolic is not None], axis=1)
    dtype = results[0].gradient.dtype
    return JacobianMatrix(
        rows=rows, columns=element_labels(st, st.wrt), formula_columns=list(st.wrt),
        autograd=TensorData(autograd, list(autograd.shape), dtype),
        symbolic=TensorData(symbolic, list(symbolic.shape), "float64") if symbolic is not None else None,
        formulas=formulas)


def _part_formulas(st: Session, rows: list[str]) -> list[list[str]] | None:
    """sympy's derivative of each output by each variable (by a vector variable, the row of
    formulas sympy gives for it), where f's outputs are the parts of a list, or f itself; None
    otherwise, and for a matrix larger than a table shows."""
    if len(rows) > _FORMULA_ROWS or len(st.wrt) > _FORMULA_COLUMNS:
        return None
    if st.parsed.shape is None and len(rows) != 1:
        return None  # one tensor-valued expression: its elements are no parts of their own
    if any(common_shape(st)):
        return None
    formulas = []
    for component in st.parsed.components:
        by_variable = symbolic_gradients([component], None, st.table, st.tensors, st.wrt, "sum")
        formulas.append([by_variable[n].formula for n in st.wrt])
    return formulas




def _jacobian_probe(st: Session, name: str) -> Probe:
    return jacobian_probe(float64_function(st), st.tensors, name)


def _refuse_dense(st: Session, methods: list[str], out_numel: int) -> None:
    """A dense Jacobian's vectorised pass (rev, fwd, autograd) holds about a Jacobian-sized tensor per
    operation of f: refuse it, with the estimate, over --max-elements."""
    if not set(methods) & {"rev", "fwd", "autograd"}:
        return  # the loop: one backward at a time, the Jacobian itself checked above
    entries = out_numel * sum(st.tensors[n].numel() for n in st.wrt)
    nodes = forward_nodes(st.fn, st.tensors, st.wrt)
    estimate = entries * (nodes + 2)
    if estimate > WORK_FACTOR * st.max_elements:
        size = estimate * torch.tensor([], dtype=st.tensors[st.wrt[0]].dtype).element_size()
        raise GradcliError(
            f"the dense Jacobian's vectorised pass would hold about {estimate:,} elements ({size_text(size)}: "
            f"{entries:,} entries for each of f's {nodes} operations, the basis and the result); the limit is "
            f"{WORK_FACTOR * st.max_elements:,} ({WORK_FACTOR} x --max-elements)",
            hint="--method loop builds it one row at a time; an f elementwise in its variables takes the "
                 "diagonal under --method auto; --max-elements raises the limit")
