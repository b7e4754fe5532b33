"""Values from files and standard input: `x=@data.csv:col`, `x=@w.npy`, `x=@-`, `--data FILE.csv`.

Part of reading the input, like parse.py, and like it free of torch: a file becomes a
float64 numpy array, which the lowering turns into a tensor of the user's dtype.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np

from gradcli.core.limits import MAX_CSV_LINE_CHARS
from gradcli.errors import GradcliError

_stdin_used_by: list[str] = []  # standard input can be read once: say who took it
# Who turned reading files off (gradcli batch, for each line): per thread (a context variable),
# so a library host's other threads read files as before while a batch line runs.
_files_refused_by: ContextVar[str | None] = ContextVar("gradcli_files_refused_by", default=None)


def printable(text: str) -> str:
    """Untrusted text (a file name, a CSV header, a .npy field name) as a message may show it:
    control and format characters escaped (\\x1b, \\u202e), so no terminal escape sequence
    or bidirectional override reaches the user's terminal."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() or ch == " ":
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)


def decode_utf8(data: bytes, where: str, *, first_line: int = 1, first_offset: int = 0) -> str:
    """`data` as text, or an error naming the line and byte offset of the first byte that is
    not UTF-8 (lines counted from first_line, offsets from first_offset: where data begins in
    its file). A BOM at the very start of a file is dropped (Excel writes one)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + data.count(b"\n", 0, exc.start)
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise GradcliError(f"{where}: line {line} is not UTF-8 text (byte {column} of the line, byte "
                           f"{first_offset + exc.start + 1} from the start)",
                           hint="save it as UTF-8 (numbers and names in plain text)") from None
    return text[1:] if first_offset == 0 and text.startswith("\ufeff") else text


@contextmanager
def files_refused(who: str) -> Iterator[None]:
    """While inside, reading a file (x=@FILE, x=@-, --data) is an error naming `who` and the
    way to allow it (gradcli batch runs each line inside, unless started with --allow-files)."""
    token = _files_refused_by.set(who)
    try:
        yield
    finally:
        _files_refused_by.reset(token)


def check_files_allowed(what: str) -> None:
    """Raise if reading files is off (see files_refused): `what` is the option or value that wanted one."""
    who = _files_refused_by.get()
    if who is not None:
        raise GradcliError(f"{printable(what)}: {who} does not read or write files; "
                           "gradcli batch --allow-files allows it",
                           hint="batch lines often come from others: allow files only for requests you trust")


def read_stdin(who: str) -> str:
    claim_stdin(who)
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # a text stream put in its place (a test, a library host)
        return sys.stdin.read()
    return decode_utf8(buffer.read(), "standard input")


def claim_stdin(who: str) -> None:
    """Take standard input for `who` (gradcli batch reads its requests from it itself)."""
    if _stdin_used_by:
        raise GradcliError(f"{who} and {_stdin_used_by[0]} both want standard input; only one can have it")
    _stdin_used_by.append(who)



def reset_stdin() -> None:
    """For gradcli batch and tests: a new request may read standard input again."""
    _stdin_used_by.clear()


def _numbers(rows: list[list[str]], where: str) -> np.ndarray:
    out = []
    for r, row in enumerate(rows, 1):
        try:
            out.append([float(cell) for cell in row])
        except ValueError:
            # Where, never what: the message must not echo a file's contents (gradcli batch
            # may run requests from someone else).
            column = next(c for c, cell in enumerate(row, 1) if not is_float(cell))
            raise GradcliError(f"{where}: row {r}, column {column} is not a number") from None
    return np.array(out, dtype=np.float64)


def is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _lines(text: str, where: str) -> Iterator[str]:
    """text's lines as io.StringIO gives them, one longer than MAX_CSV_LINE_CHARS refused by its
    number before it is copied or split into cells."""
    start, number = 0, 0
    while start < len(text):
        end = text.find("\n", start) + 1 or len(text)
        number += 1
        if end - start > MAX_CSV_LINE_CHARS:
            raise GradcliError(f"{where}: line {number} is longer than {MAX_CSV_LINE_CHARS:,} characters")
        yield text[start:end]
        start = end


def read_csv_table(text: str, where: str) -> tuple[list[str] | None, np.ndarray]:
    """(column names or None, the numbers as rows x columns). A first row that is not all
    numbers is the header."""
    rows = [row for row in csv.reader(_lines(text, where)) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise GradcliError(f"{where} is empty")
    header = None
    try:
        [float(c) for c in rows[0]]
    except ValueError:
        # names shown in messages (and matched against names typed, escaped alike): see printable
        header, rows = [printable(c.strip()) for c in rows[0]], rows[1:]
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise GradcliError(f"{where}: rows have different numbers of columns ({sorted(widths)})")
    return header, _numbers([[c.strip() for c in r] for r in rows], where)


def _from_json(text: str, where: str) -> np.ndarray:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GradcliError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno})") from None

    def check(x: Any) -> Any:  # a float, or nested lists of them
        if isinstance(x, list):
            return [check(y) for y in x]
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise GradcliError(f"{where}: JSON values must be numbers or nested lists of numbers")
        return float(x)
    try:
        return np.array(check(data), dtype=np.float64)
    except ValueError:
        raise GradcliError(f"{where}: the nested lists are ragged") from None


def _from_text(text: str, where: str) -> np.ndarray:
    stripped = text.strip()
    if stripped.startswith("[") or stripped.startswith("{"):
        return _from_json(stripped, where)
    rows = [line.split() for line in stripped.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        raise GradcliError(f"{where} holds no numbers")
    array = _numbers(rows, where)
    return array.reshape(-1) if array.shape[0] == 1 or array.shape[1] == 1 else array


def load_npy(path: Path, where: str) -> np.ndarray:
    """A .npy file, mapped (not read: the size in its header is checked before a byte of data
    is loaded), or a clean error for anything else named .npy: a .npz archive, a truncated
    file, a header numpy cannot read. Never unpickles."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise GradcliError(f"cannot read {where}: {exc.strerror}") from None
    if magic != b"\x93NUMPY":
        if magic.startswith(b"PK"):
            raise GradcliError(f"{where} is a .npz archive (several arrays), not a .npy file",
                               hint="save the array you want on its own: np.save('x.npy', np.load('f.npz')['x'])")
        raise GradcliError(f"{where} is not a .npy file (it does not start as numpy.save writes one)",
                           hint="numbers come as .npy (numpy.save), .csv, .json or .txt")
    try:
        array: np.ndarray = np.load(path, allow_pickle=False, mmap_mode="r")
    except GradcliError:
        raise
    except Exception as exc:  # noqa: BLE001 - numpy's many ways of saying the file is damaged
        detail = str(exc).split("\n")[0]
        if "pickle" in detail.lower():
            detail = "it holds Python objects, which gradcli never loads"
        elif "mmap length" in detail or "EOF" in detail or isinstance(exc, EOFError):
            detail = "it is shorter than its header says (truncated)"
        raise GradcliError(f"{where}: not a readable .npy file ({printable(detail)[:200]})") from None
    if not isinstance(array, np.ndarray):
        raise GradcliError(f"{where}: not a readable .npy file")
    return array


def read_value_source(source: str) -> np.ndarray:
    """The numbers behind `@path`, `@path.csv:column` or `@-` (the text after the @)."""
    check_files_allowed(f"@{source}")
    if source == "-":
        return _from_text(read_stdin("a value @-"), "standard input")
    path_text, column = source, None
    if ":" in source and not Path(source).exists():
        path_text, column = source.rsplit(":", 1)
    path = Path(path_text)
    where = printable(str(path))
    if not path.is_file():
        raise GradcliError(f"no such file: {where}", hint="paths are relative to the current directory")
    suffix = path.suffix.lower()
    if column is not None and suffix != ".csv":
        raise GradcliError(f"{where}: only a .csv file has named columns (got :{printable(column)})")
    if suffix == ".npy":
        array = load_npy(path, where)
        if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
            raise GradcliError(f"{where}: holds {printable(str(array.dtype))[:200]} values, not real numbers")
        return array
    text = decode_utf8(_read_bytes(path, where), where)
    if suffix == ".json":
        return _from_json(text, where)
    if suffix == ".csv":
        header, table = read_csv_table(text, where)
        if column is None:
            return table.reshape(-1) if table.shape[1] == 1 else table
        column = printable(column)
        if header is None or column not in header:
            known = ", ".join(header) if header else "none (the file has no header row)"
            raise GradcliError(f"{where} has no column '{column}'", hint=f"its columns: {known}")
        return table[:, header.index(column)]
    return _from_text(text, where)


def _read_bytes(path: Path, where: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise GradcliError(f"cannot read {where}: {exc.strerror}") from None


def read_data_file(path_text: str) -> dict[str, np.ndarray]:
    """--data FILE.csv: every named column, as a vector."""
    check_files_allowed(f"--data {path_text}")
    where = printable(path_text)
    if path_text == "-":
        text = read_stdin("--data -")
    else:
        path = Path(path_text)
        if not path.is_file():
            raise GradcliError(f"no such file: {where}", hint="paths are relative to the current directory")
        text = decode_utf8(_read_bytes(path, where), where)
    header, table = read_csv_table(text, where)
    if header is None:
        raise GradcliError(f"{where}: --data needs a header row naming the columns")
    return {name: table[:, i] for i, name in enumerate(header)}
