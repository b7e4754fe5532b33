"""Sympy to torch: a lowering owned by this project, its torch functions from the registry.

Why not `sympy.lambdify(modules="torch")`: it maps `Max` to the reduction `torch.max` and hands
torch functions bare Python floats (sympy issues 28076, 28457). Here every function node is
computed by the torch function core/functions.py declares for it (`_FUNCTIONS` is built from
the registry), and arithmetic and shapes by a case in `_Lowerer`; an unknown node is a
`LoweringError` naming it. Values become tensors in core/values.py.

Constant subtrees are folded to Python numbers. Torch treats a Python number as a "wrapped
number" that adopts the tensor's dtype and device and is applied at the op's internal precision,
exactly as in PyTorch code written by hand: with float16 inputs, `0.65*mse` then gives the
seed's 4.6015625, where a float16 tensor constant would give 4.5977. Torch functions never see
a bare number: a subtree with no variable in it is folded before it reaches one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import sympy
import torch

from gradcli.core import sympy_functions
from gradcli.core.functions import NODES
from gradcli.core.parse import Index, as_python_index, index_text
from gradcli.core.torch_functions import MatrixInputError, kink_draws
from gradcli.errors import GradcliError

__all__ = ["BATCHED_SUM_TERMS", "Compiled", "Env", "LoweringError", "SymbolTable", "compile_components", "compile_many",
           "compile_expression", "kink_draws", "resolve", "to_source", "Trace"]

SymbolTable = Mapping[sympy.Symbol, tuple[str, "Index | None"]]
Env = Mapping[str, torch.Tensor]
Compiled = Callable[[Env], "torch.Tensor | float | int"]
# (sympy node, its value) of every intermediate result, for `gradcli graph`
Trace = list[tuple[sympy.Basic, "torch.Tensor | float | int"]]

_Value = torch.Tensor | float | int  # what a Compiled returns: a number where the subtree is constant
# A Compiled known to return a tensor (a subtree with a variable in it), cast once when lowered.
_TensorValued = Callable[[Env], torch.Tensor]


class LoweringError(GradcliError):
    """A sympy node with no torch counterpart."""


# --------------------------------------------------------------------------- the table

_MODULES = {"torch": "torch", "torch.linalg": "torch.linalg", "F": "torch.nn.functional",
            "tf": "gradcli.core.torch_functions"}


def resolve(name: str) -> Callable[..., torch.Tensor]:
    """The torch function a registry entry names ("torch.sin", "F.gelu", "tf.sech")."""
    module, _, attr = name.rpartition(".")
    return cast(Callable[..., torch.Tensor], getattr(importlib.import_module(_MODULES[module]), attr))


# sympy class -> torch function, from the registry (functions.NODES): one per function node,
# resolved once. Tests replace entries here to check that a wrong lowering is caught.
_FUNCTIONS: dict[type, Callable[..., torch.Tensor]] = {cls: resolve(n.torch) for cls, n in NODES.items()}
# Arguments torch takes as Python numbers (polygamma's order): folded, never made tensors.
_NUMBER_ARGUMENTS: dict[type, tuple[int, ...]] = {cls: n.numbers for cls, n in NODES.items() if n.numbers}
# Tensor operations that make a tensor from static arguments alone (eye): given dtype= and device=.
_FACTORIES: frozenset[type] = frozenset(cls for cls, n in NODES.items() if n.factory)

_RELATIONS: dict[type, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    sympy.Eq: torch.eq,
    sympy.Ne: torch.ne,
    sympy.Lt: torch.lt,
    sympy.Le: torch.le,
    sympy.Gt: torch.gt,
    sympy.Ge: torch.ge,
}


def _fold(node: sympy.Expr) -> float | int | bool:
    """A subtree without variables, as a Python number."""
    if node is sympy.true:
        return True
    if node is sympy.false:
        return False
    if node.is_Integer and abs(int(node)) < 2**53:
        return int(node)  # exact, and an integer exponent keeps torch.pow on its integer path
    if node.is_Rational and abs(node.p) < 2**1000 and node.q < 2**1000:
        return int(node.p) / int(node.q)  # Python rounds int/int correctly; sympy.N is slow
    # Beyond int64 torch refuses a Python int (OverflowError): a float, inf if it must be.
    try:
        value = complex(sympy.N(node, 20))
    except (ValueError, TypeError, ArithmeticError) as exc:  # erfinv(2): outside its domain
        raise LoweringError(f"the constant {sympy.sstr(node)} has no real value ({exc})") from None
    if value.imag != 0:
        raise LoweringError(f"the constant {sympy.sstr(node)} is not a real number")
    return value.real


# A sum of at least this many terms (a long expression's) computes the terms that share a form
# (3*sin(x/2)*y**2 and 5*sin(x/7)*y**3: only the numbers differ) as one tensor operation per
# node over a vector of their numbers, then sums that vector: a 10^4-term sum is a few dozen
# torch operations, forward and backward, instead of 10^5. Shorter sums are computed term by
# term, as a person writes them (and rounds them).
BATCHED_SUM_TERMS = 256
_BATCHED_FORM_TERMS = 8  # a form shared by fewer terms is computed term by term
_BATCHED_NODES = (sympy.Add, sympy.Mul, sympy.Pow)


class _NotBatchable(Exception):
    """A node the vector form does not take (reductions, indexing, Max, Piecewise...)."""


class _Lowerer:
    def __init__(self, table: SymbolTable, trace: Trace | None = None, dtype: torch.dtype = torch.float32,
                 device: torch.device | None = None):
        self.table = table
        self.dtype = dtype  # for numbers that must become tensors where no tensor is at hand
        self.device = device
        self.trace = trace  # when a list: (sympy node, tensor) of every intermediate result
        self._constant: dict[sympy.Basic, bool] = {}
        self._compiled: dict[sympy.Basic, Compiled] = {}  # a subtree written twice is lowered once
        # compile_many: each subtree's value, computed once per call (its slot: the order it was lowered in)
        self.memo: dict[int, _Value] | None = None
        self._folded: dict[sympy.Basic, float | int | bool] = {}

    def constant(self, node: sympy.Basic) -> bool:
        """No variable in node: `not node.free_symbols`, remembered, as every node asks."""
        if node.is_Number:  # the commonest leaf, and slow for sympy to hash
            return True
        known = self._constant.get(node)
        if known is None:
            # A tensor operation is never folded to a number: eye(3) is a constant tensor.
            known = not isinstance(node, (sympy.Symbol, sympy_functions.TensorOp)) and all(
                self.constant(a) for a in node.args)
            self._constant[node] = known
        return known

    def lower(self, node: sympy.Basic) -> Compiled:
        if node.is_Number:
            value = _fold(node)
            return lambda env: value
        compiled = self._compiled.get(node)
        if compiled is None:
            compiled = self._traced(node, self._lower(node))
            if self.memo is not None:
                compiled = self._memoised(compiled, len(self._compiled))
            self._compiled[node] = compiled
        return compiled

    def _memoised(self, compiled: Compiled, slot: int) -> Compiled:
        memo = self.memo
        assert memo is not None

        def once(env: Env) -> _Value:
            value = memo.get(slot)
            if value is None:
                value = memo[slot] = compiled(env)
            return value
        return once

    def _traced(self, node: sympy.Basic, compiled: Compiled) -> Compiled:
        if self.trace is None or isinstance(node, sympy.Symbol) or self.constant(node):
            return compiled
        trace = self.trace

        def traced(env: Env) -> _Value:
            out = compiled(env)
            trace.append((node, out))
            return out
        return traced

    def _lower(self, node: sympy.Basic) -> Compiled:
        if self.constant(node):
            folded = _fold(node)
            return lambda env: folded
        if isinstance(node, sympy.Symbol):
            return self.symbol(node)
        if isinstance(node, sympy.Add):
            return self.add(node)
        if isinstance(node, sympy.Mul):
            return self.mul(node)
        if isinstance(node, sympy.Pow):
            return self.power(node)
        if isinstance(node, sympy.Piecewise):
            return self.piecewise(node)
        if isinstance(node, sympy_functions.bcast):
            value, *variables = (self.lower(a) for a in node.args)
            shapes = [cast(_TensorValued, s) for s in variables]  # the vanished variables: tensors

            def broadcast(env: Env) -> torch.Tensor:
                v = value(env)
                others = [s(env) for s in shapes]
                target = torch.broadcast_shapes(  # type: ignore[no-untyped-call]  # unannotated in torch
                    *(tuple(o.shape) for o in others), tuple(v.shape) if isinstance(v, torch.Tensor) else ())
                if not isinstance(v, torch.Tensor):
                    return torch.full(target, v, dtype=others[0].dtype, device=others[0].device)
                return v.expand(target)
            return broadcast
        if isinstance(node, sympy_functions.tindex):
            inner = cast(_TensorValued, self.lower(node.args[0]))  # not constant: a tensor
            where = node.index

            def element(env: Env) -> torch.Tensor:
                value = inner(env)
                if value.dim() != len(where):
                    # A row of an expression is a tensor, which the check cannot treat as one
                    # element: index every dimension.
                    raise LoweringError(f"{sympy.sstr(node)} needs {value.dim()} indices: "
                                        f"{sympy.sstr(node.args[0])} has shape {list(value.shape)}",
                                        hint="index one element of an expression (f(x)[i, j]); "
                                             "rows and slices work on variables (x[0], x[1:])")
                if any(not -n <= i < n for i, n in zip(where, value.shape, strict=True)):
                    raise LoweringError(f"{sympy.sstr(node)} is out of range: "
                                        f"{sympy.sstr(node.args[0])} has shape {list(value.shape)}")
                return value[where]
            return element
        if isinstance(node, sympy_functions.getitem):  # f(x)[1:3], x[..., -1]: shapes checked before
            sliced = cast(_TensorValued, self.lower(node.operands[0]))  # not constant: a tensor
            index = sympy_functions.decode_index(node.static[0])
            return lambda env: sliced(env)[index]
        if type(node) in _RELATIONS:
            rel = _RELATIONS[type(node)]
            lhs, rhs = (self.lower(a) for a in node.args)
            return lambda env: rel(*_tensors(lhs(env), rhs(env)))
        if isinstance(node, (sympy.And, sympy.Or)):
            return self.pairwise(torch.logical_and if isinstance(node, sympy.And) else torch.logical_or, node)
        if isinstance(node, sympy.Not):
            negated = cast(_TensorValued, self.lower(node.args[0]))  # not constant: a tensor
            return lambda env: torch.logical_not(negated(env))
        fn = _FUNCTIONS.get(type(node))
        if fn is None:
            raise LoweringError(
                f"no torch lowering for sympy's {type(node).__name__}: {_short(node)}"
            )
        if isinstance(node, sympy_functions.TensorOp):
            return self.tensor_op(_naming_inputs(fn, node), node)
        numbers = _NUMBER_ARGUMENTS.get(type(node))
        if numbers:
            return self.with_numbers(fn, node, numbers)
        parts = [self.lower(a) for a in node.args]
        if len(parts) == 1:
            (only,) = parts
            return lambda env: fn(only(env))
        return lambda env: fn(*_tensors(*(p(env) for p in parts)))

    def with_numbers(self, fn: Callable[..., torch.Tensor], node: sympy.Basic, numbers: tuple[int, ...]) -> Compiled:
        """fn of node's arguments, those at `numbers` passed as plain Python numbers."""
        parts: list[Compiled] = []
        for i, a in enumerate(node.args):
            if i in numbers:
                if not a.is_Integer:  # polygamma's order, the one such argument today
                    raise LoweringError(f"{type(node).__name__} needs a whole-number argument: {sympy.sstr(node)}")
                def number(env: Env, value: int = int(a)) -> int:
                    return value
                parts.append(number)
            else:
                parts.append(self.lower(a))
        return lambda env: fn(*(p(env) for p in parts))

    def tensor_op(self, fn: Callable[..., torch.Tensor], node: sympy_functions.TensorOp) -> Compiled:
        """fn(operands as tensors, then the static arguments as Python values): see TensorOp."""
        parts = [self.lower(a) for a in node.operands]
        static = node.static
        dtype, device = self.dtype, self.device
        if type(node) in _FACTORIES:
            return lambda env: fn(*static, dtype=dtype, device=device)

        def run(env: Env) -> torch.Tensor:
            values = [p(env) for p in parts]
            like = next((v for v in values if isinstance(v, torch.Tensor)), None)
            at = like.device if like is not None else device
            return fn(*(v if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=dtype, device=at) for v in values),
                      *static)
        return run

    def pairwise(self, combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], node: sympy.Basic) -> Compiled:
        """combine(combine(a, b), c)... over the arguments: n-ary Max, Min, And, Or."""
        parts = [self.lower(a) for a in node.args]

        def run(env: Env) -> torch.Tensor:
            values = [p(env) for p in parts]
            result = _as_tensor(values[0], values)
            for v in values[1:]:
                result = combine(result, _as_tensor(v, values))
            return result
        return run

    def symbol(self, node: sympy.Symbol) -> Compiled:
        if node not in self.table:
            raise LoweringError(f"no value for the symbol {node}")
        name, index = self.table[node]
        if index is None:
            return lambda env: env[name]
        where = as_python_index(index)
        return lambda env: env[name][where]

    def add(self, node: sympy.Add) -> Compiled:
        if self.trace is None and len(node.args) >= BATCHED_SUM_TERMS:
            batched = self.batched_add(node)
            if batched is not None:
                return batched
        return self.add_terms(node.args)

    def _form(self, node: sympy.Basic, numbers: list[float]) -> Any:
        """node with its constants left out (they go to `numbers`, in order): a hashable key."""
        if node.is_Symbol:
            return node
        if node.is_Number or self.constant(node):
            value = self._folded.get(node)
            if value is None:  # 10^4 terms hold the same few constants (a long derivative's 3 - 1)
                value = self._folded[node] = _fold(node)
            if isinstance(value, bool):
                raise _NotBatchable
            numbers.append(float(value))
            return "#"
        kind = type(node)
        elementwise = kind in _FUNCTIONS and len(node.args) == 1 and not issubclass(
            kind, (sympy_functions.Reduction, sympy_functions.Defined, sympy_functions.TensorOp))
        if not (isinstance(node, _BATCHED_NODES) or elementwise):
            raise _NotBatchable
        return (kind, tuple([self._form(a, numbers) for a in node.args]))

    def batched_add(self, node: sympy.Add) -> Compiled | None:
        """The sum, with terms of one form computed together (see BATCHED_SUM_TERMS); None if none share one."""
        groups: dict[Any, list[tuple[sympy.Basic, list[float]]]] = {}
        for term in node.args:
            numbers: list[float] = []
            try:
                key = self._form(term, numbers)
            except _NotBatchable:
                key = ("single", term)
            groups.setdefault(key, []).append((term, numbers))
        vectors: list[Compiled] = []
        singles: list[sympy.Basic] = []
        for members in groups.values():
            if len(members) >= _BATCHED_FORM_TERMS and members[0][1]:
                vectors.append(self._vector_sum(members[0][0], np.array([n for _t, n in members])))
            else:
                singles.extend(t for t, _n in members)
        if not vectors:
            return None
        rest = self.add_terms(singles) if singles else None

        def add(env: Env) -> _Value:
            total = rest(env) if rest is not None else 0
            for v in vectors:
                total = total + v(env)
            return total
        return add

    def _vector_sum(self, template: sympy.Basic, numbers: npt.NDArray[np.float64]) -> Compiled:
        """The sum over rows of `numbers` of template with its constants taken from that row."""
        leaves: list[_TensorValued] = []
        slot = iter(range(numbers.shape[1]))

        # cols: a column tensor per constant, then the list of the leaves' values
        def vector(node: sympy.Basic) -> Callable[[Env, list[Any]], Any]:
            if self.constant(node):
                j = next(slot)
                return lambda env, cols: cols[j]
            if isinstance(node, sympy.Symbol):
                leaves.append(cast(_TensorValued, self.lower(node)))  # a variable: a tensor
                k = len(leaves) - 1
                return lambda env, cols: cols[-1][k]
            parts = [vector(a) for a in node.args]
            if isinstance(node, sympy.Add):
                def combine(values: list[Any]) -> Any:
                    out = values[0]
                    for v in values[1:]:
                        out = out + v
                    return out
            elif isinstance(node, sympy.Mul):
                def combine(values: list[Any]) -> Any:
                    out = values[0]
                    for v in values[1:]:
                        out = out * v
                    return out
            elif isinstance(node, sympy.Pow):
                def combine(values: list[Any]) -> Any:
                    return torch.pow(*values)
            else:
                fn = _FUNCTIONS[type(node)]

                def combine(values: list[Any]) -> Any:
                    return fn(values[0])
            return lambda env, cols: combine([p(env, cols) for p in parts])
        body = vector(template)
        columns: dict[tuple[int, torch.dtype, torch.device], list[Any]] = {}

        def run(env: Env) -> torch.Tensor:
            values = [leaf(env) for leaf in leaves]
            like = values[0]
            dims = max(v.dim() for v in values)
            key = (dims, like.dtype, like.device)
            if key not in columns:  # each constant as a column (n, 1, ..., 1): broadcast over the values
                table = torch.as_tensor(numbers, dtype=like.dtype, device=like.device)
                columns[key] = [table[:, j].reshape((-1,) + (1,) * dims) for j in range(numbers.shape[1])]
            return torch.sum(body(env, columns[key] + [values]), dim=0)
        return run

    def add_terms(self, terms_in: Iterable[sympy.Basic]) -> Compiled:
        # sympy writes t - p as -p + t: subtract instead of negating and adding, one pass
        # over the tensor fewer, and the same rounding as the subtraction a person writes.
        terms = sorted(terms_in, key=lambda a: _negated(a) is not None)  # a positive term first
        parts = [(False, self.lower(terms[0]))]
        for term in terms[1:]:
            negated = _negated(term)
            parts.append((True, self.lower(negated)) if negated is not None else (False, self.lower(term)))

        def add(env: Env) -> _Value:
            total = parts[0][1](env)
            for minus, p in parts[1:]:
                total = total - p(env) if minus else total + p(env)
            return total
        return add

    def mul(self, node: sympy.Mul) -> Compiled:
        # a*b/(3*c) is computed as (a*b)/(3*c), as a person writes it, rather than
        # a*b*(1/3)*c**-1: in float16 the two can differ in the last bit.
        coeff, factors = node.as_coeff_mul()
        numer, denom = [], []
        for f in factors:
            if isinstance(f, sympy.Pow) and f.exp.is_number and f.exp.is_negative:
                denom.append(self.lower(sympy.Pow(f.base, -f.exp)))
            else:
                numer.append(self.lower(f))
        scale_num: float | int
        if isinstance(coeff, sympy.Rational) and abs(coeff.p) < 2**53 and coeff.q < 2**53:
            scale_num, scale_den = int(coeff.p), int(coeff.q)
        else:  # a float coefficient, or a fraction too large to be exact in floating point anyway
            scale_num, scale_den = _fold(coeff), 1

        def mul(env: Env) -> _Value:
            result = numer[0](env) if numer else 1
            for n in numer[1:]:
                result = result * n(env)
            if scale_num == -1:
                result = -result
            elif scale_num != 1:
                result = scale_num * result
            if denom or scale_den != 1:
                below: _Value = scale_den
                for d in denom:
                    below = below * d(env)
                result = result / below
            return result
        return mul

    def power(self, node: sympy.Pow) -> Compiled:
        base, exponent = node.args
        lower_base = self.lower(base)
        if self.constant(exponent):
            lb = cast(_TensorValued, lower_base)  # the base is not constant: a tensor
            e = _fold(exponent)
            if e == 0.5:
                return lambda env: torch.sqrt(lb(env))
            if e == -0.5:
                return lambda env: torch.rsqrt(lb(env))
            if e == -1:
                return lambda env: torch.reciprocal(lb(env))
            return lambda env: torch.pow(lb(env), e)
        le = cast(_TensorValued, self.lower(exponent))  # the exponent is not constant: a tensor
        if self.constant(base):
            b = _fold(base)
            return lambda env: torch.pow(b, le(env))
        return lambda env: torch.pow(*_tensors(lower_base(env), le(env)))

    def piecewise(self, node: sympy.Piecewise) -> Compiled:
        # a condition is a tensor of bools, or True or False where it is constant
        pieces = [(self.lower(e), cast(Callable[[Env], "torch.Tensor | bool"], self.lower(c))) for e, c in node.args]
        dtype = self.dtype

        def piecewise(env: Env) -> _Value:
            result: _Value | None = None
            for value, cond in reversed(pieces):
                v, c = value(env), cond(env)
                if result is None:
                    result = v  # the last piece is the fallback (sympy ends with True)
                    continue
                if isinstance(c, bool):
                    result = v if c else result
                elif isinstance(v, torch.Tensor) or isinstance(result, torch.Tensor):
                    chosen, otherwise = _tensors(v, result)
                    result = torch.where(c, chosen, otherwise)
                else:  # both pieces are numbers (the derivative of leaky_relu: 1 or slope)
                    result = torch.where(c, torch.tensor(v, dtype=dtype, device=c.device),
                                         torch.tensor(result, dtype=dtype, device=c.device))
            assert result is not None  # a Piecewise has a piece at least
            return result
        return piecewise


def _naming_inputs(fn: Callable[..., torch.Tensor], node: sympy.Basic) -> Callable[..., torch.Tensor]:
    """fn, its MatrixInputError (a singular matrix, a label that is no class) said with the
    argument as the user wrote it: "inv: A is singular (det = 0)"."""
    texts = [sympy.sstr(a) for a in node.args]

    def run(*args: Any, **kwargs: Any) -> torch.Tensor:
        try:
            return fn(*args, **kwargs)
        except MatrixInputError as exc:
            raise GradcliError(exc.named(texts[exc.argument]), hint=exc.hint) from None
    return run


def _negated(term: sympy.Basic) -> sympy.Basic | None:
    """X when term is -X (a product with coefficient -1), else None."""
    if isinstance(term, sympy.Mul):
        coeff, rest = term.as_coeff_Mul()
        if coeff == -1:
            return rest
    return None


def _short(node: sympy.Basic, limit: int = 60) -> str:
    text: str = sympy.sstr(node)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_tensor(value: _Value, others: Sequence[_Value]) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    like = next(v for v in others if isinstance(v, torch.Tensor))
    return torch.as_tensor(value, dtype=like.dtype if not isinstance(value, bool) else torch.bool,
                           device=like.device)


def _tensors(*values: _Value) -> tuple[torch.Tensor, ...]:
    """Functions such as atan2 or where take tensors only: give numbers the tensors' dtype."""
    if all(isinstance(v, torch.Tensor) for v in values):
        return cast(tuple[torch.Tensor, ...], values)
    return tuple(_as_tensor(v, values) for v in values)


def compile_expression(expr: sympy.Basic, table: SymbolTable, *, dtype: torch.dtype,
                       device: torch.device, trace: Trace | None = None) -> Callable[[Env], torch.Tensor]:
    """A function from {variable name: tensor} to the expression's value as a tensor.

    With `trace`, every intermediate result is appended to it as (sympy node, tensor), so
    `gradcli graph` can name the nodes of the autograd graph.
    """
    inner = _Lowerer(table, trace, dtype, device).lower(expr)

    def run(env: Env) -> torch.Tensor:
        out = inner(env)
        if not isinstance(out, torch.Tensor):
            # A constant expression (x - x): a tensor that depends on nothing.
            out = torch.tensor(out, dtype=dtype, device=device)
        return out
    return run


def compile_many(exprs: Sequence[sympy.Basic], table: SymbolTable, *, dtype: torch.dtype,
                 device: torch.device) -> Callable[[Env], list[torch.Tensor]]:
    """Many expressions that share subexpressions (the derivatives of tensors spelled out entry by
    entry, reference.Expanded): each distinct subtree lowered once, and computed once per call."""
    lowerer = _Lowerer(table, None, dtype, device)
    lowerer.memo = {}
    parts = [lowerer.lower(e) for e in exprs]

    def run(env: Env) -> list[torch.Tensor]:
        assert lowerer.memo is not None
        lowerer.memo.clear()
        try:
            return [v if isinstance(v, torch.Tensor) else torch.tensor(v, dtype=dtype, device=device)
                    for v in (p(env) for p in parts)]
        finally:
            lowerer.memo.clear()
    return run


def compile_components(components: list[sympy.Basic], shape: tuple[int, ...] | None, table: SymbolTable,
                       *, dtype: torch.dtype, device: torch.device,
                       trace: Trace | None = None) -> Callable[[Env], torch.Tensor]:
    """Like compile_expression, for a bracketed list [f1, f2, ...]: the entries are stacked."""
    if shape is None:
        return compile_expression(components[0], table, dtype=dtype, device=device, trace=trace)
    parts = [compile_expression(c, table, dtype=dtype, device=device, trace=trace) for c in components]

    def run(env: Env) -> torch.Tensor:
        values = torch.broadcast_tensors(*(p(env) for p in parts))  # type: ignore[no-untyped-call]  # as above
        stacked = torch.stack(values)
        return stacked.reshape(shape + tuple(values[0].shape))
    return run


# --------------------------------------------------------------------------- as Python source

def to_source(expr: sympy.Basic, table: SymbolTable) -> str:
    """The torch code the lowering of expr runs, as a person would write it."""

    def name(node: sympy.Basic) -> str:
        var, index = table.get(node, (str(node), None))
        return var if index is None else f"{var}[{index_text(index)}]"

    def atom(text: str, node: sympy.Basic) -> str:
        return f"({text})" if isinstance(node, (sympy.Add, sympy.Mul)) or text.startswith("-") else text

    def show(node: sympy.Basic) -> str:
        if sympy_functions.is_plain_constant(node):
            return repr(_fold(node))
        if isinstance(node, sympy.Symbol):
            return name(node)
        if isinstance(node, sympy.Add):
            text = show(node.args[0])
            for a in node.args[1:]:
                t = show(a)
                text += f" - {t[1:]}" if t.startswith("-") and not t.startswith("-(") else f" + {t}"
            return text
        if isinstance(node, sympy.Mul):
            coeff, factors = node.as_coeff_mul()
            numer = [atom(show(f), f) for f in factors
                     if not (isinstance(f, sympy.Pow) and f.exp.is_number and f.exp.is_negative)]
            denom = [sympy.Pow(f.base, -f.exp) for f in factors
                     if isinstance(f, sympy.Pow) and f.exp.is_number and f.exp.is_negative]
            text = " * ".join(numer) if numer else "1"
            if isinstance(coeff, sympy.Rational):
                if coeff.p == -1:
                    text = f"-{text}"
                elif coeff.p != 1:
                    text = f"{coeff.p} * {text}"
                below = [str(coeff.q)] if coeff.q != 1 else []
            else:
                text = f"{_fold(coeff)!r} * {text}"
                below = []
            below += [atom(show(d), d) for d in denom]
            if below:
                text = f"{text} / " + (below[0] if len(below) == 1 else "(" + " * ".join(below) + ")")
            return text
        if isinstance(node, sympy.Pow):
            base, exponent = node.args
            b = show(base)
            if not exponent.free_symbols:
                e = _fold(exponent)
                if e == 0.5:
                    return f"torch.sqrt({b})"
                if e == -0.5:
                    return f"torch.rsqrt({b})"
                if e == -1:
                    return f"torch.reciprocal({b})"
                return f"torch.pow({b}, {e!r})"
            return f"torch.pow({b}, {show(exponent)})"
        if isinstance(node, sympy_functions.getitem):
            inner = show(node.operands[0])
            return f"{inner if node.operands[0].is_Symbol else f'({inner})'}[{node.static[0].replace(',', ', ')}]"
        if isinstance(node, sympy_functions.TensorOp):
            texts = [show(a) for a in node.operands] + [repr(v) for v in node.static]
            return NODES[type(node)].source(texts)
        if isinstance(node, sympy.Piecewise):
            *pieces, (otherwise, _true) = node.args
            text = show(otherwise)
            for value, cond in reversed(pieces):
                text = f"torch.where({show(cond)}, {show(value)}, {text})"
            return text
        if type(node) in _RELATIONS:
            return f"{atom(show(node.args[0]), node.args[0])} {node.rel_op} {atom(show(node.args[1]), node.args[1])}"
        args = [show(a) for a in node.args]
        declared = NODES.get(type(node))
        if declared is not None:
            return declared.source(args)
        # Structural nodes, not functions (see functions.py): how they read as torch code.
        if isinstance(node, sympy_functions.tindex):
            return f"({args[0]})[{', '.join(args[1:])}]"
        if isinstance(node, sympy_functions.bcast):
            return f"({args[0]}).expand_as({args[1]})"
        return f"{type(node).__name__}({', '.join(args)})"

    return show(expr)
