"""The one place where what happened becomes an exit status.

0 ok; 1 the cross-check did not confirm the result; 2 bad input or usage (one error line
and a hint, never a traceback); 3 an internal error (a bug must not look like bad input);
130 interrupted. Every command runs under `statuses`; the console script under `console`.
click's usage errors (an unknown option or command, a missing argument, a bad option value)
become gradcli's own here too (`usage_problem`): one error line that names what was meant,
then the command's usage.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import IO, Any, NoReturn, TypeVar

import typer

# typer vendors click (gradcli depends on no click of its own): its exception classes are
# what the parser raises, and what typer shows.
from typer._click.exceptions import (
    BadOptionUsage,
    BadParameter,
    MissingParameter,
    NoArgsIsHelpError,
    NoSuchOption,
    UsageError,
)

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


# --------------------------------------------------------------------------- usage errors

class UsageProblem(UsageError):
    """A usage error as gradcli says it, on stderr, with exit status 2:

        error: no such option: --dtpye (did you mean --dtype?)
        usage: gradcli grad [OPTIONS] EXPR [VALUE]...  (gradcli grad --help for more)

    typer shows a usage error by calling its `show`; gradcli batch reads `format_message`
    (the error line alone) into a line's result.
    """

    exit_code = int(ExitStatus.BAD_INPUT)

    def show(self, file: IO[Any] | None = None) -> None:
        out = file if file is not None else sys.stderr
        out.write(f"error: {self.message}\n")
        if self.ctx is not None:
            out.write(f"usage: {usage_line(self.ctx)}  ({self.ctx.command_path} --help for more)\n")

    def format_message(self) -> str:
        return self.message


def usage_line(ctx: Any) -> str:
    """The command's usage, on one line: `gradcli grad [OPTIONS] EXPR [VALUE]...`."""
    usage = " ".join(ctx.get_usage().split())
    usage = usage.removeprefix("Usage:").strip()
    return re.sub(r"\{([A-Z]+)\}", r"\1", usage)  # typer writes a required EXPR as {EXPR}


def printable(text: str) -> str:
    """What the user typed, as an error line shows it: control characters escaped
    (gradcli.inputs, imported only here: it loads numpy, which --help never needs)."""
    from gradcli import inputs

    return inputs.printable(text)


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate `word` most likely meant (a typo away), or None."""
    found = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(word: str | None) -> str:
    return f" (did you mean {word}?)" if word else ""


def option_names(command: Any) -> list[str]:
    """Every option a click command takes, long and short, --help included."""
    names = ["--help", "-h"]
    for param in getattr(command, "params", []):
        if getattr(param, "param_type_name", "") == "option":
            names += [*param.opts, *param.secondary_opts]
    return names


def choices_of(param: Any) -> list[str]:
    """The words an option with a fixed set of values takes (its enum's values), or []."""
    choices = getattr(getattr(param, "type", None), "choices", None) or ()
    return [c.value if isinstance(c, Enum) else str(c) for c in choices]


def param_named(command: Any, option: str) -> Any:
    return next((p for p in getattr(command, "params", []) if option in (*p.opts, *p.secondary_opts)), None)


_BAD_VALUE = re.compile(r"""(?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*") is not (?P<what>.*?)\.?$""", re.S)
_TYPE_WORDS = {"a valid int": "a whole number", "a valid integer": "a whole number", "a valid float": "a number",
               "a valid boolean": "true or false"}


def usage_problem(exc: UsageError) -> UsageProblem:
    """click's usage error as gradcli's: what went wrong in gradcli's words, naming the option,
    command or value meant where one is close."""
    ctx, command = exc.ctx, exc.ctx.command if exc.ctx is not None else None
    if isinstance(exc, NoSuchOption):
        near = closest(exc.option_name, option_names(command)) or \
            (sorted(exc.possibilities)[0] if exc.possibilities else None)
        return UsageProblem(f"no such option: {printable(exc.option_name)}{did_you_mean(near)}", ctx)
    if isinstance(exc, BadOptionUsage) and "requires an argument" in exc.message:
        choices = choices_of(param_named(command, exc.option_name))
        wanted = f": one of {', '.join(choices)}" if choices else ""
        return UsageProblem(f"{exc.option_name} needs a value{wanted}", ctx)
    if isinstance(exc, MissingParameter):
        name = exc.param.human_readable_name if exc.param is not None else "an argument"
        return UsageProblem(f"missing {name}", ctx)
    if isinstance(exc, BadParameter):
        param = exc.param
        name = (max(param.opts, key=len) if getattr(param, "param_type_name", "") == "option" else
                param.human_readable_name) if param is not None else "a value"
        bad = _BAD_VALUE.match(exc.message)
        if bad is None:
            return UsageProblem(f"{name}: {plain(exc.message)}", ctx)
        value = printable(bad.group("value")[1:-1])
        choices = choices_of(param)
        if choices:
            return UsageProblem(f"{name} {value}: choose one of {', '.join(choices)}"
                                f"{did_you_mean(closest(value, choices))}", ctx)
        what = bad.group("what")
        return UsageProblem(f"{name} {value}: not {_TYPE_WORDS.get(what, what)}", ctx)
    return UsageProblem(plain(exc.format_message()), ctx)


def plain(message: str) -> str:
    """click's sentence as an error line: lower case first, no full stop."""
    message = printable(message.strip().rstrip("."))
    return message[:1].lower() + message[1:]


def in_gradcli_words(exc: UsageError) -> UsageError:
    """A usage error to raise in place of `exc`: gradcli's, or `exc` itself where it is
    gradcli's already or is the help a command prints when run with no arguments."""
    if isinstance(exc, (UsageProblem, NoArgsIsHelpError)):
        return exc
    return usage_problem(exc)


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
