"""Renderers: a report in, text (or a plot) out. The CLI uses only these names.

On the cli branch these re-export gradcli.render.text as it stands; the render split brings
render/table.py, render/text.py and render/progress.py behind the same five names.
"""

from gradcli.render.text import LossProgress, number, render, render_diff, wants_progress

__all__ = ["LossProgress", "number", "render", "render_diff", "wants_progress"]
