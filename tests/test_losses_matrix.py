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


# --------------------------------------------------------------------------- seed 002 in matrix form

LINE = str(ROOT / "examples" / "data" / "line.csv")


def test_seed_002_linear_model_as_a_matrix_product_is_the_scalar_fit():
    """Seed 002's z = torch.matmul(x, w) + b: the line fit of seed case 14 with X a one-column matrix."""
    matrix = minimize("mean(0.5*(y - (X @ w + b))**2)", ["X=stack([x], dim=1)", "w=[0]", "b=0"], data=LINE,
                      lr=0.05, steps=100, device="cpu")
    scalar = minimize("mean(0.5*(y - (w*x + b))**2)", ["w=0", "b=0"], data=LINE, lr=0.05, steps=100, device="cpu")
    assert matrix.status == "ok" and matrix.end.loss < 1
    assert matrix.end.loss == pytest.approx(scalar.end.loss, rel=1e-5)
    assert matrix.end.parameters["w"].data[0] == pytest.approx(scalar.end.parameters["w"].data, rel=1e-5)
    assert matrix.end.parameters["b"].data == pytest.approx(scalar.end.parameters["b"].data, rel=1e-5)


def _logistic_by_hand(steps: int) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Seed 002's loop written out: nn.Linear(2, 1)'s x @ W.T + b (here zeros, as gradcli starts),
    nn.Sigmoid, nn.BCELoss, SGD with momentum 0.9 and lr 0.01."""
    x1, x2, y = (torch.tensor(c, dtype=torch.float32) for c in np.loadtxt(CLUSTERS, delimiter=",", skiprows=1,
                                                                            unpack=True))
    train_x = torch.stack([x1, x2], dim=1)
    w = torch.zeros(2, requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.SGD([w, b], lr=0.01, momentum=0.9)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.BCELoss()(torch.sigmoid(torch.matmul(train_x, w) + b), y)
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
    return w.detach(), b.detach(), losses


def test_seed_15_logistic_regression_as_the_seed_writes_it():
    report = minimize("bce(sigmoid(X @ w + b), y)", [STACKED, "w=[0,0]", "b=0"], data=CLUSTERS,
                      optimizer="momentum", lr=0.01, steps=1000, device="cpu")
    assert report.status == "ok"
    assert report.wrt == ["w", "b"]
    w, b, losses = _logistic_by_hand(1000)
    got_w = torch.tensor(report.end.parameters["w"].data)
    assert torch.allclose(got_w, w, rtol=1e-4, atol=1e-5), (got_w, w)
    assert report.end.parameters["b"].data == pytest.approx(b.item(), rel=1e-4, abs=1e-5)
    assert report.losses[:1000] == pytest.approx(losses, rel=1e-4)
    x1, x2, y = np.loadtxt(CLUSTERS, delimiter=",", skiprows=1, unpack=True)
    predicted = 1 / (1 + np.exp(-(np.stack([x1, x2], axis=1) @ got_w.numpy() + report.end.parameters["b"].data)))
    assert float(np.mean((predicted >= 0.5) == (y == 1))) > 0.99  # the seed's accuracy, from y_pred.ge(0.5)


def test_seed_15_through_the_command_line(run_json):
    code, doc = run_json("minimize", "bce(sigmoid(X @ w + b), y)", STACKED, "w=[0,0]", "b=0", "--data", CLUSTERS,
                         "--optimizer", "momentum", "--lr", "0.01", "--steps", "1000")
    assert code == 0
    assert doc["constants"]["X"]["shape"] == [200, 2]
    assert doc["check"]["status"] == "ok"
    assert doc["end"]["loss"] < doc["start"]["loss"]


def test_linear_is_x_at_w_transposed_plus_b():
    from gradcli import api

    x = [[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]]
    weight = [[0.2, -0.4], [1.0, 0.3], [-0.7, 0.1]]
    bias = [0.1, -0.2, 0.3]
    report = api.grad("sum(linear(x, W, b)**2)", {"x": x, "W": weight, "b": bias}, wrt="W,b", dtype="float64")
    leaves = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (weight, bias)]
    out = (torch.nn.functional.linear(torch.tensor(x, dtype=torch.float64), *leaves) ** 2).sum()
    expected = torch.autograd.grad(out, leaves)
    assert report.f.data == pytest.approx(out.item(), rel=1e-12)
    for var, want in zip(report.variables, expected, strict=True):
        assert torch.allclose(torch.tensor(var.gradient.data, dtype=torch.float64), want, rtol=1e-12)
        assert var.status == "agree"


def _readme_console_blocks() -> list[tuple[str, str]]:
    """(command, what it prints) of each console block in README.md's "Tensor programs"."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Tensor programs"):readme.index("## Expressions")]
    blocks = []
    for part in section.split("```console\n")[1:]:
        command, _, printed = part[:part.index("```")].partition("\n")
        blocks.append((command, printed))
    return blocks


@pytest.mark.parametrize(("command", "printed"), _readme_console_blocks(), ids=lambda c: c[:40])
def test_the_readme_tensor_programs_tables_are_what_gradcli_prints(command, printed):
    """The quadratic form's table and the where trap's in README.md, as printed at 120 columns."""
    import shlex

    from typer.testing import CliRunner

    from gradcli.cli.app import app

    args = shlex.split(command.removeprefix("$ gradcli "))
    # as tests/test_golden.py renders: no terminal settings from the environment, 120 columns, no colour
    env: dict[str, str | None] = dict.fromkeys(("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS",
                                                "LINES", "COLORTERM", "TERM", "PY_COLORS", "GITHUB_ACTIONS"))
    env.update({"COLUMNS": "120", "NO_COLOR": "1"})
    result = CliRunner().invoke(app, args, env=env, catch_exceptions=False)
    assert result.stdout == printed
    # torch's det gradient at a singular matrix and the where trap fail their check, as they must
    assert result.exit_code == (1 if "the cross-check failed" in printed else 0)


def test_there_are_three_readme_tables():
    assert [c.split('"')[1] for c, _ in _readme_console_blocks()] == ["x @ A @ x", "det(A)",
                                                                     "where(x > 0, sqrt(x), 0)"]


@pytest.mark.parametrize("loss", ["mse", "l1", "bce", "bce_logits", "huber"])
def test_a_column_against_a_vector_of_targets_is_refused_not_summed_over_every_pair(run, loss):
    """nn.Linear(2, 1) gives a column [N, 1]; against N targets it would broadcast to N x N pairs,
    a wrong loss torch refuses (binary_cross_entropy) or warns about (mse_loss): gradcli refuses it."""
    result = run("grad", f"{loss}(sigmoid(linear(X, W, b)), y)", STACKED, "W=[[0,0]]", "b=[0]", "--wrt", "W,b",
                 "--data", CLUSTERS)
    assert result.exit_code == 2
    assert f"{loss}: its arguments have shapes [200, 1] and [200], which broadcast to [200, 200]" in result.stderr
    assert "x[:, 0]" in result.stderr


def test_the_column_sliced_to_a_vector_is_the_seeds_squeeze():
    from gradcli import api

    report = api.grad("bce(sigmoid(linear(X, W, b))[:, 0], y)", [STACKED, "W=[[0.1,-0.2]]", "b=[0.3]"],
                      wrt="W,b", data=CLUSTERS, dtype="float64")
    x1, x2, y = (torch.tensor(c, dtype=torch.float64) for c in np.loadtxt(CLUSTERS, delimiter=",", skiprows=1,
                                                                            unpack=True))
    weight = torch.tensor([[0.1, -0.2]], dtype=torch.float64, requires_grad=True)
    bias = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    loss = torch.nn.BCELoss()(torch.sigmoid(torch.nn.functional.linear(torch.stack([x1, x2], 1), weight, bias))
                              .squeeze(), y)
    expected = torch.autograd.grad(loss, [weight, bias])
    assert report.f.data == pytest.approx(loss.item(), rel=1e-12)
    for var, want in zip(report.variables, expected, strict=True):
        assert torch.allclose(torch.tensor(var.gradient.data, dtype=torch.float64), want, rtol=1e-10)
    simple = api.grad("bce(sigmoid(w1*x1 + w2*x2 + b), y)", ["w1=0.1", "w2=-0.2", "b=0.3"], data=CLUSTERS,
                      dtype="float64")
    assert report.f.data == pytest.approx(simple.f.data, rel=1e-12)
