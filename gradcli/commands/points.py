"""`gradcli grad EXPR --points FILE`: f and its gradient at every row of a file, checked row by row.

Each row of a CSV file (a header row names the variables), of a structured .npy file (its
fields named like the variables) or of standard input is one point. The rows are read in
chunks, and each chunk is one batched torch computation:

- when f is elementwise in the point variables (the usual case, sin(x)*exp(-x**2)), the
  chunk's columns become tensors of shape [rows], and one forward and one backward pass of
  sum(f) give every row's gradient: row i of f depends on row i alone, so d sum(f)/dx_i is
  df/dx at row i;
- otherwise (a point variable inside a reduction over a constant vector, sum(w*x)),
  torch.func.vmap(torch.func.grad_and_value(f)) maps the gradient of one row over the rows.

The symbolic check is batched the same way: sympy's derivative, lowered in float64 and
evaluated on the whole chunk by gradcli/core/reference.py (the route `gradcli grad` checks
by), is compared with autograd row by row (core/check.py's pointwise_verdicts, the words
`gradcli grad` and `plot` use). Each chunk is written (CSV, NDJSON or .npy) before the next
is read, so memory stays flat however long the input.

Nothing here imports typer or rich.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO

import numpy as np
import numpy.typing as npt
import torch

from gradcli.core.autodiff import torch_error
from gradcli.core.check import CODES, VERDICTS, Verdict, check_mode, pointwise_verdicts, uses_symbolic, worst_codes
from gradcli.core.limits import DEFAULT_MAX_ELEMENTS, MAX_CSV_LINE_CHARS
from gradcli.core.numeric import SAFETY, derivative_along
from gradcli.core.parse import ParsedExpression
from gradcli.core.reference import Programs, is_elementwise_in, kink_conventions, symbolic_gradients
from gradcli.core.session import (
    Session,
    float64_function,
    gc_paused,
    parse_cached,
    prepare,
)
from gradcli.core.sympy_functions import expand_definitions
from gradcli.core.values import ValuesArg, ValueSpec, array_value, read_values
from gradcli.errors import GradcliError
from gradcli.inputs import check_files_allowed, claim_stdin, decode_utf8, is_float, load_npy, printable
from gradcli.outputs import atomic_output, refuse_same_file, value_files
from gradcli.report import Report
from gradcli.version import __version__

# Rows computed at once: enough that the per-chunk work (sympy's derivative, lowering it,
# Python around each torch call) is a few per cent, few enough to stay in the caches
# (2^18 rows measured slower here) and to keep memory to a few MB.
CHUNK_ROWS = 1 << 16
CHUNK_BYTES = 1 << 21  # CSV text read at once (about 50,000 rows of two numbers)

# Each row's verdict, in the output's check column (and, as its code, the .npy file's check
# field): the words of core/check.py's Verdict, CHECK_NAMES[code] being the row's.
CHECK_NAMES: tuple[str, ...] = tuple(v.value for v in VERDICTS)
AGREE, UNAVAILABLE, SKIPPED = CODES[Verdict.AGREE], CODES[Verdict.UNAVAILABLE], CODES[Verdict.SKIPPED]

# A chunk's f (float64), autograd's gradients and sympy's (None where it cannot be evaluated).
Batch = tuple[npt.NDArray[np.float64], dict[str, torch.Tensor], dict[str, "torch.Tensor | None"]]
# One row's symbolic gradients (NaN where missing), and which are missing.
RowReferences = tuple[tuple[torch.Tensor, ...], tuple[bool, ...]]

# Significant digits that read back as the same number in each dtype (ceil(1 + p*log10(2))
# for a p-bit significand); float64 is written as Python's repr, the shortest exact decimal.
_DIGITS = {"float32": 9, "float16": 5, "bfloat16": 4}


@dataclass
class PointsSummary(Report):
    """What --points did: how many rows, and how each was judged (its rows went to the output)."""

    expression: str
    parsed: str
    dtype: str
    device: str
    columns: list[str]  # the output's columns: the point variables, f, df/dx..., check
    rows: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECK_NAMES, 0))
    first_row: dict[str, int] = field(default_factory=dict)  # check name -> first data row (1-based) with it
    checked: bool = True
    batched_by: str = "elementwise"  # or "vmap"
    command: str = field(default="grad", kw_only=True)

    def verdicts(self) -> Iterable[Verdict]:
        """Each verdict some row got: failed when a row disagreed or was not finite, as one point
        does for `gradcli grad`."""
        return [Verdict(name) for name, n in self.counts.items() if n]

    def to_dict(self) -> dict[str, Any]:
        return {**self.header(), "parsed": self.parsed, "dtype": self.dtype, "device": self.device,
                "columns": self.columns, "rows": self.rows, "checks": dict(self.counts),
                "first_row": dict(self.first_row), "batched_by": self.batched_by, "status": self.status,
                "warnings": list(self.warnings)}

    def lines(self) -> list[str]:
        """A summary for stderr."""
        counted = ", ".join(f"{n:,} {name}" for name, n in self.counts.items() if n)
        out = [f"{self.rows:,} row{'' if self.rows == 1 else 's'}: {counted or 'none'}"]
        for name in (Verdict.DISAGREE, Verdict.NOT_FINITE, Verdict.KINK):
            if self.counts[name]:
                what = {Verdict.DISAGREE: "autograd and sympy disagree",
                        Verdict.NOT_FINITE: "f or its derivative is not finite (outside the domain, or beyond "
                                            f"what {self.dtype} can hold)",
                        Verdict.KINK: "the derivative does not exist there; autograd's value is torch's "
                                      "convention"}[name]
                out.append(f"{name}: {what}; first at data row {self.first_row[name]:,}")
        return out


# --------------------------------------------------------------------------- reading rows

class _CsvRows:
    """A CSV stream with a header row, read CHUNK_BYTES of lines at a time.

    Read as bytes and decoded a chunk at a time: a byte that is not UTF-8, however far in,
    is an error naming its line and byte offset (a text stream fails with neither)."""

    def __init__(self, stream: IO[bytes], where: str, chunk_bytes: int):
        self.stream, self.where, self.chunk_bytes = stream, where, chunk_bytes
        self.line = 0
        self.offset = 0  # bytes read so far
        header = None
        for raw in iter(self._readline, b""):
            text = decode_utf8(raw, where, first_line=self.line + 1, first_offset=self.offset)
            self.line += 1
            self.offset += len(raw)
            if text.strip() and not text.lstrip().startswith("#"):
                header = text
                break
        if header is None:
            raise GradcliError(f"{where} is empty", hint="--points needs a header row naming the variables, then rows")
        # Escaped for messages: a name with a control character is no variable's anyway.
        names = [printable(c.strip()) for c in next(csv.reader([header]))]
        if all(is_float(c) for c in names):
            raise GradcliError(f"{where}: the first row is numbers; --points needs a header row naming the variables",
                               hint="for example: x,y")
        self.names = names

    def chunks(self) -> Iterator[np.ndarray]:
        width = len(self.names)
        while True:
            raw = self._readlines()
            if not raw:
                return
            first = self.line + 1
            data = b"".join(raw)
            text = decode_utf8(data, self.where, first_line=first, first_offset=self.offset)
            self.line += len(raw)
            self.offset += len(data)
            if "\r" in text:  # Windows line ends (as a text stream would read them)
                text = text.replace("\r\n", "\n").replace("\r", "\n")
            lines = text.split("\n")
            if lines and not lines[-1]:
                lines.pop()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "input contained no data": a chunk of blank lines
                    table = np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2, comments="#")
            except ValueError:
                raise self._problem(lines, first) from None
            if table.size == 0:
                continue
            if table.shape[1] != width:
                raise self._problem(lines, first)
            yield table

    def _readline(self, before: int = 0) -> bytes:
        """The next line, refused by its number when longer than MAX_CSV_LINE_CHARS bytes (read no
        further: a gigabyte without a newline is never held whole)."""
        raw = self.stream.readline(MAX_CSV_LINE_CHARS + 1)
        if len(raw) > MAX_CSV_LINE_CHARS:
            raise GradcliError(f"{self.where}: line {self.line + before + 1} is longer than "
                               f"{MAX_CSV_LINE_CHARS:,} characters", hint="a CSV row holds one point's numbers")
        return raw

    def _readlines(self) -> list[bytes]:
        """About chunk_bytes of whole lines, as readlines(chunk_bytes), each one's length checked."""
        lines: list[bytes] = []
        size = 0
        while size < self.chunk_bytes and (raw := self._readline(len(lines))):
            lines.append(raw)
            size += len(raw)
        return lines

    def _problem(self, lines: list[str], first: int) -> GradcliError:
        """The first bad line of a chunk, by its line number: where, never what (see inputs.py)."""
        width = len(self.names)
        for k, text in enumerate(lines):
            stripped = text.strip()
            if not stripped or stripped.startswith("#"):
                continue
            cells = stripped.split(",")
            if len(cells) != width:
                return GradcliError(f"{self.where}: line {first + k} has {len(cells)} columns; the header has {width}")
            for c, cell in enumerate(cells):
                if not is_float(cell):
                    return GradcliError(f"{self.where}: line {first + k}, column {c + 1} ({self.names[c]}) "
                                        "is not a number")
        return GradcliError(f"{self.where}: lines {first} to {first + len(lines) - 1} could not be read as numbers")


class _NpyRows:
    """A structured .npy file (fields named like the variables), mapped and read CHUNK_ROWS at a time."""

    def __init__(self, path: Path, where: str, chunk_rows: int):
        self.array = load_npy(path, where)
        fields = self.array.dtype.names
        if fields is None or self.array.ndim != 1:
            raise GradcliError(
                f"{where}: --points needs a .npy file of named columns (a 1-D structured array); "
                f"this one holds a {printable(str(self.array.dtype))[:200]} array of shape {list(self.array.shape)}",
                hint='for example np.save("points.npy", np.rec.fromarrays([x, y], names="x,y"))')
        for name in fields:
            kind = self.array.dtype[name]
            if not np.issubdtype(kind, np.number) or np.issubdtype(kind, np.complexfloating) or kind.shape:
                raise GradcliError(f"{where}: field {printable(name)} holds {printable(str(kind))[:200]} values, "
                                   "not real numbers")
        self.fields = list(fields)  # as in the file, to read them by
        self.names = [printable(n) for n in fields]  # as messages show them (see _CsvRows)
        self.where, self.chunk_rows = where, chunk_rows

    def chunks(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self.array), self.chunk_rows):
            block = self.array[start:start + self.chunk_rows]
            yield np.stack([np.asarray(block[n], dtype=np.float64) for n in self.fields], axis=1)


def _open_rows(source: str, chunk_rows: int, chunk_bytes: int) -> tuple[_CsvRows | _NpyRows, IO[bytes] | None]:
    check_files_allowed(f"--points {source}")
    if source == "-":
        claim_stdin("--points -")
        buffer = getattr(sys.stdin, "buffer", None)
        stdin = buffer if buffer is not None else io.BytesIO(sys.stdin.read().encode("utf-8"))
        return _CsvRows(stdin, "standard input", chunk_bytes), None
    path = Path(source)
    where = printable(source)
    if not path.is_file():
        raise GradcliError(f"no such file: {where}", hint="paths are relative to the current directory")
    if path.suffix.lower() == ".npy":
        return _NpyRows(path, where, chunk_rows), None
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed by the caller (or below, on an error)
    except OSError as exc:
        raise GradcliError(f"cannot read {where}: {exc.strerror}") from None
    try:
        return _CsvRows(stream, where, chunk_bytes), stream
    except OSError as exc:
        stream.close()
        raise GradcliError(f"cannot read {where}: {exc.strerror}") from None
    except BaseException:
        stream.close()
        raise


# --------------------------------------------------------------------------- writing rows

class _TextRows:
    """CSV or NDJSON rows, a chunk at a time, each number exact in the dtype it was computed in."""

    def __init__(self, out: TextIO, fmt: str, columns: list[str], dtype: str):
        self.out, self.fmt, self.columns = out, fmt, columns
        digits = _DIGITS.get(dtype)
        number = "%r" if digits is None else f"%.{digits}g"
        numbers = columns[:-1]  # the last column is the check
        if fmt == "csv":
            self.templates = [",".join([number] * len(numbers)) + f",{name}\n" for name in CHECK_NAMES]
            out.write(",".join(_csv_cell(c) for c in columns) + "\n")
        else:
            keys = [json.dumps(c, ensure_ascii=False).replace("%", "%%") for c in numbers]
            body = ",".join(f"{k}:{number}" for k in keys)
            self.templates = ["{" + body + f',"check":"{name}"}}\n' for name in CHECK_NAMES]

    def write(self, values: np.ndarray, checks: np.ndarray) -> None:
        """values: rows x numeric columns (float64); checks: a code from CHECK_NAMES per row."""
        # One %-format for the whole chunk: Python formats every number in C, with no call per
        # number (a quarter of the cost of repr() in a loop).
        template = "".join([self.templates[c] for c in checks.tolist()])
        text = template % tuple(values.ravel().tolist())
        if self.fmt == "ndjson" and not np.isfinite(values).all():
            # JSON has no NaN or infinity: they are strings, as in every gradcli document.
            text = text.replace(":nan", ':"nan"').replace(":-inf", ':"-inf"').replace(":inf", ':"inf"')
        self.out.write(text)

    def finish(self) -> None:
        self.out.flush()


def _csv_cell(text: str) -> str:
    return f'"{text}"' if any(ch in text for ch in ',"\n') else text


class _NpyWriter:
    """A structured .npy file written a chunk at a time; its header, which holds the row
    count, is written first with room for any count and rewritten with the final one."""

    def __init__(self, file: BinaryIO, columns: list[str]):
        # The check as its code (CHECK_NAMES[code]): one byte a row, where its name would take 44.
        self.dtype = np.dtype([(c, "<f8") for c in columns[:-1]] + [(columns[-1], "i1")])
        self.file = file  # atomic_output's: the header is rewritten before it becomes the destination
        self.rows = 0
        self.header_size = len(self._header(10**18))
        self.file.write(self._header(0))

    def _header(self, rows: int) -> bytes:
        descr = np.lib.format.dtype_to_descr(self.dtype)
        text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': ({rows:d},), }}"
        encoded = text.encode("utf-8")
        version, length_bytes = (b"\x01\x00", 2) if encoded.isascii() else (b"\x03\x00", 4)
        prefix = len(b"\x93NUMPY") + 2 + length_bytes
        size = getattr(self, "header_size", None)
        total = size if size is not None else -(-(prefix + len(encoded) + 1 + 32) // 64) * 64
        padded = encoded + b" " * (total - prefix - len(encoded) - 1) + b"\n"
        return b"\x93NUMPY" + version + (len(padded)).to_bytes(length_bytes, "little") + padded

    def write(self, values: np.ndarray, checks: np.ndarray) -> None:
        records = np.empty(len(values), dtype=self.dtype)
        names = self.dtype.names or ()  # a structured dtype: always named
        for i, name in enumerate(names[:-1]):
            records[name] = values[:, i]
        records[names[-1]] = checks
        self.file.write(records.data)  # the array's own memory, not a copy of it
        self.rows += len(values)

    def finish(self) -> None:
        self.file.seek(0)
        self.file.write(self._header(self.rows))


# --------------------------------------------------------------------------- computing

def _row_checks(f: np.ndarray, autograd: dict[str, torch.Tensor], symbolic: dict[str, torch.Tensor | None],
                *, dtype: torch.dtype, rtol: float, atol: float,
                slack: dict[str, np.ndarray] | None = None, kinks: bool = True) -> np.ndarray:
    """A verdict code per row: the worst over the variables, each row judged on its own scale
    (core/check.py's pointwise_verdicts, which `gradcli plot` judges each point by). slack: per
    variable, the allowance of a finite-difference reference (its error estimate)."""
    rows = np.full(len(f), AGREE, dtype=np.int8)
    largest = torch.finfo(dtype).max
    for name, a in autograd.items():
        r = symbolic[name]
        if r is None:  # nothing to compare: unavailable, unless another variable said more
            rows = np.where(rows == AGREE, UNAVAILABLE, rows).astype(np.int8)
            continue
        a64 = a.detach().to(device="cpu", dtype=torch.float64).numpy()
        rows = worst_codes(rows, pointwise_verdicts(f, a64, r.numpy(), rtol=rtol, atol=atol, largest=largest,
                                                    slack=(slack or {}).get(name), kinks=kinks))
    return rows


def _columns_of(table: np.ndarray, names: list[str], wanted: Sequence[str]) -> dict[str, np.ndarray]:
    return {n: table[:, names.index(n)] for n in wanted}


@gc_paused
def grad_points(expression: str, points: str, values: ValuesArg = (), *, out: TextIO | None = None,
                output: str | None = None, fmt: str = "csv", wrt: str | Sequence[str] | None = None,
                dtype: str = "float32", device: str = "auto", check: bool | str = True, rtol: float | None = None,
                atol: float | None = None, seed: int | None = None, max_elements: int = DEFAULT_MAX_ELEMENTS,
                chunk_rows: int = CHUNK_ROWS, chunk_bytes: int = CHUNK_BYTES, **named: Any) -> PointsSummary:
    """f and its gradient at every row of `points` (a .csv file with a header, a structured
    .npy file, or "-" for CSV on standard input), written to `output` (.csv, .ndjson or .npy)
    or to `out` (default: standard output) as fmt ("csv" or "ndjson").

    values: constants for the variables that are not columns (NAME=VALUE, or a mapping).
    Returns the summary: the row count and how many rows each check verdict got.
    """
    if fmt not in ("csv", "ndjson"):
        raise GradcliError(f"--points writes csv or ndjson rows, not {fmt}",
                           hint="--format csv (the default) or ndjson, or --output FILE.npy")
    if chunk_rows < 1 or chunk_bytes < 1:
        raise GradcliError("the chunk size must be at least 1")
    out_kind = fmt
    if output is not None:
        suffix = Path(output).suffix.lower()
        out_kind = {".npy": "npy", ".csv": "csv", ".ndjson": "ndjson", ".jsonl": "ndjson"}.get(suffix, fmt)
    # An output is never an input: said before anything is read or written.
    refuse_same_file([("--output", output)],
                     [(f"--points {points}", points), *value_files(values, named)])
    parsed = parse_cached(expression)
    constants = read_values(values, named)
    rows, stream = _open_rows(points, chunk_rows, chunk_bytes)
    # One thread for torch: a chunk's operations are short, and with two or more threads
    # each one waits for every thread to finish its part; when another process holds a core,
    # that wait was measured to make the whole run 10 times slower (4.8 s against 0.3 s for
    # 10^6 rows from .npy, on 2 shared cores). The work that decides the time, reading and
    # writing the rows, is in one thread anyway.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(parsed, expression, rows.where, rows, constants, out=out, output=output, out_kind=out_kind,
                    wrt=wrt, dtype=dtype, device=device, check=check, rtol=rtol, atol=atol, seed=seed,
                    max_elements=max_elements, chunk_rows=chunk_rows)
    finally:
        torch.set_num_threads(threads)
        if stream is not None:
            stream.close()


def _point_variables(parsed: ParsedExpression, where: str, names: list[str],
                     constants: Mapping[str, ValueSpec]) -> tuple[list[str], list[str]]:
    if len(set(names)) != len(names):
        twice = sorted(n for n, count in Counter(names).items() if count > 1)  # linear: 100,000 columns
        raise GradcliError(f"{where}: column {', '.join(twice)} appears twice in the header")
    point_vars = [n for n in names if n in parsed.variables]
    unused = [n for n in names if n not in parsed.variables]
    if not point_vars:
        raise GradcliError(f"none of the columns of {where} ({', '.join(names)}) is a variable of the expression "
                           f"(its variables: {', '.join(parsed.variables) or 'none'})",
                           hint="name the columns in the header row after the variables")
    both = [n for n in point_vars if n in constants]
    if both:
        raise GradcliError(f"{', '.join(both)} is a column of {where} and is given a value too",
                           hint="a variable is either a column (one value per row) or a constant (NAME=VALUE)")
    for n in point_vars:
        var = parsed.variables[n]
        if var.indices:
            raise GradcliError(f"{n} is a column of {where}, one number per row, and cannot be indexed "
                               f"({n}[{', '.join(map(str, next(iter(var.indices))))}])", span=var.span)
    missing = [n for n in parsed.variables if n not in names and n not in constants]
    if missing:
        raise GradcliError(f"no value for {', '.join(missing)}: not a column of {where}, nor given as NAME=VALUE",
                           hint=f"add a column {missing[0]} to the file, or hold it constant: {missing[0]}=1")
    return point_vars, unused


def _wrt(wrt: str | Sequence[str] | None, point_vars: list[str], where: str) -> list[str]:
    if wrt is None or wrt == "" or wrt == []:
        return list(point_vars)
    names = [w.strip() for w in (wrt.split(",") if isinstance(wrt, str) else wrt) if w.strip()]
    if not names:
        raise GradcliError(f"--wrt {wrt!r} names no variable", hint="for example --wrt x,y")
    for n in names:
        if n not in point_vars:
            raise GradcliError(f"--wrt {n}: with --points, the gradient is taken along the columns of {where} "
                               f"({', '.join(point_vars)}); {n} is not one of them")
    if len(set(names)) != len(names):
        raise GradcliError("--wrt names a variable twice")
    return names


def _run(parsed: ParsedExpression, expression: str, where: str, rows: _CsvRows | _NpyRows,
         constants: dict[str, ValueSpec], *, out: TextIO | None, output: str | None, out_kind: str,
         wrt: str | Sequence[str] | None, dtype: str, device: str, check: bool | str, rtol: float | None,
         atol: float | None, seed: int | None, max_elements: int, chunk_rows: int) -> PointsSummary:
    point_vars, unused = _point_variables(parsed, where, rows.names, constants)
    names = _wrt(wrt, point_vars, where)
    chunks = rows.chunks()
    first = next(chunks, None)
    # Set up (and validate) as `gradcli grad` would at one point: the first row (a value that
    # is not finite, which `gradcli grad` refuses, is only flagged in its row: 1 stands in).
    example = {}
    for n in point_vars:
        value = first[0, rows.names.index(n)] if first is not None else 1.0
        example[n] = array_value(np.array(value if np.isfinite(value) else 1.0), f"{n} (a column)")
    st = prepare(expression, {**constants, **example}, wrt=names, dtype=dtype, device=device, rtol=rtol, atol=atol,
                seed=seed, max_elements=max_elements)
    with torch.no_grad():
        try:
            row_shape = tuple(st.fn(st.tensors).shape)
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
            raise torch_error(exc) from None
    if row_shape != ():
        raise GradcliError(f"f has shape {list(row_shape)} at each row; --points needs one number per row",
                           hint="reduce it (sum(...), mean(...)), or use gradcli grad or jacobian with the values")
    elementwise = all(is_elementwise_in(expand_definitions(c), st.table, n)
                      for c in st.parsed.components for n in point_vars)
    constants_t = {n: t for n, t in st.tensors.items() if n not in point_vars}
    columns = list(point_vars) + ["f"] + [f"df/d{n}" for n in names] + ["check"]
    mode = check_mode(check)
    summary = PointsSummary(expression, st.parsed.pretty(), st.dtype, str(st.device), columns, checked=mode != "none",
                            batched_by="elementwise" if elementwise else "vmap", version=__version__)
    if unused:
        summary.warnings.append(f"{where}: column(s) {', '.join(unused)} are not variables of the "
                                "expression (left out)")
    torch_dtype = st.tensors[point_vars[0]].dtype
    if output is None:
        stream = out if out is not None else sys.stdout
        writer = _TextRows(stream, out_kind, columns, dtype)
        try:
            _compute(st, rows, first, chunks, writer, summary, point_vars, names, columns, constants_t, mode,
                     elementwise, torch_dtype, chunk_rows)
        finally:
            stream.flush()  # the rows so far were streamed: they are the reader's
        return summary
    # A file: written whole or not at all (a temporary file, renamed over `output` at the end).
    with ExitStack() as files:
        file_writer = (_NpyWriter(files.enter_context(atomic_output(output, "wb")), columns) if out_kind == "npy"
                       else _TextRows(files.enter_context(atomic_output(output, "w")), out_kind, columns, dtype))
        _compute(st, rows, first, chunks, file_writer, summary, point_vars, names, columns, constants_t, mode,
                 elementwise, torch_dtype, chunk_rows)
        file_writer.finish()
    return summary


def _compute(st: Session, rows: _CsvRows | _NpyRows, first: npt.NDArray[np.float64] | None,
             chunks: Iterator[npt.NDArray[np.float64]], writer: _NpyWriter | _TextRows, summary: PointsSummary,
             point_vars: list[str], names: list[str], columns: list[str], constants_t: dict[str, torch.Tensor],
             mode: str, elementwise: bool, torch_dtype: torch.dtype, chunk_rows: int) -> None:
    """Every chunk of rows computed, checked, written and counted into `summary`."""
    batch = _elementwise_batch if elementwise else _vmapped_batch
    programs: Programs = {}  # the symbolic derivatives, lowered once for every chunk
    # Whether f has a function with a kink: sympy's NaN is a kink only then (else an overflow).
    kinks = bool(kink_conventions(st.parsed.components, {s_ for s_, (n, _i) in st.table.items() if n in names}))
    for table in _chain(first, chunks) if first is not None else ():
        for start in range(0, len(table), chunk_rows):
            part = table[start:start + chunk_rows]
            cols = _columns_of(part, rows.names, point_vars)
            tensors = {n: torch.from_numpy(np.ascontiguousarray(c)).to(dtype=torch_dtype, device=st.device)
                       for n, c in cols.items()}
            f, grads, refs = batch(st, constants_t, tensors, point_vars, names, uses_symbolic(mode), programs)
            if mode == "none":
                checks = np.full(len(f), SKIPPED, dtype=np.int8)
            else:
                numeric = _numeric_rows(st, constants_t, tensors, names, refs, mode, elementwise)
                checks = (_row_checks(f, grads, refs, dtype=torch_dtype, rtol=st.rtol, atol=st.atol, kinks=kinks)
                          if mode in ("symbolic", "all") or (mode == "auto" and not numeric) else
                          np.full(len(f), AGREE, dtype=np.int8))
                if numeric:
                    estimates = {n: torch.from_numpy(v) for n, (v, _e) in numeric.items()}
                    only = {n: grads[n] for n in numeric}
                    checks = worst_codes(checks, _row_checks(
                        f, only, dict(estimates), dtype=torch_dtype, rtol=st.rtol, atol=st.atol,
                        slack={n: SAFETY * e for n, (_v, e) in numeric.items()}))
                    if mode == "auto":  # the variables sympy did check
                        checked = {n: grads[n] for n in names if n not in numeric}
                        if checked:
                            checks = worst_codes(checks, _row_checks(f, checked, refs, dtype=torch_dtype,
                                                                     rtol=st.rtol, atol=st.atol, kinks=kinks))
            values = np.empty((len(f), len(columns) - 1), dtype=np.float64)
            for i, n in enumerate(point_vars):
                values[:, i] = tensors[n].to(device="cpu", dtype=torch.float64).numpy()
            values[:, len(point_vars)] = f
            for i, n in enumerate(names):
                values[:, len(point_vars) + 1 + i] = grads[n].to(device="cpu", dtype=torch.float64).numpy()
            writer.write(values, checks)
            summary.warnings.extend(n for n in st.notes if n not in summary.warnings)
            counts = np.bincount(checks, minlength=len(CHECK_NAMES))
            for code, count in enumerate(counts.tolist()):
                if count:
                    name = CHECK_NAMES[code]
                    if name not in summary.first_row:
                        summary.first_row[name] = summary.rows + int(np.argmax(checks == code)) + 1
                    summary.counts[name] += count
            summary.rows += len(f)


def _numeric_rows(st: Session, constants: Mapping[str, torch.Tensor], tensors: dict[str, torch.Tensor],
                  names: list[str], refs: dict[str, torch.Tensor | None], mode: str,
                  elementwise: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Finite differences for each row, where the mode asks for them: (estimate, error) per variable.

    f elementwise in the columns: one derivative along a direction of ones gives every row its
    own. Otherwise (sum(w*x) with a vector w) rows are not separable this way, and the numeric
    route is not run (the rows say unavailable where sympy could not check either).
    """
    wanted = [n for n in names if mode in ("numeric", "all") or (mode == "auto" and refs.get(n) is None)]
    if not wanted or not elementwise:
        return {}
    env = {**constants, **tensors}
    found = {}
    for n in wanted:
        est = derivative_along(float64_function(st), env, {n: torch.ones(tuple(tensors[n].shape),
                                                                          dtype=torch.float64)})
        rows = len(tensors[n])
        found[n] = (torch.broadcast_to(est.value, (rows,)).numpy(), torch.broadcast_to(est.error, (rows,)).numpy())
    return found


def _chain(first: npt.NDArray[np.float64],
           rest: Iterator[npt.NDArray[np.float64]]) -> Iterator[npt.NDArray[np.float64]]:
    yield first
    yield from rest


def _elementwise_batch(st: Session, constants: Mapping[str, torch.Tensor], tensors: dict[str, torch.Tensor],
                       point_vars: list[str], names: list[str], check: bool, programs: Programs) -> Batch:
    """f elementwise in the point variables: the gradient of sum(f) is every row's gradient."""
    env = {**constants, **tensors}
    n = len(next(iter(tensors.values())))
    # The chunk's tensors are fresh (made from the file's numbers): they are the leaves, with
    # no copy (autodiff.gradient copies its leaves, for calls that share them).
    leaves = [tensors[v].requires_grad_(True) for v in names]
    try:
        out = st.fn(env)
        total = out.sum()
        if total.requires_grad:
            grads_tuple = torch.autograd.grad(total, leaves, allow_unused=True, materialize_grads=True)
        else:  # f does not depend on them (x - x)
            grads_tuple = tuple(torch.zeros_like(t) for t in leaves)
    except (RuntimeError, TypeError, ValueError, IndexError, NotImplementedError) as exc:
        raise torch_error(exc) from None
    for t in leaves:
        t.requires_grad_(False)
    f = torch.broadcast_to(out.detach(), (n,)).to(device="cpu", dtype=torch.float64).numpy()
    grads = {v: torch.broadcast_to(g, (n,)) for v, g in zip(names, grads_tuple, strict=True)}
    refs: dict[str, torch.Tensor | None] = {}
    if check:
        try:
            symbolic = symbolic_gradients(st.parsed.components, None, st.table, env, names, "sum", programs)
        except RuntimeError as exc:
            raise torch_error(exc) from None
        for v in names:
            value = symbolic[v].value
            refs[v] = None if value is None else torch.broadcast_to(value, (n,))
    return f, grads, refs


def _vmapped_batch(st: Session, constants: Mapping[str, torch.Tensor], tensors: dict[str, torch.Tensor],
                   point_vars: list[str], names: list[str], check: bool, programs: Programs) -> Batch:
    """f mixes a point variable with a constant vector (sum(w*x)): one row's gradient, vmapped."""
    from torch.func import grad_and_value, vmap

    argnums = tuple(point_vars.index(v) for v in names)

    def one_row(*row: torch.Tensor) -> torch.Tensor:
        return st.fn({**constants, **dict(zip(point_vars, row, strict=True))})

    cols = [tensors[v] for v in point_vars]
    try:
        grads_tuple, f = vmap(grad_and_value(one_row, argnums=argnums))(*cols)
    except (RuntimeError, ValueError, IndexError, TypeError, NotImplementedError) as exc:
        raise torch_error(exc) from None
    grads = dict(zip(names, (g.detach() for g in grads_tuple), strict=True))
    refs: dict[str, torch.Tensor | None] = {}
    if check:
        def one_row_symbolic(*row: torch.Tensor) -> RowReferences:
            env = {**constants, **dict(zip(point_vars, row, strict=True))}
            symbolic = symbolic_gradients(st.parsed.components, None, st.table, env, names, "sum", programs)
            for v in names:
                if symbolic[v].value is None and _batched(row):
                    raise _NotBatchable(symbolic[v].unavailable)  # it may work one row at a time
            found = [symbolic[v].value for v in names]
            return tuple(r if r is not None else torch.full((), float("nan"), dtype=torch.float64)
                         for r in found), tuple(r is None for r in found)
        try:
            # out_dims=(0, None): a value per row, one `missing` for all (torch's stub allows no None inside)
            values, missing = vmap(one_row_symbolic, out_dims=(0, None))(*cols)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - a derivative vmap cannot batch: the same formulas, row by row
            values, missing = _row_by_row(one_row_symbolic, cols)
            note = ("the symbolic check ran row by row: this expression is not elementwise in the columns, "
                    "and its symbolic derivative could not be vmapped")
            if note not in st.notes:
                st.notes.append(note)
        # strict=False: row by row over no rows gives values and missing as (), one entry short of names
        for v, value, gone in zip(names, values, missing, strict=False):
            refs[v] = None if gone else value
    return f.detach().to(device="cpu", dtype=torch.float64).numpy(), grads, refs


class _NotBatchable(Exception):
    pass


def _batched(row: tuple[torch.Tensor, ...]) -> bool:
    from torch._C._functorch import is_batchedtensor

    return any(is_batchedtensor(t) for t in row)


def _row_by_row(fn: Callable[..., RowReferences],
                cols: list[torch.Tensor]) -> tuple[tuple[torch.Tensor, ...], tuple[bool, ...]]:
    results = [fn(*row) for row in zip(*cols, strict=True)]  # one column per variable, n rows each
    if not results:
        return (), ()
    values = tuple(torch.stack([r[0][k] for r in results]) for k in range(len(results[0][0])))
    return values, results[0][1]
