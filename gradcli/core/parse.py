"""Text to sympy, without ever evaluating the text.

The expression is read by Python's own `ast.parse(mode="eval")` and only a whitelist of node
types is turned into sympy objects; everything else is an error that points at its column.
`sympify` and `parse_expr` are never used on user text, because both call `eval`.

Values (`x=[1,2]`, `x=ones(2,3)`, `x=pi/4`, `x=-5:5:200`) go through the same reader and come
out as `ValueSpec`s: plain numbers and shapes. This module knows nothing of torch.
"""

from __future__ import annotations

import ast
import difflib
import itertools
import math
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Sequence

import sympy

from gradcli.core import sympy_functions
from gradcli.core.limits import (
    LONG_EXPRESSION_NODES,
    MAX_CONSTANT_DIGITS,
    MAX_EXACT_DIGITS,
    MAX_EXPRESSION_CHARS,
    MAX_NESTING,
    MAX_POLYGAMMA_ORDER,
    MAX_ROOT_DEGREE,
)
from gradcli.errors import GradcliError, Span
from gradcli.inputs import read_value_source

# --------------------------------------------------------------------------- functions

def _log(x, base=None):
    return sympy.log(x) if base is None else sympy.log(x, base)


def _digamma(x):
    return sympy.polygamma(0, x)


def _polygamma(n, x):
    if not (n.is_Integer and n >= 0):
        raise ValueError("the order of polygamma(n, x) must be a whole number n >= 0")
    return sympy.polygamma(n, x)


def _sinc(x):
    return sympy_functions.sinc(x)


def _number(value, what: str, positive: bool = False):
    """A parameter that must be a plain number (a slope, a delta, a norm's p)."""
    if value.free_symbols or not value.is_real:
        raise ValueError(f"{what} must be a number")
    if positive and not value.is_positive:
        raise ValueError(f"{what} must be positive")
    return value


# name -> (fewest arguments, most arguments, builder). Several spellings map to one builder:
# lower case as in numpy/torch, and sympy's own capitalised names for users coming from sympy.
_F: dict[str, tuple[int, int, Callable[..., sympy.Expr]]] = {}


def _define(names: str, lo: int, hi: int, builder: Callable[..., sympy.Expr]) -> None:
    for name in names.split():
        _F[name] = (lo, hi, builder)


_define("sin", 1, 1, sympy.sin)
_define("cos", 1, 1, sympy.cos)
_define("tan", 1, 1, sympy.tan)
_define("cot", 1, 1, sympy.cot)
_define("sec", 1, 1, sympy.sec)
_define("csc", 1, 1, sympy.csc)
_define("asin arcsin", 1, 1, sympy.asin)
_define("acos arccos", 1, 1, sympy.acos)
_define("atan arctan", 1, 1, sympy.atan)
_define("acot arccot", 1, 1, sympy.acot)
_define("asec arcsec", 1, 1, sympy.asec)
_define("acsc arccsc", 1, 1, sympy.acsc)
_define("atan2 arctan2", 2, 2, sympy.atan2)
_define("sinh", 1, 1, sympy.sinh)
_define("cosh", 1, 1, sympy.cosh)
_define("tanh", 1, 1, sympy.tanh)
_define("coth", 1, 1, sympy.coth)
_define("sech", 1, 1, sympy.sech)
_define("csch", 1, 1, sympy.csch)
_define("asinh arcsinh", 1, 1, sympy.asinh)
_define("acosh arccosh", 1, 1, sympy.acosh)
_define("atanh arctanh", 1, 1, sympy.atanh)
_define("acoth arccoth", 1, 1, sympy.acoth)
_define("asech arcsech", 1, 1, sympy.asech)
_define("acsch arccsch", 1, 1, sympy.acsch)
_define("exp", 1, 1, sympy.exp)
_define("log ln", 1, 2, _log)
_define("log2", 1, 1, lambda x: sympy.log(x, 2))
_define("log10", 1, 1, lambda x: sympy.log(x, 10))
_define("sqrt", 1, 1, sympy.sqrt)
_define("cbrt", 1, 1, sympy_functions.cbrt)
_define("abs Abs", 1, 1, sympy.Abs)
_define("sign sgn", 1, 1, sympy.sign)
_define("floor", 1, 1, sympy.floor)
_define("ceil ceiling", 1, 1, sympy.ceiling)
_define("erf", 1, 1, sympy.erf)
_define("erfc", 1, 1, sympy.erfc)
_define("erfinv", 1, 1, sympy.erfinv)
_define("gamma", 1, 1, sympy.gamma)
_define("lgamma loggamma", 1, 1, sympy.loggamma)
_define("digamma", 1, 1, _digamma)
_define("polygamma", 2, 2, _polygamma)
_define("sinc", 1, 1, _sinc)
_define("min Min minimum", 1, 64, lambda *a: sympy_functions.tmin(a[0]) if len(a) == 1 else sympy.Min(*a))
_define("max Max maximum", 1, 64, lambda *a: sympy_functions.tmax(a[0]) if len(a) == 1 else sympy.Max(*a))
_define("sigmoid", 1, 1, sympy_functions.sigmoid)
_define("relu", 1, 1, sympy_functions.relu)
_define("softplus", 1, 1, sympy_functions.softplus)
_define("pow", 2, 2, lambda a, b: a**b)
_define("sum", 1, 1, sympy_functions.tsum)
_define("mean", 1, 1, sympy_functions.tmean)
_define("prod", 1, 1, sympy_functions.tprod)
_define("dot", 2, 2, sympy_functions.dot)
_define("norm", 1, 2, lambda x, p=None: sympy_functions.norm(x) if p is None else sympy_functions.norm(x, _number(p, "the p of norm(x, p)")))
_define("logsumexp", 1, 1, sympy_functions.logsumexp)
_define("softmax", 1, 1, sympy_functions.softmax)
_define("log_softmax", 1, 1, sympy_functions.log_softmax)
_define("gelu", 1, 1, sympy_functions.gelu)
_define("leaky_relu", 1, 2, lambda x, s=None: sympy_functions.leaky_relu(x) if s is None
        else sympy_functions.leaky_relu(x, _number(s, "the slope of leaky_relu(x, slope)")))
_define("mse", 2, 2, sympy_functions.mse)
_define("l1", 2, 2, sympy_functions.l1)
_define("bce", 2, 2, sympy_functions.bce)
_define("bce_logits", 2, 2, sympy_functions.bce_logits)
_define("huber", 2, 3, lambda a, b, d=None: sympy_functions.huber(a, b) if d is None
        else sympy_functions.huber(a, b, _number(d, "the delta of huber(a, b, delta)", positive=True)))

FUNCTION_NAMES = frozenset(_F)
_REDUCTION_BUILDERS = {sympy_functions.tsum, sympy_functions.tmean, sympy_functions.tprod, _F["max"][2], _F["min"][2]}
CONSTANTS: dict[str, sympy.Expr] = {"pi": sympy.pi, "e": sympy.E}

# Functions whose value at a large whole number sympy would compute exactly (a factorial, or
# a harmonic sum of that many terms): given a plain number, they are evaluated in floating
# point instead.
_COMBINATORIAL = {sympy.gamma, sympy.loggamma, _digamma}

# Value constructors: name -> (fewest, most arguments).
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

# --------------------------------------------------------------------------- results


@dataclass
class Variable:
    """A name the expression uses as a variable, as the user wrote it."""

    name: str
    symbol: sympy.Symbol  # the whole variable, used elementwise
    # index as written (may be negative) -> the scalar symbol that stands for that element
    indices: dict[tuple[int, ...], sympy.Symbol] = field(default_factory=dict)
    used_whole: bool = False
    span: Span | None = None


@dataclass
class ParsedExpression:
    """What `parse_expression` returns."""

    text: str
    components: list[sympy.Expr]  # one expression, or the entries of a bracketed list, flattened
    shape: tuple[int, ...] | None  # None for one expression, else the shape of the list
    variables: dict[str, Variable]  # in order of first appearance
    as_written: bool = False  # a long expression, kept as written (LONG_EXPRESSION_NODES)

    @property
    def is_list(self) -> bool:
        return self.shape is not None

    @property
    def expr(self) -> sympy.Expr:
        """The single expression (only when the input is not a bracketed list)."""
        assert self.shape is None
        return self.components[0]

    def symbol_table(self) -> dict[sympy.Symbol, tuple[str, tuple[int, ...] | None]]:
        """sympy symbol -> (variable name, element index or None for the whole variable)."""
        table: dict[sympy.Symbol, tuple[str, tuple[int, ...] | None]] = {}
        for var in self.variables.values():
            table[var.symbol] = (var.name, None)
            for index, sym in var.indices.items():
                table[sym] = (var.name, index)
        return table

    def pretty(self) -> str:
        if self.as_written:
            return self.text  # sympy would print it in seconds, and no more readably
        if "_pretty" not in self.__dict__:  # printed once: a parsed expression is reused (gradcli batch)
            texts = [sympy.sstr(c) for c in self.components]
            self.__dict__["_pretty"] = texts[0] if self.shape is None else _nest_text(texts, self.shape)
        return self.__dict__["_pretty"]


def _nest_text(texts: list[str], shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return "[" + ", ".join(texts) + "]"
    step = len(texts) // shape[0]
    return "[" + ", ".join(_nest_text(texts[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])) + "]"


@dataclass(frozen=True)
class ValueSpec:
    """A value as typed: a literal array, or a constructor call with plain-number arguments.

    kind: "literal" (data holds nested lists of floats, or one float), or a constructor name
    from CONSTRUCTORS (args holds its arguments, shape the resulting shape).
    """

    text: str
    kind: str
    shape: tuple[int, ...]
    data: object = None
    args: tuple = ()

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def is_random(self) -> bool:
        return self.kind in ("rand", "randn")


# --------------------------------------------------------------------------- reading


class _Source:
    """The text as typed, with `^` read as `**`, and a map back to the typed columns."""

    def __init__(self, text: str, what: str):
        self.original = text
        if len(text) > MAX_EXPRESSION_CHARS:
            raise GradcliError(
                f"the {what} is {len(text)} characters long; the limit is {MAX_EXPRESSION_CHARS}",
                hint="write it in several smaller pieces",
            )
        plain = text.isascii() and text.replace("\t", " ").isprintable()  # no control character
        for i, ch in enumerate("" if plain else text):
            if ch in "\r\n" or (unicodedata.category(ch) == "Cc" and ch != "\t"):
                raise GradcliError(
                    f"the {what} contains a line break or control character",
                    hint="write the whole expression on one line",
                    span=Span(text.replace("\n", " ").replace("\r", " "), i, i + 1),
                )
        # `^` means power, as in maths and sympy. Replace it textually (strings are refused
        # anyway) rather than as XOR in the tree: Python gives ^ a lower precedence than +,
        # so x^2+1 would otherwise read as x^(2+1).
        converted: list[str] = []
        self._to_original: list[int] = list(range(len(text) + 1))
        if "^" in text:
            self._to_original = []
            for i, ch in enumerate(text):
                if ch == "^":
                    converted.append("**")
                    self._to_original += [i, i]
                else:
                    converted.append(ch)
                    self._to_original.append(i)
            self._to_original.append(len(text))
        self.text = "".join(converted) if converted else text
        self.is_ascii = self.text.isascii()
        self._byte_to_char: list[int] | None = None

    def _char(self, byte_offset: int) -> int:
        """ast columns are UTF-8 byte offsets; `θ` is two bytes but one column."""
        if self.is_ascii:
            chars = byte_offset
        else:
            if self._byte_to_char is None:
                table = []
                for i, ch in enumerate(self.text):
                    table += [i] * len(ch.encode("utf-8"))
                table.append(len(self.text))
                self._byte_to_char = table
            chars = self._byte_to_char[min(byte_offset, len(self._byte_to_char) - 1)]
        return self._to_original[min(chars, len(self._to_original) - 1)]

    def span(self, node: ast.AST) -> Span:
        start = self._char(getattr(node, "col_offset", 0))
        end = self._char(getattr(node, "end_col_offset", None) or getattr(node, "col_offset", 0) + 1)
        return Span(self.original, start, max(end, start + 1))

    def segment(self, node: ast.AST) -> str:
        s = self.span(node)
        return self.original[s.start:s.end]

    def parse(self) -> ast.expr:
        if not self.original.strip():
            raise GradcliError("the expression is empty", hint='write something like "x**2 + 1"')
        # Building the tree of a long flat sum recurses once per term inside CPython; the
        # nesting that could exhaust the C stack is capped by CPython's parser itself (200
        # parentheses; "too complex" for thousands of unary signs), so the depth Python
        # allows here may grow with the length of the text.
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 1000 + len(self.text) // 2))
        try:
            tree = ast.parse(self.text, mode="eval")
        except SyntaxError as exc:
            message = exc.msg or "invalid syntax"
            if not exc.offset or exc.offset > len(self.text):  # Python's way of saying "at the end"
                column = len(self.original)
                if message == "invalid syntax":
                    message = "the expression ends too early"
            else:
                column = self._to_original[min(exc.offset - 1, len(self._to_original) - 1)]
            if "unterminated" in message or "EOL" in message:
                message = "strings are not allowed"
            if "invalid character" in message and any(c in self.original for c in "²³¹⁰⁴⁵⁶⁷⁸⁹"):
                raise GradcliError(f"could not read this: {message}", span=Span(self.original, column, column + 1),
                                   hint="superscripts are not powers: write x**2 or x^2") from None
            if "integer string conversion" in message:  # Python's advice is for programmers
                message = "this whole number has too many digits for any floating type"
            raise GradcliError(
                f"could not read this: {message}",
                span=Span(self.original, column, column + 1),
            ) from None
        except (RecursionError, MemoryError):
            # CPython's parser says MemoryError (with no message) for thousands of nested signs.
            raise GradcliError("could not read this: it is nested too deeply for Python's parser",
                               hint="write it with fewer nested operators and parentheses") from None
        except ValueError as exc:
            raise GradcliError(f"could not read this: {exc}") from None
        finally:
            sys.setrecursionlimit(limit)
        return tree.body


_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_REFUSED_BINOPS = {
    ast.FloorDiv: "'//' (floor division)", ast.Mod: "'%' (modulo or string formatting)",
    ast.MatMult: "'@' (matrix product)", ast.LShift: "'<<'", ast.RShift: "'>>'",
    ast.BitAnd: "'&'", ast.BitOr: "'|'", ast.BitXor: "'^'",
}
_REFUSED_NODES = {
    ast.Attribute: "attribute access ('.') is not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "generator expressions are not allowed",
    ast.NamedExpr: "assignment ':=' is not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.Dict: "dictionaries are not allowed",
    ast.Set: "sets are not allowed",
    ast.Compare: "comparisons are not allowed",
    ast.BoolOp: "'and'/'or' are not allowed",
    ast.IfExp: "'if ... else' is not allowed",
    ast.Starred: "'*' unpacking is not allowed",
    ast.Await: "'await' is not allowed",
    ast.Yield: "'yield' is not allowed",
    ast.YieldFrom: "'yield' is not allowed",
}


_UNDEFINED = (sympy.zoo, sympy.nan, sympy.oo, -sympy.oo)


_LOG10_2 = math.log10(2)


def _number_problem(value: sympy.Expr) -> str | None:
    """What is wrong with a plain number (too large, too small, too many digits), in O(1)."""
    if value.is_Rational:
        p, q = abs(int(value.p)), int(value.q)
        if p == 0:
            return None
        digits = max(p.bit_length(), q.bit_length()) * _LOG10_2
        if digits > MAX_EXACT_DIGITS:
            return f"this exact number has about {digits:.0f} digits; the limit is {MAX_EXACT_DIGITS}"
        log10 = math.log10(p) - math.log10(q)
    elif value.is_Float:
        _sign, mantissa, exponent, bits = value._mpf_
        if not mantissa:  # zero (sympy keeps infinities and nan apart from Float)
            return None
        log10 = _binary_to_decimal(exponent + bits)
    else:
        return None
    return _magnitude_problem(log10)


def _binary_to_decimal(exponent: int) -> float:
    """A binary exponent as a decimal one; mpmath's exponents are unbounded Python ints."""
    if abs(exponent) < 2**1000:
        return exponent * _LOG10_2
    return math.inf if exponent > 0 else -math.inf


def _magnitude_problem(log10: float) -> str | None:
    about = f"about 10^{log10:.4g}" if math.isfinite(log10) else "far beyond 10^400"
    if log10 > MAX_CONSTANT_DIGITS:
        return f"this number is too large for any floating type ({about})"
    if log10 < -MAX_CONSTANT_DIGITS:
        return f"this number is too small for any floating type ({about}; it would be 0)"
    return None


def _check_magnitude(value: sympy.Expr, src: _Source, node: ast.AST) -> sympy.Expr:
    # Checked where it appears (log(0), 0**-1, tan(pi/2) evaluate to zoo at once), in O(1):
    # a walk of the whole subtree at every node would make long sums quadratic. A sum or a
    # product keeps its plain-number part first, so that part is checked too (9**400*9**400*x).
    if value in _UNDEFINED or (value.is_Mul and sympy.zoo in value.args):
        raise GradcliError("this is infinite or undefined (a division by zero?)", span=src.span(node))
    number = value if value.is_Number else (
        value.args[0] if (value.is_Mul or value.is_Add) and value.args[0].is_Number else None)
    if number is not None:
        problem = _number_problem(number)
        if problem:
            raise GradcliError(problem, span=src.span(node))
    elif value.is_number and _log10_abs(value) > MAX_CONSTANT_DIGITS:
        # exp(10**7) is no Number but a constant all the same, of 4.3 million digits: floor()
        # of it, or sin() of it in the lowering, would compute every one of them.
        raise GradcliError(_magnitude_problem(_log10_abs(value)), span=src.span(node))
    return value


def _log10_abs(value: sympy.Expr) -> float:
    """log10 |value| of a constant, without computing it exactly (0.0 when it cannot tell)."""
    try:
        if value.is_Rational:
            return math.log10(abs(int(value.p))) - math.log10(int(value.q)) if value.p else -math.inf
        size = abs(sympy.N(value, 15))
        if size.is_Float:
            _sign, mantissa, exponent, bits = size._mpf_
            return math.log10(mantissa) + _binary_to_decimal(exponent) if mantissa else -math.inf
    except (TypeError, ValueError, OverflowError, ArithmeticError):
        pass
    return 0.0


def _exact_digits(value: sympy.Expr) -> float:
    """About how many digits sympy writes down to hold `value` exactly; 1 for pi, sin(1)..."""
    if value.is_Rational:
        return math.log10(max(abs(int(value.p)), int(value.q), 2))
    if value.is_Pow and value.exp.is_Rational:
        return _size(value.exp) * _exact_digits(value.base)
    if value.is_Mul or value.is_Add:
        return sum(_exact_digits(a) for a in value.args)
    return 1.0


def _size(value: sympy.Expr) -> float:
    """|value| of a plain number as a float; inf beyond float64 (float(10**400) overflows)."""
    try:
        return float(abs(value))
    except OverflowError:
        return math.inf


_UNITS = (sympy.S.One, sympy.S.NegativeOne, sympy.I, -sympy.I)


class _Reader:
    """Walks the ast whitelist into sympy. `constant_only` is for values: no variables."""

    def __init__(self, src: _Source, *, constant_only: bool = False, as_written: bool = False):
        self.src = src
        self.constant_only = constant_only
        # Long expressions keep each term as written (no sympy evaluation of terms with
        # variables): see LONG_EXPRESSION_NODES. Constants are still evaluated, and checked.
        self.as_written = as_written
        self.variables: dict[str, Variable] = {}
        self.depth = 0

    def error(self, message: str, node: ast.AST, hint: str | None = None) -> GradcliError:
        return GradcliError(message, span=self.src.span(node), hint=hint)

    def read(self, node: ast.AST) -> sympy.Expr:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(f"the expression is nested more than {MAX_NESTING} levels deep", node)
        try:
            return self._read(node)
        except (RecursionError, MemoryError):
            raise self.error("the expression is too deeply nested or too large to handle", node) from None
        except ArithmeticError as exc:
            # sympy evaluating a constant: floor(log(2, 1 + 10**-20)) divides by a log it
            # rounded to 0 (ZeroDivisionError); overflows are ArithmeticErrors too.
            detail = str(exc) or type(exc).__name__
            raise self.error(f"this constant cannot be computed ({detail})", node) from None
        finally:
            self.depth -= 1

    def _read(self, node: ast.AST) -> sympy.Expr:
        if isinstance(node, ast.Constant):
            return self.number(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return self.negate(self.read(node.operand))
            if isinstance(node.op, ast.UAdd):
                return self.read(node.operand)
            raise self.error(f"the operator {_unary_name(node.op)} is not allowed", node)
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Subscript):
            return self.subscript(node)
        if isinstance(node, (ast.List, ast.Tuple)):
            raise self.error(
                "a list can only be the whole expression (a vector function, as for jacobian)", node
            )
        for kind, message in _REFUSED_NODES.items():
            if isinstance(node, kind):
                raise self.error(message, node)
        raise self.error(f"'{type(node).__name__}' is not allowed here", node)

    def number(self, node: ast.Constant) -> sympy.Expr:
        value = node.value
        if isinstance(value, bool) or value is None or value is Ellipsis:
            raise self.error(f"{value!r} is not a number", node)
        if isinstance(value, str):
            raise self.error("strings are not allowed", node)
        if isinstance(value, bytes):
            raise self.error("bytes are not allowed", node)
        if isinstance(value, complex):
            raise self.error("complex numbers are not supported", node)
        if isinstance(value, int):
            if value.bit_length() > MAX_CONSTANT_DIGITS * 3.33:
                raise self.error("this whole number is too large for any floating type", node)
            return sympy.Integer(value)
        if isinstance(value, float):
            if math.isinf(value):
                raise self.error("this number is too large for any floating type", node)
            # From the literal's text, so 0.1 stays the decimal 0.1 in formulas.
            number = sympy.Float(self.src.segment(node).replace("_", ""), 15) if _is_plain_float(
                self.src.segment(node)) else sympy.Float(value)
            problem = _number_problem(number)  # 1e-999999999: no floating type holds it either
            if problem:
                raise self.error(problem, node)
            return number
        raise self.error(f"{type(value).__name__} literals are not allowed", node)

    def name(self, node: ast.Name) -> sympy.Expr:
        written = node.id if self.src.is_ascii else self.src.segment(node)
        if written != node.id:
            raise self.error(
                f"'{written}' is written with look-alike characters that Python reads as '{node.id}'",
                node, hint=f"type it in plain letters: {node.id}",
            )
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if node.id in FUNCTION_NAMES:
            raise self.error(f"{node.id} is a function: call it, like {node.id}(x)", node)
        if node.id in CONSTRUCTORS:
            raise self.error(f"{node.id}(...) makes a value; use it after '=' (x={node.id}(3))", node)
        if node.id.startswith("_"):
            raise self.error(f"names starting with '_' are not allowed: {node.id}", node)
        if self.constant_only:
            raise self.error(
                f"a value cannot refer to a variable ({node.id})", node,
                hint="values are numbers, lists, constants (pi, e) or ones(...)/zeros(...)/...",
            )
        var = self._variable(node.id, node)
        var.used_whole = True
        return var.symbol

    def _variable(self, name: str, node: ast.AST) -> Variable:
        if name not in self.variables:
            self.variables[name] = Variable(name, sympy.Symbol(name, real=True), span=self.src.span(node))
        return self.variables[name]

    def binop(self, node: ast.BinOp) -> sympy.Expr:
        op = type(node.op)
        if op not in _BINOPS:
            raise self.error(f"the operator {_REFUSED_BINOPS.get(op, op.__name__)} is not allowed", node,
                             hint="use ** or ^ for powers" if op is ast.BitXor else None)
        if op is ast.Pow:
            result = self.power(self.read(node.left), self.read(node.right), node)
            return _check_magnitude(result, self.src, node)
        # a + b - c + ... arrives as a left-leaning tree as deep as the sum is long: walk its
        # spine in a loop, so a sum of 10^4 terms costs no recursion.
        additive = op in (ast.Add, ast.Sub)
        family = (ast.Add, ast.Sub) if additive else (ast.Mult, ast.Div)
        chain: list[tuple[type, ast.AST]] = []
        spine: ast.AST = node
        while isinstance(spine, ast.BinOp) and type(spine.op) in family:
            chain.append((type(spine.op), spine.right))
            spine = spine.left
        terms = [self.read(spine)]
        for kind, operand in reversed(chain):
            value = self.read(operand)
            if kind is ast.Sub:
                value = self.negate(value)
            elif kind is ast.Div:
                if value.is_Rational:  # directly: sympy's Pow asks each new number's assumptions
                    if value.p == 0:
                        raise self.error("division by zero", operand)
                    value = sympy.Rational(value.q, value.p)
                elif value.is_zero:
                    raise self.error("division by zero", operand)
                else:
                    value = sympy.Pow(value, -1, evaluate=not self._keeps(value))
            terms.append(value)
        kind = sympy.Add if additive else sympy.Mul
        # As written: sympy's _from_args is evaluate=False without checking each term again.
        result = kind._from_args(terms, is_commutative=True) if self._keeps(*terms) else kind(*terms)
        return _check_magnitude(result, self.src, node)

    def _keeps(self, *operands: sympy.Expr) -> bool:
        """Whether an operation on these is kept as written: in a long expression, on variables."""
        return self.as_written and any(not a.is_number for a in operands)

    def negate(self, value: sympy.Expr) -> sympy.Expr:
        return sympy.Mul._from_args((sympy.S.NegativeOne, value), is_commutative=True) if self._keeps(value) else -value

    def power(self, base: sympy.Expr, exponent: sympy.Expr, node: ast.AST) -> sympy.Expr:
        if base.is_number and exponent.is_number:
            return self._constant_power(base, exponent, node)
        if exponent.is_number and base.free_symbols:
            if exponent.is_Integer and abs(exponent) > 10**6:
                # Symbolic powers this large make sympy's later work (and torch's pow) meaningless.
                raise self.error("this exponent is too large (the limit is 10^6)", node)
            if base.is_Mul and exponent.is_Rational:
                # sympy takes the power of a product's plain factors at once: (3**400*x)**10**6
                # would compute 3**(4*10**8) exactly before anything could check it.
                factor = sympy.Mul(*[a for a in base.args if a.is_number])
                if factor not in _UNITS:
                    size = _size(exponent) * _log10_abs(factor)
                    problem = _magnitude_problem(size) if not math.isnan(size) else None
                    digits = _size(exponent) * _exact_digits(factor)
                    if problem is None and digits > MAX_EXACT_DIGITS:
                        problem = f"the constant factor of this power would have about {digits:.3g} digits"
                    if problem:
                        raise self.error(problem, node)
        return sympy.Pow(base, exponent, evaluate=not self._keeps(base, exponent))

    def _constant_power(self, base: sympy.Expr, exponent: sympy.Expr, node: ast.AST) -> sympy.Expr:
        """number**number, without letting sympy compute a huge exact number first."""
        if base.is_zero:
            if exponent.is_negative or (exponent.is_real is False and sympy.re(exponent).is_negative):
                raise self.error("division by zero (0 to a negative power)", node)
            return base**exponent
        # 9**9**9 has 370 million digits: sympy would compute every one of them, and
        # (1/2)**(10**10) as many in its denominator.
        try:
            x = complex(sympy.N(exponent, 15)).real
        except (TypeError, ValueError, OverflowError):
            x = 0.0
        size = x * _log10_abs(base) if x else 0.0
        if not math.isnan(size):
            problem = _magnitude_problem(size)
            if problem:
                raise self.error(problem.replace("this number", "this power"), node)
        if exponent.is_Rational and base not in _UNITS and not base.has(sympy.Float) and (
                _size(exponent) * _exact_digits(base) > MAX_EXACT_DIGITS):
            # Within range but long to write exactly ((1 + 10**-20)**(10**20) is e): in
            # floating point, which sympy evaluates with enough working precision.
            return sympy.N(sympy.Pow(base, exponent, evaluate=False), 15)
        if exponent.is_Rational and exponent.q > MAX_ROOT_DEGREE and base != 1 and not base.has(sympy.Float):
            # 2**(1/10**400) is 1 + 7e-401: sympy cannot tell it from 1 numerically and falls
            # back to its minimal polynomial, of degree 10**400, as soon as anything compares
            # it ((x**2**(1/10**400))**(1/2) hung). No float tells it from 1 either.
            return sympy.N(sympy.Pow(base, exponent, evaluate=False), 15)
        return base**exponent

    def call(self, node: ast.Call) -> sympy.Expr:
        if not isinstance(node.func, ast.Name):
            if isinstance(node.func, ast.Attribute):
                raise self.error("attribute access ('.') is not allowed", node.func)
            raise self.error("only named functions can be called, like sin(x)", node.func)
        fname = node.func.id
        written = fname if self.src.is_ascii else self.src.segment(node.func)
        if written != fname:
            raise self.error(
                f"'{written}' is written with look-alike characters that Python reads as '{fname}'",
                node.func, hint=f"type it in plain letters: {fname}",
            )
        if fname in CONSTRUCTORS:
            raise self.error(f"{fname}(...) makes a value; use it after '=' (x={fname}(3))", node.func)
        if fname not in _F:
            close = difflib.get_close_matches(fname, sorted(FUNCTION_NAMES), n=1)
            raise self.error(
                f"unknown function '{fname}'", node.func,
                hint=f"did you mean {close[0]}?" if close else "gradcli --help lists the functions",
            )
        if node.keywords:
            raise self.error("keyword arguments are not allowed", node.keywords[0].value)
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.error("'*' unpacking is not allowed", arg)
        lo, hi, builder = _F[fname]
        if not lo <= len(node.args) <= hi:
            wanted = str(lo) if lo == hi else f"{lo} to {hi}"
            raise self.error(f"{fname} takes {wanted} argument{'s' if hi > 1 else ''}, not {len(node.args)}", node)
        args = [self.read(a) for a in node.args]
        if builder in _COMBINATORIAL and all(a.is_number for a in args):
            # sympy.N, not Float: Float(1 + pi) is a TypeError
            args = [sympy.N(a, 15) if not a.is_Integer or abs(a) > 100 else a for a in args]
        if builder is _polygamma:
            return _check_magnitude(self._polygamma(*args, node=node), self.src, node)
        if builder in _REDUCTION_BUILDERS:
            args[0] = self.keep_shapes(args[0], node.args[0])
        try:
            if isinstance(builder, type) and builder not in _REDUCTION_BUILDERS and self._keeps(*args):
                # (sympy's evaluate(False) context would clear sympy's cache on entry and exit)
                result = builder(*args, evaluate=False)
            else:
                result = builder(*args)
        except ValueError as exc:
            raise self.error(str(exc), node) from None
        except (TypeError, AttributeError) as exc:
            raise self.error(f"{fname} cannot take these arguments ({exc})", node) from None
        return _check_magnitude(result, self.src, node)

    def keep_shapes(self, expr: sympy.Expr, node: ast.AST) -> sympy.Expr:
        """expr, wrapped in bcast when sympy cancelled a tensor variable written in it.

        sum(x - x + y) must add y once per element of x, as torch does: the x that sympy
        removed still sets the shape (see sympy_functions.bcast).
        """
        free = expr.free_symbols
        if all(v.symbol in free for v in self.variables.values()):
            return expr  # nothing vanished (the common case: no walk of a long expression)
        indexed = {id(n.value) for n in ast.walk(node) if isinstance(n, ast.Subscript)}
        written = {n.id for n in ast.walk(node)
                   if isinstance(n, ast.Name) and id(n) not in indexed and n.id in self.variables}
        vanished = [self.variables[name].symbol for name in sorted(written)
                    if self.variables[name].symbol not in free]
        return sympy_functions.bcast(expr, *vanished) if vanished else expr

    def _polygamma(self, n: sympy.Expr, x: sympy.Expr, *, node: ast.AST) -> sympy.Expr:
        if not (n.is_Integer and n >= 0):
            raise self.error("the order of polygamma(n, x) must be a whole number n >= 0", node)
        if n > MAX_POLYGAMMA_ORDER:
            raise self.error(f"the order of polygamma(n, x) is at most {MAX_POLYGAMMA_ORDER}, not {n}", node)
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
            raise self.error("polygamma(n, x) needs a real x", node) from None
        if where.imag:
            raise self.error("polygamma(n, x) needs a real x", node)
        if where.real < -1e4:
            raise self.error("polygamma(n, x) of a constant below -10^4 is not supported", node)
        if where.real <= 0 and where.real == int(where.real):
            raise self.error("polygamma(n, x) has a pole at x = 0, -1, -2, ...", node)
        try:
            return sympy.N(sympy.polygamma(n, sympy.Float(where.real, 15)), 15)
        except (ValueError, ZeroDivisionError, ArithmeticError) as exc:
            raise self.error(f"polygamma cannot be evaluated here ({exc})", node) from None

    def subscript(self, node: ast.Subscript) -> sympy.Expr:
        if self.constant_only:
            raise self.error("indexing is not allowed in a value", node)
        if not isinstance(node.value, ast.Name):
            return self._index_expression(node)
        name = node.value.id
        written = name if self.src.is_ascii else self.src.segment(node.value)
        if written != name:
            raise self.error(
                f"'{written}' is written with look-alike characters that Python reads as '{name}'",
                node.value, hint=f"type it in plain letters: {name}",
            )
        if name in CONSTANTS or name in FUNCTION_NAMES or name.startswith("_"):
            raise self.error(f"{name} cannot be indexed", node.value)
        parts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        index = tuple(self._index(p) for p in parts)
        var = self._variable(name, node.value)
        if index not in var.indices:
            var.indices[index] = sympy.Symbol(f"{name}[{index_text(index)}]", real=True)
        return var.indices[index]

    def _index_expression(self, node: ast.Subscript) -> sympy.Expr:
        """f(x)[i]: one element of a tensor-valued subexpression."""
        value = self.read(node.value)
        parts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        for p in parts:
            if isinstance(p, ast.Slice):
                raise self.error("only variables can be sliced (x[1:]); index an expression's elements, "
                                 "like softmax(x)[0]", p)
        index = [sympy.Integer(self._whole(p)) for p in parts]
        return sympy_functions.tindex(value, *index)

    def _index(self, node: ast.AST) -> "int | Slice":
        if isinstance(node, ast.Slice):
            parts = [None if p is None else self._whole(p) for p in (node.lower, node.upper, node.step)]
            if parts[2] is not None and parts[2] <= 0:
                raise self.error("a slice step must be positive (torch has no negative steps)", node)
            return Slice(*parts)
        return self._whole(node)

    def _whole(self, node: ast.AST) -> int:
        negative = False
        inner = node
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            negative, inner = True, node.operand
        if isinstance(inner, ast.Constant) and type(inner.value) is int:
            if inner.value > 10**12:
                raise self.error("this index is far too large", node)
            return -inner.value if negative else inner.value
        raise self.error("an index must be a whole number or a slice, like x[0], x[1,2] or x[1:]", node)


class Slice(NamedTuple):
    """start:stop:step of an index, hashable (Python's slice is not, before 3.12)."""

    start: int | None
    stop: int | None
    step: int | None

    def __str__(self) -> str:
        text = f"{'' if self.start is None else self.start}:{'' if self.stop is None else self.stop}"
        return text + (f":{self.step}" if self.step is not None else "")


def index_text(index: tuple) -> str:
    return ",".join(str(i) for i in index)


def as_python_index(index: tuple) -> tuple:
    """The index as Python/torch/numpy understand it: Slice becomes slice."""
    return tuple(slice(*i) if isinstance(i, Slice) else i for i in index)


def indexed_shape(index: tuple, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of var[index] for a var of `shape` (the index already checked against it)."""
    out = []
    for i, n in zip(index, shape):
        if isinstance(i, Slice):
            out.append(len(range(*slice(*i).indices(n))))
    return tuple(out) + tuple(shape[len(index):])


def _unary_name(op: ast.unaryop) -> str:
    return {ast.Not: "'not'", ast.Invert: "'~'"}.get(type(op), type(op).__name__)


_LEADING_ZERO = re.compile(r"[+-]?0+[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?")


def _plain_number(text: str) -> float | None:
    """x=0.5 read directly: the commonest value, without the parser and sympy (a batch of
    small requests spent a twentieth of its time there). None for anything else, and for
    numbers near the ends of float64's range, which the parser checks and explains."""
    if len(text) > 40 or not _DECIMAL.fullmatch(text) or _LEADING_ZERO.fullmatch(text):
        return None  # 007 is a syntax error to Python: the parser says so
    number = float(text)
    if 1e-300 < abs(number) < 1e300 or (number == 0 and not any(c in "123456789" for c in text.lower().partition("e")[0])):
        return number + 0.0  # -0 is 0, as the parser (sympy) reads it
    return None


def _is_plain_float(text: str) -> bool:
    return all(c in "0123456789.eE+-_" for c in text)


def _read_list(reader: _Reader, node: ast.AST) -> tuple[list[sympy.Expr], tuple[int, ...]]:
    """A (nested) bracketed list: its entries flattened, and its shape."""
    if not isinstance(node, (ast.List, ast.Tuple)):
        return [reader.read(node)], ()
    if not node.elts:
        raise reader.error("an empty list has nothing to compute", node)
    reader.depth += 1
    if reader.depth > MAX_NESTING:
        raise reader.error(f"lists are nested more than {MAX_NESTING} levels deep", node)
    try:
        parts = [_read_list(reader, e) for e in node.elts]
    finally:
        reader.depth -= 1
    inner = parts[0][1]
    for (_, shape), elt in zip(parts, node.elts):
        if shape != inner:
            raise reader.error("the list is ragged: every row must have the same length", elt)
    flat = [x for entries, _ in parts for x in entries]
    return flat, (len(parts),) + inner


def parse_expression(text: str) -> ParsedExpression:
    """Read an expression typed by a user. Raises GradcliError for anything not allowed."""
    text = text.strip()
    src = _Source(text, "expression")
    tree = src.parse()
    # Nodes counted as sympy would count them (operations, calls, names and numbers), and no
    # further than needed: each takes a character at least, so a short text is not long.
    nodes = (n for n in ast.walk(tree) if isinstance(n, ast.expr))
    long = len(text) > LONG_EXPRESSION_NODES and any(True for _ in itertools.islice(nodes, LONG_EXPRESSION_NODES, None))
    reader = _Reader(src, as_written=long)
    if isinstance(tree, ast.Tuple):
        raise GradcliError("a comma outside brackets", span=src.span(tree),
                           hint="write 3.5 for a decimal, or [f1, f2] for a vector function")
    if isinstance(tree, ast.List):
        components, shape = _read_list(reader, tree)
        return ParsedExpression(text, components, shape, reader.variables, reader.as_written)
    return ParsedExpression(text, [reader.keep_shapes(reader.read(tree), tree)], None, reader.variables,
                            reader.as_written)


# --------------------------------------------------------------------------- values

def _is_identifier(name: str) -> bool:
    return name.isidentifier() and unicodedata.normalize("NFKC", name) == name


def parse_assignment(argument: str) -> tuple[str, ValueSpec]:
    """Read one `NAME=VALUE` argument."""
    if "=" not in argument:
        if argument.startswith("--"):
            raise GradcliError(f"no such option: {argument.split('=')[0]}", hint="see --help for the options")
        raise GradcliError(
            f"expected NAME=VALUE, got '{argument}'",
            hint="give each variable a value, like x=2 or \"x=[1,2,3]\"",
        )
    name, _, value_text = argument.partition("=")
    name = name.strip()
    if name.startswith("-"):
        raise GradcliError(f"no such option: {name}", hint="see --help for the options")
    if not _is_identifier(name) or name.startswith("_"):
        raise GradcliError(f"'{name}' is not a variable name", hint="a name is letters, digits and _, like x or θ1")
    if name in CONSTANTS or name in FUNCTION_NAMES or name in CONSTRUCTORS:
        raise GradcliError(f"'{name}' is a reserved name (a function or constant) and cannot be a variable")
    try:
        return name, parse_value(value_text)
    except GradcliError as exc:
        raise GradcliError(f"in the value of {name}: {exc.message}", hint=exc.hint, span=exc.span) from None


def parse_value(text: str) -> ValueSpec:
    """Read a value: a number, a constant expression, a nested list, a constructor, or a:b:n."""
    text = text.strip()
    if not text:
        raise GradcliError("the value is empty", hint="write a number, like x=2")
    if text.startswith("@"):
        return array_value(read_value_source(text[1:]), text)
    if ":" in text and "[" not in text:
        return _parse_range(text)
    plain = _plain_number(text)
    if plain is not None:
        return ValueSpec(text, "literal", (), data=plain)
    src = _Source(text, "value")
    tree = src.parse()
    reader = _Reader(src, constant_only=True)
    if isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id in CONSTRUCTORS:
        return _constructor(reader, tree, text)
    if isinstance(tree, (ast.List, ast.Tuple)):
        entries, shape = _read_list(reader, tree)
        numbers = [_to_float(reader, e, tree) for e in entries]
        return ValueSpec(text, "literal", shape, data=_nest(numbers, shape))
    return ValueSpec(text, "literal", (), data=_to_float(reader, reader.read(tree), tree))


def array_value(array, text: str) -> ValueSpec:
    """A value read from a file: a numpy array, possibly mapped rather than read (.npy).

    Its size is checked against --max-elements, and its numbers for finiteness, when it is
    made a tensor: nothing large is touched before that.
    """
    return ValueSpec(text, "literal", tuple(int(n) for n in array.shape), data=array)


def _parse_range(text: str) -> ValueSpec:
    parts = text.split(":")
    if len(parts) != 3:
        raise GradcliError(
            f"a range is START:STOP:COUNT, got '{text}'", hint="for example x=-5:5:200 (200 points from -5 to 5)"
        )
    numbers = []
    for part in parts:
        src = _Source(part.strip(), "range")
        reader = _Reader(src, constant_only=True)
        numbers.append(_to_float(reader, reader.read(src.parse()), None))
    start, stop, count = numbers
    if count != int(count) or count < 1:
        raise GradcliError(f"the COUNT of a range must be a whole number >= 1, got {count:g}")
    return ValueSpec(text, "linspace", (int(count),), args=(start, stop, int(count)))


def _to_float(reader: _Reader, expr: sympy.Expr, node: ast.AST | None) -> float:
    span = reader.src.span(node) if node is not None else None
    if expr.free_symbols:
        raise GradcliError("a value must be a number", span=span)
    value = complex(sympy.N(expr, 20)) if not expr.is_real else None
    if value is not None and value.imag != 0:
        raise GradcliError(f"the value {sympy.sstr(expr)} is not a real number", span=span)
    number = float(sympy.N(expr, 20)) if value is None else value.real
    if not math.isfinite(number):
        raise GradcliError(f"the value {sympy.sstr(expr)} is not a finite number", span=span)
    return number


def _nest(flat: Sequence[float], shape: tuple[int, ...]):
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return list(flat)
    step = len(flat) // shape[0]
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def _constructor(reader: _Reader, node: ast.Call, text: str) -> ValueSpec:
    name = node.func.id
    lo, hi = CONSTRUCTORS[name]
    if node.keywords:
        raise reader.error("keyword arguments are not allowed", node.keywords[0].value)
    args_nodes = list(node.args)
    # ones((2,3)) and ones([2,3]) mean ones(2,3), as in numpy and torch.
    if name in ("ones", "zeros", "rand", "randn") and len(args_nodes) == 1 and isinstance(
        args_nodes[0], (ast.List, ast.Tuple)
    ):
        args_nodes = list(args_nodes[0].elts)
    if not lo <= len(args_nodes) <= hi:
        wanted = str(lo) if lo == hi else f"{lo} to {hi}"
        raise reader.error(f"{name} takes {wanted} arguments, not {len(args_nodes)}", node)

    def whole(n: ast.AST, what: str, minimum: int = 0) -> int:
        v = _to_float(reader, reader.read(n), n)
        if v != int(v) or v < minimum:
            raise reader.error(f"{what} must be a whole number >= {minimum}, got {v:g}", n)
        if v > 10**15:
            raise reader.error(f"{what} is far too large ({v:g})", n)
        return int(v)

    if name in ("ones", "zeros", "rand", "randn"):
        shape = tuple(whole(a, "a size") for a in args_nodes)
        return ValueSpec(text, name, shape, args=shape)
    if name == "eye":
        n = whole(args_nodes[0], "the size", 1)
        m = whole(args_nodes[1], "the size", 1) if len(args_nodes) > 1 else n
        return ValueSpec(text, name, (n, m), args=(n, m))
    if name == "full":
        shape_node = args_nodes[0]
        dims = shape_node.elts if isinstance(shape_node, (ast.List, ast.Tuple)) else [shape_node]
        shape = tuple(whole(d, "a size") for d in dims)
        fill = _to_float(reader, reader.read(args_nodes[1]), args_nodes[1])
        return ValueSpec(text, name, shape, args=(shape, fill))
    if name == "linspace":
        start = _to_float(reader, reader.read(args_nodes[0]), args_nodes[0])
        stop = _to_float(reader, reader.read(args_nodes[1]), args_nodes[1])
        count = whole(args_nodes[2], "the count", 1)
        return ValueSpec(text, name, (count,), args=(start, stop, count))
    # arange(stop) | arange(start, stop) | arange(start, stop, step)
    nums = [_to_float(reader, reader.read(a), a) for a in args_nodes]
    start, stop, step = (0.0, nums[0], 1.0) if len(nums) == 1 else (nums[0], nums[1], nums[2] if len(nums) > 2 else 1.0)
    if step == 0:
        raise reader.error("the step of arange cannot be 0", node)
    count = max(0, math.ceil((stop - start) / step))
    if count == 0:
        raise reader.error("this arange is empty", node)
    return ValueSpec(text, name, (count,), args=(start, stop, step))
