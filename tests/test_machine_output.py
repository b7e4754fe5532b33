"""Machine output at scale (issue 19): compact JSON into a pipe, inputs echoed only when small,
--plain that keeps a matrix's shape and never prints -0, batch lines that honour --plain, CSV
rows written block by block, and the Jacobian assembled in JSON.

The expected numbers come from the mathematics (hand-computed derivatives, numpy), never from
gradcli's own output.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest


def test_json_into_a_pipe_is_one_line_and_pretty_indents_it(run):
    compact = run("grad", "x**2*y", "x=3", "y=2", "--json")
    assert compact.exit_code == 0 and compact.stdout.count("\n") == 1
    pretty = run("grad", "x**2*y", "x=3", "y=2", "--json", "--pretty")
    assert pretty.stdout.startswith('{\n  "schema_version": 3,')
    assert json.loads(pretty.stdout) == json.loads(compact.stdout)
    assert json.loads(compact.stdout)["gradient"]["x"]["data"] == 12.0  # d(x^2 y)/dx = 2xy


def test_large_inputs_are_summarised_unless_asked_for(run):
    small = run("grad", "sum(p*t)", "p=ones(1000)", "t=2", "--wrt", "p", "--json")
    doc = json.loads(small.stdout)
    assert doc["values"]["p"]["data"] == [1.0] * 1000  # 1000 elements: still echoed
    large = run("grad", "sum(p*t)", "p=ones(1001)", "t=2", "--wrt", "p", "--json")
    doc = json.loads(large.stdout)
    assert doc["values"]["p"] == {"shape": [1001], "dtype": "float32", "elements": 1001}
    assert doc["values"]["t"]["data"] == 2.0
    assert doc["symbolic"]["p"]["value"] == {"shape": [1001], "dtype": "float64", "elements": 1001}
    assert doc["gradient"]["p"]["data"] == [2.0] * 1001  # the result itself is always whole: d/dp = t
    echoed = json.loads(run("grad", "sum(p*t)", "p=ones(1001)", "t=2", "--wrt", "p", "--json",
                            "--echo-values").stdout)
    assert echoed["values"]["p"]["data"] == [1.0] * 1001
    assert echoed["symbolic"]["p"]["value"]["data"] == [2.0] * 1001


def test_plain_prints_a_matrix_one_row_a_line(run):
    # d2/dx dy of x*y**2 = 2y, d2/dy2 = 2x: at (1, 2) the Hessian is [[0, 4], [4, 2]]
    result = run("hessian", "x*y**2", "x=1", "y=2", "--plain")
    assert result.stdout == "0 4\n4 2\n"


def test_plain_prints_higher_ranks_as_matrices_apart():
    from gradcli.render.text import plain_lines
    from gradcli.report import TensorData

    t = np.arange(12.0).reshape(2, 2, 3)
    assert plain_lines(TensorData(t, [2, 2, 3], "float64")) == ["0 1 2", "3 4 5", "", "6 7 8", "9 10 11"]


def test_plain_never_prints_minus_zero(run):
    # d(-x*y)/dy = -x = -0.0 at x = 0
    result = run("grad", "-x*y", "x=0", "y=1", "--plain")
    assert result.stdout == "-1\n0\n"


def test_plain_sets_several_results_apart_when_one_is_a_matrix(run):
    # d sum(x*y)/dx = y broadcast over x's rows; d/dy = column sums of x
    result = run("grad", "sum(x*y)", "x=[[1,2],[3,4]]", "y=[1,-2]", "--plain")
    assert result.stdout == "1 -2\n1 -2\n\n4 6\n"


def test_batch_honours_plain_per_line(run):
    lines = 'hessian "x*y**2" x=1 y=2 --plain\ngrad "x**2" x=3 --format plain\ngraph "2*x" x=1 --plain\n' \
            'grad "x**2" x=3\n'
    result = run("batch", "--jobs", "1", input=lines)
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert docs[0]["plain"] == "0 4\n4 2\n"
    assert docs[1]["plain"] == "6\n"
    assert docs[2]["plain"] is None and any("--plain" in w for w in docs[2]["warnings"])
    assert "plain" not in docs[3]


def test_csv_rows_of_a_tensor_are_what_numpy_computes(run):
    x = np.array([[1.0, -2.0], [3.0, 0.5]])
    result = run("grad", "sum(x**3)", "x=[[1,-2],[3,0.5]]", "--format", "csv", "--dtype", "float64")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["index"] for r in rows] == ["[0,0]", "[0,1]", "[1,0]", "[1,1]"]
    assert [float(r["autograd"]) for r in rows] == (3 * x**2).reshape(-1).tolist()
    assert all(r["status"] == "agree" and float(r["abs_error"]) == 0.0 for r in rows)


@pytest.mark.parametrize("size", [3, 70_000])  # one block of rows, and more than one
def test_csv_of_a_vector_has_a_row_per_element(run, size):
    result = run("grad", "sum(x**2)", f"x=ones({size})", "--format", "csv")
    lines = result.stdout.splitlines()
    assert lines[0] == "result,index,autograd,symbolic,abs_error,status"
    assert len(lines) == size + 1
    assert lines[1] == "x,[0],2.0,2.0,0.0,agree" and lines[-1] == f"x,[{size - 1}],2.0,2.0,0.0,agree"


def test_jacobian_json_assembles_the_matrix_beside_the_parts(run):
    # f = [r cos t, r sin t]: J = [[cos t, -r sin t], [sin t, r cos t]]
    r, t = 2.0, 0.5
    doc = json.loads(run("jacobian", "[r*cos(t), r*sin(t)]", "r=2", "t=0.5", "--json", "--dtype", "float64").stdout)
    matrix = doc["jacobian_matrix"]
    expected = [[np.cos(t), -r * np.sin(t)], [np.sin(t), r * np.cos(t)]]
    assert matrix["rows"] == ["f[0]", "f[1]"] and matrix["columns"] == ["r", "t"]
    assert np.allclose(matrix["autograd"]["data"], expected, rtol=1e-14, atol=0)
    assert np.allclose(matrix["symbolic"]["value"]["data"], expected, rtol=1e-14, atol=0)
    assert matrix["symbolic"]["formulas"] == [["cos(t)", "-r*sin(t)"], ["sin(t)", "r*cos(t)"]]
    assert doc["symbolic"]["r"]["formula"] == "[cos(t), sin(t)]"
    assert doc["symbolic"]["t"]["formula"] == "[-r*sin(t), r*cos(t)]"
    # the per-variable parts are the matrix's columns
    assert np.allclose(doc["jacobian"]["r"]["data"], [row[0] for row in expected], rtol=1e-14, atol=0)


def test_jacobian_of_a_vector_and_a_scalar_variable_concatenates_their_columns(run):
    # f = [x0^2 + 4 x1, r x0]: df/dx = [[2 x0, 4], [r, 0]], df/dr = [0, x0]
    doc = json.loads(run("jacobian", "[x[0]**2 + 4*x[1], r*x[0]]", "x=[2,3]", "r=5", "--json").stdout)
    matrix = doc["jacobian_matrix"]
    assert matrix["columns"] == ["x[0]", "x[1]", "r"]
    assert matrix["autograd"]["data"] == [[4.0, 4.0, 0.0], [5.0, 0.0, 2.0]]
    assert matrix["symbolic"]["formula_columns"] == ["x", "r"]
    assert matrix["symbolic"]["formulas"] == [["[2*x[0], 4]", "0"], ["x[0]: r; other elements: 0", "x[0]"]]


def test_the_hessian_names_every_variable(run):
    text = run("hessian", "x*y**2", "x=1", "y=2").stdout
    assert "Hessian of f over x, y" in text and "│ over x, y │" in text
    call = json.loads(run("hessian", "x*y**2", "x=1", "y=2", "--json").stdout)["call"]
    assert call.endswith("hessian(f, xs) with xs = torch.cat([x.reshape(-1), y.reshape(-1)])")
