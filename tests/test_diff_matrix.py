"""`gradcli diff --shape`: the gradient in matrix form, from the command line and the library."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradcli.commands.diff import diff, parse_shape
from gradcli.core import matrix_form
from gradcli.errors import GradcliError


def test_elementwise_sum_in_matrix_form(run) -> None:
    result = run("diff", "sum(x**2 + exp(x)*y)", "x", "y", "--shape", "x=3", "--shape", "y=3")
    assert result.exit_code == 0, result.stderr
    assert "2*x + y*exp(x)" in result.stdout
    assert "exp(x)" in result.stdout.split("df/dy =")[1]


def test_latex_and_plain(run) -> None:
    latex = run("diff", "sum(x**2 + exp(x)*y)", "x", "--shape", "x=3", "--shape", "y=3", "--format", "latex")
    assert latex.stdout.strip() == r"y \circ e^{x} + 2 x"
    plain = run("diff", "mean(x**2)", "--shape", "x=4", "--plain")
    assert plain.stdout.strip() == "1/2*x"


def test_the_formula_is_the_gradient_torch_computes() -> None:
    """The printed formula, evaluated, is autograd's gradient of the same sum written by hand."""
    report = diff("sum(sin(x)*y) + mean(x**3)", ["x"], shapes=["x=5", "y=5"])
    (derivative,) = report.derivatives
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(5), rng.standard_normal(5)
    value = matrix_form.evaluate(derivative.expr, {"x": x.reshape(5, 1), "y": y.reshape(5, 1)}).ravel()
    xt = torch.tensor(x, requires_grad=True)
    ((torch.sin(xt) * torch.tensor(y)).sum() + (xt**3).mean()).backward()
    assert xt.grad is not None
    np.testing.assert_allclose(value, xt.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize(("text", "parsed"), [
    ("A=3x3", ("A", (3, 3))), ("x=3", ("x", (3,))), ("B=2,4", ("B", (2, 4))), ("s=()", ("s", ())),
    ("M=2×5", ("M", (2, 5))),
])
def test_parse_shape(text: str, parsed: tuple[str, tuple[int, ...]]) -> None:
    assert parse_shape(text) == parsed


@pytest.mark.parametrize("text", ["A", "A=3x", "A=0x3", "3=3", "A=axb", "A=-1"])
def test_bad_shapes_are_one_line_errors(text: str, run) -> None:
    with pytest.raises(GradcliError):
        parse_shape(text)
    result = run("diff", "sum(A)", "--shape", text)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --shape")


def test_shape_of_an_unknown_variable(run) -> None:
    result = run("diff", "sum(x**2)", "--shape", "z=3")
    assert result.exit_code == 2
    assert "z, not a variable" in result.stderr


def test_not_a_scalar(run) -> None:
    result = run("diff", "x**2", "--shape", "x=3")
    assert result.exit_code == 2
    assert "not a scalar" in result.stderr


def test_order_two_is_refused(run) -> None:
    result = run("diff", "sum(x**2)", "--shape", "x=3", "--order", "2")
    assert result.exit_code == 2
    assert "first order only" in result.stderr


def test_installed_entry_point(sh) -> None:
    done = sh("diff", "sum(x**2)", "x", "--shape", "x=3", "--format", "plain")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2*x"


def test_the_issues_quadratic_form(run) -> None:
    """Issue 17's example: (A + Aᵀ) @ x, and its LaTeX."""
    pretty = run("diff", "x @ A @ x", "x", "--shape", "x=3", "--shape", "A=3x3")
    assert pretty.exit_code == 0, pretty.stderr
    assert pretty.stdout.splitlines()[1:3] == ["df/dx =", "(A + Aᵀ) @ x"]
    latex = run("diff", "x @ A @ x", "x", "--shape", "x=3", "--shape", "A=3x3", "--format", "latex")
    assert latex.stdout.strip() == r"\left(A + A^{T}\right) x"
    plain = run("diff", "x @ A @ x", "--shape", "x=3", "--shape", "A=3x3", "--plain")
    assert plain.stdout.splitlines() == ["(A + A.T) @ x", "x @ x.T"]


def test_large_shapes_cost_no_more(run) -> None:
    result = run("diff", "sum((A @ x - b)**2) + logdet(X)", "--shape", "A=1000x1000", "--shape", "x=1000",
                 "--shape", "b=1000", "--shape", "X=1000x1000", "--plain")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["2*(A @ x - b) @ x.T", "2*A.T @ (A @ x - b)", "-2*(A @ x - b)", "inv(X).T"]


def test_grad_and_jacobian_show_the_matrix_formula(run_json) -> None:
    code, doc = run_json("grad", "x @ A @ x", "x=[1,2,3]", "A=[[1,2,0],[-1,3,4],[5,0,2]]", "--wrt", "x")
    assert code == 0
    assert doc["gradient"]["x"]["data"] == [19, 25, 25]  # numpy's meaning of x @ A @ x
    assert doc["symbolic"]["x"]["formula"] == "(A + Aᵀ) @ x"
    code, doc = run_json("jacobian", "exp(A @ x)", "x=[1,2]", "A=[[1,0],[0.5,1]]", "--wrt", "x")
    assert code == 0
    assert doc["symbolic"]["x"]["formula"] == "diag(exp(A @ x)) @ A"


def test_matrix_operations_without_shapes_ask_for_them(run) -> None:
    result = run("diff", "x @ A @ x", "x")
    assert result.exit_code == 2
    assert "depends on the shapes" in result.stderr and "--shape NAME=3" in result.stderr


def test_the_library_call_never_loads_torch() -> None:
    """gradcli.diff(..., shapes=...) is sympy and numpy only, like diff itself."""
    import subprocess
    import sys

    code = ("import sys, gradcli\n"
            "r = gradcli.diff('x @ A @ x', shapes=['x=3', 'A=3x3'])\n"
            "print(r.derivatives[0].pretty, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(A + Aᵀ) @ x False"


def test_a_double_transpose_is_undone(run) -> None:
    result = run("diff", "logdet(X.T @ X + eye(4))", "--shape", "X=4x4")
    assert result.exit_code == 0, result.stderr
    assert "X @ ((Xᵀ @ X + I)⁻¹ + (Xᵀ @ X + I)⁻ᵀ)" in result.stdout
