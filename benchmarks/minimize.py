"""The per-step overhead of `gradcli minimize`'s loop over a hand-written torch loop.

    python benchmarks/minimize.py [--rows 100000] [--steps 1000] [--repeat 7] [--threads N]

The problem is seed 002's line fit, mean(0.5*(y - (w*x + b))**2), on `rows` points of
y = 2x + 5 + noise, by SGD with lr 0.05 for `steps` steps. In one process, round-robin (so
noise hits all alike), it times:

  - hand: the seeds' loop written in torch over gradcli's lowered loss (the same function
    gradcli runs): opt.zero_grad(); loss = fn(env); loss.backward(); opt.step()  (baseline);
  - loop: gradcli.commands.minimize.descend on the same function, parameters and optimizer: the loop
    `gradcli minimize` runs (it also reads the loss each step, to stop at once on NaN, and
    keeps the last finite parameters);
  - loop + trace: the same with a CSV trace record per step (to a temporary file);
  - whole call: gradcli.commands.minimize(...) from the text, values given as arrays: parsing,
    lowering, the loop, and the symbolic check at the first and last point;
  - torch by hand: the loss written directly in torch (no lowering), for reference.

It prints each median time per step and its ratio to the baseline; the target for `loop` is
1.2. On a shared machine a run of 1,000 steps is long enough for the load to change between
two of them, so hand and loop run one after the other in each round (in turns first), and the ratio that
decides is the median over the rounds of loop/hand measured side by side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

from gradcli.commands.minimize import TraceWriter, descend
from gradcli.commands.minimize import minimize as gradcli_minimize
from gradcli.core.session import prepare
from gradcli.core.values import array_value

LOSS = "mean(0.5*(y - (w*x + b))**2)"
LR = 0.05


def rounds(fns: dict, repeat: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each function's wall-clock and CPU time in each of `repeat` rounds, after a warm-up.

    The first two (the pair compared) run one after the other, in turns first; then the rest.
    CPU time (this process's, all threads) leaves out the time other programs held the cores.
    """
    for fn in fns.values():
        fn()
    names = list(fns)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeat):
        pair = names[:2] if r % 2 == 0 else names[1::-1]
        for name in pair + names[2:]:
            start, start_cpu = time.perf_counter(), time.process_time()
            fns[name]()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch's intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, args.rows)
    y = 2 * x + 5 + rng.standard_normal(args.rows)
    values = {"w": "0", "b": "0", "x": array_value(x, "x"), "y": array_value(y, "y")}
    st = prepare(LOSS, values, wrt="w,b", dtype="float32", device="cpu", rtol=None, atol=None, seed=None,
                max_elements=10**9)
    constants = {n: t for n, t in st.tensors.items() if n not in ("w", "b")}

    def fresh():
        params = {n: st.tensors[n].detach().clone().requires_grad_(True) for n in ("w", "b")}
        return params, {**constants, **params}, torch.optim.SGD(list(params.values()), lr=LR)

    results: dict[str, torch.Tensor] = {}

    def hand():
        params, env, opt = fresh()
        for _ in range(args.steps):
            opt.zero_grad()
            loss = st.fn(env)
            loss.backward()
            opt.step()
        results["hand"] = params["w"].detach()

    def loop():
        params, env, opt = fresh()
        descend(st.fn, env, params, opt, args.steps)
        results["loop"] = params["w"].detach()

    trace_file = tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False)  # noqa: SIM115

    def loop_trace():
        params, env, opt = fresh()
        trace_file.seek(0)
        descend(st.fn, env, params, opt, args.steps, trace=TraceWriter(trace_file, "csv", params))

    def whole_call():
        report = gradcli_minimize(LOSS, values, wrt="w,b", lr=LR, steps=args.steps, device="cpu")
        assert report.status == "ok"

    xt, yt = constants["x"], constants["y"]

    def torch_by_hand():
        w = torch.zeros((), requires_grad=True)
        b = torch.zeros((), requires_grad=True)
        opt = torch.optim.SGD([w, b], lr=LR)
        for _ in range(args.steps):
            opt.zero_grad()
            loss = (0.5 * (yt - (w * xt + b)) ** 2).mean()
            loss.backward()
            opt.step()

    fns = {"hand": hand, "loop": loop, "loop + trace": loop_trace, "whole call": whole_call,
           "torch by hand": torch_by_hand}
    try:
        wall, cpu = rounds(fns, args.repeat)
    finally:
        trace_file.close()
        os.unlink(trace_file.name)
    # The loop takes the same steps as the hand-written one: one more evaluation (at the end
    # point) but the same parameters, to the bit.
    assert torch.equal(results["hand"], results["loop"]), "the loop and the hand-written loop differ"
    print(f"line fit, {args.rows:,} rows, {args.steps:,} SGD steps, float32 on cpu, "
          f"{torch.get_num_threads()} torch threads; median of {args.repeat} rounds")
    print(f"  {'':<14} {'wall clock':<26}   {'CPU time'}")
    for name in fns:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"  {name:<14} {w / args.steps * 1e6:8.1f} µs/step {w / statistics.median(wall['hand']):5.2f}x hand"
              f"   {c / args.steps * 1e6:8.1f} µs/step {c / statistics.median(cpu['hand']):5.2f}x hand")
    for label, samples in (("wall clock", wall), ("CPU time", cpu)):
        paired = [a / b for a, b in zip(samples["loop"], samples["hand"], strict=True)]
        ratio = statistics.median(paired)
        print(f"gradcli's loop / hand-written loop ({label}), median of {len(paired)} rounds: {ratio:.3f}x "
              f"(rounds from {min(paired):.3f} to {max(paired):.3f}; target <= 1.2): "
              f"{'ok' if ratio <= 1.2 else 'OVER'}")
    sys.exit(0)


if __name__ == "__main__":
    main()
