"""Bad input is exit 2 with a clean message, never an internal error; batch lines touch no files
unless the batch allows them. Each runs the installed `gradcli` in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import gradcli_executable

ESC = "\x1b[31m"  # a terminal escape: red text, if it ever reached the terminal
# Any control character but the newline (tab included: a message has no reason for one).
RAW_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]")


def gradcli(*args: str, stdin: bytes = b"", cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADCLI_")}
    env["GRADCLI_SERVER"] = "off"  # in process: what this machine's gradcli does, no warm server
    return subprocess.run([gradcli_executable(), *args], input=stdin, capture_output=True, env=env, cwd=cwd,
                          timeout=120)


def assert_clean_error(result: subprocess.CompletedProcess[bytes], *expected: str, span: bool = False) -> str:
    """Exit 2; stderr one `error:` line (then, with span, the text and its caret line), an
    optional `hint:` line, no traceback and no raw control character. Returns stderr."""
    err = result.stderr
    assert result.returncode == 2, (result.returncode, err)
    assert not RAW_CONTROL.search(err), err
    text = err.decode("utf-8")
    lines = text.splitlines()
    assert lines[0].startswith("error: "), text
    assert "Traceback" not in text and "internal error" not in text
    rest = lines[1:]
    if span:
        assert len(rest) >= 2 and rest[0].startswith("  ") and set(rest[1].strip()) <= {"^"}, text
        rest = rest[2:]
    assert len(rest) <= 1 and all(x.startswith("hint: ") for x in rest), text
    for part in expected:
        assert part in text, text
    return text


# --------------------------------------------------------------------------- bad files

@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    rows = "".join(f"{i},{i}\n" for i in range(200_000)).encode()  # 2.5 MB: past the first chunk
    (d / "late.csv").write_bytes(b"x,y\n" + rows + b"5,\xff6\n1,2\n")
    (d / "header.csv").write_bytes(b"x,\xc3y\n1,2\n")
    np.savez(d / "arrays.npz", x=np.ones(3))
    (d / "zip.npy").write_bytes((d / "arrays.npz").read_bytes())
    (d / "text.npy").write_text("1 2 3\n")
    (d / "empty.npy").write_bytes(b"")
    np.save(d / "full.npy", np.ones(1000))
    whole = (d / "full.npy").read_bytes()
    (d / "short.npy").write_bytes(whole[:500])  # its data cut
    (d / "shorthead.npy").write_bytes(whole[:40])  # its header cut
    (d / "escape.csv").write_text(f"x{ESC},y\n1,2\n")
    np.save(d / "escape.npy", np.zeros(3, dtype=[(f"x{ESC}", "f8"), ("y", "f8")]))
    (d / f"name{ESC}.csv").write_text("z\n1\n")
    return d


LATE = "line 200002 is not UTF-8 text"


@pytest.mark.parametrize("args, stdin, expected", [
    (["grad", "x*y", "--points", "late.csv"], b"", ["late.csv", LATE, "byte"]),
    (["grad", "x*y", "--points", "-"], "late.csv", ["standard input", LATE]),
    (["grad", "sum(x*y)", "--data", "late.csv"], b"", ["late.csv", LATE]),
    (["grad", "sum(x)", "x=@late.csv:x"], b"", ["late.csv", LATE]),
    (["grad", "sum(x)", "x=@late.csv"], b"", ["late.csv", LATE]),
    (["grad", "sum(x)", "x=@-"], "late.csv", ["standard input", LATE]),
    (["grad", "x*y", "--points", "header.csv"], b"", ["line 1 is not UTF-8 text (byte 3 of the line"]),
    (["grad", "sum(x)", "x=@zip.npy"], b"", [".npz archive"]),
    (["grad", "x", "--points", "zip.npy"], b"", [".npz archive"]),
    (["grad", "sum(x)", "x=@text.npy"], b"", ["text.npy is not a .npy file"]),
    (["grad", "x", "--points", "text.npy"], b"", ["text.npy is not a .npy file"]),
    (["grad", "sum(x)", "x=@empty.npy"], b"", ["empty.npy is not a .npy file"]),
    (["grad", "sum(x)", "x=@short.npy"], b"", ["short.npy: not a readable .npy file", "truncated"]),
    (["grad", "x", "--points", "short.npy"], b"", ["truncated"]),
    (["grad", "sum(x)", "x=@shorthead.npy"], b"", ["shorthead.npy: not a readable .npy file"]),
    (["grad", "z", "--points", "escape.csv"], b"", ["x\\x1b[31m"]),
    (["grad", "sum(x)", "x=@escape.csv:q"], b"", ["x\\x1b[31m"]),
    (["grad", "sum(x*y)", "--data", "escape.csv"], b"", []),
    (["grad", "z", "--points", "escape.npy"], b"", ["x\\x1b[31m"]),
    (["grad", "sum(x)", f"x=@name{ESC}.csv:q"], b"", ["name\\x1b[31m.csv"]),
    (["grad", "sum(x)", f"x=@gone{ESC}.csv"], b"", ["no such file: gone\\x1b[31m.csv"]),
    (["grad", "z", "--points", f"gone{ESC}.csv"], b"", ["no such file: gone\\x1b[31m.csv"]),
    (["grad", "x", "--points", f"name{ESC}.csv", "x=1"], b"", ["name\\x1b[31m.csv"]),
])
def test_a_bad_file_is_one_clean_error(bad, args, stdin, expected):
    data = (bad / stdin).read_bytes() if isinstance(stdin, str) else stdin
    assert_clean_error(gradcli(*args, stdin=data, cwd=bad), *expected)


# --------------------------------------------------------------------------- nesting

def nested(depth: int, inner: str) -> str:
    return "[" * depth + inner + "]" * depth


@pytest.mark.parametrize("args", [
    ["grad", "sum(x)", f"x={nested(99, '1')}"],
    ["grad", nested(99, "x"), "x=1"],
    ["grad", nested(9, "x"), "x=1"],
    ["jacobian", "x", f"x={nested(9, '1')}"],
])
def test_lists_nested_too_deep_are_one_clean_error(args):
    assert_clean_error(gradcli(*args), "lists are nested more than 8 deep", span=True)


def test_eight_deep_lists_still_work():
    result = gradcli("grad", "sum(x)", f"x={nested(8, '1')}", "--plain")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [b"1"]


@pytest.mark.parametrize("expression", ["(" * 250 + "x" + ")" * 250, "-" * 5000 + "x", "sin(" * 120 + "x" + ")" * 120])
def test_expressions_nested_too_deep_are_one_clean_error(expression):
    result = gradcli("grad", expression, "x=1")
    assert result.returncode == 2 and b"Traceback" not in result.stderr and b"internal error" not in result.stderr
    assert result.stderr.startswith(b"error: ")


# --------------------------------------------------------------------------- batch and files

@pytest.fixture
def files(tmp_path):
    (tmp_path / "d.csv").write_text("x\n1\n2\n")
    np.save(tmp_path / "w.npy", np.array([1.0, 2.0]))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    return tmp_path


# One line per file option (each form click reads: -o, --opt=FILE, a JSON request's options),
# and what a line allowed files writes or reads.
REFUSED = [
    ('minimize "(w-3)**2" w=0 --steps 2 --trace victim.txt --trace-format csv', "--trace"),
    ('{"command": "minimize", "expr": "(w-3)**2", "values": {"w": 0}, '
     '"options": {"steps": 2, "trace": "victim.txt", "trace_format": "csv"}}', "--trace"),
    ('minimize "(w-3)**2" w=0 --steps 2 --plot loss.png', "--plot"),
    ('plot "sin(x)" x=0:1:5 --out victim.txt', "--out"),
    ('plot "sin(x)" x=0:1:5 -o p.png', "--out"),
    ('grad "x**2" x=1 --output=victim.txt', "--output"),
    ('grad "sum(x*y)" y=1 --data d.csv', "--data"),
    ('grad "sum(x*y)" y=1 --data=-', "--data"),
    ('grad "sum(w)" w=@w.npy', "@w.npy"),
    ('grad "sum(x)" x=@d.csv:x', "@d.csv:x"),
    ('grad "sum(x)" x=@victim.txt', "@victim.txt"),
    ('{"command": "grad", "expr": "sum(w)", "values": {"w": "@w.npy"}}', "@w.npy"),
    ('vjp "2*x" "x=[1,2]" --vector @w.npy', "@w.npy"),
]


def test_a_batch_line_touches_no_file_by_default(files):
    lines = [line for line, _ in REFUSED]
    before = {p.name: p.read_bytes() for p in files.iterdir()}
    # with the default workers: the refusal holds in a forked worker as in the batch's process
    result = gradcli("batch", stdin=("\n".join(lines) + '\ngrad "x**2" x=3\n').encode(), cwd=files)
    assert result.returncode == 2, result.stderr
    docs = [json.loads(x) for x in result.stdout.decode().splitlines()]
    assert len(docs) == len(REFUSED) + 1
    for doc, (line, option) in zip(docs, REFUSED, strict=False):
        assert doc["exit_status"] == 2, line
        message = doc["error"]["message"]
        assert option in message and "gradcli batch --allow-files allows it" in message, (line, message)
    assert docs[-1]["exit_status"] == 0 and docs[-1]["gradient"]["x"]["data"] == 6.0  # the others go on
    after = {p.name: p.read_bytes() for p in files.iterdir()}
    assert after == before  # no file written, created or changed by a byte


def test_x_at_stdin_is_refused_in_a_batch_read_from_a_file(files):
    (files / "requests.txt").write_text('grad "sum(x)" x=@-\n')
    result = gradcli("batch", "requests.txt", stdin=b"1\n2\n", cwd=files)
    doc = json.loads(result.stdout)
    assert result.returncode == 2 and doc["exit_status"] == 2
    assert "@-" in doc["error"]["message"] and "--allow-files" in doc["error"]["message"]


def test_allow_files_lets_each_file_option_through(files):
    (files / "requests.txt").write_text("\n".join([
        'minimize "(w-3)**2" w=0 --steps 2 --trace trace.csv --trace-format csv',
        'minimize "(w-3)**2" w=0 --steps 2 --plot loss.png',
        'plot "sin(x)" x=0:1:5 --out curve.png',
        'grad "sum(x*y)" y=1 --data d.csv --wrt x,y',  # a column is a constant unless --wrt names it
        'grad "sum(w)" w=@w.npy',
        'grad "sum(x)" x=@d.csv:x',
        'grad "sum(x)" x=@-',
    ]) + "\n")
    # --jobs 1: x=@- reads the batch's own standard input (a worker's is not the batch's)
    result = gradcli("batch", "--allow-files", "--jobs", "1", "requests.txt", stdin=b"4\n5\n", cwd=files)
    docs = [json.loads(x) for x in result.stdout.decode().splitlines()]
    assert result.returncode == 0, [d.get("error") for d in docs]
    assert [d["exit_status"] for d in docs] == [0] * 7
    assert (files / "trace.csv").read_text().splitlines()[0].startswith("step,")
    assert (files / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert (files / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert docs[3]["gradient"]["x"]["data"] == [1.0, 1.0]  # d(sum(x*y))/dx with y=1, x from --data
    assert docs[4]["f"]["data"] == 3.0 and docs[5]["f"]["data"] == 3.0 and docs[6]["f"]["data"] == 9.0


def test_batch_help_says_how_files_are_allowed():
    result = gradcli("batch", "--help")
    assert result.returncode == 0
    assert b"--allow-files" in result.stdout


def test_the_refusal_holds_for_the_batch_lines_thread_alone():
    # A library host's other threads read files while a batch line runs in this one.
    import threading

    from gradcli.errors import GradcliError
    from gradcli.inputs import check_files_allowed, files_refused

    seen = []
    with files_refused("a batch line"):
        with pytest.raises(GradcliError, match="--allow-files"):
            check_files_allowed("@w.npy")
        other = threading.Thread(target=lambda: seen.append(check_files_allowed("@w.npy")))
        other.start()
        other.join()
    assert seen == [None]  # the other thread was not refused
    check_files_allowed("@w.npy")  # nor is this one, after the line


def test_batch_output_carries_no_raw_terminal_control():
    # C1 CSI (\x9b), DEL and a bidi override from a line: escaped in the JSON, the same strings to a reader.
    result = gradcli("batch", stdin="foo\x9b31m\x7f\u202e\n".encode())
    assert result.returncode == 2
    assert not re.search("[\x7f-\x9f\u202e]", result.stdout.decode()), result.stdout
    assert json.loads(result.stdout)["error"]["message"] == "no such command 'foo\x9b31m\x7f\u202e'"
