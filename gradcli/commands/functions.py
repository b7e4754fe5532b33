"""`gradcli functions`: what the registry declares, as a report.

Reads core/functions.py only (sympy, never torch), so listing the functions starts quickly.
"""

from __future__ import annotations

from gradcli.core import functions
from gradcli.report import FunctionInfo, FunctionsReport


def _info(entry: functions.Function) -> FunctionInfo:
    return FunctionInfo(entry.name, list(entry.aliases), entry.signature, entry.category.value,
                        entry.description, "; ".join(entry.kinks) or None)


def list_functions(name: str | None = None) -> FunctionsReport:
    """Every function users can type, in the registry's order; with `name` (a name, an alias or
    another library's spelling of one), only that function. GradcliError for an unknown name."""
    if name is None:
        return FunctionsReport([_info(f) for f in functions.FUNCTIONS])
    return FunctionsReport([_info(functions.find(name.strip()))])
