"""The function registry (core/functions.py): one declaration per function, read by every stage.

What is checked here: every name the parser takes is declared with a description, a torch
lowering and an --explain text; the lowering's table is the registry's; keyword arguments
follow each signature; `gradcli functions` (list_functions and its two renderings) covers
every function.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys

import pytest
import sympy
import torch

from gradcli.commands.functions import list_functions
from gradcli.core import functions, lower, sympy_functions
from gradcli.core.functions import FUNCTIONS, INTERNAL_NODES, NODES, Category
from gradcli.core.lower import compile_expression, to_source
from gradcli.core.parse import FUNCTION_NAMES, parse_expression
from gradcli.errors import GradcliError
from gradcli.render.functions import render_functions
from gradcli.report import FunctionsReport

# Node types the lowering computes itself (arithmetic, shapes, the pieces of a Piecewise):
# not functions, so not in the registry. Everything else a parsed call makes must be.
STRUCTURAL = (sympy.Add, sympy.Mul, sympy.Pow, sympy.Piecewise, sympy.functions.elementary.piecewise.ExprCondPair,
              sympy.Symbol, sympy.core.relational.Relational,
              sympy.logic.boolalg.Boolean)


def sample_call(entry: functions.Function) -> str:
    """entry called with its required arguments (bce's probabilities kept within [0, 1])."""
    if entry.name == "bce":
        return "bce(y, x / 2)"
    special = {"einsum": 'einsum("i,i->", x, y)', "eye": "eye(2) * x", "stack": "stack([x, y])",
               "where": "where(x > 0.5, x, y)"}  # a string, a size, a list, a condition
    if entry.name in special:
        return special[entry.name]
    args = []
    for i, p in enumerate(entry.params):
        if p.default is not None:
            break
        args.append("1" if entry.name == "polygamma" and i == 0 else ("x", "y")[min(i, 1)])
    return f"{entry.name}({', '.join(args)})"


def function_nodes(expr: sympy.Basic) -> set[type]:
    return {type(n) for n in sympy.preorder_traversal(expr)
            if not n.is_Number and not isinstance(n, STRUCTURAL) and n.args}


@pytest.mark.parametrize("name", sorted(FUNCTION_NAMES))
def test_every_name_the_parser_takes_is_declared_with_a_lowering_and_an_explain_text(name):
    entry = functions.lookup(name)
    assert entry is not None and name in entry.names
    assert entry.description and entry.description == entry.description.strip()
    assert isinstance(entry.category, Category)
    assert entry.signature.startswith(f"{entry.name}(")
    parsed = parse_expression(sample_call(entry).replace(entry.name, name, 1))
    expr = parsed.components[0]
    made = function_nodes(expr)
    assert made <= set(NODES), f"{name} makes {made - set(NODES)}, which the registry does not declare"
    assert made <= {n.cls for n in entry.nodes}, f"{name} makes nodes its entry does not list"
    table = parsed.symbol_table()
    source = to_source(expr, table)
    for cls in made:  # the explain text is the registry's, never the fallback ClassName(...)
        assert f"{cls.__name__}(" not in source or NODES[cls].torch.endswith(f".{cls.__name__}")
    # x's two points: one inside (-1, 1) and one beyond, for the domains of atanh and acosh
    env = {"x": torch.tensor([0.3, 1.6], dtype=torch.float64), "y": torch.tensor([0.2, 0.9], dtype=torch.float64)}
    if entry.category in (Category.LINEAR_ALGEBRA, Category.CLASS_LOSS):
        # a symmetric positive-definite matrix; y a right-hand side, or a class index per row
        env = {"x": torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64),
               "y": torch.tensor([1.0, 0.0], dtype=torch.float64)}
    value = compile_expression(expr, table, dtype=torch.float64, device=torch.device("cpu"))(env)
    assert torch.isfinite(torch.as_tensor(value)).any(), (name, source)


def test_the_lowering_table_is_the_registrys():
    assert set(lower._FUNCTIONS) == set(NODES)
    declared = {n.cls for f in FUNCTIONS for n in f.nodes} | {n.cls for n in INTERNAL_NODES}
    assert declared == set(NODES)
    for node in INTERNAL_NODES:  # internal nodes say which derivatives contain them
        assert node.internal and node.kink is None
    for node in NODES.values():
        assert callable(lower.resolve(node.torch)), node.torch
        assert "ARG" in node.source(["ARG", "1", "2"]), node.cls  # the explain text shows its argument


def test_kink_conventions_are_declared_with_their_functions():
    assert functions.KINK_CONVENTIONS == {
        sympy.Abs: "abs'(0) = 0",
        sympy_functions.relu: "relu'(0) = 0",
        sympy.sign: "sign'(0) = 0",
        sympy.floor: "floor' = 0, at the integers too",
        sympy.ceiling: "ceil' = 0, at the integers too",
        sympy.Max: "a tie in max splits the gradient evenly",
        sympy.Min: "a tie in min splits the gradient evenly",
        sympy_functions.clamp: "clamp'(x) = 1 at min and max",
    }
    assert functions.JUMP_CONVENTIONS == {"sign'(0) = 0", "floor' = 0, at the integers too",
                                          "ceil' = 0, at the integers too"}
    assert set(functions.SLOPES) == {sympy.Abs, sympy.floor, sympy.ceiling}


def test_names_aliases_and_spellings_do_not_overlap():
    names = [n for f in FUNCTIONS for n in f.names]
    assert len(names) == len(set(names)) == len(FUNCTION_NAMES)
    spellings = {s for f in FUNCTIONS for s in f.spellings}
    assert not spellings & set(names)
    assert {"arctan", "Abs", "ln", "minimum", "Max", "ceiling", "loggamma"} <= set(names)


# --------------------------------------------------------------------------- keyword arguments

def value(text: str) -> list[float]:
    parsed = parse_expression(text)
    env = {"x": torch.tensor([-1.5, 0.25, 2.0], dtype=torch.float64),
           "y": torch.tensor([0.5, 0.5, -1.0], dtype=torch.float64)}
    out = compile_expression(parsed.components[0], parsed.symbol_table(), dtype=torch.float64,
                             device=torch.device("cpu"))(env)
    return torch.as_tensor(out).reshape(-1).tolist()


@pytest.mark.parametrize("by_name, in_order", [
    ("norm(x, p=1)", "norm(x, 1)"),
    ("leaky_relu(x, negative_slope=0.1)", "leaky_relu(x, 0.1)"),
    ("huber(x, y, delta=2)", "huber(x, y, 2)"),
    ("log(x**2, base=2)", "log(x**2, 2)"),
])
def test_keyword_arguments_mean_the_same_as_positional_ones(by_name, in_order):
    assert parse_expression(by_name).components == parse_expression(in_order).components
    assert value(by_name) == value(in_order)


def test_keyword_arguments_change_the_value():
    assert value("huber(x, y, delta=2)") != value("huber(x, y)")
    assert value("norm(x, p=1)") == [pytest.approx(3.75)]
    assert value("leaky_relu(x, negative_slope=0.1)")[0] == pytest.approx(-0.15)


@pytest.mark.parametrize("text, message, hint, column", [
    ("sin(x=1)", "sin takes no keyword arguments", "give its arguments in order: sin(x)", 6),
    ("norm(x, q=1)", "norm has no argument named 'q'", "its arguments: norm(x, p=2, dim=None, keepdim=False)", 10),
    ("huber(x, y, 2, delta=2)", "huber is given delta twice", "its arguments: huber(input, target, delta=1)", 21),
    ("huber(x, target=y)", "the argument target of huber cannot be given by name",
     "give it in order: huber(input, target, delta=1)", 16),
    ("norm(p=1)", "norm is missing its argument x", "its arguments: norm(x, p=2, dim=None, keepdim=False)", 0),
    ("norm(x, **d)", "'**' unpacking is not allowed", None, 10),
    ("huber(x, y, 1, 2)", "huber takes 2 to 3 arguments, not 4", None, 0),
    ("huber(x, delta=1)", "huber is missing its argument target", "its arguments: huber(input, target, delta=1)", 0),
    ("exp(x, y=1)", "exp takes no keyword arguments", "give its arguments in order: exp(x)", 9),
    ("norm(x, p=y)", "the p of norm(x, p) must be a number", None, 0),
    ("huber(x, y, delta=-1)", "the delta of huber(a, b, delta) must be positive", None, 0),
])
def test_keyword_arguments_refused_with_a_reason(text, message, hint, column):
    with pytest.raises(GradcliError) as info:
        parse_expression(text)
    assert info.value.message == message
    assert info.value.hint == hint
    assert info.value.span is not None and info.value.span.start == column


# --------------------------------------------------------------------------- unknown functions

@pytest.mark.parametrize("text, hint", [
    ("sn(x)", "did you mean sin?"),
    ("zzyzx(x)", "gradcli functions lists the functions"),
    ("absolute(x)", "gradcli calls it abs: abs(x)"),
    ("mse_loss(x, y)", "gradcli calls it mse: mse(input, target)"),
    ("amax(x)", "gradcli calls it max: max(x, ..., dim=None, keepdim=False)"),
    ("np.sin(x)", "write sin(...) without the prefix"),
    ("F.huber_loss(x, y)", "gradcli calls it huber: huber(input, target, delta=1)"),
])
def test_unknown_functions_are_named_the_gradcli_way(text, hint):
    with pytest.raises(GradcliError) as info:
        parse_expression(text)
    assert info.value.hint == hint


def test_other_spellings_stay_variable_names():
    assert set(parse_expression("absolute * power").variables) == {"absolute", "power"}


# --------------------------------------------------------------------------- gradcli functions

def test_list_functions_covers_every_function():
    report = list_functions()
    assert isinstance(report, FunctionsReport)
    assert [f.name for f in report.functions] == [f.name for f in FUNCTIONS]
    listed = {n for f in report.functions for n in (f.name, *f.aliases)}
    assert listed == set(FUNCTION_NAMES)
    for f in report.functions:
        assert f.description and f.signature.startswith(f.name + "(") and f.category in {c.value for c in Category}
    by_name = {f.name: f for f in report.functions}
    assert by_name["huber"].signature == "huber(input, target, delta=1)"
    assert by_name["abs"].kink == "abs'(0) = 0" and by_name["sin"].kink is None
    assert by_name["max"].kink == "a tie in max splits the gradient evenly"


@pytest.mark.parametrize("name, expected", [("sin", "sin"), ("arctan", "atan"), ("Abs", "abs"), ("mse_loss", "mse")])
def test_list_functions_by_name_alias_or_spelling(name, expected):
    report = list_functions(name)
    assert [f.name for f in report.functions] == [expected]


def test_list_functions_unknown_name():
    with pytest.raises(GradcliError) as info:
        list_functions("sinn")
    assert info.value.message == "unknown function 'sinn'"
    assert info.value.hint == "did you mean sin?"


def test_functions_as_json():
    out = io.StringIO()
    render_functions(list_functions(), "json", out)
    text = out.getvalue()
    doc = json.loads(text)  # one document (indented, as every command's --json)
    assert text.startswith("{\n  ") and text.endswith("}\n")
    line = io.StringIO()
    render_functions(list_functions(), "ndjson", line)
    assert line.getvalue().count("\n") == 1 and json.loads(line.getvalue()) == doc
    assert doc["command"] == "functions" and isinstance(doc["schema_version"], int)
    assert len(doc["functions"]) == len(FUNCTIONS)
    first = doc["functions"][0]
    assert set(first) == {"name", "aliases", "signature", "category", "description", "kink"}
    leaky = next(f for f in doc["functions"] if f["name"] == "leaky_relu")
    assert leaky == {"name": "leaky_relu", "aliases": [], "signature": "leaky_relu(x, negative_slope=0.01)",
                     "category": "elementwise", "description": leaky["description"], "kink": None}


def test_functions_as_a_table_fit_80_columns_without_cutting_words(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    out = io.StringIO()
    render_functions(list_functions(), "table", out)
    text = out.getvalue()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    words = set(text.split())
    for category in ("elementwise", "reduction", "vector", "pairwise loss"):
        assert any(line.strip() == category for line in lines), category
    for f in list_functions().functions:
        assert f.signature in text
        for word in f.description.split() + [a + "," for a in f.aliases[:-1]] + f.aliases[-1:]:
            assert word in words, (f.name, word)  # wrapped at spaces, never cut
    assert "…" not in text


def test_functions_table_refuses_other_formats():
    with pytest.raises(GradcliError):
        render_functions(list_functions(), "csv", io.StringIO())


def test_listing_functions_does_not_import_torch():
    probe = ("import io, sys\n"
             "from gradcli.commands.functions import list_functions\n"
             "from gradcli.render.functions import render_functions\n"
             "render_functions(list_functions(), 'table', io.StringIO())\n"
             "print('torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_polygamma_order_reaches_torch_as_a_whole_number():
    assert value("polygamma(2, x**2 + 1)") == pytest.approx(
        [float(sympy.polygamma(2, v**2 + 1)) for v in (-1.5, 0.25, 2.0)])
    assert not math.isnan(value("digamma(x**2 + 1)")[0])


# --------------------------------------------------------------------------- the command

def test_gradcli_functions_lists_every_function_with_its_description(run):
    result = run("functions")
    assert result.exit_code == 0, result.stderr
    for f in FUNCTIONS:
        assert f.name in result.stdout
    # the descriptions, as rich wraps them: every word of each is printed
    words = set(result.stdout.split())
    for f in FUNCTIONS:
        assert set(f.description.split()) <= words | {w for w in f.description.split() if len(w) > 30}, f.name


def test_gradcli_functions_json_is_the_report(run):
    result = run("functions", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc == list_functions().to_dict()
    assert {f["name"] for f in doc["functions"]} == {f.name for f in FUNCTIONS}


def test_gradcli_functions_by_alias_and_unknown_name(run):
    doc = json.loads(run("functions", "arctan", "--json").stdout)
    assert [f["name"] for f in doc["functions"]] == ["atan"]
    result = run("functions", "hubr")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == ["error: unknown function 'hubr'", "hint: did you mean huber?"]


def test_the_unknown_function_hint_names_a_command_that_exists(run):
    result = run("grad", "frobnicate(x)", "x=1")
    assert result.exit_code == 2
    assert "gradcli functions" in result.stderr
    assert run("functions").exit_code == 0


@pytest.mark.parametrize("spelling", ["np.arctan", "numpy.arctan", "torch.atan", "torch.arctan"])
def test_gradcli_functions_reads_past_a_library_prefix(run, spelling):
    doc = json.loads(run("functions", spelling, "--json").stdout)
    assert [f["name"] for f in doc["functions"]] == ["atan"]
