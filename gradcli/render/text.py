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
from gradcli.report import RESULT_KEYS, GradReport, GraphReport, MinimizeReport, Report, TensorData

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
        values = report.f.array.reshape(-1)
        for start in range(0, values.size, _CSV_BLOCK):
            stop = min(start + _CSV_BLOCK, values.size)
            out.write("".join(f"{i},{x!r}\n" for i, x in zip(_csv_indices(report.f.shape, start, stop),
                                                               values[start:stop].tolist(), strict=True)))
            out.flush()
        return
    writer.writerow(["result", "index", "autograd", "symbolic", "abs_error", "status"])
    for v in report.variables:
        got = v.gradient.array.reshape(-1)
        ref = v.symbolic.array.reshape(-1) if v.symbolic is not None else None
        # Written a block of rows at a time, as they are formatted: a 10^6-element gradient
        # streams out instead of waiting for a million rows built one element at a time.
        # The rows are formatted here rather than by csv.writer (three times faster): the name
        # and the verdict are quoted once as csv would; an index with a comma is quoted.
        head, tail = _csv_field(v.name), _csv_field(v.status.value)
        for start in range(0, got.size, _CSV_BLOCK):
            stop = min(start + _CSV_BLOCK, got.size)
            indices = _csv_indices(v.gradient.shape, start, stop)
            block = got[start:stop]
            if ref is None:
                out.write("".join(f"{head},{i},{g!r},,,{tail}\n" for i, g in zip(indices, block.tolist(), strict=True)))
            else:
                errors = np.abs(block - ref[start:stop]).tolist()
                out.write("".join(f"{head},{i},{g!r},{r!r},{e!r},{tail}\n" for i, g, r, e in
                                  zip(indices, block.tolist(), ref[start:stop].tolist(), errors, strict=True)))
            out.flush()


_CSV_BLOCK = 65536  # rows formatted and written at a time


def _csv_indices(shape: list[int], start: int, stop: int) -> list[str]:
    """The CSV index field of the elements start..stop (flat, C order) of a tensor of `shape`,
    as index_text writes them and csv quotes them ("[0,1]" holds a comma)."""
    import numpy as np

    if not shape:
        return [""]
    if len(shape) == 1:
        return [f"[{i}]" for i in range(start, stop)]
    where = np.unravel_index(np.arange(start, stop), tuple(shape))
    return ['"[' + ",".join(map(str, i)) + ']"' for i in zip(*(w.tolist() for w in where), strict=True)]


def _csv_field(text: str) -> str:
    """`text` as csv.writer writes a field (quoted where it holds a comma, a quote, a newline)."""
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([text])
    return buffer.getvalue()


def plain_lines(t: TensorData) -> list[str]:
    """A tensor for $(...) and awk: a scalar or a vector on one line; a matrix one row per line;
    a higher rank one matrix (its last two axes) after another, a blank line between them.
    Numbers as `number` writes them, but a zero is 0, never -0."""
    def row(values: Any) -> str:
        return " ".join(number(x + 0.0, t.dtype) for x in values)  # + 0.0: -0.0 becomes 0.0

    array = t.array
    if array.ndim <= 1:
        return [row(array.reshape(-1).tolist())]
    matrices = array.reshape((-1,) + array.shape[-2:])
    lines: list[str] = []
    for i, matrix in enumerate(matrices):
        if i:
            lines.append("")
        lines += [row(r) for r in matrix.tolist()]
    return lines


def plain_text(results: list[TensorData]) -> str:
    """Each result's plain lines; several results with a matrix among them are set apart by a
    blank line (vectors and scalars stay one line each, as before)."""
    apart = len(results) > 1 and any(len(t.shape) >= 2 for t in results)
    blocks = ["\n".join(plain_lines(t)) for t in results]
    return ("\n\n" if apart else "\n").join(blocks) + "\n" if blocks else ""


def render_plain(report: GradReport, out: TextIO) -> None:
    """Each result's numbers (eval: f itself), space-separated, shaped as `plain_lines` says."""
    results = [report.f] if report.command == "eval" else [v.gradient for v in report.variables]
    out.write(plain_text(results))


def plain_of_document(doc: dict[str, Any]) -> str | None:
    """What --plain prints, from a result's JSON document (a batch line's); None for a command
    whose plain output is not numbers (graph, functions, plot)."""
    command = doc.get("command")
    if command == "diff":
        return "".join(d["formula"] + "\n" for d in doc["derivatives"])
    if command == "minimize":
        return plain_text([TensorData.from_dict(t) for t in doc["end"]["parameters"].values()])
    key = RESULT_KEYS.get(str(command))
    if key is None or key not in doc:
        return None
    if command == "eval":
        return plain_text([TensorData.from_dict(doc[key])])
    return plain_text([TensorData.from_dict(t) for t in doc[key].values()])


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
    else:  # plain: the parameters where the descent ended, one line each (a matrix a line a row), for $(...)
        out.write(plain_text([report.end.parameters[n] for n in report.wrt]))
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
