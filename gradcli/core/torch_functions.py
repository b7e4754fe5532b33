"""Torch implementations of the registry's functions that torch has under no single name.

The registry (functions.py) names each function's torch implementation as text ("torch.sin",
"F.softplus", "tf.sech" for one of these), so that it can be read without importing torch:
`gradcli diff` and `gradcli functions` never need it. The lowering resolves the names once.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import SupportsFloat, cast

import torch

from gradcli.errors import GradcliError

F = torch.nn.functional

Unary = Callable[[torch.Tensor], torch.Tensor]


def _recip(fn: Unary) -> Unary:
    return lambda x: torch.reciprocal(fn(x))


def _of_recip(fn: Unary) -> Unary:
    return lambda x: fn(torch.reciprocal(x))


cot = _recip(torch.tan)
sec = _recip(torch.cos)
csc = _recip(torch.sin)
coth = _recip(torch.tanh)
acot = _of_recip(torch.atan)
asec = _of_recip(torch.acos)
acsc = _of_recip(torch.asin)
acoth = _of_recip(torch.atanh)
asech = _of_recip(torch.acosh)
acsch = _of_recip(torch.asinh)


def sech(x: torch.Tensor) -> torch.Tensor:
    # 1/cosh(x) overflows to 0 with a NaN gradient beyond |x| ~ 710; this form does not.
    e = torch.exp(-torch.abs(x))
    return 2 * e / (1 + e * e)


def csch(x: torch.Tensor) -> torch.Tensor:
    e = torch.exp(-torch.abs(x))
    return torch.sign(x) * 2 * e / (1 - e * e)


def gamma(x: torch.Tensor) -> torch.Tensor:
    # torch has lgamma = log|Γ(x)| but no Γ: put the sign back. For x < 0, Γ(x) < 0 exactly
    # when floor(-x) is even; floor carries no gradient, so autograd differentiates exp(lgamma).
    negative = torch.remainder(torch.floor(-x), 2) == 0
    sign = torch.where((x < 0) & negative, -1.0, 1.0).to(x.dtype)
    return sign * torch.exp(torch.lgamma(x))


def polygamma(n: int, x: torch.Tensor) -> torch.Tensor:
    # n arrives as a Python int (the registry marks it a plain number): digamma for n = 0,
    # as a person would write it.
    return torch.digamma(x) if n == 0 else torch.polygamma(n, x)


def sinc(x: torch.Tensor) -> torch.Tensor:
    # sympy's sinc is sin(x)/x; torch.sinc is the normalised sin(pi x)/(pi x).
    return torch.sinc(x / math.pi)


def dsinc(x: torch.Tensor) -> torch.Tensor:
    # (x cos x - sin x)/x**2 cancels to noise near 0: there, its Taylor series.
    x2 = x * x
    series = -x / 3 + x * x2 / 30 - x * x2 * x2 / 840 + x * x2 * x2 * x2 / 45360
    safe = torch.where(x == 0, torch.ones_like(x), x)
    exact = (safe * torch.cos(safe) - torch.sin(safe)) / (safe * safe)
    return torch.where(torch.abs(x) < 1e-2, series, exact)


def cbrt(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.abs(x).pow(1.0 / 3.0)


def maximum(*xs: torch.Tensor) -> torch.Tensor:
    """max(a, b, c, ...): torch.maximum pairwise, left to right, as a person nests it."""
    return functools.reduce(torch.maximum, xs)


def minimum(*xs: torch.Tensor) -> torch.Tensor:
    return functools.reduce(torch.minimum, xs)


# --------------------------------------------------------------------------- kinks

class _KinkDraws:
    """Where a slope at a kink is drawn from (None: it is NaN).

    The slope of abs, relu, max or min at its kink is any value between its one-sided
    slopes; a first derivative is multilinear in those slopes. Evaluated twice with slopes
    drawn at random, it gives the same value only if that value does not depend on them:
    then the derivative exists there (x*abs(x) and relu(x)**2 at 0: both 0). See
    reference.symbolic_gradients.
    """

    generator: torch.Generator | None = None


@contextmanager
def kink_draws(seed: int) -> Iterator[None]:
    """Within the block, slopes at kinks are drawn from a generator seeded with `seed`."""
    _KinkDraws.generator = torch.Generator().manual_seed(seed)
    try:
        yield
    finally:
        _KinkDraws.generator = None


def _at_kink(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """The slope where x == 0: NaN, or drawn uniformly between the one-sided slopes."""
    if _KinkDraws.generator is None:
        return torch.full_like(x, math.nan)
    return low + (high - low) * torch.rand(x.shape, generator=_KinkDraws.generator, dtype=x.dtype, device=x.device)


def heaviside(x: torch.Tensor, *_h0: object) -> torch.Tensor:
    # Only symbolic derivatives contain Heaviside (of relu, max, min). At 0 the derivative it
    # stands for does not exist: NaN there makes the check say so instead of comparing.
    return torch.where(x > 0, 1.0, torch.where(x < 0, 0.0, _at_kink(x, 0.0, 1.0))).to(x.dtype)


def dirac_delta(x: torch.Tensor, *_order: object) -> torch.Tensor:
    return torch.where(x == 0, math.nan, 0.0).to(x.dtype)


# Symbolic derivatives only (sympy_functions.Slope): NaN where the derivative does not exist.
def abs_slope(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x == 0, _at_kink(x, -1.0, 1.0), torch.sign(x)).to(x.dtype)


def step_slope(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x == torch.floor(x), math.nan, 0.0).to(x.dtype)


# --------------------------------------------------------------------------- tensors

def _broadcast_pair(name: str, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """a and b broadcast together, as the loss's formula does; refused where that makes a shape
    neither has: a column [N, 1] against N targets is N x N pairs, a silent wrong loss (torch's
    binary_cross_entropy refuses it, mse_loss warns "this will likely lead to incorrect results")."""
    x, y = torch.broadcast_tensors(a, b)  # type: ignore[no-untyped-call]  # torch leaves it unannotated
    if x.shape != a.shape and x.shape != b.shape:
        raise GradcliError(f"{name}: its arguments have shapes {list(a.shape)} and {list(b.shape)}, which broadcast "
                           f"to {list(x.shape)}: every prediction paired with every target",
                           hint="give both one shape: a column [N, 1] is [N] as x[:, 0] (the seeds' .squeeze())")
    return x, y


def _pairwise(loss: Callable[..., torch.Tensor], name: str) -> Callable[..., torch.Tensor]:
    """torch's losses warn when shapes differ; broadcast first, as the formula does."""
    return lambda a, b, *rest: loss(*_broadcast_pair(name, a, b), *(float(r) for r in rest))


mse = _pairwise(F.mse_loss, "mse")
l1 = _pairwise(F.l1_loss, "l1")
bce = _pairwise(F.binary_cross_entropy, "bce")
bce_logits = _pairwise(F.binary_cross_entropy_with_logits, "bce_logits")


def huber(a: torch.Tensor, b: torch.Tensor, delta: SupportsFloat = 1.0) -> torch.Tensor:
    return F.huber_loss(*_broadcast_pair("huber", a, b), delta=float(delta))


def norm(x: torch.Tensor, p: SupportsFloat = 2) -> torch.Tensor:
    return cast(torch.Tensor, torch.linalg.vector_norm(x, ord=float(p)))  # torch.linalg's functions are Any


def logsumexp(x: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(x.reshape(-1), 0)


def _over_all(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> Unary:
    """softmax and friends over every element (a vector), keeping the input's shape."""
    return lambda x: fn(x.reshape(-1), 0).reshape(x.shape)


softmax = _over_all(torch.softmax)
log_softmax = _over_all(torch.log_softmax)


def leaky_relu(x: torch.Tensor, slope: SupportsFloat = 0.01) -> torch.Tensor:
    return F.leaky_relu(x, negative_slope=float(slope))


# --------------------------------------------------------------------------- tensor operations
# Each takes its operands (tensors), then its static arguments as Python values (see
# sympy_functions.TensorOp); the shapes were checked before (core/shapes.py).

def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """numpy's dot: torch.dot for two vectors, the matrix product when an operand is a matrix."""
    if a.dim() == 1 and b.dim() == 1:
        return torch.dot(a, b)
    return torch.matmul(a, b)


def transpose(a: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """a.T (every dim reversed, as numpy's; torch's .T warns beyond 2 dims), or dims swapped."""
    if not dims:
        return a.permute(*reversed(range(a.dim())))
    return torch.transpose(a, dims[0], dims[1])


def _dims(x: torch.Tensor, dims: tuple[int, ...]) -> tuple[int, ...]:
    """torch's dim= for statics' dims: () means every dim."""
    return dims if dims else tuple(range(x.dim()))


def sum_dim(x: torch.Tensor, dims: tuple[int, ...], keepdim: int) -> torch.Tensor:
    return torch.sum(x, dim=_dims(x, dims), keepdim=bool(keepdim))


def mean_dim(x: torch.Tensor, dims: tuple[int, ...], keepdim: int) -> torch.Tensor:
    return torch.mean(x, dim=_dims(x, dims), keepdim=bool(keepdim))


def prod_dim(x: torch.Tensor, dims: tuple[int, ...], keepdim: int) -> torch.Tensor:
    # torch.prod takes one dim at a time: the highest first, so the others keep their numbers
    for d in sorted((d % max(x.dim(), 1) for d in _dims(x, dims)), reverse=True):
        x = torch.prod(x, d, keepdim=bool(keepdim))
    return x


def amax_dim(x: torch.Tensor, dims: tuple[int, ...], keepdim: int) -> torch.Tensor:
    return torch.amax(x, dim=_dims(x, dims), keepdim=bool(keepdim))


def amin_dim(x: torch.Tensor, dims: tuple[int, ...], keepdim: int) -> torch.Tensor:
    return torch.amin(x, dim=_dims(x, dims), keepdim=bool(keepdim))


def logsumexp_dim(x: torch.Tensor, dims: tuple[int, ...], keepdim: int) -> torch.Tensor:
    return torch.logsumexp(x, dim=_dims(x, dims), keepdim=bool(keepdim))


def norm_dim(x: torch.Tensor, p: float, dims: tuple[int, ...], keepdim: int) -> torch.Tensor:
    return cast(torch.Tensor, torch.linalg.vector_norm(x, ord=p, dim=_dims(x, dims), keepdim=bool(keepdim)))


def var_dim(x: torch.Tensor, correction: float, dims: tuple[int, ...], keepdim: int) -> torch.Tensor:
    return torch.var(x, dim=_dims(x, dims), correction=correction, keepdim=bool(keepdim))


def std_dim(x: torch.Tensor, correction: float, dims: tuple[int, ...], keepdim: int) -> torch.Tensor:
    return torch.std(x, dim=_dims(x, dims), correction=correction, keepdim=bool(keepdim))


def softmax_dim(x: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.softmax(x, dim)


def log_softmax_dim(x: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.log_softmax(x, dim)


def einsum(*args: torch.Tensor | str) -> torch.Tensor:
    *operands, subscripts = args
    return torch.einsum(cast(str, subscripts), *operands)


def eye(n: int, m: int, *, dtype: torch.dtype, device: torch.device | None) -> torch.Tensor:
    return torch.eye(n, m, dtype=dtype, device=device)


def stack(*args: torch.Tensor | int) -> torch.Tensor:
    *tensors, dim = args
    return torch.stack(cast(list[torch.Tensor], tensors), dim=cast(int, dim))


def getitem(x: torch.Tensor, index: str) -> torch.Tensor:
    from gradcli.core.sympy_functions import decode_index

    return x[decode_index(index)]


# --------------------------------------------------------------------------- linear algebra and class losses
# (issue 17, items 4 and 5)

# torch.linalg raises it for a singular or non-positive-definite matrix (a RuntimeError);
# its stub does not export the name.
_LinAlgError: type[RuntimeError] = getattr(torch.linalg, "LinAlgError")  # noqa: B009


class MatrixInputError(ValueError):
    """A matrix the function is not defined at (singular, not positive definite, not symmetric),
    or a label that is no class index.

    Raised by the functions below, which see tensors only: the lowering names the argument as
    the user wrote it (`named`), so the message reads "inv: A is singular (det = 0)".
    """

    def __init__(self, function: str, problem: str, argument: int = 0, hint: str | None = None):
        self.function, self.problem, self.argument, self.hint = function, problem, argument, hint
        super().__init__(self.named("the matrix" if argument == 0 else "the target"))

    def named(self, text: str) -> str:
        return f"{self.function}: {text} {self.problem}"


def _is_symmetric(a: torch.Tensor) -> bool:
    """Symmetric up to a few roundings (X @ X.T computed in float32 need not be exactly)."""
    scale = torch.amax(torch.abs(a)).item()
    tolerance = 16 * torch.finfo(a.dtype).eps * max(scale, torch.finfo(a.dtype).tiny)
    return bool(torch.amax(torch.abs(a - a.mT)).item() <= tolerance)


def _finite(a: torch.Tensor) -> bool:
    return bool(torch.isfinite(a).all())


def trace(a: torch.Tensor) -> torch.Tensor:
    return torch.trace(a)


def det(a: torch.Tensor) -> torch.Tensor:
    return cast(torch.Tensor, torch.linalg.det(a))


def logdet(a: torch.Tensor) -> torch.Tensor:
    out = torch.logdet(a)
    if not _finite(out) and _finite(a):
        # torch gives -inf for a singular matrix and NaN for a negative determinant: at a
        # point where logdet is not defined, say so rather than differentiate it.
        if bool((out == -math.inf).any()):
            raise MatrixInputError("logdet", "is singular (det = 0)")
        raise MatrixInputError("logdet", "has a negative determinant: logdet is not real there",
                               hint="logabsdet(A) is log|det(A)|, torch.linalg.slogdet(A).logabsdet")
    return out


def logabsdet(a: torch.Tensor) -> torch.Tensor:
    out = cast(torch.Tensor, torch.linalg.slogdet(a).logabsdet)
    if bool((out == -math.inf).any()) and _finite(a):
        raise MatrixInputError("logabsdet", "is singular (det = 0)")
    return out


def inv(a: torch.Tensor) -> torch.Tensor:
    try:
        return cast(torch.Tensor, torch.linalg.inv(a))
    except _LinAlgError:
        raise MatrixInputError("inv", "is singular (det = 0)") from None


def solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    try:
        return cast(torch.Tensor, torch.linalg.solve(a, b))
    except _LinAlgError:
        raise MatrixInputError("solve", "is singular (det = 0): A x = b has no unique solution") from None


_POSITIVE_DEFINITE = "cholesky(A) needs a symmetric positive-definite A, like X @ X.T + eye(n)"


# True while finite differences evaluate f at points moved off the user's values (core/numeric.py):
# a move along one entry of a symmetric matrix makes it unsymmetric, which is no fault of the input.
PROBING: ContextVar[bool] = ContextVar("PROBING", default=False)


def cholesky(a: torch.Tensor) -> torch.Tensor:
    # torch reads the lower triangle only and returns a symmetrised gradient: the derivative
    # of cholesky((A + A.T)/2), which is cholesky(A) only where A is symmetric. Computed on
    # (A + A.T)/2, so finite differences (which move one entry at a time) see that function.
    if _finite(a) and not PROBING.get() and not _is_symmetric(a):
        raise MatrixInputError("cholesky", "is not symmetric", hint=_POSITIVE_DEFINITE)
    try:
        return cast(torch.Tensor, torch.linalg.cholesky((a + a.mT) / 2))
    except _LinAlgError:
        raise MatrixInputError("cholesky", "is not positive definite", hint=_POSITIVE_DEFINITE) from None


def class_indices(target: torch.Tensor, classes: int, function: str) -> torch.Tensor:
    """Float class labels (every gradcli value is floating point) as torch's int64 indices."""
    whole = torch.round(target)
    if not bool((whole == target).all()):
        bad = target[whole != target].reshape(-1)[0].item()
        raise MatrixInputError(function, f"holds {bad:g}, not a class index (0, 1, ..., {classes - 1})", 1)
    outside = (target < 0) | (target >= classes)
    if bool(outside.any()):
        raise MatrixInputError(function, f"holds {target[outside].reshape(-1)[0].item():g}: the classes are 0 to "
                                         f"{classes - 1}", 1)
    return whole.to(torch.int64)


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    return F.cross_entropy(logits, class_indices(target, logits.shape[-1], "cross_entropy"), reduction=reduction)


def nll_loss(log_probabilities: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    return F.nll_loss(log_probabilities, class_indices(target, log_probabilities.shape[-1], "nll_loss"),
                      reduction=reduction)


def matrix_norm(a: torch.Tensor, order: str = "fro") -> torch.Tensor:
    return cast(torch.Tensor, torch.linalg.matrix_norm(a, ord=order))
