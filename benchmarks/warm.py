#!/usr/bin/env python3
"""Warm mode against a cold start: one gradcli call as a whole process, with and without a server.

Run it with the interpreter gradcli is installed in:

    python benchmarks/warm.py                  # 15 interleaved runs of each command
    python benchmarks/warm.py --runs 40
    python benchmarks/warm.py --pycache-prefix /tmp/gradcli-pyc   # see startup.py's "Bytecode"
    python benchmarks/warm.py --json

It starts its own server (`gradcli server start`, in a temporary XDG_RUNTIME_DIR, so a server
of yours is neither used nor disturbed), and stops it at the end. Each command is a fresh
process, timed from spawn to exit:

    floor   python -c pass                                   the interpreter alone
    cold    GRADCLI_SERVER=off gradcli grad "2*x**2+5" x=5   imports torch and sympy, in process
    warm    GRADCLI_SERVER=require gradcli grad "2*x**2+5" x=5   handed to the server

The commands run round-robin after one warm-up each, as in startup.py, so machine noise hits
them alike; the ratios of the medians are what to compare across machines. The target is
absolute, as the issue states it: the warm median under 50 ms (qalc answers a derivative in
about 59 ms on the machine the issue was measured on). On a loaded machine even the floor
moves; the table prints it so that the warm figure can be read against it.

Exit status: 0 whether or not the target is met; 1 if a command failed (its timing would mean
nothing), 2 if gradcli or the interpreter cannot be found.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import Abort, find_programs

EXPRESSION = "2*x**2+5"
WARM_TARGET_S = 0.050
TIMEOUT_S = 300.0


def run_once(argv: list[str], env: dict[str, str], label: str) -> float:
    start = time.perf_counter()
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise Abort(f"{label}: still running after {TIMEOUT_S:.0f} s", 1) from None
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise Abort(f"{label}: exited with status {proc.returncode}\n{proc.stderr.decode(errors='replace')}", 1)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Median wall time of a gradcli call cold, warm (served), "
                                                 "and of `python -c pass`, measured in the same run.")
    parser.add_argument("--runs", type=int, default=15, metavar="N", help="timed runs of each (default: 15)")
    parser.add_argument("--python", metavar="PATH", help="interpreter for the floor")
    parser.add_argument("--gradcli", metavar="PATH", help="gradcli entry point")
    parser.add_argument("--pycache-prefix", metavar="DIR", help="run every process with PYTHONPYCACHEPREFIX=DIR")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    try:
        python, gradcli = find_programs(args.python, args.gradcli)
    except Abort as exc:
        sys.stderr.write(f"warm.py: {exc}\n")
        return exc.status

    runtime = tempfile.mkdtemp(prefix="gradcli-bench-")
    os.chmod(runtime, 0o700)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPROFILEIMPORTTIME", "PYTHONVERBOSE", "PYTHONDEVMODE", "PYTHONTRACEMALLOC")}
    env["XDG_RUNTIME_DIR"] = runtime
    if args.pycache_prefix:
        prefix = Path(args.pycache_prefix).absolute()
        prefix.mkdir(parents=True, exist_ok=True)
        env["PYTHONPYCACHEPREFIX"] = str(prefix)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    call = [str(gradcli), "grad", EXPRESSION, "x=5"]
    commands = {
        "floor": ("python -c pass", [str(python), "-c", "pass"], env),
        "cold": (f'gradcli grad "{EXPRESSION}" x=5 (in process)', call, {**env, "GRADCLI_SERVER": "off"}),
        "warm": (f'gradcli grad "{EXPRESSION}" x=5 (served)', call, {**env, "GRADCLI_SERVER": "require"}),
    }
    times: dict[str, list[float]] = {key: [] for key in commands}
    try:
        started = subprocess.run([str(gradcli), "server", "start"], env=env, capture_output=True, text=True,
                                 timeout=TIMEOUT_S)
        if started.returncode != 0:
            raise Abort(f"gradcli server start failed:\n{started.stderr}", 1)
        sys.stderr.write(f"measuring 3 commands, 1 warm-up + {args.runs} runs each...\n")
        for label, command, command_env in commands.values():
            run_once(command, command_env, label)
        keys = list(commands)
        for r in range(args.runs):
            for key in keys[r % 3:] + keys[: r % 3]:
                label, command, command_env = commands[key]
                times[key].append(run_once(command, command_env, label))
    except Abort as exc:
        sys.stderr.write(f"warm.py: {exc}\n")
        return exc.status
    finally:
        subprocess.run([str(gradcli), "server", "stop"], env=env, capture_output=True, timeout=TIMEOUT_S)
        shutil.rmtree(runtime, ignore_errors=True)

    median = {key: statistics.median(t) for key, t in times.items()}
    best = {key: min(t) for key, t in times.items()}
    ratios = {"cold/warm": median["cold"] / median["warm"], "warm/floor": median["warm"] / median["floor"],
              "cold/floor": median["cold"] / median["floor"]}
    passed = median["warm"] < WARM_TARGET_S
    if args.json:
        print(json.dumps({"runs": args.runs, "median_s": median, "min_s": best, "times_s": times, "ratios": ratios,
                          "target": {"warm_median_below_s": WARM_TARGET_S, "pass": passed},
                          "loadavg": list(os.getloadavg()), "cpus": os.cpu_count()}, indent=2))
        return 0
    print(f"gradcli warm mode: {args.runs} interleaved runs of each command, after 1 warm-up")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print()
    print(f"{'command':<48} {'median':>9} {'min':>9}")
    for key, (label, _, _) in commands.items():
        print(f"{label:<48} {median[key] * 1000:7.1f} ms {best[key] * 1000:6.1f} ms")
    print()
    print(f"warm is {ratios['cold/warm']:.1f}x faster than cold; warm = {ratios['warm/floor']:.2f}x the floor "
          f"(+{(median['warm'] - median['floor']) * 1000:.1f} ms); cold = {ratios['cold/floor']:.1f}x the floor")
    print(f"{'PASS' if passed else 'MISS'}  warm median {median['warm'] * 1000:.1f} ms "
          f"(target < {WARM_TARGET_S * 1000:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
