"""The numeric route (gradcli/core/numeric.py): finite differences with Richardson extrapolation.

Its estimates are compared with derivatives written out by hand here, and its verdicts with
answers known to be right or wrong. It must catch a lowering whose backward is wrong on its
own (sympy plays no part), and work for every function of the registry.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gradcli.core import numeric
from gradcli.core.check import Verdict
from gradcli.core.session import prepare
from tests.core.test_function_agreement import CASES, Case, few
from tests.tampered import WrongBackwardSin


def _t(x: Any) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def test_entry_estimates_match_hand_written_derivatives():
    point = {"x": _t(1.0), "y": _t(2.0)}

    def f(e):
        return torch.sin(e["x"]) * torch.exp(e["y"])

    est = numeric.derivative_along(f, point, {"x": _t(1.0)})
    exact = math.cos(1.0) * math.exp(2.0)
    assert abs(float(est.value) - exact) < 1e-8
    assert float(est.error) < 1e-6  # the estimate knows it is good
    assert abs(float(est.value) - exact) <= 10 * float(est.error) + 1e-12
    second = numeric.derivative_along(f, point, {"y": _t(1.0)}, order=2)
    assert abs(float(second.value) - math.sin(1.0) * math.exp(2.0)) < 1e-6
    third = numeric.derivative_along(lambda e: torch.sin(e["x"]), point, {"x": _t(1.0)}, order=3)
    assert abs(float(third.value) + math.cos(1.0)) < 1e-5


def test_gradient_probe_agrees_with_a_right_answer_and_not_a_wrong_one():
    point = {"x": _t([0.5, -1.0, 2.0])}

    def f(e):
        return (e["x"] ** 3).sum()

    probe = numeric.gradient_probe(f, point, "x")
    right = 3 * point["x"] ** 2
    assert probe.judge(right, rtol=1e-7, atol=1e-9).status is Verdict.AGREE
    wrong = right.clone()
    wrong[1] += 1e-3
    verdict = probe.judge(wrong, rtol=1e-4, atol=1e-5)
    assert verdict.status is Verdict.DISAGREE
    assert verdict.max_abs_error == pytest.approx(1e-3, rel=1e-3)


def test_many_entries_are_checked_along_random_directions():
    torch.manual_seed(0)
    x = torch.randn(5000, dtype=torch.float64)

    def f(e):
        return (torch.sin(e["x"]) * torch.exp(e["x"] / 4)).sum()

    probe = numeric.gradient_probe(f, {"x": x}, "x")
    assert probe.mode == "directions" and probe.directions == numeric.DIRECTIONS
    right = torch.cos(x) * torch.exp(x / 4) + torch.sin(x) * torch.exp(x / 4) / 4
    assert probe.judge(right.float(), rtol=1e-4, atol=1e-5).status is Verdict.AGREE
    wrong = right.clone()
    wrong[1234] += 0.5  # one entry in 5000
    assert probe.judge(wrong, rtol=1e-4, atol=1e-5).status is Verdict.DISAGREE
    # the same directions every run: the estimate is reproducible
    again = numeric.gradient_probe(f, {"x": x}, "x")
    assert torch.equal(again.estimate.value, probe.estimate.value)


def test_a_500_by_500_jacobian_and_a_100_by_100_hessian():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(500, 500, generator=gen, dtype=torch.float64) / 20
    x = torch.randn(500, generator=gen, dtype=torch.float64)

    def big(e):
        return torch.tanh(a @ e["x"])

    jac = torch.autograd.functional.jacobian(lambda v: big({"x": v}), x)
    probe = numeric.jacobian_probe(big, {"x": x}, "x")
    assert probe.mode == "directions"
    assert probe.judge(jac, rtol=1e-7, atol=1e-9).status is Verdict.AGREE
    jac[17, 300] += 0.01
    assert probe.judge(jac, rtol=1e-7, atol=1e-9).status is Verdict.DISAGREE

    b = a[:100, :100]
    y = x[:100]

    def scalar(e):
        return (torch.sin(e["y"]) * (b @ e["y"])).sum()

    hess = torch.autograd.functional.hessian(lambda v: scalar({"y": v}), y)
    probe = numeric.hessian_probe(scalar, {"y": y}, ["y"])
    assert probe.judge(hess, rtol=1e-7, atol=1e-9).status is Verdict.AGREE
    hess[3, 4] += 0.05
    hess[4, 3] += 0.05
    assert probe.judge(hess, rtol=1e-7, atol=1e-9).status is Verdict.DISAGREE


def test_small_hessian_entry_by_entry():
    point = {"x": _t(1.0), "y": _t(2.0)}

    def f(e):
        return e["x"] ** 2 * e["y"] + torch.sin(e["x"] * e["y"])

    probe = numeric.hessian_probe(f, point, ["x", "y"])
    s, c = math.sin(2.0), math.cos(2.0)
    exact = torch.tensor([[4 - 4 * s, 2 + c - 2 * s], [2 + c - 2 * s, -s]], dtype=torch.float64)
    assert torch.allclose(probe.estimate.value, exact, atol=1e-6)
    assert probe.judge(exact, rtol=1e-7, atol=1e-9).status is Verdict.AGREE


def test_kinks_are_named_and_a_smooth_product_with_abs_is_not_one():
    probe = numeric.gradient_probe(lambda e: e["x"].abs(), {"x": _t(0.0)}, "x")
    verdict = probe.judge(_t(0.0), rtol=1e-4, atol=1e-5)
    assert verdict.status is Verdict.KINK
    assert "left slope -1" in (verdict.note or "") and "right slope 1" in (verdict.note or "")
    # x*|x| has the derivative 0 at 0: no kink, and 0 agrees
    probe = numeric.gradient_probe(lambda e: e["x"] * e["x"].abs(), {"x": _t(0.0)}, "x")
    assert probe.judge(_t(0.0), rtol=1e-4, atol=1e-5).status is Verdict.AGREE
    assert probe.judge(_t(0.5), rtol=1e-4, atol=1e-5).status is Verdict.DISAGREE


def test_not_finite_answers_and_points_outside_the_domain():
    probe = numeric.gradient_probe(lambda e: torch.exp(e["x"]), {"x": _t(1.0)}, "x")
    assert probe.judge(_t(math.nan), rtol=1e-4, atol=1e-5).status is Verdict.DISAGREE
    probe = numeric.gradient_probe(lambda e: torch.log(e["x"]), {"x": _t(-1.0)}, "x")
    assert probe.judge(_t(-1.0), rtol=1e-4, atol=1e-5).status is Verdict.NOT_FINITE
    # sqrt at 0: every step leaves the domain on one side
    probe = numeric.gradient_probe(lambda e: torch.sqrt(e["x"]), {"x": _t(0.0)}, "x")
    assert probe.judge(_t(math.inf), rtol=1e-4, atol=1e-5).status is Verdict.NOT_FINITE


def test_jvp_and_vjp_probes():
    point = {"x": _t([1.0, 2.0])}

    def f(e):
        x = e["x"]
        return torch.stack([x[0] * x[1], torch.sin(x[0])])

    v = _t([1.0, -2.0])
    jac = torch.tensor([[2.0, 1.0], [math.cos(1.0), 0.0]], dtype=torch.float64)
    assert numeric.jvp_probe(f, point, "x", v).judge(jac @ v, rtol=1e-7, atol=1e-9).status is Verdict.AGREE
    assert numeric.vjp_probe(f, point, "x", v).judge(v @ jac, rtol=1e-7, atol=1e-9).status is Verdict.AGREE
    assert numeric.vjp_probe(f, point, "x", v).judge(jac @ v, rtol=1e-4, atol=1e-5).status is Verdict.DISAGREE



def test_numeric_route_alone_catches_a_tampered_backward(monkeypatch, fresh_lowering):
    import sympy

    from gradcli.core import lower
    from gradcli.core.autodiff import gradient

    monkeypatch.setitem(lower._FUNCTIONS, sympy.sin, WrongBackwardSin.apply)
    st = prepare("sin(x)*y", {"x": 0.5, "y": 2.0}, wrt=None, dtype="float32", device="cpu", rtol=None,
                 atol=None, seed=None, max_elements=10**6)
    run = gradient(st.fn, st.tensors, st.wrt, method="grad", reduction="sum")
    fn64 = lower.compile_components(st.parsed.components, st.parsed.shape, st.table, dtype=torch.float64,
                                    device=torch.device("cpu"))
    x_check = numeric.gradient_probe(fn64, st.tensors, "x").judge(run.gradients["x"], rtol=st.rtol, atol=st.atol)
    y_check = numeric.gradient_probe(fn64, st.tensors, "y").judge(run.gradients["y"], rtol=st.rtol, atol=st.atol)
    assert x_check.status is Verdict.DISAGREE, x_check
    assert y_check.status is Verdict.AGREE, y_check  # d/dy does not go through the tampered backward


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@few
@given(data=st.data())
def test_every_registry_function(case: Case, data: st.DataObject):
    """The numeric route agrees with autograd, in float64, for every function gradcli knows."""
    from gradcli.core.autodiff import gradient
    from gradcli.core.lower import compile_components

    point = data.draw(case.points)
    st_ = prepare(case.expr, point, wrt=None, dtype="float64", device="cpu", rtol=None, atol=None, seed=None,
                  max_elements=10**6)
    run = gradient(st_.fn, st_.tensors, st_.wrt, method="grad", reduction="sum")
    fn64 = compile_components(st_.parsed.components, st_.parsed.shape, st_.table, dtype=torch.float64,
                              device=torch.device("cpu"))
    for name in st_.wrt:
        # float32's tolerance: the estimate is compared, not gradcli's float64 rounding
        verdict = numeric.gradient_probe(fn64, st_.tensors, name).judge(run.gradients[name], rtol=1e-5, atol=1e-7)
        assert verdict.status in (Verdict.AGREE, Verdict.UNAVAILABLE), (case.expr, point, name, verdict)
        if verdict.status is Verdict.UNAVAILABLE:  # only where the differences cannot resolve it
            assert verdict.fd_error is not None and verdict.fd_error > 0
