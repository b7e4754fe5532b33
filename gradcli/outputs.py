"""Files gradcli writes: whole or nothing, and never over one of its own inputs.

`atomic_output(path, mode)` is the one way a command writes a file (`grad --points ... --output`,
`minimize --trace` and `--plot`, `plot --out`): the bytes go to a temporary file in the
destination's folder, which is flushed, fsynced and renamed over the destination only when the
block ends without an error. On an error or Ctrl-C the temporary file is removed and the
destination is as it was; a kill (SIGKILL, a power cut) can leave a temporary file
(`.NAME.XXXXXXXX.tmp`), never a partial destination. A full disk or a file-size limit is bad
luck, not a bug: a GradcliError (exit 2) with the path and what is known of the bytes needed.

`refuse_same_file` says no, before anything is read or written, when an output names the same
file (same device and inode: symlinks and hard links included) as an input.

Nothing here imports torch, typer or rich.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, TextIO, overload

from gradcli.errors import GradcliError

# errno values that mean "no room": the disk, a quota, or the caller's file-size limit (ulimit -f).
_NO_ROOM = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _fsize_limit() -> int | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


def no_room_error(path: str, exc: OSError, *, written: int | None = None, needed: int | None = None) -> GradcliError:
    """The error for a write that found no room (ENOSPC, EFBIG, EDQUOT), saying how much it needed."""
    if exc.errno == errno.EFBIG:
        limit = _fsize_limit()
        why = ("the file would be larger than this process may write"
               + (f" (ulimit -f: {limit:,} bytes)" if limit is not None else ""))
        hint = "raise the file-size limit (ulimit -f), or write less"
    elif exc.errno == errno.ENOSPC:
        why, hint = "no space left on the device", "free some space, or write to another disk"
    else:
        why, hint = "over the disk quota", "free some space, or write to another disk"
    if needed is not None:
        why += f"; it needs {needed:,} bytes"
    elif written is not None:
        why += f"; it ran out after {written:,} bytes, and needs more"
    return GradcliError(f"cannot write {path}: {why}", hint=f"{hint}; {path} is as it was")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@overload
def atomic_output(path: str | os.PathLike[str], mode: Literal["w"] = "w", *, needed: int | None = None,
                  announce: Callable[[str], None] | None = None) -> AbstractContextManager[TextIO]: ...


@overload
def atomic_output(path: str | os.PathLike[str], mode: Literal["wb"], *, needed: int | None = None,
                  announce: Callable[[str], None] | None = None) -> AbstractContextManager[BinaryIO]: ...


def atomic_output(path: str | os.PathLike[str], mode: str = "w", *, needed: int | None = None,
                  announce: Callable[[str], None] | None = None) -> AbstractContextManager[Any]:
    """An open file whose contents become `path` when the block ends without an error.

    mode: "w" (text, UTF-8, newlines as written) or "wb". needed: the size, when it is known in
    advance (said if the disk is full). announce: called with the temporary file's name once it
    is open (a trace says where it streams, for `tail -f`).

    A symlink is followed (the file it names is replaced, the link stays); a destination that
    is not a regular file (/dev/null, a FIFO, /dev/stdout) is written in place, as there is no
    file to protect.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_output writes 'w' or 'wb', not {mode!r}")
    return _atomic_output(os.fspath(path), mode, needed, announce)


@contextmanager
def _atomic_output(name: str, mode: str, needed: int | None,
                   announce: Callable[[str], None] | None) -> Iterator[IO[Any]]:
    target = os.path.realpath(name)
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise GradcliError(f"cannot write {name}: {exc.strerror or exc}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise GradcliError(f"cannot write {name}: it is a folder")
    if st is not None and not stat.S_ISREG(st.st_mode):
        yield from _in_place(name, mode)
        return
    folder, base = os.path.split(target)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder or ".")
    except OSError as exc:
        if exc.errno in _NO_ROOM:
            raise no_room_error(name, exc, written=0, needed=needed) from None
        raise GradcliError(f"cannot write {name}: {exc.strerror or exc}") from None
    file: IO[Any] | None = None
    try:
        # The permissions a plain open() would give (or the old file's): mkstemp makes it 0600.
        os.fchmod(fd, stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask())
        file = (os.fdopen(fd, "wb") if mode == "wb"
                else os.fdopen(fd, "w", encoding="utf-8", newline=""))
        if announce is not None:
            announce(temp)
        try:
            yield file
            file.flush()
            os.fsync(file.fileno())
        except OSError as exc:
            if exc.errno in _NO_ROOM:
                raise no_room_error(name, exc, written=_size(fd), needed=needed) from None
            raise
        try:
            file.close()
            os.replace(temp, target)
        except OSError as exc:
            if exc.errno in _NO_ROOM:
                raise no_room_error(name, exc, written=None, needed=needed) from None
            raise GradcliError(f"cannot write {name}: {exc.strerror or exc}") from None
        _sync_folder(folder or ".")
    except BaseException:
        # An error, Ctrl-C, or a reader that left: the destination stays as it was.
        if file is not None:
            try:
                file.close()
            except OSError:
                pass  # a buffered write that fails again: the file goes anyway
        else:
            os.close(fd)
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise


def _in_place(name: str, mode: str) -> Iterator[IO[Any]]:
    try:
        file = open(name, "wb") if mode == "wb" else open(name, "w", encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as exc:
        raise GradcliError(f"cannot write {name}: {exc.strerror or exc}") from None
    with file:
        yield file


def _size(fd: int) -> int | None:
    try:
        return os.fstat(fd).st_size
    except OSError:
        return None


def _sync_folder(folder: str) -> None:
    """The rename itself made durable (best effort: not every system can open a folder)."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def write_bytes(path: str, data: bytes) -> None:
    """`data` as the whole of `path`, or `path` as it was."""
    with atomic_output(path, "wb", needed=len(data)) as f:
        f.write(data)


# --------------------------------------------------------------------------- an output is never an input

def value_files(values: Iterable[str] | Mapping[str, Any], named: Mapping[str, Any] | None = None,
                ) -> list[tuple[str, str]]:
    """The files behind `NAME=@path` values (and `@path.csv:column`), as (what, path) pairs;
    "-" for `@-` (standard input)."""
    texts: list[str] = []
    if isinstance(values, Mapping):
        texts += [f"{k}={v}" for k, v in values.items() if isinstance(v, str)]
    else:
        texts += [v for v in values if isinstance(v, str)]
    texts += [f"{k}={v}" for k, v in (named or {}).items() if isinstance(v, str)]
    found = []
    for text in texts:
        name, sep, value = text.partition("=")
        value = value.strip()
        if not sep or not value.startswith("@"):
            continue
        source = value[1:]
        if source != "-" and ":" in source and not Path(source).exists():
            source = source.rsplit(":", 1)[0]
        found.append((f"{name.strip()}=@{source}", source))
    return found


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of a file, standard input's for "-"; None when there is none to compare."""
    try:
        st = os.fstat(sys.stdin.fileno()) if path == "-" else os.stat(path)
    except (OSError, ValueError, AttributeError):
        return None
    return st.st_dev, st.st_ino


def refuse_same_file(outputs: Sequence[tuple[str, str | None]], inputs: Sequence[tuple[str, str | None]]) -> None:
    """Exit 2 when an output (flag, path) is the same file as an input (what, path): same device
    and inode, so a symlink or a hard link to it counts. "-" as an input is standard input
    (`--points - < out.csv`); "-" or None as an output is no file."""
    for out_flag, out_path in outputs:
        if out_path is None or out_path == "-":
            continue
        out_id = _identity(out_path)
        if out_id is None:
            continue  # not there yet: it cannot be an input
        for in_what, in_path in inputs:
            if in_path is None:
                continue
            if _identity(in_path) == out_id:
                source = "standard input" if in_path == "-" else in_what
                raise GradcliError(f"{out_flag} {out_path} is the same file as {source}: writing it would destroy "
                                   "what is being read",
                                   hint=f"write {out_flag} to another file; {out_path} is left as it is")
