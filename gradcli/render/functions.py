"""`gradcli functions` as text: a rich table per category for people, one JSON document for programs."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, TextIO

from gradcli.errors import GradcliError

if TYPE_CHECKING:
    from gradcli.report import FunctionInfo, FunctionsReport

FORMATS = ("table", "json", "ndjson")

# The order categories are shown in (functions.Category's), without importing the registry.
_CATEGORY_ORDER = ("elementwise", "reduction", "vector", "pairwise loss", "matrix")


def render_functions(report: FunctionsReport, fmt: str, out: TextIO) -> None:
    if fmt in ("json", "ndjson"):  # indented as every command's --json is; ndjson on one line
        out.write(json.dumps(report.to_dict(), ensure_ascii=False, indent=2 if fmt == "json" else None) + "\n")
        return
    if fmt != "table":
        raise GradcliError(f"gradcli functions has no format '{fmt}'", hint="use the table (default) or --json")
    _table(report, out)


def _groups(report: FunctionsReport) -> list[tuple[str, list[FunctionInfo]]]:
    groups: dict[str, list[FunctionInfo]] = {}
    for f in report.functions:
        groups.setdefault(f.category, []).append(f)
    rank = {c: i for i, c in enumerate(_CATEGORY_ORDER)}
    return sorted(groups.items(), key=lambda item: rank.get(item[0], len(rank)))


def _table(report: FunctionsReport, out: TextIO) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    is_terminal = hasattr(out, "isatty") and out.isatty()
    # A terminal's own width; elsewhere 80 columns (COLUMNS when set), so a pipe or a file
    # reads like a narrow terminal. The description column wraps at word boundaries.
    width = None if is_terminal else int(os.environ.get("COLUMNS") or 80)
    console = Console(file=out, highlight=False, markup=False, width=width)
    for category, entries in _groups(report):
        table = Table(title=category, title_justify="left", box=box.SIMPLE_HEAD, expand=False)
        table.add_column("function", no_wrap=True, style="bold")
        table.add_column("description", ratio=1)
        table.add_column("aliases", style="dim")
        for f in entries:
            description = f.description + (f" (torch: {f.kink})" if f.kink else "")
            table.add_row(f.signature, description, ", ".join(f.aliases))
        console.print(table)
