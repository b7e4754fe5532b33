"""Warm mode (`gradcli server`): a call served by the server is the same call run in process.

Every test that starts a server does it in a temporary XDG_RUNTIME_DIR, through the installed
entry point (`gradcli server start`), and stops it in a finalizer, killing it if it will not
stop, so that no test leaves a process behind. Calls meant for the server run with
GRADCLI_SERVER=require, which fails (exit status 2) rather than run in process, so a passing
parity test really compared the two routes; the reference runs with GRADCLI_SERVER=off.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shlex
import shutil
import signal
import socket
import stat
import struct
import subprocess
import time
from pathlib import Path

import pytest

from gradcli.warm import protocol
from tests.helpers import ROOT, gradcli_executable

EXAMPLES = ROOT / "examples.txt"
TIMEOUT = 300  # seconds for one process; generous, the machine is shared


def base_env(runtime_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "GRADCLI_SERVER",
                                                              "GRADCLI_SERVER_IDLE", "COLUMNS")}
    env["XDG_RUNTIME_DIR"] = str(runtime_dir)
    return env


class Warm:
    """A server in its own runtime directory, and ways to run gradcli with and without it."""

    def __init__(self, runtime_dir: Path):
        self.runtime_dir = runtime_dir
        self.env = base_env(runtime_dir)
        self.exe = gradcli_executable()

    @property
    def directory(self) -> Path:
        return self.runtime_dir / "gradcli"

    @property
    def socket(self) -> Path:
        return self.directory / "server.sock"

    def run(self, *args: str, mode: str = "require", env: dict | None = None, input: str | None = None,
            cwd=None, umask: int = -1) -> subprocess.CompletedProcess:
        full = {**self.env, "GRADCLI_SERVER": mode, **(env or {})}
        return subprocess.run([self.exe, *args], input=input, capture_output=True, text=True, env=full,
                              timeout=TIMEOUT, cwd=cwd, umask=umask)

    def both(self, *args: str, **kw) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
        """The call through the server, and in process."""
        return self.run(*args, mode="require", **kw), self.run(*args, mode="off", **kw)

    def start(self, *extra: str) -> int:
        result = self.run("server", "start", *extra, mode="off")
        assert result.returncode == 0, result.stderr
        return self.pid()

    def pid(self) -> int | None:
        answer = self.ask({"op": "status"})
        return None if answer is None else int(answer["pid"])

    def ask(self, message: dict) -> dict | None:
        """One question over the socket, as the client asks it."""
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(30)
            sock.connect(str(self.socket))
        except OSError:
            return None
        with sock:
            try:
                data = json.dumps(message).encode()
                sock.sendall(struct.pack(">I", len(data)) + data)
                length = struct.unpack(">I", _recv_exact(sock, 4))[0]
                return json.loads(_recv_exact(sock, length))
            except OSError:  # it is exiting
                return None

    def stop(self) -> None:
        pid = self.pid()
        self.run("server", "stop", mode="off")
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _recv_exact(sock, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


def wait_until(condition, timeout: float = 120, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """One server for the module's parity tests (starting one takes seconds)."""
    w = Warm(tmp_path_factory.mktemp("xdg"))
    w.start()
    yield w
    w.stop()


@pytest.fixture
def fresh(tmp_path):
    """A runtime directory of its own, for tests that start, crash or stop their server."""
    w = Warm(tmp_path / "xdg")
    (tmp_path / "xdg").mkdir(mode=0o700)
    yield w
    w.stop()


def same(served: subprocess.CompletedProcess, reference: subprocess.CompletedProcess) -> None:
    assert (served.returncode, served.stdout, served.stderr) == (reference.returncode, reference.stdout,
                                                                 reference.stderr), (
        f"served: {served.returncode}\n{served.stdout}\n{served.stderr}\n"
        f"in process: {reference.returncode}\n{reference.stdout}\n{reference.stderr}")


# --------------------------------------------------------------------------- parity

def example_lines():
    for number, line in enumerate(EXAMPLES.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield pytest.param(line, id=f"line{number}")


@pytest.mark.slow
@pytest.mark.parametrize("line", list(example_lines()))
def test_every_example_is_the_same_served_and_in_process(warm, line, tmp_path):
    argv = shlex.split(line)[1:]
    for route in ("served", "in_process"):
        shutil.copytree(ROOT / "examples", tmp_path / route / "examples")
    served = warm.run(*argv, mode="require", cwd=tmp_path / "served")
    reference = warm.run(*argv, mode="off", cwd=tmp_path / "in_process")
    same(*(_without_temporary_names(result, tmp_path / route)
           for result, route in ((served, "served"), (reference, "in_process"))))
    # Files a call writes (plot --out) land in the caller's directory, relative paths and all.
    written = sorted(p.name for p in (tmp_path / "served").iterdir())
    assert written == sorted(p.name for p in (tmp_path / "in_process").iterdir())


def _without_temporary_names(result: subprocess.CompletedProcess, cwd: Path) -> subprocess.CompletedProcess:
    """The result with its working directory and the random part of a temporary file's name
    (a trace's note names the file it streams into) made the same for both routes."""
    def plain(text: str) -> str:
        return re.sub(r"\.[A-Za-z0-9_]{8}\.tmp\b", ".XXXXXXXX.tmp", text.replace(str(cwd), "<cwd>"))

    return subprocess.CompletedProcess(result.args, result.returncode, plain(result.stdout), plain(result.stderr))


ERROR_CASES = [
    ["grad", "sin(x", "x=1"],  # a syntax error, with a caret
    ["grad", "sqr(x)", "x=1"],  # an unknown function, with a hint
    ["grad", "x*y", "x=1"],  # a missing value
    ["grad", "x + __import__('os').system('echo pwned')", "x=1"],  # hostile input
    ["grad", "x**2", "x=1", "--dtype", "float8"],
    ["grad", "x**2", "x=1", "--dtyp", "float64"],  # a mistyped option
    ["grad", "sum(x)", "x=ones(10**10)"],  # refused before allocating
    ["grad", "log(x)", "x=-1"],  # outside the domain: exit status 1
    ["grad", "x", "x=@no-such-file.csv"],
    ["grad"],  # usage
    ["nosuchcommand"],
    [],  # no arguments: the help
    ["--version"],
    ["grad", "--help"],
    ["diff", "x**", "x"],
]


@pytest.mark.slow
@pytest.mark.parametrize("args", ERROR_CASES, ids=lambda a: " ".join(a)[:40] or "no-args")
def test_errors_are_the_same_served_and_in_process(warm, args, tmp_path):
    same(*warm.both(*args, cwd=tmp_path))


def test_standard_input_reaches_the_served_call(warm):
    same(*warm.both("grad", "-", "x=3", "--plain", input="x**2\n"))
    served, reference = warm.both("grad", "sum(x**3)", "x=@-", "--plain", input="1\n2\n3\n")
    same(served, reference)
    assert served.stdout.split() == ["3", "12", "27"]  # 3 x**2


def test_batch_reads_its_requests_from_standard_input(warm):
    requests = 'grad "x**2" x=3\n{"command": "eval", "expr": "x+1", "values": {"x": 2}}\ngrad "sqr(x)" x=1\n'
    served, reference = warm.both("batch", input=requests)
    same(served, reference)
    lines = [json.loads(line) for line in served.stdout.splitlines()]
    assert [line["exit_status"] for line in lines] == [0, 0, 2]
    assert lines[0]["gradient"]["x"]["data"] == 6.0
    # Its worker processes are forks of the call's child: their ending is not the call's
    served, reference = warm.both("batch", "--jobs", "2", input=requests)
    same(served, reference)
    assert served.returncode == 2


def test_relative_paths_are_the_callers(warm, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "v.csv").write_text("x\n1\n2\n4\n")
    served, reference = warm.both("grad", "sum(x**2)", "x=@sub/v.csv:x", "--plain", cwd=tmp_path)
    same(served, reference)
    assert served.stdout.split() == ["2", "4", "8"]
    served, reference = warm.both("plot", "sin(x)", "x=-1:1:5", "--out", "sub/s.svg", cwd=tmp_path)
    same(served, reference)
    assert (tmp_path / "sub" / "s.svg").stat().st_size > 0


def test_files_are_written_with_the_callers_umask(warm, tmp_path):
    for mode, name in (("require", "served.svg"), ("off", "in_process.svg")):
        result = warm.run("plot", "sin(x)", "x=-1:1:5", "--out", name, mode=mode, cwd=tmp_path, umask=0o027)
        assert result.returncode == 0, result.stderr
    modes = {stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("served.svg", "in_process.svg")}
    assert modes == {0o640}


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"COLUMNS": "60"}, {"COLUMNS": "200"}, {"TERM": "dumb"},
                                 {"GRADCLI_DEBUG": "1"}], ids=lambda e: ",".join(e))
def test_the_environment_is_the_callers(warm, env):
    same(*warm.both("grad", "sin(x)*exp(y)", "x=1", "y=2", env=env))


def run_in_terminal(warm: Warm, args: list[str], mode: str, columns: int, env: dict | None = None) -> tuple[int, bytes]:
    """Run gradcli with a pseudo-terminal of `columns` columns as stdin, stdout and stderr."""
    import fcntl
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    process = subprocess.Popen([warm.exe, *args], stdin=slave, stdout=slave, stderr=slave,
                               env={**warm.env, "GRADCLI_SERVER": mode, "TERM": "xterm-256color", **(env or {})},
                               close_fds=True)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    os.close(master)
    return process.wait(timeout=TIMEOUT), output


@pytest.mark.parametrize("columns", [70, 132])
def test_a_terminal_is_a_terminal_for_the_served_call(warm, columns):
    args = ["grad", "sin(x)*exp(y)", "x=1", "y=2"]
    served = run_in_terminal(warm, args, "require", columns)
    reference = run_in_terminal(warm, args, "off", columns)
    assert served == reference
    assert b"\x1b[" in served[1]  # colour: the call saw a terminal
    assert max(len(line) for line in served[1].decode().splitlines() if "\x1b" not in line) <= columns


# --------------------------------------------------------------------------- many at once, crashes, signals

def test_eight_concurrent_clients_each_get_their_own_answer(warm):
    # Independent route: d/dx (k x^2) at x = 3 is 6k.
    processes = [subprocess.Popen([warm.exe, "grad", f"{k}*x**2", "x=3", "--plain"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env={**warm.env, "GRADCLI_SERVER": "require"})
                 for k in range(1, 13)]
    results = [(p.wait(timeout=TIMEOUT), p.stdout.read(), p.stderr.read()) for p in processes]
    assert results == [(0, f"{6 * k}\n", "") for k in range(1, 13)]


def _blocked_child(warm: Warm, process: subprocess.Popen) -> int:
    """The server's child running `process`'s call: the one whose standard input is its pipe."""
    pipe = os.readlink(f"/proc/{process.pid}/fd/0")
    server = warm.pid()
    found: list[int] = []

    def look() -> bool:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().split(") ")[1].split()[1])
                if ppid == server and os.readlink(f"/proc/{entry}/fd/0") == pipe:
                    found.append(int(entry))
                    return True
            except (OSError, IndexError, ValueError):
                continue
        return False

    wait_until(look, what="the server's child for the call")
    child = found[0]
    # Blocked reading standard input: sleeping, with our pipe as fd 0.
    wait_until(lambda: Path(f"/proc/{child}/stat").read_text().split(") ")[1][0] == "S", what="the child to block")
    return child


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the server's child through /proc")
def test_a_crash_in_one_call_leaves_the_server_serving(warm):
    waiting = subprocess.Popen([warm.exe, "grad", "-", "x=3"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**warm.env, "GRADCLI_SERVER": "require"})
    child = _blocked_child(warm, waiting)
    os.kill(child, signal.SIGKILL)  # a crash: the call's process dies
    assert waiting.wait(timeout=TIMEOUT) == -signal.SIGKILL  # the caller dies as the in-process run would
    waiting.stdin.close()
    waiting.stdout.close()
    waiting.stderr.close()
    result = warm.run("grad", "x**2", "x=5", "--plain")
    assert (result.returncode, result.stdout) == (0, "10\n")


def _steadily_asleep(pid: int) -> bool:
    """True once `pid` has loaded torch and then slept for a second on end (blocked reading)."""
    if "libtorch" not in Path(f"/proc/{pid}/maps").read_text():
        return False
    for _ in range(10):
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "S":
            return False
        time.sleep(0.1)
    return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the server's child through /proc")
def test_ctrl_c_interrupts_the_served_call_as_in_process(warm):
    outcomes = {}
    for mode in ("require", "off"):
        waiting = subprocess.Popen([warm.exe, "grad", "-", "x=3"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env={**warm.env, "GRADCLI_SERVER": mode})
        blocked = _blocked_child(warm, waiting) if mode == "require" else waiting.pid
        # wait_until calls the lambda before the loop moves on, so the late binding is this pass's
        wait_until(lambda: _steadily_asleep(blocked), what="the call to block on standard input")  # noqa: B023
        waiting.send_signal(signal.SIGINT)  # what the terminal sends to the foreground job: the client
        waiting.wait(timeout=TIMEOUT)  # standard input stays open: only the signal can end the call
        out, err = waiting.communicate(timeout=TIMEOUT)
        outcomes[mode] = (waiting.returncode, out, err)
        if mode == "require":
            wait_until(lambda: not _alive(blocked), what="the interrupted child to exit")  # noqa: B023
    assert outcomes["require"] == outcomes["off"]
    assert outcomes["require"][0] == 130 and "Traceback" not in outcomes["require"][2]


def test_bad_requests_never_take_the_server_down(warm):
    def send(raw: bytes) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(str(warm.socket))
            s.sendall(raw)
            try:
                s.recv(4096)  # the server closes it, or answers and closes it
            except OSError:
                pass

    def frame(message) -> bytes:
        data = json.dumps(message).encode()
        return struct.pack(">I", len(data)) + data

    send(b"\xff" * 64)  # a huge length
    send(struct.pack(">I", 5) + b"nope!")  # not JSON
    send(frame([1, 2, 3]))  # not an object
    send(frame({"op": "run", "argv": ["sh", "-c", "echo pwned"]}))  # run without a hello, and no descriptors
    send(frame({"op": "exec", "code": "import os"}))  # no such thing
    hello = {"op": "hello", "version": "0.0.0", "fingerprint": "x"}
    send(frame(hello))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:  # another version is refused
        s.settimeout(30)
        s.connect(str(warm.socket))
        s.sendall(frame(hello))
        length = struct.unpack(">I", _recv_exact(s, 4))[0]
        answer = json.loads(_recv_exact(s, length))
        assert answer["accept"] is False and "0.0.0" in answer["reason"]
    result = warm.run("grad", "x**2", "x=4", "--plain")
    assert (result.returncode, result.stdout) == (0, "8\n")


# --------------------------------------------------------------------------- versions, modes, the client

def test_another_environment_runs_in_process(warm):
    # PYTHONHASHSEED is read when Python starts: the server's is not the caller's, so the call
    # is not served. auto runs it in process; require says why it cannot.
    env = {"PYTHONHASHSEED": "123"}
    auto = warm.run("grad", "x**2", "x=4", "--plain", mode="auto", env=env)
    assert (auto.returncode, auto.stdout, auto.stderr) == (0, "8\n", "")
    required = warm.run("grad", "x**2", "x=4", "--plain", mode="require", env=env)
    assert required.returncode == 2
    assert required.stderr.startswith("error: GRADCLI_SERVER=require, but the gradcli server will not run this call")


def test_a_served_call_is_counted_and_an_off_call_is_not(warm):
    before = warm.ask({"op": "status"})["served"]
    warm.run("eval", "x", "x=1", mode="off")
    assert warm.ask({"op": "status"})["served"] == before
    warm.run("eval", "x", "x=1", mode="auto")
    assert warm.ask({"op": "status"})["served"] == before + 1


def test_the_client_imports_nothing_heavy(warm):
    code = ("import sys\n"
            "sys.argv = ['gradcli', 'grad', 'x**2', 'x=3', '--plain']\n"
            "from gradcli import entry\n"
            "status = entry.forwarded(sys.argv[1:])\n"
            "heavy = sorted(m for m in ('torch', 'sympy', 'typer', 'rich', 'numpy', 'click', 'gradcli.cli.app', "
            "'gradcli.errors', 'dataclasses') if m in sys.modules)\n"
            "print(status, heavy, file=sys.stderr)\n")
    # The interpreter the entry point runs on, so that the server takes the call.
    python = Path(gradcli_executable()).read_text().splitlines()[0][2:].strip()
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=TIMEOUT,
                            env={**warm.env, "GRADCLI_SERVER": "require"})
    assert result.stdout == "6\n"
    assert result.stderr == "0 []\n"


def test_a_server_that_does_not_answer_is_passed_over(warm):
    pid = warm.pid()
    os.kill(pid, signal.SIGSTOP)  # alive, holding its socket, answering nothing
    try:
        result = warm.run("grad", "x**2", "x=7", "--plain", mode="auto")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert (result.returncode, result.stdout, result.stderr) == (0, "14\n", "")  # in process, after the wait


def test_the_server_never_manages_itself(warm):
    # The client runs `gradcli server ...` in process; a request for it, sent by hand, is refused.
    status = warm.run("server", "status", mode="require")
    assert status.returncode == 0 and "running" in status.stdout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(warm.socket))
        fingerprint = warm.ask({"op": "status"})["fingerprint"]
        for message, fds in (({"op": "hello", "version": warm.ask({"op": "status"})["version"],
                               "identity": protocol.identity(), "rlimits": protocol.rlimits(), "ignored": [],
                               "fingerprint": fingerprint}, []),
                             ({"op": "run", "argv": ["gradcli", "server", "stop"], "env": {}, "umask": 18,
                               "stdio": [None, None, None]}, [0, 1, 2, os.open(".", os.O_RDONLY)])):
            data = json.dumps(message).encode()
            socket.send_fds(s, [struct.pack(">I", len(data)) + data], fds)
            if fds:
                os.close(fds[-1])
            if message["op"] == "hello":
                length = struct.unpack(">I", _recv_exact(s, 4))[0]
                assert json.loads(_recv_exact(s, length))["accept"] is True
        assert s.recv(4096) == b""  # closed, with nothing run
    assert warm.pid() is not None


def test_an_unknown_mode_is_an_error(warm):
    result = warm.run("grad", "x", "x=1", mode="sometimes")
    assert result.returncode == 2
    assert result.stderr == "error: GRADCLI_SERVER must be auto, off or require, not 'sometimes'\n"


# --------------------------------------------------------------------------- life cycle, safety

def test_require_without_a_server_is_an_error_and_auto_runs_in_process(fresh):
    required = fresh.run("grad", "x**2", "x=3", "--plain", mode="require")
    assert (required.returncode, required.stdout) == (2, "")
    assert required.stderr == ("error: GRADCLI_SERVER=require, but no gradcli server is running\n"
                               "hint: start one with: gradcli server start\n")
    auto = fresh.run("grad", "x**2", "x=3", "--plain", mode="auto")
    assert (auto.returncode, auto.stdout, auto.stderr) == (0, "6\n", "")
    status = fresh.run("server", "status")
    assert (status.returncode, status.stdout) == (1, "no gradcli server is running\n")


def test_start_status_stop_and_permissions(fresh):
    pid = fresh.start()
    assert pid is not None and _alive(pid)
    directory, sock = os.lstat(fresh.directory), os.lstat(fresh.socket)
    assert stat.S_ISDIR(directory.st_mode) and stat.S_IMODE(directory.st_mode) == 0o700
    assert stat.S_ISSOCK(sock.st_mode) and stat.S_IMODE(sock.st_mode) == 0o600
    assert directory.st_uid == sock.st_uid == os.getuid()
    again = fresh.run("server", "start", mode="off")
    assert (again.returncode, again.stdout.startswith(f"gradcli server already running (pid {pid}")) == (0, True)
    status = fresh.run("server", "status", mode="off")
    assert status.returncode == 0 and f"pid {pid}" in status.stdout and "note:" not in status.stdout
    stopped = fresh.run("server", "stop", mode="off")
    assert (stopped.returncode, stopped.stdout) == (0, f"gradcli server stopped (pid {pid})\n")
    assert not _alive(pid) and not fresh.socket.exists()
    assert fresh.run("server", "stop", mode="off").stdout == "no gradcli server is running\n"


def test_a_stale_socket_is_detected_and_removed(fresh):
    pid = fresh.start()
    os.kill(pid, signal.SIGKILL)  # a crash: the socket stays behind
    wait_until(lambda: not _alive(pid), what="the server to die")
    assert fresh.socket.exists()
    result = fresh.run("grad", "x**2", "x=3", "--plain", mode="auto")
    assert (result.returncode, result.stdout, result.stderr) == (0, "6\n", "")  # in process
    assert not fresh.socket.exists()  # and the stale socket is gone
    new = fresh.start()  # a new server starts where the old one crashed
    assert new != pid
    served = fresh.run("grad", "x**2", "x=3", "--plain", mode="require")
    assert (served.returncode, served.stdout) == (0, "6\n")


def test_the_server_exits_when_idle(fresh):
    pid = fresh.start("--idle", "1")
    served = fresh.run("eval", "x", "x=1", "--plain")  # a call: the idle time starts again after it
    assert (served.returncode, served.stdout) == (0, "1\n")
    # Asking for its status is not a call: a server polled all along still exits.
    wait_until(lambda: fresh.ask({"op": "status"}) is None and not _alive(pid), what="the idle server to exit")
    assert not fresh.socket.exists()
    assert fresh.run("server", "status").returncode == 1


def test_the_idle_time_can_come_from_the_environment(fresh):
    result = fresh.run("server", "start", mode="off", env={"GRADCLI_SERVER_IDLE": "1"})
    assert result.returncode == 0 and "exits after 1 s idle" in result.stdout
    bad = fresh.run("server", "start", mode="off", env={"GRADCLI_SERVER_IDLE": "soon"})
    assert (bad.returncode, bad.stderr) == (2, "error: GRADCLI_SERVER_IDLE must be a number of seconds, not 'soon'\n")


def test_a_directory_others_can_enter_is_refused(fresh):
    fresh.directory.mkdir(mode=0o755)
    os.chmod(fresh.directory, 0o755)
    result = fresh.run("server", "start", mode="off")
    assert result.returncode == 2 and "it must be 700" in result.stderr
    auto = fresh.run("grad", "x**2", "x=3", "--plain", mode="auto")  # never talks to it; in process
    assert (auto.returncode, auto.stdout) == (0, "6\n")
    required = fresh.run("grad", "x**2", "x=3", "--plain", mode="require")
    assert required.returncode == 2 and "not private" in required.stderr


def test_a_symlinked_directory_is_refused(fresh, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    fresh.directory.symlink_to(elsewhere)
    result = fresh.run("server", "start", mode="off")
    assert result.returncode == 2 and "symlink" in result.stderr
    assert list(elsewhere.iterdir()) == []


# --------------------------------------------------------------------------- the expression cache, in process

def test_the_server_remembers_recent_expressions_within_bounds(tmp_path):
    from gradcli.warm import daemon as server

    s = server.Server(str(tmp_path), 60.0, -1, "fingerprint", {})
    try:
        s.remember(["gradcli", "grad", "x**2", "x=1"])
        s.remember(["gradcli", "batch"])  # no expression
        s.remember(["gradcli", "grad", "-", "x=1"])  # read from standard input: not known
        s.remember(["gradcli", "jacobian", "[x*y, x]", "x=1", "y=2"])
        s.remember(["gradcli", "grad", "x**2", "x=2"])  # again: now the most recent
        assert list(s.recent) == ["[x*y, x]", "x**2"]
        for k in range(server.RECENT_EXPRESSIONS + 5):
            s.remember(["gradcli", "eval", f"x + {k}", "x=1"])
        assert len(s.recent) == server.RECENT_EXPRESSIONS
        assert list(s.recent)[-1] == f"x + {server.RECENT_EXPRESSIONS + 4}"
        s.remember(["gradcli", "grad", "x" + "+x" * (server.RECENT_CHARACTERS // 2), "x=1"])
        assert sum(map(len, s.recent)) <= server.RECENT_CHARACTERS
    finally:
        s.selector.close()
        s.wake_r.close()
        s.wake_w.close()


def test_preparse_fills_the_parse_cache_and_ignores_bad_text():
    from gradcli.core import session
    from gradcli.warm import daemon as server

    session.parse_cached.cache_clear()
    server.preparse(["sin(x)*y", "sqr(x)", "x + __import__('os')", "(("])
    assert session.parse_cached.cache_info().currsize == 1  # only the one that parses is kept
    hits = session.parse_cached.cache_info().hits
    session.parse_cached("sin(x)*y")
    assert session.parse_cached.cache_info().hits == hits + 1


def test_frames_are_json_both_ways():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from gradcli.warm import protocol as warm

    values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                          | st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20)

    @settings(max_examples=300, deadline=None)
    @given(values)
    def round_trip(value):
        text = warm.encode(value)
        assert text.isascii()
        assert json.loads(text) == value
        assert warm.decode(text) == value
        assert warm.decode(json.dumps(value)) == value

    round_trip()
    assert warm.decode(warm.encode({"argv": ["gradcli", "x\udc80"]})) == {"argv": ["gradcli", "x\udc80"]}
    for bad in ("", "{", '{"a": 1} x', "NaN", "[Infinity]", "{'a': 1}"):
        with pytest.raises(ValueError):
            warm.decode(bad)
    with pytest.raises(ValueError):
        warm.encode(float("nan"))
