"""Sympy to torch: one lowering table owned by this project, and values made into tensors.

Why not `sympy.lambdify(modules="torch")`: it maps `Max` to the reduction `torch.max` and hands
torch functions bare Python floats (sympy issues 28076, 28457). Here every sympy node type has
one entry in `_FUNCTIONS` or a case in `_Lowerer`; an unknown node is a `LoweringError` naming it.

Constant subtrees are folded to Python numbers. Torch treats a Python number as a "wrapped
number" that adopts the tensor's dtype and device and is applied at the op's internal precision,
exactly as in PyTorch code written by hand: with float16 inputs, `0.65*mse` then gives the
seed's 4.6015625, where a float16 tensor constant would give 4.5977. Torch functions never see
a bare number: a subtree with no variable in it is folded before it reaches one.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, Mapping

import numpy as np
import sympy
import torch

from gradcli.core import sympy_functions
from gradcli.core.parse import ValueSpec, as_python_index, index_text
from gradcli.errors import GradcliError

SymbolTable = Mapping[sympy.Symbol, tuple[str, "tuple[int, ...] | None"]]
Env = Mapping[str, torch.Tensor]
Compiled = Callable[[Env], "torch.Tensor | float | int"]


class LoweringError(GradcliError):
    """A sympy node with no torch counterpart."""


DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}


# --------------------------------------------------------------------------- the table

def _recip(fn):
    return lambda x: torch.reciprocal(fn(x))


def _of_recip(fn):
    return lambda x: fn(torch.reciprocal(x))


def _gamma(x: torch.Tensor) -> torch.Tensor:
    # torch has lgamma = log|Γ(x)| but no Γ: put the sign back. For x < 0, Γ(x) < 0 exactly
    # when floor(-x) is even; floor carries no gradient, so autograd differentiates exp(lgamma).
    negative = torch.remainder(torch.floor(-x), 2) == 0
    sign = torch.where((x < 0) & negative, -1.0, 1.0).to(x.dtype)
    return sign * torch.exp(torch.lgamma(x))


class _KinkDraws:
    """Where a slope at a kink is drawn from (None: it is NaN).

    The slope of abs, relu, max or min at its kink is any value between its one-sided
    slopes; a first derivative is multilinear in those slopes. Evaluated twice with slopes
    drawn at random, it gives the same value only if that value does not depend on them:
    then the derivative exists there (x*abs(x) and relu(x)**2 at 0: both 0). See
    verify.symbolic_gradients.
    """

    generator: torch.Generator | None = None


@contextmanager
def kink_draws(seed: int):
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


def _heaviside(x: torch.Tensor, *_h0) -> torch.Tensor:
    # Only symbolic derivatives contain Heaviside (of relu, max, min). At 0 the derivative it
    # stands for does not exist: NaN there makes the check say so instead of comparing.
    return torch.where(x > 0, 1.0, torch.where(x < 0, 0.0, _at_kink(x, 0.0, 1.0))).to(x.dtype)


def _dirac(x: torch.Tensor, *_order) -> torch.Tensor:
    return torch.where(x == 0, math.nan, 0.0).to(x.dtype)


# Symbolic derivatives only (sympy_functions.Slope): NaN where the derivative does not exist.
def _abs_slope(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x == 0, _at_kink(x, -1.0, 1.0), torch.sign(x)).to(x.dtype)


def _step_slope(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x == torch.floor(x), math.nan, 0.0).to(x.dtype)


def _cbrt(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.abs(x).pow(1.0 / 3.0)


def _sech(x: torch.Tensor) -> torch.Tensor:
    # 1/cosh(x) overflows to 0 with a NaN gradient beyond |x| ~ 710; this form does not.
    e = torch.exp(-torch.abs(x))
    return 2 * e / (1 + e * e)


def _csch(x: torch.Tensor) -> torch.Tensor:
    e = torch.exp(-torch.abs(x))
    return torch.sign(x) * 2 * e / (1 - e * e)


def _dsinc(x: torch.Tensor) -> torch.Tensor:
    # (x cos x - sin x)/x**2 cancels to noise near 0: there, its Taylor series.
    x2 = x * x
    series = -x / 3 + x * x2 / 30 - x * x2 * x2 / 840 + x * x2 * x2 * x2 / 45360
    safe = torch.where(x == 0, torch.ones_like(x), x)
    exact = (safe * torch.cos(safe) - torch.sin(safe)) / (safe * safe)
    return torch.where(torch.abs(x) < 1e-2, series, exact)


def _pairwise(loss):
    """torch's losses warn when shapes differ; broadcast first, as the formula does."""
    return lambda a, b, *rest: loss(*torch.broadcast_tensors(a, b), *(float(r) for r in rest))


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.dim() == 1 and b.dim() == 1 and a.shape == b.shape:
        return torch.dot(a, b)
    return torch.sum(a * b)  # dot of anything else: the sum of the elementwise product


def _over_all(fn):
    """softmax and friends over every element (a vector), keeping the input's shape."""
    return lambda x: fn(x.reshape(-1), 0).reshape(x.shape)


_F = torch.nn.functional


_FUNCTIONS: dict[type, Callable[..., torch.Tensor]] = {
    sympy.sin: torch.sin,
    sympy.cos: torch.cos,
    sympy.tan: torch.tan,
    sympy.cot: _recip(torch.tan),
    sympy.sec: _recip(torch.cos),
    sympy.csc: _recip(torch.sin),
    sympy.asin: torch.asin,
    sympy.acos: torch.acos,
    sympy.atan: torch.atan,
    sympy.acot: _of_recip(torch.atan),
    sympy.asec: _of_recip(torch.acos),
    sympy.acsc: _of_recip(torch.asin),
    sympy.atan2: torch.atan2,
    sympy.sinh: torch.sinh,
    sympy.cosh: torch.cosh,
    sympy.tanh: torch.tanh,
    sympy.coth: _recip(torch.tanh),
    sympy.sech: _sech,
    sympy.csch: _csch,
    sympy.asinh: torch.asinh,
    sympy.acosh: torch.acosh,
    sympy.atanh: torch.atanh,
    sympy.acoth: _of_recip(torch.atanh),
    sympy.asech: _of_recip(torch.acosh),
    sympy.acsch: _of_recip(torch.asinh),
    sympy.exp: torch.exp,
    sympy.log: torch.log,
    sympy.Abs: torch.abs,
    sympy.sign: torch.sign,
    sympy.floor: torch.floor,
    sympy.ceiling: torch.ceil,
    sympy.erf: torch.erf,
    sympy.erfc: torch.erfc,
    sympy.erfinv: torch.erfinv,
    sympy.gamma: _gamma,
    sympy.loggamma: torch.lgamma,
    # sympy's sinc is sin(x)/x; torch.sinc is the normalised sin(pi x)/(pi x).
    sympy.sinc: lambda x: torch.sinc(x / math.pi),
    sympy_functions.sinc: lambda x: torch.sinc(x / math.pi),
    sympy_functions.dsinc: _dsinc,
    sympy.Heaviside: _heaviside,
    sympy.DiracDelta: _dirac,
    sympy_functions.abs_slope: _abs_slope,
    sympy_functions.floor_slope: _step_slope,
    sympy_functions.ceiling_slope: _step_slope,
    sympy_functions.sigmoid: torch.sigmoid,
    sympy_functions.relu: torch.relu,
    sympy_functions.softplus: torch.nn.functional.softplus,
    sympy_functions.cbrt: _cbrt,
    sympy_functions.tsum: torch.sum,
    sympy_functions.tmean: torch.mean,
    sympy_functions.tprod: torch.prod,
    sympy_functions.tmax: torch.amax,
    sympy_functions.tmin: torch.amin,
    sympy_functions.mse: _pairwise(_F.mse_loss),
    sympy_functions.l1: _pairwise(_F.l1_loss),
    sympy_functions.bce: _pairwise(_F.binary_cross_entropy),
    sympy_functions.bce_logits: _pairwise(_F.binary_cross_entropy_with_logits),
    sympy_functions.huber: lambda a, b, delta=1.0: _F.huber_loss(*torch.broadcast_tensors(a, b), delta=float(delta)),
    sympy_functions.dot: _dot,
    sympy_functions.norm: lambda x, p=2: torch.linalg.vector_norm(x, ord=float(p)),
    sympy_functions.logsumexp: lambda x: torch.logsumexp(x.reshape(-1), 0),
    sympy_functions.softmax: _over_all(torch.softmax),
    sympy_functions.log_softmax: _over_all(torch.log_softmax),
    sympy_functions.gelu: _F.gelu,
    sympy_functions.leaky_relu: lambda x, slope=0.01: _F.leaky_relu(x, negative_slope=float(slope)),
}

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
    def __init__(self, table: SymbolTable, trace: list | None = None, dtype: torch.dtype = torch.float32):
        self.table = table
        self.dtype = dtype  # for numbers that must become tensors where no tensor is at hand
        self.trace = trace  # when a list: (sympy node, tensor) of every intermediate result
        self._constant: dict[sympy.Basic, bool] = {}
        self._compiled: dict[sympy.Basic, Compiled] = {}  # a subtree written twice is lowered once
        self._folded: dict[sympy.Basic, float | int | bool] = {}

    def constant(self, node: sympy.Basic) -> bool:
        """No variable in node: `not node.free_symbols`, remembered, as every node asks."""
        if node.is_Number:  # the commonest leaf, and slow for sympy to hash
            return True
        known = self._constant.get(node)
        if known is None:
            known = not isinstance(node, sympy.Symbol) and all(self.constant(a) for a in node.args)
            self._constant[node] = known
        return known

    def lower(self, node: sympy.Basic) -> Compiled:
        if node.is_Number:
            value = _fold(node)
            return lambda env: value
        compiled = self._compiled.get(node)
        if compiled is None:
            compiled = self._compiled[node] = self._traced(node, self._lower(node))
        return compiled

    def _traced(self, node: sympy.Basic, compiled: Compiled) -> Compiled:
        if self.trace is None or isinstance(node, sympy.Symbol) or self.constant(node):
            return compiled
        trace = self.trace

        def traced(env):
            out = compiled(env)
            trace.append((node, out))
            return out
        return traced

    def _lower(self, node: sympy.Basic) -> Compiled:
        if self.constant(node):
            value = _fold(node)
            return lambda env: value
        if isinstance(node, sympy.Symbol):
            return self.symbol(node)
        if isinstance(node, sympy.Add):
            return self.add(node)
        if isinstance(node, sympy.Mul):
            return self.mul(node)
        if isinstance(node, sympy.Pow):
            return self.power(node)
        if isinstance(node, (sympy.Min, sympy.Max)):
            return self.pairwise(torch.minimum if isinstance(node, sympy.Min) else torch.maximum, node)
        if isinstance(node, sympy.polygamma):
            order, arg = node.args
            if order.free_symbols or not order.is_Integer:
                raise LoweringError(f"polygamma needs a whole-number order: {sympy.sstr(node)}")
            n = int(order)
            inner = self.lower(arg)
            return (lambda env: torch.digamma(inner(env))) if n == 0 else (
                lambda env: torch.polygamma(n, inner(env)))
        if isinstance(node, sympy.Piecewise):
            return self.piecewise(node)
        if isinstance(node, sympy_functions.bcast):
            value, *shapes = (self.lower(a) for a in node.args)

            def broadcast(env):
                v = value(env)
                others = [s(env) for s in shapes]
                target = torch.broadcast_shapes(*(tuple(o.shape) for o in others),
                                                tuple(v.shape) if isinstance(v, torch.Tensor) else ())
                if not isinstance(v, torch.Tensor):
                    return torch.full(target, v, dtype=others[0].dtype, device=others[0].device)
                return v.expand(target)
            return broadcast
        if isinstance(node, sympy_functions.tindex):
            inner = self.lower(node.args[0])
            where = node.index

            def element(env):
                value = inner(env)
                if value.dim() != len(where):
                    # A row of an expression is a tensor, which the check cannot treat as one
                    # element: index every dimension.
                    raise LoweringError(f"{sympy.sstr(node)} needs {value.dim()} indices: "
                                        f"{sympy.sstr(node.args[0])} has shape {list(value.shape)}",
                                        hint="index one element of an expression (f(x)[i, j]); "
                                             "rows and slices work on variables (x[0], x[1:])")
                if any(not -n <= i < n for i, n in zip(where, value.shape)):
                    raise LoweringError(f"{sympy.sstr(node)} is out of range: "
                                        f"{sympy.sstr(node.args[0])} has shape {list(value.shape)}")
                return value[where]
            return element
        if type(node) in _RELATIONS:
            rel = _RELATIONS[type(node)]
            lhs, rhs = (self.lower(a) for a in node.args)
            return lambda env: rel(*_tensors(lhs(env), rhs(env)))
        if isinstance(node, (sympy.And, sympy.Or)):
            return self.pairwise(torch.logical_and if isinstance(node, sympy.And) else torch.logical_or, node)
        if isinstance(node, sympy.Not):
            inner = self.lower(node.args[0])
            return lambda env: torch.logical_not(inner(env))
        fn = _FUNCTIONS.get(type(node))
        if fn is None:
            raise LoweringError(
                f"no torch lowering for sympy's {type(node).__name__}: {_short(node)}"
            )
        parts = [self.lower(a) for a in node.args]
        if len(parts) == 1:
            (only,) = parts
            return lambda env: fn(only(env))
        return lambda env: fn(*_tensors(*(p(env) for p in parts)))

    def pairwise(self, combine, node: sympy.Basic) -> Compiled:
        """combine(combine(a, b), c)... over the arguments: n-ary Max, Min, And, Or."""
        parts = [self.lower(a) for a in node.args]

        def run(env):
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

    def _form(self, node: sympy.Basic, numbers: list) -> Any:
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
            kind, (sympy_functions.Reduction, sympy_functions.Defined))
        if not (isinstance(node, _BATCHED_NODES) or elementwise):
            raise _NotBatchable
        return (kind, tuple([self._form(a, numbers) for a in node.args]))

    def batched_add(self, node: sympy.Add) -> Compiled | None:
        """The sum, with terms of one form computed together (see BATCHED_SUM_TERMS); None if none share one."""
        groups: dict[Any, list] = {}
        for term in node.args:
            numbers: list[float] = []
            try:
                key = self._form(term, numbers)
            except _NotBatchable:
                key = ("single", term)
            groups.setdefault(key, []).append((term, numbers))
        vectors, singles = [], []
        for members in groups.values():
            if len(members) >= _BATCHED_FORM_TERMS and members[0][1]:
                vectors.append(self._vector_sum(members[0][0], np.array([n for _t, n in members])))
            else:
                singles.extend(t for t, _n in members)
        if not vectors:
            return None
        rest = self.add_terms(singles) if singles else None

        def add(env):
            total = rest(env) if rest is not None else 0
            for v in vectors:
                total = total + v(env)
            return total
        return add

    def _vector_sum(self, template: sympy.Basic, numbers: np.ndarray) -> Compiled:
        """The sum over rows of `numbers` of template with its constants taken from that row."""
        leaves: list[Compiled] = []
        slot = iter(range(numbers.shape[1]))

        def vector(node) -> Callable:
            if self.constant(node):
                j = next(slot)
                return lambda env, cols: cols[j]
            if isinstance(node, sympy.Symbol):
                leaves.append(self.lower(node))
                k = len(leaves) - 1
                return lambda env, cols: cols[-1][k]
            parts = [vector(a) for a in node.args]
            if isinstance(node, sympy.Add):
                def combine(values):
                    out = values[0]
                    for v in values[1:]:
                        out = out + v
                    return out
            elif isinstance(node, sympy.Mul):
                def combine(values):
                    out = values[0]
                    for v in values[1:]:
                        out = out * v
                    return out
            elif isinstance(node, sympy.Pow):
                def combine(values):
                    return torch.pow(*values)
            else:
                fn = _FUNCTIONS[type(node)]

                def combine(values):
                    return fn(values[0])
            return lambda env, cols: combine([p(env, cols) for p in parts])
        body = vector(template)
        columns: dict[tuple, list] = {}

        def run(env):
            values = [leaf(env) for leaf in leaves]
            like = values[0]
            dims = max(v.dim() for v in values)
            key = (dims, like.dtype, like.device)
            if key not in columns:  # each constant as a column (n, 1, ..., 1): broadcast over the values
                table = torch.as_tensor(numbers, dtype=like.dtype, device=like.device)
                columns[key] = [table[:, j].reshape((-1,) + (1,) * dims) for j in range(numbers.shape[1])]
            return torch.sum(body(env, columns[key] + [values]), dim=0)
        return run

    def add_terms(self, terms_in) -> Compiled:
        # sympy writes t - p as -p + t: subtract instead of negating and adding, one pass
        # over the tensor fewer, and the same rounding as the subtraction a person writes.
        terms = sorted(terms_in, key=lambda a: _negated(a) is not None)  # a positive term first
        parts = [(False, self.lower(terms[0]))]
        for term in terms[1:]:
            negated = _negated(term)
            parts.append((True, self.lower(negated)) if negated is not None else (False, self.lower(term)))

        def add(env):
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
        if isinstance(coeff, sympy.Rational) and abs(coeff.p) < 2**53 and coeff.q < 2**53:
            scale_num, scale_den = int(coeff.p), int(coeff.q)
        else:  # a float coefficient, or a fraction too large to be exact in floating point anyway
            scale_num, scale_den = _fold(coeff), 1

        def mul(env):
            result = numer[0](env) if numer else 1
            for n in numer[1:]:
                result = result * n(env)
            if scale_num == -1:
                result = -result
            elif scale_num != 1:
                result = scale_num * result
            if denom or scale_den != 1:
                below = scale_den
                for d in denom:
                    below = below * d(env)
                result = result / below
            return result
        return mul

    def power(self, node: sympy.Pow) -> Compiled:
        base, exponent = node.args
        lb = self.lower(base)
        if self.constant(exponent):
            e = _fold(exponent)
            if e == 0.5:
                return lambda env: torch.sqrt(lb(env))
            if e == -0.5:
                return lambda env: torch.rsqrt(lb(env))
            if e == -1:
                return lambda env: torch.reciprocal(lb(env))
            return lambda env: torch.pow(lb(env), e)
        le = self.lower(exponent)
        if self.constant(base):
            b = _fold(base)
            return lambda env: torch.pow(b, le(env))
        return lambda env: torch.pow(*_tensors(lb(env), le(env)))

    def piecewise(self, node: sympy.Piecewise) -> Compiled:
        pieces = [(self.lower(e), self.lower(c)) for e, c in node.args]
        dtype = self.dtype

        def piecewise(env):
            result = None
            for value, cond in reversed(pieces):
                v, c = value(env), cond(env)
                if result is None:
                    result = v  # the last piece is the fallback (sympy ends with True)
                    continue
                if isinstance(c, bool):
                    result = v if c else result
                elif isinstance(v, torch.Tensor) or isinstance(result, torch.Tensor):
                    result = torch.where(c, *_tensors(v, result))
                else:  # both pieces are numbers (the derivative of leaky_relu: 1 or slope)
                    result = torch.where(c, torch.tensor(v, dtype=dtype, device=c.device),
                                         torch.tensor(result, dtype=dtype, device=c.device))
            return result
        return piecewise


def _negated(term: sympy.Basic) -> sympy.Basic | None:
    """X when term is -X (a product with coefficient -1), else None."""
    if isinstance(term, sympy.Mul):
        coeff, rest = term.as_coeff_Mul()
        if coeff == -1:
            return rest
    return None


def _short(node: sympy.Basic, limit: int = 60) -> str:
    text = sympy.sstr(node)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_tensor(value, others) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    like = next(v for v in others if isinstance(v, torch.Tensor))
    return torch.as_tensor(value, dtype=like.dtype if not isinstance(value, bool) else torch.bool,
                           device=like.device)


def _tensors(*values):
    """Functions such as atan2 or where take tensors only: give numbers the tensors' dtype."""
    if all(isinstance(v, torch.Tensor) for v in values):
        return values
    return tuple(_as_tensor(v, values) for v in values)


def compile_expression(expr: sympy.Basic, table: SymbolTable, *, dtype: torch.dtype,
                       device: torch.device, trace: list | None = None) -> Callable[[Env], torch.Tensor]:
    """A function from {variable name: tensor} to the expression's value as a tensor.

    With `trace`, every intermediate result is appended to it as (sympy node, tensor), so
    `gradcli graph` can name the nodes of the autograd graph.
    """
    inner = _Lowerer(table, trace, dtype).lower(expr)

    def run(env: Env) -> torch.Tensor:
        out = inner(env)
        if not isinstance(out, torch.Tensor):
            # A constant expression (x - x): a tensor that depends on nothing.
            out = torch.tensor(out, dtype=dtype, device=device)
        return out
    return run


def compile_components(components: list[sympy.Basic], shape: tuple[int, ...] | None, table: SymbolTable,
                       *, dtype: torch.dtype, device: torch.device,
                       trace: list | None = None) -> Callable[[Env], torch.Tensor]:
    """Like compile_expression, for a bracketed list [f1, f2, ...]: the entries are stacked."""
    if shape is None:
        return compile_expression(components[0], table, dtype=dtype, device=device, trace=trace)
    parts = [compile_expression(c, table, dtype=dtype, device=device, trace=trace) for c in components]

    def run(env: Env) -> torch.Tensor:
        values = torch.broadcast_tensors(*(p(env) for p in parts))
        stacked = torch.stack(values)
        return stacked.reshape(shape + tuple(values[0].shape))
    return run


# --------------------------------------------------------------------------- as Python source

# How each function node reads as torch code; {0}, {1} are its arguments.
_SOURCE: dict[type, str] = {
    sympy.cot: "torch.reciprocal(torch.tan({0}))",
    sympy.sec: "torch.reciprocal(torch.cos({0}))",
    sympy.csc: "torch.reciprocal(torch.sin({0}))",
    sympy.acot: "torch.atan(torch.reciprocal({0}))",
    sympy.asec: "torch.acos(torch.reciprocal({0}))",
    sympy.acsc: "torch.asin(torch.reciprocal({0}))",
    sympy.coth: "torch.reciprocal(torch.tanh({0}))",
    sympy.sech: "2 * torch.exp(-abs({0})) / (1 + torch.exp(-2 * abs({0})))",
    sympy.csch: "torch.sign({0}) * 2 * torch.exp(-abs({0})) / (1 - torch.exp(-2 * abs({0})))",
    sympy.acoth: "torch.atanh(torch.reciprocal({0}))",
    sympy.asech: "torch.acosh(torch.reciprocal({0}))",
    sympy.acsch: "torch.asinh(torch.reciprocal({0}))",
    sympy.ceiling: "torch.ceil({0})",
    sympy.loggamma: "torch.lgamma({0})",
    sympy.gamma: "gamma_sign({0}) * torch.exp(torch.lgamma({0}))",
    sympy.sinc: "torch.sinc({0} / math.pi)",
    sympy_functions.sinc: "torch.sinc({0} / math.pi)",
    sympy_functions.dsinc: "dsinc({0})",
    sympy_functions.bcast: "({0}).expand_as({1})",
    sympy.Heaviside: "heaviside({0})",
    sympy.DiracDelta: "dirac_delta({0})",
    sympy_functions.abs_slope: "abs_slope({0})",
    sympy_functions.floor_slope: "step_slope({0})",
    sympy_functions.ceiling_slope: "step_slope({0})",
    sympy_functions.softplus: "torch.nn.functional.softplus({0})",
    sympy_functions.cbrt: "torch.sign({0}) * torch.abs({0}).pow(1/3)",
    sympy_functions.tsum: "torch.sum({0})",
    sympy_functions.tmean: "torch.mean({0})",
    sympy_functions.tprod: "torch.prod({0})",
    sympy_functions.tmax: "torch.amax({0})",
    sympy_functions.tmin: "torch.amin({0})",
    sympy_functions.mse: "F.mse_loss({0}, {1})",
    sympy_functions.l1: "F.l1_loss({0}, {1})",
    sympy_functions.bce: "F.binary_cross_entropy({0}, {1})",
    sympy_functions.bce_logits: "F.binary_cross_entropy_with_logits({0}, {1})",
    sympy_functions.dot: "torch.dot({0}, {1})",
    sympy_functions.logsumexp: "torch.logsumexp({0}, dim=0)",
    sympy_functions.softmax: "torch.softmax({0}, dim=0)",
    sympy_functions.log_softmax: "torch.log_softmax({0}, dim=0)",
    sympy_functions.gelu: "F.gelu({0})",
}


def to_source(expr: sympy.Basic, table: SymbolTable) -> str:
    """The torch code the lowering of expr runs, as a person would write it."""

    def name(node) -> str:
        var, index = table.get(node, (str(node), None))
        return var if index is None else f"{var}[{index_text(index)}]"

    def atom(text: str, node: sympy.Basic) -> str:
        return f"({text})" if isinstance(node, (sympy.Add, sympy.Mul)) or text.startswith("-") else text

    def show(node: sympy.Basic) -> str:
        if not node.free_symbols:
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
        if isinstance(node, (sympy.Min, sympy.Max)):
            fn = "torch.minimum" if isinstance(node, sympy.Min) else "torch.maximum"
            text = show(node.args[0])
            for a in node.args[1:]:
                text = f"{fn}({text}, {show(a)})"
            return text
        if isinstance(node, sympy.polygamma):
            n, arg = node.args
            return f"torch.digamma({show(arg)})" if n == 0 else f"torch.polygamma({int(n)}, {show(arg)})"
        args = [show(a) for a in node.args]
        if type(node) in _SOURCE:
            return _SOURCE[type(node)].format(*args)
        if isinstance(node, sympy_functions.tindex):
            return f"({args[0]})[{', '.join(args[1:])}]"
        if isinstance(node, sympy_functions.huber):
            return f"F.huber_loss({args[0]}, {args[1]}, delta={args[2] if len(args) > 2 else '1.0'})"
        if isinstance(node, sympy_functions.norm):
            return f"torch.linalg.vector_norm({args[0]}, ord={args[1] if len(args) > 1 else '2'})"
        if isinstance(node, sympy_functions.leaky_relu):
            return f"F.leaky_relu({args[0]}, negative_slope={args[1] if len(args) > 1 else '0.01'})"
        fn = _FUNCTIONS.get(type(node))
        if fn is not None and getattr(fn, "__module__", "").startswith("torch"):
            module = "torch" if fn.__name__ in dir(torch) else fn.__module__
            return f"{module}.{fn.__name__}({', '.join(args)})"
        return f"{type(node).__name__}({', '.join(args)})"

    return show(expr)


# --------------------------------------------------------------------------- values and devices

def resolve_dtype(name: str) -> torch.dtype:
    if name in DTYPES:
        return DTYPES[name]
    if name in ("int8", "int16", "int32", "int64", "uint8", "bool", "int", "long"):
        raise GradcliError(
            f"autograd needs floating-point tensors: {name} cannot carry gradients",
            hint="use --dtype float32 (the default) or float64",
        )
    raise GradcliError(f"unknown dtype '{name}'", hint="choose one of " + ", ".join(DTYPES))


def resolve_device(name: str) -> tuple[torch.device, str]:
    """The device to compute on, and a note saying how it was chosen."""
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda"), "auto: CUDA is available"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps"), "auto: MPS is available"
        return torch.device("cpu"), "auto: no GPU found"
    if name == "cpu":
        return torch.device("cpu"), "requested"
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise GradcliError(
                f"--device {name}: CUDA is not available (torch {torch.__version__})",
                hint="use --device cpu, or --device auto to pick what is there",
            )
        if name.startswith("cuda:"):
            suffix = name[5:]
            if not suffix.isdigit() or int(suffix) >= torch.cuda.device_count():
                raise GradcliError(
                    f"--device {name}: there are {torch.cuda.device_count()} CUDA device(s), numbered from 0"
                )
        return torch.device(name), "requested"
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise GradcliError("--device mps: MPS (Apple GPU) is not available here", hint="use --device cpu")
        return torch.device("mps"), "requested"
    raise GradcliError(f"unknown device '{name}'", hint="choose auto, cpu, cuda, cuda:N or mps")


def make_tensor(spec: ValueSpec, *, dtype: torch.dtype, device: torch.device,
                generator: torch.Generator | None, max_elements: int, name: str) -> torch.Tensor:
    """A value as a tensor, refused before allocation when it is larger than max_elements."""
    if spec.numel > max_elements:
        size = spec.numel * torch.tensor([], dtype=dtype).element_size()
        raise GradcliError(
            f"{name}={spec.text} has {spec.numel:,} elements ({_bytes(size)} as {str(dtype)[6:]}); "
            f"the limit is {max_elements:,}",
            hint="--max-elements raises the limit",
        )
    # Built in float64 on the CPU, then converted: the same numbers on every device and dtype.
    f64 = torch.float64
    if spec.kind == "literal" and hasattr(spec.data, "dtype"):  # read from a file
        t = torch.from_numpy(np.asarray(spec.data, dtype=np.float64).copy())
        if not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise GradcliError(f"{name}={spec.text}: {bad} value(s) are not finite numbers")
    elif spec.kind == "literal":
        t = torch.tensor(spec.data, dtype=f64)
    elif spec.kind == "ones":
        t = torch.ones(spec.shape, dtype=f64)
    elif spec.kind == "zeros":
        t = torch.zeros(spec.shape, dtype=f64)
    elif spec.kind == "eye":
        t = torch.eye(*spec.args, dtype=f64)
    elif spec.kind == "full":
        t = torch.full(spec.args[0], spec.args[1], dtype=f64)
    elif spec.kind == "linspace":
        t = torch.linspace(*spec.args, dtype=f64)
    elif spec.kind == "arange":
        t = torch.arange(*spec.args, dtype=f64)
    elif spec.kind == "rand":
        t = torch.rand(spec.shape, dtype=f64, generator=generator)
    elif spec.kind == "randn":
        t = torch.randn(spec.shape, dtype=f64, generator=generator)
    else:  # pragma: no cover - parse.py only makes the kinds above
        raise GradcliError(f"unknown value kind {spec.kind}")
    return t.to(dtype=dtype, device=device)


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover
