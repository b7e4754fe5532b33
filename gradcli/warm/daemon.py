"""Warm mode, the server itself (started by gradcli/warm/control.py, `gradcli server start`).

The server imports torch, sympy and gradcli once, runs a few calls to warm them up, and then
forks one child per call. The child takes over the caller's standard streams and working
directory (received over the socket, see gradcli/warm/protocol.py), sets the caller's environment and
umask, and runs the very `gradcli.cli.app.main()` an in-process call runs; its exit status goes
back to the caller. So a call behaves as in process (terminal or pipe, width, colour, stdin,
relative paths), and whatever a call does, a crash included, ends with its child: the server
and the calls of others go on.

The only thing a connection can ask the server to run is a gradcli command line: the request
is an argv handed to gradcli's own argument parser, never a program, a path or code.

The parent is one thread with one event loop (selectors): it forks, and forking a process
with threads of its own is a known source of deadlocks in the child. Calls run at once in
their children, so slow calls never hold up others.

Run by `gradcli server start` as `python -m gradcli.warm.daemon --idle SECONDS`; it writes its log
to server.log next to the socket. This is the one module of warm/ that imports the CLI (it hosts
it); the CLI reaches warm mode only through control.py, so no import runs the other way.
"""

from __future__ import annotations

import array
import errno
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

from gradcli.errors import GradcliError
from gradcli.version import __version__ as VERSION
from gradcli.warm import protocol as warm
from gradcli.warm.control import idle_seconds

if TYPE_CHECKING:
    import io

    import typer
    from typer._click.core import Command  # typer's own click (typer vendors it from 0.26)

MAX_RUNNING = 64  # calls at once; one more is told "busy" and runs in its own process
HANDSHAKE_DEADLINE_S = 10.0  # a connection that has not asked to run by then is dropped
FDS_PER_CALL = 4  # stdin, stdout, stderr, the working directory
STOP_WAIT_S = 60.0  # `server stop` lets running calls finish for this long, then ends them
ALLOWED_SIGNALS = {int(getattr(signal, name)) for name in warm.FORWARDED_SIGNALS if hasattr(signal, name)}


def log(message: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} gradcli server[{os.getpid()}]: {message}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- warming up

# Calls that take every command through its usual path: --device cpu, since asking for CUDA
# would initialise it, and CUDA does not survive a fork (each call's child picks its own device).
WARM_UP_CALLS = [
    ["grad", "3*y**2 + 1", "y=2", "--device", "cpu"],
    ["grad", "3*y**2 + 1", "y=2", "--device", "cpu", "--plain"],
    ["grad", "sin(x)*exp(y)", "x=1", "y=2", "--device", "cpu", "--json"],
    ["grad", "mean((t - p)**2)", "p=[1,2,3]", "t=[2,3,4]", "--wrt", "p", "--device", "cpu"],
    ["grad", "x**3", "x=2", "--order", "2", "--device", "cpu"],
    ["jacobian", "[x*y, sin(x)]", "x=1", "y=2", "--device", "cpu"],
    ["hessian", "x**2*y", "x=1", "y=2", "--device", "cpu"],
    ["vjp", "(x + 1)**2", "x=[1,2]", "v=[1,1]", "--device", "cpu"],
    ["jvp", "[x[0]*x[1], sin(x[0])]", "x=[1,2]", "v=[1,0]", "--device", "cpu"],
    ["eval", "x + 1", "x=2", "--device", "cpu"],
    ["graph", "(x + w)*(w + 1)", "w=1", "x=2", "--device", "cpu"],
    ["diff", "sin(x)*x**2", "x"],
    ["plot", "sin(x)", "x=-1:1:5", "--device", "cpu", "--format", "csv"],  # not an image: matplotlib is optional
    ["grad", "sqr(x)", "x=1"],  # the error path
]


# A spare's own warm-up: the most common calls, short enough to be over between two calls of a
# shell loop.
SPARE_WARM_UP_CALLS = WARM_UP_CALLS[:3]


def run_quietly(calls: list[list[str]]) -> None:
    """Run gradcli calls in this process, their output discarded, leaving no trace a later call
    could see: the random generator is put back (rand() without --seed must give what a fresh
    process gives), and standard input is free again."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    import torch

    from gradcli import inputs
    from gradcli.cli import app as cli

    rng_state = torch.random.get_rng_state()
    for args in calls:
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            try:
                cli.app(args, prog_name="gradcli", standalone_mode=False)
            except BaseException:  # noqa: BLE001 - a warm-up call's outcome does not matter
                pass
        inputs.reset_stdin()
    torch.random.set_rng_state(rng_state)


# Commands whose first argument is an expression: the server remembers the recent ones, and
# each spare parses them ahead of its call (gradcli.api caches parsed expressions), so a loop
# over one expression, however long, does not parse it again on every call.
EXPRESSION_COMMANDS = {"grad", "jacobian", "hessian", "vjp", "jvp", "eval", "graph", "diff", "plot"}
RECENT_EXPRESSIONS = 16
RECENT_CHARACTERS = 1_000_000


def expression_of(argv: list[str]) -> str | None:
    """The expression a call names, if it names one in the usual place (only ever parsed: the
    parser reads any text safely, so a wrong guess costs nothing but the parse)."""
    if len(argv) >= 3 and argv[1] in EXPRESSION_COMMANDS and argv[2] != "-" and not argv[2].startswith("--"):
        return argv[2]
    return None


def preparse(expressions: list[str]) -> None:
    """Parse `expressions` into the session's cache, and differentiate them into the
    reference's, ignoring any that do not parse."""
    from gradcli.core import reference, session

    for text in expressions:
        try:
            parsed = session.parse_cached(text)
            parsed.pretty()
            reference.differentiate_ahead(parsed.components)
        except Exception:  # noqa: BLE001 - the call itself will report what is wrong with it
            pass


def _warm_up_with_files() -> None:
    """The calls that read and write files: --points (CSV and .npy) and batch, on a few rows."""
    import shutil
    import tempfile

    import numpy as np

    directory = tempfile.mkdtemp(prefix="gradcli-warm-up-")
    try:
        csv_path, npy_path = os.path.join(directory, "p.csv"), os.path.join(directory, "p.npy")
        with open(csv_path, "w") as f:
            f.write("x,y\n0.5,1.5\n-1,2\n")
        np.save(npy_path, np.rec.fromarrays([np.array([0.5, -1.0]), np.array([1.5, 2.0])],
                                            dtype=[("x", float), ("y", float)]))
        requests = os.path.join(directory, "requests.txt")
        with open(requests, "w") as f:
            f.write('grad "3*y**2 + 1" y=2 --device cpu\n{"command": "eval", "expr": "x + 1", "values": {"x": 2}}\n')
        expression = "sin(x)*exp(-x**2) + log(1 + y**2)"
        run_quietly([
            ["grad", expression, "--points", csv_path, "--device", "cpu", "--quiet"],
            ["grad", expression, "--points", npy_path, "--output", os.path.join(directory, "out.npy"),
             "--device", "cpu", "--quiet"],
            ["batch", "--jobs", "1", requests],  # no workers: the server forks nothing but its calls
        ])
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def warm_up() -> None:
    """Import everything a call needs, and run a few calls, so that a child starts warm."""
    import typer.main

    from gradcli.cli import app as cli

    run_quietly(WARM_UP_CALLS)
    _warm_up_with_files()
    # Typer builds the click command from the functions' signatures on every call (tens of
    # milliseconds); build it once here, and let every child use the one it inherits.
    built = typer.main.get_command(cli.app)
    build = typer.main.get_command

    def get_command(typer_instance: typer.Typer) -> Command:
        return built if typer_instance is cli.app else build(typer_instance)

    typer.main.get_command = get_command
    import gc

    gc.collect()
    gc.freeze()  # the children's collector leaves the warm objects alone (and unshared pages unwritten)


# --------------------------------------------------------------------------- one call, in its child

def _std_stream(fd: int, setup: dict[str, Any] | None, name: str) -> io.TextIOWrapper:
    """A standard stream on `fd`, built as the caller's interpreter built its own."""
    import io

    mode = "rb" if fd == 0 else "wb"
    buffer = open(fd, mode, closefd=False)  # noqa: SIM115 - the call's standard stream, for its whole life
    try:
        buffer.raw.name = name  # type: ignore[attr-defined]  # a BufferedReader/Writer over a FileIO
    except AttributeError:
        pass
    setup = setup or {}
    return io.TextIOWrapper(buffer, encoding=setup.get("encoding") or "utf-8", errors=setup.get("errors") or "strict",
                            newline="\n", line_buffering=bool(setup.get("line_buffering")),
                            write_through=bool(setup.get("write_through")))


def _report_exit_early(report_fd: int) -> None:
    """Tell the caller the exit status as soon as the output is flushed, before the exit.

    Tearing down a process the size of torch takes tens of milliseconds that the caller need
    not wait for. cli.main() ends the process with os._exit (to skip interpreter teardown), so
    this child's os._exit reports first; the server still reports what it sees when the child
    is gone (a crash), and the caller takes whichever comes first.
    """
    real_exit = os._exit
    report = socket.socket(fileno=report_fd)
    caller = os.getpid()

    def exit_reporting(code: int) -> None:
        if os.getpid() != caller:  # a process of the call's own (gradcli batch's workers) ending
            real_exit(code)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001 - a closed pipe: nothing more to write
                pass
        try:
            warm.send_frame(report, {"exit": code & 0xFF})
        except OSError:
            pass
        real_exit(code)

    os._exit = exit_reporting  # type: ignore[assignment]  # it never returns either


def apply_rlimits(limits: dict[str, Any]) -> None:
    """Set the caller's resource limits (soft, hard; -1 for unlimited) in this process."""
    import resource

    for name, (soft, hard) in limits.items():
        which = getattr(resource, name, None) if name in warm.RLIMITS else None
        if which is not None:
            resource.setrlimit(which, (resource.RLIM_INFINITY if soft == -1 else soft,
                                       resource.RLIM_INFINITY if hard == -1 else hard))


def rlimits_refusal(limits: object) -> str | None:
    """Why the caller's resource limits cannot be copied into a child of the server (one above
    the server's own hard limit, which a child cannot raise); None when they can."""
    if not isinstance(limits, dict):
        return "the call did not send its resource limits"
    mine = warm.rlimits()

    def value(v: object) -> float:
        return float("inf") if v == -1 else float(v) if isinstance(v, int) and v >= 0 else float("nan")

    for name, pair in limits.items():
        if name not in mine:
            continue
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, int) for v in pair)):
            return "the call sent resource limits that are not numbers"
        soft, hard = value(pair[0]), value(pair[1])
        if not soft <= hard:  # NaN included
            return f"the call's {name} is not a valid limit"
        if hard > value(mine[name][1]):
            return f"your {name} ({'unlimited' if pair[1] == -1 else pair[1]}) is above the server's hard limit"
    return None


def run_call(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become the caller's process, run gradcli, and exit. Never returns."""
    code = 3
    try:
        for signum in ALLOWED_SIGNALS - {signal.SIGINT}:
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C: KeyboardInterrupt, as in process
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # The caller's ignored signals stay ignored (SIGHUP under nohup), as in process.
        for signum in request.get("ignored") or []:
            if isinstance(signum, int) and signum not in (signal.SIGKILL, signal.SIGSTOP):
                try:
                    signal.signal(signum, signal.SIG_IGN)
                except (OSError, ValueError):
                    pass
        # A process group of its own: `server stop` can end the call and any process it forked.
        os.setpgid(0, 0)
        # The caller's resource limits (checked at the hello to be no higher than the server's,
        # so setting them only ever lowers this child's own).
        apply_rlimits(request.get("rlimits") or {})
        stdin, stdout, stderr, cwd, report_fd = fds
        for source, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(source, target)
        os.fchdir(cwd)
        for fd in (stdin, stdout, stderr, cwd):
            if fd > 2:
                os.close(fd)
        _report_exit_early(report_fd)
        os.umask(int(request["umask"]))
        os.environ.clear()
        os.environ.update(request["env"])
        time.tzset()
        sys.argv = list(request["argv"])
        setups = request["stdio"]
        # The __std*__ too: they are what a fresh process of the caller would have had.
        sys.stdin = sys.__stdin__ = _std_stream(0, setups[0], "<stdin>")  # type: ignore[misc]
        sys.stdout = sys.__stdout__ = _std_stream(1, setups[1], "<stdout>")  # type: ignore[misc]
        sys.stderr = sys.__stderr__ = _std_stream(2, setups[2], "<stderr>")  # type: ignore[misc]
        from gradcli.cli import app as cli

        try:
            cli.main()  # ends the process itself (os._exit) once torch is loaded, as in process
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:  # Ctrl-C before gradcli's own handler was reached: as in process
        try:
            os.write(2, b"\ninterrupted\n")
        except OSError:
            pass
        code = 130
    except BaseException as exc:  # noqa: BLE001 - the child must never return into the server
        try:
            os.write(2, f"internal error: {type(exc).__name__} in the gradcli server's child: {exc}\n".encode())
        except OSError:
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001
                pass
        os._exit(code)


# --------------------------------------------------------------------------- the server

class Connection:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = bytearray()
        self.fds: list[int] = []
        self.state = "hello"  # hello -> ready (accepted) -> running -> closed
        self.opened = time.monotonic()
        self.pid: int | None = None
        self.pidfd: int | None = None
        self.peer_pid: int | None = None  # from SO_PEERCRED, at accept
        self.rlimits: dict[str, Any] = {}
        self.ignored: list[int] = []
        self.ended_by_stop = False

    def close_fds(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []


class Spare:
    def __init__(self, pid: int, pidfd: int, inbox: socket.socket):
        self.pid, self.pidfd, self.inbox = pid, pidfd, inbox
        self.ready = False


def wait_for_call(inbox: socket.socket, expressions: list[str]) -> None:
    """In a spare child: wait for a call from the server, then run it. Never returns.

    While it waits, it runs the warm-up calls once more: a forked child's first call copies
    every page it writes (reference counts, caches), some thousands of page faults that make
    a call three to six times slower; a spare takes them before its call arrives.
    """
    try:
        run_quietly(SPARE_WARM_UP_CALLS)
        preparse(expressions)
        inbox.setblocking(True)
        inbox.sendall(b"r")  # ready: the server hands calls only to a spare that is
        data, ancillary, _flags, _ = inbox.recvmsg(65536, socket.CMSG_SPACE((FDS_PER_CALL + 1) * struct.calcsize("i")))
        fds = array.array("i")
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        if not data or len(fds) != FDS_PER_CALL + 1:
            os._exit(0)  # the server is gone, or stopped: nothing to run
        buffer = bytearray(data)
        while len(buffer) < 4 or len(buffer) < 4 + struct.unpack(">I", buffer[:4])[0]:
            more = inbox.recv(1 << 20)
            if not more:
                os._exit(0)
            buffer += more
        length = struct.unpack(">I", buffer[:4])[0]
        request = json.loads(bytes(buffer[4 : 4 + length]))
        inbox.close()
    except BaseException:  # noqa: BLE001
        os._exit(3)
    run_call(request, list(fds))


class Server:
    def __init__(self, directory: str, idle_s: float, lock_fd: int, fingerprint: str, added_env: dict[str, str],
                 dir_fd: int = -1, stop_wait_s: float = STOP_WAIT_S):
        self.directory = directory
        self.dir_fd = dir_fd
        self.identity = warm.identity()  # None without /proc: then only the uid is checked
        self.stop_wait_s = stop_wait_s
        self.stop_deadline = float("inf")
        self.path = os.path.join(directory, warm.SOCKET_NAME)
        self.idle_s = idle_s
        self.lock_fd = lock_fd
        self.fingerprint = fingerprint
        self.added_env = added_env
        self.selector = selectors.DefaultSelector()
        self.connections: dict[int, Connection] = {}  # by socket fd
        self.children: dict[int, Connection] = {}  # by pidfd, or by pid where there is no pidfd_open
        self.stopping = False
        self.served = 0
        self.served_by_spare = 0  # the rest waited for a fork of their own
        self.started = time.time()
        self.last_activity = time.monotonic()
        self.listener: socket.socket | None = None
        self.wake_r, self.wake_w = socket.socketpair()
        # A child forked ahead of time, waiting for its call: a fork of a process this size
        # takes tens of milliseconds, paid between calls instead of during one.
        self.spare: Spare | None = None
        self.recent: dict[str, None] = {}  # expressions of recent calls, oldest first

    # ---- set-up and tear-down

    def listen(self) -> None:
        """Bind under a temporary name and rename into place once listening: a client never
        finds a socket that refuses it while a live server is behind it (which would make it
        look stale)."""
        # Every name is relative to the directory checked through its descriptor (and bound
        # from it as the working directory), never to its path, which could be swapped.
        temporary = f"{warm.SOCKET_NAME}.{os.getpid()}"
        os.fchdir(self.dir_fd)
        try:
            os.unlink(temporary, dir_fd=self.dir_fd)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            listener.bind(temporary)  # relative: in the working directory, the checked one
        finally:
            os.umask(old)
        os.chmod(temporary, 0o600)  # relative, as the bind
        listener.listen(128)
        listener.setblocking(False)
        os.replace(temporary, warm.SOCKET_NAME, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        self.listener = listener
        self.inode = os.stat(warm.SOCKET_NAME, dir_fd=self.dir_fd, follow_symlinks=False).st_ino
        self.selector.register(listener, selectors.EVENT_READ, "listen")
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.selector.register(self.wake_r, selectors.EVENT_READ, "wake")
        signal.set_wakeup_fd(self.wake_w.fileno())
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.begin_stop(f"signal {signum}")

    def begin_stop(self, why: str) -> None:
        """No new calls (the socket goes at once, so new calls run in process); the calls
        running finish, and then the server exits."""
        if self.stopping:
            return
        self.stopping = True
        self.stop_deadline = time.monotonic() + self.stop_wait_s
        log(f"stopping ({why}); {len(self.children)} call(s) still running"
            + (f", given {self.stop_wait_s:g} s to finish" if self.children else ""))
        if self.spare is not None:
            spare, self.spare = self.spare, None
            self.discard(spare)
        self.remove_socket()
        if self.listener is not None:
            self.selector.unregister(self.listener)
            self.listener.close()
            self.listener = None

    def remove_socket(self) -> None:
        try:
            if os.stat(warm.SOCKET_NAME, dir_fd=self.dir_fd, follow_symlinks=False).st_ino == self.inode:
                os.unlink(warm.SOCKET_NAME, dir_fd=self.dir_fd)  # ours, not a newer server's
        except OSError:
            pass

    def server_fds(self) -> list[int]:
        """Every descriptor of the server's own, for a child to close."""
        fds = [self.lock_fd, self.dir_fd, self.selector.fileno(), self.wake_r.fileno(), self.wake_w.fileno()]
        if self.spare is not None:
            fds += [self.spare.pidfd, self.spare.inbox.fileno()]
        if self.listener is not None:
            fds.append(self.listener.fileno())
        for conn in self.connections.values():
            fds.append(conn.sock.fileno())
            if conn.pidfd is not None:
                fds.append(conn.pidfd)
        return fds

    # ---- the loop

    def run(self) -> None:
        self.refill()
        log(f"ready on {self.path} (idle exit after {self.idle_s:g} s)")
        while True:
            now = time.monotonic()
            if self.stopping and not self.connections:
                break
            if not self.connections and now - self.last_activity >= self.idle_s:
                log(f"idle for {self.idle_s:g} s: exiting")
                self.begin_stop("idle")
                break
            timeout = self.idle_s - (now - self.last_activity)
            waiting = [c for c in self.connections.values() if c.state in ("hello", "ready")]
            if waiting:
                timeout = min(timeout, max(0.0, min(c.opened for c in waiting) + HANDSHAKE_DEADLINE_S - now))
            if not hasattr(os, "pidfd_open") and self.children:
                timeout = min(timeout, 0.05)
            if self.stopping:
                if now >= self.stop_deadline and self.children:
                    self.end_calls()
                    continue
                timeout = min(timeout, max(0.0, self.stop_deadline - now))
            for key, _ in self.selector.select(max(0.0, timeout)):
                try:
                    self.dispatch(key.data, key.fileobj)
                except Exception as exc:  # noqa: BLE001 - one connection's trouble is its own
                    log(f"dropped a connection: {type(exc).__name__}: {exc}")
                    conn = key.data if isinstance(key.data, Connection) else None
                    if conn is not None:
                        self.close(conn)
            if not hasattr(os, "pidfd_open"):
                for conn in list(self.children.values()):
                    self.reap(conn, block=False)
            now = time.monotonic()
            for conn in [c for c in self.connections.values() if c.state in ("hello", "ready")]:
                if now - conn.opened > HANDSHAKE_DEADLINE_S:
                    self.close(conn)
        self.end_calls()  # none should be left; never leave one behind
        self.remove_socket()
        log(f"exited after {self.served} call(s)")

    def end_calls(self) -> None:
        """End the calls still running (`server stop` waited long enough): each call's process
        group (its child and whatever that forked), then reap them and tell their callers."""
        for conn in list(self.children.values()):
            if conn.pid is None:
                continue
            log(f"ending call {conn.pid}: still running {self.stop_wait_s:g} s after the stop")
            conn.ended_by_stop = True
            for kill in (os.killpg, os.kill):
                try:
                    kill(conn.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            self.reap(conn, block=True)

    def dispatch(self, what: str | tuple[str, Any] | Connection, fileobj: object) -> None:
        """`what` is what its file object was registered with in the selector: "listen", "wake", a
        (kind, object) tuple, or a Connection. `fileobj` is unused."""
        if what == "listen":
            self.accept()
        elif what == "wake":
            try:
                while self.wake_r.recv(512):
                    pass
            except BlockingIOError:
                pass
        elif isinstance(what, tuple) and what[0] == "child":
            self.reap(what[1], block=True)
        elif isinstance(what, tuple) and what[0] == "spare ready":
            spare = what[1]
            try:
                spare.ready = spare.inbox.recv(1) == b"r"
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                spare.ready = False
            self.selector.unregister(spare.inbox)
        elif isinstance(what, tuple) and what[0] == "spare":  # it died waiting
            if self.spare is what[1]:
                self.spare = None
            if not what[1].ready:
                self.recent.clear()  # it died warming up: never feed the next one the same expressions
            self.discard(what[1])
        else:
            self.receive(cast(Connection, what))  # the rest are registered as their Connection

    def accept(self) -> None:
        assert self.listener is not None  # listen() came first
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        uid = warm.peer_uid(sock)
        if uid is not None and uid != os.getuid():  # the directory keeps others out; this, too
            log(f"refused a connection from uid {uid}")
            sock.close()
            return
        sock.settimeout(2.0)  # for sends; reads happen only when the selector says there is data
        conn = Connection(sock)
        conn.peer_pid = warm.peer_pid(sock)
        self.connections[sock.fileno()] = conn
        self.selector.register(sock, selectors.EVENT_READ, conn)

    def close(self, conn: Connection) -> None:
        served = conn.state in ("running", "finished")  # only calls count as activity, not status
        conn.close_fds()
        if conn.state == "running" and conn.pid is not None:
            # The caller is gone (killed, or it hung up): so is its call, as in process.
            try:
                os.kill(conn.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.reap(conn, block=True, report=False)
        fd = conn.sock.fileno()
        if fd in self.connections:
            self.selector.unregister(conn.sock)
            del self.connections[fd]
        conn.sock.close()
        conn.state = "closed"
        if served:
            self.last_activity = time.monotonic()

    def receive(self, conn: Connection) -> None:
        space = socket.CMSG_SPACE(FDS_PER_CALL * struct.calcsize("i"))
        try:
            data, ancillary, flags, _ = conn.sock.recvmsg(65536, space)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return
        except OSError:
            self.close(conn)
            return
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                conn.fds.extend(fds)
        if flags & getattr(socket, "MSG_CTRUNC", 0) or (conn.fds and conn.state != "ready"):
            self.close(conn)  # descriptors where none belong, or too many
            return
        if not data:
            self.close(conn)  # the caller hung up
            return
        conn.buffer += data
        while conn.state != "closed" and len(conn.buffer) >= 4:
            (length,) = struct.unpack(">I", conn.buffer[:4])
            if length > warm.MAX_FRAME:
                self.close(conn)
                return
            if len(conn.buffer) < 4 + length:
                return
            frame = bytes(conn.buffer[4 : 4 + length])
            del conn.buffer[: 4 + length]
            try:
                message = json.loads(frame)
            except ValueError:
                self.close(conn)
                return
            if not isinstance(message, dict):
                self.close(conn)
                return
            self.handle(conn, message)

    def reply(self, conn: Connection, message: dict[str, Any]) -> bool:
        try:
            warm.send_frame(conn.sock, message)
            return True
        except OSError:
            self.close(conn)
            return False

    def status(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "version": VERSION, "python": sys.executable, "socket": self.path,
                "started": self.started, "idle_s": self.idle_s, "served": self.served,
                "served_by_spare": self.served_by_spare, "running": len(self.children),
                "fingerprint": self.fingerprint}

    def handle(self, conn: Connection, message: dict[str, Any]) -> None:
        op = message.get("op")
        if conn.state == "hello" and op == "hello":
            reason = None
            if message.get("version") != VERSION:
                reason = f"the server is gradcli {VERSION}, this is gradcli {message.get('version')}"
            elif message.get("fingerprint") != self.fingerprint:
                reason = ("the server runs another installation or environment of gradcli "
                          "(its files, its interpreter or its start-up environment differ)")
            elif self.stopping:
                reason = "the server is stopping"
            elif len(self.children) >= MAX_RUNNING:
                reason = f"the server is busy ({MAX_RUNNING} calls running)"
            else:
                reason = self.identity_refusal(conn, message) or rlimits_refusal(message.get("rlimits"))
            if reason is not None and not reason.startswith(("the server is", "the server runs")):
                log(f"refused a call from pid {conn.peer_pid}: {reason}")
            if self.reply(conn, {"accept": reason is None, "reason": reason, "version": VERSION,
                                 "pid": os.getpid()}):
                if reason is None:
                    conn.state = "ready"
                    conn.rlimits = message["rlimits"]
                    ignored = message.get("ignored")
                    conn.ignored = [s for s in ignored if isinstance(s, int)] if isinstance(ignored, list) else []
                else:
                    self.close(conn)
        elif conn.state == "hello" and op == "status":
            if self.reply(conn, self.status()):
                self.close(conn)
        elif conn.state == "hello" and op == "stop":
            if self.reply(conn, {"stopping": True, "pid": os.getpid(), "running": len(self.children),
                                 "wait_s": self.stop_wait_s}):
                self.close(conn)
            self.begin_stop("gradcli server stop")
        elif conn.state == "ready" and op == "run":
            self.start_call(conn, message)
        elif conn.state == "running" and op == "signal":
            signum = message.get("signal")
            if signum in ALLOWED_SIGNALS and conn.pid is not None:
                try:
                    os.kill(conn.pid, signum)
                except ProcessLookupError:
                    pass
        else:
            self.close(conn)  # not a gradcli request, or not in its place

    def identity_refusal(self, conn: Connection, message: dict[str, Any]) -> str | None:
        """Why the server must not stand in for this caller, or None: it must be the same in
        what matters (uids, gids, groups, capabilities, mount namespace, root), by what it says
        about itself and by what /proc says about it, since its word alone proves nothing."""
        if self.identity is None:
            return None  # no /proc here: the uid, checked at accept, is all there is
        claimed = message.get("identity")
        if not isinstance(claimed, dict):
            return "the call did not say who it is"
        if conn.peer_pid is None:
            return "the server cannot tell which process is calling"
        seen = warm.identity(str(conn.peer_pid))
        if seen is None:
            return f"the server cannot read /proc/{conn.peer_pid} to check who is calling"
        differs = warm.identity_difference(claimed, seen)
        if differs is not None:
            return f"what the call says of its {differs} is not what /proc says"
        differs = warm.identity_difference(self.identity, seen)
        if differs is not None:
            return f"the server differs from you in {differs}, so it cannot act for you"
        return None

    def start_call(self, conn: Connection, message: dict[str, Any]) -> None:
        argv, env, umask, stdio = message.get("argv"), message.get("env"), message.get("umask"), message.get("stdio")
        valid = (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)
                 and isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) and k and "=" not in k
                                                   and "\0" not in k + v for k, v in env.items())
                 and isinstance(umask, int) and 0 <= umask <= 0o777
                 and isinstance(stdio, list) and len(stdio) == 3
                 and all(s is None or isinstance(s, dict) for s in stdio)
                 and len(conn.fds) == FDS_PER_CALL and not any("\0" in a for a in argv)
                 and argv[1:2] != ["server"])  # managing the server is done in process, never by it
        if not valid:
            self.close(conn)
            return
        assert isinstance(argv, list) and isinstance(env, dict)  # as `valid` says; for the type checker
        self.remember(argv)
        fds, conn.fds = conn.fds + [os.dup(conn.sock.fileno())], []  # the child reports its exit on the last
        message["env"] = {**self.added_env, **env}
        message["rlimits"], message["ignored"] = conn.rlimits, conn.ignored  # as checked at the hello
        try:
            spare = self.hand_to_spare(message, fds)
            if spare is not None:
                self.served_by_spare += 1
            pid, pidfd = spare or self.fork(lambda: run_call(message, fds))
        finally:
            for fd in fds:
                os.close(fd)
        conn.state, conn.pid, conn.pidfd = "running", pid, pidfd
        self.served += 1
        if pidfd is not None:
            self.children[pidfd] = conn
            self.selector.register(pidfd, selectors.EVENT_READ, ("child", conn))
        else:
            self.children[pid] = conn
        self.refill()

    def fork(self, in_child: Callable[[], None], keep: int | None = None) -> tuple[int, int | None]:
        """Fork; the child closes the server's descriptors (but `keep`) and runs `in_child`."""
        inherited = [fd for fd in self.server_fds() if fd != keep]
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: "multi-threaded, use of fork()"
            pid = os.fork()
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                for signum in (signal.SIGTERM, signal.SIGHUP):  # the server's handlers are not the child's
                    signal.signal(signum, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                for fd in inherited:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            finally:
                in_child()  # never returns
                os._exit(3)
        return pid, (os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None)

    def refill(self) -> None:
        """Fork the next spare child, where the platform lets the server watch it (pidfd)."""
        if self.spare is not None or self.stopping or not hasattr(os, "pidfd_open"):
            return
        inbox, theirs = socket.socketpair()
        expressions = list(self.recent)
        try:
            def in_spare() -> None:
                inbox.close()
                wait_for_call(theirs, expressions)

            pid, pidfd = self.fork(in_spare, keep=None)
        finally:
            theirs.close()
        assert pidfd is not None  # forked where os.pidfd_open exists (checked above)
        self.spare = Spare(pid, pidfd, inbox)
        inbox.setblocking(False)
        self.selector.register(pidfd, selectors.EVENT_READ, ("spare", self.spare))
        self.selector.register(inbox, selectors.EVENT_READ, ("spare ready", self.spare))

    def remember(self, argv: list[str]) -> None:
        text = expression_of(argv)
        if text is None:
            return
        self.recent.pop(text, None)
        self.recent[text] = None
        while len(self.recent) > RECENT_EXPRESSIONS or sum(map(len, self.recent)) > RECENT_CHARACTERS:
            del self.recent[next(iter(self.recent))]

    def hand_to_spare(self, message: dict[str, Any], fds: list[int]) -> tuple[int, int] | None:
        """Give the call to the spare child if it is warm; None if there is none ready."""
        spare = self.spare
        if spare is None or not spare.ready:
            return None  # a spare still warming up would make the call wait longer than a fork
        self.spare = None
        self.selector.unregister(spare.pidfd)  # (its inbox was unregistered when it said ready)
        try:
            spare.inbox.settimeout(2.0)
            warm.send_frame(spare.inbox, message, fds)
        except OSError:
            self.discard(spare)
            return None
        spare.inbox.close()
        return spare.pid, spare.pidfd

    def discard(self, spare: Spare) -> None:
        """End a spare child that will not be used (the server stops, or it died)."""
        try:
            os.kill(spare.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(spare.pid, 0)
        except ChildProcessError:
            pass
        for fileobj in (spare.pidfd, spare.inbox):
            try:
                self.selector.unregister(fileobj)
            except (KeyError, ValueError):
                pass
        os.close(spare.pidfd)
        spare.inbox.close()

    def reap(self, conn: Connection, block: bool, report: bool = True) -> None:
        if conn.pid is None:
            return
        try:
            pid, status = os.waitpid(conn.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            pid, status = conn.pid, 3 << 8
        if pid == 0:
            return
        if conn.pidfd is not None:
            self.selector.unregister(conn.pidfd)
            self.children.pop(conn.pidfd, None)
            os.close(conn.pidfd)
            conn.pidfd = None
        else:
            self.children.pop(conn.pid, None)
        conn.pid = None
        conn.state = "finished"
        if report:
            if conn.ended_by_stop:
                self.reply(conn, {"signal": signal.SIGKILL, "message": "the gradcli server was stopped, and ended "
                                  f"this call {self.stop_wait_s:g} s later"})
            elif os.WIFSIGNALED(status):
                self.reply(conn, {"signal": os.WTERMSIG(status)})
            else:
                self.reply(conn, {"exit": os.waitstatus_to_exitcode(status)})
            if conn.state != "closed":
                self.close(conn)


def serve(idle_s: float) -> int:
    """The server process: take the lock, warm up, listen, serve until stopped or idle."""
    directory = warm.runtime_dir()
    dir_fd = warm.open_private(directory, create=True)  # checked through the descriptor, used through it
    os.fchdir(dir_fd)  # hold no caller's directory
    lock_fd = os.open(warm.LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            log("another gradcli server is running")
            return 1
        raise
    try:
        os.unlink(warm.SOCKET_NAME, dir_fd=dir_fd)  # we hold the lock: any socket there is stale
        log("removed the socket of a server that is gone")
    except FileNotFoundError:
        pass
    started = time.monotonic()
    fingerprint = warm.fingerprint()  # before the imports: torch sets variables of its own
    environment = dict(os.environ)
    warm_up()
    # What the imports put in os.environ, a caller's process would have too: children get it.
    added_env = {k: v for k, v in os.environ.items() if k not in environment}
    server = Server(directory, idle_s, lock_fd, fingerprint, added_env, dir_fd, stop_wait_seconds())
    server.listen()
    log(f"warmed up in {time.monotonic() - started:.2f} s")
    server.run()
    return 0


def stop_wait_seconds() -> float:
    """How long `server stop` lets running calls finish: GRADCLI_SERVER_STOP_WAIT, else 60 s."""
    text = os.environ.get("GRADCLI_SERVER_STOP_WAIT", "").strip()
    try:
        value = float(text) if text else STOP_WAIT_S
    except ValueError:
        raise GradcliError(f"GRADCLI_SERVER_STOP_WAIT must be a number of seconds, not {text!r}") from None
    if not 0 <= value < float("inf"):
        raise GradcliError(f"GRADCLI_SERVER_STOP_WAIT must be a number of seconds, not {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gradcli.warm.daemon", description="The gradcli warm-mode server "
                                     "(start it with: gradcli server start).")
    parser.add_argument("--idle", type=float, default=None, help="exit after this many seconds without a call")
    args = parser.parse_args(argv)
    try:
        return serve(idle_seconds(args.idle))
    except GradcliError as exc:
        log(exc.message)
        return 2


if __name__ == "__main__":
    sys.exit(main())
