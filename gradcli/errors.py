"""Errors as values with a place, and the exit statuses gradcli promises.

Kept free of heavy imports: the CLI imports this module on every call.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    CHECK_FAILED = 1  # a cross-check disagreed, or the point is outside the domain
    BAD_INPUT = 2  # bad input or usage
    INTERNAL = 3  # a bug in gradcli


@dataclass(frozen=True)
class Span:
    """Where in `source` a problem lies: character offsets, end exclusive."""

    source: str
    start: int
    end: int


class GradcliError(Exception):
    """Bad input: a one-line message, an optional hint and an optional place."""

    status = ExitStatus.BAD_INPUT

    def __init__(self, message: str, *, hint: str | None = None, span: Span | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.span = span

    def lines(self) -> list[str]:
        """The error as lines for stderr: the message first, then the caret, then the hint."""
        first = f"error: {self.message}"
        if self.span is not None:
            first += f" (column {self.span.start + 1})"
        out = [first]
        if self.span is not None and "\n" not in self.span.source and len(self.span.source) <= 200:
            width = max(1, self.span.end - self.span.start)
            out.append(f"  {self.span.source}")
            out.append("  " + " " * self.span.start + "^" * max(1, min(width, len(self.span.source) - self.span.start)))
        if self.hint:
            out.append(f"hint: {self.hint}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())
