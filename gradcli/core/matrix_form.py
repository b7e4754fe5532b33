"""The check for tensor programs of any shape: the gradient in matrix form.

A tensor program such as `sum((A @ x - b)**2)` or `logdet(X)` is written as a sympy matrix
expression (MatrixSymbol, MatMul, Transpose, Trace, Determinant, Inverse, HadamardProduct...)
and differentiated with sympy's matrix calculus, so the work never grows with the n^2 scalar
entries a small-shape expansion would need: the gradient is a formula such as `2*A.T*(A*x - b)`
whatever n is, evaluated once in float64 with numpy at the user's values. numpy, not the torch
registry, evaluates it, so a wrong torch lowering cannot hide behind the same code.

sympy's matrix derivatives have known holes. `array_derive` returns 0 for any scalar function
it does not know (`log(det(X))`, `exp(trace(X))`, `trace(X) + 1`: sympy issues 26561, 26585,
27406, 25118, 30527), Determinant has no rule at all, and Hadamard powers inside a sum raise.
So sympy is handed only what it does reliably, one piece at a time:

- at the scalar level, every matrix-valued leaf (a trace, a determinant, a 1x1 product) becomes
  a plain symbol t_i and sympy's scalar `diff` gives df/dt_i;
- each leaf's gradient is sympy's `Trace(K.T * M).diff(X)` with K a constant placeholder (the
  adjoint flowing into M): the matrix-calculus step proper;
- elementwise functions, Hadamard products and powers are cut out of M the same way, and the
  adjoint passes through them by the elementwise chain rule (G * f'(N));
- a determinant's adjoint is det(M) * inv(M).T (Jacobi's formula), which sympy lacks.

What is left can still be wrong (sympy's rules have had bugs, and so may these); the check in
`compare_gradient` says who disagrees, and the numeric route decides between them.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy
from sympy.matrices.expressions import (
    Determinant,
    HadamardProduct,
    Identity,
    Inverse,
    MatAdd,
    MatMul,
    MatPow,
    MatrixExpr,
    MatrixSymbol,
    OneMatrix,
    Trace,
    Transpose,
    ZeroMatrix,
)
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
from sympy.matrices.expressions.diagonal import DiagMatrix
from sympy.matrices.expressions.hadamard import HadamardPower
from sympy.matrices.expressions.matexpr import MatrixElement
from sympy.printing.latex import LatexPrinter

# Names of the placeholders this module introduces; a user's variable cannot start with them.
_PLACEHOLDER = "__gradcli_"


class MatrixFormUnsupported(Exception):
    """The expression has a part the matrix-form route cannot differentiate or evaluate."""


_counter = itertools.count()


def _fresh_matrix(shape: tuple[Any, Any]) -> MatrixSymbol:
    return MatrixSymbol(f"{_PLACEHOLDER}K{next(_counter)}", *shape)


def _fresh_symbol() -> sympy.Symbol:
    # real: a trace or determinant of real matrices is real, so d|t|/dt is sign(t)
    return sympy.Symbol(f"{_PLACEHOLDER}t{next(_counter)}", real=True)


def _quiet_diff(expr: sympy.Basic, wrt: MatrixSymbol) -> sympy.Basic:
    """sympy's d expr / d wrt as a matrix of wrt's shape: its deprecation chatter silenced, its
    crashes and its unevaluated or array-shaped answers made ours."""
    if not expr.has(wrt):
        return ZeroMatrix(*wrt.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = expr.diff(wrt)
        except (AttributeError, TypeError, ValueError, NotImplementedError) as error:
            raise MatrixFormUnsupported(f"sympy's matrix calculus failed on {expr}: {error}") from error
    if result == 0:
        return ZeroMatrix(*wrt.shape)
    if not isinstance(result, MatrixExpr) or tuple(result.shape) != tuple(wrt.shape) \
            or result.has(sympy.Derivative):
        raise MatrixFormUnsupported(f"sympy's matrix calculus gave no matrix of {wrt}'s shape for {expr}")
    return result


def _scalar_diff(expr: sympy.Basic, wrt: sympy.Symbol) -> sympy.Expr:
    """d expr / d wrt for a scalar placeholder: a scalar, or the route gives up."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = sympy.diff(_as_scalar(expr), wrt)
        except (AttributeError, TypeError, ValueError, NotImplementedError) as error:
            raise MatrixFormUnsupported(f"sympy's calculus failed on {expr}: {error}") from error
    if isinstance(result, MatrixExpr) or result.has(sympy.Derivative):
        raise MatrixFormUnsupported(f"sympy gave no scalar derivative of {expr} by {wrt}")
    return _as_scalar(result)


# ---------------------------------------------------------------------------------------------
# Differentiation


def _is_scalar_leaf(node: sympy.Basic) -> bool:
    """A scalar that sympy's scalar calculus must not look inside."""
    if isinstance(node, (Trace, Determinant, MatrixElement)):
        return True
    return isinstance(node, MatrixExpr) and tuple(node.shape) == (1, 1)


def _split_scalar(expr: sympy.Basic) -> tuple[sympy.Expr, dict[sympy.Symbol, sympy.Basic]]:
    """expr with each matrix-valued leaf replaced by a symbol, and the leaves by symbol."""
    leaves: dict[sympy.Basic, sympy.Symbol] = {}

    def walk(node: sympy.Basic) -> sympy.Basic:
        if _is_scalar_leaf(node):
            if node not in leaves:
                leaves[node] = _fresh_symbol()
            return leaves[node]
        if isinstance(node, MatrixExpr):
            raise MatrixFormUnsupported(f"a matrix {node} where a scalar is expected")
        if not node.args or isinstance(node, sympy.Symbol):
            return node
        return node.func(*[walk(a) for a in node.args])

    scalar = walk(expr)
    return scalar, {s: leaf for leaf, s in leaves.items()}


def _as_scalar(leaf: sympy.Basic) -> sympy.Expr:
    """A 1x1 matrix as a scalar sympy can multiply with: its trace, which is its only entry."""
    if isinstance(leaf, MatrixExpr) and tuple(leaf.shape) == (1, 1):
        return Trace(leaf)
    return leaf


def _scale(coefficient: sympy.Expr, matrix: sympy.Basic) -> sympy.Basic:
    """coefficient * matrix, without distributing over a sum (2*(a + b) stays as written)."""
    if coefficient == 1:
        return matrix
    if coefficient == 0 or isinstance(matrix, ZeroMatrix):
        return ZeroMatrix(*matrix.shape)
    if isinstance(matrix, MatMul):
        inner, matrices = matrix.as_coeff_matrices()
        return MatMul(coefficient * inner, *matrices) if coefficient * inner != 1 else MatMul(*matrices)
    return MatMul(coefficient, matrix)


def _total(terms: list[sympy.Basic], shape: tuple[Any, Any]) -> sympy.Basic:
    terms = [t for t in terms if not isinstance(t, ZeroMatrix) and t != 0]
    if not terms:
        return ZeroMatrix(*shape)
    if len(terms) == 1:
        return terms[0]
    return MatAdd(*terms).doit(deep=False)


def scalar_gradient(expr: sympy.Basic, wrt: MatrixSymbol) -> sympy.Basic:
    """d expr / d wrt for a scalar expr, as a matrix expression of wrt's shape."""
    scalar, leaves = _split_scalar(expr)
    # |t| = t*sign(t) for the real leaves: d log|det X| then cancels to 1/det X, not sign/|.|
    signs = {sympy.Abs(s): s * sympy.sign(s) for s in leaves}
    terms = []
    for symbol, leaf in leaves.items():
        if not leaf.has(wrt):
            continue
        factor, matrix = _leaf_gradient(leaf, symbol, wrt)
        outer = (sympy.diff(scalar, symbol).xreplace(signs) * factor).xreplace(signs)
        if outer == 0:
            continue
        outer = outer.xreplace({s: _as_scalar(v) for s, v in leaves.items()})
        terms.append(_scale(outer, matrix))
    return _total(terms, wrt.shape)


def _leaf_gradient(leaf: sympy.Basic, symbol: sympy.Symbol, wrt: MatrixSymbol) -> tuple[sympy.Expr, sympy.Basic]:
    """d leaf / d wrt as a scalar factor (in the leaf's own symbol) times a matrix expression."""
    if isinstance(leaf, Trace):
        inner = leaf.arg
        return sympy.S.One, backpropagate(inner, Identity(inner.shape[0]), wrt)
    if isinstance(leaf, Determinant):
        inner = leaf.arg
        # Jacobi's formula: d det(M) = det(M) tr(M^-1 dM), so the adjoint of M is det(M) M^-T.
        return symbol, backpropagate(inner, Transpose(Inverse(inner)), wrt)
    if isinstance(leaf, MatrixExpr):  # a 1x1 product such as x.T*A*x
        return sympy.S.One, backpropagate(leaf, None, wrt)
    raise MatrixFormUnsupported(f"no matrix-form rule for {type(leaf).__name__}")


_CUT_TYPES = (ElementwiseApplyFunction, HadamardProduct, HadamardPower)


def _cut(matrix: sympy.Basic) -> tuple[sympy.Basic, dict[sympy.Basic, sympy.Basic]]:
    """matrix with its outermost elementwise nodes and matrix-dependent scalar factors replaced
    by constant placeholders (placeholder -> the node it stands for)."""
    cuts: dict[sympy.Basic, sympy.Basic] = {}
    seen: dict[sympy.Basic, sympy.Basic] = {}

    def walk(node: sympy.Basic) -> sympy.Basic:
        if isinstance(node, _CUT_TYPES):
            if node not in seen:
                seen[node] = _fresh_matrix(node.shape)
                cuts[seen[node]] = node
            return seen[node]
        if isinstance(node, MatrixExpr) and not isinstance(node, MatrixSymbol):
            if isinstance(node, (Identity, ZeroMatrix, OneMatrix)):
                return node
            args = []
            for a in node.args:
                if not isinstance(a, MatrixExpr) and a.free_symbols and any(
                        isinstance(s, MatrixSymbol) for s in a.atoms(MatrixSymbol)):
                    # a scalar factor such as trace(X) in trace(X)*X: its own placeholder
                    if a not in seen:
                        seen[a] = _fresh_symbol()
                        cuts[seen[a]] = a
                    args.append(seen[a])
                elif isinstance(a, sympy.Basic) and isinstance(a, MatrixExpr):
                    args.append(walk(a))
                else:
                    args.append(a)
            return node.func(*args)
        return node

    return walk(matrix), cuts


def backpropagate(matrix: sympy.Basic, adjoint: sympy.Basic | None, wrt: MatrixSymbol) -> sympy.Basic:
    """d tr(adjoint.T @ matrix) / d wrt, the adjoint held constant (adjoint None: d matrix/d wrt
    for a 1x1 matrix)."""
    if not matrix.has(wrt):
        return ZeroMatrix(*wrt.shape)
    cut, cuts = _cut(matrix)
    if adjoint is None:
        contracted = Trace(cut)  # a 1x1 matrix as its only entry: sympy differentiates traces more reliably
        restore: dict[sympy.Basic, sympy.Basic] = {}
    else:
        held = _fresh_matrix(matrix.shape)
        contracted = Trace(Transpose(held) * cut)
        restore = {held: adjoint}
    terms = [_quiet_diff(contracted, wrt)]
    for placeholder, node in cuts.items():
        if not node.has(wrt):
            continue
        if isinstance(placeholder, MatrixSymbol):
            inner_adjoint = _quiet_diff(contracted, placeholder)
            terms.append(_through_elementwise(node, inner_adjoint.xreplace(restore), wrt))
        else:
            terms.append(_scale(_scalar_diff(contracted, placeholder).xreplace(restore),
                                scalar_gradient(node, wrt)))
    total = _total([t.xreplace(restore) for t in terms], wrt.shape)
    return total.xreplace(cuts)


def _through_elementwise(node: sympy.Basic, adjoint: sympy.Basic, wrt: MatrixSymbol) -> sympy.Basic:
    """The elementwise chain rule: the adjoint of N in f(N) is adjoint * f'(N) (elementwise)."""
    if isinstance(node, ElementwiseApplyFunction):
        d = node.function.variables[0]
        slope = sympy.Lambda(d, sympy.diff(node.function.expr, d))
        return backpropagate(node.expr, HadamardProduct(adjoint, ElementwiseApplyFunction(slope, node.expr)), wrt)
    if isinstance(node, HadamardPower):
        base, exponent = node.base, node.exp
        slope = _scale(exponent, HadamardPower(base, exponent - 1) if exponent != 2 else base)
        return backpropagate(base, HadamardProduct(adjoint, slope), wrt)
    if isinstance(node, HadamardProduct):
        terms = []
        for i, factor in enumerate(node.args):
            others = node.args[:i] + node.args[i + 1:]
            terms.append(backpropagate(factor, HadamardProduct(adjoint, *others), wrt))
        return _total(terms, wrt.shape)
    raise MatrixFormUnsupported(f"no elementwise rule for {type(node).__name__}")


def gradient(objective: sympy.Basic, wrt: MatrixSymbol) -> sympy.Basic:
    """The gradient of a scalar matrix expression, in matrix form, tidied for reading."""
    return tidy(scalar_gradient(objective, wrt))


def jacobian(output: sympy.Basic, wrt: MatrixSymbol) -> sympy.Basic:
    """d output / d wrt for a vector output (a column) and a vector wrt: the m x n Jacobian.

    Reverse mode gives Jᵀu for a placeholder u; every term of it must end in u (elementwise
    products u*g are diag(g) @ u), and J is the transpose of what multiplies u.
    """
    if not (isinstance(output, MatrixExpr) and output.shape[1] == 1 and wrt.shape[1] == 1):
        raise MatrixFormUnsupported("a Jacobian in matrix form needs a vector output and a vector variable")
    u = _fresh_matrix(output.shape)
    transposed = backpropagate(output, u, wrt)

    def as_diagonal(node: sympy.Basic) -> sympy.Basic:
        linear = [a for a in node.args if a.has(u)] if isinstance(node, HadamardProduct) else []
        if len(linear) == 1:  # g * (M @ u) = diag(g) @ M @ u
            others = [a for a in node.args if not a.has(u)]
            g = others[0] if len(others) == 1 else HadamardProduct(*others)
            return DiagMatrix(g) * linear[0]
        return node

    transposed = tidy(_expand(transposed.replace(lambda n: isinstance(n, HadamardProduct), as_diagonal)))
    parts = []
    for term in (transposed.args if isinstance(transposed, MatAdd) else (transposed,)):
        coefficient, matrices = _factors(term)
        if not matrices or matrices[-1] != u or any(m.has(u) for m in matrices[:-1]):
            raise MatrixFormUnsupported(f"no Jacobian in matrix form for {output}")
        rest = matrices[:-1]
        parts.append(_scale(coefficient, Identity(wrt.shape[0]) if not rest else
                            Transpose(rest[0] if len(rest) == 1 else MatMul(*rest)).doit(deep=False)))
    return tidy(_total(parts, (output.shape[0], wrt.shape[0])))


def _expand(expr: sympy.Basic) -> sympy.Basic:
    """Distribute products over sums, so that every term ends in its own factor."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return expr.expand() if isinstance(expr, MatrixExpr) else expr


# ---------------------------------------------------------------------------------------------
# Tidying for people: A*x + A.T*x -> (A + A.T)*x


def _factors(term: sympy.Basic) -> tuple[sympy.Expr, list[sympy.Basic]]:
    if isinstance(term, MatMul):
        coefficient, matrices = term.as_coeff_matrices()
        return coefficient, list(matrices)
    return sympy.S.One, [term]


def _rebuild(coefficient: sympy.Expr, matrices: list[sympy.Basic], shape: tuple[Any, Any]) -> sympy.Basic:
    if not matrices:
        return _scale(coefficient, Identity(shape[0]))
    body = matrices[0] if len(matrices) == 1 else MatMul(*matrices)
    return _scale(coefficient, body)


def _drop_neutral(expr: sympy.Basic) -> sympy.Basic:
    """I inside a product and ones inside a Hadamard product change nothing: drop them."""
    if isinstance(expr, MatMul):
        kept: list[sympy.Basic] = []
        for a in expr.args:
            if isinstance(a, Identity):
                continue
            if kept and isinstance(a, DiagMatrix) and isinstance(kept[-1], DiagMatrix):
                kept[-1] = DiagMatrix(HadamardProduct(kept[-1].args[0], a.args[0]))  # diag(a) @ diag(b)
                continue
            kept.append(a)
        if len(kept) < len(expr.args) and any(isinstance(a, MatrixExpr) for a in kept):
            return MatMul(*kept) if len(kept) > 1 else kept[0]
    if isinstance(expr, HadamardProduct):
        # (c*ones) * (d*M) -> (c*d)*M: numbers out of the elementwise product, ones dropped
        coefficient, kept = sympy.S.One, []
        for a in expr.args:
            c, matrices = _factors(a)
            coefficient *= c
            if not (len(matrices) == 1 and isinstance(matrices[0], OneMatrix)):
                kept.append(_rebuild(sympy.S.One, matrices, a.shape))
        if len(kept) == len(expr.args) and coefficient == 1:
            return expr
        body = HadamardProduct(*kept) if len(kept) > 1 else kept[0] if kept else OneMatrix(*expr.shape)
        return _scale(coefficient, body)
    return expr


def _common_factor(expr: sympy.Basic) -> sympy.Basic:
    """2*a - 2*b -> 2*(a - b), when every term's numeric coefficient shares the factor."""
    if not isinstance(expr, MatAdd):
        return expr
    split = [_factors(t) for t in expr.args]
    if not all(c.is_Rational for c, _ in split):
        return expr
    common = sympy.gcd_list([c for c, _ in split])
    if common in (0, 1) or not common.is_Rational:
        return expr
    inner = MatAdd(*[_rebuild(c / common, m, expr.shape) for c, m in split])
    return MatMul(common, inner)


def _coefficient_first(product: MatMul) -> sympy.Basic:
    """A.T @ (2*(v)) -> 2*A.T @ v: the numbers of inner products in front."""
    coefficient, matrices = product.as_coeff_matrices()
    inner = []
    for m in matrices:
        if isinstance(m, MatMul):
            c, ms = m.as_coeff_matrices()
            if c != 1 and c.is_Number:
                coefficient *= c
                m = ms[0] if len(ms) == 1 else MatMul(*ms)
        inner.append(m)
    if coefficient == 1 and inner == list(matrices):
        return product
    return _rebuild(coefficient, inner, product.shape)


def tidy(expr: sympy.Basic) -> sympy.Basic:
    """For reading: drop I and ones factors, factor a sum whose terms share their first or last
    matrix factor or a numeric coefficient. The value never changes."""
    if not isinstance(expr, sympy.Basic) or not expr.args or isinstance(expr, MatrixSymbol):
        return expr
    if isinstance(expr, (MatAdd, MatMul, HadamardProduct, Transpose, Inverse, Trace, Determinant)):
        expr = _drop_neutral(expr.func(*[tidy(a) for a in expr.args]))
    if isinstance(expr, Transpose) and isinstance(expr.arg, (Identity, ZeroMatrix, OneMatrix)):
        return expr.doit(deep=False)  # Iᵀ = I
    if isinstance(expr, Transpose) and isinstance(expr.arg, Transpose):
        return expr.arg.arg  # (Mᵀ)ᵀ = M
    if isinstance(expr, MatAdd):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expr = expr.doit(deep=False)  # X + X = 2*X
    if isinstance(expr, MatMul):
        return _coefficient_first(expr)
    if not isinstance(expr, MatAdd):
        return expr
    split = [_factors(t) for t in expr.args]
    if all(len(m) >= 2 for _, m in split):
        last = split[0][1][-1]
        if all(m[-1] == last for _, m in split):
            inner = MatAdd(*[_rebuild(c, m[:-1], (expr.shape[0], last.shape[0])) for c, m in split])
            return MatMul(tidy(inner), last)
        first = split[0][1][0]
        if all(m[0] == first for _, m in split):
            inner = MatAdd(*[_rebuild(c, m[1:], (first.shape[1], expr.shape[1])) for c, m in split])
            return MatMul(first, tidy(inner))
    return _common_factor(expr)


# ---------------------------------------------------------------------------------------------
# Evaluation in float64, with numpy (not the torch registry the autograd route lowers through)

_NUMPY_FUNCTIONS: dict[type[sympy.Basic], Callable[..., Any]] = {
    sympy.exp: np.exp, sympy.log: np.log, sympy.sin: np.sin, sympy.cos: np.cos, sympy.tan: np.tan,
    sympy.tanh: np.tanh, sympy.sinh: np.sinh, sympy.cosh: np.cosh, sympy.Abs: np.abs,
    # sign(0) is abs' at its kink: NaN, so the check says so instead of agreeing by convention
    sympy.sign: lambda v: np.where(np.asarray(v) == 0, np.nan, np.sign(v)),
    sympy.Heaviside: lambda v, *at_zero: np.heaviside(v, np.nan),  # relu' at its kink: NaN too
    sympy.atan: np.arctan, sympy.asin: np.arcsin, sympy.acos: np.arccos, sympy.sqrt: np.sqrt,
}


# gradcli's own sympy functions (core/sympy_functions.py), by class name, written from their
# definitions; a kink's derivative is NaN there (the scalar route says "kink" the same way).
_GRADCLI_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "softplus": lambda v: np.logaddexp(0, v),
    "relu": lambda v: np.maximum(v, 0), "cbrt": np.cbrt,
}


def evaluate(expr: sympy.Basic, values: Mapping[str, Any]) -> Any:
    """expr in float64 at values (name -> array; a vector is a column, shape (n, 1))."""
    cache: dict[sympy.Basic, Any] = {}

    def ev(node: sympy.Basic) -> Any:
        if node in cache:
            return cache[node]
        result = _evaluate_node(node, ev, values)
        cache[node] = result
        return result

    return ev(expr)


def _evaluate_node(node: sympy.Basic, ev: Callable[[sympy.Basic], Any], values: Mapping[str, Any]) -> Any:
    if isinstance(node, MatrixSymbol):
        if node.name not in values:
            raise MatrixFormUnsupported(f"no value for {node.name}")
        return np.asarray(values[node.name], dtype=np.float64).reshape(int(node.shape[0]), int(node.shape[1]))
    if isinstance(node, sympy.Symbol):
        if node.name not in values:
            raise MatrixFormUnsupported(f"no value for {node.name}")
        value = values[node.name]
        return value if np.ndim(value) else float(value)
    if isinstance(node, sympy.Number) or node in (sympy.pi, sympy.E):
        return float(node)
    if isinstance(node, Identity):
        return np.eye(int(node.shape[0]))
    if isinstance(node, ZeroMatrix):
        return np.zeros((int(node.shape[0]), int(node.shape[1])))
    if isinstance(node, OneMatrix):
        return np.ones((int(node.shape[0]), int(node.shape[1])))
    if isinstance(node, MatMul):
        result: Any = 1.0
        for a in node.args:
            v = ev(a)
            result = result @ v if isinstance(a, MatrixExpr) and np.ndim(result) == 2 else result * v
        return result
    if isinstance(node, (MatAdd, sympy.Add)):
        return sum((ev(a) for a in node.args[1:]), ev(node.args[0]))
    if isinstance(node, sympy.Mul):
        return math.prod((ev(a) for a in node.args[1:]), start=ev(node.args[0]))
    if isinstance(node, Transpose):
        return ev(node.arg).T
    if isinstance(node, DiagMatrix):
        return np.diagflat(ev(node.args[0]))
    if isinstance(node, Inverse):
        return np.linalg.inv(ev(node.arg))
    if isinstance(node, MatPow):
        return np.linalg.matrix_power(ev(node.base), int(node.exp))
    if isinstance(node, Trace):
        return float(np.trace(ev(node.arg)))
    if isinstance(node, Determinant):
        return float(np.linalg.det(ev(node.arg)))
    if isinstance(node, HadamardProduct):
        return math.prod((ev(a) for a in node.args[1:]), start=ev(node.args[0]))
    if isinstance(node, HadamardPower):
        return ev(node.base) ** ev(node.exp)
    if isinstance(node, ElementwiseApplyFunction):
        # the function's body on the whole array at once
        return evaluate(node.function.expr, {**values, node.function.variables[0].name: ev(node.expr)})
    if isinstance(node, sympy.Pow):
        return ev(node.base) ** ev(node.exp)
    if isinstance(node, MatrixElement):
        return float(ev(node.parent)[int(node.i), int(node.j)])
    if isinstance(node, sympy.Function) and type(node) in _NUMPY_FUNCTIONS:
        return _NUMPY_FUNCTIONS[type(node)](*[ev(a) for a in node.args])
    if isinstance(node, sympy.Function) and type(node).__name__ in _GRADCLI_FUNCTIONS and len(node.args) == 1:
        return _GRADCLI_FUNCTIONS[type(node).__name__](ev(node.args[0]))
    raise MatrixFormUnsupported(f"no float64 evaluation for {type(node).__name__}")



# ---------------------------------------------------------------------------------------------
# Printing: numpy's spelling (@, .T) for programs, ᵀ and ⁻¹ for people, LaTeX through sympy

_SUPERSCRIPTS = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_ATOM, _PRODUCT, _SUM = 3, 2, 1


def render(expr: sympy.Basic, *, unicode: bool = True) -> str:
    """expr as a program would write it: `(A + Aᵀ) @ x` (unicode) or `(A + A.T) @ x`."""
    return _render(tidy(expr), unicode)[0]


def _wrap(text_and_level: tuple[str, int], level: int) -> str:
    text, own = text_and_level
    return f"({text})" if own < level else text


def _scalar_text(expr: sympy.Basic, unicode: bool) -> tuple[str, int]:
    """A scalar expression whose leaves may be traces, determinants or 1x1 products."""
    names: dict[sympy.Basic, sympy.Symbol] = {}
    for node in sympy.preorder_traversal(expr):
        if _is_scalar_leaf(node) and node not in names:
            names[node] = sympy.Symbol(_render_leaf(node, unicode))
    text = sympy.sstr(expr.xreplace(names) if names else expr)
    if isinstance(expr, (sympy.Add,)) or (isinstance(expr, sympy.Number) and expr < 0):
        return text, _SUM
    if isinstance(expr, (sympy.Mul, sympy.Pow)):
        return text, _PRODUCT
    return text, _ATOM


def _render_leaf(node: sympy.Basic, unicode: bool) -> str:
    if isinstance(node, Trace):
        if tuple(node.arg.shape) == (1, 1):
            return _wrap(_render(node.arg, unicode), _ATOM)
        return f"trace({_render(node.arg, unicode)[0]})"
    if isinstance(node, Determinant):
        return f"det({_render(node.arg, unicode)[0]})"
    if isinstance(node, MatrixElement):
        return f"{_wrap(_render(node.parent, unicode), _ATOM)}[{node.i}, {node.j}]"
    return _wrap(_render(node, unicode), _ATOM)


def _render(expr: sympy.Basic, unicode: bool) -> tuple[str, int]:
    if isinstance(expr, MatrixSymbol):
        return str(expr.name), _ATOM
    if isinstance(expr, Identity):
        return ("1" if expr.shape[0] == 1 else "I"), _ATOM
    if isinstance(expr, ZeroMatrix):
        return "0", _ATOM
    if isinstance(expr, OneMatrix):
        return "ones", _ATOM
    if isinstance(expr, DiagMatrix):
        return f"diag({_render(expr.args[0], unicode)[0]})", _ATOM
    if isinstance(expr, Transpose):
        if isinstance(expr.arg, Inverse):
            inner = _wrap(_render(expr.arg.arg, unicode), _ATOM)
            return (f"{inner}⁻ᵀ" if unicode else f"inv({_render(expr.arg.arg, unicode)[0]}).T"), _ATOM
        inner = _wrap(_render(expr.arg, unicode), _ATOM)
        return (f"{inner}ᵀ" if unicode else f"{inner}.T"), _ATOM
    if isinstance(expr, Inverse) and isinstance(expr.arg, Transpose):
        return _render(Transpose(Inverse(expr.arg.arg)), unicode)
    if isinstance(expr, Inverse):
        if unicode:
            return f"{_wrap(_render(expr.arg, unicode), _ATOM)}⁻¹", _ATOM
        return f"inv({_render(expr.arg, unicode)[0]})", _ATOM
    if isinstance(expr, MatPow):
        base = _wrap(_render(expr.base, unicode), _ATOM)
        if unicode:
            return f"{base}{str(expr.exp).translate(_SUPERSCRIPTS)}", _ATOM
        return f"matrix_power({_render(expr.base, unicode)[0]}, {expr.exp})", _ATOM
    if isinstance(expr, MatMul):
        coefficient, matrices = expr.as_coeff_matrices()
        if coefficient != 1 and len(matrices) == 1 and isinstance(matrices[0], Identity) and matrices[0].shape[0] == 1:
            return _scalar_text(coefficient, unicode)  # a 1x1 result: the number itself
        if coefficient.is_Number and coefficient < 0:
            text, _ = _render(_rebuild(-coefficient, list(matrices), expr.shape), unicode)
            return f"-{text}", _SUM
        if isinstance(matrices[0], OneMatrix) and matrices[0].shape[0] == 1 and len(matrices) > 1:
            rest = matrices[1:]  # ones.T @ v is sum(v)
            body = f"sum({_render(rest[0] if len(rest) == 1 else MatMul(*rest), unicode)[0]})"
        else:
            body = " @ ".join(_wrap(_render(m, unicode), _ATOM) for m in matrices)
        if coefficient == 1:
            return body, _PRODUCT
        if coefficient == -1:
            return f"-{body}", _SUM
        return f"{_wrap(_scalar_text(coefficient, unicode), _PRODUCT)}*{body}", _PRODUCT
    if isinstance(expr, HadamardProduct):
        return "*".join(_wrap(_render(a, unicode), _ATOM) for a in expr.args), _PRODUCT
    if isinstance(expr, HadamardPower):
        return f"{_wrap(_render(expr.base, unicode), _ATOM)}**{_wrap(_scalar_text(expr.exp, unicode), _ATOM)}", _PRODUCT
    if isinstance(expr, ElementwiseApplyFunction):
        variable, body = expr.function.variables[0], expr.function.expr
        argument = _render(expr.expr, unicode)
        if isinstance(body, sympy.Function) and body.args == (variable,):
            return f"{body.func}({argument[0]})", _ATOM
        wrapped = _wrap(argument, _ATOM)
        text, level = _scalar_text(body.xreplace({variable: sympy.Symbol(wrapped)}), unicode)
        return text.replace(f"({wrapped})", f"{wrapped}" if wrapped.startswith("(") else f"({wrapped})"), level
    if isinstance(expr, MatAdd):
        rendered = [_render(term, unicode) for term in expr.args]
        rendered.sort(key=lambda r: r[0].startswith("-"))  # a - b, not -b + a
        text = rendered[0][0]
        for t, _ in rendered[1:]:
            text += f" - {t[1:]}" if t.startswith("-") else f" + {t}"
        return text, _SUM
    if isinstance(expr, MatrixExpr):
        raise MatrixFormUnsupported(f"no printing for {type(expr).__name__}")
    if _is_scalar_leaf(expr):
        return _render_leaf(expr, unicode), _ATOM
    return _scalar_text(expr, unicode)


class _LatexPrinter(LatexPrinter):
    """sympy's LaTeX, with ones.T @ v as a sum, det as det, X^{-T} and f(M) for elementwise f."""

    def _print_ElementwiseApplyFunction(self, expr: ElementwiseApplyFunction) -> str:
        variable, body = expr.function.variables[0], expr.function.expr
        placeholder = sympy.Dummy("m")
        text: str = self._print(body.xreplace({variable: placeholder}))
        return text.replace(self._print(placeholder), self._tight(expr.expr))

    def _tight(self, expr: sympy.Basic) -> str:
        """expr, in brackets unless it is a single symbol."""
        text: str = self._print(expr)
        return text if isinstance(expr, MatrixSymbol) else rf"\left({text}\right)"

    def _print_DiagMatrix(self, expr: DiagMatrix) -> str:
        return rf"\operatorname{{diag}}\left({self._print(expr.args[0])}\right)"

    def _print_Determinant(self, expr: Determinant) -> str:
        return rf"\det\left({self._print(expr.arg)}\right)"

    def _print_Trace(self, expr: Trace) -> str:
        if tuple(expr.arg.shape) == (1, 1):
            return rf"\left({self._print(expr.arg)}\right)"
        return rf"\operatorname{{tr}}\left({self._print(expr.arg)}\right)"

    def _print_Transpose(self, expr: Transpose) -> str:
        if isinstance(expr.arg, Inverse):
            return f"{self._tight(expr.arg.arg)}^{{-T}}"
        text: str = super()._print_Transpose(expr)
        return text

    def _print_Inverse(self, expr: Inverse) -> str:
        if isinstance(expr.arg, Transpose):
            return f"{self._tight(expr.arg.arg)}^{{-T}}"
        return f"{self._tight(expr.arg)}^{{-1}}"

    def _print_MatMul(self, expr: MatMul) -> str:
        coefficient, matrices = expr.as_coeff_matrices()
        if isinstance(matrices[0], OneMatrix) and matrices[0].shape[0] == 1 and len(matrices) > 1:
            rest = matrices[1] if len(matrices) == 2 else MatMul(*matrices[1:])
            total = rf"\sum\left({self._print(rest)}\right)"
            return total if coefficient == 1 else f"{self._print(coefficient)} {total}"
        text: str = super()._print_MatMul(expr)
        return text


def render_latex(expr: sympy.Basic) -> str:
    """expr in LaTeX: `\\left(A + A^{T}\\right) x`."""
    latex: str = _LatexPrinter().doprint(tidy(expr))
    return latex


# ---------------------------------------------------------------------------------------------
# From gradcli's expression tree (variables used elementwise, reductions) to a matrix expression

Shape = tuple[int, ...]


def matrix_variable(name: str, shape: Shape) -> sympy.Basic:
    """The matrix symbol of a variable: a vector is a column, a scalar a plain symbol."""
    if len(shape) == 0:
        return sympy.Symbol(name)
    if len(shape) == 1:
        return MatrixSymbol(name, shape[0], 1)
    if len(shape) == 2:
        return MatrixSymbol(name, shape[0], shape[1])
    raise MatrixFormUnsupported(f"{name} has {len(shape)} dimensions; matrix form has at most 2")


def _broadcast_to(node: sympy.Basic, shape: tuple[Any, Any]) -> sympy.Basic:
    if isinstance(node, MatrixExpr):
        if tuple(node.shape) != tuple(shape):
            raise MatrixFormUnsupported(f"broadcasting {node.shape} to {shape} has no matrix form here")
        return node
    return _scale(node, OneMatrix(*shape))


def _scalar(node: sympy.Basic) -> sympy.Basic:
    """A 0-d value as a sympy scalar: a 1x1 product (x.T*A*x) becomes its trace."""
    return Trace(node) if isinstance(node, MatrixExpr) else node


def _holds_matrix_scalar(node: sympy.Basic, symbols: Mapping[sympy.Symbol, sympy.Basic]) -> bool:
    """Does this 0-d value hold a variable written as a 1x1 matrix symbol?"""
    ones = {m for m in symbols.values() if isinstance(m, MatrixSymbol) and tuple(m.shape) == (1, 1)}
    return bool(ones) and any(m in ones for m in node.atoms(MatrixSymbol))


def _spread(node: sympy.Basic, shape: tuple[Any, Any]) -> sympy.Basic:
    """A 0-d value as a matrix of `shape`: ones @ v @ onesᵀ (a 1x1 matrix, or a scalar made one)."""
    if not isinstance(node, MatrixExpr):
        node = _scale(node, OneMatrix(1, 1))
    rows, columns = shape
    spread = OneMatrix(rows, 1) * node if rows != 1 else node
    return spread * OneMatrix(1, columns) if columns != 1 else spread


# A converted node: the matrix expression, and how many dimensions the tensor has (a vector is
# a column n x 1 with ndim 1; a 0-d result of a product is a 1x1 matrix with ndim 0).
Converted = tuple[sympy.Basic, int]


def _matmul(a: Converted, b: Converted) -> Converted:
    """numpy's matmul for 1-D and 2-D operands, vectors as columns."""
    (left, left_dims), (right, right_dims) = a, b
    if left_dims == 0 or right_dims == 0 or left_dims > 2 or right_dims > 2:
        raise MatrixFormUnsupported("matmul of other than vectors and matrices has no matrix form here")
    if left_dims == 1 and right_dims == 1:
        return Transpose(left) * right, 0
    if left_dims == 1:
        return Transpose(right) * left, 1  # v @ M = (Mᵀ v) as a column
    return left * right, 1 if right_dims == 1 else 2


def _transpose(a: Converted, dims: tuple[int, ...] = ()) -> Converted:
    expr, ndim = a
    if ndim <= 1 and not dims:
        return a  # a vector's .T is itself
    if ndim == 2 and (not dims or sorted(d % 2 for d in dims) == [0, 1]):
        return Transpose(expr), 2
    raise MatrixFormUnsupported("this transpose has no matrix form here")


def _outer(a: Converted, b: Converted) -> Converted:
    if a[1] != 1 or b[1] != 1:
        raise MatrixFormUnsupported("outer of other than two vectors")
    return a[0] * Transpose(b[0]), 2


def _square(name: str) -> Callable[[Converted], Converted]:
    def rule(a: Converted) -> Converted:
        expr, ndim = a
        if ndim != 2:
            raise MatrixFormUnsupported(f"{name} of a tensor of {ndim} dimensions has no matrix form here")
        if name == "trace":
            return Trace(expr), 0
        if name == "det":
            return Determinant(expr), 0
        if name == "logdet":
            return sympy.log(Determinant(expr)), 0
        if name == "logabsdet":
            return sympy.log(sympy.Abs(Determinant(expr))), 0
        return Inverse(expr), 2
    return rule


def _solve(a: Converted, b: Converted) -> Converted:
    if a[1] != 2 or b[1] not in (1, 2):
        raise MatrixFormUnsupported("solve of other than a matrix and a vector or matrix")
    return Inverse(a[0]) * b[0], b[1]


def _linear(x: Converted, weight: Converted, bias: Converted | None = None) -> Converted:
    """F.linear: x @ W.T + b, b added to every row."""
    product, ndim = _matmul(x, _transpose(weight))
    if bias is None:
        return product, ndim
    b, b_dims = bias
    if b_dims == 0:
        return MatAdd(product, _scale(_scalar(b), OneMatrix(*product.shape))).doit(deep=False), ndim
    if ndim == 1:
        return MatAdd(product, b).doit(deep=False), 1
    return MatAdd(product, OneMatrix(product.shape[0], 1) * Transpose(b)).doit(deep=False), 2  # a row per sample


def _axis_sum(mean: bool) -> Callable[..., Converted]:
    """sum(x, dim=...) and mean(x, dim=...) of a vector or a matrix, as products with ones."""
    def rule(a: Converted, dims: tuple[int, ...], keepdim: int) -> Converted:
        expr, ndim = a
        if ndim not in (1, 2):
            raise MatrixFormUnsupported("a reduction over dims of a scalar or of 3 dimensions or more")
        rows, columns = expr.shape
        chosen = {d % ndim for d in dims} if dims else set(range(ndim))
        if chosen == set(range(ndim)):  # every dim: the whole sum
            total = OneMatrix(1, rows) * expr * (OneMatrix(columns, 1) if columns != 1 else Identity(1))
            count, out_ndim = rows * columns, (ndim if keepdim else 0)
            if keepdim and ndim == 2:
                raise MatrixFormUnsupported("keepdim=True over every dim of a matrix")
        elif chosen == {0}:  # down the rows of a matrix: one entry per column
            total = OneMatrix(1, rows) * expr if keepdim else Transpose(expr) * OneMatrix(rows, 1)
            count, out_ndim = rows, (2 if keepdim else 1)
        else:  # along each row of a matrix
            total = expr * OneMatrix(columns, 1)
            count, out_ndim = columns, (2 if keepdim else 1)
        return (_scale(sympy.Rational(1, count), total) if mean else total), out_ndim
    return rule


def _eye(rows: int, columns: int) -> Converted:
    if rows != columns:
        raise MatrixFormUnsupported("a non-square eye has no matrix form here")
    return Identity(rows), 2


# gradcli's tensor operations (sympy_functions.TensorOp subclasses, by class name) -> a rule
# taking the converted operands, then the static arguments decoded.
TENSOR_RULES: dict[str, Callable[..., Converted]] = {
    "matmul": _matmul, "dot": _matmul, "transpose": _transpose, "outer": _outer,
    "trace": _square("trace"), "det": _square("det"), "logdet": _square("logdet"), "inv": _square("inv"),
    "logabsdet": _square("logabsdet"),
    "solve": _solve, "linear": _linear,
    "sum_dim": _axis_sum(mean=False), "mean_dim": _axis_sum(mean=True), "eye": _eye,
}


class Converter:
    """gradcli's sympy tree -> a sympy matrix expression, given each variable's shape.

    Elementwise arithmetic and functions become Hadamard products, powers and elementwise
    applications; sum and mean become products with ones; the tensor operations (matmul,
    transpose, trace, det, logdet, inv, solve...) their matrix counterparts (TENSOR_RULES).
    Anything else raises MatrixFormUnsupported, naming it.
    """

    def __init__(self, shapes: Mapping[sympy.Symbol, Shape], as_matrices: Sequence[str] = ()) -> None:
        # as_matrices: scalar variables written as 1x1 matrix symbols, to differentiate by them
        # (sympy's matrix calculus differentiates only by matrices); broadcast by ones.
        self.symbols = {s: MatrixSymbol(s.name, 1, 1) if s.name in as_matrices and not shape
                        else matrix_variable(s.name, shape) for s, shape in shapes.items()}
        self.ndim = {s: len(shape) for s, shape in shapes.items()}

    def convert(self, node: sympy.Basic) -> sympy.Basic:
        return self.convert_with_ndim(node)[0]

    def convert_with_ndim(self, node: sympy.Basic) -> Converted:
        from gradcli.core import sympy_functions as sf

        if isinstance(node, sympy.Symbol):
            return self.symbols.get(node, node), self.ndim.get(node, 0)
        if isinstance(node, sympy.Number) or not node.args:
            return node, 0
        tensor_op = getattr(sf, "TensorOp", None)
        rule = TENSOR_RULES.get(type(node).__name__)
        if rule is not None and isinstance(node, sympy.Function) and not isinstance(node, sf.Defined):
            operands = [self.convert_with_ndim(a) for a in getattr(node, "operands", node.args)]
            return rule(*operands, *getattr(node, "static", ()))
        if tensor_op is not None and isinstance(node, tensor_op):
            raise MatrixFormUnsupported(f"{type(node).__name__} has no matrix form yet")
        if isinstance(node, sf.Defined):
            return self.convert_with_ndim(node.definition())
        if isinstance(node, (sf.tsum, sf.tmean)):
            inner, ndim = self.convert_with_ndim(node.args[0])
            if not isinstance(inner, MatrixExpr) or ndim == 0:
                return inner, 0
            rows, columns = inner.shape
            total = OneMatrix(1, rows) * inner
            if columns != 1:
                total = total * OneMatrix(columns, 1)
            return (total if isinstance(node, sf.tsum) else _scale(sympy.Rational(1, rows * columns), total)), 0
        parts = [self.convert_with_ndim(a) for a in node.args]
        ndim = max(d for _, d in parts)
        if ndim == 0:
            args = [_scalar(a) for a, _ in parts]
            if isinstance(node, (sympy.Add, sympy.Mul, sympy.Pow)) or (
                    isinstance(node, sympy.Function) and len(args) == 1):
                return node.func(*args), 0
            raise MatrixFormUnsupported(f"{type(node).__name__} has no matrix form yet")
        if len({d for a, d in parts if isinstance(a, MatrixExpr) and d > 0} | {ndim}) > 1:
            raise MatrixFormUnsupported("broadcasting a vector against a matrix has no matrix form here")
        matrices = [a for a, d in parts if d > 0]
        shape = matrices[0].shape
        # a 0-d value holding a 1x1 variable (as_matrices) is broadcast as ones @ b @ onesᵀ
        spread = [_spread(a, shape) for a, d in parts if d == 0 and _holds_matrix_scalar(a, self.symbols)]
        scalars = [_scalar(a) for a, d in parts if d == 0 and not _holds_matrix_scalar(a, self.symbols)]
        if isinstance(node, sympy.Add):
            return MatAdd(*[_broadcast_to(a, shape) for a in matrices + spread + scalars]).doit(deep=False), ndim
        if isinstance(node, sympy.Mul):
            factors = matrices + spread
            body = factors[0] if len(factors) == 1 else HadamardProduct(*factors)
            return _scale(sympy.Mul(*scalars), body), ndim
        if isinstance(node, sympy.Pow):
            (base, base_dims), (exponent, exponent_dims) = parts
            if exponent_dims:
                raise MatrixFormUnsupported("a tensor exponent has no matrix form here")
            return HadamardPower(base, _scalar(exponent)), ndim
        if isinstance(node, sympy.Function) and len(parts) == 1:
            d = sympy.Dummy("d", real=True)  # real: abs'(d) is sign(d), not a complex derivative
            return ElementwiseApplyFunction(sympy.Lambda(d, node.func(d)), matrices[0]), ndim
        raise MatrixFormUnsupported(f"{type(node).__name__} has no matrix form yet")


# ---------------------------------------------------------------------------------------------
# The check: the matrix form against autograd, finite differences as the arbiter

AGREE = "agree"
DISAGREE = "disagree"
SYMPY_ERROR = "sympy's error"
AUTOGRAD_ERROR = "autograd's error"
UNAVAILABLE = "unavailable"

# The numeric arbiter: (variable name, a candidate gradient of that variable's shape) -> True
# when finite differences agree with it, False when they do not, None when they cannot tell.
# core/numeric.py's gradient_probe(...).judge(...) makes one (see tests/core/test_matrix_form.py);
# the commands arbitrate through core/check.py, which sees this route's value as sympy's.
Judge = Callable[[str, Any], "bool | None"]


@dataclass(frozen=True)
class MatrixFormCheck:
    variable: str
    formula: str  # the gradient in matrix form, for people ("" when there is none)
    verdict: str  # AGREE, DISAGREE, SYMPY_ERROR, AUTOGRAD_ERROR or UNAVAILABLE
    message: str
    value: Any = None  # the matrix form's value in float64, the variable's shape (numpy)
    max_error: float | None = None


def _close(a: Any, b: Any, *, rtol: float, atol: float) -> tuple[bool, float]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    error = float(np.max(np.abs(a - b))) if a.size else 0.0
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    finite = bool(np.all(np.isfinite(a)) and np.all(np.isfinite(b)))
    return finite and error <= atol * max(1.0, scale) + rtol * scale, error


def arbitrate(variable: str, formula_value: Any, autograd: Any, judge: Judge | None) -> tuple[str, str]:
    """Which of sympy's matrix formula and autograd is wrong, by the numeric route."""
    if judge is None:
        return DISAGREE, ("sympy's matrix formula disagrees with autograd; no numeric route "
                          "was available to say which is wrong")
    formula_right, autograd_right = judge(variable, formula_value), judge(variable, autograd)
    if formula_right is False and autograd_right is True:
        return SYMPY_ERROR, ("sympy's matrix formula disagrees with autograd and with finite "
                             "differences: sympy's error")
    if autograd_right is False and formula_right is True:
        return AUTOGRAD_ERROR, ("autograd disagrees with sympy's matrix formula and with finite "
                                "differences: autograd's error")
    return DISAGREE, ("sympy's matrix formula disagrees with autograd, and finite differences "
                      "cannot tell which is wrong")


def check_gradient(objective: sympy.Basic, variable: sympy.Basic, values: Mapping[str, Any], autograd: Any, *,
                   rtol: float, atol: float, judge: Judge | None = None, f_value: float | None = None,
                   ) -> MatrixFormCheck:
    """The gradient of `objective` (a matrix expression) by `variable`, in matrix form, against
    autograd's (numpy, the variable's shape), at `values` (name -> numpy array, a vector as a
    column). `f_value`, torch's value of f, is compared with the objective's own: where they
    differ, torch computes another function (a wrong lowering), and finite differences of that
    function would side with autograd, so no blame goes to sympy."""
    name = str(getattr(variable, "name", variable))
    if not isinstance(variable, MatrixSymbol):
        return MatrixFormCheck(name, "", UNAVAILABLE, f"{name} is a scalar: the scalar route checks it")
    try:
        formula = gradient(objective, variable)
        value = np.asarray(evaluate(formula, values), dtype=np.float64).reshape(np.shape(autograd))
        text = render(formula)
    except MatrixFormUnsupported as why:
        return MatrixFormCheck(name, "", UNAVAILABLE, f"no matrix form: {why}")
    close, error = _close(autograd, value, rtol=rtol, atol=atol)
    if close:
        return MatrixFormCheck(name, text, AGREE, "autograd agrees with sympy's matrix formula", value, error)
    if f_value is not None:
        try:
            own = float(np.asarray(evaluate(objective, values)).reshape(()))
        except MatrixFormUnsupported:
            own = None
        if own is not None and not _close(f_value, own, rtol=rtol, atol=atol)[0]:
            return MatrixFormCheck(name, text, DISAGREE, (
                f"torch computes f = {f_value:.6g} where the matrix form gives {own:.6g}: the lowering "
                "computes another function, and autograd differentiates that one"), value, error)
    verdict, message = arbitrate(name, value, np.asarray(autograd, dtype=np.float64), judge)
    return MatrixFormCheck(name, text, verdict, message, value, error)


# ---------------------------------------------------------------------------------------------
# The route beside the scalar and expansion routes of reference.py


@dataclass(frozen=True)
class MatrixGradient:
    """One variable's gradient in matrix form, and its float64 value (None where unavailable)."""

    formula: str  # for people: (A + Aᵀ) @ x
    plain: str  # for programs: (A + A.T) @ x
    latex: str
    value: Any  # numpy float64, the variable's shape
    expr: sympy.Basic


def _prepare(components: list[sympy.Basic], shape: tuple[int, ...] | None,
             table: Mapping[sympy.Symbol, tuple[str, Any]], values: Mapping[str, Any], as_matrices: Sequence[str] = (),
             ) -> tuple[dict[str, sympy.Basic], sympy.Basic, int, dict[str, Any]]:
    """The variables' matrix symbols by name, the converted expression, its dimensions, and the
    values in float64 (vectors as columns)."""
    if shape is not None:
        raise MatrixFormUnsupported("a list of expressions has no matrix form")
    if any(index is not None for _, index in table.values()):
        raise MatrixFormUnsupported("elements such as x[0] have no matrix form here")
    shapes = {symbol: tuple(values[name].shape) for symbol, (name, _) in table.items() if name in values}
    arrays = {}
    for name, tensor in values.items():
        array = tensor.detach().to("cpu").double().numpy()
        arrays[name] = array.reshape(array.shape[0], -1) if array.ndim in (1, 2) else array
    converter = Converter(shapes, as_matrices)
    (component,) = components
    expr, ndim = converter.convert_with_ndim(component)
    by_name = {str(getattr(v, "name", v)): v for v in converter.symbols.values()}
    return by_name, expr, ndim, arrays


def _result(formula: sympy.Basic, arrays: Mapping[str, Any], shape: tuple[int, ...]) -> MatrixGradient:
    value = np.asarray(evaluate(formula, arrays), dtype=np.float64).reshape(shape)
    return MatrixGradient(render(formula), render(formula, unicode=False), render_latex(formula), value, formula)


def _scalar_output(expr: sympy.Basic, ndim: int, reduction: str) -> sympy.Basic:
    """f reduced to a scalar as the autograd route reduces it: sum (or mean) of every element."""
    if ndim == 0:
        return expr
    rows, columns = expr.shape
    total = OneMatrix(1, rows) * expr
    if columns != 1:
        total = total * OneMatrix(columns, 1)
    return total if reduction == "sum" else _scale(sympy.Rational(1, rows * columns), total)


def _each_variable(components: list[sympy.Basic], shape: tuple[int, ...] | None,
                   table: Mapping[sympy.Symbol, tuple[str, Any]], values: Mapping[str, Any], wrt: list[str],
                   derive: Callable[[sympy.Basic, int, MatrixSymbol, dict[str, Any]], MatrixGradient],
                   ) -> dict[str, MatrixGradient | str]:
    """derive(converted f, its dimensions, the variable's matrix symbol, float64 values) for each
    variable in wrt, or the reason it failed. A scalar variable is converted as a 1x1 matrix."""
    out: dict[str, MatrixGradient | str] = {}
    prepared: dict[bool, tuple[dict[str, sympy.Basic], sympy.Basic, int, dict[str, Any]]] = {}
    for name in wrt:
        scalar = len(values[name].shape) == 0
        try:
            if scalar:
                by_name, expr, ndim, arrays = _prepare(components, shape, table, values, (name,))
            else:
                if False not in prepared:
                    prepared[False] = _prepare(components, shape, table, values)
                by_name, expr, ndim, arrays = prepared[False]
            variable = by_name.get(name)
            if not isinstance(variable, MatrixSymbol):
                raise MatrixFormUnsupported(f"{name} is not a variable of the expression")
            out[name] = derive(expr, ndim, variable, arrays)
        except MatrixFormUnsupported as why:
            out[name] = str(why)
        except (AttributeError, TypeError, NotImplementedError, RecursionError) as why:
            out[name] = f"sympy's matrix calculus failed: {why}"
        except (np.linalg.LinAlgError, ValueError, ZeroDivisionError) as why:
            out[name] = f"its matrix form could not be evaluated: {why}"
    return out


def matrix_gradients(components: list[sympy.Basic], shape: tuple[int, ...] | None,
                     table: Mapping[sympy.Symbol, tuple[str, Any]], values: Mapping[str, Any], wrt: list[str],
                     reduction: str = "sum") -> dict[str, MatrixGradient | str]:
    """The gradient of the reduced output by each variable in `wrt`, in matrix form: a
    MatrixGradient, or the reason there is none. `values` are torch tensors (any dtype: read in
    float64); `table` is the parser's symbol table."""
    def derive(expr: sympy.Basic, ndim: int, variable: MatrixSymbol, arrays: dict[str, Any]) -> MatrixGradient:
        formula = gradient(_scalar_output(expr, ndim, reduction), variable)
        return _result(formula, arrays, tuple(values[variable.name].shape))

    return _each_variable(components, shape, table, values, wrt, derive)


def matrix_jacobians(components: list[sympy.Basic], shape: tuple[int, ...] | None,
                     table: Mapping[sympy.Symbol, tuple[str, Any]], values: Mapping[str, Any],
                     wrt: list[str]) -> dict[str, MatrixGradient | str]:
    """d f / d x in matrix form for each x in `wrt`, of shape f.shape + x.shape: the gradient for
    a scalar f, the m x n matrix for a vector f and a vector (or scalar) x; else the reason."""
    def derive(expr: sympy.Basic, ndim: int, variable: MatrixSymbol, arrays: dict[str, Any]) -> MatrixGradient:
        variable_shape = tuple(values[variable.name].shape)
        if ndim == 0:
            return _result(gradient(expr, variable), arrays, variable_shape)
        if ndim == 1 and len(variable_shape) <= 1:
            return _result(jacobian(expr, variable), arrays, (int(expr.shape[0]), *variable_shape))
        raise MatrixFormUnsupported("a Jacobian of more than two dimensions has no matrix form")

    return _each_variable(components, shape, table, values, wrt, derive)


def _same_value(a: Any, b: Any) -> bool:
    """Do the matrix form and the entry-by-entry route give one value (float64 rounding apart)?"""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = float(np.nanmax(np.abs(b))) if b.size and np.isfinite(b).any() else 1.0
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-8, atol=1e-10 * max(scale, 1.0), equal_nan=True))


def complete(results: Mapping[str, Any], found: Mapping[str, MatrixGradient | str]) -> None:
    """reference.py's hook: where the entry-by-entry route had no value (too many entries), the
    matrix form's value becomes the reference, and its formula the symbolic column; where both
    have one, the matrix formula is shown if their values agree (else the entries stay: a wrong
    formula is never shown beside a right value); where neither has one, both reasons are said."""
    import torch

    for name, matrix in found.items():
        current = results.get(name)
        if current is None:
            continue
        if isinstance(matrix, MatrixGradient):
            if current.value is None:
                current.formula = matrix.formula
                current.value = torch.from_numpy(matrix.value)
                current.unavailable = None
            elif _same_value(matrix.value, current.value.numpy()):
                current.formula = matrix.formula  # shown only where the two sympy routes agree
        elif current.value is None:
            current.unavailable = f"{current.unavailable or 'no symbolic derivative'}; no matrix form: {matrix}"


def output_value(components: list[sympy.Basic], shape: tuple[int, ...] | None,
                 table: Mapping[sympy.Symbol, tuple[str, Any]], values: Mapping[str, Any]) -> Any:
    """f itself, in matrix form, evaluated in float64 with numpy (flattened), or None where it has
    no matrix form: sympy's own f for a tensor program, which the arbitration compares with
    torch's before it blames sympy (a wrong lowering changes f; a wrong derivative does not)."""
    try:
        _, expr, _, arrays = _prepare(components, shape, table, values)
        return np.asarray(evaluate(expr, arrays), dtype=np.float64).reshape(-1)
    except (MatrixFormUnsupported, AttributeError, TypeError, ValueError, ZeroDivisionError,
            np.linalg.LinAlgError):
        return None
