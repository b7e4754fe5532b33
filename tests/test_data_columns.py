"""--data columns are data: constants unless --wrt names them, in grad as in minimize; and the
formula for a parameter over the rows says it is a sum (or mean) over them.

Expected gradients are worked out here with numpy from the CSV file, by hand.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from tests.helpers import ROOT

LINE = ROOT / "examples" / "data" / "line.csv"


def columns() -> tuple[np.ndarray, np.ndarray]:
    """x and y as gradcli computes with them: rounded to float32 (the reference is evaluated in
    float64 at the values in the user's dtype)."""
    with open(LINE, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return tuple(np.array([float(r[c]) for r in rows]).astype(np.float32).astype(np.float64) for c in "xy")


def test_grad_differentiates_the_parameters_not_the_data(run_json):
    x, y = columns()
    code, doc = run_json("grad", "(w*x + b - y)**2", "w=0.5", "b=0", "--data", str(LINE))
    assert code == 0
    assert doc["wrt"] == ["w", "b"] and set(doc["gradient"]) == {"w", "b"}
    residual = 0.5 * x + 0 - y
    np.testing.assert_allclose(doc["gradient"]["w"]["data"], np.sum(2 * x * residual), rtol=1e-5)
    np.testing.assert_allclose(doc["gradient"]["b"]["data"], np.sum(2 * residual), rtol=1e-5)
    # the formula is the sum over the rows, and its value is what it says
    assert doc["symbolic"]["w"]["formula"] == "sum(2*x*(b + w*x - y))"
    assert doc["symbolic"]["b"]["formula"] == "sum(2*b + 2*w*x - 2*y)"
    np.testing.assert_allclose(doc["symbolic"]["w"]["value"]["data"], np.sum(2 * x * residual), rtol=1e-12)


def test_with_reduce_mean_the_formula_is_the_mean_over_the_rows(run_json):
    x, y = columns()
    code, doc = run_json("grad", "(w*x + b - y)**2", "w=0.5", "b=0", "--data", str(LINE), "--reduce", "mean")
    assert code == 0
    assert doc["symbolic"]["w"]["formula"] == "mean(2*x*(b + w*x - y))"
    expected = np.mean(2 * x * (0.5 * x - y))
    np.testing.assert_allclose(doc["gradient"]["w"]["data"], expected, rtol=1e-5)
    np.testing.assert_allclose(doc["symbolic"]["w"]["value"]["data"], expected, rtol=1e-12)


def test_plain_prints_the_parameters_gradient_alone(run):
    result = run("grad", "(w*x + b - y)**2", "w=0.5", "b=0", "--data", str(LINE), "--plain")
    assert result.exit_code == 0
    assert len(result.stdout.split()) == 2  # dL/dw and dL/db, not 40 numbers more for the data


def test_the_table_shows_the_columns_as_constants(run):
    result = run("grad", "(w*x + b - y)**2", "w=0.5", "b=0", "--data", str(LINE))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert any(line.startswith("x = [") and line.endswith("(constant)") for line in lines)
    assert "torch.autograd.grad(f, [w, b])" in result.stdout


def test_a_column_named_in_wrt_is_differentiated(run_json):
    x, y = columns()
    code, doc = run_json("grad", "(w*x + b - y)**2", "w=0.5", "b=0", "--data", str(LINE), "--wrt", "w,x")
    assert code == 0 and doc["wrt"] == ["w", "x"]
    np.testing.assert_allclose(doc["gradient"]["x"]["data"], 2 * 0.5 * (0.5 * x - y), rtol=1e-5)  # elementwise


def test_only_data_and_no_wrt_says_how_to_differentiate_a_column(tmp_path, run):
    path = tmp_path / "xy.csv"
    path.write_text("x,y\n1,2\n3,4\n", encoding="utf-8")
    result = run("grad", "sum(x*y)", "--data", str(path))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: every variable is a column of --data {path}, and data are constants",
        "hint: name what to differentiate with --wrt (--wrt x)",
    ]


@pytest.mark.parametrize("command", ["jacobian", "hessian"])
def test_the_other_derivative_commands_treat_data_alike(run_json, command):
    code, doc = run_json(command, "sum((w*x - y)**2)", "w=0.5", "--data", str(LINE))
    assert code == 0 and doc["wrt"] == ["w"]


def test_minimize_and_grad_agree_on_what_is_a_parameter(run_json):
    _, grad_doc = run_json("grad", "mean((y - (w*x + b))**2)", "w=1", "b=0", "--data", str(LINE))
    _, minimize_doc = run_json("minimize", "mean((y - (w*x + b))**2)", "w=1", "b=0", "--data", str(LINE),
                               "--steps", "1")
    assert grad_doc["wrt"] == minimize_doc["wrt"] == ["w", "b"]
    for name in ("w", "b"):
        np.testing.assert_allclose(grad_doc["gradient"][name]["data"],
                                   minimize_doc["start"]["gradient"][name]["data"], rtol=1e-6)


def test_a_mean_written_in_the_expression_shows_the_mean_over_the_rows(run_json):
    """mean(...) typed in the expression, not --reduce: the formula is still over the rows (it
    read -x*(-b - w*x + y)/10 before, the 20 rows' 2/20 folded into one row's derivative)."""
    x, y = columns()
    code, doc = run_json("grad", "mean((y - (w*x + b))**2)", "w=1", "b=0", "--data", str(LINE))
    assert code == 0
    assert doc["symbolic"]["w"]["formula"] == "mean(-2*x*(-b - w*x + y))"
    np.testing.assert_allclose(doc["symbolic"]["w"]["value"]["data"], np.mean(-2 * x * (y - x)), rtol=1e-12)
