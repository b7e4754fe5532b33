"""Hostile sizes: every input is answered (a result or an error) quickly and in bounded memory.

Parser-level inputs must be answered by `parse_expression` within 2 s; whole CLI runs, in
process, within 10 s (generous bounds: these machines are noisy). Memory is the growth of the
process's peak resident size, which must stay under 1 GiB: `9**9**9` computed exactly would
take 150 MB and minutes, `ones(10**10)` 37 GiB.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager

import pytest

from gradcli.core.parse import parse_expression
from gradcli.core.values import parse_value
from gradcli.errors import GradcliError

try:
    import resource
except ImportError:  # Windows: time is still checked, memory is not
    resource = None

PARSE_SECONDS = 2.0
CLI_SECONDS = 10.0
MEMORY_MB = 1024


def _peak_mb() -> float:
    if resource is None:
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


@contextmanager
def bounded(seconds: float, what: str):
    """Fail if the block takes longer than `seconds` or raises the peak memory by MEMORY_MB."""
    before = _peak_mb()
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    grown = _peak_mb() - before
    assert elapsed < seconds, f"{what}: took {elapsed:.2f} s (bound {seconds} s)"
    assert grown < MEMORY_MB, f"{what}: peak memory grew by {grown:.0f} MB"


def first_line(stderr: str) -> str:
    return stderr.split("\n", 1)[0]


# (input, what the error says; None: it is a result, not an error). The first block is the
# issue's list; the rest are what writing these tests found (each once hung or crashed).
PARSER_CASES = [
    ("9**9**9", "too large"),
    ("2**(10**10)", "too large"),
    ("((9**9)**9999)**9999", "too large"),
    ("1e999999999", "too large"),
    ("1" * 100_000, "too many digits"),  # a 10^5-digit integer literal
    ("(" * 10_000 + "x" + ")" * 10_000, "nested"),
    ("-" * 100_000 + "x", "nested"),
    ("gamma(10**10)", "too large"),
    # found here:
    ("(1/2)**(10**10)", "too small"),  # sympy wrote out 2**(10**10) exactly: 73 s, then exit 3
    ("(1/10)**5000", "too small"),  # a 5000-digit denominator: exit 3 when printed
    ("1e-999999999", "too small"),
    ("9**400*9**400*x", "too large"),  # exit 3 in the lowering
    ("(9**400*x)**1000000", "too large"),  # sympy computed 9**(4*10**8) exactly
    ("(2*x)**(10**10/3)", "too large"),
    ("(1 + 10**-20)**(10**30)", "too large"),  # exact: 10**31 digits
    ("sqrt(1 + 10**-20)**(10**30)", "too large"),
    ("polygamma(10**6, 1)", "at most 1000"),  # 6.6 s, then exit 3
    ("polygamma(1000, 1)", "too large"),
    ("polygamma(1, 10**10)", None),  # exactly, a sum of 10**10 terms: hung
    ("polygamma(1, -10**10 - 1/2)", "below -10^4"),  # in floating point, 10**10 steps: hung
    ("digamma(10**10)", None),
    ("digamma(-10**10 - 1/2)", None),
    ("x**(10**10)", "too large"),
    ("0x" + "f" * 9_000, "too large"),
    ("sin(" * 10_000 + "x" + ")" * 10_000, "nested"),
    ("+-" * 50_000 + "x", "nested"),
    ("x" + "**x" * 30_000, "nested"),
    ("x" + "[0]" * 10_000, "nested"),
    ("[" * 10_000 + "x" + "]" * 10_000, "nested"),
    ("/".join(["x"] * 30_000), None),
    ("2**(10**400)", "too large"),
    ("(1 + 10**-20)**(10**400)", "too large"),  # an mpmath exponent past float: OverflowError, exit 3
    ("x*floor(exp(10**7))", "too large"),  # floor() wrote out exp(10**7)'s 4.3 million digits: hung
    ("x*sin(exp(1000001))", "too large"),  # the lowering's evalf did: hung
    ("gamma(exp(1000001))", "too large"),  # mpmath's gamma at 10**434294: hung
    ("floor(log(2, 1 + 10**-20))", "cannot be computed"),  # ZeroDivisionError in evalf, exit 3
    ("(x**(2**(1/10**400)))**(1/2)", None),  # sympy's minimal polynomial of degree 10**400: hung
    ("((10**400**10**-400)**10**-400)", None),
]


def _case_id(case) -> str:
    text = case[0]
    return text if len(text) <= 40 else f"{text[:20]}...{len(text)}chars"


@pytest.mark.parametrize("text,says", PARSER_CASES, ids=[_case_id(c) for c in PARSER_CASES])
def test_parser_answers_quickly(text, says):
    with bounded(PARSE_SECONDS, _case_id((text,))):
        try:
            parse_expression(text)
            error = None
        except GradcliError as exc:
            error = exc
    if says is None:
        assert error is None, f"refused: {error}"
    else:
        assert error is not None, "accepted"
        assert says in error.message, error.message


def test_a_near_one_power_is_computed_in_floating_point():
    # Exactly, (1 + 10**-20)**(10**20) has 10**21 digits; its value is e.
    with bounded(PARSE_SECONDS, "near-one power"):
        parsed = parse_expression("x + (1 + 10**-20)**(10**20)")
    constant = parsed.expr.as_coeff_Add()[0]
    assert math.isclose(float(constant), math.e, rel_tol=1e-12)


@pytest.mark.parametrize("text,says", [c for c in PARSER_CASES if "x" not in c[0] and c[1]],
                         ids=[_case_id(c) for c in PARSER_CASES if "x" not in c[0] and c[1]])
def test_values_answer_quickly(text, says):
    with bounded(PARSE_SECONDS, _case_id((text,))):
        with pytest.raises(GradcliError) as info:
            parse_value(text)
    assert says in info.value.message


@pytest.mark.slow
@pytest.mark.parametrize("text,says", [c for c in PARSER_CASES if c[1]],
                         ids=[_case_id(c) for c in PARSER_CASES if c[1]])
def test_cli_answers_quickly(text, says, run):
    with bounded(CLI_SECONDS, _case_id((text,))):
        result = run("grad", text, "x=1")
    assert result.exit_code == 2, result.stderr
    assert result.stdout == ""
    assert first_line(result.stderr).startswith("error: ")
    assert says in first_line(result.stderr)
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("args,says", [
    (["grad", "x", "x=1", "--order", "100000"], "--order"),
    (["grad", "x", "x=1", "-n", "100000"], "--order"),
    # refused before allocating, with the size it would have needed
    (["grad", "x", "x=ones(10**10)"], "10,000,000,000 elements (37.3 GiB as float32)"),
    (["grad", "x", "x=ones(10**10)", "--dtype", "float64"], "(74.5 GiB as float64)"),
    (["grad", "x", "x=zeros(10**5, 10**5)"], "10,000,000,000 elements"),
    (["grad", "x", "x=full((10**5, 10**5), 1)"], "10,000,000,000 elements"),
    (["grad", "x", "x=linspace(0, 1, 10**15)"], "elements"),
    (["grad", "x", "x=0:1:10**15"], "elements"),
    (["grad", "x", "x=arange(10**12)"], "elements"),
    (["grad", "x", "x=randn(10**10)", "--seed", "1"], "elements"),
    (["jacobian", "x**2", "x=ones(10**6)"], "1,000,000,000,000 entries"),
    (["hessian", "sum(x**2)", "x=ones(10**6)"], "the limit is"),
    (["vjp", "x**2", "x=ones(10**10)", "v=ones(10**10)"], "elements"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_cli_refuses_huge_sizes(args, says, run):
    with bounded(CLI_SECONDS, " ".join(args)):
        result = run(*args)
    assert result.exit_code == 2, result.stderr
    assert result.stdout == ""
    assert first_line(result.stderr).startswith("error: ")
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def _hundred_kilobytes() -> str:
    """A sum of distinct terms like 3*sin(x/2)*y**2, just over 100 KB."""
    terms: list[str] = []
    size = 0
    while size < 100_000:
        i = len(terms)
        terms.append(f"{i % 9 + 1}*sin(x/{i + 2})*y**{i % 4 + 1}")
        size += len(terms[-1]) + 3
    return " + ".join(terms)


@pytest.mark.slow
def test_a_100_kb_expression_is_differentiated_and_checked():
    from gradcli import api

    text = _hundred_kilobytes()
    assert len(text) >= 100_000
    start = time.perf_counter()
    report = api.grad(text, {"x": 0.3, "y": 1.1})
    elapsed = time.perf_counter() - start
    print(f"\n100 KB expression ({len(text)} characters): {elapsed:.1f} s through gradcli.api.grad")
    assert [v.name for v in report.variables] == ["x", "y"]
    assert [v.status for v in report.variables] == ["agree", "agree"]
    assert report.status == "ok"


# Long expressions are kept as written (gradcli.core.limits.LONG_EXPRESSION_NODES) and
# differentiated by verify.derivative's own application of sympy's rules. Three routes must
# agree on them: that derivative, sympy.diff of the same expression, and autograd.

_MIXED_TERMS = [
    "sin(x/{k})*y**2", "exp(-x**2/{k})", "log(1 + x**2 + y**2)/{k}", "sqrt(x**2 + {k})*y",
    "x**y/{k}", "tanh({k}*x*y)", "abs(x - {k})", "relu(y - x/{k})", "sigmoid(x*y + {k})",
    "erf(x/{k})*cos(y)", "atan(x*y/{k})", "max(x, y/{k})", "x*y/(1 + {k}*x**2)", "softplus(x - y/{k})",
    "cosh(x/{k})**2", "(1 + y/{k})**(x/2)", "log(x*y + {k}, 2)", "asinh(x - {k}*y)",
]


def _mixed(terms: int) -> str:
    return " + ".join(_MIXED_TERMS[i % len(_MIXED_TERMS)].format(k=i + 2) for i in range(terms))


def test_a_long_expression_is_read_as_written_and_a_short_one_is_not():
    assert parse_expression(_mixed(300)).as_written
    assert not parse_expression(_mixed(10)).as_written
    assert not parse_expression("x" + " " * 5000).as_written  # characters are not nodes


@pytest.mark.slow
def test_the_long_derivative_agrees_with_sympy_diff_and_autograd():
    import sympy
    import torch

    from gradcli import api
    from gradcli.core import reference as verify
    from gradcli.core.lower import compile_expression

    text = _mixed(300)
    parsed = parse_expression(text)
    assert parsed.as_written and verify.is_long(parsed.expr)
    table = parsed.symbol_table()
    env = {"x": torch.tensor(0.7, dtype=torch.float64), "y": torch.tensor(1.3, dtype=torch.float64)}

    def value(expr):
        return float(compile_expression(expr, table, dtype=torch.float64, device=torch.device("cpu"))(env))
    for var in parsed.variables.values():
        ours = value(verify.derivative(parsed.expr, var.symbol))
        theirs = value(sympy.diff(parsed.expr, var.symbol))
        assert ours == pytest.approx(theirs, rel=1e-12), var.name
    report = api.grad(text, {"x": 0.7, "y": 1.3}, dtype="float64")
    assert [v.status for v in report.variables] == ["agree", "agree"]
    assert "not printed" in report.variables[0].formula


@pytest.mark.slow
@pytest.mark.parametrize("tail, says", [
    ("9**9**9", "too large"),
    ("__import__('os')", "unknown function"),
    ("x/(3 - 3)", "division by zero"),
    ("log(0)*x", "infinite or undefined"),
    ("(9**400*x)**1000000", "too large"),
    ("x*sin(exp(1000001))", "too large"),
])
def test_a_long_expression_keeps_every_guard(tail, says, run):
    text = _mixed(300) + " + " + tail
    with bounded(CLI_SECONDS, tail):
        result = run("grad", text, "x=0.7", "y=1.3")
    assert result.exit_code == 2, result.stderr
    assert first_line(result.stderr).startswith("error: ")
    assert says in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("text", [
    "x*" * 20000 + "x",  # kept as written: 20001 factors, not x**20001
    "*".join(f"(1 + x/{k})" for k in range(1, 3000)),
])
def test_a_long_product_is_differentiated_without_blowing_up(text, run):
    """The product rule writes n factors n times; halves keep it at n log n."""
    import json

    with bounded(CLI_SECONDS, text[:30]):
        result = run("grad", text, "x=0.001", "--dtype", "float64", "--json")
    assert result.exit_code == 0, result.stderr
    n = text.count("*") + 1
    exact = n * 0.001 ** (n - 1) if text.startswith("x*") else None
    document = json.loads(result.stdout)
    assert document["check"]["status"] == "ok"
    if exact is not None:
        assert document["gradient"]["x"]["data"] == pytest.approx(exact, abs=1e-300)


def _lowered_both_ways(text: str, values: dict, monkeypatch, dtype=None):
    """f and its gradient with long sums batched (lower.BATCHED_SUM_TERMS) and term by term."""
    import torch

    from gradcli.core import lower

    dtype = dtype or torch.float64
    parsed = parse_expression(text)
    table = parsed.symbol_table()
    results = []
    vector_sums = []
    real_vector_sum = lower._Lowerer._vector_sum

    def counted(self, template, numbers):
        vector_sums.append(len(numbers))
        return real_vector_sum(self, template, numbers)
    for batched in (True, False):
        with monkeypatch.context() as m:
            m.setattr(lower._Lowerer, "_vector_sum", counted)
            if not batched:
                m.setattr(lower, "BATCHED_SUM_TERMS", 10**9)
            fn = lower.compile_expression(parsed.expr, table, dtype=dtype, device=torch.device("cpu"))
            env = {n: torch.tensor(v, dtype=dtype, requires_grad=True) for n, v in values.items()}
            out = fn(env)
            grads = torch.autograd.grad(out.sum(), list(env.values()))
            results.append((out.detach(), [g.detach() for g in grads]))
        if batched:
            assert vector_sums, "nothing was batched"
            batched_count = len(vector_sums)
        else:
            assert len(vector_sums) == batched_count, "batched though BATCHED_SUM_TERMS says not to"
    return results


@pytest.mark.parametrize("values", [
    {"x": 0.7, "y": 1.3},
    {"x": [0.1, -2.0, 3.5], "y": 1.3},  # the terms broadcast over x's shape
    {"x": [[0.5, 1.5], [2.5, -0.5]], "y": [0.2, 0.9]},
])
def test_a_batched_long_sum_is_the_sum_term_by_term(values, monkeypatch, fresh_lowering):
    """Terms of one form computed as one vector give what the terms give one by one."""
    text = " + ".join(f"{k % 9 + 1}*sin(x/{k + 2})*y**{k % 4 + 1} - exp(-x**2/{k + 1})" for k in range(300))
    (f_batched, g_batched), (f_terms, g_terms) = _lowered_both_ways(text, values, monkeypatch)
    assert f_batched.shape == f_terms.shape
    assert torch_close(f_batched, f_terms)
    for a, b in zip(g_batched, g_terms, strict=True):
        assert a.shape == b.shape and torch_close(a, b)


def test_a_long_sum_of_mixed_forms_batches_what_it_can(monkeypatch, fresh_lowering):
    """abs, relu, max, log(., 2), x**y...: forms that repeat are batched, the rest term by term."""
    (f_batched, g_batched), (f_terms, g_terms) = _lowered_both_ways(_mixed(400), {"x": 0.7, "y": 1.3}, monkeypatch)
    assert torch_close(f_batched, f_terms)
    assert all(torch_close(a, b) for a, b in zip(g_batched, g_terms, strict=True))


def test_graph_traces_a_long_sum_term_by_term():
    """gradcli graph names every node torch ran: no batching under a trace."""
    import torch

    from gradcli.core.lower import compile_expression

    text = " + ".join(f"{k + 1}*sin(x/{k + 2})" for k in range(300))
    parsed = parse_expression(text)
    trace: list = []
    fn = compile_expression(parsed.expr, parsed.symbol_table(), dtype=torch.float64, device=torch.device("cpu"),
                            trace=trace)
    fn({"x": torch.tensor(0.5, dtype=torch.float64)})
    assert sum(1 for node, _ in trace if type(node).__name__ == "sin") == 300


def torch_close(a, b) -> bool:
    import torch

    return bool(torch.allclose(a, b, rtol=1e-12, atol=1e-12 * max(1.0, float(b.abs().max()))))


@pytest.mark.slow
def test_a_long_expression_is_shortened_in_a_table_and_whole_in_json(run):
    import json

    text = _mixed(300)
    table = run("grad", text, "x=0.7", "y=1.3")
    assert table.exit_code == 0, table.stderr
    assert f"({len(text)} characters in all)" in table.stdout
    assert len(table.stdout) < 5000 and "not printed" in table.stdout
    document = json.loads(run("grad", text, "x=0.7", "y=1.3", "--json").stdout)
    assert document["expression"] == text


# Found here outside the parser (gradcli/lower.py, gradcli/api.py), once internal errors (exit 3):
# a result or a one-line error is due.

@pytest.mark.parametrize("text", ["x*2**70", "x + 2**70", "x/2**70", "x*10**-300", "sin(x*10**300)"])
def test_large_integer_constants_are_lowered(text, run):
    result = run("grad", text, "x=1")
    assert result.exit_code in (0, 1, 2), result.stderr
    assert "internal error" not in result.stderr


def test_a_huge_seed_is_refused(run):
    result = run("grad", "x", "x=rand(2)", "--seed", str(2**70))
    assert result.exit_code == 2, result.stderr
    assert first_line(result.stderr).startswith("error: ")
