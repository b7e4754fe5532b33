"""Reports to text: a rich table for people, JSON for programs, bare numbers for shells.

Numbers are shown as the shortest decimal that reads back as the same number in the
user's dtype: float16's -2/3 is -0.6665, float32's 0.1 is 0.1. Rich is imported only for
the table, so machine formats start faster.
"""

from __future__ import annotations

import json
import math
import sys
from typing import TextIO

from gradcli.report import GradReport, GraphReport, TensorData, VariableResult

FORMATS = ("table", "json", "ndjson", "csv", "plain")

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

    rows=True puts each top-level row of a matrix on its own line, for table cells. Only the
    elements shown are ever formatted, so a 10^7-element tensor costs nothing here.
    """
    summarise = t.numel > limit

    def walk(x, depth: int = 0) -> str:
        if x.ndim == 0:
            return number(float(x), t.dtype)
        n = x.shape[0]
        if summarise and n > 2 * edge:
            parts = [walk(x[i], depth + 1) for i in range(edge)] + ["…"] + \
                    [walk(x[i], depth + 1) for i in range(n - edge, n)]
        else:
            parts = [walk(x[i], depth + 1) for i in range(n)]
        sep = ",\n " if rows and depth == 0 and len(t.shape) >= 2 else ", "
        return "[" + sep.join(parts) + "]"
    return walk(t.array)


def _shape(t: TensorData) -> str:
    return "scalar" if not t.shape else "[" + ",".join(map(str, t.shape)) + "]"


# --------------------------------------------------------------------------- formats

def _console(out: TextIO, soft_wrap: bool = False):
    """A rich console: the terminal's width, or 120 columns when the output is a file or pipe
    (rich would assume 80 and squeeze the table), unless COLUMNS says otherwise."""
    import os

    from rich.console import Console

    is_terminal = hasattr(out, "isatty") and out.isatty()
    width = None if is_terminal or os.environ.get("COLUMNS") else 120
    # markup=False: "[0,1]" in a value or "x[0]" in a formula is text, never a rich style tag.
    return Console(file=out, highlight=False, markup=False, soft_wrap=soft_wrap, width=width)


def render_json(report, out: TextIO, compact: bool = False) -> None:
    """One JSON document: indented, or on one line (ndjson) for line-oriented tools."""
    if compact:
        out.write(json.dumps(report.to_dict(), separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n")
    else:
        out.write(json.dumps(report.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def _index_text(index: tuple[int, ...]) -> str:
    return "[" + ",".join(map(str, index)) + "]" if index else ""


def render_csv(report, out: TextIO) -> None:
    """A row per element: numbers as float64 repr, exact for every dtype."""
    import csv

    import numpy as np

    writer = csv.writer(out, lineterminator="\n")
    if isinstance(report, GraphReport):
        writer.writerow(["id", "kind", "label", "children"])
        for n in report.nodes:
            writer.writerow([n.id, n.kind, n.label or "", " ".join(map(str, n.children or []))])
        return
    if getattr(report, "command", None) == "diff":
        writer.writerow(["variable", "order", "formula"])
        for d in report.derivatives:
            writer.writerow([d.variable, d.order, d.formula])
        return
    if report.command == "eval":
        writer.writerow(["index", "value"])
        for index in np.ndindex(*report.f.shape):
            writer.writerow([_index_text(index), repr(float(report.f.array[index]))])
        return
    writer.writerow(["result", "index", "autograd", "symbolic", "abs_error", "status"])
    for v in report.variables:
        for index in np.ndindex(*v.gradient.shape):
            ref = repr(float(v.symbolic.array[index])) if v.symbolic is not None else ""
            got = float(v.gradient.array[index])
            err = repr(abs(got - float(v.symbolic.array[index]))) if v.symbolic is not None else ""
            writer.writerow([v.name, _index_text(index), repr(got), ref, err, v.status])


def render_plain(report: GradReport, out: TextIO) -> None:
    """One line per result (eval: f itself): its numbers, space-separated."""
    results = [report.f] if report.command == "eval" else [v.gradient for v in report.variables]
    for t in results:
        out.write(" ".join(number(x, t.dtype) for x in t.flat()) + "\n")


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


def _headline(expression: str, limit: int = 300) -> str:
    """The expression over a table: a 100 KB one is shortened (machine formats keep it all)."""
    if len(expression) <= limit:
        return expression
    return f"{expression[:limit]} … ({len(expression)} characters in all)"


def render_table(report: GradReport, out: TextIO) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    console = _console(out)
    command = "grad" if report.command == "order" else report.command
    header = Text()
    header.append(f"gradcli {command}  ", style="bold")
    header.append(_headline(report.parsed))
    console.print(header)
    f_line = f"f = {tensor_text(report.f)}"
    if report.reduction and report.differentiated is not None:
        f_line += (f"   (shape {_shape(report.f)}; {report.reduction} = "
                   f"{number(report.differentiated.data, report.differentiated.dtype)} was differentiated)")
    elif report.f.shape:
        f_line += f"   (shape {_shape(report.f)})"
    console.print(f_line)
    console.print(Text(f"{report.dtype} on {report.device} ({report.device_note}); {report.call}", style="dim"))
    in_table = report.command not in ("eval", "hessian", "order")  # these have no row per variable
    for name, t in report.values.items():
        if name not in report.wrt and report.command != "eval":
            console.print(Text(f"{name} = {tensor_text(t)}  (constant)", style="dim"))
        elif not in_table:
            console.print(f"{name} = {tensor_text(t)}")
    if report.vector is not None:
        console.print(f"v = {tensor_text(report.vector)}")

    if report.command == "eval":
        for line in notes(report):
            console.print(Text("note: " + line, style="yellow"))
        return

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
    if in_table:
        table.add_column("value")
    table.add_column("autograd")
    if report.checked:
        table.add_column("symbolic derivative", min_width=14)
        table.add_column("its value")
        table.add_column("error", justify="right")
    table.add_column("check", min_width=7)
    for v in report.variables:
        mark, style = _MARKS.get(v.status, (v.status, ""))
        big = v.gradient.numel > 12
        shown = f"shape {_shape(v.gradient)}\n" + tensor_text(v.gradient) if big else tensor_text(v.gradient, rows=True)
        summarised = summarised or "…" in shown
        row = [v.label or v.name] + ([tensor_text(v.value, rows=True) if v.value else ""] if in_table else []) + [shown]
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
    accumulated = report.extra.get("accumulate")
    if accumulated:
        console.print(Text(f"backward called {accumulated['calls']} times without zeroing", style="bold"))
        at = Table(box=box.SIMPLE)
        at.add_column("call", justify="right")
        for n in report.wrt:
            at.add_column(f"{n}.grad", justify="right")
        history = accumulated["grad_after_each_call"]
        for i in range(accumulated["calls"]):
            at.add_row(str(i + 1), *(tensor_text(TensorData.from_dict(history[n][i])) for n in report.wrt))
        at.add_row("zeroed", *(tensor_text(TensorData.from_dict(accumulated["after_zero_grad"][n]))
                               for n in report.wrt),
                   style="green")
        console.print(at)
    for line in notes(report):
        console.print(Text("note: " + line, style="yellow"))
    if report.explain:
        console.print(Text("how this was computed", style="bold"))
        for topic, text in report.explain:
            line = Text(f"  {topic:<9} ", style="bold")
            line.append(text)
            console.print(line)
    if report.checked:
        confirmed = [v for v in report.variables if v.status == "ok"]
        if report.status != "ok":
            summary = Text("the cross-check failed", style="bold red")
        elif len(confirmed) == len(report.variables):
            summary = Text("autograd agrees with sympy", style="green")
        elif all(v.status in ("ok", "undefined") for v in report.variables):
            # "undefined" is a kink: every element where the derivative exists was compared
            summary = Text("autograd agrees with sympy wherever the derivative exists; at a kink its value is "
                           "torch's convention (see the notes)", style="yellow")
        elif confirmed:
            summary = Text(f"autograd agrees with sympy for {', '.join(v.label or v.name for v in confirmed)}; "
                           "the rest could not be compared (see the notes)", style="yellow")
        else:
            summary = Text("nothing could be compared: the result is autograd's alone (see the notes)",
                           style="yellow")
        summary.append(f"  (reference in float64; rtol {report.rtol:g}, atol {report.atol:g})", style="dim")
        console.print(summary)


# --------------------------------------------------------------------------- graph and diff

def render_graph_tree(report: GraphReport, out: TextIO) -> None:
    from rich.text import Text
    from rich.tree import Tree

    console = _console(out)
    header = Text("gradcli graph  ", style="bold")
    header.append(_headline(report.parsed))
    console.print(header)
    console.print(f"f = {tensor_text(report.f)}   ({report.dtype} on {report.device}; after f.backward())")
    by_id = {n.id: n for n in report.nodes}

    def describe(node) -> Text:
        text = Text(node.kind, style="bold cyan" if node.leaf is None else "bold green")
        if node.leaf is not None:
            leaf = node.leaf
            grad = leaf["grad"]
            grad_text = tensor_text(TensorData(grad, leaf["shape"], report.dtype)) if grad is not None else "None"
            text.append(f"  {leaf['name']}: shape {leaf['shape']}, is_leaf={leaf['is_leaf']}, "
                        f"requires_grad={leaf['requires_grad']}, grad={grad_text}")
        elif node.label:
            text.append(f"  {node.label}", style="dim")
        return text

    if report.root is None:
        console.print(Text("f has no grad_fn: it does not depend on a differentiated variable", style="yellow"))
    else:
        root = by_id[report.root]
        tree = Tree(Text("f.grad_fn = ").append(describe(root)))
        stack = [(root, tree, 0)]
        shown: set[int] = set()
        # Iterative, and each shared node expanded once, so a deep or diamond graph stays small.
        while stack:
            node, branch, _ = stack.pop()
            if node.id in shown:
                continue
            shown.add(node.id)
            for child_id in reversed(node.children or []):
                child = by_id[child_id]
                label = describe(child)
                if child.id in shown and child.children:
                    label.append("  (shown above)", style="dim")
                sub = branch.add(label)
                stack.append((child, sub, 0))
        console.print(tree)
    for item in report.intermediates:
        console.print(Text(f"  {item['expression']}: is_leaf={item['is_leaf']}, requires_grad={item['requires_grad']}, "
                           f"grad=None, grad_fn={item['grad_fn']}", style="dim"))
    for n in report.values:
        if n not in report.wrt:
            console.print(Text(f"{n} is a constant: requires_grad=False, not in the graph", style="dim"))
    for line in report.warnings:
        console.print(Text("note: " + line, style="yellow"))


def render_graph_dot(report: GraphReport, out: TextIO) -> None:
    """Graphviz text for `| dot -Tpng`."""
    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    out.write("digraph autograd {\n  rankdir=BT;\n  node [fontname=\"Helvetica\"];\n")
    for n in report.nodes:
        label = n.kind if not n.label else f"{n.kind}\n{n.label}"
        shape = "box" if n.leaf is None else "ellipse"
        out.write(f"  n{n.id} [label={quote(label)}, shape={shape}];\n")
    for n in report.nodes:
        for c in n.children or []:
            out.write(f"  n{c} -> n{n.id};\n")
    out.write("}\n")


def render_graph_plain(report: GraphReport, out: TextIO) -> None:
    """One node a line: id, kind, label, children."""
    for n in report.nodes:
        children = ",".join(map(str, n.children or [])) or "-"
        out.write(f"{n.id}\t{n.kind}\t{n.label or ''}\t{children}\n")


def render_diff(report, fmt: str, out: TextIO) -> None:
    if fmt in ("json", "ndjson", "csv"):
        render(report, fmt, out, sys.stderr)
        return
    if fmt in ("plain", "latex"):
        for d in report.derivatives:
            out.write((d.latex if fmt == "latex" else d.formula) + "\n")
        return
    from rich.text import Text

    console = _console(out, soft_wrap=True)
    console.print(Text("f = ", style="bold").append(_headline(report.parsed)))
    for d in report.derivatives:
        order = "" if d.order == 1 else str(d.order)
        head = f"d{order}f/d{d.variable}{'^' + order if order else ''} ="
        console.print(Text(head, style="bold"))
        console.print(d.pretty)
        console.print()
    for line in report.notes:
        console.print(Text("note: " + line, style="yellow"))


def render(report, fmt: str, out: TextIO, err: TextIO, quiet: bool = False) -> None:
    """Write the report in `fmt`; notes go to `err` (or, for the table, under it) unless quiet."""
    if quiet and hasattr(report, "warnings"):
        report.warnings = []
    if fmt in ("json", "ndjson"):
        render_json(report, out, compact=fmt == "ndjson")
        return
    if fmt == "csv":
        render_csv(report, out)
        for line in ([] if quiet else getattr(report, "warnings", None) or getattr(report, "notes", [])):
            err.write(f"note: {line}\n")
        return
    if getattr(report, "command", None) == "diff":
        if quiet:
            report.notes = []
        render_diff(report, fmt, out)
        return
    if isinstance(report, GraphReport):
        if fmt == "dot":
            render_graph_dot(report, out)
        elif fmt == "plain":
            render_graph_plain(report, out)
        else:
            render_graph_tree(report, out)
        return
    if fmt == "plain":
        render_plain(report, out)
        for line in [] if quiet else notes(report):
            err.write(f"note: {line}\n")
        for topic, text in report.explain:
            err.write(f"explain: {topic}: {text}\n")
    else:
        render_table(report, out)
