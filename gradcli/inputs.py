"""Values from files and standard input: `x=@data.csv:col`, `x=@w.npy`, `x=@-`, `--data FILE.csv`.

Part of reading the input, like parse.py, and like it free of torch: a file becomes a
float64 numpy array, which the lowering turns into a tensor of the user's dtype.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gradcli.core.limits import MAX_CSV_LINE_CHARS
from gradcli.errors import GradcliError

_stdin_used_by: list[str] = []  # standard input can be read once: say who took it


def read_stdin(who: str) -> str:
    claim_stdin(who)
    return sys.stdin.read()


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
        header, rows = [c.strip() for c in rows[0]], rows[1:]
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


def read_value_source(source: str) -> np.ndarray:
    """The numbers behind `@path`, `@path.csv:column` or `@-` (the text after the @)."""
    if source == "-":
        return _from_text(read_stdin("a value @-"), "standard input")
    path_text, column = source, None
    if ":" in source and not Path(source).exists():
        path_text, column = source.rsplit(":", 1)
    path = Path(path_text)
    where = str(path)
    if not path.is_file():
        raise GradcliError(f"no such file: {where}", hint="paths are relative to the current directory")
    suffix = path.suffix.lower()
    if column is not None and suffix != ".csv":
        raise GradcliError(f"{where}: only a .csv file has named columns (got :{column})")
    if suffix == ".npy":
        try:
            # Mapped, not read: the size in its header is checked (--max-elements) before a
            # byte of data is loaded, and a header that promises more than the file holds fails.
            array: np.ndarray = np.load(path, allow_pickle=False, mmap_mode="r")
        except (ValueError, OSError, EOFError) as exc:
            raise GradcliError(f"{where}: not a readable .npy file ({exc})") from None
        if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
            raise GradcliError(f"{where}: holds {array.dtype} values, not real numbers")
        return array
    try:
        text = path.read_text(encoding="utf-8-sig")  # Excel writes a BOM
    except UnicodeDecodeError:
        raise GradcliError(f"{where} is not a text file (not UTF-8)",
                           hint="numbers come as .csv, .json, .txt or .npy") from None
    except OSError as exc:
        raise GradcliError(f"cannot read {where}: {exc.strerror}") from None
    if suffix == ".json":
        return _from_json(text, where)
    if suffix == ".csv":
        header, table = read_csv_table(text, where)
        if column is None:
            return table.reshape(-1) if table.shape[1] == 1 else table
        if header is None or column not in header:
            known = ", ".join(header) if header else "none (the file has no header row)"
            raise GradcliError(f"{where} has no column '{column}'", hint=f"its columns: {known}")
        return table[:, header.index(column)]
    return _from_text(text, where)


def read_data_file(path_text: str) -> dict[str, np.ndarray]:
    """--data FILE.csv: every named column, as a vector."""
    text = read_stdin("--data -") if path_text == "-" else None
    if text is None:
        path = Path(path_text)
        if not path.is_file():
            raise GradcliError(f"no such file: {path_text}", hint="paths are relative to the current directory")
        try:
            text = path.read_text(encoding="utf-8-sig")  # Excel writes a BOM
        except UnicodeDecodeError:
            raise GradcliError(f"{path_text} is not a text file (not UTF-8)") from None
    header, table = read_csv_table(text, path_text)
    if header is None:
        raise GradcliError(f"{path_text}: --data needs a header row naming the columns")
    return {name: table[:, i] for i, name in enumerate(header)}
