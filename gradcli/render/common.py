"""Text every renderer writes alike: numbers, tensors, shapes, and the notes beside a result.

Numbers are shown as the shortest decimal that reads back as the same number in the
user's dtype: float16's -2/3 is -0.6665, float32's 0.1 is 0.1. text.py and table.py both
import this module, and it imports neither (no rich either), so they form no circle.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from gradcli.core.check import Verdict
from gradcli.report import GradReport, TensorData, VariableResult

if TYPE_CHECKING:  # numpy is imported where it is used
    import numpy as np
    import numpy.typing as npt

# --------------------------------------------------------------------------- the output chosen

class OutputChoice(str):
    """A format name ("json", "table"...) that also carries the options of how it is written.

    A str, so that the CLI's wrappers pass it to `render` as they pass a format name; the
    renderers read its options where they apply (`pretty` and `echo_values` for JSON).
    pretty: None indents JSON on a terminal and writes it compact into a pipe or file.
    """

    pretty: bool | None
    echo_values: bool

    def __new__(cls, fmt: str, *, pretty: bool | None = None, echo_values: bool = False) -> OutputChoice:
        choice = super().__new__(cls, fmt)
        choice.pretty = pretty
        choice.echo_values = echo_values
        return choice


def pretty_of(fmt: str) -> bool | None:
    return fmt.pretty if isinstance(fmt, OutputChoice) else None


def echo_of(fmt: str) -> bool:
    return fmt.echo_values if isinstance(fmt, OutputChoice) else False


# --------------------------------------------------------------------------- numbers

def number(x: float, dtype: str = "float64") -> str:
    """The shortest text that reads back as x in `dtype`; whole numbers without '.0'.

    Half-precision values get five significant digits, as torch prints them (-0.6665,
    1.8496): always enough to read back, and they show the rounding the dtype did.
    """
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if dtype in ("float16", "bfloat16"):
        text = f"{x:.5g}"
        if "e" not in text and "." in text:
            text = text.rstrip("0").rstrip(".")
    elif dtype == "float32":
        import numpy as np

        text = str(np.float32(x))
    else:
        text = repr(float(x))
    if text.endswith(".0"):
        text = text[:-2]
    return text.replace("e+", "e")


def tensor_text(t: TensorData, edge: int = 3, limit: int = 12, rows: bool = False) -> str:
    """Compact nested brackets; long dimensions keep `edge` items at each end.

    rows=True puts each top-level row of a matrix on its own line, for table cells. Only the
    elements shown are ever formatted, so a 10^7-element tensor costs nothing here.
    """
    summarise = t.numel > limit

    def walk(x: npt.NDArray[np.float64], depth: int = 0) -> str:
        if x.ndim == 0:
            return number(float(x), t.dtype)
        n = x.shape[0]
        if summarise and n > 2 * edge:
            parts = [walk(x[i], depth + 1) for i in range(edge)] + ["…"] + \
                    [walk(x[i], depth + 1) for i in range(n - edge, n)]
        else:
            parts = [walk(x[i], depth + 1) for i in range(n)]
        sep = ",\n " if rows and depth == 0 and len(t.shape) >= 2 else ", "
        return "[" + sep.join(parts) + "]"
    return walk(t.array)


def shape_text(t: TensorData) -> str:
    return "scalar" if not t.shape else "[" + ",".join(map(str, t.shape)) + "]"


# --------------------------------------------------------------------------- notes

def routes_text(results: Iterable[VariableResult]) -> str:
    """Who checked the results, in words: "sympy", "finite differences", or both."""
    ran = {route for v in results for route, r in v.routes.items() if r.get("status") not in ("unavailable", None)}
    words = [w for route, w in (("symbolic", "sympy"), ("numeric", "finite differences")) if route in ran]
    return " and ".join(words) or "sympy"


def notes(report: GradReport, quiet: bool = False) -> list[str]:
    """Lines a person should read beside the numbers (--quiet: only what explains a verdict)."""
    lines = [] if quiet else list(report.warnings)
    # A note several variables share is printed once for them all, and not again when a
    # warning already says it (f not finite: the cause is f's, the same for every variable).
    shared: dict[str, list[str]] = {}
    for v in report.variables:
        if v.note and v.status is not Verdict.AGREE and v.note not in lines:
            shared.setdefault(v.note, []).append(v.name)
    lines.extend(f"{', '.join(names)}: {note}" for note, names in shared.items())
    for m in report.methods:
        if not m.agrees:
            lines.append(f"method {m.method} disagrees with {report.methods[0].method}")
    return lines
