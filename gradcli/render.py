"""Reports to text: a rich table for people, JSON for programs, bare numbers for shells.

Numbers are shown as the shortest decimal that reads back as the same number in the
user's dtype: float16's -2/3 is -0.6665, float32's 0.1 is 0.1. Rich is imported only for
the table, so machine formats start faster.
"""

from __future__ import annotations

import json
import math
from typing import Any, TextIO

from gradcli.report import GradReport, TensorData, VariableResult

FORMATS = ("table", "json", "plain")

_MARKS = {
    "ok": ("✓ agree", "green"),
    "mismatch": ("✗ differ", "bold red"),
    "domain": ("✗ not finite", "bold red"),
    "undefined": ("~ kink", "yellow"),
    "unavailable": ("? no symbolic", "yellow"),
    "skipped": ("– not checked", "dim"),
}


# --------------------------------------------------------------------------- numbers

def number(x: float, dtype: str = "float64") -> str:
    """The shortest text that reads back as x in `dtype`; whole numbers without '.0'.

    Half-precision values get five significant digits, as torch prints them (-0.6665,
    1.8496): always enough to read back, and they show the rounding the dtype did.
    """
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if dtype in ("float16", "bfloat16"):
        text = f"{x:.5g}"
        if "e" not in text and "." in text:
            text = text.rstrip("0").rstrip(".")
    elif dtype == "float32":
        import numpy as np

        text = str(np.float32(x))
    else:
        text = repr(float(x))
    if text.endswith(".0"):
        text = text[:-2]
    return text.replace("e+", "e")


def tensor_text(t: TensorData, edge: int = 3, limit: int = 12, rows: bool = False) -> str:
    """Compact nested brackets; long dimensions keep `edge` items at each end.

    rows=True puts each top-level row of a matrix on its own line, for table cells.
    """
    summarise = t.numel > limit

    def walk(x: Any, depth: int = 0) -> str:
        if not isinstance(x, list):
            return number(x, t.dtype)
        parts = [walk(y, depth + 1) for y in x]
        if summarise and len(x) > 2 * edge:
            parts = parts[:edge] + ["…"] + parts[-edge:]
        sep = ",\n " if rows and depth == 0 and len(t.shape) >= 2 else ", "
        return "[" + sep.join(parts) + "]"
    return walk(t.data)


def _shape(t: TensorData) -> str:
    return "scalar" if not t.shape else "[" + ",".join(map(str, t.shape)) + "]"


# --------------------------------------------------------------------------- formats

def render_json(report: GradReport, out: TextIO) -> None:
    out.write(json.dumps(report.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def render_plain(report: GradReport, out: TextIO) -> None:
    """One line per differentiated variable: its gradient's numbers, space-separated."""
    for v in report.variables:
        out.write(" ".join(number(x, v.gradient.dtype) for x in v.gradient.flat()) + "\n")


def notes(report: GradReport) -> list[str]:
    """Lines a person should read beside the numbers."""
    lines = list(report.warnings)
    for v in report.variables:
        if v.note and v.status != "ok":
            lines.append(f"{v.name}: {v.note}")
    for m in report.methods:
        if not m.agrees:
            lines.append(f"method {m.method} disagrees with {report.methods[0].method}")
    return lines


_FIRST_COLUMN = {"grad": "wrt", "jacobian": "wrt", "vjp": "wrt", "jvp": "wrt", "hessian": "", "order": "order"}
_MATRIX_ROWS, _MATRIX_COLUMNS = 16, 10  # a labelled matrix larger than this is summarised


def _matrix_table(v: VariableResult):
    """A matrix with its row (outputs) and column (inputs) labels."""
    from rich import box
    from rich.table import Table

    data = v.gradient.data
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("", style="bold")
    for c in v.columns or []:
        table.add_column(c, justify="right")
    for label, row in zip(v.rows or [], data):
        table.add_row(label, *(number(x, v.gradient.dtype) for x in row))
    return table


def render_table(report: GradReport, out: TextIO) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=out, highlight=False, soft_wrap=False)
    command = "grad" if report.command == "order" else report.command
    header = Text()
    header.append(f"gradcli {command}  ", style="bold")
    header.append(report.parsed)
    console.print(header)
    f_line = f"f = {tensor_text(report.f)}"
    if report.reduction and report.differentiated is not None:
        f_line += (f"   (shape {_shape(report.f)}; {report.reduction} = "
                   f"{number(report.differentiated.data, report.differentiated.dtype)} was differentiated)")
    elif report.f.shape:
        f_line += f"   (shape {_shape(report.f)})"
    console.print(f_line)
    console.print(Text(f"{report.dtype} on {report.device} ({report.device_note}); {report.call}", style="dim"))
    for name, t in report.values.items():
        if name in report.wrt:
            console.print(f"{name} = {tensor_text(t)}")
        else:
            console.print(Text(f"{name} = {tensor_text(t)}  (constant)", style="dim"))
    if report.vector is not None:
        console.print(f"v = {tensor_text(report.vector)}")

    summarised = False
    for v in report.variables:
        if v.rows and v.columns and len(v.gradient.shape) == 2:
            if len(v.rows) <= _MATRIX_ROWS and len(v.columns) <= _MATRIX_COLUMNS:
                title = v.label or (f"Jacobian df/d{v.name}" if report.command == "jacobian" else v.name)
                console.print(Text(f"{title} by autograd" + (" (rows: outputs, columns: inputs)"
                                                             if report.command == "jacobian" else ""), style="bold"))
                console.print(_matrix_table(v))
            else:
                summarised = True

    table = Table(box=box.ROUNDED, show_lines=len(report.variables) > 1)
    table.add_column(_FIRST_COLUMN.get(report.command, ""), style="bold")
    table.add_column("autograd")
    if report.checked:
        table.add_column("symbolic derivative")
        table.add_column("its value")
        table.add_column("error", justify="right")
    table.add_column("check", no_wrap=True)
    for v in report.variables:
        mark, style = _MARKS.get(v.status, (v.status, ""))
        big = v.gradient.numel > 12
        summarised = summarised or big
        shown = f"shape {_shape(v.gradient)}\n" + tensor_text(v.gradient) if big else tensor_text(v.gradient, rows=True)
        row = [v.label or v.name, shown]
        if report.checked:
            ref = "—"
            if v.symbolic:
                ref = (f"shape {_shape(v.symbolic)}\n" + tensor_text(v.symbolic)) if v.symbolic.numel > 12 \
                    else tensor_text(v.symbolic, rows=True)
            row += [
                v.formula or "",
                ref,
                f"{v.max_abs_error:.2g}" if v.max_abs_error is not None else "—",
            ]
        row.append(Text(mark, style=style))
        table.add_row(*row)
    console.print(table)
    if summarised:
        console.print(Text("large tensors are summarised: --json prints every element", style="dim"))
    if report.seed is not None:
        console.print(Text(f"random values drawn with --seed {report.seed}", style="dim"))
    if report.methods:
        mt = Table(box=box.SIMPLE, title="methods", title_justify="left")
        mt.add_column("method")
        mt.add_column("torch call")
        mt.add_column("same result")
        for m in report.methods:
            mt.add_row(m.method, m.call, Text("✓ yes", style="green") if m.agrees else Text("✗ no", style="bold red"))
        console.print(mt)
    for line in notes(report):
        console.print(Text("note: " + line, style="yellow"))
    if report.checked:
        if report.status == "ok":
            summary = Text("autograd agrees with sympy", style="green")
        else:
            summary = Text("the cross-check failed", style="bold red")
        summary.append(f"  (reference in float64; rtol {report.rtol:g}, atol {report.atol:g})", style="dim")
        console.print(summary)


def render(report: GradReport, fmt: str, out: TextIO, err: TextIO) -> None:
    if fmt == "json":
        render_json(report, out)
    elif fmt == "plain":
        render_plain(report, out)
        for line in notes(report):
            err.write(f"note: {line}\n")
    else:
        render_table(report, out)
