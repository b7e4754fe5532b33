"""Tensor programs from the command line (issue 17): exit statuses, notes and errors as users see them."""

import json

import pytest

DOT = ["grad", "dot(x, dot(A, x))", "A=[[1,2,0],[-1,3,4],[5,0,2]]", "x=[1,2,3]", "--wrt", "x"]
TRAP = ["grad", "where(x > 0, sqrt(x), 0)", "x=-1"]


def test_dot_of_a_matrix_and_a_vector_is_the_matrix_product(run):
    result = run(*DOT, "--plain")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == ["19", "25", "25"]


def test_matrix_programs_as_json(run_json):
    code, doc = run_json("grad", "sum((A @ x - b)**2)", "A=[[1,2],[3,4],[5,6]]", "x=[1,-1]", "b=[1,2,3]")
    assert code == 0 and doc["check"]["status"] == "ok"
    assert doc["gradient"]["x"]["data"] == [-62, -80]  # 2 A.T (A x - b)
    assert doc["gradient"]["A"]["data"] == [[-4, 4], [-6, 6], [-8, 8]]
    assert {doc["check"]["variables"][n]["status"] for n in ("x", "A")} == {"agree"}


def test_the_where_trap_exits_1_and_explains_itself(run):
    result = run(*TRAP)
    assert result.exit_code == 1
    text = " ".join((result.stdout + result.stderr).split())
    assert "disagree" in text and "0 * inf = nan" in text
    assert "where(x > 0, sqrt(where(x > 0, x, 1)), 0)" in text


def test_the_double_where_agrees(run):
    result = run("grad", "where(x > 0, sqrt(where(x > 0, x, 1)), 0)", "x=-1", "--plain")
    assert result.exit_code == 0 and result.stdout.split() == ["0"]


def test_a_shape_mismatch_is_one_error_line_with_a_caret(run):
    result = run("grad", "sum(A @ x)", "A=ones(2,3)", "x=[1,2]")
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: matmul: shapes [2, 3] and [2] do not fit")
    assert lines[1].strip() == "sum(A @ x)" and lines[2].strip() == "^^^^^"


def test_above_the_symbolic_limit_the_check_is_unavailable_and_says_why(run_json):
    """A batched product has no matrix form either: unavailable, with both reasons."""
    code, doc = run_json("grad", "sum(B @ x)", "B=ones(4,20,20)", "x=ones(20)", "--wrt", "x",
                         "--check", "symbolic")
    assert code == 0
    assert doc["check"]["variables"]["x"]["status"] == "unavailable"
    assert "exceed the symbolic limit" in doc["check"]["variables"]["x"]["note"]
    assert "no matrix form" in doc["check"]["variables"]["x"]["note"]


def test_above_the_symbolic_limit_the_matrix_form_checks(run_json):
    code, doc = run_json("grad", "sum(A @ x)", "A=ones(40,40)", "x=ones(40)", "--wrt", "x")
    assert code == 0
    assert doc["check"]["variables"]["x"]["status"] == "agree"
    assert doc["symbolic"]["x"]["formula"] == "Aᵀ @ ones"


def test_functions_lists_the_tensor_functions(run):
    result = run("functions")
    assert result.exit_code == 0
    for name in ("matmul", "transpose", "outer", "dot", "einsum", "diag", "eye", "stack", "where", "clamp", "var",
                 "std"):
        assert f"{name}(" in result.stdout, name
    assert "correction" in run("functions", "var").stdout


@pytest.mark.parametrize("expression", [
    'einsum("__import__(\'os\').system(\'true\')", x)',
    'einsum("ij", x) + "a"',
    "x.__class__",
    "where(x.real > 0, x, 0)",
])
def test_strings_and_attributes_stay_refused(run, expression):
    result = run("grad", expression, "x=[1, 2]")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ")


def test_installed_command_exit_statuses(sh):
    assert sh(*DOT, "--plain").stdout.split() == ["19", "25", "25"]
    trap = sh(*TRAP, "--json")
    assert trap.returncode == 1
    assert json.loads(trap.stdout)["check"]["variables"]["x"]["status"] == "disagree"
    mismatch = sh("grad", "outer(A, x)", "A=ones(2,2)", "x=[1,2]")
    assert mismatch.returncode == 2 and "outer takes two vectors, not shapes [2, 2] and [2]" in mismatch.stderr
