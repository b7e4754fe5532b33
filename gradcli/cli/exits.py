"""The one place where what happened becomes an exit status.

0 ok; 1 the cross-check did not confirm the result; 2 bad input or usage (one error line
and a hint, never a traceback); 3 an internal error (a bug must not look like bad input);
130 interrupted. Every command runs under `statuses`; the console script under `console`.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import typer

from gradcli.errors import ExitStatus, GradcliError

Command = TypeVar("Command", bound=Callable[..., Any])


def fail(exc: GradcliError) -> typer.Exit:
    """Bad input: its lines on stderr, and exit status 2."""
    for line in exc.lines():
        sys.stderr.write(line + "\n")
    return typer.Exit(int(exc.status))


def reader_left() -> typer.Exit:
    """The reader of our output left (| head -1): stop quietly, as shell tools do."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # so nothing complains about the pipe at exit
    return typer.Exit(0)


def internal_error(exc: BaseException) -> typer.Exit:
    if os.environ.get("GRADCLI_DEBUG"):
        raise exc
    sys.stderr.write(
        f"internal error: {type(exc).__name__}: {exc}\n"
        "hint: this is a bug in gradcli; GRADCLI_DEBUG=1 shows the traceback\n"
    )
    return typer.Exit(int(ExitStatus.INTERNAL))


def exit_for(exc: Exception) -> BaseException:
    """What a command raises for an exception out of its work: bad input is one error line and
    exit 2, a reader that left (| head) a quiet exit, typer's own exits themselves, and anything
    else an internal error. Ctrl-C is no Exception: it goes up to `console`."""
    if isinstance(exc, GradcliError):
        return fail(exc)
    if isinstance(exc, BrokenPipeError):
        return reader_left()
    if isinstance(exc, typer.Exit):
        return exc
    return internal_error(exc)


@contextmanager
def exit_statuses() -> Iterator[None]:
    """Run a command's work: whatever it raises leaves as its exit status (see exit_for)."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - sorted out by exit_for
        raise exit_for(exc) from None


def statuses(command: Command) -> Command:
    """`command`, run under exit_statuses: every command is, so none catches for itself."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        with exit_statuses():
            return command(*args, **kwargs)

    return run  # type: ignore[return-value]


def verdict(status: str) -> None:
    """Leave with status 1 when a report's check failed (status "failed"); "unchecked" is 0:
    nothing disagreed, and the output says what was not checked."""
    if status == "failed":
        raise typer.Exit(int(ExitStatus.CHECK_FAILED))


def console(app: Callable[..., Any]) -> NoReturn:
    """The console script: run the app, then leave without tearing torch down.

    Interpreter teardown with torch loaded costs about 0.3 s and changes nothing the user sees,
    so once the output is flushed the process ends at once.
    """
    try:
        app(prog_name="gradcli")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
    except KeyboardInterrupt:
        # Ctrl-C: the shell convention, 128 + SIGINT, and no traceback.
        sys.stderr.write("\ninterrupted\n")
        code = 130
    except BrokenPipeError:
        code = 0  # the reader left (| head): nothing more to say, and nowhere to say it
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        # Python would complain about the closed pipe when it flushes at exit: point stdout
        # at /dev/null first, so `gradcli ... | head -1` ends quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    if "torch" in sys.modules:
        os._exit(code)
    sys.exit(code)
