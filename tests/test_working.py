"""Showing the working: diff, eval, graph, --explain and --accumulate (the seeds' lessons)."""

import json
import re
import subprocess
import sys

import pytest

from gradcli.commands.diff import diff


@pytest.mark.parametrize(
    "expression, var, plain, latex",
    [
        ("x**3", "x", "3*x**2", "3 x^{2}"),
        ("sin(x)*cos(x)", "x", "cos(2*x)", r"\cos{\left(2 x \right)}"),
        ("exp(2*x)", "x", "2*exp(2*x)", "2 e^{2 x}"),
        ("log(x)", "x", "1/x", r"\frac{1}{x}"),
        ("x**2*y", "y", "x**2", "x^{2}"),
        ("sqrt(x)", "x", "1/(2*sqrt(x))", r"\frac{1}{2 \sqrt{x}}"),
        ("sigmoid(x)", "x", "(1 - sigmoid(x))*sigmoid(x)", None),
        ("atan2(y, x)", "x", "-y/(x**2 + y**2)", r"- \frac{y}{x^{2} + y^{2}}"),
    ],
)
def test_diff_formulas_plain_and_latex(expression, var, plain, latex):
    report = diff(expression, [var])
    (d,) = report.derivatives
    assert d.formula == plain
    if latex is not None:
        assert d.latex == latex


def test_diff_orders_and_indices(run):
    result = run("diff", "x**3", "--order", "3", "--plain")
    assert result.exit_code == 0 and result.stdout.split() == ["3*x**2", "6*x", "6"]
    indexed = run("diff", "x[0]**2 + x[1]**3 + x[0]*x[1]", "--json")
    doc = json.loads(indexed.stdout)
    assert [(d["variable"], d["formula"]) for d in doc["derivatives"]] == [
        ("x[0]", "2*x[0] + x[1]"), ("x[1]", "x[0] + 3*x[1]**2")]


def test_diff_pretty_by_default(run):
    result = run("diff", "x**2/y", "y")
    assert result.exit_code == 0
    assert "df/dy =" in result.stdout and "─" in result.stdout  # a unicode fraction bar


def test_diff_errors(run):
    assert run("diff", "x**2", "z").exit_code == 2
    assert run("diff", "[x, y]").exit_code == 2
    assert run("diff", "x.y").exit_code == 2


def test_diff_does_not_import_torch():
    probe = (
        "import sys\n"
        "sys.argv = ['gradcli', 'diff', 'sin(x)*exp(x)', 'x', '--plain']\n"
        "from gradcli.cli.app import app\n"
        "try:\n    app(prog_name='gradcli')\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "exp(x)*sin(x) + exp(x)*cos(x)" or "exp(x)" in lines[0]
    assert lines[-1] == "False"


def test_eval_is_the_value_without_a_graph(run, run_json):
    result = run("eval", "3 + 2*x + x**2", "x=2", "--plain")
    assert result.exit_code == 0 and result.stdout == "11\n"
    code, doc = run_json("eval", "sin(x)", "x=[0, 1]", "--dtype", "float64")
    assert code == 0 and doc["value"]["data"][0] == 0.0
    assert any("no graph was recorded" in w for w in doc["warnings"])
    assert run("eval", "log(x)", "x=-1").exit_code == 1  # outside the domain


def test_seed_12_graph_has_the_seeds_leaves_and_nodes(run_json):
    code, doc = run_json("graph", "(x + w)*(w + 1)", "w=1", "x=2")
    assert code == 0
    kinds = sorted(n["kind"] for n in doc["nodes"])
    assert kinds == ["AccumulateGrad", "AccumulateGrad", "AddBackward0", "AddBackward0", "MulBackward0"]
    root = next(n for n in doc["nodes"] if n["id"] == doc["root"])
    assert root["kind"] == "MulBackward0"
    leaves = {n["leaf"]["name"]: n["leaf"] for n in doc["nodes"] if n["leaf"]}
    assert set(leaves) == {"w", "x"}
    assert leaves["w"] == {"name": "w", "shape": [], "is_leaf": True, "requires_grad": True, "grad": 5.0}
    assert leaves["x"]["grad"] == 2.0
    # the intermediates a, b, y of the seed: not leaves, grad None, with their grad_fn
    inter = {i["grad_fn"] for i in doc["intermediates"]}
    assert inter == {"AddBackward0", "MulBackward0"}
    assert all(i["is_leaf"] is False and i["grad"] is None for i in doc["intermediates"])
    by_id = {n["id"]: n for n in doc["nodes"]}
    assert sorted(by_id[c]["kind"] for p, c in doc["edges"] if p == doc["root"]) == ["AddBackward0"] * 2


def test_graph_tree_and_dot(run):
    tree = run("graph", "(x + w)*(w + 1)", "w=1", "x=2")
    assert tree.exit_code == 0
    for piece in ("f.grad_fn = MulBackward0", "AddBackward0", "AccumulateGrad", "is_leaf=True", "grad=5"):
        assert piece in tree.stdout
    dot = run("graph", "(x + w)*(w + 1)", "w=1", "x=2", "--dot").stdout
    assert dot.startswith("digraph autograd {") and dot.rstrip().endswith("}")
    node_ids = set(re.findall(r"^\s+(n\d+) \[label=\"[^\"]*\", shape=\w+\];$", dot, re.M))
    edges = re.findall(r"^\s+(n\d+) -> (n\d+);$", dot, re.M)
    assert len(node_ids) == 5 and len(edges) == 5
    assert all(a in node_ids and b in node_ids for a, b in edges)
    body = [line for line in dot.splitlines()[1:-1] if line.strip()]
    assert all(line.rstrip().endswith(";") for line in body)  # every statement is terminated


def test_graph_marks_constants(run):
    result = run("graph", "w*x", "w=1", "x=2", "--wrt", "w")
    assert result.exit_code == 0 and "x is a constant" in result.stdout


def test_accumulate_shows_the_seed_loop(run_json, run):
    code, doc = run_json("grad", "(x + w)*(w + 1)", "w=1", "x=2", "--accumulate", "4")
    assert code == 0
    acc = doc["accumulate"]
    assert [g["data"] for g in acc["grad_after_each_call"]["w"]] == [5.0, 10.0, 15.0, 20.0]
    assert acc["after_zero_grad"]["w"]["data"] == 5.0
    table = run("grad", "(x + w)*(w + 1)", "w=1", "x=2", "--accumulate", "4").stdout
    assert "without zeroing" in table and "20" in table


@pytest.mark.parametrize("command, args", [
    ("grad", ["2*x**2 + 5", "x=5"]),
    ("jacobian", ["[x*y, x + y]", "x=1", "y=2"]),
    ("hessian", ["x**2*y", "x=1", "y=2"]),
    ("vjp", ["x**2", "x=[1,2]", "v=[1,1]"]),
    ("jvp", ["x**2", "x=[1,2]", "v=[1,1]"]),
])
def test_explain_on_every_command(run, run_json, command, args):
    table = run(command, *args, "--explain")
    assert table.exit_code == 0
    assert "how this was computed" in table.stdout and "pitfall" in table.stdout
    code, doc = run_json(command, *args, "--explain")
    topics = [e["topic"] for e in doc["explain"]]
    assert topics[:4] == ["parsed", "torch", "leaves", "autograd"] and "pitfall" in topics
    torch_line = next(e["text"] for e in doc["explain"] if e["topic"] == "torch")
    assert "torch." in torch_line or "*" in torch_line


def test_explain_prints_the_torch_code(run_json):
    _, doc = run_json("grad", "2*x**2 + 5", "x=5", "--explain")
    text = {e["topic"]: e["text"] for e in doc["explain"]}
    assert text["torch"] == "f = 2 * torch.pow(x, 2) + 5"  # as typed (sympy's evaluated form is 5 + 2*x**2)
    assert text["autograd"] == "torch.autograd.grad(f, [x])"
    assert "4*x" in text["symbolic"]
