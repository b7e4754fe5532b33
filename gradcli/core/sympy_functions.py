"""Sympy definitions of what sympy lacks: ML activations, a real cube root, and tensor reductions.

Each function carries its own derivative (`fdiff`), so the symbolic cross-check never asks
torch how to differentiate it. The registry (functions.py) names the torch function a user would call.
"""

from __future__ import annotations

from typing import Any, cast

import sympy


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
        # The reduction of a constant is that constant: it has no shape to reduce over.
        if not arg.free_symbols:
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
        if not arg.free_symbols:
            return arg  # a constant has the same value at every index
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


class dot(Defined):  # noqa: N801
    nargs = 2

    def definition(self) -> sympy.Expr:
        a, b = self.args
        return tsum(a * b)


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


# --------------------------------------------------------------------------- linear algebra and class losses
# (issue 17, items 4 and 5). Each node says how to spell itself out on explicit arrays of sympy
# scalars (`spelled`): the small-shape check expands every variable into one symbol per element
# and differentiates the result entry by entry, exactly, with none of torch's code.

def _matrix(a: Any) -> sympy.Matrix:
    import numpy as np

    arr = np.asarray(a, dtype=object)
    if arr.ndim != 2:
        raise ValueError(f"a matrix is 2-D, not of shape {list(arr.shape)}")
    return sympy.Matrix(arr.tolist())


def _array(m: sympy.Matrix) -> Any:
    import numpy as np

    out = np.empty(m.shape, dtype=object)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            out[i, j] = m[i, j]
    return out


class LinearAlgebra(sympy.Function):
    """A function of matrices: opaque to sympy's scalar calculus, spelled out entry by entry
    on explicit arrays for the check (`spelled`)."""

    is_real = True
    shown = ""

    @staticmethod
    def spelled(*args: Any) -> Any:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _sympystr(self, printer: Any) -> str:
        return f"{self.shown}({', '.join(printer._print(a) for a in self.args)})"


class trace(LinearAlgebra):  # noqa: N801
    nargs = 1
    shown = "trace"

    @staticmethod
    def spelled(a: Any) -> Any:
        return _matrix(a).trace()


class det(LinearAlgebra):  # noqa: N801
    nargs = 1
    shown = "det"

    @staticmethod
    def spelled(a: Any) -> Any:
        return _matrix(a).det(method="berkowitz")  # no division: exact at singular points too


class logdet(LinearAlgebra):  # noqa: N801
    nargs = 1
    shown = "logdet"

    @staticmethod
    def spelled(a: Any) -> Any:
        return sympy.log(_matrix(a).det(method="berkowitz"))


class logabsdet(LinearAlgebra):  # noqa: N801
    """log|det(A)|: torch.linalg.slogdet(A).logabsdet."""

    nargs = 1
    shown = "logabsdet"

    @staticmethod
    def spelled(a: Any) -> Any:
        return sympy.log(sympy.Abs(_matrix(a).det(method="berkowitz")))


class inv(LinearAlgebra):  # noqa: N801
    nargs = 1
    shown = "inv"

    @staticmethod
    def spelled(a: Any) -> Any:
        m = _matrix(a)
        return _array(m.adjugate() / m.det(method="berkowitz"))  # no pivot that could be 0 at the point


class solve(LinearAlgebra):  # noqa: N801
    """x with A x = b, for b a vector or a matrix of right-hand sides (torch.linalg.solve)."""

    nargs = 2
    shown = "solve"

    @staticmethod
    def spelled(a: Any, b: Any) -> Any:
        import numpy as np

        m = _matrix(a)
        rhs = np.asarray(b, dtype=object)
        columns = sympy.Matrix(rhs.reshape(-1, 1).tolist() if rhs.ndim == 1 else rhs.tolist())
        x = m.adjugate() * columns / m.det(method="berkowitz")
        return np.asarray([x[i, 0] for i in range(x.shape[0])], dtype=object) if rhs.ndim == 1 else _array(x)


class cholesky(LinearAlgebra):  # noqa: N801
    """The lower-triangular L with L L^T = A, of a symmetric positive-definite A.

    torch reads A's lower triangle and returns a symmetric gradient: at a symmetric A that is
    the gradient of cholesky((A + A^T)/2), which is what is spelled out.
    """

    nargs = 1
    shown = "cholesky"

    @staticmethod
    def spelled(a: Any) -> Any:
        m = _matrix(a)
        return _array(((m + m.T) / 2).cholesky(hermitian=False))


REDUCTION_NAMES = ("mean", "sum", "none")  # torch's reduction=, by the code a class loss node holds


def _reduced(per_sample: list[sympy.Expr], shape: tuple[int, ...], code: sympy.Expr) -> Any:
    import numpy as np

    name = REDUCTION_NAMES[int(code)]
    if name == "none":
        out = np.empty(shape, dtype=object)
        for i, v in enumerate(per_sample):
            out[np.unravel_index(i, shape) if shape else ()] = v
        return out
    total = sympy.Add(*per_sample)
    return total / len(per_sample) if name == "mean" else total


def _picked(row: list[sympy.Expr], label: sympy.Expr) -> sympy.Expr:
    """row[label]: the entry itself for a number, a one-hot sum for a symbol (a label that is
    differentiated: its derivative is 0, as a step function's)."""
    if label.is_number:
        return row[int(label)]
    return sympy.Add(*(sympy.Piecewise((v, sympy.Eq(label, c)), (0, True)) for c, v in enumerate(row)))


def _rows(x: Any, target: Any) -> tuple[list[list[sympy.Expr]], list[sympy.Expr], tuple[int, ...]]:
    import numpy as np

    scores = np.asarray(x, dtype=object)
    labels = np.asarray(target, dtype=object)
    rows = [list(r) for r in scores.reshape(-1, scores.shape[-1]).tolist()]
    return rows, labels.reshape(-1).tolist(), tuple(labels.shape)


class cross_entropy(LinearAlgebra):  # noqa: N801
    """F.cross_entropy(logits, target, reduction=...): logits a row of class scores per sample,
    target one class index per sample; reduction a code into REDUCTION_NAMES."""

    nargs = 3
    shown = "cross_entropy"

    @staticmethod
    def spelled(logits: Any, target: Any, code: Any) -> Any:
        rows, labels, shape = _rows(logits, target)
        losses = [sympy.log(sympy.Add(*(sympy.exp(v) for v in row))) - _picked(row, t)
                  for row, t in zip(rows, labels, strict=True)]
        return _reduced(losses, shape, code)

    def _sympystr(self, printer: Any) -> str:
        return _class_loss_text(self, printer)


class nll_loss(LinearAlgebra):  # noqa: N801
    """F.nll_loss(log_probabilities, target, reduction=...): minus the picked log-probability."""

    nargs = 3
    shown = "nll_loss"

    @staticmethod
    def spelled(log_probabilities: Any, target: Any, code: Any) -> Any:
        rows, labels, shape = _rows(log_probabilities, target)
        return _reduced([-_picked(row, t) for row, t in zip(rows, labels, strict=True)], shape, code)

    def _sympystr(self, printer: Any) -> str:
        return _class_loss_text(self, printer)


def _class_loss_text(node: LinearAlgebra, printer: Any) -> str:
    x, t, code = node.args
    name = REDUCTION_NAMES[int(code)]
    extra = "" if name == "mean" else f", reduction=\"{name}\""
    return f"{node.shown}({printer._print(x)}, {printer._print(t)}{extra})"
