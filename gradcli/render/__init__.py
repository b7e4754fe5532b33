"""Reports to what a person or a program reads: `render(report, fmt, ...)` picks the renderer.

    table.py     rich tables (grad and the other derivative commands, the graph tree, minimize,
                 diff's pretty formulas)
    text.py      json, ndjson, csv, plain, dot, latex: no rich
    progress.py  minimize's progress bar
    plot.py      plot drawing (terminal, image) and its csv/json

Cheap to import: no rich, torch or sympy here (rich is imported inside the table functions).
A renderer reads a report and never changes it: --quiet is a rendering option.
"""

from __future__ import annotations

from typing import Any, TextIO

from gradcli.render.common import OutputChoice, echo_of, notes, number
from gradcli.render.progress import LossProgress, wants_progress
from gradcli.render.text import render_diff

__all__ = ["render", "render_diff", "wants_progress", "LossProgress", "number", "OutputChoice"]


def render(report: Any, fmt: str, out: TextIO, err: TextIO, quiet: bool = False) -> None:
    """Write the report in `fmt`; notes go to `err` (or, for a table, under it) unless quiet."""
    from gradcli.render import text
    from gradcli.report import GraphReport, MinimizeReport

    command = getattr(report, "command", None)
    if isinstance(report, MinimizeReport):
        if fmt == "table":
            from gradcli.render.table import render_minimize_table

            render_minimize_table(report, out, quiet=quiet)
        else:
            text.render_minimize(report, fmt, out, err, quiet)
        return
    if command == "diff":
        text.render_diff(report, fmt, out, quiet=quiet, err=err)
        return
    if fmt in ("json", "ndjson"):
        text.render_json(report, out, compact=text.json_compact(fmt), quiet=quiet, echo=echo_of(fmt))
        return
    if fmt == "csv":
        text.render_csv(report, out)
        for line in [] if quiet else report.warnings:
            err.write(f"note: {line}\n")
        return
    if isinstance(report, GraphReport):
        if fmt == "dot":
            text.render_graph_dot(report, out)
        elif fmt == "plain":
            text.render_graph_plain(report, out)
        else:
            from gradcli.render.table import render_graph_tree

            render_graph_tree(report, out, quiet=quiet)
        return
    if fmt == "plain":
        text.render_plain(report, out)
        for line in [] if quiet else notes(report):
            err.write(f"note: {line}\n")
        for topic, explained in report.explain:
            err.write(f"explain: {topic}: {explained}\n")
        return
    from gradcli.render.table import render_table

    render_table(report, out, quiet=quiet)
