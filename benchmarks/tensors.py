"""Large-tensor speed: gradcli's lowered losses against the same code written in torch.

    python benchmarks/tensors.py [--repeat 5] [--sizes 1000000,10000000]

For each function and size it times, in one process and round-robin (so noise hits all
alike), with parsing and lowering done once:
  - forward + backward of gradcli's lowered function (autodiff.gradient, method grad),
  - forward + backward of the same function written by hand in torch (the baseline),
  - gradcli's symbolic cross-check: the symbolic gradient in float64 and its comparison
    with autograd's (verify.symbolic_gradients + verify.compare).
It prints ratios: ours/hand-written (target <= 1.1) and check/autograd (target <= 2), and
the peak memory of one `gradcli grad` of a 10^7-element float32 gradient, measured as the
resident-set high-water mark of a fresh process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch
from timing import medians  # benchmarks/timing.py, beside this script

from gradcli.core.autodiff import gradient
from gradcli.core.check import compare
from gradcli.core.lower import compile_components
from gradcli.core.parse import parse_expression
from gradcli.core.reference import symbolic_gradients

CASES = {
    "mean((t-p)**2)": (lambda p, t: torch.mean((t - p) ** 2), ["p", "t"], "p"),
    "sum(sin(x)*exp(-x**2))": (lambda x: torch.sum(torch.sin(x) * torch.exp(-x**2)), ["x"], "x"),
}


def hand_pass(fn, values: dict, wrt: str) -> None:
    leaves = {n: v.detach().clone().requires_grad_(n == wrt) for n, v in values.items()}
    (g,) = torch.autograd.grad(fn(**leaves), [leaves[wrt]])
    del g


def check(parsed, table, values, wrt, fn) -> None:
    """The whole cross-check: the symbolic gradient in float64, and its comparison."""
    ours = gradient(fn, values, [wrt], method="grad").gradients[wrt] if wrt not in _GRADS else _GRADS[wrt]
    _GRADS[wrt] = ours
    ref = symbolic_gradients(parsed.components, parsed.shape, table, values, [wrt], "sum")[wrt]
    assert compare(ours, ref, f_finite=True, rtol=1e-4, atol=1e-5).status == "ok"


_GRADS: dict = {}  # the autograd gradient being checked, computed once outside the timing


def peak_rss_mib(n: int) -> float:
    """Peak memory of a whole `gradcli grad` process on an n-element float32 gradient."""
    code = (
        "import resource, sys\n"
        "from gradcli import api\n"
        f"api.grad('mean((t - p)**2)', {{'p': 'randn({n})', 't': 'randn({n})'}}, wrt='p', seed=0)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    for text, (hand, names, wrt) in CASES.items():
        parsed = parse_expression(text)
        table = parsed.symbol_table()
        fn = compile_components(parsed.components, parsed.shape, table, dtype=torch.float32,
                                device=torch.device("cpu"))
        for n in (int(s) for s in args.sizes.split(",")):
            values = {name: torch.randn(n) for name in names}
            _GRADS.clear()
            _GRADS[wrt] = gradient(fn, values, [wrt], method="grad").gradients[wrt]
            m = medians({
                "hand": lambda: hand_pass(hand, values, wrt),
                "ours": lambda: gradient(fn, values, [wrt], method="grad"),
                "check": lambda: check(parsed, table, values, wrt, fn),
            }, args.repeat)
            rows.append({"function": text, "n": n, "hand_s": m["hand"], "ours_over_hand": m["ours"] / m["hand"],
                         "check_over_autograd": m["check"] / m["ours"], "check_s": m["check"]})
    peak = peak_rss_mib(10**7)
    if args.json:
        print(json.dumps({"rows": rows, "peak_rss_mib_1e7_float32": peak}, indent=2))
        return
    print(f"{'function':<24} {'n':>9} {'hand (s)':>9} {'ours/hand':>10} {'check/autograd':>15} {'check (s)':>10}")
    for r in rows:
        print(f"{r['function']:<24} {r['n']:>9} {r['hand_s']:>9.4f} {r['ours_over_hand']:>10.2f} "
              f"{r['check_over_autograd']:>15.2f} {r['check_s']:>10.4f}")
    print(f"peak RSS of `gradcli grad 'mean((t - p)**2)'` with 10^7-element float32 p, t: {peak:.0f} MiB "
          f"(importing torch and sympy alone takes about 250 MiB)")
    for r in rows:
        ok = r["ours_over_hand"] <= 1.1 and r["check_over_autograd"] <= 2
        print(f"{'PASS' if ok else 'MISS'}  {r['function']} n={r['n']}: ours/hand {r['ours_over_hand']:.2f} "
              f"(<= 1.1), check/autograd {r['check_over_autograd']:.2f} (<= 2)")


if __name__ == "__main__":
    main()
