"""Reports as rich tables, for people: grad (and jacobian, hessian...), the autograd graph as a tree,
minimize, and diff's pretty formulas.

Rich is imported inside the functions: importing this module costs nothing, and machine
formats never load rich. A renderer reads a report and never changes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TextIO

from gradcli.core.check import Verdict, fails
from gradcli.render.common import notes, number, routes_text, shape_text, tensor_text
from gradcli.report import (
    GradReport,
    GraphReport,
    MinimizeReport,
    TensorData,
    VariableResult,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from gradcli.report import DiffReport

# The mark before each verdict word in a table's check column, and its colour: the word is the
# verdict itself, as JSON, CSV, --points and plot print it.
MARKS: dict[Verdict, tuple[str, str]] = {
    Verdict.AGREE: ("✓", "green"),
    Verdict.DISAGREE: ("✗", "bold red"),
    Verdict.NOT_FINITE: ("✗", "bold red"),
    Verdict.KINK: ("~", "yellow"),
    Verdict.UNAVAILABLE: ("?", "yellow"),
    Verdict.SKIPPED: ("–", "dim"),
    Verdict.SYMPY_ERROR: ("!", "yellow"),
}


def verdict_cell(verdict: Verdict) -> tuple[str, str]:
    """The check column's text ("✓ agree") and style for a verdict."""
    mark, style = MARKS[Verdict(verdict)]
    return f"{mark} {Verdict(verdict).value}", style


def console(out: TextIO, soft_wrap: bool = False) -> Console:
    """A rich console: the terminal's width, or 120 columns when the output is a file or pipe
    (rich would assume 80 and squeeze the table), unless COLUMNS says otherwise."""
    import os

    from rich.console import Console

    is_terminal = hasattr(out, "isatty") and out.isatty()
    width = None if is_terminal or os.environ.get("COLUMNS") else 120
    # markup=False: "[0,1]" in a value or "x[0]" in a formula is text, never a rich style tag.
    return Console(file=out, highlight=False, markup=False, soft_wrap=soft_wrap, width=width)


def headline(expression: str, limit: int = 300) -> str:
    """The expression over a table: a 100 KB one is shortened (machine formats keep it all)."""
    if len(expression) <= limit:
        return expression
    return f"{expression[:limit]} … ({len(expression)} characters in all)"


_FIRST_COLUMN = {"grad": "wrt", "jacobian": "wrt", "vjp": "wrt", "jvp": "wrt", "hessian": "", "order": "order"}
_MATRIX_ROWS, _MATRIX_COLUMNS = 16, 10  # a labelled matrix larger than this is summarised


def _matrix_table(v: VariableResult) -> Table:
    """A matrix with its row (outputs) and column (inputs) labels."""
    from rich import box
    from rich.table import Table

    data = v.gradient.data
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("", style="bold", overflow="fold")
    for c in v.columns or []:
        table.add_column(c, justify="right", overflow="fold")
    # strict=False: no row labels (rows None) draws no rows, as before
    for label, row in zip(v.rows or [], data, strict=False):
        table.add_row(label, *(number(x, v.gradient.dtype) for x in row))
    return table


def render_table(report: GradReport, out: TextIO, quiet: bool = False) -> None:
    """grad, jacobian, hessian, vjp, jvp, --order and eval: the numbers, each result's verdict, the notes."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    con = console(out)
    command = "grad" if report.command == "order" else report.command
    header = Text()
    header.append(f"gradcli {command}  ", style="bold")
    header.append(headline(report.parsed))
    con.print(header)
    f_line = f"f = {tensor_text(report.f)}"
    if report.reduction and report.differentiated is not None:
        f_line += (f"   (shape {shape_text(report.f)}; {report.reduction} = "
                   f"{number(report.differentiated.data, report.differentiated.dtype)} was differentiated)")
    elif report.f.shape:
        f_line += f"   (shape {shape_text(report.f)})"
    con.print(f_line)
    con.print(Text(f"{report.dtype} on {report.device} ({report.device_note}); {report.call}", style="dim"))
    in_table = report.command not in ("eval", "hessian", "order")  # these have no row per variable
    for name, t in report.values.items():
        if name not in report.wrt and report.command != "eval":
            con.print(Text(f"{name} = {tensor_text(t)}  (constant)", style="dim"))
        elif not in_table:
            con.print(f"{name} = {tensor_text(t)}")
    if report.vector is not None:
        con.print(f"v = {tensor_text(report.vector)}")

    if report.command == "eval":
        for line in notes(report, quiet):
            con.print(Text("note: " + line, style="yellow"))
        return

    summarised = False
    for v in report.variables:
        if v.rows and v.columns and len(v.gradient.shape) == 2:
            if len(v.rows) <= _MATRIX_ROWS and len(v.columns) <= _MATRIX_COLUMNS:
                title = v.label or (f"Jacobian df/d{v.name}" if report.command == "jacobian" else v.name)
                con.print(Text(f"{title} by autograd" + (" (rows: outputs, columns: inputs)"
                                                             if report.command == "jacobian" else ""), style="bold"))
                con.print(_matrix_table(v))
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
        mark, style = verdict_cell(v.status)
        big = v.gradient.numel > 12
        shown = (f"shape {shape_text(v.gradient)}\n" + tensor_text(v.gradient) if big
                 else tensor_text(v.gradient, rows=True))
        summarised = summarised or "…" in shown
        row: list[Any] = [v.label or v.name] + ([tensor_text(v.value, rows=True) if v.value else ""]
                                                if in_table else []) + [shown]
        if report.checked:
            ref = "—"
            if v.symbolic:
                ref = (f"shape {shape_text(v.symbolic)}\n" + tensor_text(v.symbolic)) if v.symbolic.numel > 12 \
                    else tensor_text(v.symbolic, rows=True)
            row += [
                v.formula or "",
                ref,
                f"{v.max_abs_error:.2g}" if v.max_abs_error is not None else "—",
            ]
        row.append(Text(mark, style=style))
        table.add_row(*row)
    con.print(table)
    if summarised:
        con.print(Text("large tensors are summarised: --json prints every element", style="dim"))
    if report.seed is not None:
        con.print(Text(f"random values drawn with --seed {report.seed}", style="dim"))
    if report.methods:
        mt = Table(box=box.SIMPLE, title="methods", title_justify="left")
        mt.add_column("method", overflow="fold")
        mt.add_column("torch call", overflow="fold")
        mt.add_column("same result", overflow="fold")
        for m in report.methods:
            mt.add_row(m.method, m.call, Text("✓ yes", style="green") if m.agrees else Text("✗ no", style="bold red"))
        con.print(mt)
    accumulated = report.extra.get("accumulate")
    if accumulated:
        con.print(Text(f"backward called {accumulated['calls']} times without zeroing", style="bold"))
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
        con.print(at)
    for line in notes(report, quiet):
        con.print(Text("note: " + line, style="yellow"))
    if report.explain:
        con.print(Text("how this was computed", style="bold"))
        for topic, text in report.explain:
            explained = Text(f"  {topic:<9} ", style="bold")
            explained.append(text)
            con.print(explained)
    if report.checked:
        confirmed = [v for v in report.variables if v.status is Verdict.AGREE]
        routes = routes_text(report.variables)
        sympy_wrong = [v.label or v.name for v in report.variables if v.status is Verdict.SYMPY_ERROR]
        if report.status == "failed":
            summary = Text("the cross-check failed", style="bold red")
        elif len(confirmed) == len(report.variables):
            summary = Text(f"autograd agrees with {routes}", style="green")
        elif sympy_wrong and all(v.status in (Verdict.AGREE, Verdict.SYMPY_ERROR) for v in report.variables):
            summary = Text(f"autograd agrees with finite differences; sympy's formula is wrong for "
                           f"{', '.join(sympy_wrong)} (see the notes)", style="yellow")
        elif all(v.status in (Verdict.AGREE, Verdict.KINK) for v in report.variables):
            # at a kink, every element where the derivative exists was compared
            summary = Text(f"autograd agrees with {routes} wherever the derivative exists; at a kink its value is "
                           "torch's convention (see the notes)", style="yellow")
        elif confirmed:
            summary = Text(f"autograd agrees with {routes} for {', '.join(v.label or v.name for v in confirmed)}; "
                           "the rest could not be checked (see the notes)", style="yellow")
        else:
            summary = Text("nothing could be compared: the result is autograd's alone (see the notes)",
                           style="yellow")
        summary.append(f"  (reference in float64; rtol {report.rtol:g}, atol {report.atol:g})", style="dim")
        con.print(summary)


# --------------------------------------------------------------------------- graph and diff

def render_graph_tree(report: GraphReport, out: TextIO, quiet: bool = False) -> None:
    from rich.text import Text
    from rich.tree import Tree

    con = console(out)
    header = Text("gradcli graph  ", style="bold")
    header.append(headline(report.parsed))
    con.print(header)
    con.print(f"f = {tensor_text(report.f)}   ({report.dtype} on {report.device}; after f.backward())")
    by_id = {n.id: n for n in report.nodes}

    def describe(node: Any) -> Text:  # an autodiff.GraphNode (GraphReport.nodes is list[Any])
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
        con.print(Text("f has no grad_fn: it does not depend on a differentiated variable", style="yellow"))
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
        con.print(tree)
    for item in report.intermediates:
        con.print(Text(f"  {item['expression']}: is_leaf={item['is_leaf']}, requires_grad={item['requires_grad']}, "
                           f"grad=None, grad_fn={item['grad_fn']}", style="dim"))
    for n in report.values:
        if n not in report.wrt:
            con.print(Text(f"{n} is a constant: requires_grad=False, not in the graph", style="dim"))
    for line in [] if quiet else report.warnings:
        con.print(Text("note: " + line, style="yellow"))


def render_diff_pretty(report: DiffReport, out: TextIO, quiet: bool = False) -> None:
    """gradcli diff's formulas as sympy pretty-prints them, with the notes under them."""
    from rich.text import Text

    con = console(out, soft_wrap=True)
    con.print(Text("f = ", style="bold").append(headline(report.parsed)))
    for d in report.derivatives:
        order = "" if d.order == 1 else str(d.order)
        head = f"d{order}f/d{d.variable}{'^' + order if order else ''} ="
        con.print(Text(head, style="bold"))
        con.print(d.pretty)
        con.print()
    for line in [] if quiet else report.warnings:
        con.print(Text("note: " + line, style="yellow"))


# --------------------------------------------------------------------------- gradcli minimize

def render_minimize_table(report: MinimizeReport, out: TextIO, quiet: bool = False) -> None:
    """Where the descent started and ended, why it stopped, and the verdicts at both ends."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    con = console(out)
    header = Text("gradcli minimize  ", style="bold")
    header.append(headline(report.parsed))
    con.print(header)
    con.print(Text(f"{report.call}; {report.dtype} on {report.device} ({report.device_note})", style="dim"))
    for name, t in report.constants.items():
        size = f", {t.numel} values" if t.numel > 1 else ""
        con.print(Text(f"{name} = {tensor_text(t)}  (constant{size})", style="dim"))

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
    con.print(table)
    steps = f"{report.steps_taken} of {report.steps_requested} step{'s' if report.steps_requested != 1 else ''}"
    if report.evaluations != report.steps_taken + 1:
        steps += f", {report.evaluations} evaluations of the loss"
    if report.stopped == "diverged":
        con.print(Text(f"diverged: {report.stop_text}", style="bold red"))
        if report.hint:
            con.print(Text(f"hint: {report.hint}", style="yellow"))
        con.print(Text(steps, style="dim"))
    else:
        con.print(f"stopped: {report.stop_text} ({steps})")
    if report.trace:
        where = "standard output" if report.trace["path"] == "-" else report.trace["path"]
        con.print(Text(f"trace: one {report.trace['format']} record per step in {where}", style="dim"))
    if report.seed is not None:
        con.print(Text(f"random values drawn with --seed {report.seed}", style="dim"))
    if not quiet:
        for w in report.warnings:
            con.print(Text("note: " + w, style="yellow"))
    if report.checked:
        points = " and ".join(f"step {(start if w == 'start' else end).step}" for w in report.checks)
        results = [v for vs in report.checks.values() for v in vs]
        formulas = "; ".join(f"d/d{v.name}: {v.formula}" for v in report.checks.get("start", []))
        if report.end.step == report.start.step:
            points = f"step {start.step}"
        tolerances = f"  (reference in float64; rtol {report.rtol:g}, atol {report.atol:g})"
        bad = [v for v in results if fails(v.status)]
        if bad:
            # dict.fromkeys: the start and the end can be the same step (a run that diverged at once)
            summary = Text(f"the gradient at {points} does not agree with sympy's: "
                           + "; ".join(dict.fromkeys(f"{v.name}: {v.status.value}: {v.note}" for v in bad)),
                           style="bold red")
        elif all(v.status is Verdict.AGREE for v in results):
            summary = Text(f"autograd's gradient at {points} agrees with sympy's", style="green")
        else:
            notes_ = "; ".join(dict.fromkeys(f"{v.name}: {v.status.value}: {v.note}" for v in results
                                             if v.status is not Verdict.AGREE and v.note))
            summary = Text(f"the gradient at {points} could not be fully compared with sympy's ({notes_})",
                           style="yellow")
        summary.append(tolerances, style="dim")
        con.print(summary)
        if formulas and len(formulas) <= 160:  # a long one is in --json
            con.print(Text(f"symbolic gradient: {formulas}", style="dim"))
    else:
        con.print(Text("not checked against sympy (--no-check)", style="dim"))
