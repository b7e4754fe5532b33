"""Jacobians, Hessians, higher orders, VJP and JVP: the seed cases and a second route for each."""

import json

import pytest
import torch

from gradcli import api


def test_seed_4_vector_function_jacobian_float16(run_json):
    code, doc = run_json("jacobian", "[x[0]**2 + x[1]*4, x[1]**3 + log(x[0])]", "x=[2,3]", "--dtype", "float16")
    assert code == 0
    assert doc["f"]["data"] == [16.0, 27.6875]
    assert doc["jacobian"]["x"]["data"] == [[4.0, 4.0], [0.5, 27.0]]
    assert doc["labels"]["x"] == {"rows": ["f[0]", "f[1]"], "columns": ["x[0]", "x[1]"]}
    assert doc["check"]["status"] == "ok"


@pytest.mark.parametrize("method", ["loop", "autograd", "rev", "fwd", "all"])
def test_seed_4_every_jacobian_method(run_json, method):
    code, doc = run_json("jacobian", "[x[0]**2 + x[1]*4, x[1]**3 + log(x[0])]", "x=[2,3]", "--dtype", "float16",
                         "--method", method)
    assert code == 0
    assert doc["jacobian"]["x"]["data"] == [[4.0, 4.0], [0.5, 27.0]]
    if method == "all":
        assert set(doc["methods"]) == {"loop", "autograd", "rev", "fwd"}
        assert all(m["agrees"] for m in doc["methods"].values())


def test_default_jacobian_method_is_said(run):
    result = run("jacobian", "[x*y, x + y, x - y]", "x=1", "y=2")
    assert result.exit_code == 0
    assert "method: fwd (forward mode: 2 input(s), 3 output(s))" in result.stdout


def test_seed_10_second_derivative(run_json):
    code, doc = run_json("grad", "x**2", "x=3", "--order", "2")
    assert code == 0
    assert doc["derivatives"]["1"]["data"] == 6.0
    assert doc["derivatives"]["2"]["data"] == 2.0
    assert doc["symbolic"]["1"]["formula"] == "2*x" and doc["symbolic"]["2"]["formula"] == "2"


def test_higher_orders_match_sympy_and_end_in_zeros(run_json):
    code, doc = run_json("grad", "x**3", "x=2", "--order", "5", "--dtype", "float64")
    assert code == 0
    assert [doc["derivatives"][str(k)]["data"] for k in range(1, 6)] == [12.0, 12.0, 6.0, 0.0, 0.0]
    code, doc = run_json("grad", "sin(x)", "x=[0.1, 0.2]", "--order", "3", "--dtype", "float64")
    assert code == 0
    assert doc["derivatives"]["3"]["data"] == pytest.approx([-torch.cos(torch.tensor(0.1)).item(),
                                                             -torch.cos(torch.tensor(0.2)).item()], rel=1e-6)


def test_order_2_with_several_variables_is_the_hessian(run_json):
    code, doc = run_json("grad", "x**2*y", "x=1", "y=2", "--order", "2")
    assert code == 0
    assert doc["command"] == "hessian"
    assert doc["hessian"]["hessian"]["data"] == [[4.0, 2.0], [2.0, 0.0]]


def test_order_limits(run):
    assert run("grad", "x**2", "x=1", "--order", "100000").exit_code == 2
    assert run("grad", "x*y", "x=1", "y=1", "--order", "3").exit_code == 2
    bad = run("grad", "x*sum(x)", "x=[1,2]", "--order", "2")
    assert bad.exit_code == 2 and "elementwise" in bad.stderr


def test_seed_13_vjp_on_eye(run_json):
    code, doc = run_json("vjp", "(x + 1)**2", "x=eye(5)", "v=ones(5,5)")
    assert code == 0
    got = doc["vjp"]["x"]["data"]
    assert got == [[4.0 if i == j else 2.0 for j in range(5)] for i in range(5)]
    assert doc["v"]["shape"] == [5, 5]


def test_vjp_shape_mismatch_names_both_shapes(run):
    result = run("vjp", "(x + 1)**2", "x=eye(5)", "v=ones(3)")
    assert result.exit_code == 2
    assert "v has shape [3] but f has shape [5, 5]" in result.stderr


def test_vjp_when_the_expression_has_its_own_v(run_json, run):
    code, doc = run_json("vjp", "[v*x, v + x]", "v=2", "x=3", "--vector", "[1, 1]", "--wrt", "x")
    assert code == 0 and doc["vjp"]["x"]["data"] == 3.0  # d(vx)/dx + d(v+x)/dx = 2 + 1
    assert run("vjp", "x*2", "x=[1,2]").exit_code == 2  # no v at all


def test_jvp_forward_mode(run_json):
    code, doc = run_json("jvp", "(x + 1)**2", "x=eye(3)", "v=ones(3,3)")
    assert code == 0
    assert doc["jvp"]["x"]["data"] == [[4.0 if i == j else 2.0 for j in range(3)] for i in range(3)]
    code, doc = run_json("jvp", "[x[0]*x[1], sin(x[0])]", "x=[1,2]", "v=[1,0]", "--dtype", "float64")
    assert code == 0
    assert doc["jvp"]["x"]["data"] == pytest.approx([2.0, torch.cos(torch.tensor(1.0, dtype=torch.float64)).item()])


def test_jvp_needs_one_input(run):
    result = run("jvp", "x*y", "x=1", "y=2", "v=1")
    assert result.exit_code == 2 and "--wrt" in result.stderr


def test_seed_17_jacobian_of_an_elementwise_matrix_function(run_json):
    code, doc = run_json("jacobian", "2*x**3 + 5*x**2 + 7*x + 10", "x=[[1,2,3],[4,5,6]]")
    assert code == 0
    assert doc["f"]["data"] == [[24.0, 60.0, 130.0], [246.0, 420.0, 664.0]]
    jac = torch.tensor(doc["jacobian"]["x"]["data"])
    assert list(jac.shape) == [2, 3, 2, 3]
    flat = jac.reshape(6, 6)
    assert torch.diagonal(flat).tolist() == [23.0, 51.0, 91.0, 143.0, 207.0, 283.0]
    assert (flat - torch.diag(torch.diagonal(flat))).abs().max() == 0


def test_seed_20_one_jacobian_per_input(run_json):
    code, doc = run_json("jacobian", "2*x**2 + 5*y**2", "x=[[1,2,3],[4,5,6]]", "y=[[5,6,7],[8,9,10]]")
    assert code == 0
    jx = torch.tensor(doc["jacobian"]["x"]["data"]).reshape(6, 6)
    jy = torch.tensor(doc["jacobian"]["y"]["data"]).reshape(6, 6)
    assert torch.diagonal(jx).tolist() == [4.0, 8.0, 12.0, 16.0, 20.0, 24.0]
    assert torch.diagonal(jy).tolist() == [50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
    assert jx.count_nonzero() == 6 and jy.count_nonzero() == 6


def test_dense_jacobian_with_a_reduction_matches_finite_differences():
    report = api.jacobian("x**2 + sin(x)*sum(x)", {"x": "[0.3, -1.2, 2.0]"}, dtype="float64")
    assert report.status == "ok"
    jac = torch.tensor(report.variables[0].gradient.data, dtype=torch.float64)
    x = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)

    def f(t):
        return t**2 + torch.sin(t) * t.sum()
    h = 1e-6
    fd = torch.stack([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in torch.eye(3, dtype=torch.float64)], dim=1)
    assert torch.allclose(jac, fd, atol=1e-6)


def test_broadcast_jacobian_scalar_against_vector():
    report = api.jacobian("a*t", {"a": "2", "t": "[1, 2, 3]"}, dtype="float64")
    assert report.status == "ok"
    by_name = {v.name: v for v in report.variables}
    assert by_name["a"].gradient.data == [1.0, 2.0, 3.0]  # shape [3] + [] = [3]
    assert by_name["t"].gradient.data == [[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0]]


def test_too_large_jacobian_is_refused_before_allocating(run):
    result = run("jacobian", "x**2", "x=ones(10**6)")
    assert result.exit_code == 2
    assert "1,000,000,000,000 entries" in result.stderr
    assert "vjp" in result.stderr and "jvp" in result.stderr


def test_hessian_symmetric_and_checked(run_json):
    code, doc = run_json("hessian", "x[0]**2 * x[1] + exp(x[1])", "x=[1,2]", "--dtype", "float64")
    assert code == 0
    e2 = torch.exp(torch.tensor(2.0, dtype=torch.float64)).item()
    h = doc["hessian"]["hessian"]["data"]
    assert h[0] == [4.0, 2.0] and h[1] == pytest.approx([2.0, e2])
    assert doc["symmetric"] is True
    assert doc["labels"]["hessian"]["rows"] == ["x[0]", "x[1]"]


def test_hessian_of_tensor_losses_with_reductions():
    report = api.hessian("0.5*mean((w*x - y)**2)", {"w": "[1.0, -0.5]", "x": "[[1, 2], [3, 4]]", "y": "[1, 0]"},
                         wrt="w", dtype="float64")
    assert report.status == "ok", report.variables[0].note
    # the Hessian of a mean squared error is X^T X / n, elementwise here: diag of mean over rows
    h = torch.tensor(report.variables[0].gradient.data)
    assert h.shape == (2, 2) and torch.allclose(h, h.T)


def test_matrix_table_has_row_and_column_labels(run):
    result = run("jacobian", "[x[0]**2 + x[1]*4, x[1]**3 + log(x[0])]", "x=[2,3]")
    assert result.exit_code == 0
    out = result.stdout
    assert "rows: outputs, columns: variables" in out
    for label in ("f[0]", "f[1]", "x[0]", "x[1]"):
        assert label in out


def test_large_results_are_summarised_with_a_pointer_to_json(run):
    result = run("jacobian", "x**2", "x=ones(20)")
    assert result.exit_code == 0
    assert "…" in result.stdout and "--json prints every element" in result.stdout
    full = run("jacobian", "x**2", "x=ones(20)", "--json")
    assert len(json.loads(full.stdout)["jacobian"]["x"]["data"]) == 20


@pytest.mark.parametrize("command", ["jacobian", "hessian", "vjp", "jvp"])
def test_every_command_shares_plain_and_exit_statuses(run, command):
    args = {"jacobian": ["x**2", "x=[1,2]"], "hessian": ["sum(x**3)", "x=[1,2]"],
            "vjp": ["x**2", "x=[1,2]", "v=[1,1]"], "jvp": ["x**2", "x=[1,2]", "v=[1,1]"]}[command]
    plain = run(command, *args, "--plain")
    assert plain.exit_code == 0 and plain.stdout.strip()
    assert all(float(tok) == float(tok) for tok in plain.stdout.split())
    bad = run(command, "x.y", "x=1")
    assert bad.exit_code == 2 and bad.stderr.startswith("error:")
    domain = run(command, *(["log(x)", "x=[-1, 2]"] + (["v=[1,1]"] if command in ("vjp", "jvp") else [])))
    assert domain.exit_code == 1
