"""Text to sympy, without ever evaluating the text.

The expression is read by Python's own `ast.parse(mode="eval")` and only a whitelist of node
types is turned into sympy objects; everything else is an error that points at its column.
`sympify` and `parse_expr` are never used on user text, because both call `eval`.

Which functions exist, their signatures and their sympy meaning come from the registry
(functions.py). Values (`x=[1,2]`, `x=ones(2,3)`) are read by values.py with this module's
`Reader` in its constant-only mode. This module knows nothing of torch.
"""

from __future__ import annotations

import ast
import itertools
import math
import sys
import unicodedata
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import sympy

from gradcli.core import functions, sympy_functions
from gradcli.core.functions import CONSTRUCTORS, FUNCTION_NAMES
from gradcli.core.limits import (
    LONG_EXPRESSION_NODES,
    MAX_CONSTANT_DIGITS,
    MAX_EXACT_DIGITS,
    MAX_EXPRESSION_CHARS,
    MAX_NESTING,
    MAX_ROOT_DEGREE,
)
from gradcli.errors import GradcliError, Span

CONSTANTS: dict[str, sympy.Expr] = {"pi": sympy.pi, "e": sympy.E}

# --------------------------------------------------------------------------- results


@dataclass
class Variable:
    """A name the expression uses as a variable, as the user wrote it."""

    name: str
    symbol: sympy.Symbol  # the whole variable, used elementwise
    # index as written (may be negative) -> the scalar symbol that stands for that element
    indices: dict[Index, sympy.Symbol] = field(default_factory=dict)
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
    # where each tensor operation (and what holds one) was typed: shape errors point there
    spans: dict[sympy.Basic, Span] = field(default_factory=dict)
    # The components as typed, without sympy's automatic evaluation (log(exp(x)) stays, x/x
    # stays): what the torch route lowers and runs. `components` (evaluated) are the symbolic
    # reference's. None when they are the same objects (a long expression is read as typed once).
    typed: list[sympy.Expr] | None = None

    @property
    def typed_components(self) -> list[sympy.Expr]:
        """What torch computes: the expression as typed (same symbols as `components`)."""
        return self.typed if self.typed is not None else self.components

    @property
    def is_list(self) -> bool:
        return self.shape is not None

    @property
    def expr(self) -> sympy.Expr:
        """The single expression (only when the input is not a bracketed list)."""
        assert self.shape is None
        return self.components[0]

    def symbol_table(self) -> dict[sympy.Symbol, tuple[str, Index | None]]:
        """sympy symbol -> (variable name, element index or None for the whole variable)."""
        table: dict[sympy.Symbol, tuple[str, Index | None]] = {}
        for var in self.variables.values():
            table[var.symbol] = (var.name, None)
            for index, sym in var.indices.items():
                table[sym] = (var.name, index)
        return table

    def pretty(self, evaluated: bool = False) -> str:
        """How gradcli read the text: the expression torch runs, as typed (log(exp(x)) stays
        log(exp(x)), not sympy's x), with ^ as ** and the spacing made regular; or, with
        `evaluated`, sympy's evaluation of it, which the symbolic reference differentiates."""
        if self.as_written:
            return self.text  # sympy would print it in seconds, and no more readably
        key = "_evaluated" if evaluated else "_pretty"
        if key not in self.__dict__:  # printed once: a parsed expression is reused (gradcli batch)
            texts = [sympy.sstr(c) for c in (self.components if evaluated else self.typed_components)]
            self.__dict__[key] = texts[0] if self.shape is None else _nest_text(texts, self.shape)
        return cast(str, self.__dict__[key])


def _nest_text(texts: list[str], shape: tuple[int, ...]) -> str:
    if len(shape) == 1:
        return "[" + ", ".join(texts) + "]"
    step = len(texts) // shape[0]
    return "[" + ", ".join(_nest_text(texts[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])) + "]"


# --------------------------------------------------------------------------- reading


class Source:
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
ast.LShift: "'<<'", ast.RShift: "'>>'",
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
    ast.Compare: "comparisons are only allowed as the condition of where(x > 0, a, b)",
    ast.BoolOp: "'and'/'or' are not allowed",
    ast.IfExp: "'if ... else' is not allowed",
    ast.Starred: "'*' unpacking is not allowed",
    ast.Await: "'await' is not allowed",
    ast.Yield: "'yield' is not allowed",
    ast.YieldFrom: "'yield' is not allowed",
}


_RELATIONS: dict[type, type] = {ast.Lt: sympy.Lt, ast.LtE: sympy.Le, ast.Gt: sympy.Gt, ast.GtE: sympy.Ge,
                                ast.Eq: sympy.Eq, ast.NotEq: sympy.Ne}
_COMPARISON_TEXT = {ast.Is: "'is'", ast.IsNot: "'is not'", ast.In: "'in'", ast.NotIn: "'not in'"}


def einsum_subscripts(text: str, reader: Reader, node: ast.AST) -> str:
    """einsum's subscripts, validated: letters per operand, commas between, an optional -> output."""
    plain = text.replace(" ", "")
    inputs, arrow, output = plain.partition("->")
    terms = inputs.split(",")
    letters = [c for t in terms for c in t]
    bad = next((c for c in plain if not (c.isascii() and c.isalpha()) and c not in ",->"), None)
    if bad is not None or not all(terms) or (arrow and ("-" in output or ">" in output)) or "-" in inputs or (
            ">" in inputs):
        raise reader.error("einsum's subscripts are letters, one per dimension of each operand, commas between "
                           "operands and an optional -> output, like \"ij,j->i\"", node)
    if arrow:
        if len(set(output)) != len(output):
            raise reader.error(f"einsum's output {output!r} names a letter twice", node)
        missing = [c for c in output if c not in letters]
        if missing:
            raise reader.error(f"einsum's output letter {missing[0]!r} is in no operand", node)
    return plain


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


def _check_magnitude(value: sympy.Expr, src: Source, node: ast.AST) -> sympy.Expr:
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
        # past the limit, so _magnitude_problem names a problem (never None)
        raise GradcliError(cast(str, _magnitude_problem(_log10_abs(value))), span=src.span(node))
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


def _typed_log(x: sympy.Expr, base: sympy.Expr | None = None) -> sympy.Expr:
    if base is None:
        return sympy.log(x, evaluate=False)
    if not base.free_symbols and (base.is_positive is False or base == 1):
        raise ValueError("the base of log(x, base) must be a positive number other than 1")
    return sympy.Mul._from_args((sympy.log(x, evaluate=False), sympy.Pow(sympy.log(base), -1)))


# The torch route's reading of the functions whose registry builders evaluate as they build.
_TYPED_BUILDERS: dict[str, Any] = {
    "sqrt": lambda x: sympy.Pow(x, sympy.S.Half, evaluate=False),
    "log": _typed_log,
    "log2": lambda x: _typed_log(x, sympy.Integer(2)),
    "log10": lambda x: _typed_log(x, sympy.Integer(10)),
    "pow": lambda x, y: sympy.Pow(x, y, evaluate=False),
}


class Reader:
    """Walks the ast whitelist into sympy. `constant_only` is for values: no variables."""

    def __init__(self, src: Source, *, constant_only: bool = False, as_written: bool = False,
                 typed: bool = False):
        self.src = src
        self.constant_only = constant_only
        # Long expressions keep each term as written (no sympy evaluation of terms with
        # variables): see LONG_EXPRESSION_NODES. Constants are still evaluated, and checked.
        self.as_written = as_written or typed
        # The torch route's reading: as written, and functions sympy builds by evaluating
        # (sqrt(x**2) -> Abs(x)) built unevaluated too.
        self.typed = typed
        self.variables: dict[str, Variable] = {}
        self.depth = 0
        self.spans: dict[sympy.Basic, Span] = {}
        self.tensor_ops = False  # a tensor operation was read: spans are kept from then on

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
        if isinstance(node, ast.Attribute) and node.attr == "T" and not self.constant_only:
            return self.tensor_span(sympy_functions.transpose(self.read(node.value), sympy_functions.encode_static(())),
                                    node)
        if isinstance(node, ast.List) and node.elts and not self.constant_only:
            # a list inside an expression: its entries stacked, torch.stack([a, b]) (nested: rows)
            return self.tensor_span(sympy_functions.stack(*(self.read(e) for e in node.elts),
                                                          sympy_functions.encode_static(0)), node)
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
        if op is ast.MatMult:
            if self.constant_only:
                raise self.error("'@' (matrix product) is not allowed in a value", node)
            return self.tensor_span(sympy_functions.matmul(self.read(node.left), self.read(node.right)), node)
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
                    # As typed, x/2 stays a division by 2 (it prints as typed; torch folds 2**-1)
                    value = sympy.Pow(value, -1, evaluate=False) if self.typed else sympy.Rational(value.q, value.p)
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
                raise self.error("attribute access ('.') is not allowed", node.func, hint=_attribute_hint(node.func))
            raise self.error("only named functions can be called, like sin(x)", node.func)
        fname = node.func.id
        written = fname if self.src.is_ascii else self.src.segment(node.func)
        if written != fname:
            raise self.error(
                f"'{written}' is written with look-alike characters that Python reads as '{fname}'",
                node.func, hint=f"type it in plain letters: {fname}",
            )
        entry = functions.lookup(fname)
        if fname in CONSTRUCTORS and (entry is None or self.constant_only):
            raise self.error(f"{fname}(...) makes a value; use it after '=' (x={fname}(3))", node.func)
        if entry is None:
            raise self.error(f"unknown function '{fname}'", node.func, hint=functions.suggestion(fname))
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.error("'*' unpacking is not allowed", arg)
        slots, extra = self._bind(entry, fname, node)
        params = entry.params
        positional = [i for i, p in enumerate(params) if p.positional]
        read = {i: self.argument(params[i], given, fname) for i, given in enumerate(slots) if given is not None}
        args: list[Any] = [read.get(i) for i in positional]
        while args and args[-1] is None:
            args.pop()  # optional arguments not given: the builder's defaults (None before a given one)
        args += [self.read(a) for a in extra]
        keywords = {params[i].name: v for i, v in read.items() if not params[i].positional}
        if entry.numeric and all(a.is_number for a in args):
            # sympy.N, not Float: Float(1 + pi) is a TypeError
            args = [sympy.N(a, 15) if not a.is_Integer or abs(a) > 100 else a for a in args]
        if entry.keeps_shapes:
            args[0] = self.keep_shapes(args[0], node.args[0])
        builder = entry.build
        try:
            if isinstance(builder, type) and not entry.keeps_shapes and self._keeps(*args):
                # (sympy's evaluate(False) context would clear sympy's cache on entry and exit)
                result = builder(*args, evaluate=False)
            elif self.typed and entry.name in _TYPED_BUILDERS and self._keeps(*args):
                # functions whose builders evaluate (sqrt(x**2) would be Abs(x), log(exp(x)) x)
                result = _TYPED_BUILDERS[entry.name](*args)
            else:
                result = builder(*args, **keywords)
        except ValueError as exc:
            raise self.error(str(exc), node) from None
        except (TypeError, AttributeError) as exc:
            raise self.error(f"{fname} cannot take these arguments ({exc})", node) from None
        return self.tensor_span(_check_magnitude(result, self.src, node), node)

    def tensor_span(self, result: sympy.Expr, node: ast.AST) -> sympy.Expr:
        """result, its place remembered when it is (or holds) a tensor operation: a shape
        mismatch found once values are bound points there (core/shapes.py)."""
        if isinstance(result, sympy_functions.TensorOp):
            self.tensor_ops = True
        if self.tensor_ops and not result.is_Atom:
            self.spans.setdefault(result, self.src.span(node))
        return result

    def argument(self, param: functions.Param, node: ast.expr, fname: str) -> Any:
        """One argument, read as its parameter's kind says (see functions.Param)."""
        kind = param.kind
        if kind == "expr":
            return self.read(node)
        if kind == "condition":
            return self.condition(node, fname)
        if kind == "list":
            if not isinstance(node, (ast.List, ast.Tuple)) or not node.elts:
                raise self.error(f"{fname} takes a bracketed list of tensors here, like [x, y]", node)
            return [self.read(e) for e in node.elts]
        if kind == "bool":
            if isinstance(node, ast.Constant) and isinstance(node.value, bool):
                return sympy_functions.encode_static(node.value)
            raise self.error(f"{param.name} is True or False", node)
        if kind == "subscripts":
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                return sympy_functions.encode_static(einsum_subscripts(node.value, self, node))
            raise self.error(f"the first argument of {fname} is its subscripts, a string like \"ij,j->i\"", node)
        if kind == "dims" and isinstance(node, (ast.Tuple, ast.List)):
            if not node.elts:
                raise self.error(f"{param.name} names no dim", node)
            return sympy_functions.encode_static(tuple(self._whole(e) for e in node.elts))
        if kind in ("int", "dims"):
            if isinstance(node, ast.Constant) and node.value is None:
                return None
            value = self._whole(node, what=f"{param.name} must be a whole number")
            return sympy_functions.encode_static((value,) if kind == "dims" else value)
        if kind == "choice":
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in param.choices:
                return sympy_functions.encode_static(node.value)
            listed = ", ".join(f'"{c}"' for c in param.choices)
            raise self.error(f"{param.name} of {fname} is one of {listed}", node,
                             hint=f'for example {param.name}="{param.choices[-1]}"')
        raise AssertionError(f"unknown parameter kind {kind}")  # pragma: no cover - the registry's own

    def condition(self, node: ast.expr, fname: str) -> sympy.Basic:
        """A comparison (x > 0, 0 <= x < 1): the condition of where, the one place they are read."""
        if not isinstance(node, ast.Compare):
            raise self.error(f"the condition of {fname} is a comparison, like x > 0", node)
        operands = [self.read(node.left)] + [self.read(c) for c in node.comparators]
        relations = []
        for op, lhs, rhs in zip(node.ops, operands, operands[1:], strict=False):
            relation = _RELATIONS.get(type(op))
            if relation is None:
                raise self.error(f"the comparison {_COMPARISON_TEXT.get(type(op), type(op).__name__)} is not allowed "
                                 "(use < <= > >= == !=)", node)
            relations.append(relation(lhs, rhs))
        return relations[0] if len(relations) == 1 else sympy.And(*relations)

    def _bind(self, entry: functions.Function, fname: str,
              node: ast.Call) -> tuple[list[ast.expr | None], list[ast.expr]]:
        """The argument nodes in the order of entry's parameters (None where one is not given),
        keyword arguments checked against its signature, and the further positional ones (max(a, b, c))."""
        given = len(node.args) + len(node.keywords)
        lo, hi = entry.fewest, entry.most
        params = entry.params

        def miscounted() -> GradcliError:
            wanted = str(lo) if lo == hi else f"{lo} to {hi}"
            return self.error(f"{fname} takes {wanted} argument{'s' if hi > 1 else ''}, not {given}", node)
        if len(node.args) > hi:
            raise miscounted()
        slots: list[ast.expr | None] = [None] * len(params)
        in_order = [i for i, p in enumerate(params) if p.positional]
        for i, arg in zip(in_order, node.args, strict=False):
            slots[i] = arg
        extra = list(node.args[len(in_order):])
        names = [p.name for p in params]
        for kw in node.keywords:
            if kw.arg is None:
                raise self.error("'**' unpacking is not allowed", kw.value)
            if not any(p.keyword for p in params):
                raise self.error(f"{fname} takes no keyword arguments", kw.value,
                                 hint=f"give its arguments in order: {entry.signature}")
            name = next((p.name for p in params if p.alias == kw.arg), kw.arg)
            if name not in names:
                raise self.error(f"{fname} has no argument named '{kw.arg}'", kw.value,
                                 hint=f"its arguments: {entry.signature}")
            i = names.index(name)
            if not params[i].keyword:
                raise self.error(f"the argument {kw.arg} of {fname} cannot be given by name", kw.value,
                                 hint=f"give it in order: {entry.signature}")
            if slots[i] is not None:
                raise self.error(f"{fname} is given {name} twice", kw.value, hint=f"its arguments: {entry.signature}")
            slots[i] = kw.value
        missing = [p.name for i, p in enumerate(params) if p.default is None and slots[i] is None]
        if missing:
            if node.keywords and given >= lo:  # a count would mislead: norm(p=1) has one argument
                raise self.error(f"{fname} is missing its argument {missing[0]}", node,
                                 hint=f"its arguments: {entry.signature}")
            raise miscounted()
        return slots, extra

    def keep_shapes(self, expr: sympy.Expr, node: ast.AST) -> sympy.Expr:
        """expr, wrapped in bcast when sympy cancelled a tensor variable written in it.

        sum(x - x + y) must add y once per element of x, as torch does: the x that sympy
        removed still sets the shape (see sympy_functions.bcast).
        """
        free = expr.free_symbols
        if all(v.symbol in free for v in self.variables.values()):
            return expr  # nothing vanished (the common case: no walk of a long expression)
        contexts: dict[str, set[str]] = {}
        _written_in(node, "elementwise", contexts)
        written = {name for name, where in contexts.items() if "elementwise" in where and name in self.variables}
        vanished = [self.variables[name].symbol for name in sorted(written)
                    if self.variables[name].symbol not in free]
        lost = sorted(name for name, where in contexts.items() if "tensor" in where and name in self.variables
                      and self.variables[name].symbol not in free)
        if lost:
            # A @ x - A @ x is 0 to sympy: the shape of what cancelled (a vector here) is lost with it
            raise self.error(f"sympy cancelled terms holding a tensor operation of {', '.join(lost)}, and with them "
                             "the shape they had", node, hint="write the expression without the terms that cancel")
        return sympy_functions.bcast(expr, *vanished) if vanished else expr

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
        if any(_is_ellipsis(p) for p in parts):  # x[..., -1]: a view the scalar route has no symbol for
            var = self._variable(name, node.value)
            var.used_whole = True
            return self.tensor_span(sympy_functions.getitem(var.symbol, self._index_text(parts)), node)
        index = tuple(self._index(p) for p in parts)
        var = self._variable(name, node.value)
        if index not in var.indices:
            var.indices[index] = sympy.Symbol(f"{name}[{index_text(index)}]", real=True)
        return var.indices[index]

    def _index_expression(self, node: ast.Subscript) -> sympy.Expr:
        """f(x)[i]: one element of a tensor-valued subexpression."""
        value = self.read(node.value)
        parts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if any(isinstance(p, ast.Slice) or _is_ellipsis(p) for p in parts):
            return self.tensor_span(sympy_functions.getitem(value, self._index_text(parts)), node)
        index = [sympy.Integer(self._whole(p)) for p in parts]
        return sympy_functions.tindex(value, *index)

    def _index_text(self, parts: list[ast.expr]) -> sympy.Basic:
        """An index with slices or ... as getitem keeps it: "...,-1", ":,0" (see decode_index)."""
        if sum(1 for p in parts if _is_ellipsis(p)) > 1:
            raise self.error("an index can hold one ... at most", parts[0])
        texts = ["..." if _is_ellipsis(p) else str(self._index(p)) for p in parts]
        return sympy_functions.encode_static(",".join(texts))

    def _index(self, node: ast.AST) -> int | Slice:
        if isinstance(node, ast.Slice):
            parts = [None if p is None else self._whole(p) for p in (node.lower, node.upper, node.step)]
            if parts[2] is not None and parts[2] <= 0:
                raise self.error("a slice step must be positive (torch has no negative steps)", node)
            return Slice(*parts)
        return self._whole(node)

    def _whole(self, node: ast.AST, what: str = "an index must be a whole number or a slice, like x[0], x[1,2] "
                                                 "or x[1:]") -> int:
        negative = False
        inner = node
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            negative, inner = True, node.operand
        if isinstance(inner, ast.Constant) and type(inner.value) is int:
            if inner.value > 10**12:
                raise self.error("this index is far too large", node)
            return -inner.value if negative else inner.value
        raise self.error(what, node)


class Slice(NamedTuple):
    """start:stop:step of an index, hashable (Python's slice is not, before 3.12)."""

    start: int | None
    stop: int | None
    step: int | None

    def __str__(self) -> str:
        text = f"{'' if self.start is None else self.start}:{'' if self.stop is None else self.stop}"
        return text + (f":{self.step}" if self.step is not None else "")


# An element index as written: whole numbers (maybe negative) and slices, x[0, 1:].
Index = tuple["int | Slice", ...]


def index_text(index: Index) -> str:
    return ",".join(str(i) for i in index)


def as_python_index(index: Index) -> tuple[int | slice, ...]:
    """The index as Python/torch/numpy understand it: Slice becomes slice."""
    return tuple(slice(*i) if isinstance(i, Slice) else i for i in index)


def indexed_shape(index: Index, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of var[index] for a var of `shape` (the index already checked against it)."""
    out: list[int] = []
    for i, n in zip(index, shape, strict=False):  # index may be shorter: the rest kept whole
        if isinstance(i, Slice):
            out.append(len(range(*slice(*i).indices(n))))
    return tuple(out) + tuple(shape[len(index):])


def _written_in(node: ast.AST, context: str, found: dict[str, set[str]]) -> None:
    """The names written in node, by what encloses them: "elementwise" (their shape is the
    expression's), "scalar" (inside a whole-tensor reduction: shape gone) or "tensor" (inside a
    tensor operation, whose shape is its own). The outermost enclosing operation decides."""
    inner = context
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        sliced = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if any(_is_ellipsis(p) for p in sliced):  # x[..., 0]: a tensor operation on x itself
            found.setdefault(node.value.id, set()).add("tensor" if context == "elementwise" else context)
        return  # x[0], x[1:]: a symbol of its own, not x
    if context == "elementwise":
        if isinstance(node, (ast.List, ast.Attribute)) or (isinstance(node, ast.BinOp)
                                                           and isinstance(node.op, ast.MatMult)):
            inner = "tensor"
        elif isinstance(node, ast.Subscript):
            sliced = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            inner = "tensor" if any(isinstance(p, ast.Slice) or _is_ellipsis(p) for p in sliced) else "scalar"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            inner = _call_context(node)
    if isinstance(node, ast.Name):
        found.setdefault(node.id, set()).add(context)
        return
    for child in ast.iter_child_nodes(node):
        _written_in(child, inner, found)


def _call_context(node: ast.Call) -> str:
    """How a call encloses its arguments: elementwise (sin, where, softmax), scalar (sum(x), mse)
    or tensor (matmul, stack, sum(x, dim=0))."""
    assert isinstance(node.func, ast.Name)
    entry = functions.lookup(node.func.id)
    if entry is None or entry.category is functions.Category.ELEMENTWISE:
        return "elementwise"
    if entry.category is functions.Category.VECTOR:  # softmax(x) keeps x's shape; along a dim, its own
        return "tensor" if node.keywords or len(node.args) > 1 else "elementwise"
    if entry.category in (functions.Category.REDUCTION, functions.Category.PAIRWISE):
        by_dim = any(k.arg in ("dim", "axis", "keepdim") for k in node.keywords) or (
            entry.name not in ("max", "min") and len(node.args) > (2 if entry.name == "norm" else 1))
        if entry.name in ("max", "min") and len(node.args) > 1:
            return "elementwise"  # max(a, b)
        return "tensor" if by_dim else "scalar"
    return "tensor"


def _is_ellipsis(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is Ellipsis


def _attribute_hint(node: ast.Attribute) -> str | None:
    """np.absolute(x), torch.sigmoid(x): the name gradcli gives the function, if it has it."""
    entry = functions.lookup(node.attr)
    if entry is not None:
        return f"write {node.attr}(...) without the prefix"
    hint = functions.suggestion(node.attr)
    return None if hint.startswith("did you mean") else hint  # by meaning, never a guess at the spelling


def _unary_name(op: ast.unaryop) -> str:
    return {ast.Not: "'not'", ast.Invert: "'~'"}.get(type(op), type(op).__name__)


def _is_plain_float(text: str) -> bool:
    return all(c in "0123456789.eE+-_" for c in text)


# Brackets inside brackets: a list literal's dimensions, as many as ones(...) takes (a tensor
# of more dimensions than torch's 64 fails inside torch, and a Jacobian doubles them).
MAX_LIST_DIMENSIONS = 8


def read_list(reader: Reader, node: ast.AST, level: int = 0) -> tuple[list[sympy.Expr], tuple[int, ...]]:
    """A (nested) bracketed list: its entries flattened, and its shape."""
    if not isinstance(node, (ast.List, ast.Tuple)):
        return [reader.read(node)], ()
    if not node.elts:
        raise reader.error("an empty list has nothing to compute", node)
    if level >= MAX_LIST_DIMENSIONS:
        raise reader.error(f"lists are nested more than {MAX_LIST_DIMENSIONS} deep (a value or expression has at "
                           f"most {MAX_LIST_DIMENSIONS} dimensions)", node,
                           hint="a tensor of many dimensions: ones(2,3,4) and the like, up to 8 sizes")
    reader.depth += 1
    if reader.depth > MAX_NESTING:
        raise reader.error(f"lists are nested more than {MAX_NESTING} levels deep", node)
    try:
        parts = [read_list(reader, e, level + 1) for e in node.elts]
    finally:
        reader.depth -= 1
    inner = parts[0][1]
    for (_, shape), elt in zip(parts, node.elts, strict=True):
        if shape != inner:
            raise reader.error("the list is ragged: every row must have the same length", elt)
    flat = [x for entries, _ in parts for x in entries]
    return flat, (len(parts),) + inner


def parse_expression(text: str) -> ParsedExpression:
    """Read an expression typed by a user. Raises GradcliError for anything not allowed."""
    text = text.strip()
    src = Source(text, "expression")
    tree = src.parse()
    # Nodes counted as sympy would count them (operations, calls, names and numbers), and no
    # further than needed: each takes a character at least, so a short text is not long.
    nodes = (n for n in ast.walk(tree) if isinstance(n, ast.expr))
    long = len(text) > LONG_EXPRESSION_NODES and any(True for _ in itertools.islice(nodes, LONG_EXPRESSION_NODES, None))
    reader = Reader(src, as_written=long)
    if isinstance(tree, ast.Tuple):
        raise GradcliError("a comma outside brackets", span=src.span(tree),
                           hint="write 3.5 for a decimal, or [f1, f2] for a vector function")
    if isinstance(tree, ast.List):
        components, shape = read_list(reader, tree)
        parsed = ParsedExpression(text, components, shape, reader.variables, reader.as_written, reader.spans)
    else:
        parsed = ParsedExpression(text, [reader.keep_shapes(reader.read(tree), tree)], None, reader.variables,
                                  reader.as_written, reader.spans)
    if not long:
        # The same text again, as typed, for the torch route (the same names give the same
        # symbols: sympy's Symbol is equal by name and assumptions).
        typed_reader = Reader(src, typed=True)
        typed = read_list(typed_reader, tree)[0] if isinstance(tree, ast.List) else [typed_reader.read(tree)]
        if typed != parsed.components:
            parsed.typed = typed
    return parsed
