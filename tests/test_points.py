"""gradcli grad EXPR --points FILE: many points in one call, checked row by row.

The reference is independent of gradcli: numpy evaluating the derivative written out by hand.
"""

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from gradcli.commands.points import CHECK_NAMES, grad_points
from gradcli.errors import GradcliError
from gradcli.inputs import reset_stdin
from tests.helpers import gradcli_executable

EXPR = "sin(x)*exp(-x**2) + log(1 + y**2)"


@pytest.fixture(autouse=True)
def fresh_stdin():
    """Standard input can be claimed once per process; each in-process run here is a new process's worth."""
    reset_stdin()


def by_hand(x, y):
    """f, df/dx, df/dy of EXPR, differentiated on paper."""
    e = np.exp(-x**2)
    return np.sin(x) * e + np.log1p(y**2), np.cos(x) * e - 2 * x * np.sin(x) * e, 2 * y / (1 + y**2)


def write_csv(path, columns: dict):
    names = list(columns)
    with open(path, "w") as f:
        f.write(",".join(names) + "\n")
        f.write(("%r," * (len(names) - 1) + "%r\n") * len(columns[names[0]])
                % tuple(np.column_stack(list(columns.values())).ravel().tolist()))
    return path


@pytest.fixture(scope="module")
def grid_points(tmp_path_factory):
    rng = np.random.default_rng(5)
    n = 100_000
    x, y = rng.uniform(-4, 4, n), rng.uniform(-4, 4, n)
    path = write_csv(tmp_path_factory.mktemp("points") / "p.csv", {"x": x, "y": y})
    return path, x, y


def read_rows(text: str):
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


@pytest.mark.slow
def test_a_hundred_thousand_rows_against_the_derivative_by_hand(sh, grid_points):
    path, x, y = grid_points
    result = sh("grad", EXPR, "--points", str(path), "--dtype", "float64")
    assert result.returncode == 0, result.stderr
    header, rows = read_rows(result.stdout)
    assert header == ["x", "y", "f", "df/dx", "df/dy", "check"]
    assert len(rows) == len(x)
    table = np.array([r[:-1] for r in rows], dtype=np.float64)
    assert np.array_equal(table[:, 0], x) and np.array_equal(table[:, 1], y)  # echoed exactly
    f, dx, dy = by_hand(x, y)
    np.testing.assert_allclose(table[:, 2], f, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(table[:, 3], dx, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(table[:, 4], dy, rtol=1e-12, atol=1e-14)
    assert {r[-1] for r in rows} == {"agree"}
    assert "100,000 rows: 100,000 agree" in result.stderr


def test_float32_rows_read_back_as_the_same_float32(grid_points, tmp_path):
    path, x, y = grid_points
    out = io.StringIO()
    grad_points(EXPR, str(path), out=out, chunk_rows=7000)
    _, rows = read_rows(out.getvalue())
    table = np.array([r[:-1] for r in rows], dtype=np.float32)
    x32 = torch.tensor(x, dtype=torch.float32)
    assert np.array_equal(table[:, 0], x32.numpy())
    x32.requires_grad_(True)
    f = torch.sin(x32) * torch.exp(-x32**2)
    (g,) = torch.autograd.grad(f.sum(), [x32])
    assert np.array_equal(table[:, 3], g.numpy())  # torch's float32 numbers, digit for digit


def test_chunks_do_not_change_the_rows(grid_points):
    path, *_ = grid_points
    whole, pieces = io.StringIO(), io.StringIO()
    grad_points(EXPR, str(path), out=whole, dtype="float64")
    summary = grad_points(EXPR, str(path), out=pieces, dtype="float64", chunk_rows=999, chunk_bytes=30_000)
    assert whole.getvalue() == pieces.getvalue()
    assert summary.rows == 100_000 and summary.counts["agree"] == 100_000


def test_npy_in_and_out(tmp_path, grid_points):
    _, x, y = grid_points
    source = tmp_path / "in.npy"
    np.save(source, np.rec.fromarrays([x[:5000], y[:5000]], names="x,y"))
    summary = grad_points(EXPR, str(source), output=str(tmp_path / "out.npy"), dtype="float64", chunk_rows=1234)
    out = np.load(tmp_path / "out.npy")
    assert out.dtype.names == ("x", "y", "f", "df/dx", "df/dy", "check")
    assert len(out) == summary.rows == 5000
    f, dx, dy = by_hand(x[:5000], y[:5000])
    np.testing.assert_allclose(out["df/dx"], dx, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out["df/dy"], dy, rtol=1e-12, atol=1e-14)
    assert set(out["check"].tolist()) == {CHECK_NAMES.index("agree")}
    # The same numbers as the CSV route, exactly: both are float64 at full precision.
    text = io.StringIO()
    grad_points(EXPR, str(source), out=text, dtype="float64")
    _, rows = read_rows(text.getvalue())
    assert np.array_equal(np.array([r[3] for r in rows], dtype=np.float64), out["df/dx"])


def test_npy_output_from_csv_knows_its_row_count(tmp_path):
    source = write_csv(tmp_path / "p.csv", {"x": np.arange(70.0)})
    grad_points("x**2", str(source), output=str(tmp_path / "o.npy"), chunk_rows=16, chunk_bytes=50)
    out = np.load(tmp_path / "o.npy")
    assert len(out) == 70 and np.array_equal(out["df/dx"], 2 * np.arange(70.0))


def test_points_from_stdin_with_a_constant(sh):
    result = sh("grad", "a*x**2 + y", "--points", "-", "a=3", "--format", "ndjson", input="x,y\n1,0\n2,5\n")
    assert result.returncode == 0, result.stderr
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert docs == [{"x": 1.0, "y": 0.0, "f": 3.0, "df/dx": 6.0, "df/dy": 1.0, "check": "agree"},
                    {"x": 2.0, "y": 5.0, "f": 17.0, "df/dx": 12.0, "df/dy": 1.0, "check": "agree"}]


def test_rows_outside_the_domain_are_flagged(run):
    result = run("grad", "log(x)", "--points", "-", "--format", "ndjson", input="x\n1\n-1\n0\n2\n")
    assert result.exit_code == 1
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["check"] for d in docs] == ["agree", "not finite", "not finite", "agree"]
    assert docs[1]["f"] == "nan" and docs[2]["f"] == "-inf"  # JSON has no NaN: strings, as elsewhere
    assert "first at data row 2" in result.stderr


def test_a_disagreeing_row_is_flagged(run):
    # float16 against float64 with no tolerance: cos(0.1) differs in float16's last bit;
    # cos(0) = 1 exactly.
    result = run("grad", "sin(x)", "--points", "-", "--dtype", "float16", "--rtol", "0", "--atol", "0",
                 input="x\n0\n0.1\n")
    assert result.exit_code == 1
    _, rows = read_rows(result.stdout)
    assert [r[-1] for r in rows] == ["agree", "disagree"]
    assert "disagree: autograd and sympy disagree; first at data row 2" in result.stderr


def test_a_kink_is_a_kink_not_a_failure(run):
    result = run("grad", "relu(x)", "--points", "-", input="x\n1\n0\n-1\n")
    assert result.exit_code == 0
    _, rows = read_rows(result.stdout)
    assert [r[-1] for r in rows] == ["agree", "kink", "agree"]


def test_an_expression_that_is_not_elementwise_is_vmapped(tmp_path):
    source = write_csv(tmp_path / "p.csv", {"x": np.array([1.0, 2.0, -3.0])})
    out = io.StringIO()
    summary = grad_points("sum(w*x**2)", str(source), {"w": "[1,2,3]"}, out=out, dtype="float64")
    assert summary.batched_by == "vmap" and summary.counts["agree"] == 3
    _, rows = read_rows(out.getvalue())
    assert [float(r[1]) for r in rows] == [6.0, 24.0, 54.0]  # f = 6 x^2
    assert [float(r[2]) for r in rows] == [12.0, 24.0, -36.0]  # df/dx = 12 x


def test_a_column_that_is_not_a_variable_is_left_out(run):
    result = run("grad", "x**2", "--points", "-", input="id,x\n7,3\n")
    assert result.exit_code == 0
    assert result.stdout == "x,f,df/dx,check\n3,9,6,agree\n"
    assert "column(s) id are not variables of the expression" in result.stderr
    reset_stdin()
    quiet = run("grad", "x**2", "--points", "-", "--quiet", input="id,x\n7,3\n")
    assert quiet.stderr == ""


@pytest.mark.parametrize("text, args, message", [
    ("x\n1\nabc\n", [], "standard input: line 3, column 1 (x) is not a number"),
    ("x\n1\n2,3\n", [], "standard input: line 3 has 2 columns; the header has 1"),
    ("x\n1\n", ["x*y"], "no value for y: not a column of standard input"),
    ("1,2\n3,4\n", [], "the first row is numbers"),
    ("", [], "standard input is empty"),
    ("z\n1\n", [], "none of the columns of standard input (z) is a variable"),
    ("x,x\n1,2\n", [], "column x appears twice"),
    ("x\n1\n", ["x**2", "x=2"], "x is a column of standard input and is given a value too"),
    ("x\n1\n", ["x*w", "w=[1,2]"], "f has shape [2] at each row"),
    ("x\n1\n", ["x**2", "--order", "2"], "--order cannot be used with --points"),
    ("x\n1\n", ["x**2", "--json"], "--json cannot be used with --points"),
    ("x\n1\n", ["x*a", "a=1", "--wrt", "a"], "--wrt a: with --points"),
    ("x\n1\n", ["x[0]"], "cannot be indexed"),
])
def test_bad_input_is_one_error_line(sh, text, args, message):
    expression, *rest = args or ["x**2"]
    result = sh("grad", expression, *rest, "--points", "-", input=text)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_file_errors(run, tmp_path):
    assert "no such file" in run("grad", "x", "--points", str(tmp_path / "nope.csv")).stderr
    np.save(tmp_path / "plain.npy", np.ones((3, 2)))
    result = run("grad", "x", "--points", str(tmp_path / "plain.npy"))
    assert result.exit_code == 2 and "named columns" in result.stderr and "np.rec.fromarrays" in result.stderr
    assert run("grad", "x", "x=1", "--output", "o.npy").exit_code == 2
    with pytest.raises(GradcliError, match="csv or ndjson"):
        grad_points("x", "-", fmt="json")


def test_a_malformed_row_after_the_first_chunk(tmp_path):
    source = tmp_path / "p.csv"
    source.write_text("x\n" + "1\n" * 5000 + "1,,\n")
    with pytest.raises(GradcliError, match=r"line 5002 has 3 columns"):
        grad_points("x", str(source), out=io.StringIO(), chunk_bytes=1000)


# Runs gradcli in a fresh interpreter and prints its peak resident memory. VmHWM belongs to
# the process's own address space; getrusage's ru_maxrss would not do: Linux carries the
# high-water mark across exec, so a child forked from this test process (torch loaded, the
# rows generated) would report the test process's size.
_PEAK = """
import sys
from gradcli.cli.app import app
try:
    app(args=sys.argv[1:], prog_name="gradcli")
except SystemExit as exc:
    code = exc.code
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
sys.stderr.write(peak)
sys.exit(code)
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM from /proc (Linux)")
def test_memory_stays_flat_however_long_the_input(tmp_path):
    """Peak memory for 10^6 rows is that for 10^4: the rows stream through in chunks."""
    rng = np.random.default_rng(1)

    def peak_kib(rows: int) -> int:
        source = write_csv(tmp_path / f"p{rows}.csv", {"x": rng.uniform(-3, 3, rows), "y": rng.uniform(-3, 3, rows)})
        with open(tmp_path / "out.csv", "w") as out:
            result = subprocess.run([sys.executable, "-c", _PEAK, "grad", EXPR, "--points", str(source), "--quiet"],
                                    stdout=out, stderr=subprocess.PIPE, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        with open(tmp_path / "out.csv") as written:
            assert sum(1 for _ in written) == rows + 1
        return int(result.stderr.split()[-2])  # "VmHWM:  312345 kB"

    small, large = peak_kib(10_000), peak_kib(1_000_000)
    # Read whole, 10^6 rows would add over 150 MB (the text, its lines, the arrays, the output).
    assert large - small < 60 * 1024, (small, large)


def test_points_piped_from_one_process_into_another():
    """printf rows | gradcli grad --points - | a reader: the rows flow through, in order."""
    rows = "x\n" + "\n".join(str(v) for v in range(1, 2001)) + "\n"
    producer = subprocess.Popen([gradcli_executable(), "grad", "x**3", "--points", "-", "--format", "ndjson",
                                 "--dtype", "float64", "--quiet"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    consumer = subprocess.Popen(
        [sys.executable, "-c", "import json, sys; print(sum(json.loads(line)['df/dx'] for line in sys.stdin))"],
        stdin=producer.stdout, stdout=subprocess.PIPE, text=True)
    producer.stdout.close()
    producer.stdin.write(rows.encode())
    producer.stdin.close()
    out, _ = consumer.communicate(timeout=300)
    assert producer.wait(timeout=300) == 0
    assert float(out) == sum(3.0 * v * v for v in range(1, 2001))


def test_a_row_that_is_not_a_number_is_flagged_not_refused(run, tmp_path):
    result = run("grad", "x**2", "--points", "-", "--output", str(tmp_path / "o.ndjson"), input="x\nnan\n1\ninf\n")
    assert result.exit_code == 1 and result.stdout == ""
    docs = [json.loads(line) for line in (tmp_path / "o.ndjson").read_text().splitlines()]
    assert [d["check"] for d in docs] == ["not finite", "agree", "not finite"]
    assert docs[1] == {"x": 1, "f": 1, "df/dx": 2, "check": "agree"}


def test_a_csv_with_a_byte_order_mark_is_read(tmp_path, run):
    """Excel's "CSV UTF-8" starts the file with a BOM: the first column is still x."""
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffx,y\n1,2\n3,4\n".encode("utf-8"))
    result = run("grad", "x*y", "--points", str(path))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["x,y,f,df/dx,df/dy,check", "1,2,2,2,1,agree", "3,4,12,4,3,agree"]
    data = run("grad", "sum(x*y)", "--data", str(path), "--wrt", "x,y", "--plain")  # data are constants unless named
    assert data.exit_code == 0 and data.stdout.split() == ["2", "4", "1", "3"]
    column = run("grad", "sum(x)", f"x=@{path}:x", "--plain")
    assert column.exit_code == 0 and column.stdout.split() == ["1", "1"]


def test_a_batch_line_with_points_is_refused_not_cut_to_one_row(sh, tmp_path):
    path = tmp_path / "three.csv"
    path.write_text("x\n1\n2\n7\n")
    result = sh("batch", input=f'grad "x**3" --points {path}\n{{"command": "grad", "expr": "x**3", '
                             f'"options": {{"points": "{path}"}}}}\ngrad "x**3" x=2\n')
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert result.returncode == 2
    assert [x["exit_status"] for x in lines] == [2, 2, 0]
    assert all("--points cannot be a batch line" in x["error"]["message"] for x in lines[:2])
    assert lines[2]["gradient"]["x"]["data"] == 12.0
