"""Warm mode stands in only for its own caller (issue 20, item 4).

The server serves a call only from a process identical to it in what matters (uids, gids,
groups, capabilities, mount namespace, root), checked in /proc on the server's side; the call
runs under the caller's resource limits, keeps the caller's ignored signals ignored, and
`gradcli server stop` lets a running call finish (or ends it after a stated wait) and leaves no
process behind. Each test makes its own fault: a second process with dropped capabilities
(setpriv) or in another mount namespace (unshare -m), a `ulimit -t`, nohup, a stop mid-call.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradcli.warm import protocol
from tests.test_server import TIMEOUT, Warm, _alive, _blocked_child, wait_until

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="the identity checks read /proc")


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    w = Warm(tmp_path_factory.mktemp("xdg"))
    w.start()
    yield w
    w.stop()


@pytest.fixture
def fresh(tmp_path):
    w = Warm(tmp_path / "xdg")
    (tmp_path / "xdg").mkdir(mode=0o700)
    yield w
    w.stop()


def _usable(prefix: list[str]) -> str | None:
    """None if `prefix true` runs here, else why not (the reason a test is skipped)."""
    if shutil.which(prefix[0]) is None:
        return f"{prefix[0]} is not installed"
    result = subprocess.run([*prefix, "true"], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        return f"this machine refuses `{' '.join(prefix)}`: {result.stderr.strip()}"
    return None


DROP_CAPS = ["setpriv", "--inh-caps=-all", "--bounding-set=-all"]
NEW_MOUNT_NS = ["unshare", "-m"]


def _other_caller(warm: Warm, prefix: list[str], words: str) -> None:
    """A caller run under `prefix` is not served: require says why (exit 2), auto runs in process."""
    reason = _usable(prefix)
    if reason is not None:
        pytest.skip(reason)
    served = warm.ask({"op": "status"})["served"]
    required = subprocess.run([*prefix, warm.exe, "grad", "x**2", "x=3", "--plain"], capture_output=True,
                              text=True, env={**warm.env, "GRADCLI_SERVER": "require"}, timeout=TIMEOUT)
    assert required.returncode == 2, required.stderr
    assert required.stdout == ""
    assert required.stderr.startswith("error: GRADCLI_SERVER=require, but the gradcli server will not run this "
                                      f"call: the server differs from you in {words}")
    auto = subprocess.run([*prefix, warm.exe, "grad", "x**2", "x=3", "--plain"], capture_output=True, text=True,
                          env={**warm.env, "GRADCLI_SERVER": "auto"}, timeout=TIMEOUT)
    assert (auto.returncode, auto.stdout, auto.stderr) == (0, "6\n", "")
    assert warm.ask({"op": "status"})["served"] == served  # neither was served
    # The same caller without the prefix is served.
    same = warm.run("grad", "x**2", "x=3", "--plain")
    assert (same.returncode, same.stdout) == (0, "6\n")
    assert warm.ask({"op": "status"})["served"] == served + 1


def test_a_caller_with_fewer_capabilities_is_not_served(warm):
    _other_caller(warm, DROP_CAPS, "effective capabilities")


def test_a_caller_in_another_mount_namespace_is_not_served(warm):
    _other_caller(warm, NEW_MOUNT_NS, "mount namespace")


def test_the_server_checks_proc_not_the_callers_word(warm):
    """A caller with dropped capabilities that claims the server's own identity is refused."""
    reason = _usable(DROP_CAPS)
    if reason is not None:
        pytest.skip(reason)
    status = warm.ask({"op": "status"})
    hello = {"op": "hello", "version": status["version"], "fingerprint": status["fingerprint"],
             "identity": protocol.identity(), "rlimits": protocol.rlimits(), "ignored": []}  # ours: the server's
    code = ("import json, socket, struct, sys\n"
            "s = socket.socket(socket.AF_UNIX); s.settimeout(30); s.connect(sys.argv[1])\n"
            "data = sys.argv[2].encode(); s.sendall(struct.pack('>I', len(data)) + data)\n"
            "n = struct.unpack('>I', s.recv(4))[0]; answer = b''\n"
            "while len(answer) < n: answer += s.recv(n - len(answer))\n"
            "print(answer.decode())\n")
    result = subprocess.run([*DROP_CAPS, sys.executable, "-c", code, str(warm.socket), json.dumps(hello)],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["accept"] is False
    assert answer["reason"] == "what the call says of its effective capabilities is not what /proc says"
    # Without the claim at all: refused too.
    del hello["identity"]
    result = subprocess.run([sys.executable, "-c", code, str(warm.socket), json.dumps(hello)],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert json.loads(result.stdout) == {**json.loads(result.stdout), "accept": False,
                                         "reason": "the call did not say who it is"}


def test_the_callers_cpu_limit_ends_the_served_call(warm):
    served = warm.ask({"op": "status"})["served"]
    command = (f'ulimit -t 2; GRADCLI_SERVER=require {warm.exe} minimize "(w-3)**2" w=0 --steps 10000000')
    started = time.monotonic()
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=warm.env, timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    # SIGXCPU at the soft limit, SIGKILL at the hard one (bash -c runs its last command in its own
    # process, so the signal is bash's; had it forked, 128 + N).
    ended = {-signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGXCPU, 128 + signal.SIGKILL}
    assert result.returncode in ended, (result.returncode, result.stderr)
    assert elapsed < 30, elapsed  # without the limit: minutes
    assert warm.ask({"op": "status"})["served"] == served + 1  # it was the served call that the limit ended


def test_a_limit_above_the_servers_runs_in_process(fresh):
    # A server started under a lower hard limit on open files cannot give a child a higher one.
    started = subprocess.run(["bash", "-c", f"ulimit -n 512 && {fresh.exe} server start"],
                             capture_output=True, text=True, env={**fresh.env, "GRADCLI_SERVER": "off"},
                             timeout=TIMEOUT)
    assert started.returncode == 0, started.stderr
    required = subprocess.run(["bash", "-c", f"ulimit -n 1024 && {fresh.exe} grad x**2 x=3 --plain"],
                              capture_output=True, text=True, env={**fresh.env, "GRADCLI_SERVER": "require"},
                              timeout=TIMEOUT)
    assert required.returncode == 2
    assert "your RLIMIT_NOFILE (1024) is above the server's hard limit" in required.stderr
    lower = subprocess.run(["bash", "-c", f"ulimit -n 256 && {fresh.exe} grad x**2 x=3 --plain"],
                           capture_output=True, text=True, env={**fresh.env, "GRADCLI_SERVER": "require"},
                           timeout=TIMEOUT)
    assert (lower.returncode, lower.stdout) == (0, "6\n")


def test_signals_the_caller_ignores_stay_ignored(warm):
    """Under nohup, SIGHUP neither reaches the served call through the client nor ends it."""
    if shutil.which("nohup") is None:
        pytest.skip("nohup is not installed")
    waiting = subprocess.Popen(["nohup", warm.exe, "grad", "-", "x=3", "--plain"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**warm.env, "GRADCLI_SERVER": "require"})
    child = _blocked_child(warm, waiting)
    ignored = int(next(line for line in Path(f"/proc/{child}/status").read_text().splitlines()
                       if line.startswith("SigIgn:")).split()[1], 16)
    assert ignored & (1 << (signal.SIGHUP - 1)), "the served call does not ignore SIGHUP"
    waiting.send_signal(signal.SIGHUP)  # the terminal hangs up: the client ignores it, passes nothing on
    os.kill(child, signal.SIGHUP)  # and should it reach the call itself, the call ignores it too
    time.sleep(0.5)
    assert _alive(child) and waiting.poll() is None
    out, err = waiting.communicate("x**2\n", timeout=TIMEOUT)
    assert (waiting.returncode, out, err) == (0, "6\n", "")


def _processes_in_group(pgid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().split(") ")[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry))
    return found


def test_stop_lets_a_running_call_finish_and_leaves_nothing_behind(fresh):
    server = fresh.start()
    waiting = subprocess.Popen([fresh.exe, "grad", "-", "x=3", "--plain"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**fresh.env, "GRADCLI_SERVER": "require"})
    child = _blocked_child(fresh, waiting)
    stop = subprocess.Popen([fresh.exe, "server", "stop"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**fresh.env, "GRADCLI_SERVER": "off"})
    first = stop.stdout.readline()
    assert first == (f"gradcli server stopping (pid {server}): waiting for 1 running call(s) to finish, "
                     "at most 60 s, after which they are ended\n")
    assert _alive(server) and _alive(child)  # still waiting for the call
    out, err = waiting.communicate("x**2\n", timeout=TIMEOUT)
    assert (waiting.returncode, out, err) == (0, "6\n", "")  # the call finished as it would have
    rest, _ = stop.communicate(timeout=TIMEOUT)
    assert (stop.returncode, rest) == (0, f"gradcli server stopped (pid {server})\n")
    assert not _alive(server) and not _alive(child) and _processes_in_group(child) == []


def test_stop_ends_a_call_that_outlasts_the_wait(fresh):
    result = fresh.run("server", "start", mode="off", env={"GRADCLI_SERVER_STOP_WAIT": "1"})
    assert result.returncode == 0, result.stderr
    server = fresh.pid()
    waiting = subprocess.Popen([fresh.exe, "grad", "-", "x=3", "--plain"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**fresh.env, "GRADCLI_SERVER": "require"})
    child = _blocked_child(fresh, waiting)
    started = time.monotonic()
    stop = fresh.run("server", "stop", mode="off")
    assert stop.returncode == 0
    assert stop.stdout == (f"gradcli server stopping (pid {server}): waiting for 1 running call(s) to finish, "
                           f"at most 1 s, after which they are ended\ngradcli server stopped (pid {server})\n")
    assert time.monotonic() - started < 30
    out, err = waiting.communicate(timeout=TIMEOUT)  # standard input still open: only the stop ended it
    assert waiting.returncode == -signal.SIGKILL
    assert err == "error: the gradcli server was stopped, and ended this call 1 s later\n"
    wait_until(lambda: not _alive(child), timeout=30, what="the call's child to be gone")
    assert not _alive(server) and _processes_in_group(child) == []


def test_the_socket_directory_is_used_through_the_descriptor_checked(tmp_path):
    directory = tmp_path / "d"
    directory.mkdir(mode=0o700)
    fd = protocol.open_private(str(directory))
    try:
        directory.rename(tmp_path / "moved")  # swapped after the check
        (tmp_path / "d").mkdir(mode=0o700)
        os.close(os.open("marker", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    finally:
        os.close(fd)
    assert (tmp_path / "moved" / "marker").exists() and not (tmp_path / "d" / "marker").exists()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "moved")
    with pytest.raises(protocol.NotPrivate, match="symlink"):
        protocol.open_private(str(link))
    os.chmod(tmp_path / "moved", 0o755)
    with pytest.raises(protocol.NotPrivate, match="it must be 700"):
        protocol.open_private(str(tmp_path / "moved"))


def test_frames_of_the_hello_are_plain_json():
    hello = {"identity": protocol.identity(), "rlimits": protocol.rlimits(), "ignored": protocol.ignored_signals()}
    assert protocol.decode(protocol.encode(hello)) == hello
    assert set(hello["identity"]) == {key for key, _ in protocol.IDENTITY_FIELDS}
