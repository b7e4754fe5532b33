"""One verdict, one vocabulary: the same point gets the same word in every output, the exit
status follows from it the same way, and rendering never changes a report."""

import copy
import csv
import io
import json

import pytest

from gradcli.core.check import FAILING, VERDICTS, Verdict, fails, worst
from gradcli.render import render
from gradcli.render.table import MARKS


def test_the_words_are_one_vocabulary():
    assert [v.value for v in VERDICTS] == ["agree", "disagree", "not finite", "kink", "unavailable", "skipped",
                                           "sympy error"]
    assert {v for v in Verdict if fails(v)} == FAILING == {Verdict.DISAGREE, Verdict.NOT_FINITE}
    assert not fails("kink") and not fails("unavailable") and not fails("skipped") and not fails("agree")
    assert not fails("sympy error")  # finite differences confirmed autograd: exit 0 (README, How gradcli checks)
    assert fails("disagree") and fails("not finite")
    with pytest.raises(ValueError):
        fails("mismatch")  # a word of schema_version 1 is no verdict now
    assert worst([Verdict.AGREE, Verdict.KINK, Verdict.NOT_FINITE]) is Verdict.NOT_FINITE
    assert worst([Verdict.NOT_FINITE, Verdict.DISAGREE]) is Verdict.DISAGREE
    assert worst([]) is Verdict.AGREE
    assert json.dumps({"status": Verdict.NOT_FINITE}) == '{"status": "not finite"}'
    assert set(MARKS) == set(Verdict)  # every verdict has its mark in a table


def test_the_schema_lists_exactly_the_verdicts():
    from pathlib import Path

    schema = json.loads((Path(__file__).resolve().parent.parent / "docs" / "schema.json").read_text())
    assert schema["$defs"]["check_status"]["enum"] == [v.value for v in VERDICTS]


# (expression, the points, the verdict at each): the grad JSON, the --points row and the plot
# CSV must all say it.
SAME_POINT = [
    ("log(x)", ["-1", "0", "1"], ["not finite", "not finite", "agree"]),
    ("sqrt(x)", ["-1", "0", "1"], ["not finite", "not finite", "agree"]),
    ("abs(x)", ["-1", "0", "1"], ["agree", "kink", "agree"]),
    ("relu(x) + relu(-x)", ["-1", "0", "1"], ["agree", "kink", "agree"]),
    # autograd is nan (0 * inf) where the derivative, 1, exists: autograd's error, said alike
    ("cbrt(x)**3", ["-1", "0", "1"], ["agree", "disagree", "agree"]),
]


@pytest.mark.parametrize("expression,points,expected", SAME_POINT)
def test_the_same_point_gets_the_same_word_everywhere(run, tmp_path, expression, points, expected):
    grad_words = []
    for x, word in zip(points, expected, strict=True):
        result = run("grad", expression, f"x={x}", "--dtype", "float64", "--json")
        doc = json.loads(result.stdout)
        grad_words.append(doc["check"]["variables"]["x"]["status"])
        # The exit status follows from the verdict, the same way as for every command.
        assert result.exit_code == (1 if fails(word) else 0), (x, result.stdout)

    path = tmp_path / "points.csv"
    path.write_text("x\n" + "\n".join(points) + "\n")
    rows = run("grad", expression, "--points", str(path), "--dtype", "float64")
    points_words = [r[-1] for r in csv.reader(io.StringIO(rows.stdout))][1:]
    assert rows.exit_code == (1 if any(fails(w) for w in expected) else 0)

    plotted = run("plot", expression, f"x={points[0]}:{points[-1]}:{len(points)}", "--dtype", "float64",
                  "--format", "csv")
    table = list(csv.DictReader(io.StringIO(plotted.stdout)))
    assert [float(r["x"]) for r in table] == [float(x) for x in points]
    plot_words = [r["df/dx check"] for r in table]

    assert grad_words == points_words == plot_words == expected


def test_a_table_and_json_of_the_same_run_carry_the_same_verdict(run):
    cases = [
        (["grad", "abs(x)", "x=0"], "kink"),
        (["grad", "log(x)", "x=-1"], "not finite"),
        (["grad", "x**2", "x=3"], "agree"),
        (["grad", "mean((t - p)**2)", "p=[1,2,3]", "t=[2,3,4]", "--wrt", "p", "--dtype", "float16", "--rtol", "0",
          "--atol", "0"], "disagree"),
        (["grad", "x**2", "x=3", "--no-check"], "skipped"),
    ]
    for args, word in cases:
        table = run(*args, "--format", "table")
        doc = json.loads(run(*args, "--json").stdout)
        (verdict,) = [v["status"] for v in doc["check"]["variables"].values()]
        assert verdict == word
        mark, _style = MARKS[Verdict(word)]
        assert f"{mark} {word}" in table.stdout, (args, table.stdout)
        assert table.exit_code == (1 if fails(word) else 0) == (1 if doc["check"]["status"] == "failed" else 0)


def test_csv_and_ndjson_carry_the_verdict_word(run):
    rows = list(csv.DictReader(io.StringIO(run("grad", "abs(x)", "x=[0, 2]", "--format", "csv").stdout)))
    assert {r["status"] for r in rows} == {"kink"}  # the tensor's verdict, on each of its rows
    doc = json.loads(run("grad", "abs(x)", "x=0", "--format", "ndjson").stdout)
    assert doc["check"]["variables"]["x"]["status"] == "kink" and doc["schema_version"] == 3


def test_minimize_says_the_verdict_words(run):
    doc = json.loads(run("minimize", "(x - 3)**2", "x=0", "--steps", "5", "--json").stdout)
    assert {v["status"] for p in doc["check"]["points"].values() for v in p["variables"].values()} == {"agree"}
    assert doc["schema_version"] == 3


def test_batch_results_carry_the_verdict_words(run):
    requests = 'grad "abs(x)" x=0\ngrad "log(x)" x=-1\ngrad "nope(" x=1\n'
    result = run("batch", input=requests)
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert docs[0]["check"]["variables"]["x"]["status"] == "kink" and docs[0]["exit_status"] == 0
    assert docs[1]["check"]["variables"]["x"]["status"] == "not finite" and docs[1]["exit_status"] == 1
    assert all(d["schema_version"] == 3 for d in docs)  # a line in error too


def _reports():
    import gradcli
    from gradcli.commands.minimize import minimize
    from gradcli.commands.plot import plot_data

    return [
        gradcli.grad("log(x) + sum(y)", x=-1, y="[1,2]"),  # warnings and a note
        gradcli.graph("x**2", x="[1,2]"),
        gradcli.diff("sum(x)*y"),
        minimize("(x - 3)**2", ["x=0"], steps=3, lr=2.0),
        plot_data("log(x)", ["x=-1:1:5"]),
    ]


@pytest.mark.parametrize("fmt", ["table", "json", "ndjson", "csv", "plain"])
def test_quiet_leaves_the_report_unchanged(fmt):
    for report in _reports():
        if report.command == "plot":
            continue  # drawn by render/plot.py: below
        before = copy.deepcopy(report.to_dict())
        assert report.warnings, report.command  # something for --quiet to leave out
        outputs = []
        for quiet in (True, False, True):
            out, err = io.StringIO(), io.StringIO()
            render(report, fmt, out, err, quiet=quiet)
            outputs.append((out.getvalue(), err.getvalue()))
            assert report.to_dict() == before, (report.command, fmt, quiet)
        assert outputs[0] == outputs[2]  # rendering twice gives the same text
        warning = report.warnings[0][:20]
        if fmt in ("json", "ndjson"):
            assert json.loads(outputs[1][0])["warnings"] == report.warnings
            assert json.loads(outputs[0][0])["warnings"] == []
            continue
        assert warning not in "".join(outputs[0]), (report.command, fmt)
        if fmt == "plain" and report.command in ("graph", "diff"):
            continue  # their plain output is the bare lines, without notes, loud or quiet
        assert warning in "".join(outputs[1]).replace("\n", " "), (report.command, fmt, outputs[1])


def test_quiet_plot_leaves_the_data_unchanged():
    from gradcli.render import plot as draw

    data = _reports()[-1]
    before = copy.deepcopy(data.to_dict())
    assert data.warnings
    for output in ("csv", "json"):
        out, err = io.StringIO(), io.StringIO()
        draw.show(data, output, None, out, err, quiet=True)
        assert err.getvalue() == "" and data.to_dict() == before


def test_every_report_shares_the_header_and_status():
    from gradcli.report import SCHEMA_VERSION, Report

    assert SCHEMA_VERSION == 3
    for report in _reports():
        assert isinstance(report, Report)
        doc = report.to_dict()
        assert doc["schema_version"] == 3 and doc["command"] == report.command and doc["gradcli_version"]
        assert doc["expression"] == report.expression
        assert report.status in ("ok", "failed")
        assert report.status == ("failed" if report.failed_otherwise() or any(fails(v) for v in report.verdicts())
                                 else "ok")
