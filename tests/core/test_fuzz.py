"""Fuzzing with Hypothesis, deterministic (derandomize=True) so that CI sees the same inputs.

(a) Arbitrary text (any unicode, control characters included) as EXPR, with arbitrary
    argument lists, through the CLI in process: the exit status is 0, 1 or 2, never 3
    (internal error), and no traceback is ever printed.
(b) Random expressions over the supported functions, at random points, in float64: wherever
    f and the gradients are finite and the check does not say not finite/kink/unavailable,
    autograd and sympy must agree (status ok).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, note, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gradcli import api
from gradcli.cli.app import app
from gradcli.core.parse import parse_expression
from gradcli.errors import GradcliError

RUNNER = CliRunner()

CLI_SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
GRAD_SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# ------------------------------------------------------------------------------ (a) the CLI

# Pieces of real expressions, so that some random text gets past the parser.
TOKENS = ["x", "y", "x[0]", "x[1:]", "1", "2", "0", "0.5", "1e308", "1e-308", "9", "**", "^", "*", "/", "+",
          "-", "(", ")", "[", "]", ",", " ", "pi", "e", "sin(", "exp(", "log(", "sqrt(", "abs(", "gamma(",
          "polygamma(", "sum(", "mean(", "max(", "softmax(", "_", "=", ":", ".", "'", "\n", "\x00", "ｘ"]
EXPRESSION_LIKE = st.lists(st.sampled_from(TOKENS), max_size=14).map("".join)
ANY_TEXT = st.text(max_size=40)  # every code point but surrogates: control characters, RTL marks, ...
EXPR = st.one_of(ANY_TEXT, EXPRESSION_LIKE)

OPTIONS = ["--wrt", "--order", "-n", "--dtype", "--device", "--method", "--reduce", "--rtol", "--atol",
           "--seed", "--max-elements", "--format", "--vector", "--accumulate"]
FLAGS = ["--json", "--plain", "--no-check", "--check", "--explain", "--dot", "--help", "--version", "-h", "--"]
OPTION_VALUES = ["x", "y", "x,y", "", "0", "1", "2", "-1", "51", "1e-3", "nan", "inf", "float16", "bfloat16",
                 "float64", "int32", "cpu", "cuda", "mps", "all", "backward", "mean", "json", "plain", "table"]
VALUE_TEXT = st.one_of(ANY_TEXT, EXPRESSION_LIKE,
                       st.sampled_from(["1", "-2.5", "pi/4", "[1,2]", "[[1,2],[3,4]]", "ones(2,3)", "zeros(3)",
                                        "eye(2)", "full((2,2), 0.5)", "linspace(0,1,5)", "arange(4)", "rand(3)",
                                        "-5:5:7", "1:2", "[1,[2]]", "[]", "ones(10**12)", "nan", "1e999"]))
ARGUMENT = st.one_of(
    st.builds(lambda n, v: f"{n}={v}", st.sampled_from(["x", "y", "v", "z", "_x", "θ", "pi", "sin", ""]), VALUE_TEXT),
    st.lists(st.one_of(st.sampled_from(OPTIONS), st.sampled_from(OPTION_VALUES)), min_size=2, max_size=2),
    st.sampled_from(FLAGS),
    ANY_TEXT,
)


def _flatten(items) -> list[str]:
    out: list[str] = []
    for item in items:
        out.extend(item if isinstance(item, list) else [item])
    return out


COMMANDS = st.sampled_from(["grad", "grad", "grad", "jacobian", "hessian", "vjp", "jvp", "eval", "diff", "graph"])


@CLI_SETTINGS
@given(command=COMMANDS, expression=EXPR, arguments=st.lists(ARGUMENT, max_size=5).map(_flatten))
@example(command="grad", expression="x", arguments=["x=1"])
@example(command="grad", expression="x**2", arguments=["x=[1,2]", "--order", "2"])
@example(command="grad", expression="\x00", arguments=[])
@example(command="jacobian", expression="x", arguments=["x=", "--wrt", ""])
def test_cli_never_fails_internally(command, expression, arguments):
    args = [command, expression, *arguments]
    note(f"args: {args!r}")
    result = RUNNER.invoke(app, args, catch_exceptions=False)
    stdout, stderr = result.stdout, result.stderr
    note(f"exit {result.exit_code}\nstdout: {stdout[:2000]}\nstderr: {stderr[:2000]}")
    assert "Traceback" not in stdout and "Traceback" not in stderr
    assert "internal error" not in stderr
    assert result.exit_code in (0, 1, 2)
    if result.exit_code == 2 and stderr:
        # gradcli's own one-line errors, click's usage errors among them (cli/exits.py)
        assert stderr.startswith("error: "), stderr


# ------------------------------------------------------------------------------ (b) gradients

NUMBERS = st.sampled_from(["1", "2", "3", "0.5", "1.5", "2.5", "0.1", "pi", "e"])
LEAVES = st.one_of(st.sampled_from(["x", "y"]), st.sampled_from(["x", "y"]), NUMBERS)
UNARY = ["sin", "cos", "tan", "exp", "log", "tanh", "sigmoid", "sqrt", "abs", "softplus", "relu", "atan", "asinh",
         "erf", "sinh", "cosh", "cbrt", "log2", "log10", "erfc", "acos", "asin", "lgamma", "sign", "floor"]
BINARY_CALLS = ["min", "max", "atan2", "pow", "log"]


def _grow(children):
    return st.one_of(
        st.builds(lambda op, a, b: f"({a} {op} {b})", st.sampled_from(["+", "-", "*", "/"]), children, children),
        st.builds(lambda a, k: f"({a})**{k}", children, st.sampled_from(["2", "3", "-1", "0.5", "1.5", "x", "y"])),
        st.builds(lambda f, a: f"{f}({a})", st.sampled_from(UNARY), children),
        st.builds(lambda f, a, b: f"{f}({a}, {b})", st.sampled_from(BINARY_CALLS), children, children),
    )


EXPRESSIONS = st.recursive(LEAVES, _grow, max_leaves=7)
POINTS = st.one_of(st.floats(-3, 3, allow_nan=False, allow_subnormal=False),
                   st.sampled_from([0.0, 1.0, -1.0, 0.5, 2.0]))


def _finite(tensor) -> bool:
    return tensor is not None and bool(np.isfinite(np.asarray(tensor.array)).all())


@GRAD_SETTINGS
@given(expression=EXPRESSIONS, x=POINTS, y=POINTS)
@example(expression="sin(x)*exp(y)", x=1.0, y=2.0)
@example(expression="(x)**y", x=2.0, y=0.5)
def test_autograd_agrees_with_sympy(expression, x, y):
    try:
        names = list(parse_expression(expression).variables)
    except GradcliError as exc:  # a constant division by zero, (-1)**0.5, ...
        note(f"refused: {exc.message}")
        names = []
    assume(names)
    try:
        report = api.grad(expression, {n: {"x": x, "y": y}[n] for n in names}, dtype="float64")
    except GradcliError as exc:  # a complex constant: acos(2), log(x, -0.5)
        note(f"refused: {exc.message}")
        assume(False)
        return
    note(f"f = {report.parsed} at x={x}, y={y}: f = {report.f.flat()}")
    assume(_finite(report.f))
    for v in report.variables:
        note(f"d/d{v.name}: autograd {v.gradient.flat()}, sympy {v.formula} = "
             f"{v.symbolic.flat() if v.symbolic is not None else None}, status {v.status}, note {v.note}")
        if v.status in ("not finite", "kink", "unavailable"):
            continue
        if not (_finite(v.gradient) and _finite(v.symbolic)):
            continue
        assert v.status == "agree", (
            f"{expression} at x={x}, y={y}: d/d{v.name} autograd {v.gradient.flat()} vs sympy "
            f"{v.formula} = {v.symbolic.flat()} ({v.status}, {v.note}; max rel error {v.max_rel_error})")



# ------------------------------------------------------------------------------ found by fuzzing

def test_a_combinatorial_function_of_a_symbolic_constant():
    # lgamma(1 + pi) was sympy.Float(1 + pi): a TypeError, exit 3.
    from gradcli.core.parse import parse_expression as parse

    for text, value in [("lgamma(1 + pi)", math.lgamma(1 + math.pi)), ("gamma(pi/2)", math.gamma(math.pi / 2))]:
        assert math.isclose(float(parse(text).expr), value, rel_tol=1e-12)
    result = RUNNER.invoke(app, ["grad", "x*digamma(1 + pi)", "x=1"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr


# Found by the fuzzing outside the parser (once internal errors), and one still open, kept as a
# strict xfail so that its fix shows.

@pytest.mark.parametrize("text", ["x + relu(pi/4)", "x + softplus(sqrt(2))", "x + bce_logits(pi, 1)"])
def test_custom_functions_of_symbolic_constants(text):
    result = RUNNER.invoke(app, ["grad", text, "x=1"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("text", ["x + y", "[x, y]"])
def test_jacobian_of_mismatched_shapes(text):
    result = RUNNER.invoke(app, ["jacobian", text, "x=[1,2]", "y=[1,2,3]"], catch_exceptions=False)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: ")


def test_hessian_json_with_nan():
    result = RUNNER.invoke(app, ["hessian", "sqrt(x)*y", "x=0", "y=1", "--json"], catch_exceptions=False)
    assert result.exit_code == 1, result.stderr


def test_cancellation_in_the_reference_is_not_a_disagreement():
    """Found by the fuzzer: sympy's float64 value of -log(x)/(x*log(x)**2) + 1/(x*log(x))
    cancels catastrophically at tiny x; at 50 digits it is autograd's exact 0."""
    report = api.grad("log(x, x + y)", {"x": 4.498080910669398e-209, "y": 0.0}, dtype="float64")
    assert [v.status for v in report.variables] == ["agree", "agree"]
    x = report.variables[0]
    assert x.gradient.data == 0.0 and x.symbolic.data == 0.0
    assert "lost digits to rounding" in x.note and "at 50 digits it is 0" in x.note


def test_a_real_disagreement_survives_the_precise_reference(monkeypatch, fresh_lowering):
    import sympy
    import torch

    from gradcli.core import lower

    # autograd's route computes 1.01*sin(x), so its d/dx is 1.01*y*cos(x); sympy's is y*cos(x),
    # at 50 digits too. (d/dy is sin(x), lowered through the same tampered table: it agrees.)
    monkeypatch.setitem(lower._FUNCTIONS, sympy.sin, lambda x: 1.01 * torch.sin(x))
    report = api.grad("sin(x)*y", {"x": 0.5, "y": 2.0}, dtype="float64")
    assert [v.status for v in report.variables] == ["disagree", "agree"]
    assert "differ by up to" in report.variables[0].note
    assert report.status == "failed"


def test_a_constant_outside_a_functions_domain():
    result = RUNNER.invoke(app, ["grad", "x*erfinv(2)", "x=1.5"], catch_exceptions=False)
    assert result.exit_code in (1, 2), result.stderr
    assert "internal error" not in result.stderr
