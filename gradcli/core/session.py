"""A prepared computation: the expression parsed, its values bound and made tensors, f lowered.

Every command starts here: `prepare` takes what the user typed (or passed to the library) and
returns a `Session`, so a command only differentiates and checks."""

from __future__ import annotations

import functools
import gc
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

import numpy as np
import sympy
import torch

from gradcli.core.autodiff import (
    torch_error,
)
from gradcli.core.check import TOLERANCES
from gradcli.core.limits import size_text
from gradcli.core.lower import SymbolTable, compile_components
from gradcli.core.parse import (
    ParsedExpression,
    index_text,
    indexed_shape,
    parse_expression,
)
from gradcli.core.reference import (
    broadcast_shapes,
    top_reductions,
)
from gradcli.core.shapes import ShapeInference
from gradcli.core.sympy_functions import expand_definitions, has_tensor_ops
from gradcli.core.values import (
    ValuesArg,
    ValueSpec,
    array_value,
    make_tensor,
    read_values,
    resolve_device,
    resolve_dtype,
    stack_columns,
)
from gradcli.errors import GradcliError
from gradcli.inputs import read_data_file

# gradcli batch and library loops repeat expressions: parse each text once. (A parsed
# expression is never changed after parsing; sympy caches the derivatives of its own.)
parse_cached = functools.lru_cache(maxsize=1024)(parse_expression)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def gc_paused(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run one API call with Python's cycle collector paused.

    Parsing and differentiating a long expression allocates millions of short-lived sympy,
    ast and closure objects, and every full collection walks all of them again: a third of
    the time of a 100 KB expression (benchmarks/long_expression.py). Little of it is cyclic,
    and what is gets collected once the call returns and the collector runs again.
    """
    @functools.wraps(fn)
    def paused(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()
    return paused



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
                count = f"{len(index)} index" if len(index) == 1 else f"{len(index)} indices"
                raise GradcliError(f"{label} has {count}, but {var.name} is {what}",
                                   span=var.span)
            for i, n in zip(index, shape, strict=False):  # len(index) <= len(shape), checked above
                if isinstance(i, int) and not -n <= i < n:
                    raise GradcliError(f"{label} is out of range: {var.name} has shape {list(shape)}",
                                       span=var.span)
            if 0 in indexed_shape(index, shape):
                raise GradcliError(f"{label} is empty: {var.name} has shape {list(shape)}", span=var.span)


def _wrt(parsed: ParsedExpression, specs: Mapping[str, ValueSpec], wrt: str | Sequence[str] | None,
         data_columns: Sequence[str] = ()) -> list[str]:
    if wrt is None or wrt == "" or wrt == []:
        # In the order the values were given (the order a script expects); --data columns are
        # data, constants, unless --wrt names them (as in minimize).
        return [n for n in specs if n not in data_columns]
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
class Session:
    """What every command needs before it differentiates anything."""

    expression: str
    parsed: ParsedExpression
    tensors: dict[str, torch.Tensor]
    wrt: list[str]
    dtype: str
    device: torch.device
    device_note: str
    table: SymbolTable
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


def prepare(expression: str, values: ValuesArg, *, wrt: str | Sequence[str] | None, dtype: str, device: str,
            rtol: float | None, atol: float | None, seed: int | None,
            max_elements: int, vector_name: str | None = None, named: Mapping[str, Any] | None = None,
            data: str | None = None, needs_variables: bool = True) -> Session:
    parsed = parse_cached(expression)
    specs = read_values(values, named)
    notes: list[str] = []
    data_columns: list[str] = []
    columns = read_data_file(data) if data is not None else None
    stacked: set[str] = set()
    for name, spec in list(specs.items()):
        if spec.kind == "stack":  # X=stack([x1, x2], dim=1): --data columns as one matrix
            specs[name] = stack_columns(spec, columns, name, data)
            stacked.update(spec.args[0])
            data_columns.append(name)  # made of data: a constant too, unless --wrt names it
    if columns is not None:
        unused = [c for c in columns if c not in parsed.variables and c not in stacked]
        for name, column in columns.items():
            if name in parsed.variables:
                if name in specs:
                    raise GradcliError(f"{name} has a value and is also a column of {data}")
                specs[name] = array_value(column, f"@{data}:{name}")
                data_columns.append(name)
        if unused:
            notes.append(f"--data {data}: column(s) {', '.join(unused)} are not variables of the expression")
    extra: dict[str, ValueSpec] = {}
    if vector_name and vector_name in specs and vector_name not in parsed.variables:
        extra[vector_name] = specs.pop(vector_name)
    _bind(parsed, specs)
    names = _wrt(parsed, specs, wrt, data_columns)
    if needs_variables and not names:
        if data_columns:
            raise GradcliError(f"every variable is a column of --data {data}, and data are constants",
                               hint=f"name what to differentiate with --wrt (--wrt {data_columns[0]})")
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
    # Lowered once per parsed expression, dtype and device: parse_cached hands a repeated expression
    # the same object (gradcli batch), and the function keeps no state between calls.
    lowered = parsed.__dict__.setdefault("_lowered", {})
    fn = lowered.get((torch_dtype, torch_device))
    if fn is None:
        fn = compile_components(parsed.typed_components, parsed.shape, table, dtype=torch_dtype, device=torch_device)
        lowered[(torch_dtype, torch_device)] = fn
    if has_tensor_ops(parsed.components):
        check_tensor_shapes(parsed, table, tensors, max_elements)
    else:
        _check_shapes(parsed, table, tensors, max_elements, torch_dtype)
    return Session(expression, parsed, tensors, names, dtype, torch_device, device_note, table, fn,
                  default_rtol if rtol is None else rtol, default_atol if atol is None else atol, used_seed,
                  max_elements, extra, generator, notes)


def _check_shapes(parsed: ParsedExpression, table: SymbolTable, tensors: Mapping[str, torch.Tensor],
                  max_elements: int, dtype: torch.dtype) -> None:
    """Shapes that cannot broadcast, or broadcast to more than max_elements, named before torch meets them.

    Worked out from the variables' shapes alone: every elementwise part (outside reductions,
    and inside each reduction) must broadcast. Running f on shape-only 'meta' tensors would
    be simpler, but its first operation imports torch._dynamo: 1.9 s.
    """
    if all(t.dim() == 0 for t in tensors.values()):
        return  # scalars always fit together (_bind has refused an index into a scalar)

    def listed(used: Mapping[str, tuple[int, ...]]) -> str:
        return ", ".join(f"{n} {list(sh)}" for n, sh in sorted(used.items()))

    def broadcast(used: Mapping[str, tuple[int, ...]]) -> None:
        try:
            shape = np.broadcast_shapes(*used.values())
        except ValueError:
            raise GradcliError(f"the shapes do not fit together: {listed(used)}",
                               hint="elementwise operations need, dimension by dimension from the right, "
                                    "equal sizes or 1 (as in torch)") from None
        size = math.prod(shape)
        if size > max_elements:  # x=ones(20000) y=ones(20000,1): 40,000 inputs, 4e8 elements in x*y
            raise GradcliError(
                f"the shapes {listed(used)} broadcast to {list(shape)}: {size:,} elements in each intermediate tensor "
                f"({size_text(size * torch.tensor([], dtype=dtype).element_size())} as {str(dtype)[6:]}); "
                f"the limit is {max_elements:,}", hint="--max-elements raises the limit")

    def shapes_in(expr: sympy.Basic) -> dict[str, tuple[int, ...]]:
        reductions = top_reductions(expr)
        flat = expr.xreplace({r: sympy.Dummy() for r in reductions})
        used: dict[str, tuple[int, ...]] = {}
        for sym in flat.free_symbols:
            if sym in table:
                name, index = table[sym]
                shape = tuple(tensors[name].shape)
                used[str(sym)] = shape if index is None else indexed_shape(index, shape)
        broadcast(used)
        for r in reductions:
            shapes_in(r.args[0])
        return used

    everything: dict[str, tuple[int, ...]] = {}
    for component in parsed.components:
        everything.update(shapes_in(expand_definitions(component)))
    broadcast(everything)  # the entries of [f1, f2] are broadcast together, then stacked


def check_tensor_shapes(parsed: ParsedExpression, table: SymbolTable, tensors: Mapping[str, torch.Tensor],
                        max_elements: int) -> tuple[int, ...]:
    """The shape of f where it holds tensor operations (matmul, sum over a dim...), every node's
    checked: a mismatch names both shapes and points at the operation (core/shapes.py)."""
    def leaf(symbol: sympy.Symbol) -> tuple[int, ...]:
        name, index = table[symbol]
        shape = tuple(tensors[name].shape)
        return shape if index is None else indexed_shape(index, shape)

    inference = ShapeInference(leaf, parsed.spans, max_elements)
    shapes = [inference.shape(c) for c in parsed.components]
    try:
        return broadcast_shapes(*shapes)
    except ValueError:
        raise GradcliError(f"the entries of the list have shapes {', '.join(map(str, map(list, shapes)))}, "
                           "which do not fit together") from None


def float64_function(st: Session) -> Callable[[Mapping[str, torch.Tensor]], torch.Tensor]:
    """f lowered in float64 on the CPU, as the numeric route evaluates it (cached like st.fn)."""
    lowered = st.parsed.__dict__.setdefault("_lowered", {})
    key = (torch.float64, torch.device("cpu"))
    fn = lowered.get(key)
    if fn is None:
        fn = compile_components(st.parsed.typed_components, st.parsed.shape, st.table, dtype=torch.float64,
                                device=torch.device("cpu"))
        lowered[key] = fn
    return cast(Callable[[Mapping[str, torch.Tensor]], torch.Tensor], fn)


def common_shape(st: Session) -> tuple[int, ...]:
    """The broadcast shape of the components of a bracketed list (or of the one expression)."""
    try:
        return _component_shapes(st)
    except (RuntimeError, ValueError, IndexError) as exc:  # shapes that do not broadcast, say
        raise torch_error(exc) from None


def _component_shapes(st: Session) -> tuple[int, ...]:
    with torch.no_grad():
        env = dict(st.tensors)
        shapes = [tuple(compile_components([c], None, st.table, dtype=resolve_dtype(st.dtype),
                                           device=st.device)(env).shape) for c in st.parsed.components]
    return tuple(broadcast_shapes(*shapes))

