"""Sympy definitions of what sympy lacks: ML activations, a real cube root, tensor reductions and
shape-aware tensor operations (matmul, transpose, sums over a dim...: see "tensor operations" below).

Each function carries its own derivative (`fdiff`), so the symbolic cross-check never asks
torch how to differentiate it. The registry (functions.py) names the torch function a user would call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

import sympy
import sympy.core.symbol
from sympy.printing.precedence import PRECEDENCE

from gradcli.errors import GradcliError


class sigmoid(sympy.Function):  # noqa: N801 - the name is what users type and what sympy prints
    """The logistic function 1/(1 + exp(-x))."""

    is_real = True

    @classmethod
    def eval(cls, arg: sympy.Expr) -> sympy.Expr | None:
        if arg.is_number and arg.is_real:  # pi/4 too, not only literal numbers
            return 1 / (1 + sympy.exp(-arg))
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, arg: sympy.Expr, **kwargs: Any) -> sympy.Expr:
        return 1 / (1 + sympy.exp(-arg))


class relu(sympy.Function):  # noqa: N801
    """max(0, x). Its derivative at 0 does not exist; torch uses 0 there."""

    is_real = True

    @classmethod
    def eval(cls, arg: sympy.Expr) -> sympy.Expr | None:
        if arg.is_number and arg.is_real:
            return sympy.Max(0, arg)
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.Heaviside(self.args[0])


class softplus(sympy.Function):  # noqa: N801
    """log(1 + exp(x)), as torch.nn.functional.softplus with beta=1."""

    is_real = True

    @classmethod
    def eval(cls, arg: sympy.Expr) -> sympy.Expr | None:
        if arg.is_number and arg.is_real:
            return sympy.log(1 + sympy.exp(arg))
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sigmoid(self.args[0])


class cbrt(sympy.Function):  # noqa: N801
    """The real cube root: cbrt(-8) = -2 (sympy's own cbrt is the principal, complex root)."""

    is_real = True

    @classmethod
    def eval(cls, arg: sympy.Expr) -> sympy.Expr | None:
        if arg.is_number and arg.is_real:
            return sympy.sign(arg) * sympy.Abs(arg) ** sympy.Rational(1, 3)
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return 1 / (3 * cbrt(self.args[0]) ** 2)


class sinc(sympy.Function):  # noqa: N801
    """sin(x)/x, 1 at 0, with a derivative that stays accurate near 0.

    sympy's own sinc differentiates to cos(x)/x - sin(x)/x**2, which cancels to noise as x
    approaches 0 and is 0/0 at 0, where the derivative is 0.
    """

    is_real = True

    @classmethod
    def eval(cls, arg: sympy.Expr) -> sympy.Expr | None:
        if arg.is_Number:
            return sympy.sinc(arg)
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return dsinc(self.args[0])


class dsinc(sympy.Function):  # noqa: N801
    """The derivative of sinc: (x cos x - sin x)/x**2, and its series -x/3 + ... near 0."""

    is_real = True

    @classmethod
    def eval(cls, arg: sympy.Expr) -> sympy.Expr | None:
        if arg.is_Number:
            return sympy.Integer(0) if arg.is_zero else (arg * sympy.cos(arg) - sympy.sin(arg)) / arg**2
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        x = self.args[0]
        return -sinc(x) - 2 * dsinc(x) / x


class Slope(sympy.Function):
    """The derivative of a function with points where it has none: its value elsewhere.

    Only symbolic derivatives contain these. Where the derivative does not exist (abs at 0,
    floor at an integer) the lowering gives NaN, so the check says "kink" and names torch's
    convention instead of comparing: sympy's own sign(0) = 0 for abs'(0) would agree with
    torch by coincidence and hide the kink. Printed as what they stand for: sign(x), floor'(x).
    """

    is_real = True
    nargs = 1
    shown = ""

    def _sympystr(self, printer: Any) -> str:
        return f"{self.shown}({printer._print(self.args[0])})"


class abs_slope(Slope):  # noqa: N801
    """d|u|/du: sign(u), and no value at u = 0."""

    shown = "sign"

    @classmethod
    def eval(cls, arg: sympy.Expr) -> sympy.Expr | None:
        if arg.is_Number and not arg.is_zero:
            return sympy.sign(arg)
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return 2 * sympy.DiracDelta(self.args[0])  # as sympy differentiates sign: no value at 0


class floor_slope(Slope):  # noqa: N801
    """d floor(u)/du: 0, and no value at the integers, where floor jumps."""

    shown = "floor'"

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return self  # 0 again, and again no value at the integers


class ceiling_slope(Slope):  # noqa: N801
    """d ceil(u)/du: 0, and no value at the integers, where ceil jumps."""

    shown = "ceil'"

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return self


class bcast(sympy.Function):  # noqa: N801
    """expr, broadcast to the shapes of the variables after it: bcast(y, x) is y where x was written.

    Sympy cancels as it reads: in sum(x - x + y) the x is gone, and with it the shape that
    made torch's sum add y once per element of x. The parser wraps such an expression in
    bcast with the vanished variables, so their shapes still count. It is the identity on
    values, so its derivative is 1 with respect to expr and 0 with respect to the rest.
    """

    is_real = True

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.Integer(1) if argindex == 1 else sympy.Integer(0)

    def _sympystr(self, printer: Any) -> str:
        return cast(str, printer._print(self.args[0]))


class Reduction(sympy.Function):
    """A reduction of a tensor-valued expression to a scalar.

    Sympy sees an opaque scalar function of an expression; the cross-check differentiates
    through it by the chain rule (reference.py), since sympy has no notion of tensor shapes.
    """

    is_real = True

    @classmethod
    def eval(cls, arg: sympy.Expr) -> sympy.Expr | None:
        # The reduction of a constant is that constant: it has no shape to reduce over (a
        # constant tensor, eye(3), has one: it stays).
        if is_plain_constant(arg):
            return arg
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:  # pragma: no cover - reference.py never asks sympy for this
        raise NotImplementedError("reductions are differentiated by the chain rule in reference.py")


class tsum(Reduction):  # noqa: N801
    """sum(expr): the sum of every element."""

    def _sympystr(self, printer: Any) -> str:
        return f"sum({printer._print(self.args[0])})"


class tmean(Reduction):  # noqa: N801
    """mean(expr): the mean of every element."""

    def _sympystr(self, printer: Any) -> str:
        return f"mean({printer._print(self.args[0])})"



class tprod(Reduction):  # noqa: N801
    """prod(expr): the product of every element."""

    def _sympystr(self, printer: Any) -> str:
        return f"prod({printer._print(self.args[0])})"


class tmax(Reduction):  # noqa: N801
    """max(expr) of one tensor: its largest element."""

    def _sympystr(self, printer: Any) -> str:
        return f"max({printer._print(self.args[0])})"


class tmin(Reduction):  # noqa: N801
    """min(expr) of one tensor: its smallest element."""

    def _sympystr(self, printer: Any) -> str:
        return f"min({printer._print(self.args[0])})"


class tindex(Reduction):  # noqa: N801
    """expr[i, j, ...] of a tensor-valued expression: one element, like a reduction.

    Its derivative with respect to expr is the indicator of that element.
    """

    nargs = (2, 3, 4, 5, 6, 7, 8, 9)  # the expression, then one whole number per dimension

    @classmethod
    def eval(cls, arg: sympy.Expr, *index: sympy.Expr) -> sympy.Expr | None:
        if is_plain_constant(arg):
            return arg  # a constant number has the same value at every index
        return None

    @property
    def index(self) -> tuple[int, ...]:
        return tuple(int(i) for i in self.args[1:])

    def _sympystr(self, printer: Any) -> str:
        return f"({printer._print(self.args[0])})[{','.join(str(i) for i in self.index)}]"


REDUCTIONS = (tsum, tmean, tprod, tmax, tmin, tindex)  # every Reduction subclass, for reference


# --------------------------------------------------------------------------- defined functions

class Defined(sympy.Function):
    """A function torch has by name, whose meaning for the check is a formula of ours.

    The lowering calls the torch function a user would call (F.mse_loss, torch.logsumexp...),
    so gradients match torch's own; the symbolic cross-check first rewrites the node into
    `definition()`, written with elementwise functions and sum/mean, and differentiates that.
    """

    is_real = True

    def definition(self) -> sympy.Expr:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _eval_evalf(self, prec: int) -> sympy.Expr:
        return self.definition().evalf(prec)


def expand_definitions(expr: sympy.Basic) -> sympy.Basic:
    """expr with every Defined function replaced by its definition, innermost first."""
    if not expr.has(Defined):
        return expr
    return expr.replace(lambda n: isinstance(n, Defined), lambda n: n.definition())


class mse(Defined):  # noqa: N801
    nargs = 2

    def definition(self) -> sympy.Expr:
        a, b = self.args
        return tmean((a - b) ** 2)


class l1(Defined):  # noqa: N801
    nargs = 2

    def definition(self) -> sympy.Expr:
        a, b = self.args
        return tmean(sympy.Abs(a - b))


class bce(Defined):  # noqa: N801
    """Binary cross-entropy of probabilities p against targets y (F.binary_cross_entropy)."""

    nargs = 2

    def definition(self) -> sympy.Expr:
        p, y = self.args
        return -tmean(y * sympy.log(p) + (1 - y) * sympy.log(1 - p))


class bce_logits(Defined):  # noqa: N801
    """Binary cross-entropy of logits z (F.binary_cross_entropy_with_logits)."""

    nargs = 2

    def definition(self) -> sympy.Expr:
        z, y = self.args
        return tmean(softplus(z) - y * z)


class huber(Defined):  # noqa: N801
    """F.huber_loss: 0.5 d^2 where |d| < delta, else delta (|d| - delta/2), averaged."""

    nargs = (2, 3)

    def definition(self) -> sympy.Expr:
        a, b = self.args[:2]
        delta = self.args[2] if len(self.args) > 2 else sympy.Integer(1)
        d = a - b
        return tmean(sympy.Piecewise((d**2 / 2, sympy.Abs(d) < delta),
                                     (delta * (sympy.Abs(d) - delta / 2), True)))


class norm(Defined):  # noqa: N801
    """The p-norm of every element (2 by default), torch.linalg.vector_norm."""

    nargs = (1, 2)

    def definition(self) -> sympy.Expr:
        x = self.args[0]
        p = self.args[1] if len(self.args) > 1 else sympy.Integer(2)
        if p == 2:
            return sympy.sqrt(tsum(x**2))
        return tsum(sympy.Abs(x) ** p) ** (1 / p)


class logsumexp(Defined):  # noqa: N801
    nargs = 1

    def definition(self) -> sympy.Expr:
        (x,) = self.args
        return sympy.log(tsum(sympy.exp(x)))


class softmax(Defined):  # noqa: N801
    """exp(x) / sum(exp(x)) over every element of x."""

    nargs = 1

    def definition(self) -> sympy.Expr:
        (x,) = self.args
        return sympy.exp(x) / tsum(sympy.exp(x))


class log_softmax(Defined):  # noqa: N801
    nargs = 1

    def definition(self) -> sympy.Expr:
        (x,) = self.args
        return x - sympy.log(tsum(sympy.exp(x)))


class gelu(Defined):  # noqa: N801
    """The exact GELU, x Φ(x) (F.gelu's default)."""

    nargs = 1

    def definition(self) -> sympy.Expr:
        (x,) = self.args
        return x * (1 + sympy.erf(x / sympy.sqrt(2))) / 2


class leaky_relu(Defined):  # noqa: N801
    nargs = (1, 2)

    def definition(self) -> sympy.Expr:
        x = self.args[0]
        slope = self.args[1] if len(self.args) > 1 else sympy.Float("0.01")
        return sympy.Piecewise((x, x > 0), (slope * x, True))


class clamp(sympy.Function):  # noqa: N801
    """clamp(x, lo, hi): min(max(x, lo), hi), torch.clamp. Its slope is 1 inside [lo, hi] and 0
    outside; at lo and hi it has none (torch takes 1 there), so its derivative holds Heaviside."""

    is_real = True
    nargs = 3

    @classmethod
    def eval(cls, x: sympy.Expr, lo: sympy.Expr, hi: sympy.Expr) -> sympy.Expr | None:
        if x.is_number and lo.is_number and hi.is_number and x.is_real and lo.is_real and hi.is_real:
            return sympy.Min(sympy.Max(x, lo), hi)
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        x, lo, hi = self.args
        if argindex == 1:
            return sympy.Heaviside(x - lo) * sympy.Heaviside(hi - x)
        if argindex == 2:
            return sympy.Heaviside(lo - x)
        return sympy.Heaviside(x - hi)


class where(sympy.Piecewise):  # noqa: N801
    """where(condition, a, b): Piecewise((a, condition), (b, True)), kept as typed.

    sympy's Piecewise folds a where nested in a branch under the same condition: it would turn
    the safe "double where", where(x > 0, sqrt(where(x > 0, x, 1)), 0), back into the unsafe
    where(x > 0, sqrt(x), 0) whose gradient is NaN at x < 0. This one never evaluates; the
    lowering (torch.where) and the derivatives read it as the Piecewise it is.
    """

    @classmethod
    def eval(cls, *_args: Any) -> sympy.Expr | None:
        return None

    def _eval_power(self, exponent: sympy.Expr) -> sympy.Expr | None:
        return None  # sqrt(where(c, x, 1)) stays a power of a where: Piecewise moves it into the pieces

    def _sympystr(self, printer: Any) -> str:
        (a, cond), (b, _true) = self.args
        return f"where({printer._print(cond)}, {printer._print(a)}, {printer._print(b)})"

    def _pretty(self, printer: Any) -> Any:
        from sympy.printing.pretty.stringpict import prettyForm

        return prettyForm(sympy.sstr(self))

    def _latex(self, printer: Any) -> str:
        (a, cond), (b, _true) = self.args
        parts = ", ".join(printer._print(p) for p in (cond, a, b))
        return rf"\operatorname{{where}}\left({parts}\right)"


# =========================================================================== tensor operations
#
# Shape-aware operations (matmul, transpose, sum over a dim, stack...): how they are represented.
#
# Node: one `TensorOp` subclass per operation, a sympy Function that never evaluates (its `eval`
# returns None) and is never a number (`is_number = False`: eye(3) has no free symbol, yet sympy
# must neither fold nor evalf it). Sympy treats it as an opaque real scalar, which is right for
# the elementwise algebra around it (+, *, ** are elementwise in torch too).
#
# Arguments: the tensor operands first (any expressions), then exactly `statics` static
# arguments, which are never tensors and are encoded as sympy atoms so the node stays hashable
# and printable:
#     a whole number (a dim, a size, a flag: keepdim is 0 or 1)  -> sympy.Integer
#     several whole numbers (dim=(0, 1); () means every dim)      -> sympy.Tuple of Integers
#     text (einsum's subscripts, an index such as "...,-1")       -> sympy.core.symbol.Str
# `node.operands` are the operands, `node.static` the static arguments decoded to Python values
# (int, tuple of ints, str). The parser builds the static arguments from what the registry's
# Param.kind says ("int", "dims", "bool", "subscripts"); nothing else about strings is accepted.
#
# Each class says, for its own operation:
#     shape(shapes, *static)   the output shape from the operands' shapes (a ShapeError naming
#                              both shapes when they do not fit): core/shapes.py walks the tree
#     expand(arrays, *static)  the operation on numpy object arrays of scalar sympy expressions,
#                              written from the operation's definition, never from torch: the
#                              small-shape check (reference.py) differentiates the entries
#     scalar_form(shapes)      optionally, the same value written with elementwise operations
#                              and whole-tensor reductions for these shapes (dot of two vectors
#                              is sum(a*b)), so the check can use its scalar route at any size
# and the registry (functions.py) declares, once, the names users type, the torch function
# (torch_functions.py or torch.*) and the --explain text. The lowering calls that torch function
# with the operands as tensors, then the static arguments as Python values.
#
# Adding a tensor function: a TensorOp subclass here (statics, shape, expand, _sympystr), its
# torch function (torch_functions.py, taking the operands then the statics), one Function entry
# in functions.py (Params with their kinds), and tests against hand-written torch.

Array = Any  # a numpy object array of sympy expressions (numpy is imported only where used)


class ShapeError(ValueError):
    """Operands whose shapes do not fit an operation; the message names the shapes."""


def is_plain_constant(expr: sympy.Basic) -> bool:
    """No variable and no tensor operation in expr: a number the lowering may fold."""
    return not expr.free_symbols and not expr.has(TensorOp)


def shown_shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def encode_static(value: float | str | tuple[int, ...]) -> sympy.Basic:
    """A static argument as the sympy atom a TensorOp holds (see the note above)."""
    if isinstance(value, str):
        return sympy.core.symbol.Str(value)
    if isinstance(value, tuple):
        return sympy.Tuple(*(sympy.Integer(v) for v in value))
    if isinstance(value, float) and not value.is_integer():
        return sympy.Float(value)
    return sympy.Integer(int(value))


def _decode_static(arg: sympy.Basic) -> Any:
    if isinstance(arg, sympy.core.symbol.Str):
        return str(arg.name)
    if isinstance(arg, sympy.Tuple):
        return tuple(int(a) for a in arg.args)
    if isinstance(arg, sympy.Integer):
        return int(arg)
    return float(arg)  # a plain number: a norm's p, var's correction


def normalise_dim(dim: int, shape: tuple[int, ...], what: str, extra: int = 0) -> int:
    """A dim counted from the end made positive; ShapeError when out of range (`extra`: stack
    inserts a dim, so it may name one past the last)."""
    ndim = len(shape) + extra
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise ShapeError(f"{what}: dim {dim} is out of range for shape {shown_shape(shape)}")
    return dim % max(ndim, 1)


def reduced_shape(shape: tuple[int, ...], dims: tuple[int, ...], keepdim: bool, what: str) -> tuple[int, ...]:
    """The shape after reducing `dims` (() means every dim), as torch's dim=/keepdim= do."""
    chosen = _chosen_dims(shape, dims, what)
    if keepdim:
        return tuple(1 if i in chosen else n for i, n in enumerate(shape))
    return tuple(n for i, n in enumerate(shape) if i not in chosen)


def _chosen_dims(shape: tuple[int, ...], dims: tuple[int, ...], what: str) -> tuple[int, ...]:
    if not dims:
        return tuple(range(len(shape)))
    chosen = tuple(normalise_dim(d, shape, what) for d in dims)
    if len(set(chosen)) != len(chosen):
        raise ShapeError(f"{what}: a dim is named twice in {dims}")
    return chosen if shape else ()


class TensorOp(sympy.Function):
    """A shape-aware tensor operation (see the note above): never evaluated by sympy."""

    is_real = True
    is_number = False
    statics = 0  # how many trailing arguments are static (never tensors)
    label = ""  # the name users type, for messages

    @classmethod
    def eval(cls, *args: sympy.Basic) -> sympy.Expr | None:
        return None

    @property
    def operands(self) -> tuple[sympy.Expr, ...]:
        return tuple(self.args[:len(self.args) - self.statics])

    @property
    def static(self) -> tuple[Any, ...]:
        return tuple(_decode_static(a) for a in self.args[len(self.args) - self.statics:])

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:  # pragma: no cover
        raise NotImplementedError

    def expand(self, arrays: list[Array], *static: Any) -> Array:  # pragma: no cover
        raise NotImplementedError

    def scalar_form(self, shapes: list[tuple[int, ...]]) -> sympy.Expr | None:
        """The same value without tensor operations, for operands of these shapes; None if none."""
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        raise TensorDerivativeError(
            f"{self.label or type(self).__name__} is not elementwise: its derivative is a tensor, not one "
            "scalar formula", hint="gradcli grad and jacobian compute it and check it entry by entry")

    def _sympystr(self, printer: Any) -> str:
        parts = [printer._print(a) for a in self.operands] + [repr(v) for v in self.static]
        return f"{self.label or type(self).__name__}({', '.join(parts)})"


class TensorDerivativeError(GradcliError):
    """sympy asked for the derivative of a tensor operation as a scalar function (gradcli diff)."""


def has_tensor_ops(exprs: Iterable[sympy.Basic]) -> bool:
    return any(e.has(TensorOp) for e in exprs)


def _objects(shape: tuple[int, ...]) -> Array:
    import numpy as np

    return np.empty(shape, dtype=object)


def _sum_entries(items: Sequence[sympy.Expr]) -> sympy.Expr:
    return sympy.Add(*items) if items else sympy.S.Zero


def as_object_array(value: Any) -> Array:
    import numpy as np

    if isinstance(value, np.ndarray):
        return value
    out = _objects(())
    out[()] = value
    return out


def _matmul_shape(a: tuple[int, ...], b: tuple[int, ...], what: str) -> tuple[int, ...]:
    """numpy's (and torch's) matmul rule: vectors promoted, batch dimensions broadcast."""
    if not a or not b:
        raise ShapeError(f"{what} needs tensors of 1 dimension or more, not shapes {shown_shape(a)} and "
                         f"{shown_shape(b)} (multiply by a scalar with *)")
    left = (1,) + a if len(a) == 1 else a
    right = b + (1,) if len(b) == 1 else b
    if left[-1] != right[-2]:
        raise ShapeError(f"{what}: shapes {shown_shape(a)} and {shown_shape(b)} do not fit (the inner sizes "
                         f"{left[-1]} and {right[-2]} differ)")
    try:
        import numpy as np

        batch = tuple(int(n) for n in np.broadcast_shapes(left[:-2], right[:-2]))
    except ValueError:
        raise ShapeError(f"{what}: the batch dimensions of shapes {shown_shape(a)} and {shown_shape(b)} do not "
                         "broadcast") from None
    return batch + (left[-2],) * (len(a) > 1) + (right[-1],) * (len(b) > 1)


def _matmul_expand(a: Array, b: Array) -> Array:
    """Entry by entry: out[..., i, j] = sum over k of a[..., i, k] * b[..., k, j]."""
    import numpy as np

    left = a.reshape((1,) + a.shape) if a.ndim == 1 else a
    right = b.reshape(b.shape + (1,)) if b.ndim == 1 else b
    batch = tuple(int(n) for n in np.broadcast_shapes(left.shape[:-2], right.shape[:-2]))
    left = np.broadcast_to(left, batch + left.shape[-2:])
    right = np.broadcast_to(right, batch + right.shape[-2:])
    rows, inner, cols = left.shape[-2], left.shape[-1], right.shape[-1]
    out = _objects(batch + (rows, cols))
    for at in np.ndindex(batch):
        for i in range(rows):
            for j in range(cols):
                out[at + (i, j)] = _sum_entries([left[at + (i, k)] * right[at + (k, j)] for k in range(inner)])
    if a.ndim == 1:
        out = out.reshape(out.shape[:-2] + out.shape[-1:])
    if b.ndim == 1:
        out = out.reshape(out.shape[:-1])
    return out


class matmul(TensorOp):  # noqa: N801
    """a @ b, numpy's and torch's matmul (1-D operands promoted, batch dimensions broadcast)."""

    label = "matmul"

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        return _matmul_shape(shapes[0], shapes[1], "matmul")

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        return _matmul_expand(*arrays)

    def scalar_form(self, shapes: list[tuple[int, ...]]) -> sympy.Expr | None:
        if len(shapes[0]) == len(shapes[1]) == 1:
            a, b = self.operands
            return tsum(a * b)
        return None

    def _sympystr(self, printer: Any) -> str:
        a, b = (printer.parenthesize(x, PRECEDENCE["Mul"], strict=False) for x in self.operands)
        return f"{a} @ {b}"


class dot(TensorOp):  # noqa: N801
    """numpy's dot: the inner product of two vectors; with a matrix operand, the matrix product."""

    label = "dot"

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        a, b = shapes
        if not (1 <= len(a) <= 2 and 1 <= len(b) <= 2):
            raise ShapeError(f"dot takes vectors and matrices (numpy's dot), not shapes {shown_shape(a)} and "
                             f"{shown_shape(b)}: for scalars use *, for more dimensions matmul or einsum")
        return _matmul_shape(a, b, "dot")

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        return _matmul_expand(*arrays)

    def scalar_form(self, shapes: list[tuple[int, ...]]) -> sympy.Expr | None:
        if len(shapes[0]) == len(shapes[1]) == 1:
            a, b = self.operands
            return tsum(a * b)
        return None


class transpose(TensorOp):  # noqa: N801
    """transpose(a, (i, j)) swaps dims i and j; transpose(a, ()) reverses every dim (a.T)."""

    label = "transpose"
    statics = 1

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        (a,), (dims,) = shapes, static
        if not dims:
            return a[::-1]
        i, j = (normalise_dim(d, a, "transpose") for d in dims)
        if not a:
            raise ShapeError("transpose(x, i, j) needs a tensor of 2 dimensions or more, not a scalar")
        out = list(a)
        out[i], out[j] = out[j], out[i]
        return tuple(out)

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        import numpy as np

        (a,), (dims,) = arrays, static
        return a.transpose() if not dims else np.swapaxes(a, dims[0], dims[1])

    def scalar_form(self, shapes: list[tuple[int, ...]]) -> sympy.Expr | None:
        (dims,) = self.static
        if len(shapes[0]) <= 1 and not dims:
            return self.operands[0]  # a vector's or a scalar's .T is itself
        return None

    def _sympystr(self, printer: Any) -> str:
        (dims,) = self.static
        a = printer.parenthesize(self.operands[0], PRECEDENCE["Atom"], strict=True)
        return f"{a}.T" if not dims else f"transpose({printer._print(self.operands[0])}, {dims[0]}, {dims[1]})"


class outer(TensorOp):  # noqa: N801
    """The outer product of two vectors: out[i, j] = a[i] * b[j]."""

    label = "outer"

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        a, b = shapes
        if len(a) != 1 or len(b) != 1:
            raise ShapeError(f"outer takes two vectors, not shapes {shown_shape(a)} and {shown_shape(b)}")
        return a + b

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        a, b = arrays
        out = _objects((len(a), len(b)))
        for i in range(len(a)):
            for j in range(len(b)):
                out[i, j] = a[i] * b[j]
        return out


# --------------------------------------------------------------------------- reductions over dims

def _reduce_entries(arr: Array, dims: tuple[int, ...], keepdim: bool, what: str,
                    combine: Callable[[list[sympy.Expr]], sympy.Expr]) -> Array:
    """combine() of the entries along `dims` (() = every dim), one result per other position."""
    import numpy as np

    shape = tuple(arr.shape)
    chosen = _chosen_dims(shape, dims, what)
    kept = [i for i in range(len(shape)) if i not in chosen]
    rows = np.transpose(arr, kept + list(chosen)).reshape(math.prod(shape[i] for i in kept), -1)
    out = _objects(tuple(shape[i] for i in kept))
    flat = out.reshape(-1)
    for k in range(rows.shape[0]):
        flat[k] = combine(list(rows[k]))
    if keepdim:
        out = out.reshape(reduced_shape(shape, dims, True, what))
    return out


def _along(arr: Array, dim: int, what: str, fn: Callable[[list[sympy.Expr]], list[sympy.Expr]]) -> Array:
    """fn() of each line of entries along dim, which keeps its length (softmax over a dim)."""
    import numpy as np

    d = normalise_dim(dim, tuple(arr.shape), what)
    if arr.ndim == 0:
        out = _objects(())
        out[()] = fn([arr[()]])[0]
        return out
    moved = np.moveaxis(arr, d, -1)
    out = _objects(moved.shape)
    lines, results = moved.reshape(-1, moved.shape[-1]), out.reshape(-1, moved.shape[-1])
    for k in range(lines.shape[0]):
        for j, value in enumerate(fn(list(lines[k]))):
            results[k, j] = value
    return np.moveaxis(out, -1, d)


class AxisReduction(TensorOp):
    """A reduction over chosen dims: operand x, statics (dims, keepdim); dims () means every dim."""

    statics = 2

    def combine(self, items: list[sympy.Expr], *parameters: Any) -> sympy.Expr:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        dims, keepdim = static[-2:]
        return reduced_shape(shapes[0], dims, bool(keepdim), cls.label)

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        *parameters, dims, keepdim = static
        return _reduce_entries(arrays[0], dims, bool(keepdim), self.label,
                               lambda items: self.combine(items, *parameters))

    parameter = ""  # the name of a static parameter before dims (norm's p, var's correction)
    shown_unless = 0  # its default, left out when printed

    def _sympystr(self, printer: Any) -> str:
        *parameters, dims, keepdim = self.static
        parts = [printer._print(self.operands[0])] + [f"{self.parameter}={p:g}" for p in parameters
                                                      if p != self.shown_unless]
        parts.append("dim=" + (str(dims[0]) if len(dims) == 1 else str(dims) if dims else "None"))
        if keepdim:
            parts.append("keepdim=True")
        return f"{self.label}({', '.join(parts)})"


class sum_dim(AxisReduction):  # noqa: N801
    label = "sum"

    def combine(self, items: list[sympy.Expr], *parameters: Any) -> sympy.Expr:
        return sympy.Add(*items)


class mean_dim(AxisReduction):  # noqa: N801
    label = "mean"

    def combine(self, items: list[sympy.Expr], *parameters: Any) -> sympy.Expr:
        return sympy.Add(*items) / len(items)


class prod_dim(AxisReduction):  # noqa: N801
    label = "prod"

    def combine(self, items: list[sympy.Expr], *parameters: Any) -> sympy.Expr:
        return sympy.Mul(*items)


class amax_dim(AxisReduction):  # noqa: N801
    label = "max"

    def combine(self, items: list[sympy.Expr], *parameters: Any) -> sympy.Expr:
        return sympy.Max(*items)


class amin_dim(AxisReduction):  # noqa: N801
    label = "min"

    def combine(self, items: list[sympy.Expr], *parameters: Any) -> sympy.Expr:
        return sympy.Min(*items)


class logsumexp_dim(AxisReduction):  # noqa: N801
    label = "logsumexp"

    def combine(self, items: list[sympy.Expr], *parameters: Any) -> sympy.Expr:
        return sympy.log(sympy.Add(*(sympy.exp(i) for i in items)))


class norm_dim(AxisReduction):  # noqa: N801
    """norm(x, p, dim=...): statics (p, dims, keepdim)."""

    label = "norm"
    statics = 3
    parameter, shown_unless = "p", 2

    def combine(self, items: list[sympy.Expr], *parameters: Any) -> sympy.Expr:
        (p,) = parameters
        if p == 2:
            return sympy.sqrt(sympy.Add(*(i**2 for i in items)))
        power = sympy.nsimplify(p)
        return sympy.Add(*(sympy.Abs(i) ** power for i in items)) ** (1 / power)


class var_dim(AxisReduction):  # noqa: N801
    """var(x, dim=..., correction=1): statics (correction, dims, keepdim), as torch.var."""

    label = "var"
    statics = 3
    parameter, shown_unless = "correction", 1

    def combine(self, items: list[sympy.Expr], *parameters: Any) -> sympy.Expr:
        (correction,) = parameters
        mean = sympy.Add(*items) / len(items)
        return sympy.Add(*((i - mean) ** 2 for i in items)) / (len(items) - sympy.nsimplify(correction))


class std_dim(var_dim):  # noqa: N801
    label = "std"

    def combine(self, items: list[sympy.Expr], *parameters: Any) -> sympy.Expr:
        return sympy.sqrt(super().combine(items, *parameters))


class softmax_dim(TensorOp):  # noqa: N801
    """softmax(x, dim=d): exp(x) / sum(exp(x)) along dim d; statics (dim,)."""

    label = "softmax"
    statics = 1

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        normalise_dim(static[0], shapes[0], cls.label)
        return shapes[0]

    def line(self, items: list[sympy.Expr]) -> list[sympy.Expr]:
        total = sympy.Add(*(sympy.exp(i) for i in items))
        return [sympy.exp(i) / total for i in items]

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        return _along(arrays[0], static[0], self.label, self.line)

    def _sympystr(self, printer: Any) -> str:
        return f"{self.label}({printer._print(self.operands[0])}, dim={self.static[0]})"


class log_softmax_dim(softmax_dim):  # noqa: N801
    label = "log_softmax"

    def line(self, items: list[sympy.Expr]) -> list[sympy.Expr]:
        total = sympy.log(sympy.Add(*(sympy.exp(i) for i in items)))
        return [i - total for i in items]


# --------------------------------------------------------------------------- building and rearranging

class einsum(TensorOp):  # noqa: N801
    """einsum("ij,j->i", A, x): operands, then the subscripts (validated by the parser) as a Str."""

    label = "einsum"
    statics = 1

    @staticmethod
    def terms(subscripts: str, count: int) -> tuple[list[str], str]:
        inputs, arrow, output = subscripts.partition("->")
        terms = inputs.split(",")
        if len(terms) != count:
            raise ShapeError(f"einsum's subscripts {subscripts!r} name {len(terms)} operand"
                             f"{'s' if len(terms) != 1 else ''}, but it is given {count}")
        if not arrow:  # numpy's and torch's rule: the letters that appear once, in alphabetical order
            letters = "".join(terms)
            output = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
        return terms, output

    @classmethod
    def sizes(cls, shapes: list[tuple[int, ...]], subscripts: str) -> tuple[dict[str, int], list[str], str]:
        terms, output = cls.terms(subscripts, len(shapes))
        size: dict[str, int] = {}
        for term, shape in zip(terms, shapes, strict=True):
            if len(term) != len(shape):
                raise ShapeError(f"einsum: the subscript {term!r} names {len(term)} dimensions, but its operand has "
                                 f"shape {shown_shape(shape)}")
            for letter, n in zip(term, shape, strict=True):
                if size.setdefault(letter, n) != n:
                    raise ShapeError(f"einsum: the letter {letter!r} stands for sizes {size[letter]} and {n} "
                                     f"(shapes {' and '.join(shown_shape(s) for s in shapes)})")
        return size, terms, output

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        size, _terms, output = cls.sizes(shapes, static[0])
        return tuple(size[c] for c in output)

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        import itertools

        size, terms, output = self.sizes([tuple(a.shape) for a in arrays], static[0])
        summed = [c for c in size if c not in output]
        out = _objects(tuple(size[c] for c in output))
        for at in itertools.product(*(range(size[c]) for c in output)):
            fixed = dict(zip(output, at, strict=True))
            products = []
            for rest in itertools.product(*(range(size[c]) for c in summed)):
                letters = {**fixed, **dict(zip(summed, rest, strict=True))}
                products.append(sympy.Mul(*(a[tuple(letters[c] for c in t)]
                                            for a, t in zip(arrays, terms, strict=True))))
            out[at] = _sum_entries(products)
        return out

    def _sympystr(self, printer: Any) -> str:
        parts = [repr(self.static[0])] + [printer._print(a) for a in self.operands]
        return f"einsum({', '.join(parts)})"


class diag(TensorOp):  # noqa: N801
    """torch.diag: a vector's diagonal matrix, or a matrix's diagonal."""

    label = "diag"

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        (a,) = shapes
        if len(a) == 1:
            return (a[0], a[0])
        if len(a) == 2:
            return (min(a),)
        raise ShapeError(f"diag takes a vector (its diagonal matrix) or a matrix (its diagonal), not shape "
                         f"{shown_shape(a)}")

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        (a,) = arrays
        if a.ndim == 1:
            out = _objects((len(a), len(a)))
            for i in range(len(a)):
                for j in range(len(a)):
                    out[i, j] = a[i] if i == j else sympy.S.Zero
            return out
        out = _objects((min(a.shape),))
        for i in range(min(a.shape)):
            out[i] = a[i, i]
        return out


class eye(TensorOp):  # noqa: N801
    """eye(n, m): the identity matrix, n by m (m = n by default); statics (n, m), no operand."""

    label = "eye"
    statics = 2

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        return (static[0], static[1])

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        n, m = static
        out = _objects((n, m))
        for i in range(n):
            for j in range(m):
                out[i, j] = sympy.S.One if i == j else sympy.S.Zero
        return out

    def _sympystr(self, printer: Any) -> str:
        n, m = self.static
        return f"eye({n})" if n == m else f"eye({n}, {m})"


class stack(TensorOp):  # noqa: N801
    """stack([a, b, ...], dim): tensors of one shape along a new dim; a list [a, b] in an
    expression is stack([a, b], dim=0). Statics (dim,)."""

    label = "stack"
    statics = 1

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        different = list(dict.fromkeys(shapes))
        if len(different) > 1:
            raise ShapeError(f"stack needs tensors of one shape, not {' and '.join(map(shown_shape, different[:2]))}")
        d = normalise_dim(static[0], shapes[0], "stack", extra=1)
        return shapes[0][:d] + (len(shapes),) + shapes[0][d:]

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        import numpy as np

        d = normalise_dim(static[0], tuple(arrays[0].shape), "stack", extra=1)
        return np.stack(arrays, axis=d)

    def _sympystr(self, printer: Any) -> str:
        items = ", ".join(printer._print(a) for a in self.operands)
        return f"[{items}]" if self.static[0] == 0 else f"stack([{items}], dim={self.static[0]})"


def decode_index(text: str) -> tuple[Any, ...]:
    """An index as getitem keeps it ("...,-1", ":,0", "1:3:2") as Python's: ints, slices, Ellipsis."""
    parts: list[Any] = []
    for part in text.split(","):
        if part == "...":
            parts.append(Ellipsis)
        elif ":" in part:
            parts.append(slice(*(int(p) if p else None for p in part.split(":"))))
        else:
            parts.append(int(part))
    return tuple(parts)


class getitem(TensorOp):  # noqa: N801
    """expr[index] with slices or ...: f(x)[1:3], x[..., -1]; statics (the index as text)."""

    label = "getitem"
    statics = 1

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        import numpy as np

        index = decode_index(static[0])
        try:  # numpy's basic indexing is torch's: a zero-stride view, nothing allocated
            return tuple(np.broadcast_to(np.empty((), dtype=bool), shapes[0])[index].shape)
        except IndexError as exc:
            raise ShapeError(f"[{static[0]}] does not fit shape {shown_shape(shapes[0])}: {exc}") from None

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        return as_object_array(arrays[0][decode_index(static[0])])

    def _sympystr(self, printer: Any) -> str:
        inner = printer._print(self.operands[0])
        return f"{inner}[{self.static[0]}]" if self.operands[0].is_Symbol else f"({inner})[{self.static[0]}]"


# --------------------------------------------------------------------------- linear algebra and class losses
# (issue 17, items 4 and 5): tensor operations (see TensorOp above), each with its shape rule and
# its rule on explicit arrays (`expand`), written from the definition with sympy.Matrix, never
# from torch. The matrix functions take one matrix (no batch dimensions).

# sympy.Matrix's exact det, inv and cholesky grow fast with n (det of n x n: n! terms at worst):
# the entry-by-entry check spells them out up to this size and says so beyond it.
LINEAR_ALGEBRA_EXPANSION_SIZE = 4


class ExpansionTooLarge(TensorDerivativeError):
    """A matrix too large to spell out: the check says so (as unavailable), never guesses."""

    def __str__(self) -> str:
        return self.message  # the check's note quotes it as is (an error's str begins "error: ")


def _matrix(a: Array) -> sympy.Matrix:
    if a.shape[0] > LINEAR_ALGEBRA_EXPANSION_SIZE:
        raise ExpansionTooLarge(f"det, inv, solve and cholesky are spelled out in sympy only up to "
                                f"{LINEAR_ALGEBRA_EXPANSION_SIZE} x {LINEAR_ALGEBRA_EXPANSION_SIZE} (their exact "
                                f"formulas grow as n!), not {a.shape[0]} x {a.shape[1]}")
    return sympy.Matrix(a.tolist())


def _array(m: sympy.Matrix) -> Array:
    out = _objects(tuple(m.shape))
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            out[i, j] = m[i, j]
    return out


def _square(shape: tuple[int, ...], what: str) -> int:
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ShapeError(f"{what} takes a square matrix, not shape {shown_shape(shape)}")
    return shape[0]


def _det(a: Array) -> sympy.Expr:
    return _matrix(a).det(method="berkowitz")  # no division: exact at a singular point too


class trace(TensorOp):  # noqa: N801
    """The sum of the diagonal of a matrix (torch.trace)."""

    label = "trace"

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        if len(shapes[0]) != 2:
            raise ShapeError(f"trace takes a matrix, not shape {shown_shape(shapes[0])}")
        return ()

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        (a,) = arrays
        return _sum_entries([a[i, i] for i in range(min(a.shape))])

    def scalar_form(self, shapes: list[tuple[int, ...]]) -> sympy.Expr | None:
        (a,), (n, m) = self.operands, shapes[0]
        return _sum_entries([tindex(a, sympy.Integer(i), sympy.Integer(i)) for i in range(min(n, m))])


class det(TensorOp):  # noqa: N801
    label = "det"

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        _square(shapes[0], "det")
        return ()

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        return _det(arrays[0])


class logdet(TensorOp):  # noqa: N801
    label = "logdet"

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        _square(shapes[0], "logdet")
        return ()

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        return sympy.log(_det(arrays[0]))


class logabsdet(TensorOp):  # noqa: N801
    """log|det(A)|: torch.linalg.slogdet(A).logabsdet."""

    label = "logabsdet"

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        _square(shapes[0], "logabsdet")
        return ()

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        return sympy.log(sympy.Abs(_det(arrays[0])))


class inv(TensorOp):  # noqa: N801
    label = "inv"

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        n = _square(shapes[0], "inv")
        return (n, n)

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        m = _matrix(arrays[0])
        return _array(m.adjugate() / m.det(method="berkowitz"))  # no pivot that could be 0 at the point


class solve(TensorOp):  # noqa: N801
    """x with A x = b, for b a vector or a matrix of right-hand sides (torch.linalg.solve)."""

    label = "solve"

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        a, b = shapes
        n = _square(a, "solve")
        if not 1 <= len(b) <= 2 or b[0] != n:
            raise ShapeError(f"solve(A, b): A has shape {shown_shape(a)}, so b is a vector of {n} or a matrix of "
                             f"{n} rows, not shape {shown_shape(b)}")
        return b

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        a, b = arrays
        m = _matrix(a)
        columns = sympy.Matrix(b.reshape(-1, 1).tolist() if b.ndim == 1 else b.tolist())
        x = _array(m.adjugate() * columns / m.det(method="berkowitz"))
        return x.reshape(-1) if b.ndim == 1 else x


class cholesky(TensorOp):  # noqa: N801
    """The lower-triangular L with L L^T = A, of a symmetric positive-definite A.

    torch reads A's lower triangle and returns a symmetric gradient: at a symmetric A that is
    the gradient of cholesky((A + A^T)/2), which is what is spelled out.
    """

    label = "cholesky"

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        n = _square(shapes[0], "cholesky")
        return (n, n)

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        m = _matrix(arrays[0])
        return _array(((m + m.T) / 2).cholesky(hermitian=False))


REDUCTION_NAMES = ("mean", "sum", "none")  # torch's reduction= of the class losses


def _class_shape(what: str, shapes: list[tuple[int, ...]], reduction: str) -> tuple[int, ...]:
    x, y = shapes
    if not ((len(x) == 2 and y == x[:1]) or (len(x) == 1 and y == ())):
        raise ShapeError(f"{what} takes scores of shape [N, C] (a row per sample) and N class indices, or [C] and "
                         f"one index, not shapes {shown_shape(x)} and {shown_shape(y)}")
    return y if reduction == "none" else ()


def _picked(row: list[sympy.Expr], label: sympy.Expr) -> sympy.Expr:
    """row[label]: the entry itself for a number; for a label that is differentiated (a symbol),
    a one-hot sum, whose derivative in the label is 0 as a step function's."""
    if label.is_number:
        return row[int(label)]
    return _sum_entries([sympy.Piecewise((v, sympy.Eq(label, c)), (0, True)) for c, v in enumerate(row)])


def _per_sample(x: Array, y: Array, loss: Any, reduction: str) -> Array:
    rows = [list(r) for r in x.reshape(-1, x.shape[-1]).tolist()]
    losses = [loss(row, t) for row, t in zip(rows, y.reshape(-1).tolist(), strict=True)]
    if reduction == "none":
        out = _objects(y.shape)
        for i, v in enumerate(losses):
            out[(i,) if y.shape else ()] = v
        return out
    total = _sum_entries(losses)
    return total / len(losses) if reduction == "mean" else total


def _class_loss_text(node: TensorOp, printer: Any) -> str:
    x, y = (printer._print(a) for a in node.operands)
    (reduction,) = node.static
    return f"{node.label}({x}, {y}" + ("" if reduction == "mean" else f', reduction="{reduction}"') + ")"


class cross_entropy(TensorOp):  # noqa: N801
    """F.cross_entropy(z, y, reduction=...): z a row of logits per sample, y a class index per sample."""

    label = "cross_entropy"
    statics = 1  # reduction, one of REDUCTION_NAMES

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        return _class_shape("cross_entropy", shapes, static[0])

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        def loss(row: list[sympy.Expr], label: sympy.Expr) -> sympy.Expr:
            return sympy.log(_sum_entries([sympy.exp(v) for v in row])) - _picked(row, label)
        x, y = arrays
        return _per_sample(x, y, loss, static[0])

    def _sympystr(self, printer: Any) -> str:
        return _class_loss_text(self, printer)


class nll_loss(TensorOp):  # noqa: N801
    """F.nll_loss(logp, y, reduction=...): minus each sample's log-probability of its class."""

    label = "nll_loss"
    statics = 1

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        return _class_shape("nll_loss", shapes, static[0])

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        x, y = arrays
        return _per_sample(x, y, lambda row, label: -_picked(row, label), static[0])

    def _sympystr(self, printer: Any) -> str:
        return _class_loss_text(self, printer)


class linear(TensorOp):  # noqa: N801
    """x @ W.T + b, as nn.Linear computes it (F.linear): W has a row per output, b one entry per output."""

    label = "linear"

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        x, weight = shapes[:2]
        if len(weight) != 2 or not x or x[-1] != weight[1]:
            raise ShapeError(f"linear(x, W, b) is x @ W.T + b: W of shape [out, in] and x of shape [..., in], "
                             f"not shapes {shown_shape(x)} and {shown_shape(weight)}")
        if len(shapes) > 2 and shapes[2] not in ((), (weight[0],)):
            raise ShapeError(f"linear(x, W, b): b has one entry per output ({weight[0]}), not shape "
                             f"{shown_shape(shapes[2])}")
        return x[:-1] + weight[:1]

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        import numpy as np

        out = _matmul_expand(arrays[0], arrays[1].transpose())
        return np.add(out, arrays[2], dtype=object) if len(arrays) > 2 else out


MATRIX_NORMS = ("fro", "nuc")  # torch.linalg.matrix_norm's ord= names that gradcli takes


class matrix_norm(TensorOp):  # noqa: N801
    """torch.linalg.matrix_norm(A, ord): "fro" the 2-norm of every element, "nuc" the sum of the
    singular values. The nuclear norm is spelled out where the smaller side is at most 2: with
    G = A A^T (or A^T A) of size 2, sigma_1 + sigma_2 = sqrt(trace(G) + 2 sqrt(det(G)))."""

    label = "matrix_norm"
    statics = 1  # ord, one of MATRIX_NORMS

    @classmethod
    def shape(cls, shapes: list[tuple[int, ...]], *static: Any) -> tuple[int, ...]:
        if len(shapes[0]) != 2:
            raise ShapeError(f"matrix_norm takes a matrix, not shape {shown_shape(shapes[0])}")
        return ()

    def expand(self, arrays: list[Array], *static: Any) -> Array:
        (a,), (order,) = arrays, static
        squares = _sum_entries([v**2 for v in a.reshape(-1).tolist()])
        if order == "fro" or min(a.shape) == 1:  # one singular value: the Frobenius norm
            return sympy.sqrt(squares)
        if min(a.shape) > 2:
            raise ExpansionTooLarge(f"the nuclear norm is spelled out in sympy only for a matrix with a side of 2 "
                                    f"or less (its singular values in closed form), not {a.shape[0]} x {a.shape[1]}")
        m = sympy.Matrix(a.tolist())
        gram = m * m.T if a.shape[0] <= a.shape[1] else m.T * m
        return sympy.sqrt(squares + 2 * sympy.sqrt(gram.det(method="berkowitz")))

    def _sympystr(self, printer: Any) -> str:
        (order,) = self.static
        text = printer._print(self.operands[0])
        return f"matrix_norm({text})" if order == "fro" else f'matrix_norm({text}, ord="{order}")'
