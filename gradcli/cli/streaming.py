"""The two commands whose output streams while they run, and the terminal I/O around them.

- `gradcli minimize`: a progress line on stderr, a trace (on a file or standard output) as
  the steps go, a loss plot once done, then the result rendered where the trace left room.
- `gradcli grad --points`: a row per point written as it is computed, then notes on stderr.

They live in cli/, not in gradcli.commands, because what they decide is where each stream
goes (stdout, stderr, a terminal or a pipe); the computing is gradcli.commands.minimize's and
gradcli.commands.points', which take the streams they are given.
"""

from __future__ import annotations

import sys
from typing import Any

from gradcli.cli import exits
from gradcli.cli.options import (
    Checks,
    Compute,
    Method,
    Output,
    Reduce,
    ValueOptions,
    expression_text,
)
from gradcli.errors import GradcliError
from gradcli.outputs import refuse_same_file, value_files


def minimize(expression: str, values: list[str], *, fmt: str, trace: str | None, trace_format: str | None,
             plot_file: str | None, quiet: bool, **settings: Any) -> None:
    """Run `gradcli minimize`; `settings` are gradcli.commands.minimize.minimize's own."""
    from gradcli import render

    to_stdout = trace == "-"
    if to_stdout and fmt != "table":
        raise GradcliError(f"--trace - writes the trace to standard output: the {fmt} result cannot go "
                           "there too", hint="write the trace to a file (--trace run.csv, then tail -f run.csv)")
    if plot_file is not None:
        from gradcli.render.plot import loss_curve_format

        loss_curve_format(plot_file)  # a missing matplotlib is said before the run
        data = settings.get("data")
        refuse_same_file([("--plot", plot_file)],  # an output is never an input
                         [*([(f"--data {data}", data)] if data is not None else []), *value_files(values)])
    from gradcli.commands.minimize import minimize as run

    def trace_note(temp: str) -> None:
        # The trace streams into a temporary file until the run ends: where to `tail -f` it.
        if not quiet:
            sys.stderr.write(f"note: the trace streams into {temp} (tail -f it); it becomes {trace} when "
                             "the run ends\n")
            sys.stderr.flush()

    progress = None
    if render.wants_progress(fmt, to_stdout, sys.stderr):
        progress = render.LossProgress(settings["steps"], sys.stderr, settings["dtype"])
    try:
        report = run(expression_text(expression), values, trace=sys.stdout if to_stdout else trace,
                     trace_format_name=trace_format, progress=progress,
                     trace_note=None if to_stdout else trace_note, **settings)
    finally:
        if progress is not None:
            progress.close()  # the progress line is gone before anything else is written
    if plot_file is not None:
        from gradcli.render.plot import write_loss_curve

        write_loss_curve(report, plot_file)
    # With the trace on standard output, the result table is for the person: on stderr.
    render.render(report, fmt, sys.stderr if to_stdout else sys.stdout, sys.stderr, quiet=quiet)
    exits.verdict(report.status)


def grad_points(expression: str, values: list[str], *, points: str | None, rows_file: str | None, wrt: str | None,
                method: Method, order: int, accumulate: int, explain: bool, reduce: Reduce, data: str | None,
                compute: Compute, checks: Checks, value_options: ValueOptions, output: Output,
                quiet: bool) -> None:
    """Run `gradcli grad EXPR --points FILE`: the rows stream out as they are computed."""
    if points is None:
        raise GradcliError("--output writes the rows of --points",
                           hint="gradcli grad EXPR --points FILE.csv --output FILE.npy")
    for flag, used in (("--method", method.value != "grad"), ("--order", order != 1), ("--accumulate", accumulate),
                       ("--explain", explain), ("--data", data is not None), ("--reduce", reduce.value != "sum"),
                       ("--plain", output.plain_flag), ("--json", output.json_flag)):
        if used:
            raise GradcliError(f"{flag} cannot be used with --points",
                               hint="--points computes f and its gradient at every row, written as csv or ndjson rows")
    row_format = "csv" if output.fmt.value == "table" else output.fmt.value
    from gradcli.commands.points import grad_points as run

    summary = run(expression_text(expression), points, values, output=rows_file, fmt=row_format, wrt=wrt,
                  **compute.settings(), **checks.settings(), **value_options.settings())
    sys.stdout.flush()
    if not quiet:
        for line in summary.warnings:
            sys.stderr.write(f"note: {line}\n")
        for line in summary.lines():
            sys.stderr.write(f"note: {line}\n")
    exits.verdict(summary.status)
