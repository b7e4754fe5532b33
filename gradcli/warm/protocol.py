"""Warm mode, the client side: hand a gradcli call to a running `gradcli server`.

This module runs on every `gradcli` call before anything else, so it imports the standard
library only (and little of it): no torch, sympy, typer or rich. The server (gradcli/server.py)
shares the paths, the framing and the fingerprint defined here.

A call goes like this, over a Unix domain socket in a directory only this user can enter:

1. hello: the client sends its gradcli version and fingerprint (the interpreter, the package's
   files, the installed packages, the environment variables read when torch and sympy are
   imported), who it is (uids, gids, groups, capabilities, mount namespace, root: `identity`),
   its resource limits and the signals it ignores; the server checks who it is in /proc as
   well, and answers with its own version and whether it accepts (it serves only a caller
   identical to itself in those, whose limits it can copy into the call's child).
2. run: the client sends argv, its environment and umask, how its standard streams are set up
   (encoding, buffering), and, as SCM_RIGHTS ancillary data, its file descriptors 0, 1, 2 and
   one on its working directory. The server forks a child that takes those over and runs the
   same `gradcli.cli.main()` an in-process call runs, so the child reads and writes the
   caller's own terminal, pipes and files.
3. exit: the child reports its exit status as soon as its output is flushed (and the server
   reports how it ended, should it die first); the client exits the same way. A signal the
   client receives meanwhile (Ctrl-C) is passed on to the child, unless its caller ignores it.

Whenever something is not right (no server, a stale socket, another version, no answer in
time, a stream that is closed), the client says so by returning None, and the call runs in
process, exactly as without a server. Nothing the server could run has been started by then.
"""

from __future__ import annotations

import os
import stat
import sys

from gradcli.version import __version__ as VERSION

# typing.TYPE_CHECKING without importing typing (mypy takes any name TYPE_CHECKING as true).
TYPE_CHECKING = False
# The C modules under `socket` and `signal`: those wrap every constant in an enum at import
# time, a few milliseconds that a client answering in tens of milliseconds does not spend.
if TYPE_CHECKING:
    import _socket as socket
    import signal  # typeshed has no stub for _signal: the same API, as far as it is used here
    from collections.abc import Callable
    from types import FrameType
    from typing import Any, NoReturn, TextIO
else:
    try:
        import _signal as signal
        import _socket as socket
    except ImportError:  # another Python implementation
        import signal
        import socket  # the same API, as far as it is used here

# JSON through the C accelerator json itself uses, without the json package's four modules (a
# few milliseconds of a warm call): frames hold only strings, numbers, booleans, None, lists and
# objects with string keys.
try:
    import _json
except ImportError:  # another Python implementation
    _json = None  # type: ignore[assignment]

MODES = ("auto", "off", "require")
SOCKET_NAME = "server.sock"
LOCK_NAME = "server.lock"
LOG_NAME = "server.log"
HELLO_TIMEOUT_S = 2.0  # a server that has not answered the hello by then is treated as absent
MAX_FRAME = 64 * 1024 * 1024  # an expression is at most 200,000 characters; environments are small
FORWARDED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
# Environment variables read once, when Python, torch, sympy, numpy or typer start up (the
# dynamic loader's too): the server read its own, so a caller whose values differ is run in
# process instead. Those read at each call (NO_COLOR, COLUMNS, TERM, GRADCLI_DEBUG) are not here.
IMPORT_TIME_ENV_PREFIXES = ("PYTHON", "OMP_", "GOMP_", "MKL_", "OPENBLAS_", "KMP_", "TORCH", "PYTORCH", "CUDA",
                            "HIP_", "NUMPY", "SYMPY", "MPMATH", "USE_SYMENGINE", "TYPER", "_TYPER",
                            "TERMINAL_WIDTH", "FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS", "LD_", "DYLD_",
                            "LC_", "LANG")


# Unix domain sockets that carry file descriptors, and uids: POSIX systems. Elsewhere every
# call runs in process, and `gradcli server start` says why.
SUPPORTED = os.name == "posix" and hasattr(socket, "AF_UNIX") and hasattr(socket, "SCM_RIGHTS")


class NotPrivate(Exception):
    """The socket's directory is not one only this user can enter."""


# --------------------------------------------------------------------------- where

def runtime_dir() -> str:
    """$XDG_RUNTIME_DIR/gradcli, or gradcli-UID in the temporary directory.

    tempfile.gettempdir() is not used: it imports random and shutil, too slow for a client
    that must answer in milliseconds; TMPDIR or /tmp is what it returns on a usual system.
    """
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and os.path.isdir(xdg):
        return os.path.join(xdg, "gradcli")
    tmp = os.environ.get("TMPDIR") or "/tmp"
    return os.path.join(tmp, f"gradcli-{os.getuid()}")


def socket_path() -> str:
    return os.path.join(runtime_dir(), SOCKET_NAME)


def open_private(directory: str, create: bool = False) -> int:
    """A descriptor on `directory`, checked through that descriptor: a real directory (opened
    with O_NOFOLLOW, so a symlink is refused), owned by this user, that nobody else can enter or
    list (mode 0700 or stricter). Whatever uses it afterwards goes through the descriptor, so a
    directory swapped after the check is never the one used. Created with mode 0700 if
    `create` and missing. FileNotFoundError when missing; NotPrivate when not private."""
    if create:
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(directory, flags)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if os.path.islink(directory) or not os.path.isdir(directory):
            raise NotPrivate(f"{directory} is not a directory (a symlink or a file is refused)") from None
        raise NotPrivate(f"{directory}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode):
            raise NotPrivate(f"{directory} is not a directory (a symlink or a file is refused)")
        if st.st_uid != os.getuid():
            raise NotPrivate(f"{directory} belongs to uid {st.st_uid}, not to you (uid {os.getuid()})")
        if st.st_mode & 0o077:
            raise NotPrivate(f"{directory} has mode {stat.S_IMODE(st.st_mode):o}; it must be 700")
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_private(directory: str) -> None:
    """Raise NotPrivate unless `directory` is private (see open_private)."""
    os.close(open_private(directory))


def make_private_dir() -> str:
    """The runtime directory, created with mode 0700 if missing, and checked either way."""
    directory = runtime_dir()
    os.close(open_private(directory, create=True))
    return directory


# --------------------------------------------------------------------------- who may be served

# What a call's process must share with the server for the server to stand in for it: the
# server reads files, and forks children, with its own rights, namespace and root.
IDENTITY_FIELDS = (("Uid", "user ids"), ("Gid", "group ids"), ("Groups", "supplementary groups"),
                   ("CapEff", "effective capabilities"), ("CapPrm", "permitted capabilities"),
                   ("CapBnd", "capability bounding set"), ("mntns", "mount namespace"), ("root", "root directory"))
# Resource limits copied into the call's child (those the platform has).
RLIMITS = ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_STACK",
           "RLIMIT_CORE", "RLIMIT_NPROC")


def identity(pid: str = "self") -> dict[str, str] | None:
    """Who process `pid` is, from /proc: its uids, gids, groups, capabilities, mount namespace
    and root; None where /proc cannot be read for it (no /proc, or a process we may not see)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            text = f.read()
        ns = os.stat(f"/proc/{pid}/ns/mnt")
        root = os.stat(f"/proc/{pid}/root")
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = " ".join(value.split())
    found = {key: fields.get(key, "-") for key, _ in IDENTITY_FIELDS[:6]}
    found["Groups"] = " ".join(sorted(found["Groups"].split(), key=lambda g: int(g) if g.isdigit() else -1))
    found["mntns"] = f"{ns.st_dev}:{ns.st_ino}"
    found["root"] = f"{root.st_dev}:{root.st_ino}"
    return found


def identity_difference(mine: dict[str, str], theirs: dict[str, str]) -> str | None:
    """The first field of IDENTITY_FIELDS in which two identities differ, in words; None if none."""
    for key, words in IDENTITY_FIELDS:
        if mine.get(key) != theirs.get(key):
            return words
    return None


def rlimits() -> dict[str, list[int]]:
    """This process's resource limits, soft and hard (RLIM_INFINITY as -1)."""
    try:
        import resource
    except ImportError:
        return {}
    limits: dict[str, list[int]] = {}
    for name in RLIMITS:
        which = getattr(resource, name, None)
        if which is not None:
            soft, hard = resource.getrlimit(which)
            limits[name] = [-1 if v == resource.RLIM_INFINITY else v for v in (soft, hard)]
    return limits


def ignored_signals() -> list[int]:
    """The signals this process ignores (SIG_IGN): under nohup, SIGHUP."""
    found = []
    for signum in range(1, getattr(signal, "NSIG", 65)):
        try:
            if signal.getsignal(signum) == signal.SIG_IGN:
                found.append(signum)
        except (OSError, ValueError):
            continue
    return found


# --------------------------------------------------------------------------- what must match

def fingerprint() -> str:
    """What the server's code and start-up depended on, as a string to compare for equality.

    The version alone would serve stale code from an editable install that changed, so the
    package's files (size and mtime) count too, and the mtime of each sys.path entry (a site-
    packages directory changes when a package is installed, removed or upgraded). sys.path[0]
    is left out: it is the script's directory, which differs between the console script and
    the server. A few stats: well under a millisecond.
    """
    # The interpreter by its prefix (a virtual environment's) and its real binary, not by the
    # name it was run by: .venv/bin/python and .venv/bin/python3 are the same one.
    parts = [VERSION, sys.prefix, os.path.realpath(sys.executable), sys.version]
    # gradcli/warm/protocol.py: the package is two levels up, its layers one folder each.
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for folder, subfolders, names in os.walk(package):
        subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
        for name in sorted(names):
            if name.endswith(".py"):
                st = os.stat(os.path.join(folder, name))
                relative = os.path.relpath(os.path.join(folder, name), package)
                parts.append(f"{relative}:{st.st_size}:{st.st_mtime_ns}")
    for entry in sys.path[1:]:
        try:
            parts.append(f"{entry}:{os.stat(entry).st_mtime_ns}")
        except OSError:
            parts.append(f"{entry}:-")
    parts += sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith(IMPORT_TIME_ENV_PREFIXES))
    return "\n".join(parts)


# --------------------------------------------------------------------------- framing

def encode(value: object) -> str:
    """JSON text of `value`, ASCII only (lone surrogates from undecodable arguments survive)."""
    if _scan is None:  # no C accelerator (_scan is None exactly when _json is)
        import json

        return json.dumps(value, ensure_ascii=True, allow_nan=False)
    if isinstance(value, str):
        return _json.encode_basestring_ascii(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("a frame holds finite numbers only")
        return float.__repr__(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(encode, value)) + "]"
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("a frame's objects have string keys")
        return "{" + ",".join(f"{encode(k)}:{encode(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"a frame cannot hold {type(value).__name__}")


class _Strict:
    """The settings json.loads passes its scanner: plain dicts, int and float, no NaN."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, str] = {}

    @staticmethod
    def parse_constant(name: str) -> NoReturn:
        raise ValueError(f"{name} is not allowed in a frame")


_scan: _json.make_scanner | None = _json.make_scanner(_Strict()) if _json is not None else None  # type: ignore[arg-type]  # duck-typed: the C scanner reads these attributes


def decode(text: str) -> Any:
    """The value of JSON `text`; ValueError if it is not one whole JSON value."""
    if _scan is None:
        import json

        return json.loads(text)
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    if end != len(text):
        raise ValueError("extra data after the JSON value")
    return value


def send_frame(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    """A 4-byte big-endian length, then the message as JSON (ASCII, so that lone surrogates
    from undecodable arguments survive); `fds` ride along with the first byte."""
    data = encode(message).encode("ascii")
    payload = len(data).to_bytes(4, "big") + data
    if fds:
        rights = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)  # a C int array
        sent = sock.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
        payload = payload[sent:]
    if payload:
        sock.sendall(payload)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            raise ConnectionError("the connection closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket) -> dict[str, Any]:
    length = int.from_bytes(_recv_exact(sock, 4), "big")
    if length > MAX_FRAME:
        raise ConnectionError(f"a frame of {length} bytes is too large")
    message = decode(_recv_exact(sock, length).decode("ascii"))
    if not isinstance(message, dict):
        raise ConnectionError("a frame is not a JSON object")
    return message


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end (Linux SO_PEERCRED), or None where unknown."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, option, 12)  # struct ucred: pid, uid, gid as C ints
    return int.from_bytes(creds[4:8], sys.byteorder)


def peer_pid(sock: socket.socket) -> int | None:
    """The pid of the process at the other end (Linux SO_PEERCRED), or None where unknown."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, option, 12)
    return int.from_bytes(creds[0:4], sys.byteorder, signed=True) or None


def connect(timeout: float = HELLO_TIMEOUT_S) -> socket.socket | None:
    """A connection to this user's server, or None when none runs (a stale socket is removed)."""
    directory = runtime_dir()
    dir_fd = open_private(directory)  # FileNotFoundError when there is no directory: no server
    # Through the checked descriptor where /proc has it, so the directory checked is the one used.
    via_fd = f"/proc/self/fd/{dir_fd}"
    path = os.path.join(via_fd if os.path.isdir(via_fd) else directory, SOCKET_NAME)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except FileNotFoundError:
        sock.close()
        return None
    except ConnectionRefusedError:
        sock.close()
        remove_if_stale(directory)
        return None
    except OSError:
        sock.close()
        return None
    finally:
        os.close(dir_fd)
    uid = peer_uid(sock)
    if uid is not None and uid != os.getuid():
        sock.close()
        raise NotPrivate(f"the gradcli server socket is held by uid {uid}, not by you")
    return sock


def remove_if_stale(directory: str) -> bool:
    """Remove the socket of a server that is gone: its lock is free (a live server holds it for
    its whole life, and a crashed one's is released by the kernel). True if it removed one."""
    import fcntl

    path = os.path.join(directory, SOCKET_NAME)
    try:
        lock = os.open(os.path.join(directory, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a server holds it: starting up, or busy; not stale
        try:
            os.unlink(path)
            return True
        except FileNotFoundError:
            return False
    finally:
        os.close(lock)  # releases the lock


def ask(message: dict[str, Any], timeout: float = HELLO_TIMEOUT_S) -> dict[str, Any] | None:
    """One question to the server (status, stop): its answer, or None when none runs."""
    try:
        sock = connect(timeout)
    except FileNotFoundError:
        return None
    if sock is None:
        return None
    try:
        send_frame(sock, message)
        return recv_frame(sock)
    except (OSError, ValueError):
        return None
    finally:
        sock.close()


# --------------------------------------------------------------------------- the call

def _stream_setup(stream: TextIO | None) -> dict[str, Any] | None:
    """How a standard stream is configured, so the server's child builds the same one."""
    if stream is None:
        return None
    return {"encoding": getattr(stream, "encoding", None) or "utf-8",
            "errors": getattr(stream, "errors", None) or "strict",
            "line_buffering": bool(getattr(stream, "line_buffering", False)),
            "write_through": bool(getattr(stream, "write_through", False))}


def _umask() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


class Refused(Exception):
    """The server is there but will not take this call: the reason, for GRADCLI_SERVER=require."""


def forward(args: list[str]) -> int | None:
    """Run `gradcli ARGS` on the server: its exit status, or None to run it in process.

    Raises Refused (a reason) when a server answered but will not run the call, and NotPrivate
    when the socket's directory is not safe to use.
    """
    if not SUPPORTED:
        return None
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            return None  # a closed standard stream: nothing to pass; in process behaves as ever
    try:
        sock = connect()
    except FileNotFoundError:
        return None
    if sock is None:
        return None
    try:
        try:
            send_frame(sock, {"op": "hello", "version": VERSION, "fingerprint": fingerprint(),
                              "identity": identity(), "rlimits": rlimits(), "ignored": ignored_signals()})
            answer = recv_frame(sock)
        except (OSError, ValueError):
            return None  # no answer in time, or a broken one: in process
        if not answer.get("accept"):
            raise Refused(str(answer.get("reason") or "the server refused the call"))
        try:
            cwd = os.open(".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return None  # a working directory we cannot open: in process, which reports it as ever
        try:
            request = {"op": "run", "argv": [sys.argv[0], *args], "env": dict(os.environ), "umask": _umask(),
                       "stdio": [_stream_setup(sys.stdin), _stream_setup(sys.stdout), _stream_setup(sys.stderr)]}
            try:
                send_frame(sock, request, [0, 1, 2, cwd])
            except OSError:
                return None  # the server went away before it took the call
        finally:
            os.close(cwd)
        return _wait(sock)
    finally:
        sock.close()


def _wait(sock: socket.socket) -> int:
    """Wait for the child's end, passing signals on; the exit status to leave with."""
    sock.settimeout(None)  # a call may take as long as it takes, as in process

    def pass_on(signum: int, _frame: FrameType | None) -> None:
        try:
            send_frame(sock, {"op": "signal", "signal": signum})
        except OSError:
            pass

    previous: dict[int, Callable[[int, FrameType | None], Any] | int | None] = {}
    for name in FORWARDED_SIGNALS:
        signum = getattr(signal, name, None)
        # A signal the caller ignores (SIGHUP under nohup) stays ignored: never passed on.
        if signum is not None and signal.getsignal(signum) != signal.SIG_IGN:
            previous[signum] = signal.signal(signum, pass_on)
    try:
        answer = recv_frame(sock)
    except (OSError, ValueError):
        # The server died while the call ran: its output so far is on the caller's streams,
        # so running it again would print it twice.
        sys.stderr.write("internal error: the gradcli server went away during the call\n"
                         "hint: run it again; GRADCLI_SERVER=off runs every call in process\n")
        return 3
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if answer.get("message"):
        sys.stderr.write(f"error: {answer['message']}\n")
    if "signal" in answer:
        # The child was killed by a signal: so is this process, as an in-process run would be.
        signum = int(answer["signal"])
        try:
            sys.stdout.flush()
        except OSError:
            pass
        try:
            signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL and SIGSTOP have no handler to reset
        os.kill(os.getpid(), signum)
        return 128 + signum  # a signal that does not end a process (none of those we see)
    return int(answer.get("exit", 3))
