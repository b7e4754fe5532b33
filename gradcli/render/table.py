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
)

if TYPE_CHECKING:
    from rich.console import Console

    from gradcli.render.layout import Column
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


def _small(rows: list[str] | None, columns: list[str] | None) -> bool:
    return bool(rows and columns) and len(rows or []) <= _MATRIX_ROWS and len(columns or []) <= _MATRIX_COLUMNS


def _print_matrix(con: Console, title: str, rows: list[str], columns: list[str], entries: list[list[str]],
                  prose: bool = False) -> None:
    """A matrix with its row (outputs) and column (inputs) labels; on a terminal too narrow for
    it, a block per row with a `column: entry` line each."""
    from rich.text import Text

    from gradcli.render.layout import Column, fit_table, vertical, wrap

    con.print(Text(title, style="bold"))
    grid = [Column("", list(rows), style="bold")] + [
        Column(c, [row[j] for row in entries], breakable=prose, justify="left" if prose else "right")
        for j, c in enumerate(columns)]
    table = fit_table(grid, con.width, box_name="SIMPLE_HEAD")
    if table is not None:
        con.print(table)
        return
    if prose:  # formulas: a `column: formula` line each, under the row's label
        for line in vertical([(r, [(c, e, "") for c, e in zip(columns, row, strict=True)])
                              for r, row in zip(rows, entries, strict=True)], con.width):
            con.print(line)
        return
    # numbers: the row's label, then its `column=entry` pairs wrapped between pairs
    for r, row in zip(rows, entries, strict=True):
        pairs = " ".join(f"{c}={e}".replace(" ", "\u00a0") for c, e in zip(columns, row, strict=True))
        con.print(Text(r, style="bold"))
        con.print(wrap("  " + pairs, con.width).replace("\u00a0", " "))  # a pair is never split


def _print_fitted(con: Console, columns: list[Column], first: str, title: str | None = None) -> None:
    """A small table (box SIMPLE) that fits the terminal, or a block per row (named by its first
    cell, `first` being that column's name) where it cannot."""
    from rich.text import Text

    from gradcli.render.layout import fit_table, vertical

    table = fit_table(columns, con.width, box_name="SIMPLE", title=title)
    if table is not None:
        con.print(table)
        return
    if title:
        con.print(Text(title, style="bold"))
    rows = len(columns[0].cells)
    con.print(*vertical([(f"{first} {columns[0].cells[r]}",
                          [(c.header, c.cells[r], c.styles[r] if r < len(c.styles) else "") for c in columns[1:]])
                         for r in range(rows)], con.width), sep="\n")


def _tensor_cell(t: TensorData) -> str:
    return f"shape {shape_text(t)}\n" + tensor_text(t) if t.numel > 12 else tensor_text(t, rows=True)


def render_table(report: GradReport, out: TextIO, quiet: bool = False) -> None:
    """grad, jacobian, hessian, vjp, jvp, --order and eval: the numbers, each result's verdict, the notes.

    The table fits the terminal (render/layout.py): its cells wrap between elements, never
    inside a number, and a terminal too narrow for it gets a block per result instead. A
    matrix shown labelled above the table is not repeated in it.
    """
    from rich.text import Text

    from gradcli.render.layout import Column, fit_table, vertical

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
    shown_above: set[str] = set()  # results whose autograd matrix is printed above the table
    formulas_above: set[str] = set()  # and whose formulas are
    matrix = report.matrix
    if matrix is not None and _small(matrix.rows, matrix.columns):
        over = ", ".join(report.wrt)
        _print_matrix(con, f"Jacobian of f with respect to {over}, by autograd (rows: outputs, columns: "
                      "variables)", matrix.rows, matrix.columns,
                      [[number(x, matrix.autograd.dtype) for x in row] for row in matrix.autograd.data])
        shown_above.update(v.name for v in report.variables)
        if matrix.formulas is not None and matrix.formula_columns is not None:
            entry_by_entry = matrix.formula_columns == matrix.columns  # scalar variables only
            _print_matrix(con, "its symbolic derivatives (sympy)" + (", entry by entry" if entry_by_entry else
                                                                       ": a row of the Jacobian per variable"),
                          matrix.rows, matrix.formula_columns, matrix.formulas, prose=True)
            formulas_above.update(v.name for v in report.variables)
    elif matrix is not None:
        summarised = True
    else:
        for v in report.variables:
            if not (v.rows and v.columns and len(v.gradient.shape) == 2):
                continue
            if not _small(v.rows, v.columns):
                summarised = True
                continue
            if report.command == "hessian":
                title = f"Hessian of f over {', '.join(report.wrt)}, by autograd"
            elif report.command == "jacobian":
                title = f"Jacobian of f with respect to {v.name}, by autograd (rows: outputs, columns: inputs)"
            else:
                title = f"{v.label or v.name}, by autograd"
            _print_matrix(con, title, v.rows or [], v.columns or [],
                          [[number(x, v.gradient.dtype) for x in row] for row in v.gradient.data])
            shown_above.add(v.name)

    first = _FIRST_COLUMN.get(report.command, "")
    if report.command == "hessian":
        first = "over " + ", ".join(report.wrt)
    label_column = Column(first, style="bold", breakable=True)  # a label is words (order 2 (d2f/dx^2))
    value_column = Column("value")
    autograd_column = Column("autograd")
    formula_column = Column("symbolic derivative", breakable=True)
    reference_column = Column("its value")
    error_column = Column("error", justify="right", whole=True)
    check_column = Column("check", whole=True)
    blocks: list[tuple[str, list[tuple[str, str, str]]]] = []
    for v in report.variables:
        mark, style = verdict_cell(v.status)
        shown = "in the matrix above" if v.name in shown_above else _tensor_cell(v.gradient)
        summarised = summarised or "…" in shown
        label = v.label or v.name
        items: list[tuple[str, str, str]] = []
        label_column.cells.append(label)
        if in_table:
            value_column.cells.append(tensor_text(v.value, rows=True) if v.value else "")
            items.append(("value", value_column.cells[-1], ""))
        autograd_column.cells.append(shown)
        if v.name not in shown_above:
            items.append(("autograd", shown, ""))
        if report.checked:
            formula = "in the matrix above" if v.name in formulas_above else v.formula or ""
            reference = _tensor_cell(v.symbolic) if v.symbolic else "—"
            summarised = summarised or "…" in reference
            error = f"{v.max_abs_error:.2g}" if v.max_abs_error is not None else "—"
            formula_column.cells.append(formula)
            reference_column.cells.append(reference)
            error_column.cells.append(error)
            if v.name not in formulas_above:
                items.append(("symbolic derivative", formula, ""))
            items += [("its value", reference, ""), ("error", error, "")]
        check_column.cells.append(mark)
        check_column.styles.append(style)
        items.append(("check", mark, style))
        blocks.append((f"{label} {first}" if report.command == "hessian" else label, items))
    # A column whose every cell points above is left out: the matrix is printed once.
    columns = [label_column] + ([value_column] if in_table else [])
    if len(shown_above) < len(report.variables):
        columns.append(autograd_column)
    if report.checked:
        if len(formulas_above) < len(report.variables):
            columns.append(formula_column)
        columns += [reference_column, error_column]
    columns.append(check_column)
    table = fit_table(columns, con.width, show_lines=len(report.variables) > 1)
    if table is not None:
        con.print(table)
    else:
        for line in vertical(blocks, con.width):
            con.print(line)
    if summarised:
        con.print(Text("large tensors are summarised: --json prints every element", style="dim"))
    if report.seed is not None:
        con.print(Text(f"random values drawn with --seed {report.seed}", style="dim"))
    if report.methods:
        method_columns = [Column("method"), Column("torch call", breakable=True),
                          Column("same result")]
        for m in report.methods:
            method_columns[0].cells.append(m.method)
            method_columns[1].cells.append(m.call)
            method_columns[2].cells.append("✓ yes" if m.agrees else "✗ no")
            method_columns[2].styles.append("green" if m.agrees else "bold red")
        _print_fitted(con, method_columns, "methods", title="methods")
    accumulated = report.extra.get("accumulate")
    if accumulated:
        con.print(Text(f"backward called {accumulated['calls']} times without zeroing", style="bold"))
        history = accumulated["grad_after_each_call"]
        grads = [Column("call", justify="right")] + [Column(f"{n}.grad", justify="right") for n in report.wrt]
        for i in range(accumulated["calls"]):
            grads[0].cells.append(str(i + 1))
            for c, n in zip(grads[1:], report.wrt, strict=True):
                c.cells.append(tensor_text(TensorData.from_dict(history[n][i])))
        grads[0].cells.append("zeroed")
        for c, n in zip(grads[1:], report.wrt, strict=True):
            c.cells.append(tensor_text(TensorData.from_dict(accumulated["after_zero_grad"][n])))
            c.styles.extend([""] * accumulated["calls"] + ["green"])
        _print_fitted(con, grads, "call")
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
    from rich.text import Text

    from gradcli.render.layout import Column, fit_table, vertical

    con = console(out)
    header = Text("gradcli minimize  ", style="bold")
    header.append(headline(report.parsed))
    con.print(header)
    con.print(Text(f"{report.call}; {report.dtype} on {report.device} ({report.device_note})", style="dim"))
    for name, t in report.constants.items():
        size = f", {t.numel} values" if t.numel > 1 else ""
        con.print(Text(f"{name} = {tensor_text(t)}  (constant{size})", style="dim"))

    start, end = report.start, report.end
    columns = [Column("", style="bold", breakable=True)] + [
        Column(header, justify="right") for header in (f"start (step {start.step})", f"end (step {end.step})",
                                                       "gradient at start", "gradient at end")]
    for n in report.wrt:
        cells = [n] + [tensor_text(t, rows=True) for t in (start.parameters[n], end.parameters[n],
                                                            start.gradient[n], end.gradient[n])]
        for c, text in zip(columns, cells, strict=True):
            c.cells.append(text)
    for label, first, last in (("loss", start.loss, end.loss),
                               ("gradient norm", start.gradient_norm, end.gradient_norm)):
        for c, text in zip(columns, [label, number(first, report.dtype), number(last, report.dtype), "", ""],
                           strict=True):
            c.cells.append(text)
    table = fit_table(columns, con.width)
    if table is not None:
        con.print(table)
    else:
        for line in vertical([(c0, [(c.header, c.cells[r], "") for c in columns[1:] if c.cells[r]])
                              for r, c0 in enumerate(columns[0].cells)], con.width):
            con.print(line)
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
