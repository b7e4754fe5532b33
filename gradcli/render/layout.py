"""Tables that fit the terminal: cells wrapped at element boundaries, or one block per row.

Rich, left to itself, folds a number in the middle of its digits and, when the columns' minimum
widths add up to more than the terminal, draws the table wider and lets the terminal cut the
right edge off (the verdict reads "✓ agre"). Here the widths are chosen before rich draws:

- a cell is lines of words (a tensor's elements, "[0.0900305," and "0.2447285,", are words);
  a word is never broken, except in prose (a formula), whose long words fold as a last resort;
- a column gets its natural width when everything fits; otherwise the widest columns give up
  width, never below their longest word;
- when even the longest words do not fit side by side, `fit_table` answers None and the caller
  lays the rows out vertically (`vertical`): one block per row, a `label: value` line per cell.

Rich is imported inside the functions (for its cell widths and its table), as in table.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

# A breakable cell (prose) still keeps this many columns, if its longest word is longer.
_PROSE_MIN = 12


def cells(text: str) -> int:
    """How many terminal columns `text` takes (wide characters count twice)."""
    from rich.cells import cell_len

    return int(cell_len(text))


def _split(line: str) -> tuple[str, list[str]]:
    stripped = line.lstrip(" ")
    return line[:len(line) - len(stripped)], [w for w in stripped.split(" ") if w]


def _hanging(indent: str, words: list[str]) -> str:
    """The indent of a wrapped line's continuations: one more for each bracket the line opens with."""
    first = words[0] if words else ""
    return indent + " " * (len(first) - len(first.lstrip("[")))


# A line of numbers this short is never wrapped: a matrix's row ("[[2, 4],") stays a row.
_SHORT_LINE = 16


def longest_word(text: str, breakable: bool = False) -> int:
    """The narrowest width `text` can be wrapped to without breaking a word (numbers: nor a
    line of at most _SHORT_LINE columns)."""
    widest = 0
    for line in text.split("\n"):
        indent, words = _split(line)
        if not words:
            continue
        if not breakable and cells(line) <= _SHORT_LINE:
            widest = max(widest, cells(line))
            continue
        first = len(indent) + cells(words[0])
        rest = max((cells(w) for w in words[1:]), default=0) + len(_hanging(indent, words))
        widest = max(widest, first, rest)
    return min(widest, _PROSE_MIN) if breakable else widest


def natural(text: str) -> int:
    return max((cells(line) for line in text.split("\n")), default=0)


def wrap(text: str, width: int, breakable: bool = False) -> str:
    """`text` with each line wrapped at its spaces to `width` columns; a word longer than the
    width is folded only when `breakable` (prose), and otherwise left whole."""
    out: list[str] = []
    for line in text.split("\n"):
        if cells(line) <= width:
            out.append(line)
            continue
        indent, words = _split(line)
        hanging = _hanging(indent, words)
        current = indent
        for word in words:
            fresh = current.strip() == ""
            candidate = current + word if fresh else current + " " + word
            if cells(candidate) <= width:
                current = candidate
                continue
            if fresh:  # a word wider than the column: whole (a number), or folded (prose)
                current = candidate
            else:
                out.append(current)
                current = hanging + word
            if breakable:
                while cells(current) > width and width > len(hanging):
                    cut = width
                    while cells(current[:cut]) > width:
                        cut -= 1
                    out.append(current[:cut])
                    current = hanging + current[cut:]
        out.append(current)
    return "\n".join(out)


@dataclass
class Column:
    """One column of a table to fit: its header, its cells (text and rich style), how it wraps."""

    header: str
    cells: list[str] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)
    breakable: bool = False  # prose (a formula): may fold a word longer than the column
    justify: str = "left"
    header_style: str = "bold"
    style: str = ""
    whole: bool = False  # never wrapped (a verdict: "✓ agree" on one line)

    def minimum(self) -> int:
        header = max((cells(w) for w in self.header.split()), default=0)
        if self.whole:
            return max([header, 1] + [natural(c) for c in self.cells])
        return max([header, 1] + [longest_word(c, self.breakable) for c in self.cells])

    def natural(self) -> int:
        return max([cells(self.header), 1] + [natural(c) for c in self.cells])


def widths(columns: list[Column], total: int) -> list[int] | None:
    """Each column's width for a rounded, padded rich table `total` columns wide, or None when
    the columns' minimums do not fit side by side."""
    available = total - (3 * len(columns) + 1)  # a border before each column and at the end, padding 1+1
    chosen = [c.natural() for c in columns]
    floor = [c.minimum() for c in columns]
    if sum(floor) > available:
        return None
    excess = sum(chosen) - available
    while excess > 0:
        # the widest column that can still give: wide columns shrink first, narrow ones keep their width
        i = max((i for i in range(len(columns)) if chosen[i] > floor[i]), key=lambda i: chosen[i])
        chosen[i] -= 1
        excess -= 1
    return chosen


def fit_table(columns: list[Column], total: int, *, show_lines: bool = False, box_name: str = "ROUNDED",
              title: str | None = None) -> Table | None:
    """A rich table whose cells are wrapped to fit `total` columns, or None when it cannot fit."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    chosen = widths(columns, total)
    if chosen is None:
        return None
    table = Table(box=getattr(box, box_name), show_lines=show_lines, title=title, title_justify="left")
    for c, w in zip(columns, chosen, strict=True):
        table.add_column(Text(wrap(c.header, w, True), style=c.header_style), width=w, no_wrap=True,
                         overflow="fold", justify=c.justify, style=c.style)  # type: ignore[arg-type]
    rows = max((len(c.cells) for c in columns), default=0)
    for r in range(rows):
        row: list[Any] = []
        for c, w in zip(columns, chosen, strict=True):
            text = wrap(c.cells[r], w, c.breakable) if r < len(c.cells) else ""
            row.append(Text(text, style=c.styles[r] if r < len(c.styles) else ""))
        table.add_row(*row)
    return table


def vertical(blocks: list[tuple[str, list[tuple[str, str, str]]]], total: int) -> list[Any]:
    """Rows as blocks for a narrow terminal: each block's title, then `label: value` lines
    (label, value, the value's style), values wrapped at element boundaries under themselves.
    Returns rich Text lines to print one by one."""
    from rich.text import Text

    lines: list[Any] = []
    for n, (title, items) in enumerate(blocks):
        if n:
            lines.append(Text(""))
        if title:
            lines.append(Text(title, style="bold"))
        label_width = max((cells(label) for label, _, _ in items), default=0) + 1
        for label, value, style in items:
            head = f"  {label + ':':<{label_width}} "
            room = total - len(head)
            if value and room >= max(longest_word(value), 8):
                wrapped = wrap(value, room).split("\n")
                text = Text()
                text.append(head, style="bold")
                text.append(wrapped[0], style=style)
                lines.append(text)
                for more in wrapped[1:]:
                    lines.append(Text(" " * len(head)).append(more, style=style))
            else:  # the value on lines of its own, under its label
                lines.append(Text(f"  {label}:", style="bold"))
                for more in wrap(value, max(total - 4, 1)).split("\n") if value else []:
                    lines.append(Text("    ").append(more, style=style))
    return lines
