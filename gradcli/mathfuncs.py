"""Sympy definitions of what sympy lacks: ML activations, a real cube root, and tensor reductions.

Each function carries its own derivative (`fdiff`), so the symbolic cross-check never asks
torch how to differentiate it. `lower.py` maps each one to the torch function a user would call.
"""

from __future__ import annotations

import sympy


class sigmoid(sympy.Function):  # noqa: N801 - the name is what users type and what sympy prints
    """The logistic function 1/(1 + exp(-x))."""

    is_real = True

    @classmethod
    def eval(cls, arg):
        if arg.is_Number:
            return 1 / (1 + sympy.exp(-arg))
        return None

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return 1 / (1 + sympy.exp(-arg))


class relu(sympy.Function):  # noqa: N801
    """max(0, x). Its derivative at 0 does not exist; torch uses 0 there."""

    is_real = True

    @classmethod
    def eval(cls, arg):
        if arg.is_Number:
            return sympy.Max(0, arg)
        return None

    def fdiff(self, argindex=1):
        return sympy.Heaviside(self.args[0])


class softplus(sympy.Function):  # noqa: N801
    """log(1 + exp(x)), as torch.nn.functional.softplus with beta=1."""

    is_real = True

    @classmethod
    def eval(cls, arg):
        if arg.is_Number:
            return sympy.log(1 + sympy.exp(arg))
        return None

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])


class cbrt(sympy.Function):  # noqa: N801
    """The real cube root: cbrt(-8) = -2 (sympy's own cbrt is the principal, complex root)."""

    is_real = True

    @classmethod
    def eval(cls, arg):
        if arg.is_Number and arg.is_real:
            return sympy.sign(arg) * sympy.Abs(arg) ** sympy.Rational(1, 3)
        return None

    def fdiff(self, argindex=1):
        return 1 / (3 * cbrt(self.args[0]) ** 2)


class Reduction(sympy.Function):
    """A reduction of a tensor-valued expression to a scalar.

    Sympy sees an opaque scalar function of an expression; the cross-check differentiates
    through it by the chain rule (verify.py), since sympy has no notion of tensor shapes.
    """

    is_real = True

    @classmethod
    def eval(cls, arg):
        # The reduction of a constant is that constant: it has no shape to reduce over.
        if not arg.free_symbols:
            return arg
        return None

    def fdiff(self, argindex=1):  # pragma: no cover - verify.py never asks sympy for this
        raise NotImplementedError("reductions are differentiated by the chain rule in verify.py")


class tsum(Reduction):  # noqa: N801
    """sum(expr): the sum of every element."""

    def _sympystr(self, printer):
        return f"sum({printer._print(self.args[0])})"


class tmean(Reduction):  # noqa: N801
    """mean(expr): the mean of every element."""

    def _sympystr(self, printer):
        return f"mean({printer._print(self.args[0])})"


REDUCTIONS = (tsum, tmean)
