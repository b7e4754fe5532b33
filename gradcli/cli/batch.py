"""`gradcli batch`: many requests, one start-up; one JSON result per line, in the input's order.

A request is a line as typed after `gradcli`, or a JSON object. Each runs as its command runs
(the same click command, its output format replaced by one JSON line), its output captured;
a line in error is that line's error object, and the batch goes on. The lines are spread over
worker processes by gradcli.warm.fanout.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import IO, Any

import typer

from gradcli.errors import GradcliError
from gradcli.report import SCHEMA_VERSION

NOT_IN_BATCH = {"batch", "server"}  # a batch in a batch; the server is managed from the shell
# Options that read or write a file: refused on a batch line unless the batch has --allow-files
# (batch input often comes from someone else's file). x=@FILE and --data are refused where
# they are read, too (gradcli.inputs.files_refused), which also covers @FILE in other options.
FILE_OPTIONS = ("--output", "--trace", "--plot", "--out", "--data", "--points")
_FORMAT_FLAGS = {"--json", "--plain"}
_FORMAT_OPTIONS = {"--format", "-f"}

Request = tuple[int, "str | None"]  # (line number, its text; None where it is not UTF-8)
Result = tuple[int, str]  # (exit status, the result as one JSON line)


def request_args(line: str) -> list[str]:
    """A batch line as the argument list gradcli's commands take."""
    import json
    import shlex

    text = line.strip()
    if text.startswith("{"):
        try:
            request = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GradcliError(f"not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(request, dict) or "command" not in request:
            raise GradcliError('a JSON request needs "command" (and "expr", "values", "options")')
        unknown = set(request) - {"command", "expr", "values", "options"}
        if unknown:
            raise GradcliError(f"unknown key(s) in the request: {', '.join(sorted(unknown))}")
        args = [str(request["command"])]
        if "expr" in request:
            args.append(str(request["expr"]))
        values = request.get("values") or {}
        if not isinstance(values, dict):
            raise GradcliError('"values" must be an object of NAME: VALUE')
        for name, value in values.items():
            args.append(f"{name}={value if isinstance(value, str) else json.dumps(value)}")
        options = request.get("options") or {}
        if not isinstance(options, dict):
            raise GradcliError('"options" must be an object of OPTION: VALUE')
        for name, value in options.items():
            flag = "--" + str(name).lstrip("-").replace("_", "-")
            if value is True:
                args.append(flag)
            elif value is False:
                args.append("--no-" + flag[2:])
            else:
                args += [flag, value if isinstance(value, str) else json.dumps(value)]
        return args
    try:
        args = shlex.split(text)
    except ValueError as exc:
        raise GradcliError(f"could not split this line into words: {exc}") from None
    return args[1:] if args and args[0] == "gradcli" else args


def machine_output(args: list[str]) -> list[str]:
    """The request's arguments with its own output format replaced by one JSON line."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in _FORMAT_FLAGS or a == "--dot":
            continue
        if a in _FORMAT_OPTIONS:
            skip = True
            continue
        if a.startswith("--format="):
            continue
        out.append(a)
    return out + ["--format", "ndjson"]


def file_option(command: Any, args: list[str]) -> str | None:
    """The first option of FILE_OPTIONS that `args` give `command` (as click reads them: -o,
    --output=FILE and short flags run together included), or None; None too where click cannot
    read them (the line then fails with click's own error, having touched nothing)."""
    wanted = {p.name: next(o for o in p.opts if o in FILE_OPTIONS) for p in command.params
              if any(o in FILE_OPTIONS for o in p.opts)}
    if not wanted:
        return None
    try:
        # The command's own parser ("-x**2" is an expression there, not options); resilient:
        # no callback runs (--help prints nothing), and a usage error is left to the real run.
        with command.make_context(command.name, list(args), resilient_parsing=True) as ctx:
            given = dict(ctx.params)
    except Exception:  # noqa: BLE001 - a usage error: reported when the line runs
        return None
    return next((option for name, option in wanted.items() if given.get(name) is not None), None)


def run_line(group: Any, item: Request, allow_files: bool = False) -> Result:
    """One batch line run as its command would run, a subcommand of the click `group`; with
    allow_files False, a line that would read or write a file is refused (its error object)."""
    import io
    import json
    from contextlib import nullcontext, redirect_stderr, redirect_stdout

    from gradcli.inputs import files_refused

    number, line = item
    status, out, err, plain = 2, "", "", False
    try:
        if line is None:
            raise GradcliError("this line is not UTF-8 text", hint="save the requests as UTF-8")
        args = request_args(line)
        commands = sorted(set(group.commands) - NOT_IN_BATCH)
        if not args or args[0] in NOT_IN_BATCH:
            raise GradcliError(f"a line must name a command ({', '.join(commands)})")
        # The command itself, not the group around it: one click context a line, not two.
        subcommand = group.commands.get(args[0])
        if subcommand is None:
            raise GradcliError(f"no such command '{args[0]}'", hint="a line starts with one of: " + ", ".join(commands))
        if "--points" in args or any(a.startswith("--points=") for a in args):
            # --points streams a row per point: one JSON line per request cannot hold them
            raise GradcliError("--points cannot be a batch line: it writes a row per point",
                               hint="run gradcli grad EXPR --points FILE as a command of its own")
        plain = wants_plain(args)
        arguments = machine_output(args)[1:]
        option = None if allow_files else file_option(subcommand, arguments)
        if option is not None:
            raise GradcliError(f"{option}: a batch line does not read or write files; gradcli batch --allow-files "
                               "allows it", hint="batch lines often come from others: allow files only for "
                               "requests you trust")
        captured_out, captured_err = io.StringIO(), io.StringIO()
        gate = nullcontext() if allow_files else files_refused("a batch line")
        with gate, redirect_stdout(captured_out), redirect_stderr(captured_err):
            try:
                code = subcommand.main(args=arguments, prog_name=f"gradcli {args[0]}",
                                       standalone_mode=False)
                status = int(code or 0)
            except Exception as exc:  # noqa: BLE001 - click's usage errors, for this line only
                message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
                captured_err.write(f"error: {message}\n")
                status = 2
        out, err = captured_out.getvalue(), captured_err.getvalue()
    except GradcliError as exc:
        err = "\n".join(exc.lines())
    result: dict[str, Any] | None = None
    if out.strip() and status in (0, 1):
        try:
            result = json.loads(out.strip().splitlines()[-1])
        except json.JSONDecodeError:  # --help, say: text, not a result
            status, err = 2, "error: this line printed no result (was it --help?)"
    if result is not None and plain:
        result = with_plain(result)
    if result is None:
        lines = [x for x in err.strip().splitlines() if x]
        message = lines[0].removeprefix("error: ") if lines else "failed"
        hint = next((x.removeprefix("hint: ") for x in lines if x.startswith("hint: ")), None)
        result = error_document(message, hint, status)
    return line_result(result, number, status)


def wants_plain(args: list[str]) -> bool:
    """Whether a line asked for --plain (or --format plain), which its one JSON line replaces."""
    for a, after in zip(args, [*args[1:], None], strict=True):
        if a == "--plain" or a in ("--format=plain", "-fplain") or a in _FORMAT_OPTIONS and after == "plain":
            return True
    return False


def with_plain(doc: dict[str, Any]) -> dict[str, Any]:
    """A line's result with what --plain would have printed, under "plain" (text); a command
    whose --plain prints no numbers says so in the result's warnings instead."""
    from gradcli.render.text import plain_of_document

    text = plain_of_document(doc) if "error" not in doc else None
    doc["plain"] = text
    if text is None and "error" not in doc:
        doc.setdefault("warnings", []).append(f"--plain: gradcli batch gives {doc.get('command')}'s result as "
                                              "this JSON only (its plain output is not numbers)")
    return doc


def error_document(message: str, hint: str | None, status: int) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "error": {"message": message, "hint": hint, "exit_status": status}}


def line_result(doc: dict[str, Any], number: int, status: int) -> Result:
    """A line's result as batch writes it: the document, its line number and exit status."""
    import json

    doc["line"] = number
    doc["exit_status"] = status
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    # json.dumps escapes C0 controls but writes DEL, C1 (\x9b is a terminal's CSI) and bidi
    # controls raw: escaped too (the same string to a JSON reader), so no text from a line
    # reaches a terminal as an escape sequence.
    return status, _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


def worker_key(item: Request) -> str | None:
    """What decides which worker runs a line: its expression, whose caches that worker holds."""
    try:
        args = request_args(item[1]) if item[1] is not None else []
    except GradcliError:
        return item[1]
    return args[1] if len(args) > 1 else item[1]


def lost_line(item: Request, why: str) -> Result:
    """The result of a line whose worker process died before it answered."""
    doc = error_document(f"this line was not run: {why}", "run it again, as a command of its own or in "
                         "gradcli batch --jobs 1", 3)
    return line_result(doc, item[0], 3)


def requests(stream: IO[Any]) -> Iterator[Request]:
    """(line number, text) of each request; text None for a line that is not UTF-8 text.

    Read as bytes and decoded line by line: one undecodable line is that line's error, not
    the end of the batch (a text stream fails on the whole chunk it was reading).
    """
    lines, number = iter(getattr(stream, "buffer", stream)), 0
    while True:
        try:
            raw = next(lines)
        except StopIteration:
            return
        except OSError as exc:  # the requests could not be read on (a device gone, a directory)
            raise GradcliError(f"cannot read the requests after line {number}: {exc.strerror or exc}") from None
        number += 1
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                yield number, None
                continue
        if raw.strip() and not raw.lstrip().startswith("#"):
            yield number, raw


def open_requests(source: str) -> IO[Any]:
    """The stream of requests: standard input (claimed, so a line's x=@- cannot eat it) or a file."""
    if source == "-":
        from gradcli.inputs import claim_stdin

        if sys.stdin is None:  # started with standard input closed (<&-)
            raise GradcliError("cannot read the requests: standard input is closed",
                               hint="give a file, gradcli batch FILE")
        claim_stdin("gradcli batch (its requests)")
        return sys.stdin
    try:
        return open(source, "rb")  # closed by run_batch; read as bytes, decoded line by line
    except OSError as exc:
        raise GradcliError(f"cannot read {source}: {exc.strerror}") from None


def run_batch(group: Any, source: str, jobs: int | None, allow_files: bool = False) -> None:
    """Run every request of `source` through the click `group`'s commands, writing each result
    as soon as it and those before it are done; leave with the worst line's exit status.
    allow_files: lines may read and write files (--output, --trace, x=@FILE, ...)."""
    import functools
    import gc

    from gradcli.warm import fanout

    stream = open_requests(source)
    jobs = jobs or fanout.default_jobs()
    import gradcli.api  # noqa: F401 - before the freeze below, and before any worker is forked
    # What the imports made lives as long as the batch: no collection need walk it again (unless
    # the host froze its own objects already, as the warm server does: its freeze is not ours).
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    worst = 0
    try:
        run = functools.partial(run_line, group, allow_files=allow_files)
        results = fanout.ordered_map(run, requests(stream), jobs=jobs, key=worker_key, lost=lost_line)
        for status, text in results:
            try:
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
            except BrokenPipeError:  # | head -1: the reader has what it wanted (cli/exits.py ends quietly)
                results.close()
                raise
            # 2 (any error, internal ones included) over 1 (a check disagreed) over 0
            worst = max(worst, 2 if status not in (0, 1) else status)
    finally:
        if freeze:
            gc.unfreeze()  # a library host (or a test) calling batch in process collects as before
        if stream is not sys.stdin:
            stream.close()
        else:
            from gradcli.inputs import reset_stdin

            reset_stdin()  # the requests are read: a later call in this process may claim it
    if worst:
        raise typer.Exit(worst)
