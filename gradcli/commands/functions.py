"""`gradcli functions`: what the registry declares, as a report.

Reads core/functions.py only (sympy, never torch), so listing the functions starts quickly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gradcli import __version__
from gradcli.core import functions
from gradcli.report import SCHEMA_VERSION


@dataclass(frozen=True)
class FunctionInfo:
    """One function as `gradcli functions` shows it."""

    name: str
    aliases: list[str]
    signature: str  # huber(input, target, delta=1)
    category: str  # a functions.Category value: "elementwise", "reduction", ...
    description: str
    kink: str | None  # what torch does where the derivative does not exist; None: nowhere

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "aliases": list(self.aliases), "signature": self.signature,
                "category": self.category, "description": self.description, "kink": self.kink}


@dataclass
class FunctionsReport:
    functions: list[FunctionInfo] = field(default_factory=list)
    command: str = "functions"
    status: str = "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "gradcli_version": __version__,
            "command": "functions",
            "functions": [f.to_dict() for f in self.functions],
        }


def _info(entry: functions.Function) -> FunctionInfo:
    return FunctionInfo(entry.name, list(entry.aliases), entry.signature, entry.category.value,
                        entry.description, "; ".join(entry.kinks) or None)


def list_functions(name: str | None = None) -> FunctionsReport:
    """Every function users can type, in the registry's order; with `name` (a name, an alias or
    another library's spelling of one), only that function. GradcliError for an unknown name."""
    if name is None:
        return FunctionsReport([_info(f) for f in functions.FUNCTIONS])
    return FunctionsReport([_info(functions.find(name.strip()))])
