"""The second route: sympy's symbolic derivative, evaluated in float64 (core/check.py compares it with autograd).

Sympy knows scalars, not tensors. A variable is a scalar symbol used elementwise, `x[0]` is a
symbol of its own, and `sum(...)`/`mean(...)` are opaque functions. The gradient of sum(G)
with respect to a variable x is then assembled by the chain rule around the reductions:

    d sum(G)/dx = sum_to_shape_of_x( dG/dx )                      (x used elementwise)
                + sum(dG/dx[i]) at position i                      (x used as x[i])
                + sum(dG/dR) * d sum(H)/dx  [/ numel(H) for mean]  (each reduction R = sum(H))

where every dG/d... is sympy's derivative (`derivative` below) with the reductions replaced by
placeholder symbols, and the last line recurses into H. Each derivative is lowered through the
same table as f and evaluated in float64 on the CPU, at the user's values rounded to the
user's dtype, so the only difference left to compare is arithmetic, never the point.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, cast

import sympy
import torch
from sympy.core.function import ArgumentIndexError
from sympy.core.parameters import evaluate as sympy_evaluate

from gradcli.core import sympy_functions
from gradcli.core.functions import (
    JUMP_CONVENTIONS,
    KINK_CONVENTIONS,
    SLOPES,
)
from gradcli.core.limits import LONG_EXPRESSION_NODES, SYMBOLIC_EXPANSION_LIMIT
from gradcli.core.lower import (
    LoweringError,
    SymbolTable,
    compile_expression,
    compile_many,
    kink_draws,
)
from gradcli.core.parse import Index, as_python_index, index_text, indexed_shape
from gradcli.core.sympy_functions import TensorDerivativeError
from gradcli.errors import GradcliError

F64 = torch.float64


def broadcast_shapes(*shapes: Iterable[int]) -> tuple[int, ...]:
    """numpy's rule, which is torch's; torch.broadcast_shapes would import torch.fx (30 ms)."""
    import numpy as np

    return tuple(int(n) for n in np.broadcast_shapes(*(tuple(s) for s in shapes)))
CPU = torch.device("cpu")

@dataclass
class SymbolicGradient:
    formula: str
    value: torch.Tensor | None  # float64 on the CPU; None when it could not be evaluated
    unavailable: str | None = None  # why not, when value is None
    # torch's conventions at the kinks f may have, looked up when value has NaN: () when f has
    # no function with a kink (a NaN is then sympy's formula overflowing or dividing 0 by 0 in
    # float64, not a kink), None when they were not looked up.
    kinks: tuple[str, ...] | None = None
    # The value again at 50 digits, for a disagreement that may be float64's own rounding
    # (scalar variables only); None when it cannot be had.
    precise: Callable[[], float | None] | None = None
    # When f holds a where(): why autograd may be NaN where this value is finite, and the safe form.
    where_trap: str | None = None


def where_trap(components: Iterable[sympy.Basic]) -> str | None:
    """The note for where()'s famous trap, when f holds a where() whose branches hold variables.

    torch.where sends the incoming gradient to both branches (zero to the one not selected), and
    autograd multiplies: 0 * inf = nan where the unselected branch has no finite derivative
    (sqrt(x) at x < 0). The derivative of what f computes is the selected branch's, finite.
    The safe form evaluates each branch only where it is selected: a "double where".
    """
    for c in components:
        for node in sympy.preorder_traversal(c):
            if not isinstance(node, sympy_functions.where):
                continue
            (a, cond), (b, _true) = node.args
            if not (a.free_symbols or b.free_symbols):
                continue
            cond_text = sympy.sstr(cond)
            typed = f"where({cond_text}, {sympy.sstr(a)}, {sympy.sstr(b)})"
            safe = f"where({cond_text}, {_guarded_branch(a, cond, '{}', '1')}, {_guarded_branch(b, cond, '1', '{}')})"
            return (f"{typed}: autograd's nan is what torch computes, not a gradcli error. torch.where passes "
                    "the gradient to both branches, zero to the one not selected, and where that branch has "
                    "no finite derivative (sqrt or log outside its domain) 0 * inf = nan leaks through; the "
                    "derivative of the branch selected is finite. The safe form, a double where, gives the "
                    f"unselected branch a harmless input (1 here): {safe}")
    return None


def _guarded_branch(branch: sympy.Expr, cond: sympy.Basic, keep: str, other: str) -> str:
    """branch with what cond tests (x in x > 0, A @ x in A @ x > 0) given a harmless value where
    the branch is not selected: where(cond, keep, other) with {} the guarded input."""
    cond_text = sympy.sstr(cond)

    def guard(u: sympy.Basic) -> sympy.Symbol:
        text = sympy.sstr(u)
        return sympy.Symbol(f"where({cond_text}, {keep.format(text)}, {other.format(text)})")
    sides = [side for side in cond.args if side.free_symbols] if isinstance(
        cond, sympy.core.relational.Relational) else []
    if len(sides) == 1 and branch.has(sides[0]):
        guarded = branch.xreplace({sides[0]: guard(sides[0])})
    elif branch.has(sympy_functions.TensorOp):
        guarded = branch  # no variable to guard alone: the advice stands without it
    else:
        guarded = branch.xreplace({v: guard(v) for v in branch.free_symbols & cond.free_symbols})
    return str(sympy.sstr(guarded))


def reference_env(values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The user's values, as rounded to their dtype, in float64 on the CPU."""
    return {n: v.detach().to(device=CPU, dtype=F64) for n, v in values.items()}


def _sum_to(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Undo broadcasting, as autograd does: sum the dimensions that were expanded."""
    extra = t.dim() - len(shape)
    if extra > 0:
        t = t.sum(dim=tuple(range(extra)))
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and t.shape[i] != 1)
    if dims:
        t = t.sum(dim=dims, keepdim=True)
    return t.reshape(shape)


def is_long(expr: sympy.Basic) -> bool:
    """More than LONG_EXPRESSION_NODES nodes (counted no further than that)."""
    nodes = itertools.islice(sympy.preorder_traversal(expr), LONG_EXPRESSION_NODES + 1)
    return sum(1 for _ in nodes) > LONG_EXPRESSION_NODES


# gradcli batch and library loops differentiate the same expressions again: each (expression,
# symbol) is differentiated once. Both are immutable sympy objects, and so is the result.
@functools.lru_cache(maxsize=128)
def derivative(expr: sympy.Basic, symbol: sympy.Symbol) -> sympy.Expr:
    """d expr / d symbol by sympy's rules: what sympy.diff returns, at a fraction of its cost.

    sympy.diff simplifies every intermediate result it builds (most of the time in its
    assumptions system): 2 to 9 ms for x**2 + sin(3*x)*y, a minute for a 10^4-term sum. Here
    sympy's rules - sum, product, power, and the chain rule with each function's own fdiff;
    sympy.diff itself for nodes with a rule of their own (Abs, Piecewise, Max...) - build the
    derivative unsimplified, and it is simplified once, bottom up, as sympy builds any
    expression: the same formula as sympy.diff's (tests/test_function_agreement.py compares).
    A long expression's derivative stays as written: simplifying it would cost as much, and
    it is too long to print anyway (its value is the same).
    """
    if is_long(expr):
        with sympy_evaluate(False):  # fdiff builds cos(x/2) as written too (clears sympy's cache)
            return _AsWritten(symbol).derivative(expr)
    return _simplified(_AsWritten(symbol).derivative(expr))


def _derivative_as_written(expr: sympy.Basic, symbol: sympy.Symbol) -> sympy.Expr:
    """d expr / d symbol by the same rules as `derivative`, left unsimplified: for the many
    derivatives of tensors spelled out entry by entry, whose values alone are compared."""
    return _AsWritten(symbol).derivative(expr)


def _simplified(expr: sympy.Basic) -> sympy.Basic:
    """expr rebuilt bottom up, each node evaluated as sympy evaluates what it builds."""
    done: dict[sympy.Basic, sympy.Basic] = {}

    def rebuild(node: sympy.Basic) -> sympy.Basic:
        if not node.args:
            return node
        if node not in done:
            done[node] = node.func(*(rebuild(a) for a in node.args))
        return done[node]
    return rebuild(expr)


_MAX_PRODUCT_RULE_TERMS = 8


class _AsWritten:
    """Differentiation rules that build their result without evaluating it."""

    def __init__(self, symbol: sympy.Symbol):
        self.symbol = symbol
        self._depends: dict[sympy.Basic, bool] = {}
        self._done: dict[sympy.Basic, sympy.Expr] = {}

    def is_symbol(self, node: sympy.Basic) -> bool:
        # Equal, not only identical: sympy's cache can hand back a subtree built in an earlier
        # parse, holding an equal Symbol object of its own.
        return node is self.symbol or (node.is_Symbol and node == self.symbol)

    def depends(self, node: sympy.Basic) -> bool:
        known = self._depends.get(node)
        if known is None:
            known = self.is_symbol(node) or any(self.depends(a) for a in node.args)
            self._depends[node] = known
        return known

    def derivative(self, node: sympy.Basic) -> sympy.Expr:
        if not self.depends(node):
            return sympy.S.Zero
        if self.is_symbol(node):
            return sympy.S.One
        if node not in self._done:
            self._done[node] = self._rule(node)
        return self._done[node]

    def _rule(self, node: sympy.Basic) -> sympy.Expr:
        args = node.args
        if isinstance(node, sympy.Add):
            return _sum(self.derivative(a) for a in args if self.depends(a))
        if isinstance(node, sympy.Mul):
            varying = sum(1 for a in args if self.depends(a))
            if varying > _MAX_PRODUCT_RULE_TERMS:
                # The product rule writes n factors n times: a product of 10^4 factors would
                # give 10^8. Split in halves, (AB)' = A'B + AB': n log n, log n deep.
                half = len(args) // 2
                return self.derivative(sympy.Mul._from_args(
                    (sympy.Mul._from_args(args[:half], is_commutative=True),
                     sympy.Mul._from_args(args[half:], is_commutative=True)), is_commutative=True))
            return _sum(_product(*args[:i], self.derivative(a), *args[i + 1:])
                        for i, a in enumerate(args) if self.depends(a))
        if isinstance(node, sympy.Pow):
            base, exp = args
            if not self.depends(exp):  # n * b**(n-1) * b'
                lower = exp - 1 if exp.is_Number else sympy.Add(exp, -1)
                return _product(exp, base if lower is sympy.S.One else sympy.Pow(base, lower), self.derivative(base))
            if not self.depends(base):  # b**e * log(b) * e'
                return _product(node, sympy.log(base), self.derivative(exp))
            # b**e * (e' log(b) + e b'/b)
            return _product(node, _sum([_product(self.derivative(exp), sympy.log(base)),
                                        _product(exp, self.derivative(base), sympy.Pow(base, -1))]))
        if type(node) in SLOPES:  # abs, floor, ceil: a slope that is NaN where there is none
            return _product(SLOPES[type(node)](args[0]), self.derivative(args[0]))
        if isinstance(node, sympy.Function) and type(node)._eval_derivative is sympy.Function._eval_derivative:
            # sympy's chain rule, as Function._eval_derivative has it
            return _sum(_product(_fdiff(node, i), self.derivative(a))
                        for i, a in enumerate(args, start=1) if self.depends(a))
        # Anything with a rule of its own (Abs, Piecewise, Min, Max...): sympy's, simplified.
        with sympy_evaluate(True):
            return sympy.diff(node, self.symbol)


# Kinks and jumps are declared with each function in the registry (functions.Node): the slope
# node the check uses where sympy's own would hide a kink (abs, floor, ceil), what torch does
# where a derivative does not exist, and which of those are jumps.


def kink_conventions(components: Iterable[sympy.Basic], symbols: AbstractSet[sympy.Symbol]) -> tuple[str, ...]:
    """torch's conventions for the functions in components that have kinks and depend on symbols.

    Piecewise conditions are not walked: huber's |d| < delta is where two smooth pieces meet,
    not a kink.
    """
    found: dict[str, None] = {}
    seen: set[sympy.Basic] = set()

    def walk(node: sympy.Basic) -> None:
        if node in seen or not (node.free_symbols & symbols):
            return
        seen.add(node)
        convention = KINK_CONVENTIONS.get(type(node))
        if convention:
            found[convention] = None
        children = [e for e, _cond in node.args] if isinstance(node, sympy.Piecewise) else node.args
        for a in children:
            walk(a)
    for c in components:
        walk(c)
    return tuple(found)


PRECISE_DIGITS = 50
PRECISE_WORKING_DIGITS = 500


def _precise(total: _Part, env: Mapping[str, torch.Tensor]) -> Callable[[], float | None] | None:
    """sympy's derivative at the point, at PRECISE_DIGITS digits: only for scalar variables.

    float64 can lose every digit to cancellation: at x = 4.5e-209, y = 0, the two terms of
    d/dx log(x, x + y) are 4.6e205 apart from their exact difference, 0. Evaluated at 50
    digits from the same (exactly represented) point, the difference is right.
    """
    if total.elements or any(t.dim() for t in env.values()) or is_long(total.whole):
        return None
    whole = total.whole

    def evaluate() -> float | None:
        symbols = {s_: sympy.Float(float(env[s_.name])) for s_ in whole.free_symbols if s_.name in env}
        try:
            # maxn: sympy raises its working precision this far when terms cancel
            value = complex(whole.evalf(PRECISE_DIGITS, subs=symbols, maxn=PRECISE_WORKING_DIGITS))
        except (TypeError, ValueError, ArithmeticError):
            return None
        return value.real if value.imag == 0 else None
    return evaluate


def _settle_kinks(value: torch.Tensor, evaluate: Callable[[], torch.Tensor]) -> torch.Tensor:
    """value, with its NaNs at kinks replaced where the derivative exists all the same.

    At a kink the slope of abs, relu, max or min can be anything between its one-sided
    slopes, and a first derivative is multilinear in those slopes. Evaluated twice with them
    drawn at random (lower.kink_draws), it agrees with itself only where it does not depend on
    them: x*abs(x) at 0 has the derivative 0, abs(x) at 0 has none. Seeded: the same every run.
    """
    with kink_draws(1):
        first = evaluate()
    with kink_draws(2):
        second = evaluate()
    settled = (torch.isfinite(first) & torch.isfinite(second)
               & ((first - second).abs() <= 1e-9 * torch.maximum(first.abs(), second.abs())))
    return torch.where(torch.isnan(value) & settled, first, value)


def _fdiff(node: sympy.Function, i: int) -> sympy.Expr:
    try:
        return node.fdiff(i)
    except ArgumentIndexError:  # as Function._eval_derivative does
        return sympy.Function.fdiff(node, i)


# 0 and 1 are singletons in sympy: `is` spares sympy's == (which sympifies its operand).
# _from_args builds the node from sympy objects as they are, which is all evaluate=False
# would do after checking each of them again; every symbol here is a real, commutative one.
def _sum(terms: Iterable[sympy.Expr]) -> sympy.Expr:
    terms = [t for t in terms if t is not sympy.S.Zero]
    return (sympy.Add._from_args(terms, is_commutative=True) if len(terms) > 1
            else terms[0] if terms else sympy.S.Zero)


def _product(*factors: sympy.Expr) -> sympy.Expr:
    if any(f is sympy.S.Zero for f in factors):
        return sympy.S.Zero
    kept = [f for f in factors if f is not sympy.S.One]
    return (sympy.Mul._from_args(kept, is_commutative=True) if len(kept) > 1
            else kept[0] if kept else sympy.S.One)


@functools.lru_cache(maxsize=64)  # asked of the same (possibly long) expression several times
def _outside_reductions(expr: sympy.Basic) -> tuple[tuple[sympy.Basic, ...], frozenset[sympy.Symbol]]:
    """The reductions in expr not inside another one (in a stable order), and the symbols
    used outside every reduction, in one walk."""
    found: dict[sympy.Basic, None] = {}
    symbols: set[sympy.Symbol] = set()
    seen: set[sympy.Basic] = set()

    def walk(node: sympy.Basic) -> None:
        if isinstance(node, sympy_functions.Reduction):
            found[node] = None
        elif isinstance(node, sympy.Symbol):
            symbols.add(node)
        elif node not in seen:
            seen.add(node)
            for a in node.args:
                walk(a)
    walk(expr)
    return tuple(found), frozenset(symbols)


def top_reductions(expr: sympy.Basic) -> tuple[sympy.Basic, ...]:
    """Reductions in expr that are not inside another reduction, in a stable order."""
    return _outside_reductions(expr)[0]


@dataclass
class _Part:
    """A symbolic gradient under assembly: value, and a formula for people to read."""

    value: torch.Tensor
    whole: sympy.Expr = sympy.S.Zero  # the elementwise part
    elements: dict[Index, sympy.Expr] = field(default_factory=dict)  # x[i] parts


class _LazyEnv(dict[str, torch.Tensor]):
    """Variable values, plus reduction values computed on first use."""

    def __init__(self, base: Mapping[str, torch.Tensor]):
        super().__init__(base)
        self.pending: dict[str, Callable[[], torch.Tensor]] = {}

    def __missing__(self, key: str) -> torch.Tensor:
        if key not in self.pending:
            raise KeyError(key)
        value = self.pending.pop(key)()
        self[key] = value
        return value


@dataclass
class _Layer:
    """One level of the chain rule: expr with its outermost reductions replaced by symbols."""

    flat: sympy.Expr
    reductions: dict[sympy.Basic, sympy.Symbol]  # reduction -> its placeholder
    back: dict[sympy.Symbol, sympy.Basic]
    shape: tuple[int, ...]  # the broadcast shape of expr (with the requested output shape)
    free: frozenset[sympy.Symbol]  # flat.free_symbols (flat has no reduction left)


# A lowered expression: (env key, function) steps for its common subexpressions, then its own
# function of the env. Kept per expression by a caller that evaluates it again on new values.
Program = tuple[list[tuple[str, Callable[[Mapping[str, torch.Tensor]], torch.Tensor]]],
                Callable[[Mapping[str, torch.Tensor]], torch.Tensor]]
Programs = dict[sympy.Basic, Program]
MAX_PROGRAMS = 256


class SymbolicDifferentiator:
    """Symbolic derivatives of tensor expressions: gradients, Jacobians and J·u products."""

    def __init__(self, table: SymbolTable, env: Mapping[str, torch.Tensor], programs: Programs | None = None):
        self.table = dict(table)
        self.env = _LazyEnv(env)
        self._large = sum(int(t.numel()) for t in env.values()) > 100_000
        self._values: dict[sympy.Basic, torch.Tensor] = {}
        self._layers: dict[tuple[sympy.Basic, tuple[int, ...]], _Layer] = {}
        self._programs = programs if programs is not None else {}

    def shape_of(self, expr: sympy.Basic) -> tuple[int, ...]:
        """The broadcast shape of an expression, without computing it.

        Everything but a reduction is elementwise, and a reduction is a scalar, so the shape
        is the broadcast of the shapes of the variables used outside reductions.
        """
        shapes = []
        for s_ in _outside_reductions(expr)[1]:
            if s_ in self.table:
                name, index = self.table[s_]
                if name in self.env.pending:
                    continue  # a reduction's placeholder: a scalar, not worth computing for its shape
                value = self.env[name]
                shapes.append(tuple(value.shape) if index is None
                              else tuple(value[_normalise(index, tuple(value.shape))].shape))
        return broadcast_shapes(*shapes) if shapes else ()

    def evaluate(self, expr: sympy.Basic) -> torch.Tensor:
        if expr not in self._values:
            program = self._programs.get(expr)
            if program is None:
                program = self._program(expr)
                if len(self._programs) >= MAX_PROGRAMS:
                    self._programs.clear()
                self._programs[expr] = program
            steps, fn = program
            for key, step in steps:
                self.env[key] = step(self.env)
            self._values[expr] = fn(self.env)
        return self._values[expr]

    def _program(self, expr: sympy.Basic) -> Program:
        """expr lowered in float64: the common subexpressions' steps, then the result's."""
        # On large tensors, common subexpressions (exp(-x**2) twice in a derivative) are
        # computed once: each repeated operation is a full pass over memory. On small ones
        # sympy.cse would cost more than it saves.
        replacements, reduced = [], expr
        if self._large:
            replacements, (reduced,) = sympy.cse(expr, symbols=sympy.numbered_symbols("_cse", cls=sympy.Dummy))
        steps = []
        for sym, sub in replacements:
            key = f"\0cse{sym.dummy_index}"
            self.table[sym] = (key, None)
            steps.append((key, compile_expression(sub, self.table, dtype=F64, device=CPU)))
        return steps, compile_expression(reduced, self.table, dtype=F64, device=CPU)

    def _symbols_of(self, var: str) -> tuple[sympy.Symbol | None, dict[sympy.Symbol, tuple[int, ...]]]:
        whole = next((s for s, (n, i) in self.table.items() if n == var and i is None), None)
        elements = {s: i for s, (n, i) in self.table.items() if n == var and i is not None}
        return whole, elements

    def _layer(self, expr: sympy.Basic, out_shape: tuple[int, ...]) -> _Layer:
        key = (expr, out_shape)
        if key not in self._layers:
            placeholders: dict[sympy.Basic, sympy.Symbol] = {}
            for k, r in enumerate(top_reductions(expr)):
                ph = sympy.Dummy(f"r{k}", real=True)
                name = f"\0{ph.dummy_index}"
                placeholders[r] = ph
                self.table[ph] = (name, None)
                # Computed only if a derivative needs it: d sum(h)/d sum(h) = 1 does not.
                self.env.pending[name] = functools.partial(self.evaluate, r)
            flat = expr.xreplace(placeholders)
            shape = broadcast_shapes(self.shape_of(flat), out_shape)
            self._layers[key] = _Layer(flat, placeholders, {v: k for k, v in placeholders.items()}, shape,
                                       _outside_reductions(flat)[1])
        return self._layers[key]

    def _partial(self, layer: _Layer, symbol: sympy.Symbol) -> tuple[sympy.Expr, torch.Tensor]:
        """d flat / d symbol: the formula, and its value expanded to the layer's shape."""
        d = derivative(layer.flat, symbol)
        dv = self.evaluate(d)
        return d, dv.expand(broadcast_shapes(tuple(dv.shape), layer.shape))

    def reduction_gradient(self, r: sympy.Basic, var: str, shape: tuple[int, ...]) -> _Part:
        """d r / d var for a reduction r = R(H): the gradient of sum(dR/dH * H) by the chain rule.

        dR/dH is 1 for sum, 1/n for mean, the product of the other elements for prod, and the
        indicator of the extreme element for max/min (NaN on a tie: no derivative there).
        """
        h_expr = r.args[0]
        if isinstance(r, (sympy_functions.tsum, sympy_functions.tmean)):
            inner = self.gradient_of_sum(h_expr, var, shape)
            n = numel(self.shape_of(h_expr))
            mean = isinstance(r, sympy_functions.tmean)
            if not shape and n > 1 and self._holds_tensor(inner.whole):
                # A scalar's derivative through a reduction over many elements (a parameter over
                # the rows of --data) is the sum or mean of one per element: the formula says so.
                whole = (sympy_functions.tmean if mean else sympy_functions.tsum)(inner.whole)
                if mean:
                    return _Part(inner.value / n, whole, {k: e / n for k, e in inner.elements.items()})
                return _Part(inner.value, whole, inner.elements)
            if not mean:
                return inner
            return _Part(inner.value / n, inner.whole / n, {k: e / n for k, e in inner.elements.items()})
        h = self.evaluate(h_expr)
        if isinstance(r, sympy_functions.tprod):
            weight = _exclusive_products(h)
            shown = r / h_expr
        elif isinstance(r, sympy_functions.tindex):
            weight = torch.zeros_like(h)
            weight[r.index] = 1.0
            shown = sympy.Symbol(f"onehot_{'_'.join(map(str, r.index))}")  # 1 at that element, 0 elsewhere
        elif isinstance(r, (sympy_functions.tmax, sympy_functions.tmin)):
            extreme = h.max() if isinstance(r, sympy_functions.tmax) else h.min()
            weight = (h == extreme).to(F64)
            if weight.sum() > 1:
                weight = weight * math.nan
            shown = sympy.Piecewise((1, sympy.Eq(h_expr, r)), (0, True))
        else:  # pragma: no cover - every Reduction subclass is handled above
            raise LoweringError(f"no derivative rule for the reduction {type(r).__name__}")
        return self.gradient_of_sum(h_expr, var, shape, weight=weight, weight_formula=shown)

    def _holds_tensor(self, expr: sympy.Basic) -> bool:
        """Whether expr holds a whole tensor variable (its value differs element by element)."""
        return any(s_ in self.table and self.table[s_][1] is None and self.env[self.table[s_][0]].dim() > 0
                   for s_ in expr.free_symbols)

    def gradient_of_sum(self, expr: sympy.Basic, var: str, shape: tuple[int, ...],
                        out_shape: tuple[int, ...] = (), weight: torch.Tensor | None = None,
                        weight_formula: sympy.Expr | None = None) -> _Part:
        """d sum(weight * expr) / d var, a tensor of the var's shape (weight: ones by default).

        With a weight v this is the vector-Jacobian product vᵀJ.
        """
        whole_sym, element_syms = self._symbols_of(var)
        mine = {whole_sym, *element_syms} - {None}
        layer = self._layer(expr, out_shape)
        w = None if weight is None else weight.to(F64).expand(layer.shape)
        scalar_out = layer.shape == () and w is None
        free = layer.free
        # Filled by the elementwise term when there is one, so a large gradient is not first
        # allocated as zeros and then added to.
        total = torch.zeros(shape, dtype=F64) if whole_sym not in free else None
        part = _Part(cast(torch.Tensor, total))  # None only until the elementwise term fills it in, below

        def shown(d: sympy.Expr) -> sympy.Expr:
            d = d.xreplace(layer.back)
            if weight_formula is not None:
                d = weight_formula * d
            return d if scalar_out else sympy_functions.tsum(d)

        if whole_sym in free:
            d, dv = self._partial(layer, whole_sym)
            if w is not None:
                dv = dv * w
            full = broadcast_shapes(tuple(dv.shape), shape)
            direct = _sum_to(dv.expand(full), shape)
            # Later terms are added in place: never into a view of a cached value.
            fresh = direct.data_ptr() != dv.data_ptr() and direct.is_contiguous()
            total = direct if fresh else direct.clone()
            part.value = total
            part.whole += d.xreplace(layer.back) * (weight_formula if weight_formula is not None else 1)
        assert total is not None  # zeros, or the elementwise term
        for sym, index in element_syms.items():
            if sym in free:
                # x[i] or a slice x[1:]: d/d(view), summed back to the view's shape, lands there.
                d, dv = self._partial(layer, sym)
                view = total[_normalise(index, shape)]
                contribution = dv if w is None else dv * w
                full = broadcast_shapes(tuple(contribution.shape), tuple(view.shape))
                view += _sum_to(contribution.expand(full), tuple(view.shape))
                part.elements[index] = part.elements.get(index, sympy.S.Zero) + (
                    shown(d) if not view.shape else d.xreplace(layer.back))
        for r, ph in layer.reductions.items():
            if not (r.free_symbols & mine) or ph not in free:
                continue
            d, dv = self._partial(layer, ph)
            coefficient = (dv if w is None else dv * w).sum()
            inner = self.reduction_gradient(r, var, shape)
            total += coefficient * inner.value
            factor = shown(d)
            part.whole += factor * inner.whole
            for key, e in inner.elements.items():
                part.elements[key] = part.elements.get(key, sympy.S.Zero) + factor * e
        return part

    def jacobian(self, expr: sympy.Basic, var: str, shape: tuple[int, ...],
                 out_shape: tuple[int, ...] = ()) -> torch.Tensor:
        """d expr / d var, of shape (broadcast shape of expr) + var's shape.

        An elementwise expression has a diagonal Jacobian: it is scattered from one vector of
        derivatives, never built entry by entry. Reductions add rank-one terms (outer products
        of dexpr/dR and the reduction's gradient), and x[i] adds one column.
        """
        whole_sym, element_syms = self._symbols_of(var)
        mine = {whole_sym, *element_syms} - {None}
        layer = self._layer(expr, out_shape)
        n_out, n_in = numel(layer.shape), numel(shape)
        free = layer.free
        jac: torch.Tensor | None = None
        for r, ph in layer.reductions.items():
            if not (r.free_symbols & mine) or ph not in free:
                continue
            _, dv = self._partial(layer, ph)
            inner = self.reduction_gradient(r, var, shape).value
            if jac is None:
                jac = torch.outer(dv.reshape(-1), inner.reshape(-1))
            else:
                jac.addr_(dv.reshape(-1), inner.reshape(-1))
        if jac is None:
            jac = torch.zeros((n_out, n_in), dtype=F64)
        if whole_sym in free:
            _, dv = self._partial(layer, whole_sym)
            if layer.shape == shape:
                jac.diagonal().add_(dv.reshape(-1))
            else:
                # Which element of var each output element reads, after broadcasting.
                source = torch.arange(n_in).reshape(shape).expand(layer.shape).reshape(-1)
                jac[torch.arange(n_out), source] += dv.reshape(-1)
        for sym, index in element_syms.items():
            if sym in free:
                _, dv = self._partial(layer, sym)
                # Which element of var each output element reads through this view.
                positions = torch.arange(n_in).reshape(shape)[_normalise(index, shape)]
                source = positions.expand(layer.shape).reshape(-1)
                jac[torch.arange(n_out), source] += dv.expand(layer.shape).reshape(-1)
        return jac.reshape(layer.shape + shape)

    def jvp(self, expr: sympy.Basic, var: str, shape: tuple[int, ...], tangent: torch.Tensor,
            out_shape: tuple[int, ...] = ()) -> torch.Tensor:
        """J·u: the directional derivative of expr along u, of expr's broadcast shape."""
        whole_sym, element_syms = self._symbols_of(var)
        mine = {whole_sym, *element_syms} - {None}
        layer = self._layer(expr, out_shape)
        u = tangent.to(F64)
        total = torch.zeros(layer.shape, dtype=F64)
        free = layer.free
        if whole_sym in free:
            _, dv = self._partial(layer, whole_sym)
            total += dv * u.expand(broadcast_shapes(tuple(u.shape), layer.shape))
        for sym, index in element_syms.items():
            if sym in free:
                _, dv = self._partial(layer, sym)
                total += dv * u[_normalise(index, shape)]  # broadcasts as the view does
        for r, ph in layer.reductions.items():
            if not (r.free_symbols & mine) or ph not in free:
                continue
            _, dv = self._partial(layer, ph)
            inner = self.reduction_gradient(r, var, shape).value
            total += dv * (inner * u).sum()
        return total


def _exclusive_products(h: torch.Tensor) -> torch.Tensor:
    """d prod(h) / d h_i = the product of every other element, zeros included."""
    flat = h.reshape(-1)
    zeros = flat == 0
    count = int(zeros.sum())
    if count == 0:
        out = flat.prod() / flat
    elif count == 1:
        out = zeros.to(F64) * flat[~zeros].prod()
    else:
        out = torch.zeros_like(flat)
    return out.reshape(h.shape)


def _normalise(index: Index, shape: tuple[int, ...]) -> tuple[int | slice, ...]:
    """A view's index for torch and numpy: negative whole numbers counted from the end."""
    # strict=False: x[1] of a matrix indexes fewer dimensions than it has
    return as_python_index(tuple(i + n if isinstance(i, int) and i < 0 else i
                                 for i, n in zip(index, shape, strict=False)))


@functools.lru_cache(maxsize=128)  # printing costs more than differentiating (sympy orders the terms)
def _show(expr: sympy.Expr) -> str:
    """A formula for people: floats to 6 digits (the value is computed from the exact one)."""
    if is_long(expr):
        return f"(a formula of more than {LONG_EXPRESSION_NODES} terms and functions, not printed)"
    floats = expr.atoms(sympy.Float)
    if floats:
        expr = expr.xreplace({f: sympy.Float(f, 6) for f in floats})
    text: str = sympy.sstr(expr)
    return text


def differentiate_ahead(components: list[sympy.Basic]) -> None:
    """Differentiate and print ahead of a call (the warm server's spares, for recent expressions).

    What a call's check would then find in the caches: the first derivative of each component
    by each of its symbols, and its printed formula. Long expressions and those with
    reductions (whose derivatives are taken of a rewritten form) are left to the call.
    """
    for c in components:
        c = sympy_functions.expand_definitions(c)
        if is_long(c) or top_reductions(c) or c.has(sympy_functions.TensorOp):
            continue
        for symbol in sorted(c.free_symbols, key=str):
            _show(derivative(c, symbol))


def _formula(part: _Part, var: str, shape: tuple[int, ...]) -> str:
    whole = _show(part.whole) if part.whole != 0 or not part.elements else None
    if not part.elements:
        return whole or "0"
    as_list = len(shape) == 1 and set(part.elements) == {(i,) for i in range(shape[0])}
    if whole is None and as_list:
        return "[" + ", ".join(_show(part.elements[(i,)]) for i in range(shape[0])) + "]"
    pieces = [f"{var}[{index_text(k)}]: {_show(e)}" for k, e in part.elements.items()]
    text = "; ".join(pieces)
    if len(part.elements) < (shape[0] if len(shape) == 1 else 0) or len(shape) != 1:
        text += "; other elements: 0" if whole is None else ""
    return (whole + " (elementwise); " + text) if whole else text


def symbolic_gradients(components: list[sympy.Basic], shape: tuple[int, ...] | None, table: SymbolTable,
                       values: Mapping[str, torch.Tensor], wrt: list[str], reduction: str,
                       programs: Programs | None = None) -> dict[str, SymbolicGradient]:
    """The symbolic gradient of the reduced output with respect to each variable in `wrt`.

    `programs` keeps the lowered derivatives for the next call with the same expression and
    symbol table and other values (the next chunk of `--points` rows): lowering them, and
    finding their common subexpressions, costs more than evaluating them on 65,536 rows.
    """
    typed = components
    components = scalar_forms([sympy_functions.expand_definitions(c) for c in components], table, values)
    if sympy_functions.has_tensor_ops(components):
        expanded = _expanded_gradients(components, table, values, wrt, reduction)
        from gradcli.core import matrix_form  # the formula in matrix form; its value where expansion is too big

        matrix_form.complete(expanded, matrix_form.matrix_gradients(components, shape, table, values, wrt, reduction))
        return _with_trap(expanded, typed)
    env = reference_env(values)
    results: dict[str, SymbolicGradient] = {}
    def assemble(var: str, var_shape: tuple[int, ...]) -> tuple[_Part, int]:
        """The gradient, and how many elements of f it adds up (the scalar differentiated is
        their sum or mean)."""
        differ = SymbolicDifferentiator(table, env, programs)
        common = broadcast_shapes(*(differ.shape_of(c) for c in components))
        total: _Part | None = None
        for c in components:
            p = differ.gradient_of_sum(c, var, var_shape, common)
            if total is None:
                total = p
            else:
                total.value = total.value + p.value
                total.whole += p.whole
                for k, e in p.elements.items():
                    total.elements[k] = total.elements.get(k, sympy.S.Zero) + e
        assert total is not None
        out_numel = (len(components) if shape is not None else 1) * numel(common)
        if reduction == "mean" and out_numel > 1:
            total.value = total.value / out_numel
            total.whole = total.whole / out_numel
            total.elements = {k: e / out_numel for k, e in total.elements.items()}
        return total, out_numel

    for var in wrt:
        var_shape = tuple(env[var].shape)
        try:
            total, added = assemble(var, var_shape)
            formula = _formula(total, var, var_shape)
            if not var_shape and added > 1 and shape is None and not total.elements:
                # A scalar over many elements (a parameter over the rows of --data): its derivative
                # is the sum (or mean) of one per element, and the formula says so.
                each = total.whole * added if reduction == "mean" else total.whole
                formula = f"{reduction}({_show(each)})"
            value = total.value
            kinks: tuple[str, ...] | None = None
            if bool(torch.isnan(value).any()):  # a kink, a point outside the domain, or both
                kinks = kink_conventions(components, {s_ for s_, (n, _i) in table.items() if n == var})
                if kinks and not set(kinks) & JUMP_CONVENTIONS:
                    def again(var: str = var, var_shape: tuple[int, ...] = var_shape) -> torch.Tensor:
                        return assemble(var, var_shape)[0].value  # at once, in _settle_kinks: bound all the same
                    value = _settle_kinks(value, again)
            results[var] = SymbolicGradient(formula, value, kinks=kinks, precise=_precise(total, env))
        except LoweringError as exc:
            results[var] = SymbolicGradient("?", None, f"sympy's derivative cannot be evaluated: {exc.message}")
        except GradcliError:
            raise
        except (RuntimeError, ValueError, TypeError, ZeroDivisionError) as exc:
            results[var] = SymbolicGradient("?", None, f"the symbolic derivative failed: {exc}")
    return _with_trap(results, typed)


def _with_trap(results: dict[str, SymbolicGradient], components: list[sympy.Basic]) -> dict[str, SymbolicGradient]:
    trap = where_trap(components)
    for r in results.values():
        r.where_trap = trap
    return results


def numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


# --------------------------------------------------------------------------- higher orders

def is_elementwise_in(expr: sympy.Basic, table: SymbolTable, var: str) -> bool:
    """True when var enters expr only elementwise: not indexed, not inside a reduction."""
    for s_, (n, i) in table.items():
        if n == var and i is not None and s_ in expr.free_symbols:
            return False
    whole = next((s_ for s_, (n, i) in table.items() if n == var and i is None), None)
    return not any(whole in r.free_symbols
                   for r in expr.atoms(sympy_functions.Reduction, sympy_functions.TensorOp))


def symbolic_order(expr: sympy.Basic, table: SymbolTable, values: Mapping[str, torch.Tensor], var: str,
                   order: int, reduction: str) -> list[SymbolicGradient]:
    """sympy.diff(f, x, k) for k = 1..order, each summed back to x's shape as autograd does."""
    expr = scalar_forms([sympy_functions.expand_definitions(expr)], table, values)[0]
    if expr.has(sympy_functions.TensorOp):
        why = "higher derivatives of tensor operations are checked by gradcli hessian (entry by entry)"
        return [SymbolicGradient("?", None, why) for _ in range(order)]
    env = reference_env(values)
    differ = SymbolicDifferentiator(table, env)
    whole = next(s_ for s_, (n, i) in table.items() if n == var and i is None)
    shape = tuple(env[var].shape)
    out_shape = tuple(differ.evaluate(expr).shape)
    scale = 1.0 / numel(out_shape) if reduction == "mean" and out_shape else 1.0
    results = []
    d = expr
    for _ in range(order):
        d = derivative(d, whole)
        try:
            value = differ.evaluate(d)
            full = broadcast_shapes(tuple(value.shape), out_shape, shape)
            value = _sum_to(value.expand(full), shape) * scale
            kinks = kink_conventions([expr], {whole}) if bool(torch.isnan(value).any()) else None
            results.append(SymbolicGradient(_show(d if scale == 1.0 else d * scale), value, kinks=kinks))
        except LoweringError as exc:
            results.append(SymbolicGradient(_show(d), None, f"sympy's derivative cannot be evaluated: {exc.message}"))
    return results


HESSIAN_SYMBOLIC_LIMIT = 64  # elements; the symbolic Hessian has this many squared entries


class Expanded:
    """The small-shape route: tensors spelled out entry by entry, in scalar sympy expressions.

    Every variable becomes a numpy object array of its elements: a symbol per element
    (x[0], x[1], ...) for the variables differentiated, a float64 constant per element for the
    others. The expression is then evaluated on those arrays node by node: arithmetic and
    elementwise functions entry by entry (numpy broadcasting), whole-tensor reductions as
    explicit sums, and each tensor operation by its own `expand` rule (sympy_functions.TensorOp),
    written from its definition, never from torch. Each output entry is an ordinary scalar
    expression that sympy differentiates exactly; the derivatives are evaluated in float64.
    """

    def __init__(self, table: SymbolTable, env: Mapping[str, torch.Tensor], symbolic: Iterable[str]):
        import numpy as np

        self.table = table
        self.env = env
        self.elements: dict[str, Any] = {}  # variable -> object array of its element symbols
        self.element_table: dict[sympy.Symbol, tuple[str, Index | None]] = {}
        self.order: dict[str, list[sympy.Symbol]] = {}
        for v in symbolic:
            shape = tuple(env[v].shape)
            arr = np.empty(shape, dtype=object)
            self.order[v] = []
            for idx in np.ndindex(shape):
                sym = sympy.Symbol(f"{v}[{','.join(map(str, idx))}]" if shape else v, real=True)
                arr[idx] = sym
                self.element_table[sym] = (v, idx if shape else None)
                self.order[v].append(sym)
            self.elements[v] = arr
        self._constants: dict[str, Any] = {}
        self._spelled: dict[sympy.Basic, Any] = {}

    def constant(self, name: str) -> Any:
        if name not in self._constants:
            import numpy as np

            t = self.env[name]
            # the float64 values exactly: whole numbers as integers, so formulas read 2*x[0], not 2.0*x[0]
            flat = [sympy.Integer(int(v)) if float(v).is_integer() and abs(v) < 2**53 else sympy.Float(v, 17)
                    for v in t.reshape(-1).tolist()]
            self._constants[name] = np.array(flat + [None], dtype=object)[:-1].reshape(tuple(t.shape))
        return self._constants[name]

    def spell(self, node: sympy.Basic) -> Any:
        """node entry by entry: a sympy expression, or a numpy object array of them."""
        known = self._spelled.get(node)
        if known is None:
            known = self._spelled[node] = self._spell(node)
        return known

    def _spell(self, node: sympy.Basic) -> Any:
        import numpy as np

        if sympy_functions.is_plain_constant(node):
            return node
        if isinstance(node, sympy.Symbol):
            name, index = self.table[node]
            arr = self.elements[name] if name in self.elements else self.constant(name)
            return arr if index is None else np.asarray(arr[_normalise(index, arr.shape)], dtype=object)
        if isinstance(node, sympy_functions.TensorOp):
            operands = [sympy_functions.as_object_array(self.spell(a)) for a in node.operands]
            return node.expand(operands, *node.static)
        if isinstance(node, sympy_functions.Defined):
            return self.spell(node.definition())
        if isinstance(node, sympy_functions.bcast):
            value, *others = (self.spell(a) for a in node.args)
            shape = np.broadcast_shapes(*(np.shape(o) for o in [value, *others]))
            return np.broadcast_to(sympy_functions.as_object_array(value), shape)
        if isinstance(node, sympy.Piecewise):  # where(): its pieces and conditions entry by entry
            parts = [self.spell(p) for pair in node.args for p in pair.args]
            if not _is_array(*parts):
                return node.func(*zip(parts[::2], parts[1::2], strict=True))
            func = node.func
            return np.vectorize(lambda *p: func(*zip(p[::2], p[1::2], strict=True)), otypes=[object])(*parts)
        args = [self.spell(a) for a in node.args]
        if isinstance(node, sympy_functions.Reduction):
            if isinstance(node, sympy_functions.tindex):
                return np.asarray(args[0], dtype=object)[node.index]
            items = np.asarray(args[0], dtype=object).reshape(-1).tolist()
            if isinstance(node, sympy_functions.tprod):
                return sympy.Mul(*items)
            if isinstance(node, (sympy_functions.tmax, sympy_functions.tmin)):
                return (sympy.Max if isinstance(node, sympy_functions.tmax) else sympy.Min)(*items)
            total = sympy.Add(*items)
            return total / len(items) if isinstance(node, sympy_functions.tmean) else total
        if not _is_array(*args):
            return node.func(*args)
        if node.is_Add:
            result = args[0]
            for a in args[1:]:
                result = np.add(result, a, dtype=object)
            return result
        if node.is_Mul:
            result = args[0]
            for a in args[1:]:
                result = np.multiply(result, a, dtype=object)
            return result
        func = node.func
        return np.vectorize(lambda *a: func(*a), otypes=[object])(*args)

    def outputs(self, components: list[sympy.Basic]) -> list[sympy.Expr]:
        """The entries of f, flattened: each component broadcast to their common shape, in order."""
        import numpy as np

        arrays = [np.asarray(self.spell(c), dtype=object) for c in components]
        common = np.broadcast_shapes(*(a.shape for a in arrays))
        return [e for a in arrays for e in np.broadcast_to(a, common).reshape(-1).tolist()]

    def evaluate(self, exprs: list[sympy.Expr]) -> torch.Tensor:
        """The expressions' values in float64, through the lowering (NaN where a kink has no slope)."""
        values = compile_many(exprs, self.element_table, dtype=F64, device=CPU)(dict(self.env))
        return torch.stack([v.reshape(()) for v in values]) if values else torch.zeros(0, dtype=F64)

    def gradient(self, entries: list[sympy.Expr], symbols: list[sympy.Symbol], scale: int) -> list[sympy.Expr]:
        """d (sum of entries) / d s for each symbol s, by differentiating each entry only by the
        symbols it holds (an entry of A @ B holds one row and one column): much less work than
        differentiating the whole sum by every symbol."""
        wanted = set(symbols)
        # Printed only for a few symbols: simplified then, as written (faster, the same values) else.
        differentiate = derivative if len(symbols) <= 9 else _derivative_as_written
        terms: dict[sympy.Symbol, list[sympy.Expr]] = {s_: [] for s_ in symbols}
        for e in entries:
            for s_ in e.free_symbols & wanted:
                terms[s_].append(differentiate(e, s_))
        sums = [sympy.Add(*terms[s_]) if len(symbols) <= 9 else _sum(terms[s_]) for s_ in symbols]
        return [d / scale for d in sums] if scale != 1 else sums


# The small-shape route spells out at most this many entries (every node's elements, summed):
# each is a scalar expression that sympy builds and differentiates. See core/limits.py.
def expansion_entries(components: list[sympy.Basic], table: SymbolTable, values: Mapping[str, torch.Tensor]) -> int:
    """How many scalar entries spelling out the components builds: every node's elements, summed."""
    from gradcli.core.shapes import ShapeInference

    def leaf(symbol: sympy.Symbol) -> tuple[int, ...]:
        name, index = table[symbol]
        shape = tuple(values[name].shape)
        return shape if index is None else indexed_shape(index, shape)

    inference = ShapeInference(leaf)
    for c in components:
        inference.shape(c)
    return sum(numel(s) for s in inference.known.values())


def _expansion_refused(components: list[sympy.Basic], table: SymbolTable,
                       values: Mapping[str, torch.Tensor]) -> str | None:
    """Why the small-shape route cannot run here (too many entries), or None."""
    n = expansion_entries(components, table, values)
    if n > SYMBOLIC_EXPANSION_LIMIT:
        return (f"{n:,} entries exceed the symbolic limit {SYMBOLIC_EXPANSION_LIMIT:,}: tensor operations are "
                "checked entry by entry, spelled out in sympy, only for small shapes")
    return None


def _expansion_formula(derivatives: list[sympy.Expr], shape: tuple[int, ...], entries: int) -> str:
    if len(derivatives) <= 9:
        texts = [_show(d) for d in derivatives]
        if sum(map(len, texts)) <= 240:
            return _nested(texts, shape) if shape else texts[0]
    return "sympy.diff of f, spelled out entry by entry"


def _nested(texts: list[str], shape: tuple[int, ...]) -> str:
    """Entries in row-major order as nested brackets: [[a, b], [c, d]]."""
    if len(shape) <= 1:
        return "[" + ", ".join(texts) + "]"
    step = len(texts) // shape[0]
    return "[" + ", ".join(_nested(texts[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])) + "]"


def _expanded_gradients(components: list[sympy.Basic], table: SymbolTable, values: Mapping[str, torch.Tensor],
                        wrt: list[str], reduction: str) -> dict[str, SymbolicGradient]:
    """symbolic_gradients by the small-shape route (see Expanded)."""
    refused = _expansion_refused(components, table, values)
    if refused:
        return {v: SymbolicGradient("?", None, refused) for v in wrt}
    env = reference_env(values)
    out: dict[str, SymbolicGradient] = {}
    try:
        expanded = Expanded(table, env, wrt)
        entries = expanded.outputs(components)
    except TensorDerivativeError as exc:  # pragma: no cover - spelled out, no tensor operation is left
        return {v: SymbolicGradient("?", None, str(exc)) for v in wrt}
    scale = len(entries) if reduction == "mean" and len(entries) > 1 else 1
    for var in wrt:
        shape = tuple(env[var].shape)
        derivatives = expanded.gradient(entries, expanded.order[var], scale)

        def compute(derivatives: list[sympy.Expr] = derivatives, shape: tuple[int, ...] = shape) -> torch.Tensor:
            return expanded.evaluate(derivatives).reshape(shape)
        result = _guarded(compute, _expansion_formula(derivatives, shape, len(entries)))
        if result.value is not None and bool(torch.isnan(result.value).any()):
            result.kinks = kink_conventions(components, set(expanded.order[var]) | {
                s_ for s_, (n, _i) in table.items() if n == var})
            if result.kinks and not set(result.kinks) & JUMP_CONVENTIONS:
                result.value = _settle_kinks(result.value, compute)
        out[var] = result
    return out


def _guarded_jacobians(components: list[sympy.Basic], shape: tuple[int, ...] | None, table: SymbolTable,
                       values: Mapping[str, torch.Tensor], wrt: list[str]) -> dict[str, torch.Tensor] | str:
    try:
        return _expanded_jacobians(components, shape, table, values, wrt)
    except LoweringError as exc:
        return f"sympy's derivative cannot be evaluated: {exc.message}"
    except (RuntimeError, ValueError, TypeError, ZeroDivisionError) as exc:
        return f"the symbolic derivative failed: {exc}"


def scalar_forms(components: list[sympy.Basic], table: SymbolTable,
                 values: Mapping[str, torch.Tensor]) -> list[sympy.Basic]:
    """The components with each tensor operation that has one replaced by its scalar form for the
    bound shapes (dot of two vectors is sum(a*b)): those need no spelling out, at any size."""
    if not sympy_functions.has_tensor_ops(components):
        return components
    from gradcli.core.shapes import ShapeInference

    def leaf(symbol: sympy.Symbol) -> tuple[int, ...]:
        name, index = table[symbol]
        shape = tuple(values[name].shape)
        return shape if index is None else indexed_shape(index, shape)

    inference = ShapeInference(leaf)

    def rewrite(node: sympy.Basic) -> sympy.Basic:
        if not isinstance(node, sympy_functions.TensorOp):
            return node
        form = node.scalar_form([inference.shape(a) for a in node.operands])
        return node if form is None else form
    return [c.replace(lambda n: isinstance(n, sympy_functions.TensorOp), rewrite) for c in components]


def _expanded_jacobians(components: list[sympy.Basic], shape: tuple[int, ...] | None, table: SymbolTable,
                        values: Mapping[str, torch.Tensor], wrt: list[str]) -> dict[str, torch.Tensor] | str:
    """d f / d var entry by entry, of shape f's shape + var's shape; or why it cannot be had."""
    import numpy as np

    refused = _expansion_refused(components, table, values)
    if refused:
        return refused
    env = reference_env(values)
    expanded = Expanded(table, env, wrt)
    entries = expanded.outputs(components)
    common = np.broadcast_shapes(*(np.shape(expanded.spell(c)) for c in components))
    out_shape = (tuple(shape) if shape is not None else ()) + tuple(int(n) for n in common)
    result = {}
    for var in wrt:
        symbols = expanded.order[var]
        derivatives = [_derivative_as_written(e, s_) if s_ in e.free_symbols else sympy.S.Zero
                       for e in entries for s_ in symbols]
        result[var] = expanded.evaluate(derivatives).reshape(out_shape + tuple(env[var].shape))
    return result


HESSIAN_SYMBOLIC_LIMIT = 64  # elements; the symbolic Hessian has this many squared entries


def symbolic_hessian(components: list[sympy.Basic], table: SymbolTable, values: Mapping[str, torch.Tensor],
                     wrt: list[str], reduction: str) -> SymbolicGradient:
    """sympy.hessian of the reduced output over every element of the wrt variables.

    Tensor variables are spelled out element by element (x becomes x[0], x[1], ...) and
    sum/mean become explicit sums (`Expanded`), so sympy differentiates an ordinary scalar function.
    """
    components = [sympy_functions.expand_definitions(c) for c in components]
    env = reference_env(values)
    n = sum(env[v].numel() for v in wrt)
    if n > HESSIAN_SYMBOLIC_LIMIT:
        return SymbolicGradient("?", None, f"the symbolic Hessian is checked up to {HESSIAN_SYMBOLIC_LIMIT} "
                                           f"elements; these variables have {n}")
    refused = _expansion_refused(components, table, values) if sympy_functions.has_tensor_ops(components) else None
    if refused:
        return SymbolicGradient("?", None, refused)
    expanded = Expanded(table, env, wrt)
    order = [s_ for v in wrt for s_ in expanded.order[v]]
    entries = expanded.outputs(components)
    f = sympy.Add(*entries)
    if reduction == "mean" and len(entries) > 1:
        f = f / len(entries)
    hess = torch.zeros((n, n), dtype=F64)
    try:
        for i, si in enumerate(order):
            di = derivative(f, si)
            row = expanded.evaluate([derivative(di, order[j]) for j in range(i, n)])
            hess[i, i:] = row
            hess[i:, i] = row
    except LoweringError as exc:
        return SymbolicGradient("?", None, f"sympy's derivative cannot be evaluated: {exc.message}")
    formula = "sympy.hessian(f), entry by entry"
    if n <= 4 and len(str(f)) < 200:
        formula = "[" + ", ".join("[" + ", ".join(_show(e) for e in row) + "]"
                                  for row in sympy.hessian(f, order).tolist()) + "]"
    return SymbolicGradient(formula, hess)


def _is_array(*values: object) -> bool:
    import numpy as np

    return any(isinstance(v, np.ndarray) for v in values)


def _guarded(compute: Callable[[], torch.Tensor], formula: str = "") -> SymbolicGradient:
    """Run a symbolic computation; a derivative sympy leaves unevaluated is said, not raised."""
    try:
        return SymbolicGradient(formula, compute())
    except LoweringError as exc:
        return SymbolicGradient("?", None, f"sympy's derivative cannot be evaluated: {exc.message}")
    except (RuntimeError, ValueError, TypeError, ZeroDivisionError) as exc:
        return SymbolicGradient("?", None, f"the symbolic derivative failed: {exc}")


def _component_shapes(differ: SymbolicDifferentiator, components: list[sympy.Basic]) -> tuple[int, ...]:
    return broadcast_shapes(*(differ.shape_of(c) for c in components))


def symbolic_jacobians(components: list[sympy.Basic], shape: tuple[int, ...] | None, table: SymbolTable,
                       values: Mapping[str, torch.Tensor], wrt: list[str]) -> dict[str, SymbolicGradient]:
    """The symbolic Jacobian of f with respect to each variable: f.shape + variable.shape."""
    typed = components
    components = scalar_forms([sympy_functions.expand_definitions(c) for c in components], table, values)
    if sympy_functions.has_tensor_ops(components):
        formula = "sympy.diff of every entry of f spelled out, by every element"
        found = _guarded_jacobians(components, shape, table, values, wrt)
        if isinstance(found, str):
            jacobians = {v: SymbolicGradient("?", None, found) for v in wrt}
        else:
            jacobians = _with_trap({v: SymbolicGradient(formula, found[v]) for v in wrt}, typed)
        from gradcli.core import matrix_form  # the formula in matrix form; its value where expansion is too big

        matrix_form.complete(jacobians, matrix_form.matrix_jacobians(components, shape, table, values, wrt))
        return jacobians
    env = reference_env(values)
    out: dict[str, SymbolicGradient] = {}
    for var in wrt:
        differ = SymbolicDifferentiator(table, env)
        var_shape = tuple(env[var].shape)

        # called at once by _guarded: the defaults bind this pass's differ, var and var_shape all the same
        def compute(differ: SymbolicDifferentiator = differ, var: str = var,
                    var_shape: tuple[int, ...] = var_shape) -> torch.Tensor:
            common = _component_shapes(differ, components)
            parts = [differ.jacobian(c, var, var_shape, common) for c in components]
            if shape is None:
                return parts[0]
            return torch.stack(parts).reshape(tuple(shape) + common + var_shape)
        out[var] = _guarded(compute, "sympy.diff of each part, assembled by the chain rule "
                                     "(elementwise parts: the diagonal)")
    return _with_trap(out, typed)


def symbolic_vjps(components: list[sympy.Basic], shape: tuple[int, ...] | None, table: SymbolTable,
                  values: Mapping[str, torch.Tensor], wrt: list[str], v: torch.Tensor) -> dict[str, SymbolicGradient]:
    """vᵀ·J with the symbolic J, for each variable."""
    components = scalar_forms([sympy_functions.expand_definitions(c) for c in components], table, values)
    vr = v.detach().to(device=CPU, dtype=F64)
    if sympy_functions.has_tensor_ops(components):
        found = _guarded_jacobians(components, shape, table, values, wrt)
        if isinstance(found, str):
            return {name: SymbolicGradient("?", None, found) for name in wrt}
        return {name: SymbolicGradient("sum(v * df/dx), df/dx entry by entry by sympy.diff",
                                       (vr.reshape(-1) @ j.reshape(vr.numel(), -1)).reshape(values[name].shape))
                for name, j in found.items()}
    env = reference_env(values)
    out: dict[str, SymbolicGradient] = {}
    for var in wrt:
        differ = SymbolicDifferentiator(table, env)
        var_shape = tuple(env[var].shape)

        # called at once by _guarded: the defaults bind this pass's differ, var and var_shape all the same
        def compute(differ: SymbolicDifferentiator = differ, var: str = var,
                    var_shape: tuple[int, ...] = var_shape) -> torch.Tensor:
            common = _component_shapes(differ, components)
            if shape is None:
                return differ.gradient_of_sum(components[0], var, var_shape, tuple(vr.shape), weight=vr).value
            weights = vr.reshape((len(components),) + common)
            total = torch.zeros(var_shape, dtype=F64)
            for c, w in zip(components, weights, strict=True):  # a weight per component
                total += differ.gradient_of_sum(c, var, var_shape, common, weight=w).value
            return total
        out[var] = _guarded(compute, "sum(v * df/dx) by sympy.diff")
    return out


def symbolic_jvp(components: list[sympy.Basic], shape: tuple[int, ...] | None, table: SymbolTable,
                 values: Mapping[str, torch.Tensor], var: str, u: torch.Tensor) -> SymbolicGradient:
    """J·u with the symbolic J."""
    components = scalar_forms([sympy_functions.expand_definitions(c) for c in components], table, values)
    ur = u.detach().to(device=CPU, dtype=F64)
    if sympy_functions.has_tensor_ops(components):
        found = _guarded_jacobians(components, shape, table, values, [var])
        if isinstance(found, str):
            return SymbolicGradient("?", None, found)
        j = found[var]
        out_shape = tuple(j.shape[:j.dim() - ur.dim()])
        return SymbolicGradient("df/dx · v, df/dx entry by entry by sympy.diff",
                                (j.reshape(-1, ur.numel()) @ ur.reshape(-1)).reshape(out_shape))
    env = reference_env(values)
    differ = SymbolicDifferentiator(table, env)
    var_shape = tuple(env[var].shape)

    def compute() -> torch.Tensor:
        common = _component_shapes(differ, components)
        parts = [differ.jvp(c, var, var_shape, ur, common) for c in components]
        if shape is None:
            return parts[0]
        return torch.stack([p.expand(common) for p in parts]).reshape(tuple(shape) + common)
    return _guarded(compute, "df/dx · v by sympy.diff")
