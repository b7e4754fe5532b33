"""Drawing `gradcli plot`'s data: in the terminal, to an image file, or as CSV/JSON numbers.

The data comes from gradcli/plot.py (PlotData); nothing here computes a derivative.

- terminal: uniplot for curves (a small library on numpy alone, with Unicode braille for 2x4
  dots per character), rich for the --grid map (f as background colour, the gradient as an
  arrow in each cell);
- image: matplotlib with the Agg canvas, imported only when a file is written (it takes about
  half a second to import);
- csv and json: no plotting library at all, so a pipeline always gets the numbers.

uniplot and matplotlib are the `plot` extra (pip install "gradcli[plot]"); without them the
command says so in one line.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from gradcli.core.check import Verdict
from gradcli.errors import GradcliError
from gradcli.outputs import refuse_same_file, value_files, write_bytes

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.typing import RcKeyType

    from gradcli.report import MinimizeReport, PlotData, Series

IMAGE_FORMATS = ("png", "svg", "pdf")
INSTALL = 'pip install "gradcli[plot]"'
INSTALL_FROM_CLONE = 'in a clone of gradcli: .venv/bin/pip install -e ".[plot]"'

# Okabe and Ito's colours, told apart by people with any common colour vision; each series
# also has its own marker, so the plot still reads in greyscale.
COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
DASHES = [(0, (5, 3)), (0, (1.5, 2)), (0, (7, 2, 1.5, 2)), (0, (3, 2)), (0, (9, 3, 1.5, 2, 1.5, 3))]


def need(module: str, purpose: str) -> Any:
    """Import an optional plotting library, or stop with one line saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise GradcliError(f"{purpose} needs {module.split('.')[0]}, which is not installed: {INSTALL}",
                           hint=INSTALL_FROM_CLONE) from None


def _g(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "—"
    if x == 0:
        return "0"
    return f"{x:.{digits}g}".replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")


def _span(data: PlotData, name: str) -> str:
    values = data.axes[name].array
    lo, hi = float(values.min()), float(values.max())
    if data.kind == "grid":
        n = values.shape[1] if name == data.variables[0] else values.shape[0]
    else:
        n = values.size
    return f"{name} from {_g(lo, 4)} to {_g(hi, 4)} ({n} points)"


def _f_name(data: PlotData) -> str:
    return f"f({', '.join(data.variables)})"


def _constants_text(data: PlotData) -> str:
    parts = [f"{n} = {_g(float(t.array.reshape(-1)[0]), 6)}" for n, t in data.constants.items() if t.numel == 1]
    return ", ".join(parts)


def check_text(s: Series, data: PlotData) -> str:
    """One line on how autograd's series compares with sympy's: its verdict, then the largest disagreement."""
    head = f"{s.pretty}: {s.status.value}"
    if s.status is Verdict.SKIPPED:
        return f"{head} (not checked: --no-check)"
    if s.status is Verdict.UNAVAILABLE:
        return f"{head}: {s.note or 'sympy has no value for it'}"
    if s.status is Verdict.NOT_FINITE:
        return f"{head}: {s.note}"
    verdict = "DISAGREES with" if s.status is Verdict.DISAGREE else "agrees with"
    where = f"{s.compared} points" if s.compared == s.autograd.numel else f"{s.compared} of {s.autograd.numel} points"
    text = (f"{head}: autograd {verdict} sympy's {s.formula}: largest difference {_differences(s)} "
            f"over {where}")
    if s.status is Verdict.KINK:
        kinks = s.counts().get(Verdict.KINK.value, 0)
        text += f"; at {kinks} point(s) the derivative does not exist (autograd's value is torch's convention)"
    return text


def _differences(s: Series) -> str:
    """The largest absolute difference; and the relative one where the values are large (a pole's
    0.0003 on values of 7000 is rounding, not a disagreement)."""
    text = _g(s.max_abs_error)
    if s.max_rel_error is not None and s.max_abs_error and s.max_abs_error > 10 * s.max_rel_error:
        text += f" (relative {_g(s.max_rel_error, 2)})"
    return text


# --------------------------------------------------------------------------- numbers

def render_csv(data: PlotData, out: TextIO) -> None:
    """One row per point: the variables, f, each derivative and sympy's; float64 repr, exact."""
    import csv

    columns = data.columns()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([name for name, _ in columns])
    arrays = [values.tolist() for _, values in columns]
    for row in zip(*arrays, strict=True):  # one value per point in every column;
        # numbers as float64 repr; a check column's verdict words as they are
        writer.writerow([v if isinstance(v, str) else repr(v) for v in row])


def render_json(data: PlotData, out: TextIO, compact: bool = False) -> None:
    import json

    if compact:
        out.write(json.dumps(data.to_dict(), separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n")
    else:
        out.write(json.dumps(data.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


# --------------------------------------------------------------------------- terminal

def render_terminal(data: PlotData, out: TextIO, *, width: int, height: int, color: bool) -> None:
    """The plot as text, at most `width` columns wide."""
    width = max(40, width)
    lines = [f"gradcli plot  {_f_name(data)} = {data.parsed}"]
    detail = "; ".join(_span(data, n) for n in data.variables)
    constants = _constants_text(data)
    lines.append(detail + (f"; {constants}" if constants else "") + f"; {data.dtype} on {data.device}")
    out.write("\n".join(_fit(line, width) for line in lines) + "\n")
    if data.kind == "grid":
        _terminal_grid(data, out, width=width, height=height, color=color)
    else:
        _terminal_lines(data, out, width=width, height=height, color=color)
    for s in data.series:
        out.write(_wrap(check_text(s, data), width) + "\n")


def _finite_or_nan(a: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Infinities as NaN: plotting libraries leave NaN out, and choke on infinity."""
    import numpy as np

    return np.where(np.isfinite(a), a, np.nan)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width, subsequent_indent="  ", break_on_hyphens=False)) or text


def _terminal_lines(data: PlotData, out: TextIO, *, width: int, height: int, color: bool) -> None:
    uniplot = need("uniplot", "drawing in the terminal")
    import numpy as np

    panels = data.variables
    each = height if len(panels) == 1 else max(8, height // len(panels))
    for var in panels:
        x = data.axes[var].array
        series = [s for s in data.series if s.variable == var]
        ys = [_finite_or_nan(data.f.array)] + [_finite_or_nan(s.autograd.array) for s in series]
        labels = [_f_name(data)] + [s.pretty for s in series]
        finite = [np.isfinite(y).any() for y in ys]
        ys = [y for y, ok in zip(ys, finite, strict=True) if ok]
        labels = [label for label, ok in zip(labels, finite, strict=True) if ok]
        if not ys:
            out.write(f"(nothing to draw along {var}: no value is finite)\n")
            continue
        title = f"{labels[0]} and {', '.join(labels[1:])}" if len(labels) > 1 else labels[0]
        if len(panels) > 1:
            title += f" along {var}"
        options: dict[str, Any] = {
            "xs": [x] * len(ys), "legend_labels": labels, "lines": True, "title": _fit(title, width),
            "width": width, "line_length_hard_cap": width, "height": each, "color": color}
        limits = y_limits(ys)
        if limits is not None:  # a few huge values would flatten everything else
            options["y_min"], options["y_max"] = limits
            options["title"] = _fit(title + " (y clipped)", width)
            # Drawn to just past the edge: a line to 1e30 would have uniplot rasterise all of it.
            reach = limits[1] - limits[0]
            ys = [np.clip(y, limits[0] - reach, limits[1] + reach) for y in ys]
        # Braille: 2 x 4 dots a character; without colour its series look alike, so then one
        # character per series (+, x, o...) instead.
        options["character_set"] = "braille" if color else "ascii"
        out.write(uniplot.plot_to_string(ys, **options).rstrip("\n") + "\n")


# Sequential colour map for f in the terminal grid: viridis at eight stops.
_VIRIDIS = [(68, 1, 84), (70, 50, 126), (54, 92, 141), (39, 127, 142), (31, 161, 135), (74, 193, 109),
            (160, 218, 57), (253, 231, 37)]
_ARROWS = "→↗↑↖←↙↓↘"


def _viridis(t: float) -> tuple[int, int, int]:
    t = min(1.0, max(0.0, t)) * (len(_VIRIDIS) - 1)
    i = min(int(t), len(_VIRIDIS) - 2)
    a, b = _VIRIDIS[i], _VIRIDIS[i + 1]
    u = t - i
    return tuple(round(a[k] + (b[k] - a[k]) * u) for k in range(3))  # type: ignore[return-value]


def _terminal_grid(data: PlotData, out: TextIO, *, width: int, height: int, color: bool) -> None:
    """f as colour, the gradient's direction as an arrow in each cell (cells are twice as tall as wide)."""
    import numpy as np
    from rich.color import Color
    from rich.console import Console
    from rich.style import Style
    from rich.text import Text

    xname, yname = data.variables
    X, Y, F = data.axes[xname].array, data.axes[yname].array, data.f.array
    gx, gy = data.series[0].autograd.array, data.series[1].autograd.array
    ny, nx = F.shape
    x0, x1, y0, y1 = float(X.min()), float(X.max()), float(Y.min()), float(Y.max())
    ticks = [_g(y1, 3), _g((y0 + y1) / 2, 3), _g(y0, 3)]
    margin = max(len(t) for t in ticks) + 1
    cols = max(10, width - margin - 1)
    rows = max(5, height)
    ci = np.rint(np.linspace(0, nx - 1, cols)).astype(int)
    ri = np.rint(np.linspace(ny - 1, 0, rows)).astype(int)  # top row is the largest y
    f = F[np.ix_(ri, ci)]
    u = gx[np.ix_(ri, ci)] * (cols - 1) / max(x1 - x0, 1e-300)  # the gradient in cells...
    v = gy[np.ix_(ri, ci)] * 2 * (rows - 1) / max(y1 - y0, 1e-300)  # ...a cell being twice as tall
    finite_f = F[np.isfinite(F)]
    lo, hi = (float(finite_f.min()), float(finite_f.max())) if finite_f.size else (0.0, 1.0)
    magnitude = np.hypot(u, v)
    big = float(np.nanmax(magnitude[np.isfinite(magnitude)])) if np.isfinite(magnitude).any() else 0.0
    console = Console(file=out, width=width, color_system="truecolor" if color else None, no_color=not color,
                      highlight=False, markup=False, soft_wrap=False)
    for r in range(rows):
        label = ticks[0] if r == 0 else ticks[1] if r == rows // 2 else ticks[2] if r == rows - 1 else ""
        line = Text(label.rjust(margin - 1) + " │")
        for c in range(cols):
            value, m = f[r, c], magnitude[r, c]
            if not (np.isfinite(value) and np.isfinite(m)):
                line.append(" ")
                continue
            if m <= 1e-6 * big or big == 0:
                glyph = "·"
            else:
                sector = int(round(math.atan2(v[r, c], u[r, c]) / (math.pi / 4))) % 8
                glyph = _ARROWS[sector]
            if color:
                rgb = _viridis((value - lo) / (hi - lo) if hi > lo else 0.5)
                dark = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] < 140
                line.append(glyph, Style(color="white" if dark else "black", bgcolor=Color.from_rgb(*rgb)))
            else:
                line.append(glyph)
        console.print(line)
    axis = " " * margin + "└" + "─" * cols
    console.print(Text(axis))
    left, mid, right = _g(x0, 3), _g((x0 + x1) / 2, 3), _g(x1, 3)
    ruler = [" "] * (margin + 1 + cols)
    for text, at in ((left, margin + 1), (mid, margin + 1 + cols // 2 - len(mid) // 2),
                     (right, margin + 1 + cols - len(right))):
        ruler[at:at + len(text)] = list(text)
    console.print(Text("".join(ruler).rstrip()))
    key = Text(f"{_f_name(data)}: ")
    if color:
        key.append(_g(lo, 3) + " ")
        for k in range(16):
            key.append(" ", Style(bgcolor=Color.from_rgb(*_viridis(k / 15))))
        key.append(" " + _g(hi, 3))
    else:
        key.append(f"from {_g(lo, 3)} to {_g(hi, 3)} (with colour off, its levels are not shown)")
    console.print(key)
    console.print(Text(_wrap(f"arrows: the direction of the gradient ({data.series[0].pretty}, "
                             f"{data.series[1].pretty}) by autograd, uphill; {xname} across, {yname} up", width)))


# --------------------------------------------------------------------------- images

def image_format(path: str) -> str:
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    if suffix not in IMAGE_FORMATS:
        raise GradcliError(f"--out {path}: the file name must end in .png, .svg or .pdf",
                           hint="for the numbers, use --format csv or --format json")
    return suffix


def write_image(data: PlotData, path: str, *, dpi: int = 150) -> str:
    """Draw the plot into path (.png, .svg or .pdf) with matplotlib; returns the format.

    dpi sets a PNG's pixels (150: 1200 x 810 for one curve); SVG and PDF are vector drawings.
    """
    fmt = image_format(path)
    need("matplotlib", "--out (an image file)")
    import matplotlib

    matplotlib.use("Agg")  # no window, no display needed; chosen before anything draws
    from matplotlib.figure import Figure

    style: dict[RcKeyType, Any] = {
        "font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 9.5,
        "xtick.labelsize": 10, "ytick.labelsize": 10, "axes.spines.top": False, "axes.spines.right": False,
        "axes.grid": True, "grid.color": "#d9d9d9", "grid.linewidth": 0.6, "svg.hashsalt": "gradcli",
    }
    with matplotlib.rc_context(style):
        if data.kind == "grid":
            fig = _grid_figure(Figure, data)
        else:
            fig = _line_figure(Figure, data)
        metadata: dict[str, str | None] = ({"Software": "gradcli (matplotlib)"} if fmt == "png"
                                           else {"Creator": "gradcli (matplotlib)"})
        if fmt == "svg":
            metadata["Date"] = None  # the same plot gives the same file
        _save(fig, path, fmt, dpi, metadata)
    return fmt


def _save(fig: MplFigure, path: str, fmt: str, dpi: int, metadata: dict[str, str | None]) -> None:
    """The figure drawn in memory, then written whole (gradcli/outputs.py): a failed or
    interrupted write leaves the old file as it was, and a full disk says how many bytes it needed."""
    import io

    image = io.BytesIO()
    fig.savefig(image, format=fmt, dpi=dpi if fmt == "png" else None, metadata=metadata)
    write_bytes(path, image.getvalue())


def _subtitle(data: PlotData) -> str:
    spans = "; ".join(_span(data, n) for n in data.variables)
    constants = _constants_text(data)
    return spans + (f"; {constants}" if constants else "") + f"; autograd in {data.dtype}, sympy in float64"


def _line_figure(Figure: type[MplFigure], data: PlotData) -> MplFigure:
    import numpy as np

    panels = data.variables
    several = len(panels) > 1
    fig = Figure(figsize=(6.2 * len(panels) if several else 8.0, 5.6 if several else 5.4), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    f_label = _f_name(data)
    handles, labels = [], []
    for ax, var in zip(axes, panels, strict=True):
        x = data.axes[var].array
        order = np.argsort(x, kind="stable")  # values given out of order still draw as a curve
        x = x[order]
        every = max(1, x.size // 12)
        ax.axhline(0, color="#808080", linewidth=0.8, zorder=1)
        (h,) = ax.plot(x, _finite_or_nan(data.f.array[order]), color="#1a1a1a", linewidth=2.0, zorder=3)
        if ax is axes[0]:
            handles.append(h)
            labels.append(f"{f_label} = {data.parsed}")
        for k, s in enumerate(data.series):  # numbered across panels: each series its own look
            if s.variable != var:
                continue
            colour, marker = COLOURS[k % len(COLOURS)], MARKERS[k % len(MARKERS)]
            (h,) = ax.plot(x, _finite_or_nan(s.autograd.array[order]), color=colour, linewidth=5, alpha=0.45,
                           marker=marker, markersize=6.5, markevery=(k * every // 3, every), solid_capstyle="butt",
                           zorder=4)
            handles.append(h)
            labels.append(f"{s.pretty} by autograd")
            if s.symbolic is not None:
                (h,) = ax.plot(x, _finite_or_nan(s.symbolic.array[order]), color=colour, linewidth=1.6,
                               linestyle=DASHES[k % len(DASHES)],
                               zorder=5)
                handles.append(h)
                labels.append(f"{s.pretty} = {_short(s.formula)} by sympy: largest |difference| {_differences(s)}")
        shown = [data.f.array] + [s.autograd.array for s in data.series if s.variable == var]
        limits = y_limits(shown)
        clipped = ""
        if limits is not None:
            ax.set_ylim(*limits)
            everything = np.concatenate([a.reshape(-1) for a in shown])
            everything = everything[np.isfinite(everything)]
            clipped = f"y clipped: the values reach {_g(float(everything.min()))} and {_g(float(everything.max()))}"
        ax.set_xlabel(var)
        names = ", ".join(s.pretty for s in data.series if s.variable == var)
        ax.set_ylabel(f"{f_label} and {names}")
        if several:
            ax.set_title(f"along {var}: {_span(data, var).removeprefix(var + ' ')}"
                         + (f"\n{clipped}" if clipped else ""), fontsize=11)
        else:
            ax.set_title(_subtitle(data) + (f"\n{clipped}" if clipped else ""), fontsize=9, color="#404040")
        if x[-1] > x[0]:
            ax.set_xlim(x[0], x[-1])  # the whole range asked for, even where f is not finite
    title = f"{f_label} = {_short(data.parsed, 70)}"
    title += " and its partial derivatives" if several else (" and its derivative" if data.order == 1
                                                             else " and its derivatives")
    fig.suptitle(title, fontsize=13, fontweight="bold")
    if several:  # said last in the legend (a second title line would collide with the panels')
        from matplotlib.lines import Line2D

        pairs = f"({', '.join(v + '_i' for v in panels)})"
        constants = _constants_text(data)
        handles.append(Line2D([], [], linestyle="none"))
        labels.append(f"at the paired points {pairs}" + (f"; {constants}" if constants else "")
                      + f"; autograd in {data.dtype}, sympy in float64")
    fig.legend(handles, labels, loc="outside lower center", frameon=False)
    return fig


def y_limits(arrays: list[npt.NDArray[np.float64]]) -> tuple[float, float] | None:
    """A y range that leaves out a few huge values (tan near its poles), or None to show all.

    Only when the full range is over ten times that of the middle 90% of the values: then
    the plot shows the middle, with half its span again on either side.
    """
    import numpy as np

    values = np.concatenate([np.asarray(a, dtype=float).reshape(-1) for a in arrays])
    values = values[np.isfinite(values)]
    if values.size < 10:
        return None
    lo, hi = np.percentile(values, [5, 95])
    span = float(hi - lo)
    if span <= 0 or float(values.max() - values.min()) <= 10 * span:
        return None
    return float(lo - span / 2), float(hi + span / 2)


def _short(text: str | None, limit: int = 48) -> str:
    text = text or "?"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _arrow_positions(n: int, most: int = 17) -> list[int]:
    """Evenly spaced indices for about `most` arrows, away from the edges where they can be."""
    if n <= most:
        return list(range(n))
    step = math.ceil(n / most)
    k = max(1, (n - 1) // step)
    offset = (n - 1 - step * (k - 1)) // 2
    return [offset + i * step for i in range(k)]


def _grid_figure(Figure: type[MplFigure], data: PlotData) -> MplFigure:
    import numpy as np

    xname, yname = data.variables
    X, Y, F = data.axes[xname].array, data.axes[yname].array, data.f.array
    gx, gy = data.series[0].autograd.array, data.series[1].autograd.array
    fig = Figure(figsize=(7.6, 7.0), layout="constrained")
    ax = fig.subplots()
    ax.grid(False)
    finite = np.isfinite(F)
    masked = np.ma.masked_invalid(F)
    if finite.sum() >= 4 and np.ptp(F[finite]) > 0:
        filled = ax.contourf(X, Y, masked, levels=16, cmap="viridis", zorder=1)
        ax.contour(X, Y, masked, levels=filled.levels, colors="#1a1a1a", linewidths=0.5, alpha=0.45, zorder=2)
        bar = fig.colorbar(filled, ax=ax, shrink=0.9, pad=0.02)
    else:  # f constant (or nearly nowhere finite): a flat colour says so better than contours
        mesh = ax.pcolormesh(X, Y, masked, cmap="viridis", shading="auto", zorder=1)
        bar = fig.colorbar(mesh, ax=ax, shrink=0.9, pad=0.02)
    bar.set_label(f"{_f_name(data)} = {_short(data.parsed, 40)}")
    ny, nx = F.shape
    sub = np.ix_(_arrow_positions(ny), _arrow_positions(nx))
    u, v = gx[sub], gy[sub]
    # Direction only, in screen space: every arrow the same length, so none hides the others.
    # The plot area is square, so axes fractions are screen proportions.
    sx = 1.0 / max(float(X.max() - X.min()), 1e-300)
    sy = 1.0 / max(float(Y.max() - Y.min()), 1e-300)
    us, vs = u * sx, v * sy
    norm = np.hypot(us, vs)
    finite = np.isfinite(norm)
    largest = float(norm[finite].max()) if finite.any() else 0.0
    flat = ~finite | (norm <= 1e-6 * largest)  # zero but for rounding: no direction to show
    with np.errstate(invalid="ignore", divide="ignore"):
        us, vs = np.where(flat, 0.0, us / norm), np.where(flat, 0.0, vs / norm)
    moving = ~flat
    ax.quiver(X[sub][moving], Y[sub][moving], us[moving], vs[moving], angles="uv", pivot="middle", color="white",
              edgecolor="#1a1a1a", linewidth=0.6, scale=26, width=0.0045, zorder=3)
    if flat.any():  # no direction where the gradient is zero (or not finite): a dot, not an arrow
        ax.plot(X[sub][flat], Y[sub][flat], linestyle="none", marker="o", markersize=4, color="white",
                markeredgecolor="#1a1a1a", zorder=3)
    ax.set_xlabel(xname)
    ax.set_ylabel(yname)
    ax.set_box_aspect(1)
    fig.suptitle(f"{_f_name(data)} = {_short(data.parsed, 60)} and its gradient", fontsize=13, fontweight="bold")
    ax.set_title(_subtitle(data), fontsize=9, color="#404040")
    from matplotlib.lines import Line2D

    labels = ["arrows: the gradient (" + ", ".join(s.pretty for s in data.series)
              + ") by autograd, pointing uphill; equal lengths, direction only"]
    arrow = Line2D([], [], linestyle="none", marker=r"$\rightarrow$", markersize=16, color="#1a1a1a")
    handles: list[Any] = [arrow]
    for s in data.series:
        handles.append(Line2D([], [], linestyle="none"))
        if s.symbolic is not None:
            labels.append(f"{s.pretty} = {_short(s.formula, 36)} by sympy: largest |difference| {_differences(s)}")
        else:
            labels.append(check_text(s, data))
    fig.legend(handles, labels, loc="outside lower center", frameon=False, handlelength=1.5)
    return fig


# --------------------------------------------------------------------------- the command's output

OUTPUTS = ("auto", "terminal", "csv", "json", "ndjson")


def choose_output(fmt: str, out_path: str | None, stdout: TextIO) -> str:
    """auto: the terminal when stdout is one and no file is asked for; CSV for a pipe; a summary
    line when an image file takes the plot."""
    if fmt not in OUTPUTS:
        raise GradcliError(f"unknown format '{fmt}'", hint="choose " + ", ".join(OUTPUTS))
    if fmt != "auto":
        return fmt
    if out_path:
        return "summary"
    return "terminal" if hasattr(stdout, "isatty") and stdout.isatty() else "csv"


def require(output: str, out_path: str | None, values: Sequence[str] | None = None) -> None:
    """Fail before any computing when a plotting library the output needs is missing, or when
    --out names the file of an `x=@file` value (an output is never an input).

    values: the NAME=VALUE arguments."""
    if out_path:
        image_format(out_path)
        refuse_same_file([("--out", out_path)], value_files(values or ()))
        need("matplotlib", "--out (an image file)")
    if output == "terminal":
        need("uniplot", "drawing in the terminal")


def show(data: PlotData, output: str, out_path: str | None, stdout: TextIO, stderr: TextIO, *, dpi: int = 150,
         quiet: bool = False) -> None:
    """Write the image (if asked), then print the plot, the numbers, or a summary."""
    if out_path:
        write_image(data, out_path, dpi=dpi)
    if output == "terminal":
        import shutil

        size = shutil.get_terminal_size((100, 30))
        color = (hasattr(stdout, "isatty") and stdout.isatty() and "NO_COLOR" not in os.environ
                 and os.environ.get("TERM") != "dumb")
        render_terminal(data, stdout, width=size.columns, height=max(10, min(24, size.lines - 8)), color=color)
    elif output == "csv":
        render_csv(data, stdout)
    elif output in ("json", "ndjson"):
        render_json(data, stdout, compact=output == "ndjson")
    else:  # the image is the plot: say what it shows and how the routes compare
        what = " and ".join([f"{_f_name(data)} = {data.parsed}"] + [s.pretty for s in data.series])
        stdout.write(f"wrote {out_path}: {what}; " + "; ".join(_span(data, n) for n in data.variables) + "\n")
        for s in data.series:
            stdout.write(check_text(s, data) + "\n")
    if not quiet:
        for w in data.warnings:
            stderr.write(f"note: {w}\n")
        for s in data.series:
            if s.note and s.status not in (Verdict.AGREE, Verdict.SKIPPED) and output in ("csv", "json", "ndjson"):
                stderr.write(f"{s.label}: {s.note}\n")


# --------------------------------------------------------------------------- gradcli minimize --plot

def loss_curve_format(path: str) -> str:
    """--plot's file type, said before anything is computed (matplotlib included)."""
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    if suffix not in IMAGE_FORMATS:
        raise GradcliError(f"--plot {path}: the file name must end in .png, .svg or .pdf",
                           hint="for the numbers, use --trace FILE.csv")
    folder = os.path.dirname(path)
    if folder and not os.path.isdir(folder):  # said now, not after a long run
        raise GradcliError(f"--plot {path}: there is no folder {folder}")
    need("matplotlib", "--plot (the loss curve)")
    return suffix


def write_loss_curve(report: MinimizeReport, path: str, *, dpi: int = 150) -> str:
    """The loss at every step of a `gradcli minimize` run, drawn into path with matplotlib.

    A log scale when the loss stays positive and falls over more than two decades (as a
    converging descent does); a divergence is marked at the step whose loss was not finite.
    """
    import numpy as np

    fmt = loss_curve_format(path)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    losses = np.asarray(report.losses, dtype=np.float64)
    steps = np.arange(losses.size)
    finite = np.isfinite(losses)
    style: dict[RcKeyType, Any] = {"font.size": 11, "axes.spines.top": False, "axes.spines.right": False,
                                   "axes.grid": True, "grid.color": "#d9d9d9", "grid.linewidth": 0.6,
                                   "svg.hashsalt": "gradcli"}
    with matplotlib.rc_context(style):
        fig = Figure(figsize=(8.0, 5.0), layout="constrained")
        ax = fig.subplots()
        shown = losses[finite]
        ax.plot(steps[finite], shown, color=COLOURS[0], linewidth=2.0,
                marker="o" if losses.size <= 30 else None, markersize=4)
        if shown.size and shown.min() > 0 and shown.max() / shown.min() > 100:
            ax.set_yscale("log")
        if report.diverged_at is not None:
            ax.axvline(report.diverged_at, color=COLOURS[1], linestyle="--", linewidth=1.5,
                       label=f"the loss is not finite at step {report.diverged_at}")
            ax.legend(frameon=False)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_xlim(0, max(1, losses.size - 1))
        fig.suptitle(f"loss = {_short(report.parsed, 70)}", fontsize=13, fontweight="bold")
        why = {"steps": "--steps reached", "tol": "gradient norm below --tol", "diverged": "diverged"}
        ax.set_title(f"{report.call}; {report.dtype}\nloss {_g(report.start.loss)} at step 0, "
                     f"{_g(report.end.loss)} at step {report.end.step}; "
                     f"stopped: {why.get(report.stopped, report.stopped)}",
                     fontsize=9, color="#404040")
        metadata: dict[str, str | None] = ({"Software": "gradcli (matplotlib)"} if fmt == "png"
                                           else {"Creator": "gradcli (matplotlib)"})
        if fmt == "svg":
            metadata["Date"] = None
        _save(fig, path, fmt, dpi, metadata)
    return fmt
