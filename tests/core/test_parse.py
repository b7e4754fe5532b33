"""The safe parser: what it accepts, what it refuses, and where it points."""

import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st

from gradcli.core import sympy_functions
from gradcli.core.parse import parse_expression
from gradcli.core.values import parse_assignment, parse_value
from gradcli.errors import GradcliError

x, y = sympy.symbols("x y", real=True)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1", sympy.Integer(1)),
        ("2.5*x", sympy.Float(2.5) * x),
        ("1e-3*x", sympy.Float("0.001") * x),
        ("x + y", x + y),
        ("x - y", x - y),
        ("x*y", x * y),
        ("x/y", x / y),
        ("x**2", x**2),
        ("x^2", x**2),
        ("x^2+1", x**2 + 1),  # ^ is power with power's precedence, not XOR's
        ("-x**2", -(x**2)),
        ("+x", x),
        ("(x + 1)*(y - 1)", (x + 1) * (y - 1)),
        ("pi*x", sympy.pi * x),
        ("e**x", sympy.exp(x)),
        ("exp(x)", sympy.exp(x)),
        ("log(x, 2)", sympy.log(x) / sympy.log(2)),
        ("log2(x)", sympy.log(x) / sympy.log(2)),
        ("log10(x)", sympy.log(x) / sympy.log(10)),
        ("ln(x)", sympy.log(x)),
        ("Abs(x)", sympy.Abs(x)),
        ("abs(x)", sympy.Abs(x)),
        ("Max(x, y)", sympy.Max(x, y)),
        ("min(x, y)", sympy.Min(x, y)),
        ("atan2(y, x)", sympy.atan2(y, x)),
        ("loggamma(x)", sympy.loggamma(x)),
        ("lgamma(x)", sympy.loggamma(x)),
        ("digamma(x)", sympy.polygamma(0, x)),
        ("polygamma(1, x)", sympy.polygamma(1, x)),
        ("sinc(x)", sympy_functions.sinc(x)),
        ("ceil(x) + ceiling(y)", sympy.ceiling(x) + sympy.ceiling(y)),
        ("arcsin(x)", sympy.asin(x)),
    ],
)
def test_accepts(text, expected):
    assert parse_expression(text).expr == expected


def test_unicode_names_are_variables():
    parsed = parse_expression("(θ*x - y)**2")
    assert list(parsed.variables) == ["θ", "x", "y"]


def test_names_count_as_written_even_when_sympy_cancels_them():
    parsed = parse_expression("x - x")
    assert str(parsed.expr) == "0"
    assert parsed.expr == sympy_functions.bcast(0, sympy.Symbol("x", real=True))  # x still sets the shape
    assert list(parsed.variables) == ["x"]


def test_slices_make_view_symbols():
    parsed = parse_expression("x[1:] - x[:-1] + x[::2, 0]")
    assert {str(s) for s in parsed.variables["x"].indices.values()} == {"x[1:]", "x[:-1]", "x[::2,0]"}


def test_subscripts_make_element_symbols():
    parsed = parse_expression("x[0]**2 + x[1,2] + x[-1]")
    var = parsed.variables["x"]
    assert set(var.indices) == {(0,), (1, 2), (-1,)}
    assert not var.used_whole


def test_bracketed_list_has_a_shape():
    parsed = parse_expression("[x[0]**2 + 4*x[1], x[1]**3 + log(x[0])]")
    assert parsed.shape == (2,)
    assert len(parsed.components) == 2
    nested = parse_expression("[[x, y], [y, x]]")
    assert nested.shape == (2, 2)


@pytest.mark.parametrize(
    "text, message, column",
    [
        ("x.__class__", "attribute access", 1),
        ("__import__('os')", "unknown function '__import__'", 1),
        ("sin('os')", "strings are not allowed", 5),
        ("eval(x)", "unknown function 'eval'", 1),
        ("open(x)", "unknown function 'open'", 1),
        ("getattr(x, y)", "unknown function 'getattr'", 1),
        ("lambda: 1", "lambda", 1),
        ("[i for i in x]", "comprehensions", 1),
        ("(y := 2)", "':='", 2),
        ("f'{x}'", "f-strings", 1),
        ("'%s' % x", "'%'", 1),
        ("x; y", "could not read this", 2),
        ("x if y else 1", "'if ... else'", 1),
        ("x < y", "comparisons", 1),
        ("x // 2", "'//'", 1),
        ("x % 2", "'%'", 1),
        ("x & y", "'&'", 1),
        ("sin(x, y)", "sin takes 1 argument, not 2", 1),
        ("foo(x)", "unknown function 'foo'", 1),
        ("sin", "sin is a function", 1),
        ("sin(x=1)", "keyword arguments", 7),
        ("x[0.5]", "whole number", 3),
        ("x[::-1]", "step must be positive", 3),
        ("sin(x)[::-1]", "step must be positive", 8),
        ("1j*x", "complex numbers", 1),
        ("True*x", "not a number", 1),
        ("_x + 1", "starting with '_'", 1),
        ("ｘ + 1", "look-alike", 1),
        ("𝑥 + 1", "look-alike", 1),
        ("1/0", "division by zero", 3),
        ("log(0)*x", "infinite or undefined", 1),
        ("9**9**9", "too large", 1),
        ("2**(10**10)", "too large", 1),
        ("sin(*x)", "unpacking", 5),
        ("x +", "ends too early", 4),
        ("", "empty", None),
        ("x\ny", "line break", 2),
        ("3,5*x", "a comma outside brackets", 1),
        ("x²", "invalid character", 2),
        ("[x, [y]]", "ragged", 5),
        ("exp(x, 2)", "exp takes 1 argument", 1),
        ("sin(\"x\")", "strings", 5),
        ("S(1)", "unknown function 'S'", 1),
        ("Symbol('x')", "unknown function 'Symbol'", 1),
    ],
)
def test_refuses_with_message_and_column(text, message, column):
    with pytest.raises(GradcliError) as info:
        parse_expression(text)
    err = info.value
    assert message in err.message
    if column is not None:
        assert err.span is not None and err.span.start + 1 == column
        lines = err.lines()
        assert lines[0].startswith("error: ") and f"(column {column})" in lines[0]
        if "\n" not in text:
            assert lines[2].index("^") - 2 == column - 1  # the caret sits under the column


def test_a_long_flat_sum_needs_no_recursion():
    parsed = parse_expression(" + ".join(f"{i % 7 + 1}*x**{i % 5}*y" for i in range(15_000)))
    assert parsed.variables.keys() == {"x", "y"}


def test_unknown_function_suggests_a_spelling():
    with pytest.raises(GradcliError) as info:
        parse_expression("sqr(x)")
    assert info.value.hint == "did you mean sqrt?"


def test_caret_columns_count_characters_not_bytes():
    with pytest.raises(GradcliError) as info:
        parse_expression("θ + x.real")
    assert info.value.span.start == 4


def test_overlong_and_deep_inputs_are_refused_quickly():
    with pytest.raises(GradcliError, match="characters long"):
        parse_expression("x+" * 150_000 + "x")
    with pytest.raises(GradcliError):
        parse_expression("(" * 500 + "x" + ")" * 500)
    with pytest.raises(GradcliError):
        parse_expression("-" * 5000 + "x")


@pytest.mark.parametrize(
    "text, shape, data",
    [
        ("5", (), 5.0),
        ("-2.5", (), -2.5),
        ("pi/4", (), 0.7853981633974483),
        ("sqrt(2)", (), 2**0.5),
        ("[1,2,3]", (3,), [1.0, 2.0, 3.0]),
        ("[[1,2],[3,4]]", (2, 2), [[1.0, 2.0], [3.0, 4.0]]),
    ],
)
def test_literal_values(text, shape, data):
    spec = parse_value(text)
    assert spec.kind == "literal" and spec.shape == shape
    assert spec.data == (pytest.approx(data) if shape == () else data)


@pytest.mark.parametrize(
    "text, kind, shape",
    [
        ("ones(2,3)", "ones", (2, 3)),
        ("ones((2,3))", "ones", (2, 3)),
        ("zeros(4)", "zeros", (4,)),
        ("eye(3)", "eye", (3, 3)),
        ("full((2,2), 0.5)", "full", (2, 2)),
        ("linspace(0, 1, 5)", "linspace", (5,)),
        ("arange(4)", "arange", (4,)),
        ("arange(1, 2, 0.25)", "arange", (4,)),
        ("rand(2)", "rand", (2,)),
        ("randn(3, 2)", "randn", (3, 2)),
        ("-5:5:200", "linspace", (200,)),
        ("-pi:pi:9", "linspace", (9,)),
    ],
)
def test_constructor_values(text, kind, shape):
    spec = parse_value(text)
    assert spec.kind == kind and spec.shape == shape


@pytest.mark.parametrize(
    "argument, message",
    [
        ("x", "expected NAME=VALUE"),
        ("x=", "empty"),
        ("x=y", "cannot refer to a variable"),
        ("x=sqrt(-1)", "not a real number"),
        ("x=[1,[2]]", "ragged"),
        ("x=ones(-1)", "whole number"),
        ("x=1:2", "START:STOP:COUNT"),
        ("x=0:1:2.5", "whole number"),
        ("sin=1", "reserved"),
        ("2x=1", "not a variable name"),
        ("--dtyp=float16", "no such option"),
        ("x=__import__('os')", "unknown function '__import__'"),
        ("x=[1, 'a']", "strings"),
        ("x=1e999", "too large"),
    ],
)
def test_bad_values(argument, message):
    with pytest.raises(GradcliError, match=None) as info:
        parse_assignment(argument)
    assert message in info.value.message


@given(st.one_of(st.floats(allow_nan=False, allow_infinity=False).map(repr),
                 st.integers(-10**20, 10**20).map(str),
                 st.sampled_from(["0", "-0", ".5", "5.", "1e-5", "-2.5E+3", "0e0", "1e-320", "1e308", "007"])))
def test_a_plain_number_reads_as_the_parser_reads_it(text):
    """parse_value takes plain decimals directly; in parentheses the same text goes through the parser."""
    try:
        slow = parse_value(f"({text})").data
    except GradcliError:
        with pytest.raises(GradcliError):
            parse_value(text)
        return
    assert parse_value(text).data == slow


def test_unknown_function_without_a_close_name_points_at_gradcli_functions():
    with pytest.raises(GradcliError) as info:
        parse_expression("qwzzy(x)")
    assert info.value.hint == "gradcli functions lists the functions"


def test_unknown_function_in_numpy_spelling_gets_its_gradcli_name():
    with pytest.raises(GradcliError) as info:
        parse_expression("absolute(x) + 1")
    assert info.value.message == "unknown function 'absolute'"
    assert info.value.hint == "gradcli calls it abs: abs(x)"


@pytest.mark.parametrize("text", ["log(x, 0)", "log(x, base=1)", "log(x, -2)"])
def test_a_log_base_with_no_logarithm_is_refused(text):
    # sympy reads log(x)/log(0) as 0, and both routes would agree on that 0
    with pytest.raises(GradcliError, match="base of log"):
        parse_expression(text)


def test_a_log_base_that_is_a_variable_is_kept():
    parsed = parse_expression("log(x, y)")
    assert list(parsed.variables) == ["x", "y"]
    x, y = (parsed.variables[n].symbol for n in "xy")
    assert sympy.simplify(parsed.expr - sympy.log(x) / sympy.log(y)) == 0
