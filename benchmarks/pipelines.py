#!/usr/bin/env python3
"""Throughput of gradcli in shell pipelines: `gradcli batch`, `grad --points`, one process or many.

Run it with the interpreter gradcli is installed in:

    python benchmarks/pipelines.py                  # the figures of issue 5 (about 5 minutes)
    python benchmarks/pipelines.py --quick          # fewer rows and expressions (under a minute)
    python benchmarks/pipelines.py --rounds 5       # more interleaved rounds, steadier medians
    python benchmarks/pipelines.py --json-only      # --json against the table at 10^6 elements

It prints, in one run:

1. `gradcli batch` on N distinct small expressions (grad with the check), with its default
   worker processes (one per CPU) and with --jobs 1 (all in one process): expressions per
   second end to end, and after the start-up (the time of a one-line batch, measured in the
   same rounds, taken off); beside it, the same expressions through the library
   (gradcli.grad) in this process, the pipeline without the command line.
2. The same N lines as N separate `gradcli grad` processes: --processes of them are run and
   the time scaled to N, as a ratio to the one batch.
3. `gradcli grad "sin(x)*exp(-x**2)+log(1+y**2)" --points` over --rows rows: CSV in and out at
   full precision, and .npy in and out (--output FILE.npy); rows per second end to end and
   after the start-up (a one-row file's run), and in this process through the library
   (gradcli.commands.points.grad_points, no start-up to take off). Beside them, in this process: numpy's own read
   (np.loadtxt) and write (np.savetxt, '%.17g') of the same CSV, and the bare batched torch
   computation (forward and backward of sum(f) by hand, float32), as points per second.
4. `gradcli grad "mean((t - p)**2)" p=randn(N) t=randn(N) --wrt p` at N = 10^6 (--elements),
   printing --json into a file against printing the table: whole processes, and the same
   report rendered both ways in this process; the ratio is issue 19's figure (at most 1.5x).
   --json-only runs this part alone.
5. The batch and both --points runs again, end to end, through a warm server (`gradcli server
   start`, in a temporary XDG_RUNTIME_DIR of its own): each call a whole process, without the
   start-up. The runs of 1 to 4 set GRADCLI_SERVER=off, so a server of yours does not serve them.

Whole processes are timed wall-clock, round-robin (one run of each, then the next round) so
that load on this shared machine hits each alike; medians are printed. The script only
measures: it exits 0 whatever the figures, 1 if a measured command fails.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import medians

from gradcli.warm.fanout import default_jobs

EXPRESSION = "sin(x)*exp(-x**2)+log(1+y**2)"
TARGETS = {"batch": 400.0, "csv": 4e5, "npy": 5e6}  # expressions/s, rows/s (issue 5)


def gradcli_executable() -> str:
    here = Path(sys.executable).parent / "gradcli"
    found = str(here) if here.exists() else shutil.which("gradcli")
    if not found:
        sys.exit("gradcli is not installed next to this interpreter: pip install -e .")
    return found


def distinct_requests(n: int, seed: int = 0) -> list[str]:
    """n small expressions, all different, in two variables: grad with the check (the default)."""
    rng = random.Random(seed)
    functions = ["sin({v})", "cos({v})", "exp({v})", "tanh({v})", "log(1 + {v}**2)", "sqrt(1 + {v}**2)",
                 "sigmoid({v})", "atan({v})"]
    lines = []
    for i in range(n):
        a, b = rng.randint(2, 9), rng.randint(1, 4)
        f = rng.choice(functions).format(v="x")
        lines.append(f'grad "{a}*{f}*y**{b} + {i + 1}*x" x=0.{rng.randint(1, 9)} y=1.{rng.randint(1, 9)}')
    return lines


def timed(argv: list[str], stdout=subprocess.DEVNULL, stdin=None, env=None) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, stdout=stdout, stdin=stdin, stderr=subprocess.PIPE, text=True, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.stderr.write(f"failed ({result.returncode}): {' '.join(argv)}\n{result.stderr}")
        sys.exit(1)
    return elapsed


def round_robin(commands: dict, rounds: int) -> dict[str, float]:
    """Median wall time of each command, run one after another in each round."""
    times: dict[str, list[float]] = {k: [] for k in commands}
    keys = list(commands)
    for r in range(rounds):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            times[k].append(commands[k]())
    return {k: statistics.median(v) for k, v in times.items()}


def write_points(directory: Path, rows: int) -> tuple[Path, Path, Path, np.ndarray]:
    rng = np.random.default_rng(0)
    table = np.column_stack([rng.uniform(-3, 3, rows), rng.uniform(-3, 3, rows)])
    csv_path, npy_path, one = directory / "points.csv", directory / "points.npy", directory / "one.csv"
    with open(csv_path, "w") as f:
        f.write("x,y\n")
        for start in range(0, rows, 100_000):
            block = table[start:start + 100_000]
            f.write(("%r,%r\n" * len(block)) % tuple(block.ravel().tolist()))
    np.save(npy_path, np.rec.fromarrays([table[:, 0], table[:, 1]], names="x,y"))
    one.write_text("x,y\n0.5,1.5\n")
    return csv_path, npy_path, one, table


def bare_torch(table: np.ndarray) -> float:
    """Seconds for the batched computation alone: f, df/dx, df/dy at every row, by hand."""
    import torch

    x = torch.tensor(table[:, 0], dtype=torch.float32)
    y = torch.tensor(table[:, 1], dtype=torch.float32)

    def run():
        xs, ys = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        f = torch.sin(xs) * torch.exp(-xs**2) + torch.log(1 + ys**2)
        torch.autograd.grad(f.sum(), [xs, ys])
    return medians({"torch": run}, 5)["torch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expressions", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=50)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--elements", type=int, default=1_000_000, help="the gradient's size for --json")
    parser.add_argument("--quick", action="store_true", help="200 expressions, 10 processes, 200,000 rows")
    parser.add_argument("--json-only", action="store_true", help="only --json against the table")
    args = parser.parse_args()
    if args.quick:
        args.expressions, args.processes, args.rows = 200, 10, 200_000
    exe = gradcli_executable()
    work = Path(tempfile.mkdtemp(prefix="gradcli-pipelines-"))
    try:
        if args.json_only:
            json_versus_table(exe, work, args)
        else:
            run(exe, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


JSON_TARGET = 1.5  # --json at most this many times the table's time (issue 19)


def json_versus_table(exe: str, work: Path, args) -> None:
    """A 10^6-element gradient written as JSON (into a file: compact) against the same run's table."""
    n = args.elements
    argv = ["grad", "mean((t - p)**2)", f"p=randn({n})", f"t=randn({n})", "--wrt", "p", "--seed", "0",
            "--device", "cpu"]
    cold = {**os.environ, "GRADCLI_SERVER": "off"}
    written = {"json": work / "out.json", "table": work / "out.txt"}

    def whole(fmt: str) -> float:
        with open(written[fmt], "w") as out:
            return timed([exe, *argv, *(["--json"] if fmt == "json" else [])], stdout=out, env=cold)
    t = round_robin({"table": lambda: whole("table"), "json": lambda: whole("json")}, args.rounds)
    size = written["json"].stat().st_size
    print(f"gradcli grad \"mean((t - p)**2)\" p=randn({n:,}) t=randn({n:,}) --wrt p, whole processes "
          f"(GRADCLI_SERVER=off)")
    print(f"  table into a file {t['table']:6.2f} s")
    print(f"  --json into a file {t['json']:5.2f} s ({size / 1e6:.1f} MB): {t['json'] / t['table']:.2f}x the table   "
          f"target at most {JSON_TARGET}x")

    import io

    from gradcli.commands.grad import grad
    from gradcli.render import OutputChoice, render

    report = grad(argv[1], argv[2:4], wrt="p", seed=0, device="cpu")

    def rendered(fmt: str) -> None:
        render(report, OutputChoice(fmt), io.StringIO(), io.StringIO())
    compute = medians({"grad": lambda: grad(argv[1], argv[2:4], wrt="p", seed=0, device="cpu")}, args.rounds)["grad"]
    r = medians({"table": lambda: rendered("table"), "json": lambda: rendered("json")}, args.rounds)
    print(f"  in this process: computing and checking {compute:.2f} s; rendering the table {r['table']:.3f} s, "
          f"the JSON {r['json']:.3f} s; computing and JSON take {(compute + r['json']) / (compute + r['table']):.2f}x "
          "computing and the table\n")


def run(exe: str, work: Path, args) -> None:
    import torch

    print(f"gradcli pipelines benchmark: {args.rounds} interleaved rounds, medians; "
          f"torch {torch.__version__} on {torch.get_num_threads()} thread(s)\n")

    # 1 and 2: batch against separate processes
    lines = distinct_requests(args.expressions)
    requests = work / "requests.txt"
    requests.write_text("\n".join(lines) + "\n")
    one_request = work / "one.txt"
    one_request.write_text(lines[0] + "\n")
    cold = {**os.environ, "GRADCLI_SERVER": "off"}  # a process of its own, whatever else runs
    t = round_robin({
        "batch": lambda: timed([exe, "batch", str(requests)], env=cold),
        "batch -j 1": lambda: timed([exe, "batch", "--jobs", "1", str(requests)], env=cold),
        "batch of one": lambda: timed([exe, "batch", str(one_request)], env=cold),
    }, args.rounds)
    n = args.expressions
    print(f"gradcli batch, {n} distinct expressions (grad with the check), {default_jobs()} worker(s) by default")
    for key, label in (("batch", "default --jobs"), ("batch -j 1", "--jobs 1, one process")):
        after_startup = (n - 1) / max(t[key] - t["batch of one"], 1e-3)
        print(f"  {label:22s} {t[key]:5.2f} s: {n / t[key]:6,.0f} expressions/s end to end; "
              f"{after_startup:6,.0f}/s after the start-up ({t['batch of one']:.2f} s)   "
              f"target {TARGETS['batch']:.0f}/s")
    one_process = (n - 1) / max(t["batch -j 1"] - t["batch of one"], 1e-3)

    import shlex

    import gradcli

    split = [shlex.split(line) for line in lines]
    start = time.perf_counter()
    for argv in split:  # the same pipeline as a library: no click, no JSON, no start-up
        gradcli.grad(argv[1], argv[2:])
    library = time.perf_counter() - start
    print(f"  the library in this process, gradcli.grad on each line: {n / library:,.0f}/s; "
          f"batch --jobs 1 after its start-up runs at {one_process / (n / library):.2f}x that")
    sample = split[:args.processes]
    start = time.perf_counter()
    for argv in sample:
        timed([exe, *argv], env=cold)
    separate = (time.perf_counter() - start) / len(sample) * n
    print(f"  {n} separate gradcli grad processes: {separate:.0f} s (from {len(sample)}, scaled): "
          f"{separate / t['batch']:.0f}x the one batch\n")

    # 3: --points
    csv_path, npy_path, one, table = write_points(work, args.rows)
    rows = args.rows
    out_csv, out_npy = work / "out.csv", work / "out.npy"

    def points_csv():
        with open(out_csv, "w") as out:
            return timed([exe, "grad", EXPRESSION, "--points", str(csv_path), "--quiet"], stdout=out, env=cold)

    t = round_robin({
        "csv": points_csv,
        "npy": lambda: timed([exe, "grad", EXPRESSION, "--points", str(npy_path), "--output", str(out_npy),
                              "--quiet"], env=cold),
        "one": lambda: timed([exe, "grad", EXPRESSION, "--points", str(one), "--quiet"], env=cold),
    }, args.rounds)
    with open(out_csv) as written:
        assert sum(1 for _ in written) == rows + 1 and len(np.load(out_npy, mmap_mode="r")) == rows

    def numpy_read():
        np.loadtxt(csv_path, delimiter=",", skiprows=1)

    def numpy_write():
        np.savetxt(work / "np.csv", table, fmt="%.17g", delimiter=",")
    from gradcli.commands.points import grad_points

    def library_csv():
        with open(out_csv, "w") as out:
            grad_points(EXPRESSION, str(csv_path), out=out)

    def library_npy():
        grad_points(EXPRESSION, str(npy_path), output=str(out_npy))
    base = medians({"read": numpy_read, "write": numpy_write, "library csv": library_csv,
                    "library npy": library_npy}, args.rounds)
    torch_s = bare_torch(table)
    print(f"gradcli grad \"{EXPRESSION}\" --points, {rows:,} rows (float32; start-up {t['one']:.2f} s)")
    for key, label in (("csv", "CSV in, CSV out"), ("npy", ".npy in, --output .npy")):
        extra = t[key] - t["one"]
        marginal = f"{rows / extra:>12,.0f} rows/s" if extra > 0.01 else "   (within the start-up's noise)"
        print(f"  {label:24s} {t[key]:6.2f} s: {rows / t[key]:>12,.0f} rows/s end to end; "
              f"{marginal} after the start-up   target {TARGETS[key]:,.0f}")
    for key, label in (("csv", "CSV in, CSV out"), ("npy", ".npy in, --output .npy")):
        took = base["library " + key]
        print(f"  {label:24s} {took:6.2f} s: {rows / took:>12,.0f} rows/s in this process (grad_points, no "
              f"start-up)   target {TARGETS[key]:,.0f}")
    io_s = base["read"] + base["write"]
    print(f"  numpy, this process:     read {base['read']:.2f} s + write {base['write']:.2f} s of the same CSV "
          f"(2 columns): gradcli's CSV rows in this process take {base['library csv'] / io_s:.2f}x that "
          "(it writes 5 columns and the checks)")
    print(f"  bare torch, this process: {torch_s:.3f} s: {rows / torch_s:,.0f} points/s (forward and backward, "
          "no check, no I/O)")

    # 4: --json against the table, at 10^6 elements
    json_versus_table(exe, work, args)

    # 5: the same, end to end, through a warm server (gradcli server start): no start-up to pay
    xdg = work / "xdg"
    xdg.mkdir(mode=0o700)
    served = {**os.environ, "XDG_RUNTIME_DIR": str(xdg), "GRADCLI_SERVER": "require"}
    started = subprocess.run([exe, "server", "start"], env={**served, "GRADCLI_SERVER": "auto"},
                             capture_output=True, text=True)
    if started.returncode != 0:
        print(f"\n(no warm server: {started.stderr.strip()})")
        return
    try:
        def served_csv():
            with open(out_csv, "w") as out:
                return timed([exe, "grad", EXPRESSION, "--points", str(csv_path), "--quiet"], stdout=out, env=served)
        w = round_robin({
            "batch": lambda: timed([exe, "batch", str(requests)], env=served),
            "csv": served_csv,
            "npy": lambda: timed([exe, "grad", EXPRESSION, "--points", str(npy_path), "--output", str(out_npy),
                                  "--quiet"], env=served),
        }, args.rounds)
    finally:
        subprocess.run([exe, "server", "stop"], env=served, capture_output=True)
    print("\nThrough a warm server (gradcli server start), end to end: each call a whole process of its own")
    print(f"  gradcli batch, {n} expressions  {w['batch']:6.2f} s: {n / w['batch']:>12,.0f} expressions/s   "
          f"target {TARGETS['batch']:.0f}/s")
    for key, label in (("csv", "CSV in, CSV out"), ("npy", ".npy in, --output .npy")):
        print(f"  --points, {label:22s}{w[key]:6.2f} s: {rows / w[key]:>12,.0f} rows/s          "
              f"target {TARGETS[key]:,.0f}")


if __name__ == "__main__":
    main()
