#!/usr/bin/env python3
"""Start-up time of gradcli, measured as whole processes, as ratios to a floor.

Run it with the interpreter gradcli is installed in:

    python benchmarks/startup.py                 # 7 interleaved runs of each command
    python benchmarks/startup.py --runs 15       # more runs, steadier medians
    python benchmarks/startup.py --json          # the numbers as JSON, for scripts
    python benchmarks/startup.py --gradcli /path/to/venv/bin/gradcli
    python benchmarks/startup.py --pycache-prefix /tmp/gradcli-pyc   # see "Bytecode" below

What it measures, each as a fresh process, wall-clock from spawn to exit (and, on Unix, the
process's CPU time, shown for reference: it is less disturbed by other load than wall time):

    floor          python -c "import torch, sympy, typer, rich"
    grad           gradcli grad "2*x**2+5" x=5           (table output)
    grad --plain   gradcli grad "2*x**2+5" x=5 --plain
    --help         gradcli --help
    --version      gradcli --version

The floor is what any tool built on these four libraries pays just to import them, in the
same interpreter and environment as gradcli. `grad` must load torch and sympy, so its honest
yardstick is that floor, not a number of seconds: gradcli meets its target when `grad` costs
at most 0.9x of the floor (it may avoid parts of the libraries, and it skips interpreter
teardown), and `--help` must stay under 0.15 s because it must not load torch or sympy at all.

Why ratios rather than absolute times: these runs happen on shared, noisy machines (CI
runners, laptops on battery, containers with two cores), where the same command can take
1.7 s one minute and 3 s the next. Such noise slows the floor and gradcli alike, so the
ratio of their medians, measured in the same run, stays put while the seconds do not. To
make that true, the commands are run round-robin (one run of each, then the next round,
starting each round at a different command) after one warm-up of each, so that a burst of
load or a cold disk cache hits every command equally; the median resists outliers, and the
min shows the best the machine could do. Only `--help`'s target is absolute: it is about a
user waiting on a keystroke, and no heavy library is in it to scale against.

Bytecode: the measured processes inherit this environment. Where PYTHONDONTWRITEBYTECODE is
set and gradcli is installed in editable mode (its source tree has no __pycache__), every run
compiles gradcli's own modules from source, some tens of milliseconds that a user of a normal
install, whose .pyc files were written by pip, never pays; torch and sympy come with theirs,
so only gradcli is penalised. The table says so when it happens. `--pycache-prefix DIR` runs
every process with PYTHONPYCACHEPREFIX=DIR and bytecode writing on, so all modules, gradcli's
included, run from bytecode cached in DIR, outside any source tree. The first warm-up with a
new DIR compiles everything there (slow, once); reuse the DIR to skip that.

The script only measures: it exits 0 whether or not a target is met. It exits 1 if a
measured command fails (each must exit 0, or the timing means nothing), and 2 if the
interpreter or gradcli cannot be found. It uses the standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

try:
    import resource  # Unix: CPU time of finished children
except ImportError:  # Windows: wall time only
    resource = None

FLOOR_CODE = "import torch, sympy, typer, rich"
EXPRESSION = "2*x**2+5"
GRAD_RATIO_TARGET = 0.9  # grad's median at most this times the floor's median
HELP_SECONDS_TARGET = 0.15  # --help's median under this many seconds
TIMEOUT_S = 300.0  # per process; a hung command aborts the benchmark


@dataclass
class Command:
    key: str  # short stable id, used in JSON
    label: str  # how it is shown in the table
    argv: list[str]
    times: list[float] = field(default_factory=list)  # wall seconds
    cpu_times: list[float] = field(default_factory=list)  # user+system seconds, where known

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def cpu_median(self) -> float | None:
        return statistics.median(self.cpu_times) if self.cpu_times else None


class Abort(Exception):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- finding things

def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _shebang_python(script: Path) -> Path | None:
    """The interpreter named on a console script's `#!` line, if it names one by path."""
    try:
        with open(script, "rb") as f:
            first = f.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    parts = first[2:].decode(errors="replace").split()
    if not parts or not Path(parts[0]).name.startswith("python"):  # `#!/usr/bin/env python`, `#!/bin/sh`
        return None
    return Path(parts[0])


def find_programs(python_arg: str | None, gradcli_arg: str | None) -> tuple[Path, Path]:
    """The interpreter and the gradcli entry point, both checked to exist.

    Symlinks are kept as given: a virtualenv's bin/python is a link, and resolving it
    would leave the virtualenv.
    """
    if python_arg:
        python = Path(shutil.which(python_arg) or python_arg).absolute()
    elif gradcli_arg and (named := _shebang_python(Path(gradcli_arg))) is not None:
        python = named  # the interpreter that gradcli itself runs on
    else:
        python = Path(sys.executable)
    if not _executable(python):
        raise Abort(f"python interpreter not found or not executable: {python}\n"
                    "hint: pass --python PATH", 2)

    if gradcli_arg:
        gradcli = Path(shutil.which(gradcli_arg) or gradcli_arg).absolute()
        if not _executable(gradcli):
            raise Abort(f"gradcli not found or not executable: {gradcli}", 2)
        return python, gradcli

    bindir = python.parent  # bin/ (Scripts\ on Windows) of the interpreter, venv or not
    found = shutil.which("gradcli", path=str(bindir))
    if found is None:
        on_path = shutil.which("gradcli")
        hint = (f"\nnote: there is a gradcli on PATH, at {on_path}; if it is the one you mean, "
                f"pass --gradcli {on_path}" if on_path else "")
        raise Abort(
            f"gradcli not found next to the interpreter {python} (looked in {bindir})\n"
            "hint: run this script with the python of the environment gradcli is installed in, "
            "or pass --gradcli PATH (and --python PATH)" + hint, 2)
    return python, Path(found).absolute()


# --------------------------------------------------------------------------- measuring

def _children_cpu() -> float | None:
    if resource is None:
        return None
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_once(cmd: Command, env: dict[str, str]) -> tuple[float, float | None]:
    """Wall time of one process, from spawn to exit, and its CPU time (None where unknown).

    Aborts unless the process exits 0.
    """
    cpu_start = _children_cpu()
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd.argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise Abort(f"{cmd.label}: still running after {TIMEOUT_S:.0f} s\n"
                    f"command: {shlex.join(cmd.argv)}", 1) from None
    except OSError as exc:
        raise Abort(f"{cmd.label}: cannot run it: {exc}\ncommand: {shlex.join(cmd.argv)}", 1) from None
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-15:]
        raise Abort(
            f"{cmd.label}: exited with status {proc.returncode}; its timings would mean nothing\n"
            f"command: {shlex.join(cmd.argv)}\n" + "\n".join("  | " + line for line in tail), 1)
    cpu_end = _children_cpu()
    return elapsed, (None if cpu_start is None or cpu_end is None else cpu_end - cpu_start)


def measure(commands: list[Command], runs: int, env: dict[str, str]) -> None:
    for cmd in commands:  # warm-up: disk cache, .pyc files, first-run work; not recorded
        run_once(cmd, env)
    n = len(commands)
    for r in range(runs):  # round-robin, each round starting one command later
        for cmd in commands[r % n:] + commands[:r % n]:
            wall, cpu = run_once(cmd, env)
            cmd.times.append(wall)
            if cpu is not None:
                cmd.cpu_times.append(cpu)


# --------------------------------------------------------------------------- reporting

def targets(by_key: dict[str, Command]) -> list[dict]:
    floor = by_key["floor"].median
    out = []
    for key in ("grad", "grad_plain"):
        c = by_key[key]
        ratio = c.median / floor
        out.append({
            "name": f"{c.label}: median <= {GRAD_RATIO_TARGET}x floor",
            "command": key, "statistic": "median/floor_median", "value": ratio,
            "limit": GRAD_RATIO_TARGET, "pass": ratio <= GRAD_RATIO_TARGET,
            "text": f"{c.label}: median {c.median:.3f} s = {ratio:.2f}x floor "
                    f"(target <= {GRAD_RATIO_TARGET:.2f}x)",
        })
    h = by_key["help"]
    out.append({
        "name": f"{h.label}: median < {HELP_SECONDS_TARGET} s",
        "command": "help", "statistic": "median_s", "value": h.median,
        "limit": HELP_SECONDS_TARGET, "pass": h.median < HELP_SECONDS_TARGET,
        "text": f"{h.label}: median {h.median:.3f} s (target < {HELP_SECONDS_TARGET:.3f} s)",
    })
    return out


def bytecode_note(env: dict[str, str]) -> str | None:
    """A warning when gradcli's modules are compiled from source on every run, else None."""
    if env.get("PYTHONPYCACHEPREFIX"):
        return None
    if not env.get("PYTHONDONTWRITEBYTECODE"):
        return None  # the warm-up writes any missing .pyc files
    return ("PYTHONDONTWRITEBYTECODE is set: modules without a .pyc (an editable gradcli's) are "
            "compiled from source on every run; --pycache-prefix DIR avoids that")


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def print_table(commands: list[Command], checks: list[dict], python: Path, gradcli: Path,
                runs: int, load: tuple[list[float] | None, list[float] | None], env: dict[str, str],
                bytecode: str | None) -> None:
    floor = commands[0].median
    print(f"gradcli start-up: {runs} interleaved runs of each command, after 1 warm-up")
    print(f"python:  {python}")
    print(f"gradcli: {gradcli}")
    if load[0] is not None and load[1] is not None:
        print(f"machine: {os.cpu_count()} CPUs, load average {load[0][0]:.2f} before, {load[1][0]:.2f} after")
    if env.get("PYTHONPYCACHEPREFIX"):
        print(f"pycache: {env['PYTHONPYCACHEPREFIX']}")
    if bytecode:
        print(f"note:    {bytecode}")
    print()
    cpu_floor = commands[0].cpu_median
    rows = [("command", "median", "min", "vs floor")]
    rows += [(c.label, f"{c.median:.3f} s", f"{c.best:.3f} s", f"{c.median / floor:.2f}x") for c in commands]
    if cpu_floor:  # CPU time: less sensitive to other load than wall time; for reference only
        rows[0] += ("cpu median", "cpu vs floor")
        for i, c in enumerate(commands, 1):
            rows[i] += (f"{c.cpu_median:.3f} s", f"{c.cpu_median / cpu_floor:.2f}x")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        print(f"{r[0]:<{widths[0]}}  " + "  ".join(f"{v:>{w}}" for v, w in zip(r[1:], widths[1:], strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()
    print("targets, on wall-clock medians:")
    for t in checks:
        print(f"{'PASS' if t['pass'] else 'MISS'}  {t['text']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Measure gradcli's start-up as whole processes, as ratios to the cost of "
                    f"`python -c \"{FLOOR_CODE}\"` measured in the same run.")
    parser.add_argument("--runs", type=int, default=7, metavar="N",
                        help="timed runs of each command, after one warm-up (default: 7)")
    parser.add_argument("--python", metavar="PATH",
                        help="interpreter for the floor (default: the one running this script, "
                             "or the one on --gradcli's #! line)")
    parser.add_argument("--gradcli", metavar="PATH",
                        help="gradcli entry point (default: the one next to the interpreter)")
    parser.add_argument("--pycache-prefix", metavar="DIR",
                        help="run every process with its bytecode cached in DIR (PYTHONPYCACHEPREFIX), "
                             "bytecode writing on; see the module docstring")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON instead of a table")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    try:
        python, gradcli = find_programs(args.python, args.gradcli)
        g = str(gradcli)
        commands = [
            Command("floor", f'floor: python -c "{FLOOR_CODE}"', [str(python), "-c", FLOOR_CODE]),
            Command("grad", f'gradcli grad "{EXPRESSION}" x=5', [g, "grad", EXPRESSION, "x=5"]),
            Command("grad_plain", f'gradcli grad "{EXPRESSION}" x=5 --plain',
                    [g, "grad", EXPRESSION, "x=5", "--plain"]),
            Command("help", "gradcli --help", [g, "--help"]),
            Command("version", "gradcli --version", [g, "--version"]),
        ]
        env = dict(os.environ)
        for var in ("PYTHONPROFILEIMPORTTIME", "PYTHONVERBOSE", "PYTHONDEVMODE", "PYTHONTRACEMALLOC"):
            env.pop(var, None)  # settings that would slow every process and skew the numbers
        if args.pycache_prefix:
            prefix = Path(args.pycache_prefix).absolute()
            prefix.mkdir(parents=True, exist_ok=True)
            env["PYTHONPYCACHEPREFIX"] = str(prefix)
            env.pop("PYTHONDONTWRITEBYTECODE", None)
        bytecode = bytecode_note(env)
        sys.stderr.write(f"measuring {len(commands)} commands, 1 warm-up + {args.runs} runs each...\n")
        sys.stderr.flush()
        load_before = _loadavg()
        measure(commands, args.runs, env)
        load_after = _loadavg()
    except Abort as exc:
        sys.stderr.write(f"startup.py: {exc}\n")
        return exc.status

    by_key = {c.key: c for c in commands}
    checks = targets(by_key)
    if args.json:
        floor = by_key["floor"].median
        doc = {
            "python": str(python),
            "gradcli": str(gradcli),
            "runs": args.runs,
            "warmup": 1,
            "pycache_prefix": env.get("PYTHONPYCACHEPREFIX"),
            "dont_write_bytecode": bool(env.get("PYTHONDONTWRITEBYTECODE")),
            "bytecode_note": bytecode,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "loadavg_before": load_before, "loadavg_after": load_after},
            "commands": {
                c.key: {"label": c.label, "argv": c.argv, "times_s": c.times, "median_s": c.median,
                        "min_s": c.best, "ratio_to_floor": c.median / floor,
                        "cpu_times_s": c.cpu_times or None, "cpu_median_s": c.cpu_median,
                        "cpu_ratio_to_floor": (c.cpu_median / by_key["floor"].cpu_median
                                               if c.cpu_median and by_key["floor"].cpu_median else None)}
                for c in commands
            },
            "targets": [{k: v for k, v in t.items() if k != "text"} for t in checks],
        }
        print(json.dumps(doc, indent=2))
    else:
        print_table(commands, checks, python, gradcli, args.runs, (load_before, load_after), env, bytecode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
