"""Issue 17 item 5: the data file's columns as one matrix (X=stack([x1, x2], dim=1) with --data),
losses over matrices, cross_entropy, nll_loss and linear, each against torch written by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradcli.commands.minimize import minimize
from gradcli.core import session
from gradcli.errors import GradcliError
from tests.helpers import ROOT

CLUSTERS = str(ROOT / "examples" / "data" / "clusters.csv")
STACKED = "X=stack([x1, x2], dim=1)"


def prepare(expression, values, data=CLUSTERS, wrt=None):
    return session.prepare(expression, values, wrt=wrt, dtype="float64", device="cpu", rtol=None, atol=None,
                           seed=None, max_elements=10**8, data=data)


# --------------------------------------------------------------------------- X=stack([...], dim=) of --data columns

def test_stack_of_columns_is_the_matrix_numpy_stacks():
    x1, x2, _y = np.loadtxt(CLUSTERS, delimiter=",", skiprows=1, unpack=True)
    st = prepare("sum(X*w)", [STACKED, "w=1"], wrt="w")
    assert tuple(st.tensors["X"].shape) == (200, 2)
    assert np.array_equal(st.tensors["X"].numpy(), np.stack([x1, x2], axis=1))  # a row per sample
    st0 = prepare("sum(X*w)", ["X=stack([x2, x1], dim=0)", "w=1"], wrt="w")
    assert np.array_equal(st0.tensors["X"].numpy(), np.stack([x2, x1]))  # a row per column, in the order named


def test_axis_is_an_alias_and_negative_dims_count_from_the_end():
    a = prepare("sum(X*w)", ["X=stack([x1, x2], axis=-1)", "w=1"], wrt="w").tensors["X"]
    b = prepare("sum(X*w)", [STACKED, "w=1"], wrt="w").tensors["X"]
    assert torch.equal(a, b)


def test_stacked_columns_are_not_reported_unused_but_the_others_are():
    st = prepare("sum(X*w)", [STACKED, "w=1"], wrt="w")
    assert st.notes == [f"--data {CLUSTERS}: column(s) y are not variables of the expression"]


@pytest.mark.parametrize(("value", "message"), [
    ("X=stack([x1, x3], dim=1)", "x3 is not a column of"),
    ("X=stack([x1, 2], dim=1)", "stack in a value takes the names of --data columns"),
    ("X=stack([x1, x1], dim=1)", "stack names a column twice"),
    ("X=stack([x1, x2], dim=2)", "dim 0 or 1"),
    ("X=stack([x1, x2], out=1)", "stack takes dim="),
    ("X=stack(x1, x2)", "stack([COLUMN, COLUMN, ...], dim=1)"),
])
def test_a_bad_stack_is_a_clear_error(run, value, message):
    result = run("grad", "sum(X*w)", value, "w=1", "--wrt", "w", "--data", CLUSTERS)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_stack_without_data_says_so(run):
    result = run("grad", "sum(X*w)", STACKED, "w=1", "--wrt", "w")
    assert result.exit_code == 2
    assert "stacks --data columns, and there is no --data file" in result.stderr


def test_minimize_takes_a_stacked_matrix_as_data_not_as_a_parameter():
    report = minimize("bce(sigmoid(X[:, 0]*w1 + X[:, 1]*w2 + b), y)", [STACKED, "w1=0", "w2=0", "b=0"],
                      data=CLUSTERS, steps=2, device="cpu")
    assert report.wrt == ["w1", "w2", "b"]
    assert report.constants["X"].shape == [200, 2]
    with pytest.raises(GradcliError, match="X is stacked from --data columns"):
        minimize("bce(sigmoid(X[:, 0]*w1 + X[:, 1]*w2 + b), y)", [STACKED, "w1=0", "w2=0", "b=0"],
                 wrt="X,b", data=CLUSTERS, steps=2, device="cpu")


# --------------------------------------------------------------------------- the losses over matrices, as torch's

P = [[0.2, 0.7, 0.4], [0.9, 0.1, 0.6]]
T = [[0.0, 1.0, 0.5], [1.0, 0.0, 1.0]]
Z = [[-1.0, 2.0, 0.3], [1.5, -0.5, 0.0]]
LOSSES = [
    ("mse(p, t)", "p", P, lambda p, t: torch.nn.functional.mse_loss(p, t)),
    ("l1(p, t)", "p", P, lambda p, t: torch.nn.functional.l1_loss(p, t)),
    ("bce(p, t)", "p", P, lambda p, t: torch.nn.functional.binary_cross_entropy(p, t)),
    ("bce_logits(p, t)", "p", Z, lambda p, t: torch.nn.functional.binary_cross_entropy_with_logits(p, t)),
    ("huber(p, t, 0.5)", "p", Z, lambda p, t: torch.nn.functional.huber_loss(p, t, delta=0.5)),
]


@pytest.mark.parametrize("case", LOSSES, ids=[c[0] for c in LOSSES])
def test_a_loss_of_two_matrices_is_torchs_mean_over_every_element(case):
    from gradcli import api

    expression, wrt, value, fn = case
    report = api.grad(expression, {"p": value, "t": T}, wrt=wrt, dtype="float64")
    p = torch.tensor(value, dtype=torch.float64, requires_grad=True)
    loss = fn(p, torch.tensor(T, dtype=torch.float64))
    (expected,) = torch.autograd.grad(loss, [p])
    assert report.f.data == pytest.approx(loss.item(), rel=1e-12)
    assert torch.allclose(torch.tensor(report.variables[0].gradient.data, dtype=torch.float64), expected, rtol=1e-10)
    assert report.variables[0].status == "agree" and report.status == "ok"
