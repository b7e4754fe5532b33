"""The function registry: every function a user can type, declared once, read by every stage.

One `Function` entry says everything about a function: the names users may type, its
signature, a one-line description, its category (its shape rule), how the parser builds its
sympy meaning, and the sympy node(s) that meaning is made of. Each `Node` says how the lowering
computes that sympy class in torch, what `--explain` prints for it and what torch does where
its derivative does not exist (its kink convention). The parser (parse.py), the lowering
(lower.py), the symbolic check (reference.py), `--explain`, the "did you mean" hints and
`gradcli functions` all read this module; adding a function is one entry here plus its tests.

Tensor operations (matmul, transpose, sum over a dim, stack...) are entries like any other:
their node is a sympy_functions.TensorOp, which carries its own shape rule and its entry-by-entry
expansion for the check; their static arguments (dims, keepdim, einsum's subscripts) are
parameters whose `kind` tells the parser how to read them. See sympy_functions' note.

Torch implementations are named as text ("torch.sin", "F.softplus", "tf.sech" for
torch_functions.sech) and resolved once by lower.py: this module, like the parser, must not
import torch (`gradcli diff` and `gradcli functions` never load it).

Internal nodes: the nodes that only symbolic derivatives contain (abs_slope, floor_slope,
Heaviside, DiracDelta, dsinc...) are `INTERNAL_NODES` here, computed by the same table but
never listed to users. The structural nodes (Add, Mul, Pow, Piecewise, relations, bcast,
tindex) stay in lower.py: they are arithmetic and shapes, not functions, and their lowering
needs more than a torch function of the arguments.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias, cast

import sympy

from gradcli.core import sympy_functions as sf
from gradcli.core.limits import MAX_POLYGAMMA_ORDER
from gradcli.errors import GradcliError


class Category(str, Enum):
    """A function's shape rule."""

    ELEMENTWISE = "elementwise"  # the broadcast shape of its arguments
    REDUCTION = "reduction"  # one number from every element of a tensor
    VECTOR = "vector"  # over every element at once, keeping the shape (softmax)
    PAIRWISE = "pairwise loss"  # one number from two tensors broadcast together
    # matrix and tensor algebra: matmul, transpose, dot, einsum, eye, stack... (shape rules: sympy_functions.TensorOp)
    MATRIX = "matrix"
    LINEAR_ALGEBRA = "linear algebra"  # of a square matrix: a number (det) or a matrix (inv)
    CLASS_LOSS = "class loss"  # a row of class scores and one class index per sample


Explain = str | Callable[[Sequence[str]], str]


@dataclass(frozen=True)
class Node:
    """A sympy function class the lowering computes with one torch function of its arguments."""

    cls: type
    # "torch.NAME", "torch.linalg.NAME", "F.NAME" (torch.nn.functional) or "tf.NAME"
    # (gradcli.core.torch_functions): resolved once by the lowering.
    torch: str
    # --explain's text: a template over the arguments' texts ({0}, {1}), or a function of them;
    # None: the torch name called on the arguments, "torch.sin(x)".
    explain: Explain | None = None
    kink: str | None = None  # what torch does where the derivative does not exist
    jump: bool = False  # the function jumps there: no slope could make f differentiable
    # The derivative node the check uses instead of sympy's own, which would hide the kink
    # (sympy's d|u|/du is sign(u), 0 at 0 like torch's abs'(0); floor's it leaves unevaluated).
    slope: type | None = None
    numbers: tuple[int, ...] = ()  # argument positions torch takes as Python numbers
    # A tensor operation that makes a tensor from static arguments alone (eye): the lowering passes
    # it dtype= and device= as keywords.
    factory: bool = False
    internal: str | None = None  # for a node users cannot type: which derivatives contain it

    def source(self, args: Sequence[str]) -> str:
        """The torch code of this node applied to arguments written as `args`."""
        if self.explain is None:
            return f"{self.torch}({', '.join(args)})"
        if isinstance(self.explain, str):
            return self.explain.format(*args)
        return self.explain(args)


@dataclass(frozen=True)
class Param:
    name: str
    default: str | None = None  # as the signature shows it; None: the argument is required
    keyword: bool = False  # may also be given by name: norm(x, p=1)
    # How the parser reads it: "expr" an expression; the static arguments of a tensor operation
    # (see sympy_functions.TensorOp): "int" a whole number (eye's n), "dims" a whole number or a
    # tuple of them (dim=), "bool" True or False (keepdim=), "subscripts" einsum's string (the one
    # string gradcli reads); "list" a bracketed list of expressions (stack's); "condition" a
    # comparison such as x > 0 (where's, the one place comparisons are read).
    kind: str = "expr"
    positional: bool = True  # False: by name only (max(a, b) is elementwise; max(x, dim=0) reduces)
    alias: str | None = None  # another name it may be given by: axis= for dim=, as numpy calls it
    # kind "choice": the names it takes, written as strings as torch's are (reduction="sum"); no other
    # string is read. The builder gets the name as a static argument.
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Function:
    """A function users can type."""

    name: str
    params: tuple[Param, ...]
    description: str
    category: Category
    build: Callable[..., sympy.Expr]  # the parser calls it with the sympy arguments
    nodes: tuple[Node, ...] = ()  # the sympy classes build() makes that the lowering looks up
    aliases: tuple[str, ...] = ()  # other names users may type (arctan, Abs, ln, minimum)
    # Other libraries' names that gradcli does not take, suggested in the "unknown function"
    # hint (numpy's absolute, torch's mse_loss): accepting them would reserve more variable names.
    spellings: tuple[str, ...] = ()
    more: int = 0  # further positional arguments after params (max(a, b, c, ...))
    # With plain-number arguments, computed in floating point: exactly, sympy would write a
    # factorial or a harmonic sum of that many terms.
    numeric: bool = False
    # The first argument keeps the shape of a variable sympy cancelled in it (sum(x - x + y)
    # adds y once per element of x): see parse.Reader.keep_shapes.
    keeps_shapes: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    @property
    def fewest(self) -> int:
        return sum(1 for p in self.params if p.default is None)

    @property
    def positional(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.positional)

    @property
    def most(self) -> int:
        """The most arguments given in order."""
        return len(self.positional) + self.more

    @property
    def signature(self) -> str:
        parts = [p.name if p.default is None else f"{p.name}={p.default}" for p in self.positional]
        if self.more:
            parts.append("...")
        parts += [f"{p.name}={p.default}" for p in self.params if not p.positional]
        return f"{self.name}({', '.join(parts)})"

    @property
    def kinks(self) -> tuple[str, ...]:
        return tuple(n.kink for n in self.nodes if n.kink)


# --------------------------------------------------------------------------- builders

def _number(value: sympy.Expr, what: str, positive: bool = False) -> sympy.Expr:
    """A parameter that must be a plain number (a slope, a delta, a norm's p)."""
    if value.free_symbols or not value.is_real:
        raise ValueError(f"{what} must be a number")
    if positive and not value.is_positive:
        raise ValueError(f"{what} must be positive")
    return value


def _log(x: sympy.Expr, base: sympy.Expr | None = None) -> sympy.Expr:
    if base is None:
        return sympy.log(x)
    # A constant base of 0 or 1 has no logarithm: sympy would read log(x)/log(0) as 0 and both
    # routes would agree on it. A base that is a variable is computed as written.
    if not base.free_symbols and (base.is_positive is False or base == 1):
        raise ValueError("the base of log(x, base) must be a positive number other than 1")
    return sympy.log(x, base)


def _digamma(x: sympy.Expr) -> sympy.Expr:
    return sympy.polygamma(0, x)


def _polygamma(n: sympy.Expr, x: sympy.Expr) -> sympy.Expr:
    if not (n.is_Integer and n >= 0):
        raise ValueError("the order of polygamma(n, x) must be a whole number n >= 0")
    if n > MAX_POLYGAMMA_ORDER:
        raise ValueError(f"the order of polygamma(n, x) is at most {MAX_POLYGAMMA_ORDER}, not {n}")
    if not x.is_number:
        return sympy.polygamma(n, x)
    # A plain number: exactly only where that is quick (polygamma(1, 1) is pi**2/6); else in
    # floating point, now. sympy's exact value at 10**10 sums 10**10 terms, and its floating
    # one walks up from a negative x one step at a time.
    if x.is_Integer and abs(x) <= 20 and n <= 20:
        return sympy.polygamma(n, x)
    try:
        where = complex(sympy.N(x, 15))
    except (TypeError, ValueError, OverflowError):
        raise ValueError("polygamma(n, x) needs a real x") from None
    if where.imag:
        raise ValueError("polygamma(n, x) needs a real x")
    if where.real < -1e4:
        raise ValueError("polygamma(n, x) of a constant below -10^4 is not supported")
    if where.real <= 0 and where.real == int(where.real):
        raise ValueError("polygamma(n, x) has a pole at x = 0, -1, -2, ...")
    try:
        return sympy.N(sympy.polygamma(n, sympy.Float(where.real, 15)), 15)
    except (ValueError, ZeroDivisionError, ArithmeticError) as exc:
        raise ValueError(f"polygamma cannot be evaluated here ({exc})") from None


# a static argument as the parser reads it (see Param.kind), None if not given
Static: TypeAlias = "sympy.Basic | None"


def _dims_and_keepdim(dim: Static, keepdim: Static) -> tuple[sympy.Basic, sympy.Basic]:
    return _static(dim, ()), _static(keepdim, False)


def _by_dims(whole: type, by_dim: type) -> Callable[..., sympy.Expr]:
    """sum(x): every element (a whole-tensor reduction); sum(x, dim, keepdim): by_dim."""
    def build(x: sympy.Expr, dim: Static = None, keepdim: Static = None) -> sympy.Expr:
        if dim is None and not keepdim:
            return whole(x)
        return by_dim(x, *_dims_and_keepdim(dim, keepdim))
    return build


def _along_dim(whole: type, by_dim: type) -> Callable[..., sympy.Expr]:
    def build(x: sympy.Expr, dim: Static = None) -> sympy.Expr:
        return whole(x) if dim is None else by_dim(x, dim)
    return build


def _spread(by_dim: type) -> Callable[..., sympy.Expr]:
    """var and std: over every element by default, divided by N - correction (1 unless given)."""
    def build(x: sympy.Expr, dim: Static = None, keepdim: Static = None, *,
              correction: sympy.Expr | None = None) -> sympy.Expr:
        c = sympy.Integer(1) if correction is None else _number(correction, "the correction of var and std")
        return by_dim(x, c, *_dims_and_keepdim(dim, keepdim))
    return build


def _extreme(elementwise: type, whole: type, by_dim: type, name: str) -> Callable[..., sympy.Expr]:
    def build(*args: sympy.Expr, dim: Static = None, keepdim: Static = None) -> sympy.Expr:
        if dim is not None or keepdim is not None:
            if len(args) > 1:
                raise ValueError(f"{name}(x, dim=...) reduces one tensor; {name}(a, b) is elementwise")
            return by_dim(args[0], *_dims_and_keepdim(dim, keepdim))
        return whole(args[0]) if len(args) == 1 else elementwise(*args)
    return build


_min = _extreme(sympy.Min, sf.tmin, sf.amin_dim, "min")
_max = _extreme(sympy.Max, sf.tmax, sf.amax_dim, "max")


def _norm(x: sympy.Expr, p: sympy.Expr | None = None, dim: Static = None, keepdim: Static = None) -> sympy.Expr:
    power = None if p is None else _number(p, "the p of norm(x, p)")
    if dim is not None or keepdim:
        return sf.norm_dim(x, sympy.Integer(2) if power is None else power, *_dims_and_keepdim(dim, keepdim))
    return sf.norm(x) if power is None else sf.norm(x, power)


def _dim_source(call: str, parameter: str | None) -> Callable[[Sequence[str]], str]:
    """torch.sum(x, dim=0, keepdim=True) from the texts of a reduction over dims (statics as repr)."""
    def text(args: Sequence[str]) -> str:
        *parameters, dims, keepdim = args[1:]
        dims = dims[1:-2] if dims.endswith(",)") else dims if dims != "()" else "None"
        named = [f"{parameter}={parameters[0]}"] if parameter and parameters else []
        return f"{call}({', '.join([args[0], *named, f'dim={dims}'])}" + (", keepdim=True)" if keepdim == "1" else ")")
    return text


def _dim_node(cls: type, call: str, parameter: str | None = None) -> Node:
    """The node of a reduction over dims: computed by tf.<class name>, shown as the torch call."""
    return Node(cls, f"tf.{cls.__name__}", _dim_source(call, parameter))


def _leaky_relu(x: sympy.Expr, slope: sympy.Expr | None = None) -> sympy.Expr:
    return sf.leaky_relu(x) if slope is None else sf.leaky_relu(
        x, _number(slope, "the slope of leaky_relu(x, slope)"))


def _huber(a: sympy.Expr, b: sympy.Expr, delta: sympy.Expr | None = None) -> sympy.Expr:
    return sf.huber(a, b) if delta is None else sf.huber(
        a, b, _number(delta, "the delta of huber(a, b, delta)", positive=True))


def _nested(fn: str) -> Callable[[Sequence[str]], str]:
    """fn(fn(a, b), c): how torch.maximum/minimum read for max(a, b, c)."""
    def text(args: Sequence[str]) -> str:
        out = args[0]
        for a in args[1:]:
            out = f"{fn}({out}, {a})"
        return out
    return text


def _polygamma_source(args: Sequence[str]) -> str:
    return f"torch.digamma({args[1]})" if args[0] == "0" else f"torch.polygamma({args[0]}, {args[1]})"


def _keyword_source(call: str, keyword: str, default: str, positional: int) -> Callable[[Sequence[str]], str]:
    """F.huber_loss(a, b, delta=1.0): the optional argument by name, its default when absent."""
    def text(args: Sequence[str]) -> str:
        value = args[positional] if len(args) > positional else default
        return f"{call}({', '.join(args[:positional])}, {keyword}={value})"
    return text


def _static(value: sympy.Basic | None, default: int | bool | str | tuple[int, ...]) -> sympy.Basic:
    """A static argument as parsed (already a sympy atom), or its default, encoded."""
    return sf.encode_static(default) if value is None else value


def _transpose(x: sympy.Expr, dim0: sympy.Basic | None = None, dim1: sympy.Basic | None = None) -> sympy.Expr:
    if (dim0 is None) != (dim1 is None):
        raise ValueError("transpose takes two dims to swap, or none (every dim reversed, as x.T)")
    dims: tuple[int, ...] = () if dim0 is None or dim1 is None else (int(dim0), int(dim1))
    return sf.transpose(x, sf.encode_static(dims))


def _where(condition: sympy.Basic, a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    return sf.where((a, condition), (b, True))


def _einsum(subscripts: sympy.Basic, *operands: sympy.Expr) -> sympy.Expr:
    return sf.einsum(*operands, subscripts)


def _einsum_source(args: Sequence[str]) -> str:
    return f"torch.einsum({args[-1]}, {', '.join(args[:-1])})"


def _eye(n: sympy.Basic, m: sympy.Basic | None = None) -> sympy.Expr:
    size = int(n)
    columns = size if m is None else int(m)
    if not (1 <= size <= 10**6 and 1 <= columns <= 10**6):
        raise ValueError("eye(n, m) needs sizes from 1 to 10^6")
    return sf.eye(sf.encode_static(size), sf.encode_static(columns))


def _eye_source(args: Sequence[str]) -> str:
    return f"torch.eye({args[0]})" if args[0] == args[1] else f"torch.eye({args[0]}, {args[1]})"


def _stack(tensors: list[sympy.Expr], dim: sympy.Basic | None = None) -> sympy.Expr:
    return sf.stack(*tensors, _static(dim, 0))


def _stack_source(args: Sequence[str]) -> str:
    return f"torch.stack([{', '.join(args[:-1])}], dim={args[-1]})"


def _transpose_source(args: Sequence[str]) -> str:
    return f"{args[0]}.T" if args[1] == "()" else f"torch.transpose({args[0]}, *{args[1]})"


# --------------------------------------------------------------------------- the registry

X = (Param("x"),)
AB = (Param("a"), Param("b"))
# dim= (or numpy's axis=) and keepdim= of a reduction: dim a whole number or a tuple of them
DIMS = (Param("dim", "None", keyword=True, kind="dims", alias="axis"),
        Param("keepdim", "False", keyword=True, kind="bool"))
KEYWORD_DIMS = tuple(Param(p.name, p.default, keyword=True, kind=p.kind, positional=False, alias=p.alias)
                     for p in DIMS)  # max(a, b) is elementwise: dims by name only


def _elementwise(name: str, cls: type, torch: str, description: str, *, aliases: tuple[str, ...] = (),
                 spellings: tuple[str, ...] = (), explain: Explain | None = None) -> Function:
    """A function of one argument that is one sympy class and one torch function."""
    return Function(name, X, description, Category.ELEMENTWISE, cls, (Node(cls, torch, explain),),
                    aliases=aliases, spellings=spellings)


_LOG = Node(sympy.log, "torch.log")
_POLYGAMMA = Node(sympy.polygamma, "tf.polygamma", _polygamma_source, numbers=(0,))
_MIN = Node(sympy.Min, "tf.minimum", _nested("torch.minimum"), kink="a tie in min splits the gradient evenly")
_MAX = Node(sympy.Max, "tf.maximum", _nested("torch.maximum"), kink="a tie in max splits the gradient evenly")
_TMIN = Node(sf.tmin, "torch.amin")
_TMAX = Node(sf.tmax, "torch.amax")
_RECIPROCAL = "torch.reciprocal({0})"

# Linear algebra, nn.Linear and the losses over classes (issue 17, items 4 and 5): tensor
# operations (sympy_functions.TensorOp), each checked entry by entry.
def _reduction_source(call: str) -> Callable[[Sequence[str]], str]:
    """F.cross_entropy(z, y.long(), reduction='sum'): class indices as torch takes them."""
    def text(args: Sequence[str]) -> str:
        reduction = args[2].strip("'\"")
        extra = "" if reduction == "mean" else f", reduction={reduction!r}"
        return f"{call}({args[0]}, {args[1]}.long(){extra})"
    return text


def _class_loss(cls: type) -> Callable[..., sympy.Expr]:
    def build(x: sympy.Expr, target: sympy.Expr, reduction: sympy.Basic | None = None) -> sympy.Expr:
        return cast(sympy.Expr, cls(x, target, _static(reduction, "mean")))
    return build


def _linear(x: sympy.Expr, weight: sympy.Expr, bias: sympy.Expr | None = None) -> sympy.Expr:
    return cast(sympy.Expr, sf.linear(x, weight) if bias is None else sf.linear(x, weight, bias))


def _linear_source(args: Sequence[str]) -> str:
    return f"F.linear({', '.join(args)})"


def _matrix_norm(a: sympy.Expr, order: sympy.Basic | None = None) -> sympy.Expr:
    return cast(sympy.Expr, sf.matrix_norm(a, _static(order, "fro")))


def _matrix_norm_source(args: Sequence[str]) -> str:
    order = args[1].strip("'\"")
    return f"torch.linalg.matrix_norm({args[0]})" if order == "fro" else \
        f"torch.linalg.matrix_norm({args[0]}, ord={order!r})"


_SQUARE = (Param("A"),)
_REDUCTION = Param("reduction", '"mean"', keyword=True, kind="choice", choices=sf.REDUCTION_NAMES)
_SINGULAR = "a singular A is an error, not a NaN"
LINEAR_ALGEBRA: tuple[Function, ...] = (
    Function("trace", _SQUARE, "the sum of the diagonal of a matrix", Category.LINEAR_ALGEBRA, sf.trace,
             (Node(sf.trace, "tf.trace", "torch.trace({0})"),), aliases=("tr",)),
    Function("det", _SQUARE, "the determinant of a square matrix", Category.LINEAR_ALGEBRA, sf.det,
             (Node(sf.det, "tf.det", "torch.linalg.det({0})"),), spellings=("determinant",)),
    Function("logdet", _SQUARE, f"log(det(A)), for det(A) > 0 ({_SINGULAR})", Category.LINEAR_ALGEBRA, sf.logdet,
             (Node(sf.logdet, "tf.logdet", "torch.logdet({0})"),)),
    Function("logabsdet", _SQUARE, "log|det(A)|, slogdet's log-magnitude", Category.LINEAR_ALGEBRA, sf.logabsdet,
             (Node(sf.logabsdet, "tf.logabsdet", "torch.linalg.slogdet({0}).logabsdet"),), spellings=("slogdet",)),
    Function("inv", _SQUARE, f"the inverse of a square matrix ({_SINGULAR})", Category.LINEAR_ALGEBRA, sf.inv,
             (Node(sf.inv, "tf.inv", "torch.linalg.inv({0})"),), spellings=("inverse", "pinv")),
    Function("solve", (Param("A"), Param("b")), "x with A @ x = b (b a vector or a matrix of columns)",
             Category.LINEAR_ALGEBRA, sf.solve, (Node(sf.solve, "tf.solve", "torch.linalg.solve({0}, {1})"),)),
    Function("cholesky", _SQUARE, "lower-triangular L with L @ L.T = A, for a symmetric positive-definite A",
             Category.LINEAR_ALGEBRA, sf.cholesky, (Node(sf.cholesky, "tf.cholesky", "torch.linalg.cholesky({0})"),)),
    Function("matrix_norm", (Param("A"), Param("ord", '"fro"', keyword=True, kind="choice", choices=sf.MATRIX_NORMS)),
             "a matrix's Frobenius norm (as norm(A)), or \"nuc\": the sum of its singular values",
             Category.LINEAR_ALGEBRA, _matrix_norm, (Node(sf.matrix_norm, "tf.matrix_norm", _matrix_norm_source),)),
    Function("linear", (Param("x"), Param("W"), Param("b", "None")), "x @ W.T + b, as nn.Linear computes it",
             Category.MATRIX, _linear, (Node(sf.linear, "F.linear", _linear_source),)),
    Function("cross_entropy", (Param("z"), Param("y"), _REDUCTION),
             "softmax cross-entropy of logits z (a row per sample) and class indices y (0, 1, ...)",
             Category.CLASS_LOSS, _class_loss(sf.cross_entropy),
             (Node(sf.cross_entropy, "tf.cross_entropy", _reduction_source("F.cross_entropy")),),
             spellings=("CrossEntropyLoss", "softmax_cross_entropy")),
    Function("nll_loss", (Param("logp"), Param("y"), _REDUCTION),
             "minus the log-probability logp[i, y[i]] of each sample i, averaged",
             Category.CLASS_LOSS, _class_loss(sf.nll_loss),
             (Node(sf.nll_loss, "tf.nll_loss", _reduction_source("F.nll_loss")),), spellings=("NLLLoss", "nll")),
)

FUNCTIONS: tuple[Function, ...] = (
    # trigonometric
    _elementwise("sin", sympy.sin, "torch.sin", "sine (radians)"),
    _elementwise("cos", sympy.cos, "torch.cos", "cosine (radians)"),
    _elementwise("tan", sympy.tan, "torch.tan", "tangent (radians)"),
    _elementwise("cot", sympy.cot, "tf.cot", "cotangent, 1/tan(x)", explain="torch.reciprocal(torch.tan({0}))"),
    _elementwise("sec", sympy.sec, "tf.sec", "secant, 1/cos(x)", explain="torch.reciprocal(torch.cos({0}))"),
    _elementwise("csc", sympy.csc, "tf.csc", "cosecant, 1/sin(x)", explain="torch.reciprocal(torch.sin({0}))"),
    _elementwise("asin", sympy.asin, "torch.asin", "inverse sine", aliases=("arcsin",)),
    _elementwise("acos", sympy.acos, "torch.acos", "inverse cosine", aliases=("arccos",)),
    _elementwise("atan", sympy.atan, "torch.atan", "inverse tangent", aliases=("arctan",)),
    _elementwise("acot", sympy.acot, "tf.acot", "inverse cotangent, atan(1/x)", aliases=("arccot",),
                 explain="torch.atan(torch.reciprocal({0}))"),
    _elementwise("asec", sympy.asec, "tf.asec", "inverse secant, acos(1/x)", aliases=("arcsec",),
                 explain="torch.acos(torch.reciprocal({0}))"),
    _elementwise("acsc", sympy.acsc, "tf.acsc", "inverse cosecant, asin(1/x)", aliases=("arccsc",),
                 explain="torch.asin(torch.reciprocal({0}))"),
    Function("atan2", (Param("y"), Param("x")), "the angle of the point (x, y), in (-pi, pi]", Category.ELEMENTWISE,
             sympy.atan2, (Node(sympy.atan2, "torch.atan2"),), aliases=("arctan2",)),
    # hyperbolic
    _elementwise("sinh", sympy.sinh, "torch.sinh", "hyperbolic sine"),
    _elementwise("cosh", sympy.cosh, "torch.cosh", "hyperbolic cosine"),
    _elementwise("tanh", sympy.tanh, "torch.tanh", "hyperbolic tangent"),
    _elementwise("coth", sympy.coth, "tf.coth", "hyperbolic cotangent, 1/tanh(x)",
                 explain="torch.reciprocal(torch.tanh({0}))"),
    _elementwise("sech", sympy.sech, "tf.sech", "hyperbolic secant, 1/cosh(x), without overflow",
                 explain="2 * torch.exp(-abs({0})) / (1 + torch.exp(-2 * abs({0})))"),
    _elementwise("csch", sympy.csch, "tf.csch", "hyperbolic cosecant, 1/sinh(x), without overflow",
                 explain="torch.sign({0}) * 2 * torch.exp(-abs({0})) / (1 - torch.exp(-2 * abs({0})))"),
    _elementwise("asinh", sympy.asinh, "torch.asinh", "inverse hyperbolic sine", aliases=("arcsinh",)),
    _elementwise("acosh", sympy.acosh, "torch.acosh", "inverse hyperbolic cosine", aliases=("arccosh",)),
    _elementwise("atanh", sympy.atanh, "torch.atanh", "inverse hyperbolic tangent", aliases=("arctanh",)),
    _elementwise("acoth", sympy.acoth, "tf.acoth", "inverse hyperbolic cotangent, atanh(1/x)", aliases=("arccoth",),
                 explain="torch.atanh(torch.reciprocal({0}))"),
    _elementwise("asech", sympy.asech, "tf.asech", "inverse hyperbolic secant, acosh(1/x)", aliases=("arcsech",),
                 explain="torch.acosh(torch.reciprocal({0}))"),
    _elementwise("acsch", sympy.acsch, "tf.acsch", "inverse hyperbolic cosecant, asinh(1/x)", aliases=("arccsch",),
                 explain="torch.asinh(torch.reciprocal({0}))"),
    # exponentials, logarithms, powers
    _elementwise("exp", sympy.exp, "torch.exp", "e to the power x"),
    Function("log", (Param("x"), Param("base", "e", keyword=True)), "natural logarithm, or to the given base",
             Category.ELEMENTWISE, _log, (_LOG,), aliases=("ln",)),
    Function("log2", X, "logarithm to base 2", Category.ELEMENTWISE, lambda x: sympy.log(x, 2), (_LOG,)),
    Function("log10", X, "logarithm to base 10", Category.ELEMENTWISE, lambda x: sympy.log(x, 10), (_LOG,)),
    # sqrt and pow are sympy powers, which the lowering computes itself (torch.sqrt, torch.pow)
    Function("sqrt", X, "square root", Category.ELEMENTWISE, sympy.sqrt),
    _elementwise("cbrt", sf.cbrt, "tf.cbrt", "real cube root: cbrt(-8) = -2",
                 explain="torch.sign({0}) * torch.abs({0}).pow(1/3)"),
    Function("pow", (Param("x"), Param("y")), "x to the power y, as x**y", Category.ELEMENTWISE,
             lambda a, b: a**b, spellings=("power", "float_power")),
    # pieces and steps
    Function("abs", X, "absolute value", Category.ELEMENTWISE, sympy.Abs,
             (Node(sympy.Abs, "torch.abs", kink="abs'(0) = 0", slope=sf.abs_slope),),
             aliases=("Abs",), spellings=("absolute", "fabs")),
    Function("sign", X, "-1, 0 or 1", Category.ELEMENTWISE, sympy.sign,
             (Node(sympy.sign, "torch.sign", kink="sign'(0) = 0", jump=True),), aliases=("sgn",)),
    Function("floor", X, "largest whole number <= x", Category.ELEMENTWISE, sympy.floor,
             (Node(sympy.floor, "torch.floor", kink="floor' = 0, at the integers too", jump=True,
                   slope=sf.floor_slope),)),
    Function("ceil", X, "smallest whole number >= x", Category.ELEMENTWISE, sympy.ceiling,
             (Node(sympy.ceiling, "torch.ceil", kink="ceil' = 0, at the integers too", jump=True,
                   slope=sf.ceiling_slope),), aliases=("ceiling",)),
    # special functions
    _elementwise("erf", sympy.erf, "torch.erf", "error function"),
    _elementwise("erfc", sympy.erfc, "torch.erfc", "complementary error function, 1 - erf(x)"),
    _elementwise("erfinv", sympy.erfinv, "torch.erfinv", "inverse error function, on (-1, 1)"),
    Function("gamma", X, "the gamma function, (x-1)! at whole numbers", Category.ELEMENTWISE, sympy.gamma,
             (Node(sympy.gamma, "tf.gamma", "gamma_sign({0}) * torch.exp(torch.lgamma({0}))"),), numeric=True),
    Function("lgamma", X, "log |gamma(x)|", Category.ELEMENTWISE, sympy.loggamma,
             (Node(sympy.loggamma, "torch.lgamma"),), aliases=("loggamma",), spellings=("gammaln",), numeric=True),
    Function("digamma", X, "the derivative of lgamma, polygamma(0, x)", Category.ELEMENTWISE, _digamma,
             (_POLYGAMMA,), spellings=("psi",), numeric=True),
    Function("polygamma", (Param("n"), Param("x")), "the n-th derivative of digamma (n a whole number)",
             Category.ELEMENTWISE, _polygamma, (_POLYGAMMA,)),
    Function("sinc", X, "sin(x)/x, 1 at 0 (unnormalised, unlike torch.sinc)", Category.ELEMENTWISE, sf.sinc,
             (Node(sf.sinc, "tf.sinc", "torch.sinc({0} / math.pi)"),)),
    # activations
    _elementwise("sigmoid", sf.sigmoid, "torch.sigmoid", "logistic function 1/(1 + exp(-x))",
                 spellings=("expit", "logistic")),
    Function("relu", X, "max(0, x)", Category.ELEMENTWISE, sf.relu,
             (Node(sf.relu, "torch.relu", kink="relu'(0) = 0"),)),
    _elementwise("softplus", sf.softplus, "F.softplus", "log(1 + exp(x))",
                 explain="torch.nn.functional.softplus({0})"),
    _elementwise("gelu", sf.gelu, "F.gelu", "exact GELU, x Φ(x)", explain="F.gelu({0})"),
    Function("leaky_relu", (Param("x"), Param("negative_slope", "0.01", keyword=True)),
             "x, or negative_slope * x below 0", Category.ELEMENTWISE, _leaky_relu,
             (Node(sf.leaky_relu, "tf.leaky_relu", _keyword_source("F.leaky_relu", "negative_slope", "0.01", 1)),)),
    # reductions
    Function("sum", (Param("x"), *DIMS), "the sum of every element, or over dim", Category.REDUCTION,
             _by_dims(sf.tsum, sf.sum_dim), (Node(sf.tsum, "torch.sum"), _dim_node(sf.sum_dim, "torch.sum")),
             keeps_shapes=True),
    Function("mean", (Param("x"), *DIMS), "the mean of every element, or over dim", Category.REDUCTION,
             _by_dims(sf.tmean, sf.mean_dim), (Node(sf.tmean, "torch.mean"), _dim_node(sf.mean_dim, "torch.mean")),
             keeps_shapes=True),
    Function("prod", (Param("x"), *DIMS), "the product of every element, or over dim", Category.REDUCTION,
             _by_dims(sf.tprod, sf.prod_dim), (Node(sf.tprod, "torch.prod"), _dim_node(sf.prod_dim, "torch.prod")),
             spellings=("product",), keeps_shapes=True),
    Function("min", (Param("x"), *KEYWORD_DIMS),
             "the smallest element of x (or over dim=), or the elementwise smallest of several",
             Category.REDUCTION, _min, (_TMIN, _MIN, _dim_node(sf.amin_dim, "torch.amin")), aliases=("Min", "minimum"),
             spellings=("amin", "fmin"), more=63, keeps_shapes=True),
    Function("max", (Param("x"), *KEYWORD_DIMS),
             "the largest element of x (or over dim=), or the elementwise largest of several",
             Category.REDUCTION, _max, (_TMAX, _MAX, _dim_node(sf.amax_dim, "torch.amax")), aliases=("Max", "maximum"),
             spellings=("amax", "fmax"), more=63, keeps_shapes=True),
    Function("norm", (Param("x"), Param("p", "2", keyword=True), *DIMS), "the p-norm of every element, or over dim",
             Category.REDUCTION, _norm,
             (Node(sf.norm, "tf.norm", _keyword_source("torch.linalg.vector_norm", "ord", "2", 1)),
              _dim_node(sf.norm_dim, "torch.linalg.vector_norm", "ord")),
             spellings=("vector_norm",)),
    Function("logsumexp", (Param("x"), *DIMS),
             "the log of the sum of exp(x), without overflow: of every element, or over dim",
             Category.REDUCTION, _by_dims(sf.logsumexp, sf.logsumexp_dim),
             (Node(sf.logsumexp, "tf.logsumexp", "torch.logsumexp({0}, dim=0)"),
              _dim_node(sf.logsumexp_dim, "torch.logsumexp"))),
    Function("softmax", (Param("x"), Param("dim", "None", keyword=True, kind="int", alias="axis")),
             "exp(x) / sum(exp(x)) over every element, or along dim", Category.VECTOR,
             _along_dim(sf.softmax, sf.softmax_dim),
             (Node(sf.softmax, "tf.softmax", "torch.softmax({0}, dim=0)"),
              Node(sf.softmax_dim, "tf.softmax_dim", "torch.softmax({0}, dim={1})"))),
    Function("log_softmax", (Param("x"), Param("dim", "None", keyword=True, kind="int", alias="axis")),
             "x - logsumexp(x) over every element, or along dim", Category.VECTOR,
             _along_dim(sf.log_softmax, sf.log_softmax_dim),
             (Node(sf.log_softmax, "tf.log_softmax", "torch.log_softmax({0}, dim=0)"),
              Node(sf.log_softmax_dim, "tf.log_softmax_dim", "torch.log_softmax({0}, dim={1})"))),
    Function("var", (Param("x"), *DIMS[:1], Param("correction", "1", keyword=True, positional=False), *DIMS[1:]),
             "the variance of every element or over dim, as torch.var: divided by N - correction "
             "(correction=1 by default, the unbiased estimate; correction=0 divides by N, as numpy's var)",
             Category.REDUCTION, _spread(sf.var_dim), (_dim_node(sf.var_dim, "torch.var", "correction"),),
             spellings=("variance",)),
    Function("std", (Param("x"), *DIMS[:1], Param("correction", "1", keyword=True, positional=False), *DIMS[1:]),
             "the standard deviation, sqrt(var(x, dim, correction)), as torch.std (correction=1 by default)",
             Category.REDUCTION, _spread(sf.std_dim), (_dim_node(sf.std_dim, "torch.std", "correction"),)),
    # losses: the mean over the broadcast elements, as torch's defaults
    Function("mse", (Param("input"), Param("target")), "mean squared error", Category.PAIRWISE, sf.mse,
             (Node(sf.mse, "tf.mse", "F.mse_loss({0}, {1})"),), spellings=("mse_loss",)),
    Function("l1", (Param("input"), Param("target")), "mean absolute error", Category.PAIRWISE, sf.l1,
             (Node(sf.l1, "tf.l1", "F.l1_loss({0}, {1})"),), spellings=("l1_loss",)),
    Function("bce", (Param("p"), Param("y")), "binary cross-entropy of probabilities p", Category.PAIRWISE, sf.bce,
             (Node(sf.bce, "tf.bce", "F.binary_cross_entropy({0}, {1})"),),
             spellings=("binary_cross_entropy",)),
    Function("bce_logits", (Param("z"), Param("y")), "binary cross-entropy of logits z", Category.PAIRWISE,
             sf.bce_logits, (Node(sf.bce_logits, "tf.bce_logits", "F.binary_cross_entropy_with_logits({0}, {1})"),),
             spellings=("binary_cross_entropy_with_logits",)),
    Function("huber", (Param("input"), Param("target"), Param("delta", "1", keyword=True)),
             "Huber loss: squared below delta, linear above", Category.PAIRWISE, _huber,
             (Node(sf.huber, "tf.huber", _keyword_source("F.huber_loss", "delta", "1.0", 2)),),
             spellings=("huber_loss",)),
    # tensor programs: shape-aware operations (sympy_functions.TensorOp), each checked entry by entry
    Function("matmul", AB, "the matrix product a @ b (vectors promoted, batch dimensions broadcast)",
             Category.MATRIX, sf.matmul, (Node(sf.matmul, "torch.matmul", "{0} @ {1}"),), spellings=("mm", "bmm")),
    Function("transpose", (Param("x"), Param("dim0", "None", kind="int"), Param("dim1", "None", kind="int")),
             "x.T (every dim reversed), or dims dim0 and dim1 swapped", Category.MATRIX, _transpose,
             (Node(sf.transpose, "tf.transpose", _transpose_source),), spellings=("permute",)),
    Function("outer", AB, "the outer product of two vectors: out[i, j] = a[i] * b[j]", Category.MATRIX,
             sf.outer, (Node(sf.outer, "torch.outer"),), spellings=("ger",)),
    Function("dot", AB, "numpy's dot: the inner product of two vectors; with a matrix, the matrix product",
             Category.MATRIX, sf.dot, (Node(sf.dot, "tf.dot", "np.dot({0}, {1})"),), spellings=("inner", "vdot")),
    Function("einsum", (Param("subscripts", kind="subscripts"), Param("a")),
             "Einstein summation, as torch.einsum(\"ij,j->i\", A, x): the subscripts (the one string gradcli "
             "reads) name each operand's dims by letter; letters missing from the output are summed",
             Category.MATRIX, _einsum, (Node(sf.einsum, "tf.einsum", _einsum_source),), more=7),
    Function("diag", X, "a vector's diagonal matrix, or a matrix's diagonal (torch.diag)", Category.MATRIX,
             sf.diag, (Node(sf.diag, "torch.diag"),), spellings=("diagonal", "diag_embed")),
    Function("eye", (Param("n", kind="int"), Param("m", "n", kind="int")), "the n by m identity matrix (m = n)",
             Category.MATRIX, _eye, (Node(sf.eye, "tf.eye", _eye_source, factory=True),), spellings=("identity",)),
    Function("stack", (Param("tensors", kind="list"), Param("dim", "0", keyword=True, kind="int", alias="axis")),
             "tensors of one shape stacked along a new dim, as torch.stack([a, b], dim=0); "
             "a list [a, b] inside an expression is stack([a, b])",
             Category.MATRIX, _stack, (Node(sf.stack, "tf.stack", _stack_source),), spellings=("vstack", "hstack")),
    # conditionals: comparisons are read only as where's condition
    Function("where", (Param("condition", kind="condition"), Param("input"), Param("other")),
             "input where the condition (a comparison, like x > 0) holds, else other; torch.where. "
             "Its gradient flows through both: guard the other branch's input too (a double where)",
             Category.ELEMENTWISE, _where),
    Function("clamp", (Param("x"), Param("min"), Param("max")), "x limited to [min, max], torch.clamp",
             Category.ELEMENTWISE, sf.clamp, (Node(sf.clamp, "torch.clamp", kink="clamp'(x) = 1 at min and max"),),
             aliases=("clip",)),
    *LINEAR_ALGEBRA,
)

# Nodes only symbolic derivatives contain: computed by the same table, never listed to users.
INTERNAL_NODES: tuple[Node, ...] = (
    Node(sf.abs_slope, "tf.abs_slope", "abs_slope({0})", internal="the derivative of abs"),
    Node(sf.floor_slope, "tf.step_slope", "step_slope({0})", internal="the derivative of floor"),
    Node(sf.ceiling_slope, "tf.step_slope", "step_slope({0})", internal="the derivative of ceil"),
    Node(sympy.Heaviside, "tf.heaviside", "heaviside({0})", internal="the derivatives of relu, max and min"),
    Node(sympy.DiracDelta, "tf.dirac_delta", "dirac_delta({0})", internal="the second derivatives of abs and sign"),
    Node(sf.dsinc, "tf.dsinc", "dsinc({0})", internal="the derivative of sinc"),
    # sympy's own sinc: sf.sinc of a plain number evaluates to it (and is folded, but the
    # table says how to compute it should one ever reach the lowering)
    Node(sympy.sinc, "tf.sinc", "torch.sinc({0} / math.pi)", internal="sinc of a number"),
)

# --------------------------------------------------------------------------- lookups

_BY_NAME: dict[str, Function] = {}
for _entry in FUNCTIONS:
    for _name in _entry.names:
        assert _name not in _BY_NAME, f"{_name} is declared twice"
        _BY_NAME[_name] = _entry

_SPELLINGS: dict[str, Function] = {s: f for f in FUNCTIONS for s in f.spellings}
assert not set(_SPELLINGS) & set(_BY_NAME), "a foreign spelling is also a name gradcli takes"

NODES: dict[type, Node] = {}
for _node in (*(n for f in FUNCTIONS for n in f.nodes), *INTERNAL_NODES):
    assert NODES.get(_node.cls, _node) is _node, f"{_node.cls.__name__} is declared twice"
    NODES[_node.cls] = _node

FUNCTION_NAMES: frozenset[str] = frozenset(_BY_NAME)

# Value constructors (x=ones(2,3)): name -> (fewest, most arguments). values.py builds them;
# they are declared here because the parser reserves every name a user may type.
CONSTRUCTORS: dict[str, tuple[int, int]] = {
    "ones": (1, 8),
    "zeros": (1, 8),
    "eye": (1, 2),
    "full": (2, 2),
    "linspace": (3, 3),
    "arange": (1, 3),
    "rand": (1, 8),
    "randn": (1, 8),
}


def lookup(name: str) -> Function | None:
    """The function users call `name` (its name or an alias), or None."""
    return _BY_NAME.get(name)


# Other libraries' names for a function gradcli has (TensorFlow's reduce_sum, scikit-learn's
# mean_squared_error), beside the spellings each Function declares: the name gradcli gives it.
ALSO_CALLED: dict[str, str] = {
    "mean_squared_error": "mse", "mean_absolute_error": "l1", "frobenius_norm": "norm", "l2_norm": "norm",
    "reduce_sum": "sum", "reduce_mean": "mean", "reduce_prod": "prod", "reduce_max": "max", "reduce_min": "min",
    "reduce_logsumexp": "logsumexp",
}

# What other libraries call a function gradcli writes another way (or has no function for):
# how to write it here. Meaning comes before spelling: by spelling alone, matmul looked like
# maximum, where like huber and det like dot. A name the registry takes never reaches this
# table (asserted below): when gradcli gains a function, its entry here goes.
WRITTEN_AS: dict[str, str] = {
    "tensordot": 'einsum("ij,jk->ik", a, b) contracts the axes you name; a @ b the last and first',
    "select": "where(cond, a, b)",
    "kl_div": "the KL divergence of p from q: sum(p * log(p / q))",
    "square": "x**2",
    "reciprocal": "1/x",
    "rsqrt": "1/sqrt(x)",
    "exp2": "2**x",
    "expm1": "exp(x) - 1",
    "log1p": "log(1 + x)",
    "hypot": "sqrt(x**2 + y**2)",
    "logaddexp": "log(exp(a) + exp(b))",
    "negative": "-x",
    "relu6": "clamp(x, 0, 6)",
    "hardtanh": "clamp(x, -1, 1)",
    "silu": "x*sigmoid(x)",
    "swish": "x*sigmoid(x)",
    "mish": "x*tanh(softplus(x))",
    "softsign": "x/(1 + abs(x))",
    "logsigmoid": "-softplus(-x)",
    "log_sigmoid": "-softplus(-x)",
    "softmin": "softmax(-x)",
    "heaviside": "(sign(x) + 1)/2 (with the value 1/2 at 0)",
    "step": "(sign(x) + 1)/2 (with the value 1/2 at 0)",
    "factorial": "gamma(x + 1)",
    "cosine_similarity": "dot(a, b)/(norm(a)*norm(b))",
    "smooth_l1_loss": "huber(input, target, delta=beta)/beta (the same as huber for beta = 1)",
    "add": "a + b", "subtract": "a - b", "sub": "a - b", "multiply": "a*b", "mul": "a*b",
    "divide": "a/b", "div": "a/b", "true_divide": "a/b",
}

assert all(target in _BY_NAME for target in ALSO_CALLED.values()), "ALSO_CALLED names a function gradcli lacks"
assert not _BY_NAME.keys() & WRITTEN_AS.keys(), "WRITTEN_AS holds a name the registry takes: its hint is never shown"

# A library's prefix before a name: np.dot, torch.nn.functional.mse_loss, F.softplus.
_PREFIX = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*\.)+")
_LIST_THEM = "gradcli functions lists every function"


def suggestion(name: str) -> str:
    """The hint for an unknown function `name`, by meaning first: past a library's prefix
    (np., torch., F.), what gradcli calls it (another library's spelling: mse_loss is mse)
    or how to write it (var, cross_entropy); then by spelling, a close name. Every hint
    names `gradcli functions`."""
    bare = _PREFIX.sub("", name)
    known = _BY_NAME.get(bare)
    if known is not None and bare != name:
        return f"write {bare}(...) without the prefix; {_LIST_THEM}"
    foreign = _SPELLINGS.get(bare) or _BY_NAME.get(ALSO_CALLED.get(bare, ""))
    if foreign is not None:
        return f"gradcli calls it {foreign.name}: {foreign.signature}; {_LIST_THEM}"
    if bare in WRITTEN_AS:
        return f"{bare}: {WRITTEN_AS[bare]}; {_LIST_THEM}"
    # Short names are a letter or two from many others: a looser match, only for them.
    cutoff = 0.6 if len(bare) <= 4 else 0.7
    close = difflib.get_close_matches(bare, sorted({*FUNCTION_NAMES, *_SPELLINGS, *ALSO_CALLED}), n=1,
                                      cutoff=cutoff)
    if close:
        meant = _BY_NAME.get(close[0]) or _SPELLINGS.get(close[0]) or _BY_NAME[ALSO_CALLED[close[0]]]
        spelled = close[0] if close[0] == meant.name or close[0] in meant.aliases else \
            f"{close[0]} (gradcli calls it {meant.name})"
        return f"did you mean {spelled}? {_LIST_THEM}"
    return _LIST_THEM


def find(name: str) -> Function:
    """The function called `name`, for `gradcli functions NAME`; GradcliError if there is none.
    A library's prefix is read past (np.arctan, torch.sigmoid, F.softplus): that is how a user
    coming from numpy or torch writes it, though an expression takes the bare name."""
    bare = name.rpartition(".")[2]
    entry = lookup(bare) or _SPELLINGS.get(bare)
    if entry is None:
        raise GradcliError(f"unknown function '{name}'", hint=suggestion(name))
    return entry


# --------------------------------------------------------------------------- kinks

# sympy class -> what torch does where its derivative does not exist, for the note that says so.
KINK_CONVENTIONS: dict[type, str] = {cls: n.kink for cls, n in NODES.items() if n.kink}
# Where these jump, f has no derivative whatever the slopes: their kinks are never settled.
JUMP_CONVENTIONS: frozenset[str] = frozenset(n.kink for n in NODES.values() if n.jump and n.kink)
# sympy class -> the derivative node the check uses for it (see Node.slope).
SLOPES: dict[type, type] = {cls: n.slope for cls, n in NODES.items() if n.slope is not None}
GENERIC_KINK_CONVENTION = ("relu'(0) = 0, abs'(0) = sign(0) = 0, a tie in max or min splits the gradient "
                           "evenly")
