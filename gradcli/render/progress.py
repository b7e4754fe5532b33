"""Progress for a person: a bar on stderr with the current loss, while `gradcli minimize` runs."""

from __future__ import annotations

from typing import Any, TextIO

from gradcli.render.common import number


def wants_progress(fmt: str, trace_to_stdout: bool, err: TextIO) -> bool:
    """A progress bar is for a person: a table output, a terminal on stderr, stdout not the trace."""
    import os

    return (fmt == "table" and not trace_to_stdout and hasattr(err, "isatty") and err.isatty()
            and os.environ.get("TERM") != "dumb")


class LossProgress:
    """A rich progress bar with the current loss, on stderr, for runs long enough to need one.

    Called after every step, so it costs one clock read per step: nothing is drawn before the
    run has lasted SHOW_AFTER seconds, and the bar is redrawn at most ten times a second. It
    disappears when the run ends (the table follows).
    """

    SHOW_AFTER = 0.5

    def __init__(self, total_steps: int, err: TextIO, dtype: str = "float64"):
        import time

        self._clock = time.monotonic
        self._started = self._clock()
        self._next = self._started + self.SHOW_AFTER
        self._total, self._err, self._dtype = total_steps, err, dtype
        self._bar: Any = None  # a rich Progress, once the run has lasted SHOW_AFTER seconds
        self._task: Any = None

    def __call__(self, step: int, loss: float) -> None:
        now = self._clock()
        if now < self._next:
            return
        self._next = now + 0.1
        if self._bar is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn("minimizing"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(),
                                 console=Console(file=self._err), transient=True)
            self._task = self._bar.add_task("minimize", total=self._total, completed=step,
                                            loss=number(loss, self._dtype))
            self._bar.start()
            return
        self._bar.update(self._task, completed=step, loss=number(loss, self._dtype))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
