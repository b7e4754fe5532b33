"""Bounded work (issue 20, item 5): work whose estimate is over a limit is refused before it is
computed, exit 2, with the estimate and the option that raises the limit. Each test uses a small
--max-elements so that nothing here allocates more than a few megabytes."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.helpers import gradcli_executable


def gradcli(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GRADCLI_SERVER": "off", "NO_COLOR": "1"}
    return subprocess.run([gradcli_executable(), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=cwd)


def refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


# --------------------------------------------------------------------------- broadcasting

def test_a_broadcast_over_the_limit_is_refused_from_the_shapes() -> None:
    # 400 inputs broadcast to 40,000 elements: refused before torch builds x*y.
    r = gradcli("grad", "x*y", "x=ones(200)", "y=ones(200,1)", "--max-elements", "10000")
    refused(r, "broadcast to [200, 200]", "40,000 elements", "the limit is 10,000", "--max-elements")


def test_a_broadcast_inside_a_reduction_is_refused_too() -> None:
    r = gradcli("grad", "sum(x*y)", "x=ones(200)", "y=ones(200,1)", "--max-elements", "10000")
    refused(r, "broadcast to [200, 200]", "--max-elements")


def test_the_issue_broadcast_is_refused_at_once_with_its_size() -> None:
    # The issue's case at the default limit: 3.4 GB from 40,000 inputs. Refused from the shapes alone.
    start = time.monotonic()
    r = gradcli("grad", "x*y", "x=ones(20000)", "y=ones(20000,1)")
    refused(r, "400,000,000 elements", "1.5 GiB as float32", "the limit is 50,000,000")
    assert time.monotonic() - start < 30


def test_a_broadcast_within_the_limit_is_computed() -> None:
    r = gradcli("grad", "sum(x*y)", "x=ones(100)", "y=ones(100,1)", "--max-elements", "10000", "--plain")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == ["100", "100"]


# --------------------------------------------------------------------------- --order

def test_a_high_order_whose_graph_swells_is_refused_early_with_the_estimate() -> None:
    # The issue's case: 50 s and 3.8 GB before. The graph grows about 2.6 times an order; the
    # estimate is made from the first orders (about 1,500 nodes), long before the swell.
    start = time.monotonic()
    r = gradcli("grad", "exp(sin(x))", "x=1", "--order", "15")
    refused(r, "--order 15", "grows 2.", "GiB", "the limit is 500,000,000", "orders up to 14 fit", "--max-elements")
    assert time.monotonic() - start < 30


def test_the_order_limit_follows_max_elements() -> None:
    r = gradcli("grad", "exp(sin(x))", "x=1", "--order", "12", "--max-elements", "100000")
    refused(r, "orders up to 8 fit", "the limit is 1,000,000 (10 x --max-elements)")
    ok = gradcli("grad", "exp(sin(x))", "x=1", "--order", "8", "--max-elements", "100000", "--plain")
    assert ok.returncode == 0, ok.stderr
    assert len(ok.stdout.split()) == 8


def test_orders_whose_graph_does_not_swell_are_answered() -> None:
    # x**2: zero from order 3 on; x*exp(x): the graph grows by 3 nodes an order, not by a factor.
    r = gradcli("grad", "x**2", "x=1", "--order", "15", "--plain")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2", "2"] + ["0"] * 13
    r = gradcli("grad", "x*exp(x)", "x=1", "--order", "50", "--plain", "--no-check")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.split()) == 50


# --------------------------------------------------------------------------- Jacobians

def test_an_elementwise_jacobian_is_built_from_its_diagonal() -> None:
    r = gradcli("jacobian", "x*y+sin(x)", "x=[1,2,3]", "y=[4,5,6]", "--json")
    assert r.returncode == 0, r.stderr
    assert "method: diagonal" in r.stdout and "one backward gives the diagonal" in r.stdout
    dense = gradcli("jacobian", "x*y+sin(x)", "x=[1,2,3]", "y=[4,5,6]", "--method", "rev", "--plain")
    diagonal = gradcli("jacobian", "x*y+sin(x)", "x=[1,2,3]", "y=[4,5,6]", "--plain")
    assert dense.returncode == diagonal.returncode == 0
    assert diagonal.stdout == dense.stdout  # the same matrices, byte for byte
    assert diagonal.stdout.split()[:9] == ["4.5403023", "0", "0", "0", "4.5838532", "0", "0", "0", "5.0100074"]


def test_the_issue_jacobian_of_an_elementwise_f_is_quick() -> None:
    # x*2 at ones(7000): a 49-million-entry diagonal matrix, minutes and 9 GB by the dense pass.
    # (The table summarises it; --plain would print 49 million numbers, a minute of text.)
    start = time.monotonic()
    r = gradcli("jacobian", "x*2", "x=ones(7000)", "--no-check", timeout=120)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - start < 30
    assert "method: diagonal" in r.stdout and "shape [7000,7000]" in r.stdout


def test_a_dense_jacobian_pass_over_the_limit_is_refused_with_its_estimate() -> None:
    f = "x*sum(sin(x)*cos(x)+exp(x)+tanh(x)*x**2+log(x+2)+sqrt(x+1))"
    r = gradcli("jacobian", f, "x=ones(50)", "--max-elements", "2500", "--method", "fwd")
    refused(r, "vectorised pass would hold about", "2,500 entries for each of f's", "the limit is 25,000",
            "--method loop", "--max-elements")
    loop = gradcli("jacobian", f, "x=ones(50)", "--max-elements", "2500", "--method", "loop", "--plain")
    assert loop.returncode == 0, loop.stderr
    assert len(loop.stdout.split()) == 2500


# --------------------------------------------------------------------------- CSV lines and headers

def _long_line_csv(path: Path) -> Path:
    # Two good rows, then an 11-million-character line with no newline (a 1 GB one took 5-7 GB).
    path.write_text("x\n1\n2\n" + "1," * 5_500_000)
    return path


def test_points_refuses_a_csv_line_over_the_limit_by_its_number(tmp_path: Path) -> None:
    src = _long_line_csv(tmp_path / "long.csv")
    r = gradcli("grad", "x**2", "--points", str(src), "--output", str(tmp_path / "out.csv"))
    refused(r, "long.csv: line 4 is longer than 10,000,000 characters")
    assert not (tmp_path / "out.csv").exists()


def test_points_refuses_a_long_header_line_too(tmp_path: Path) -> None:
    src = tmp_path / "header.csv"
    src.write_text("x" * 10_000_001 + "\n1\n")
    refused(gradcli("grad", "x**2", "--points", str(src)), "line 1 is longer than 10,000,000 characters")


def test_a_value_file_refuses_a_csv_line_over_the_limit(tmp_path: Path) -> None:
    src = _long_line_csv(tmp_path / "long.csv")
    refused(gradcli("grad", "sum(x**2)", f"x=@{src}"), "long.csv: line 4 is longer than 10,000,000 characters")
    data = tmp_path / "data.csv"
    data.write_text("x,y\n1,2\n" + "3," * 5_500_000 + "\n")
    refused(gradcli("grad", "sum(x*y)", "--data", str(data)), "data.csv: line 3 is longer than 10,000,000")


def test_lines_within_the_limit_still_read(tmp_path: Path) -> None:
    src = tmp_path / "ok.csv"
    src.write_text("x,y\r\n1,2\r\n3,4")  # CRLF and no final newline, as before
    r = gradcli("grad", "x*y", "--points", str(src))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:] == ["1,2,2,2,1,agree", "3,4,12,4,3,agree"]
    r = gradcli("grad", "sum(x**2)", f"x=@{src}:y", "--plain")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["4", "8"]


def test_a_wide_header_with_a_duplicate_is_refused_in_linear_time(tmp_path: Path) -> None:
    # 70,000 columns (620 KB of header), one named twice: 38 s with the quadratic check.
    names = [f"c{i}" for i in range(70_000)]
    src = tmp_path / "wide.csv"
    src.write_text(",".join([*names, "x", "c5"]) + "\n" + ",".join(["1"] * 70_002) + "\n")
    start = time.monotonic()
    refused(gradcli("grad", "x**2", "--points", str(src)), "column c5 appears twice in the header")
    assert time.monotonic() - start < 15
