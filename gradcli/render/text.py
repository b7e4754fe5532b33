"""Reports to text for programs and shells: JSON, NDJSON, CSV, plain numbers, Graphviz dot, LaTeX.

Numbers are shown as the shortest decimal that reads back as the same number in the
user's dtype: float16's -2/3 is -0.6665, float32's 0.1 is 0.1. Nothing here imports rich, so
machine formats start fast; the tables are gradcli/render/table.py's. A renderer reads a
report and never changes it: --quiet is an argument, not an edit of the report.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from gradcli.core.check import fails
from gradcli.render.common import number, pretty_of
from gradcli.report import GradReport, GraphReport, MinimizeReport, Report

FORMATS = ("table", "json", "ndjson", "csv", "plain")


# --------------------------------------------------------------------------- formats

def document(report: Report, quiet: bool = False, echo: bool = False) -> dict[str, Any]:
    """The report's JSON document; --quiet leaves its warnings out (of the document, not the report).
    echo (--echo-values): a derivative report writes its large inputs in full too."""
    doc = report.to_dict(echo=echo) if isinstance(report, GradReport) else report.to_dict()
    if quiet and "warnings" in doc:
        doc["warnings"] = []
    return doc


def render_json(report: Report, out: TextIO, compact: bool | None = None, quiet: bool = False,
                echo: bool = False) -> None:
    """One JSON document: on one line (ndjson, or json into a pipe or file: compact=None), or
    indented for a person (json on a terminal, or --pretty: compact=False)."""
    doc = document(report, quiet, echo)
    if compact is None:
        compact = not (hasattr(out, "isatty") and out.isatty())
    if compact:
        out.write(json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n")
    else:
        out.write(json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def json_compact(fmt: str) -> bool | None:
    """render_json's `compact` for a format: ndjson is one line; json is indented on a terminal
    (None) unless --pretty says either way."""
    if fmt == "ndjson":
        return True
    pretty = pretty_of(fmt)
    return None if pretty is None else not pretty


def index_text(index: tuple[int, ...]) -> str:
    return "[" + ",".join(map(str, index)) + "]" if index else ""


def render_csv(report: Any, out: TextIO) -> None:
    """A row per element: numbers as float64 repr, exact for every dtype; the verdict's word in `status`."""
    import csv

    import numpy as np

    writer = csv.writer(out, lineterminator="\n")
    if isinstance(report, GraphReport):
        writer.writerow(["id", "kind", "label", "children"])
        for n in report.nodes:
            writer.writerow([n.id, n.kind, n.label or "", " ".join(map(str, n.children or []))])
        return
    if report.command == "diff":
        writer.writerow(["variable", "order", "formula"])
        for d in report.derivatives:
            writer.writerow([d.variable, d.order, d.formula])
        return
    assert isinstance(report, GradReport), report
    if report.command == "eval":
        writer.writerow(["index", "value"])
        for index in np.ndindex(*report.f.shape):
            writer.writerow([index_text(index), repr(float(report.f.array[index]))])
        return
    writer.writerow(["result", "index", "autograd", "symbolic", "abs_error", "status"])
    for v in report.variables:
        for index in np.ndindex(*v.gradient.shape):
            ref = repr(float(v.symbolic.array[index])) if v.symbolic is not None else ""
            got = float(v.gradient.array[index])
            err = repr(abs(got - float(v.symbolic.array[index]))) if v.symbolic is not None else ""
            writer.writerow([v.name, index_text(index), repr(got), ref, err, v.status.value])


def render_plain(report: GradReport, out: TextIO) -> None:
    """One line per result (eval: f itself): its numbers, space-separated."""
    results = [report.f] if report.command == "eval" else [v.gradient for v in report.variables]
    for t in results:
        out.write(" ".join(number(x, t.dtype) for x in t.flat()) + "\n")


# --------------------------------------------------------------------------- graph and diff

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


def render_diff(report: Any, fmt: str, out: TextIO, quiet: bool = False, err: TextIO | None = None) -> None:
    """gradcli diff's formulas: json/ndjson/csv, one a line (plain, latex), or pretty (a rich console).

    Its notes go to `err` beside a machine format (standard error when not given), under the
    pretty formulas, and nowhere with quiet.
    """
    if fmt in ("json", "ndjson"):
        render_json(report, out, compact=json_compact(fmt), quiet=quiet)
    elif fmt == "csv":
        render_csv(report, out)
    elif fmt in ("plain", "latex"):
        for d in report.derivatives:
            out.write((d.latex if fmt == "latex" else d.formula) + "\n")
        return
    else:
        from gradcli.render.table import render_diff_pretty

        render_diff_pretty(report, out, quiet=quiet)
        return
    if fmt == "csv" and not quiet:
        import sys

        for line in report.warnings:
            (err or sys.stderr).write(f"note: {line}\n")


# --------------------------------------------------------------------------- gradcli minimize

def render_minimize(report: MinimizeReport, fmt: str, out: TextIO, err: TextIO, quiet: bool = False) -> None:
    """A descent as the JSON document, a CSV row per parameter element, or the end values (the
    table is gradcli/render/table.py's)."""
    if fmt in ("json", "ndjson"):
        render_json(report, out, compact=json_compact(fmt), quiet=quiet)
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
                writer.writerow([n, index_text(index)] + [repr(float(t.array[index])) for t in (start, end, g0, g1)])
    else:  # plain: the parameters where the descent ended, one line each, for $(...)
        for n in report.wrt:
            t = report.end.parameters[n]
            out.write(" ".join(number(x, t.dtype) for x in t.flat()) + "\n")
    if not quiet:
        for line in minimize_notes(report):
            err.write(line + "\n")


def minimize_notes(report: MinimizeReport) -> list[str]:
    """What stderr says beside a machine format: the notes, and why a run failed."""
    lines = [f"note: {w}" for w in report.warnings]
    if report.stopped == "diverged":
        lines.append(f"note: diverged: {report.stop_text}")
        if report.hint:
            lines.append(f"hint: {report.hint}")
    for where, results in report.checks.items():
        for v in results:
            if fails(v.status):
                lines.append(f"note: the gradient of {v.name} at the {where} does not agree with sympy's "
                             f"({v.status.value}): {v.note}")
    return lines
