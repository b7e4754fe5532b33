"""Jacobian speed: gradcli's default path against hand-written torch.func.jacrev, same process.

    python benchmarks/jacobian.py [--repeat 5]

For each function and size n it times, as a library call with parsing and lowering done once:
  - gradcli's default Jacobian (autodiff.jacobian with the method `auto` picks),
  - the same function written by hand in torch, through torch.func.jacrev (the baseline),
  - gradcli's `loop` method (one backward per output row, as the seeds teach),
  - the symbolic cross-check (reference.symbolic_jacobians) on top of the default.
It prints ratios to the baseline, never bare seconds alone: these machines are shared and
noisy, and a ratio measured in one run is what stays comparable.
Targets (issue 3): default within 1.5x of jacrev at n=1000; the check at most 2x on top.
"""

from __future__ import annotations

import argparse

import torch
from timing import medians  # benchmarks/timing.py, beside this script

from gradcli.core.autodiff import jacobian, pick_jacobian_method
from gradcli.core.lower import compile_components
from gradcli.core.parse import parse_expression
from gradcli.core.reference import symbolic_jacobians

CASES = {
    "x**2 + y*sin(x)": lambda x, y: x**2 + y * torch.sin(x),
    "x**2 + sin(x)*sum(x)": lambda x, y: x**2 + torch.sin(x) * torch.sum(x),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--loop-max", type=int, default=100,
                    help="skip the loop method above this n (it is O(n) backward passes)")
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    for text, hand in CASES.items():
        parsed = parse_expression(text)
        for n in (int(s) for s in args.sizes.split(",")):
            values = {"x": torch.randn(n), "y": torch.randn(n)}
            values = {k: v for k, v in values.items() if k in parsed.variables}
            fn = compile_components(parsed.components, parsed.shape, parsed.symbol_table(),
                                    dtype=torch.float32, device=torch.device("cpu"))
            method = pick_jacobian_method(n, n)
            y = values.get("y", torch.zeros(n))
            fns = {
                "baseline": lambda: torch.func.jacrev(lambda x: hand(x, y))(values["x"]),
                "ours": lambda: jacobian(fn, values, ["x"], method=method),
                "check": lambda: symbolic_jacobians(parsed.components, parsed.shape, parsed.symbol_table(),
                                                    values, ["x"]),
            }
            if n <= args.loop_max:
                fns["loop"] = lambda: jacobian(fn, values, ["x"], method="loop")
            m = medians(fns, args.repeat)
            baseline, ours, check, loop = m["baseline"], m["ours"], m["check"], m.get("loop")
            rows.append((text, n, baseline, ours, check, loop))

    print(f"{'function':<22} {'n':>5} {'jacrev (s)':>11} {'default/jacrev':>15} {'check/default':>14} "
          f"{'loop/default':>13}")
    for text, n, baseline, ours, check, loop in rows:
        loop_s = f"{loop / ours:>13.1f}" if loop is not None else f"{'(skipped)':>13}"
        print(f"{text:<22} {n:>5} {baseline:>11.5f} {ours / baseline:>15.2f} {check / ours:>14.2f} {loop_s}")
    for text, n, baseline, ours, check, _ in rows:
        if n == 1000:
            print(f"target {text} n=1000: default/jacrev {ours / baseline:.2f} (<= 1.5: "
                  f"{'PASS' if ours / baseline <= 1.5 else 'MISS'}), check adds {check / ours:.2f}x "
                  f"(<= 2: {'PASS' if check / ours <= 2 else 'MISS'})")


if __name__ == "__main__":
    main()
