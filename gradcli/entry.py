"""The `gradcli` console script: forward the call to a warm server, or run it in process.

Only the standard library is imported until it is known that the call runs here: a call the
server answers never loads torch, sympy, typer or rich in this process.

GRADCLI_SERVER chooses:
  auto (the default)  use a running server (`gradcli server start`); without one, run here
  off                 always run here
  require             use the server; without one (or with one of another version), exit 2
"""

from __future__ import annotations

import os
import sys


def _error(message: str, hint: str | None = None) -> int:
    sys.stderr.write(f"error: {message}\n" + (f"hint: {hint}\n" if hint else ""))
    return 2


def forwarded(args: list[str]) -> int | None:
    """The exit status of the call run by the server, or None to run it in process."""
    mode = os.environ.get("GRADCLI_SERVER", "auto").strip().lower() or "auto"
    from gradcli.warm import protocol as warm

    if mode not in warm.MODES:
        return _error(f"GRADCLI_SERVER must be auto, off or require, not {os.environ['GRADCLI_SERVER']!r}")
    if mode == "off" or (args and args[0] == "server"):  # `gradcli server ...` manages it, here
        return None
    try:
        status = warm.forward(args)
    except warm.Refused as exc:
        if mode == "require":
            return _error(f"GRADCLI_SERVER=require, but the gradcli server will not run this call: {exc}",
                          "gradcli server stop, then gradcli server start (for this gradcli)")
        return None
    except warm.NotPrivate as exc:
        # Someone else's socket or directory: never talk to it. In process is safe, and
        # `gradcli server status` says what is wrong.
        if mode == "require":
            return _error(f"the gradcli server's directory is not private: {exc}",
                          "remove it and start the server again")
        return None
    if status is None and mode == "require":
        return _error("GRADCLI_SERVER=require, but no gradcli server is running",
                      "start one with: gradcli server start")
    return status


def main() -> None:
    try:
        status = forwarded(sys.argv[1:])
    except KeyboardInterrupt:  # Ctrl-C before the server took the call: as in process
        sys.stderr.write("\ninterrupted\n")
        status = 130
    if status is not None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except OSError:
                pass
        # Nothing to tear down: the server ran the call. Skipping interpreter teardown saves
        # a few milliseconds of a call that takes tens.
        os._exit(status)
    from gradcli.cli.app import main as in_process

    in_process()
