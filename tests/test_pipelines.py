"""Shell pipelines: formats, standard input, values from files, --data, batch, the Python API."""

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest

import gradcli

COMMANDS = {
    "grad": ["x**2*y", "x=3", "y=2"],
    "jacobian": ["[x*y, x + y]", "x=1", "y=2"],
    "hessian": ["x**2*y", "x=1", "y=2"],
    "vjp": ["x**2", "x=[1,2]", "v=[1,1]"],
    "jvp": ["x**2", "x=[1,2]", "v=[1,1]"],
    "eval": ["x**2", "x=[1,2]"],
    "graph": ["x*y", "x=1", "y=2"],
    "diff": ["x**2*y"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv"])
def test_every_command_speaks_every_machine_format(run, command, fmt):
    result = run(command, *COMMANDS[command], "--format", fmt)
    assert result.exit_code == 0, result.stderr
    if fmt == "json":
        doc = json.loads(result.stdout)
        assert doc["schema_version"] == 3 and doc["command"] == command
    elif fmt == "ndjson":
        lines = result.stdout.splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["command"] == command
    else:
        rows = list(csv.reader(io.StringIO(result.stdout)))
        assert len(rows) >= 2 and all(len(r) == len(rows[0]) for r in rows)


def test_csv_numbers_round_trip_exactly(run):
    result = run("grad", "mean((t - p)**2)", "p=[1,2,3]", "t=[2,3,4]", "--wrt", "p", "--dtype", "float16", "-f", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [float(r["autograd"]) for r in rows] == [-0.66650390625] * 3  # float16's value, exactly
    assert [r["index"] for r in rows] == ["[0]", "[1]", "[2]"] and {r["status"] for r in rows} == {"agree"}


def test_expression_from_stdin(sh):
    result = sh("grad", "-", "x=3", "--plain", input="x**2\n")
    assert result.returncode == 0 and result.stdout == "6\n"
    two = sh("grad", "-", "x=3", input="x**2\nx**3\n")
    assert two.returncode == 2 and "gradcli batch" in two.stderr


@pytest.fixture
def files(tmp_path):
    (tmp_path / "d.csv").write_text("x,y\n1,2\n3,4\n5,6\n")
    (tmp_path / "plain.csv").write_text("1,2\n3,4\n")
    (tmp_path / "v.json").write_text("[[1, 2], [3, 4]]")
    (tmp_path / "v.txt").write_text("# a comment\n1 2 3\n")
    np.save(tmp_path / "w.npy", np.array([0.5, 1.5]))
    (tmp_path / "bad.csv").write_text("x\n1\nabc\n")
    return tmp_path


@pytest.mark.parametrize("value, expected", [
    ("@{d}/d.csv:x", [2.0, 6.0, 10.0]),
    ("@{d}/d.csv:y", [4.0, 8.0, 12.0]),
    ("@{d}/plain.csv", [[2.0, 4.0], [6.0, 8.0]]),
    ("@{d}/v.json", [[2.0, 4.0], [6.0, 8.0]]),
    ("@{d}/v.txt", [2.0, 4.0, 6.0]),
    ("@{d}/w.npy", [1.0, 3.0]),
])
def test_values_from_files(run_json, files, value, expected):
    code, doc = run_json("grad", "sum(x**2)", "x=" + value.format(d=files))
    assert code == 0 and doc["gradient"]["x"]["data"] == expected


@pytest.mark.parametrize("value, message", [
    ("@{d}/missing.csv", "no such file"),
    ("@{d}/d.csv:z", "has no column 'z'"),
    ("@{d}/bad.csv:x", "not a number"),
    ("@{d}/v.json:x", "only a .csv file has named columns"),
])
def test_file_value_errors(run, files, value, message):
    result = run("grad", "sum(x)", "x=" + value.format(d=files))
    assert result.exit_code == 2 and message in result.stderr


def test_value_from_stdin(sh):
    result = sh("grad", "sum(x**3)", "x=@-", "--plain", input="1 2 3\n")
    assert result.returncode == 0 and result.stdout == "3 12 27\n"


def test_data_binds_columns_by_name(run_json, files):
    code, doc = run_json("grad", "mean((y - (w*x + b))**2)", "w=1", "b=0", "--data", str(files / "d.csv"),
                         "--wrt", "w,b")
    assert code == 0
    assert doc["values"]["x"]["data"] == [1.0, 3.0, 5.0]
    assert doc["gradient"]["w"]["data"] == pytest.approx(-2 * (1 * 1 + 3 * 1 + 5 * 1) / 3)


def test_quiet_silences_notes(run):
    loud = run("grad", "x**2", "x=[1,2]", "--plain")
    quiet = run("grad", "x**2", "x=[1,2]", "--plain", "--quiet")
    assert "note:" in loud.stderr and quiet.stderr == "" and quiet.stdout == loud.stdout


def test_batch_mixed_lines_in_order(sh):
    lines = "\n".join([
        'grad "x**2" x=3',
        '# a comment',
        'jacobian "[x*y, x+y]" x=1 y=2 --plain',
        'grad "x.y" x=1',
        '{"command": "grad", "expr": "sin(x)", "values": {"x": 0.5}, "options": {"dtype": "float64"}}',
        'grad "mean((t - p)**2)" "p=[1,2,3]" "t=[2,3,4]" --wrt p --dtype float16 --rtol 0 --atol 0',
        'frobnicate x',
        '{"command": "grad", "expr": "x*y", "values": {"x": [1, 2], "y": 3}, "options": {"wrt": "x"}}',
    ])
    result = sh("batch", input=lines + "\n")
    assert result.returncode == 2  # some line was in error
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["line"] for d in docs] == [1, 3, 4, 5, 6, 7, 8]
    assert docs[0]["gradient"]["x"]["data"] == 6.0
    assert docs[1]["command"] == "jacobian"  # its --plain is replaced by machine output
    assert docs[2]["exit_status"] == 2 and "attribute access" in docs[2]["error"]["message"]
    assert docs[3]["dtype"] == "float64" and docs[3]["check"]["status"] == "ok"
    assert docs[4]["exit_status"] == 1 and docs[4]["check"]["status"] == "failed"
    assert docs[5]["exit_status"] == 2 and "frobnicate" in docs[5]["error"]["message"]
    assert docs[6]["gradient"]["x"]["data"] == [3.0, 3.0]


def test_batch_exit_status_summarises(sh):
    assert sh("batch", input='grad "x**2" x=3\n').returncode == 0
    assert sh("batch", input='grad "log(x)" x=-1\ngrad "x" x=1\n').returncode == 1


def test_piped_into_another_process():
    producer = subprocess.Popen([sys.executable, "-m", "gradcli", "grad", "x**2", "x=[1,2,3]", "--json"],
                                stdout=subprocess.PIPE)
    read_gradient = "import json, sys; print(json.load(sys.stdin)['gradient']['x']['data'])"
    consumer = subprocess.run([sys.executable, "-c", read_gradient],
                              stdin=producer.stdout, capture_output=True, text=True, timeout=120)
    producer.stdout.close()
    assert producer.wait(timeout=120) == 0
    assert consumer.stdout.strip() == "[2.0, 4.0, 6.0]"


def test_a_closed_pipe_ends_quietly():
    producer = subprocess.Popen([sys.executable, "-m", "gradcli", "eval", "x", "x=linspace(0,1,200000)", "--plain"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    producer.stdout.read(10)
    producer.stdout.close()
    _, err = producer.communicate(timeout=120)
    assert b"Traceback" not in err and b"BrokenPipe" not in err


def test_python_api_takes_values_as_keywords():
    report = gradcli.grad("2*x**2+5", x=5)
    assert report.variables[0].gradient.data == 20.0
    assert report.to_dict()["gradient"]["x"]["data"] == 20.0
    assert gradcli.jacobian("[x*y, x + y]", x=1, y=2).status == "ok"
    assert gradcli.hessian("x**2*y", x=1, y=2).variables[0].gradient.data == [[4.0, 2.0], [2.0, 0.0]]
    assert gradcli.vjp("x**2", x="[1, 2]", v="[1, 1]").variables[0].gradient.data == [2.0, 4.0]
    assert gradcli.jvp("x**2", x="[1, 2]", v="[1, 0]").variables[0].gradient.data == [2.0, 0.0]
    assert gradcli.evaluate("x + 1", x=1).f.data == 2.0
    assert gradcli.graph("x*y", x=1, y=2).nodes[0].kind == "MulBackward0"
    assert gradcli.diff("x**3", ["x"]).derivatives[0].formula == "3*x**2"


def test_batch_into_a_closed_pipe_ends_quietly_with_status_0(tmp_path):
    requests = tmp_path / "big.txt"
    requests.write_text('grad "x**2" x=3\n' * 2000)
    producer = subprocess.Popen([sys.executable, "-m", "gradcli", "batch", str(requests)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = producer.stdout.readline()  # | head -1
    producer.stdout.close()
    _, err = producer.communicate(timeout=300)
    assert json.loads(first)["line"] == 1
    assert err == b"" and producer.returncode == 0  # not click's 1, which would read as "a check disagreed"
