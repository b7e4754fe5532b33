"""The two checking routes against the autograd pass they check, in one process.

    python benchmarks/check_routes.py [--repeat 5]

For three problems it times, round-robin (benchmarks/timing.py):
  - the autograd pass: forward and backward (for the Jacobian, torch's vectorised jacrev);
  - the symbolic route: sympy's derivative, lowered and evaluated in float64, and the comparison
    (core/reference.py and core/check.py, what `gradcli grad` runs);
  - the numeric route: finite differences in float64 with Richardson extrapolation and the
    comparison (core/numeric.py): entry by entry for the scalar function, along random
    directions for the others.
Problems: a scalar function of two scalars; a 10^6-element elementwise gradient; the
500 x 500 Jacobian of softmax. Issue 18's goals: the numeric route's directional checks at most
4x the autograd pass; the symbolic check of the 10^6-element gradient at most 2x. Ratios are
printed beside seconds: on a shared machine the ratio is what stays comparable.
"""

from __future__ import annotations

import argparse

import torch
from timing import medians  # benchmarks/timing.py, beside this script

from gradcli.core.autodiff import gradient, jacobian
from gradcli.core.check import compare
from gradcli.core.numeric import gradient_probe, jacobian_probe
from gradcli.core.reference import symbolic_gradients, symbolic_jacobians
from gradcli.core.session import float64_function, prepare

DTYPE = {"dtype": "float32"}  # the user's dtype: --dtype


def session(expression: str, values: dict[str, object]):
    return prepare(expression, values, wrt=None, dtype=DTYPE["dtype"], device="cpu", rtol=None, atol=None, seed=7,
                   max_elements=10**8)


def gradient_problem(expression: str, values: dict[str, object]) -> dict:
    st = session(expression, values)
    fn64 = float64_function(st)
    answer = gradient(st.fn, st.tensors, st.wrt, method="grad", reduction="sum").gradients

    def autograd_pass() -> None:
        gradient(st.fn, st.tensors, st.wrt, method="grad", reduction="sum")

    def symbolic_route() -> None:
        refs = symbolic_gradients(st.parsed.components, st.parsed.shape, st.table, st.tensors, st.wrt, "sum")
        for n in st.wrt:
            assert compare(answer[n], refs[n], f_finite=True, rtol=st.rtol, atol=st.atol).status == "agree"

    def numeric_route() -> None:
        for n in st.wrt:
            verdict = gradient_probe(fn64, st.tensors, n).judge(answer[n], rtol=st.rtol, atol=st.atol)
            assert verdict.status == "agree", verdict

    return {"autograd pass": autograd_pass, "symbolic route": symbolic_route, "numeric route": numeric_route}


def jacobian_problem() -> dict:
    st = session("softmax(x)", {"x": "randn(500)"})
    fn64 = float64_function(st)
    answer = jacobian(st.fn, st.tensors, st.wrt, method="rev").results

    def autograd_pass() -> None:
        jacobian(st.fn, st.tensors, st.wrt, method="rev")

    def symbolic_route() -> None:
        refs = symbolic_jacobians(st.parsed.components, st.parsed.shape, st.table, st.tensors, st.wrt)
        assert compare(answer["x"], refs["x"], f_finite=True, rtol=st.rtol, atol=st.atol).status == "agree"

    def numeric_route() -> None:
        verdict = jacobian_probe(fn64, st.tensors, "x").judge(answer["x"], rtol=st.rtol, atol=st.atol)
        assert verdict.status == "agree", verdict

    return {"autograd pass": autograd_pass, "symbolic route": symbolic_route, "numeric route": numeric_route}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared machine, a thread waiting for a busy core swamps the ratios)")
    ap.add_argument("--dtype", default="float32",
                    help="the user's dtype (the routes compute in float64 whatever it is: float32's pass is cheaper)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    DTYPE["dtype"] = args.dtype
    problems = {
        "scalar: sin(x)*exp(y) + x**2*y": gradient_problem("sin(x)*exp(y) + x**2*y", {"x": 0.7, "y": -0.3}),
        "10^6 elementwise: sum(sin(x)*exp(x/4) + x**2)": gradient_problem(
            "sum(sin(x)*exp(x/4) + x**2)", {"x": "randn(1000000)"}),
        "500 x 500 Jacobian: softmax(x)": jacobian_problem(),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}; median of {args.repeat}")
    for title, fns in problems.items():
        times = medians(fns, args.repeat)
        base = times["autograd pass"]
        print(title)
        for name, seconds in times.items():
            print(f"  {name:<16} {seconds * 1e3:9.2f} ms   {seconds / base:5.2f}x")


if __name__ == "__main__":
    main()
