"""--check symbolic|numeric|all|none, and the arbitration between the routes.

Each route must catch a tampered lowering on its own; when sympy and autograd disagree, finite
differences name the route that erred, by the same rule (and exit status) in every command.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import sympy
import torch

import gradcli
from gradcli.commands.hessian import hessian
from gradcli.commands.jacobian import jacobian
from gradcli.commands.vectors import jvp, vjp
from gradcli.core import lower, reference
from tests.helpers import gradcli_executable
from tests.tampered import WrongBackwardSin


@pytest.fixture
def wrong_sympy_sin(monkeypatch, fresh_lowering):
    """sympy's rule for sin made wrong: d/dx sin(x) = 1.1*cos(x). The torch route is untouched."""
    monkeypatch.setattr(sympy.sin, "fdiff", lambda self, argindex=1: sympy.Float(1.1) * sympy.cos(self.args[0]))
    reference.derivative.cache_clear()
    yield
    reference.derivative.cache_clear()



def _route(report: Any, name: str, route: str) -> str:
    (variable,) = [v for v in report.variables if v.name == name]
    return str(variable.routes[route]["status"])


def test_a_wrong_sympy_rule_is_blamed_on_sympy(wrong_sympy_sin):
    report = gradcli.grad("sin(x)*y", x=0.5, y=2.0)
    x = report.variables[0]
    assert x.status == "sympy error" and x.erred == "sympy", x
    assert "sympy's formula disagrees with autograd and with finite differences: sympy's error" in (x.note or "")
    assert x.routes["symbolic"]["status"] == "disagree" and x.routes["numeric"]["status"] == "agree"
    assert report.variables[1].status == "agree"  # d/dy does not use sin's rule
    assert report.status == "ok"  # the answer shown is confirmed by finite differences (README: exit 0)
    # the same rule in every command
    assert jacobian("[sin(x), x*y]", x=0.5, y=2.0).variables[0].status == "sympy error"
    assert vjp("sin(x)", x=0.5, vector=2.0).variables[0].status == "sympy error"
    assert jvp("sin(x)", x=0.5, vector=2.0).variables[0].status == "sympy error"
    # sympy alone cannot tell who erred: a plain disagreement, exit 1
    alone = gradcli.grad("sin(x)*y", x=0.5, y=2.0, check="symbolic")
    assert alone.variables[0].status == "disagree" and alone.status == "failed"


def test_the_cli_exit_status_for_sympys_error_is_0_with_its_word(run, wrong_sympy_sin):
    result = run("grad", "sin(x)", "x=0.5", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    check = doc["check"]["variables"]["x"]
    assert check["status"] == "sympy error" and check["erred"] == "sympy"
    assert doc["check"]["status"] == "ok"
    table = run("grad", "sin(x)", "x=0.5")
    assert "! sympy error" in table.stdout and "sympy's formula is wrong for x" in table.stdout


def test_a_wrong_forward_lowering_is_not_blamed_on_sympy(monkeypatch, fresh_lowering):
    """Finite differences differentiate torch's f: a wrong f fools them as it fools autograd, so
    the blame is settled by comparing torch's f with sympy's own evaluation of it."""
    monkeypatch.setitem(lower._FUNCTIONS, sympy.sin, lambda x: 1.01 * torch.sin(x))
    report = gradcli.grad("sin(x)", x=0.5)
    x = report.variables[0]
    assert x.status == "disagree" and x.erred == "autograd", x
    assert "lowering to torch erred" in (x.note or "")
    assert report.status == "failed"


def test_a_tampered_backward_is_caught_by_each_route_and_blamed_on_autograd(monkeypatch, fresh_lowering):
    monkeypatch.setitem(lower._FUNCTIONS, sympy.sin, WrongBackwardSin.apply)
    numeric_only = gradcli.grad("sin(x)", x=0.5, check="numeric")
    assert numeric_only.variables[0].status == "disagree" and numeric_only.status == "failed"
    assert list(numeric_only.variables[0].routes) == ["numeric"]
    symbolic_only = gradcli.grad("sin(x)", x=0.5, check="symbolic")
    assert symbolic_only.variables[0].status == "disagree"
    assert list(symbolic_only.variables[0].routes) == ["symbolic"]
    both = gradcli.grad("sin(x)", x=0.5)
    x = both.variables[0]
    assert x.status == "disagree" and x.erred == "autograd"
    assert "autograd disagrees with sympy and with finite differences: autograd's error" in (x.note or "")


def test_check_all_reports_each_route_and_none_is_never_ok():
    report = gradcli.grad("sin(x)*exp(y)", x=1.0, y=2.0, check="all")
    for name in ("x", "y"):
        assert _route(report, name, "symbolic") == "agree" and _route(report, name, "numeric") == "agree"
    doc = report.to_dict()
    numeric_route = doc["check"]["variables"]["x"]["routes"]["numeric"]
    assert {"status", "max_abs_error", "tolerance", "fd_error", "rtol", "atol"} <= set(numeric_route)
    assert doc["check"]["mode"] == "all" and doc["check"]["routes"] == ["numeric", "symbolic"]
    skipped = gradcli.grad("x**2", x=3.0, check="none")
    assert skipped.variables[0].status == "skipped" and skipped.status == "unchecked"
    assert gradcli.grad("x**2", x=3.0, check=False).status == "unchecked"


def test_a_100_by_100_hessian_is_checked_numerically():
    report = hessian("sum(x**3*sin(x)) + sum(x)**2", ["x=linspace(-1,1,100)"])
    (h,) = report.variables
    assert h.routes["symbolic"]["status"] == "unavailable"  # sympy's Hessian stops at 64 elements
    assert h.routes["numeric"]["status"] == "agree" and h.status == "agree"
    assert report.status == "ok"


def test_a_500_by_500_jacobian_is_checked_numerically():
    report = jacobian("softmax(x)", ["x=randn(500)"], seed=3, check="numeric")
    (x,) = report.variables
    assert x.gradient.shape == [500, 500]
    assert x.routes["numeric"]["status"] == "agree" and x.routes["numeric"]["mode"] == "directions"
    assert report.status == "ok"


def test_higher_orders_are_checked_numerically():
    report = gradcli.grad("sin(x)", x=0.7, order=3, check="numeric", dtype="float64")
    assert [v.status for v in report.variables] == ["agree"] * 3


def test_check_option_on_the_command_line(run):
    ok = run("grad", "x**3", "x=2", "--check", "numeric", "--json")
    assert ok.exit_code == 0
    assert json.loads(ok.stdout)["check"]["variables"]["x"]["routes"]["numeric"]["status"] == "agree"
    bad = run("grad", "x**3", "x=2", "--check", "sometimes")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --check sometimes: choose one of auto, symbolic")
    clash = run("grad", "x**3", "x=2", "--check", "numeric", "--no-check")
    assert clash.exit_code == 2
    none = run("grad", "x**3", "x=2", "--check", "none", "--json")
    assert none.exit_code == 0 and json.loads(none.stdout)["check"]["status"] == "unchecked"


def test_installed_gradcli_exit_status_with_check_modes():
    import subprocess

    exe = gradcli_executable()
    for mode in ("symbolic", "numeric", "all", "none"):
        r = subprocess.run([exe, "jacobian", "[x[0]**2 + 4*x[1], x[1]**3 + log(x[0])]", "x=[2,3]", "--check", mode,
                            "--plain"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (mode, r.stderr)


def test_one_verdict_for_one_point_in_grad_points_and_plot(run, tmp_path):
    """grad at x = -1, a --points row at -1 and a plot through -1: the same word, the same exit status."""
    import csv
    import io

    from gradcli.core.check import fails

    for expression, where, word in (("log(x)", "-1", "not finite"), ("1/x", "0", "not finite"),
                                     ("abs(x)", "0", "kink"), ("sqrt(x)", "4", "agree")):
        single = run("grad", expression, f"x={where}", "--json")
        doc = json.loads(single.stdout)
        grad_word = doc["check"]["variables"]["x"]["status"]
        assert grad_word == word
        path = tmp_path / "points.csv"
        path.write_text(f"x\n{where}\n2\n")
        rows = run("grad", expression, "--points", str(path))
        row_words = [r["check"] for r in csv.DictReader(io.StringIO(rows.stdout))]
        assert row_words[0] == grad_word
        plotted = run("plot", expression, f"x=[{where}, 2]", "--format", "csv")
        plot_words = [r["df/dx check"] for r in csv.DictReader(io.StringIO(plotted.stdout))]
        assert plot_words[0] == grad_word
        assert single.exit_code == rows.exit_code == plotted.exit_code == (1 if fails(word) else 0)


def test_a_derivative_beyond_the_dtype_is_not_finite_in_grad_as_in_plot():
    report = gradcli.grad("cot(x)", x=1.7e-16, order=2)
    assert report.variables[1].status == "not finite"
    assert "beyond what float32 can hold" in (report.variables[1].note or "")


def test_torch_runs_the_expression_as_typed_and_says_what_overflowed():
    report = gradcli.grad("log(exp(x))", x=100.0)
    (x,) = report.variables
    assert report.f.array.item() == float("inf") and x.gradient.array.item() != x.gradient.array.item()  # inf, nan
    assert x.status == "not finite" and report.status == "failed"
    assert "exp(x) overflows float32" in x.note and "3.4028e+38" in x.note and "log(exp(x)) is x" in x.note
    # sympy's evaluated form is the reference's only: its derivative of x is 1
    assert x.formula == "1"
    assert gradcli.grad("log(exp(x))", x=100.0, dtype="float64").variables[0].status == "agree"

    report = gradcli.grad("x/x", x=0.0)
    assert report.f.array.item() != report.f.array.item()  # nan, as torch computes 0/0
    assert report.variables[0].status == "not finite" and "0/0" in report.variables[0].note
    assert "sympy simplifies x/x to 1" in report.variables[0].note

    report = gradcli.grad("exp(x)", x=20.0, dtype="float16")
    assert report.variables[0].status == "not finite" and "65504" in report.variables[0].note


@pytest.mark.parametrize(("expression", "values", "stable"), [
    ("log(1 + exp(x))", {"x": 100.0}, "log(1 + exp(x)) -> softplus(x)"),
    ("log(sum(exp(x)))", {"x": "[1, 100]"}, "log(sum(exp(x))) -> logsumexp(x)"),
    ("log(sigmoid(x))", {"x": -200.0}, "log(sigmoid(x)) -> -softplus(-x)"),
    ("sum(exp(x)/sum(exp(x)))", {"x": "[1, 100]"}, "exp(x)/sum(exp(x)) -> softmax(x)"),
])
def test_the_stable_form_is_named(expression: str, values: dict[str, Any], stable: str):
    report = gradcli.grad(expression, **values)
    assert report.status == "failed"
    assert stable in (report.variables[0].note or ""), report.variables[0].note


def test_explain_and_graph_show_the_torch_code_as_typed():
    from gradcli.commands.evaluate import graph

    explained = dict(gradcli.grad("sqrt(x**2)", x=-2.0, explain=True).explain)
    assert "torch.sqrt(torch.pow(x, 2))" in explained["torch"]
    assert "Abs(x)" in explained["parsed"]  # sympy's form, for the reference
    labels = [n.label for n in graph("log(exp(x))", x=1.0).nodes if n.label]
    assert any("log" in label for label in labels) and any("exp" in label for label in labels)


def test_vjp_and_jvp_are_checked_numerically():
    assert vjp("[x[0]*x[1], sin(x[0])]", ["x=[1,2]", "v=[1,-2]"], check="numeric").variables[0].status == "agree"
    assert jvp("[x[0]*x[1], sin(x[0])]", ["x=[1,2]", "v=[1,-2]"], check="numeric").variables[0].status == "agree"


# ------------------------------------------------------------------ sympy's NaN is not a kink

def test_sympys_overflow_is_not_called_a_kink_and_finite_differences_check_instead(run):
    """logsumexp at 1000: sympy's exp(x)/sum(exp(x)) is nan/nan in float64, though f is smooth.
    It used to read "kink" and exit 0 with nothing checked; now finite differences check it."""
    import numpy as np

    result = run("grad", "logsumexp(x)", "x=[1000,999,998]", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    check = doc["check"]["variables"]["x"]
    assert check["status"] == "agree" and doc["check"]["status"] == "ok"
    assert check["routes"]["symbolic"]["status"] == "unavailable"
    assert "f has no kink" in check["routes"]["symbolic"]["note"]
    assert check["routes"]["numeric"]["status"] == "agree"
    softmax = np.exp([0.0, -1.0, -2.0]) / np.exp([0.0, -1.0, -2.0]).sum()  # the gradient, by hand
    assert np.allclose(doc["gradient"]["x"]["data"], softmax, rtol=1e-4)  # float32 at 1000: its ulp is 6e-5


def test_a_wrong_gradient_behind_sympys_overflow_is_caught():
    """torch's det has gradient 0 at a singular matrix (the transposed adjugate, [[4, -2], [-2, 1]],
    is right); a tiny logsumexp term that overflows sympy's formula used to hide that as a kink."""
    report = gradcli.grad("det(A) + 1e-30*logsumexp(1000*A)", {"A": "[[1,2],[2,4]]"})
    assert report.status == "failed"
    (a,) = report.variables
    assert a.status == "disagree" and a.routes["numeric"]["status"] == "disagree"


def test_a_real_kink_is_still_a_kink(run):
    result = run("grad", "relu(x) + logsumexp([y, 2*y])", "x=0", "y=1", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["check"]["variables"]["x"]["status"] == "kink"


def test_point_by_point_a_nan_of_sympys_is_a_kink_only_where_f_has_one():
    """The same rule as compare(): --points and plot judge each point by pointwise_verdicts."""
    import numpy as np

    from gradcli.core.check import CODES, VERDICTS, Verdict, pointwise_verdicts

    f, autograd, sympys = np.array([1.0, 2.0]), np.array([0.5, 1.0]), np.array([np.nan, 1.0])
    words = {kinks: [VERDICTS[c] for c in pointwise_verdicts(f, autograd, sympys, rtol=1e-4, atol=1e-5,
                                                               largest=3.4e38, kinks=kinks)]
             for kinks in (True, False)}
    assert words[True] == [Verdict.KINK, Verdict.AGREE]
    assert words[False] == [Verdict.UNAVAILABLE, Verdict.AGREE]
    assert CODES[Verdict.UNAVAILABLE] != CODES[Verdict.KINK]
