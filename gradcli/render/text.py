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
    table.add_column("", style="bold", overflow="fold")
    for c in v.columns or []:
        table.add_column(c, justify="right", overflow="fold")
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

    # overflow="fold" everywhere: a narrow terminal wraps a number, never cuts it to "3.99…"
    table = Table(box=box.ROUNDED, show_lines=len(report.variables) > 1)
    table.add_column(_FIRST_COLUMN.get(report.command, ""), style="bold", overflow="fold")
    if in_table:
        table.add_column("value", overflow="fold")
    table.add_column("autograd", overflow="fold")
    if report.checked:
        table.add_column("symbolic derivative", min_width=14, overflow="fold")
        table.add_column("its value", overflow="fold")
        table.add_column("error", justify="right", overflow="fold")
    table.add_column("check", min_width=7, overflow="fold")
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
        mt.add_column("method", overflow="fold")
        mt.add_column("torch call", overflow="fold")
        mt.add_column("same result", overflow="fold")
        for m in report.methods:
            mt.add_row(m.method, m.call, Text("✓ yes", style="green") if m.agrees else Text("✗ no", style="bold red"))
        console.print(mt)
    accumulated = report.extra.get("accumulate")
    if accumulated:
        console.print(Text(f"backward called {accumulated['calls']} times without zeroing", style="bold"))
        at = Table(box=box.SIMPLE)
        at.add_column("call", justify="right", overflow="fold")
        for n in report.wrt:
            at.add_column(f"{n}.grad", justify="right", overflow="fold")
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
    if getattr(report, "command", None) == "minimize":
        render_minimize(report, fmt, out, err, quiet)
        return
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


# --------------------------------------------------------------------------- gradcli minimize

def render_minimize(report, fmt: str, out: TextIO, err: TextIO, quiet: bool = False) -> None:
    """A descent: the table, the JSON document, a CSV row per parameter element, or the end values."""
    if quiet:
        report.warnings = []
    if fmt in ("json", "ndjson"):
        render_json(report, out, compact=fmt == "ndjson")
        return
    if fmt == "table":
        render_minimize_table(report, out, quiet=quiet)
        return
    if fmt == "csv":
        import csv

        import numpy as np

        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["parameter", "index", "start", "end", "gradient_start", "gradient_end"])
        for n in report.wrt:
            start, end = report.start.parameters[n], report.end.parameters[n]
            g0, g1 = report.start.gradient[n], report.end.gradient[n]
            for index in np.ndindex(*start.shape):
                writer.writerow([n, _index_text(index)] + [repr(float(t.array[index])) for t in (start, end, g0, g1)])
    else:  # plain: the parameters where the descent ended, one line each, for $(...)
        for n in report.wrt:
            t = report.end.parameters[n]
            out.write(" ".join(number(x, t.dtype) for x in t.flat()) + "\n")
    if not quiet:
        for line in minimize_notes(report):
            err.write(line + "\n")


def minimize_notes(report) -> list[str]:
    """What stderr says beside a machine format: the notes, and why a run failed."""
    lines = [f"note: {w}" for w in report.warnings]
    if report.stopped == "diverged":
        lines.append(f"note: diverged: {report.stop_text}")
        if report.hint:
            lines.append(f"hint: {report.hint}")
    for where, results in report.checks.items():
        for v in results:
            if v.status in ("mismatch", "domain"):
                lines.append(f"note: the gradient of {v.name} at the {where} does not agree with sympy's: {v.note}")
    return lines


def render_minimize_table(report, out: TextIO, quiet: bool = False) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    console = _console(out)
    header = Text("gradcli minimize  ", style="bold")
    header.append(_headline(report.parsed))
    console.print(header)
    console.print(Text(f"{report.call}; {report.dtype} on {report.device} ({report.device_note})", style="dim"))
    for name, t in report.constants.items():
        size = f", {t.numel} values" if t.numel > 1 else ""
        console.print(Text(f"{name} = {tensor_text(t)}  (constant{size})", style="dim"))

    start, end = report.start, report.end
    table = Table(box=box.ROUNDED)
    table.add_column("", style="bold", overflow="fold")
    table.add_column(f"start (step {start.step})", justify="right", overflow="fold")
    table.add_column(f"end (step {end.step})", justify="right", overflow="fold")
    table.add_column("gradient at start", justify="right", overflow="fold")
    table.add_column("gradient at end", justify="right", overflow="fold")
    for n in report.wrt:
        table.add_row(n, *(tensor_text(t, rows=True) for t in (start.parameters[n], end.parameters[n],
                                                                start.gradient[n], end.gradient[n])))
    table.add_section()
    table.add_row("loss", number(start.loss, report.dtype), number(end.loss, report.dtype), "", "")
    table.add_row("gradient norm", number(start.gradient_norm, report.dtype), number(end.gradient_norm, report.dtype),
                  "", "")
    console.print(table)
    steps = f"{report.steps_taken} of {report.steps_requested} step{'s' if report.steps_requested != 1 else ''}"
    if report.evaluations != report.steps_taken + 1:
        steps += f", {report.evaluations} evaluations of the loss"
    if report.stopped == "diverged":
        console.print(Text(f"diverged: {report.stop_text}", style="bold red"))
        if report.hint:
            console.print(Text(f"hint: {report.hint}", style="yellow"))
        console.print(Text(steps, style="dim"))
    else:
        console.print(f"stopped: {report.stop_text} ({steps})")
    if report.trace:
        where = "standard output" if report.trace["path"] == "-" else report.trace["path"]
        console.print(Text(f"trace: one {report.trace['format']} record per step in {where}", style="dim"))
    if report.seed is not None:
        console.print(Text(f"random values drawn with --seed {report.seed}", style="dim"))
    if not quiet:
        for w in report.warnings:
            console.print(Text("note: " + w, style="yellow"))
    if report.checked:
        points = " and ".join(f"step {(start if w == 'start' else end).step}" for w in report.checks)
        results = [v for vs in report.checks.values() for v in vs]
        formulas = "; ".join(f"d/d{v.name}: {v.formula}" for v in report.checks.get("start", []))
        if report.end.step == report.start.step:
            points = f"step {start.step}"
        tolerances = f"  (reference in float64; rtol {report.rtol:g}, atol {report.atol:g})"
        bad = [v for v in results if v.status in ("mismatch", "domain")]
        if bad:
            # dict.fromkeys: the start and the end can be the same step (a run that diverged at once)
            summary = Text(f"the gradient at {points} does not agree with sympy's: "
                           + "; ".join(dict.fromkeys(f"{v.name}: {v.note}" for v in bad)), style="bold red")
        elif all(v.status == "ok" for v in results):
            summary = Text(f"autograd's gradient at {points} agrees with sympy's", style="green")
        else:
            notes_ = "; ".join(dict.fromkeys(f"{v.name}: {v.note}" for v in results if v.status != "ok" and v.note))
            summary = Text(f"the gradient at {points} could not be fully compared with sympy's ({notes_})",
                           style="yellow")
        summary.append(tolerances, style="dim")
        console.print(summary)
        if formulas and len(formulas) <= 160:  # a long one is in --json
            console.print(Text(f"symbolic gradient: {formulas}", style="dim"))
    else:
        console.print(Text("not checked against sympy (--no-check)", style="dim"))


def wants_progress(fmt: str, trace_to_stdout: bool, err: TextIO) -> bool:
    """A progress bar is for a person: a table output, a terminal on stderr, stdout not the trace."""
    import os

    return (fmt == "table" and not trace_to_stdout and hasattr(err, "isatty") and err.isatty()
            and os.environ.get("TERM") != "dumb")


class LossProgress:
    """A rich progress bar with the current loss, on stderr, for runs long enough to need one.

    Called after every step, so it costs one clock read per step: nothing is drawn before the
    run has lasted SHOW_AFTER seconds, and the bar is redrawn at most ten times a second. It
    disappears when the run ends (the table follows).
    """

    SHOW_AFTER = 0.5

    def __init__(self, total_steps: int, err: TextIO, dtype: str = "float64"):
        import time

        self._clock = time.monotonic
        self._started = self._clock()
        self._next = self._started + self.SHOW_AFTER
        self._total, self._err, self._dtype = total_steps, err, dtype
        self._bar = None
        self._task = None

    def __call__(self, step: int, loss: float) -> None:
        now = self._clock()
        if now < self._next:
            return
        self._next = now + 0.1
        if self._bar is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn("minimizing"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(),
                                 console=Console(file=self._err), transient=True)
            self._task = self._bar.add_task("minimize", total=self._total, completed=step,
                                            loss=number(loss, self._dtype))
            self._bar.start()
            return
        self._bar.update(self._task, completed=step, loss=number(loss, self._dtype))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
