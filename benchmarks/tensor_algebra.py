"""Tensor programs: gradcli's forward+backward against the same code written by hand in torch,
and the matrix-form check against the autograd pass, same process.

    python benchmarks/tensor_algebra.py [--repeat 5] [--sizes 100,1000] [--threads 1]

For each program and size n, with parsing and lowering done once (as a library call does):
  - hand: the program written by hand in torch (float32), loss.backward() (the baseline),
  - ours: gradcli's lowered function and autodiff.gradient on the same values,
  - check: the matrix-form check (core/matrix_form.py): the parsed tree converted to a sympy
    matrix expression, differentiated by sympy's matrix calculus, evaluated in float64 with
    numpy, with sympy's cache cleared before each run so that every run derives it afresh.
It prints ratios to the baseline, never bare seconds alone: these machines are shared and
noisy, and a ratio measured in one run is what stays comparable.
Targets (issue 17): ours within 1.1x of hand-written torch; the check under 0.5 s at n = 1000.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from sympy.core.cache import clear_cache
from timing import medians  # benchmarks/timing.py, beside this script

from gradcli.core import matrix_form
from gradcli.core.autodiff import gradient
from gradcli.core.lower import compile_components
from gradcli.core.parse import parse_expression

Values = dict[str, torch.Tensor]


def least_squares(n: int) -> tuple[Values, Callable[[Values], torch.Tensor]]:
    values = {"A": torch.randn(n, n) / n**0.5, "x": torch.randn(n), "b": torch.randn(n)}
    return values, lambda v: torch.sum((v["A"] @ v["x"] - v["b"]) ** 2)


def log_determinant(n: int) -> tuple[Values, Callable[[Values], torch.Tensor]]:
    m = torch.randn(n, n) / n**0.5
    values = {"X": m @ m.T + torch.eye(n)}  # positive definite: logdet is finite
    return values, lambda v: torch.logdet(v["X"])


CASES = {
    "sum((A @ x - b)**2)": (least_squares, ["x", "A"]),
    "logdet(X)": (log_determinant, ["X"]),
}


def _once(fn: Callable[[], object]) -> float:
    fn()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _repeated(fn: Callable[[], object], times: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(times):
            fn()
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch's intra-op threads (0: torch's default); 1 on a loaded machine, where a pass "
                         "otherwise waits for a busy core and the timings swing a hundredfold")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for text, (make, wrt) in CASES.items():
        parsed = parse_expression(text)
        for n in (int(s) for s in args.sizes.split(",")):
            values, hand = make(n)
            fn = compile_components(parsed.components, parsed.shape, parsed.symbol_table(),
                                    dtype=torch.float32, device=torch.device("cpu"))
            shapes = {v.symbol: tuple(values[name].shape) for name, v in parsed.variables.items()}
            as_numpy = {k: v.double().numpy().reshape(v.shape[0], -1) for k, v in values.items()}

            def by_hand(values: Values = values, hand: Callable[[Values], torch.Tensor] = hand,
                        wrt: list[str] = wrt) -> None:
                leaves = {k: v.detach().requires_grad_(k in wrt) for k, v in values.items()}
                hand(leaves).backward()

            def check(text: str = text, wrt: list[str] = wrt, shapes: dict = shapes,  # type: ignore[type-arg]
                      as_numpy: dict = as_numpy) -> list[np.ndarray]:  # type: ignore[type-arg]
                clear_cache()  # sympy derives it afresh every run
                converter = matrix_form.Converter(shapes)
                objective = converter.convert(parse_expression(text).expr)
                out = []
                for name in wrt:
                    symbol = next(s for s in converter.symbols.values() if str(s) == name)
                    out.append(matrix_form.evaluate(matrix_form.gradient(objective, symbol), as_numpy))
                return out

            def ours(fn: Callable = fn, values: Values = values, wrt: list[str] = wrt) -> None:  # type: ignore[type-arg]
                gradient(fn, values, wrt, method="grad", reduction="sum")

            # hand and ours alternate, each repeated to ~20 ms a measurement (a single 30 µs pass is
            # all noise); the check, which loads numpy's threads, is timed after them, on its own
            inner = max(1, int(0.02 / max(_once(by_hand), 1e-6)))
            # The check is right before it is timed: against autograd in float64.
            ours64 = gradient(fn, {k: v.double() for k, v in values.items()}, wrt, method="grad", reduction="sum")
            for name, got in zip(wrt, check(), strict=True):
                expected = ours64.gradients[name].numpy()
                np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=1e-6, atol=1e-8)
            m = medians({"hand": _repeated(by_hand, inner), "ours": _repeated(ours, inner)}, args.repeat)
            checked = medians({"check": check}, args.repeat)
            rows.append((text, n, m["hand"] / inner, m["ours"] / inner, checked["check"]))

    print(f"{'program':<22} {'n':>5} {'hand (s)':>10} {'ours/hand':>10} {'check (s)':>10} {'check/ours':>11}")
    for text, n, hand_s, ours_s, check_s in rows:
        print(f"{text:<22} {n:>5} {hand_s:>10.5f} {ours_s / hand_s:>10.2f} {check_s:>10.4f} {check_s / ours_s:>11.2f}")
    for text, n, hand_s, ours_s, check_s in rows:
        if n == 1000:
            print(f"target {text} n=1000: ours/hand {ours_s / hand_s:.2f} (<= 1.1: "
                  f"{'PASS' if ours_s / hand_s <= 1.1 else 'MISS'}), check {check_s:.3f} s (< 0.5: "
                  f"{'PASS' if check_s < 0.5 else 'MISS'})")


if __name__ == "__main__":
    main()
