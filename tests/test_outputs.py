"""Files gradcli writes are whole or nothing, and never one of its own inputs (gradcli/outputs.py).

Faults are made by the tests, as a user meets them: the installed `gradcli` killed (SIGKILL) or
interrupted (SIGINT) while it writes, a bad value late in the input, a file-size limit
(RLIMIT_FSIZE, which a full disk looks like to a writer: EFBIG in place of ENOSPC), and the
same file reached through its name, a symlink or a hard link.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import gradcli_executable

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="signals, rlimits and hard links are POSIX's")

OLD = b"x,f\n1,2\nthe old file, which must survive\n"
ROWS = 400_000


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GRADCLI_SERVER", "NO_COLOR", "FORCE_COLOR")}
    env["GRADCLI_SERVER"] = "off"  # in process: the faults must hit the process that writes
    return env


def gradcli(*args: str, cwd: Path, stdin: bytes | None = None, limit_bytes: int | None = None,
            ) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        import resource

        assert limit_bytes is not None
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([gradcli_executable(), *args], cwd=cwd, env=_env(), capture_output=True,
                          input=stdin.decode() if stdin is not None else None, text=True, timeout=300,
                          preexec_fn=limit if limit_bytes is not None else None)


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    x = np.linspace(-3.0, 3.0, ROWS)
    np.save(folder / "big.npy", np.rec.fromarrays([x], names="x"))
    (folder / "big.csv").write_text("x\n" + "\n".join(map(repr, x.tolist())) + "\n")
    return folder


@pytest.fixture
def work(tmp_path: Path, inputs: Path) -> Path:
    for name in ("big.npy", "big.csv"):
        os.link(inputs / name, tmp_path / name)  # the inputs, without copying 10 MB per test
    return tmp_path


# --------------------------------------------------------------------------- whole or nothing

def _expected(work: Path, suffix: str) -> bytes:
    """The complete output, written once without a fault."""
    done = gradcli("grad", "sin(x)*exp(-x**2)", "--points", f"big{suffix}", "--output", f"whole{suffix}", cwd=work)
    assert done.returncode == 0, done.stderr
    return (work / f"whole{suffix}").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_a_kill_mid_write_leaves_the_old_file_byte_identical(work: Path, suffix: str) -> None:
    whole = _expected(work, suffix)
    dest = work / f"out{suffix}"
    tries, mid_write, lost = 4, 0, 0
    for attempt in range(tries):
        dest.write_bytes(OLD)
        proc = subprocess.Popen([gradcli_executable(), "grad", "sin(x)*exp(-x**2)", "--points", f"big{suffix}",
                                 "--output", dest.name], cwd=work, env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Wait until the rows are being written (a temporary file with bytes in it), then kill,
        # a little later each try.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            written = [p for p in work.iterdir() if p.name.startswith(f".{dest.name}.") and p.stat().st_size > 0]
            if written:
                time.sleep(0.01 * attempt)
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after = dest.read_bytes()
        left = temporaries(work)
        if left:
            mid_write += 1
        if after != OLD and after != whole:
            lost += 1  # a partial destination: the one thing that must never happen
        assert after in (OLD, whole), f"try {attempt}: the destination is neither the old file nor the new one"
        assert after == OLD or not left, "a complete destination and a temporary file"
        for name in left:  # what a kill may leave: a temporary file, never a partial destination
            (work / name).unlink()
    print(f"\n{suffix}: {tries} kills, {mid_write} mid-write, {lost} destinations changed")
    assert mid_write >= 1, "no kill landed while the rows were being written"


@pytest.mark.slow
def test_ctrl_c_mid_write_leaves_the_old_file_and_no_temporary_file(work: Path) -> None:
    dest = work / "out.npy"
    dest.write_bytes(OLD)
    proc = subprocess.Popen([gradcli_executable(), "grad", "sin(x)", "--points", "big.csv", "--output", dest.name],
                            cwd=work, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not any(
            p.stat().st_size > 0 for p in work.iterdir() if p.name.startswith(".out.npy.")):
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run ended before Ctrl-C reached it")
    assert proc.returncode == 130, err
    assert dest.read_bytes() == OLD
    assert temporaries(work) == []


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".ndjson"])
def test_an_error_at_a_late_row_leaves_the_old_file_and_no_temporary_file(work: Path, suffix: str) -> None:
    lines = (work / "big.csv").read_text().splitlines(keepends=True)
    lines[300_000] = "oops\n"  # far past the first chunks, which are written before it is read
    (work / "bad.csv").write_text("".join(lines))
    dest = work / f"out{suffix}"
    dest.write_bytes(OLD)
    result = gradcli("grad", "sin(x)", "--points", "bad.csv", "--output", dest.name, cwd=work)
    assert result.returncode == 2, result.stderr
    assert "bad.csv: line 300001, column 1 (x) is not a number" in result.stderr
    assert dest.read_bytes() == OLD
    assert temporaries(work) == []


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_a_file_size_limit_is_bad_input_and_the_old_file_stays(work: Path, suffix: str) -> None:
    dest = work / f"out{suffix}"
    dest.write_bytes(OLD)
    result = gradcli("grad", "sin(x)", "--points", "big.npy", "--output", dest.name, cwd=work, limit_bytes=1_000_000)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: cannot write {dest.name}: the file would be larger than this process "
                                    "may write (ulimit -f: 1,000,000 bytes); it ran out after"), result.stderr
    assert "internal error" not in result.stderr
    assert f"{dest.name} is as it was" in result.stderr
    assert dest.read_bytes() == OLD
    assert temporaries(work) == []


def test_a_file_size_limit_on_a_trace_is_bad_input(tmp_path: Path) -> None:
    dest = tmp_path / "run.csv"
    dest.write_bytes(OLD)
    result = gradcli("minimize", "(w-3)**2", "w=0", "--steps", "20000", "--trace", "run.csv", "-q", cwd=tmp_path,
                     limit_bytes=50_000)
    assert result.returncode == 2, result.stderr
    assert "error: cannot write run.csv: the file would be larger than this process may write" in result.stderr
    assert dest.read_bytes() == OLD
    assert temporaries(tmp_path) == []


@pytest.mark.parametrize("command", [
    ("plot", "sin(x)", "x=-3:3:50", "--out", "fig.png"),
    ("minimize", "(w-3)**2", "w=0", "--steps", "5", "--plot", "fig.png"),
])
def test_an_image_larger_than_the_limit_says_the_bytes_it_needs(tmp_path: Path, command: tuple[str, ...]) -> None:
    pytest.importorskip("matplotlib")
    dest = tmp_path / "fig.png"
    dest.write_bytes(OLD)
    result = gradcli(*command, cwd=tmp_path, limit_bytes=5_000)
    assert result.returncode == 2, result.stderr
    assert "error: cannot write fig.png: the file would be larger than this process may write " \
           "(ulimit -f: 5,000 bytes); it needs " in result.stderr
    assert dest.read_bytes() == OLD
    assert temporaries(tmp_path) == []


def test_outputs_are_whole_and_keep_the_usual_permissions(work: Path) -> None:
    dest = work / "out.csv"
    result = gradcli("grad", "x**2", "--points", "big.npy", "--output", dest.name, cwd=work)
    assert result.returncode == 0, result.stderr
    text = dest.read_text()
    assert text.startswith("x,f,df/dx,check\n") and text.count("\n") == ROWS + 1
    umask = os.umask(0)
    os.umask(umask)
    assert dest.stat().st_mode & 0o777 == 0o666 & ~umask
    assert temporaries(work) == []


def test_an_output_through_a_symlink_replaces_the_file_it_names(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("x\n1\n2\n")
    (tmp_path / "real.csv").write_bytes(OLD)
    (tmp_path / "link.csv").symlink_to("real.csv")
    result = gradcli("grad", "x**2", "--points", "p.csv", "--output", "link.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "link.csv").is_symlink()
    assert (tmp_path / "real.csv").read_text().splitlines()[1:] == ["1,1,2,agree", "2,4,4,agree"]


@pytest.mark.slow
def test_a_trace_is_readable_while_it_runs_and_complete_after(tmp_path: Path) -> None:
    dest = tmp_path / "run.csv"
    dest.write_bytes(OLD)
    steps = 40_000
    proc = subprocess.Popen([gradcli_executable(), "minimize", "(w-3)**2", "w=0", "--steps", str(steps), "--lr",
                             "0.001", "--trace", "run.csv", "--format", "json"], cwd=tmp_path, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    note = proc.stderr.readline()
    prefix = "note: the trace streams into "
    assert note.startswith(prefix) and note.endswith(" (tail -f it); it becomes run.csv when the run ends\n"), note
    temp = Path(note[len(prefix):note.index(" (tail -f it)")])
    assert temp.parent == tmp_path.resolve() and temp.name.startswith(".run.csv.")
    # While it runs: the temporary file fills a record at a time, and run.csv is the old file.
    seen = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        seen = temp.read_text()
        if seen.count("\n") >= 3:
            break
        time.sleep(0.01)
    running = proc.poll() is None
    assert seen.startswith("step,loss,gradient_norm,w\n0,9.0,6.0,0.0\n"), seen[:200]
    if running:
        assert dest.read_bytes() == OLD
    proc.communicate(timeout=120)
    assert proc.returncode == 0
    lines = dest.read_text().splitlines()
    assert lines[0] == "step,loss,gradient_norm,w" and len(lines) == steps + 2
    assert lines[-1].startswith(f"{steps},")
    assert not temp.exists() and temporaries(tmp_path) == []


def test_a_failed_minimize_leaves_the_old_trace(tmp_path: Path) -> None:
    dest = tmp_path / "run.csv"
    dest.write_bytes(OLD)
    result = gradcli("minimize", "log(w)", "w=1", "--steps", "5", "--trace", "run.csv", "--device", "nowhere",
                     cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert dest.read_bytes() == OLD and temporaries(tmp_path) == []


# --------------------------------------------------------------------------- an output is never an input

@pytest.mark.parametrize("link", ["same", "symlink", "hardlink"])
@pytest.mark.parametrize("case", [
    # (the input file, the command with {in} and {out}, the output's flag, how the input is named)
    ("in.csv", ("grad", "x**2", "--points", "{in}", "--output", "{out}"), "--output", "--points in.csv"),
    ("in.npy", ("grad", "x**2", "--points", "{in}", "--output", "{out}"), "--output", "--points in.npy"),
    ("w.csv", ("grad", "sum(w*x)", "--points", "p.csv", "w=@{in}", "--output", "{out}"), "--output", "w=@w.csv"),
    ("d.csv", ("minimize", "sum((a*x-y)**2)", "a=0", "--data", "{in}", "--steps", "2", "--trace", "{out}"),
     "--trace", "--data d.csv"),
    ("v.csv", ("minimize", "sum((a-v)**2)", "a=0", "v=@{in}", "--steps", "2", "--trace", "{out}"),
     "--trace", "v=@v.csv"),
    ("d.csv", ("minimize", "sum((a*x-y)**2)", "a=0", "--data", "{in}", "--steps", "2", "--plot", "{out}"),
     "--plot", "--data d.csv"),
    ("v.csv", ("plot", "sin(x)+sum(v)", "x=0:1:5", "v=@{in}", "--out", "{out}"), "--out", "v=@v.csv"),
], ids=["points-csv", "points-npy", "points-value", "trace-data", "trace-value", "plot-data", "out-value"])
def test_an_output_that_is_an_input_is_refused(tmp_path: Path, link: str, case: tuple) -> None:
    input_name, command, flag, said = case
    image = flag in ("--plot", "--out")
    if image:
        pytest.importorskip("matplotlib")
    src = tmp_path / input_name
    if input_name.endswith(".npy"):
        np.save(src, np.rec.fromarrays([np.array([1.0, 2.0])], names="x"))
    elif input_name == "d.csv":
        src.write_text("x,y\n1,2\n2,4\n")
    elif input_name in ("w.csv", "v.csv"):
        src.write_text("1\n2\n")
    else:
        src.write_text("x\n1\n2\n")
    (tmp_path / "p.csv").write_text("x\n1\n2\n")
    suffix = ".png" if image else src.suffix
    if link == "same":
        out = input_name if not image else f"hard{suffix}"  # an image's name ends in .png: a hard link
        if image:
            os.link(src, tmp_path / out)
    elif link == "symlink":
        out = f"link{suffix}"
        (tmp_path / out).symlink_to(input_name)
    else:
        out = f"hard{suffix}"
        os.link(src, tmp_path / out)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    args = [a.replace("{in}", input_name).replace("{out}", out) for a in command]
    result = gradcli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {flag} {out} is the same file as {said}: writing it would destroy "
                                    "what is being read\n"), result.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing written, nothing made


def test_points_from_standard_input_redirected_from_the_output_is_refused(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("x\n1\n2\n")
    with open(tmp_path / "in.csv", "rb") as stdin:
        result = subprocess.run([gradcli_executable(), "grad", "x**2", "--points", "-", "--output", "in.csv"],
                                cwd=tmp_path, env=_env(), stdin=stdin, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: --output in.csv is the same file as standard input")
    assert (tmp_path / "in.csv").read_text() == "x\n1\n2\n"


def test_a_different_file_is_not_refused(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("x\n1\n2\n")
    (tmp_path / "copy.csv").write_text("x\n1\n2\n")  # the same bytes, another file
    result = gradcli("grad", "x**2", "--points", "in.csv", "--output", "copy.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "copy.csv").read_text().startswith("x,f,df/dx,check\n")
