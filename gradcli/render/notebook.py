"""Reports in a notebook: the table the terminal shows, with its verdict, as HTML.

report.py's `_repr_html_` calls `report_html` once `install` has run (report.py sits below the
renderers and may not import them): gradcli.api runs it, and so does `gradcli.grad` and every
other function reached from the package. The text is the table renderer's own, so a
notebook shows what `gradcli grad` prints; the report's status colours its frame.
"""

from __future__ import annotations

import html
import io

from gradcli.report import (
    DiffReport,
    FunctionsReport,
    GradReport,
    GraphReport,
    MinimizeReport,
    Report,
    install_notebook_renderer,
)

# The frame's colour by the report's status: the verdict at a glance, beside the words.
FRAMES = {"ok": "#2e7d32", "failed": "#c62828"}


def report_text(report: Report) -> str | None:
    """The report as the terminal shows it (its notes included), or None for a kind of
    report with no table (a plot: its data is report.columns())."""
    from gradcli import render

    out = io.StringIO()
    if isinstance(report, (GradReport, GraphReport, MinimizeReport)):
        render.render(report, "table", out, out)
    elif isinstance(report, DiffReport):
        render.render_diff(report, "pretty", out, err=out)
    elif isinstance(report, FunctionsReport):
        from gradcli.render.functions import render_functions

        render_functions(report, "table", out)
    else:
        return None
    return out.getvalue()


def report_html(report: Report) -> str | None:
    """The report as HTML for a notebook's output cell: its text in a frame coloured by its status."""
    text = report_text(report)
    if text is None:
        return None
    colour = FRAMES.get(report.status, FRAMES["failed"])
    return (f'<pre class="gradcli-report" data-status="{report.status}" style="border-left: 4px solid {colour}; '
            f'padding: 0.4em 0.8em; line-height: 1.25; white-space: pre; overflow-x: auto">'
            f"{html.escape(text)}</pre>")


def install() -> None:
    """Let every report show itself in a notebook with report_html."""
    install_notebook_renderer(report_html)
