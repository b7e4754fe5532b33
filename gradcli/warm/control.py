"""Warm mode, what the CLI calls: `gradcli server start|stop|status`.

`start` runs the server (gradcli/warm/daemon.py) as its own process, `python -m
gradcli.warm.daemon`, and waits until it answers; `stop` and `status` ask it over its socket
(gradcli/warm/protocol.py). Nothing here imports the CLI or the daemon: the daemon imports the
CLI, and the CLI imports this module, so the one way round stays one way.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from gradcli.errors import GradcliError
from gradcli.warm import protocol as warm

DEFAULT_IDLE_S = 15 * 60
START_TIMEOUT_S = 120.0  # `server start` waits this long for the imports and the warm-up


def idle_seconds(value: float | None = None) -> float:
    """The idle time before the server exits: --idle, else GRADCLI_SERVER_IDLE, else 15 minutes."""
    if value is None:
        text = os.environ.get("GRADCLI_SERVER_IDLE", "").strip()
        if not text:
            return float(DEFAULT_IDLE_S)
        try:
            value = float(text)
        except ValueError:
            raise GradcliError(f"GRADCLI_SERVER_IDLE must be a number of seconds, not {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise GradcliError(f"the idle time must be a positive number of seconds, not {value}")
    return float(value)


def running() -> dict[str, Any] | None:
    """The running server's status, or None when none runs."""
    try:
        return warm.ask({"op": "status"})
    except warm.NotPrivate as exc:
        raise GradcliError(f"the gradcli server's directory is not private: {exc}",
                           hint="remove it; gradcli makes it again with mode 700") from None


def start(idle: float | None = None) -> int:
    """`gradcli server start`: start a server in the background and return once it answers."""
    import subprocess

    if not warm.SUPPORTED:
        raise GradcliError("warm mode needs Unix domain sockets that carry file descriptors (Linux, macOS, BSD)")
    idle_s = idle_seconds(idle)
    try:
        directory = warm.make_private_dir()
    except warm.NotPrivate as exc:
        raise GradcliError(f"cannot use {warm.runtime_dir()}: {exc}",
                           hint="remove it; gradcli makes it again with mode 700") from None
    info = running()
    if info is not None:
        sys.stdout.write(f"gradcli server already running (pid {info.get('pid')}, {info.get('socket')})\n")
        return 0
    warm.remove_if_stale(directory)
    log_path = os.path.join(directory, warm.LOG_NAME)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        process = subprocess.Popen([sys.executable, "-m", "gradcli.warm.daemon", "--idle", repr(idle_s)],
                                   stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd, cwd=directory,
                                   start_new_session=True, close_fds=True)
    finally:
        os.close(log_fd)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        info = running()
        if info is not None and info.get("pid") == process.pid:
            process.returncode = 0  # it lives on, detached; nothing here is to wait for it
            sys.stdout.write(f"gradcli server started (pid {process.pid}, {info.get('socket')}; "
                             f"exits after {idle_s:g} s idle)\n")
            return 0
        if process.poll() is not None:
            info = running()
            if info is not None:  # another start won the race: that server serves
                sys.stdout.write(f"gradcli server already running (pid {info.get('pid')}, {info.get('socket')})\n")
                return 0
            raise GradcliError(f"the gradcli server did not start (exit status {process.returncode})",
                               hint=f"its log is {log_path}")
        time.sleep(0.02)
    process.kill()
    raise GradcliError(f"the gradcli server did not answer within {START_TIMEOUT_S:g} s", hint=f"its log is {log_path}")


def stop() -> int:
    """`gradcli server stop`: ask the server to exit, and wait until it has."""
    try:
        answer = warm.ask({"op": "stop"})
    except warm.NotPrivate as exc:
        raise GradcliError(f"the gradcli server's directory is not private: {exc}") from None
    if answer is None:
        sys.stdout.write("no gradcli server is running\n")
        return 0
    pid = int(answer.get("pid", 0))
    running, wait_s = int(answer.get("running", 0)), float(answer.get("wait_s", 60))
    if running:
        sys.stdout.write(f"gradcli server stopping (pid {pid}): waiting for {running} running call(s) to finish, "
                         f"at most {wait_s:g} s, after which they are ended\n")
        sys.stdout.flush()
    deadline = time.monotonic() + wait_s + 30  # the server ends its calls by wait_s, then exits
    while pid and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        except PermissionError:
            break
        time.sleep(0.02)
    else:
        if pid:
            raise GradcliError(f"the gradcli server (pid {pid}) has not exited {wait_s + 30:g} s after the stop",
                               hint=f"kill {pid}")
    sys.stdout.write(f"gradcli server stopped (pid {pid})\n")
    return 0


def status() -> int:
    """`gradcli server status`: 0 and a description when one runs, 1 when none does."""
    info = running()
    if info is None:
        directory = warm.runtime_dir()
        removed = os.path.isdir(directory) and warm.remove_if_stale(directory)
        sys.stdout.write("no gradcli server is running"
                         + (" (removed the stale socket of one that crashed)" if removed else "") + "\n")
        return 1
    uptime = time.time() - float(info.get("started", time.time()))
    same = info.get("fingerprint") == warm.fingerprint()
    sys.stdout.write(
        f"gradcli server {info.get('version')} running: pid {info.get('pid')}, socket {info.get('socket')}\n"
        f"up {uptime:.0f} s, {info.get('served')} call(s) served ({info.get('served_by_spare')} by a warm spare), "
        f"{info.get('running')} running, "
        f"exits after {float(info.get('idle_s', 0)):g} s idle\n")
    if not same:
        sys.stdout.write("note: it runs another installation or environment of gradcli, so calls from here run "
                         "in process; restart it: gradcli server stop; gradcli server start\n")
    return 0
