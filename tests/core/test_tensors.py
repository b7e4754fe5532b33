"""Tensors, reductions and losses: what ML code computes, against torch.nn.functional itself."""

import pytest
import torch
import torch.nn.functional as F

from gradcli import api


def torch_grads(fn, tensors, wrt):
    leaves = {n: t.detach().clone().requires_grad_(n in wrt) for n, t in tensors.items()}
    out = fn(**leaves)
    out.backward()
    return {n: leaves[n].grad for n in wrt}


def gradcli_grads(expression, tensors, wrt, dtype="float32"):
    values = {n: repr(t.tolist()) for n, t in tensors.items()}
    report = api.grad(expression, values, wrt=wrt, dtype=dtype)
    assert report.status == "ok", [(v.name, v.status, v.note) for v in report.variables]
    return {v.name: torch.tensor(v.gradient.data, dtype=torch.float64) for v in report.variables}, report


torch.manual_seed(0)
P = torch.rand(6) * 0.8 + 0.1
Y = (torch.rand(6) > 0.5).float()
Z = torch.randn(6)
T = torch.randn(6)

LOSSES = [
    ("mse(p, t)", lambda p, t: F.mse_loss(p, t), {"p": Z, "t": T}, ["p"]),
    ("l1(p, t)", lambda p, t: F.l1_loss(p, t), {"p": Z, "t": T}, ["p"]),
    ("bce(p, y)", lambda p, y: F.binary_cross_entropy(p, y), {"p": P, "y": Y}, ["p"]),
    ("bce_logits(z, y)", lambda z, y: F.binary_cross_entropy_with_logits(z, y), {"z": Z, "y": Y}, ["z"]),
    ("huber(p, t, 0.5)", lambda p, t: F.huber_loss(p, t, delta=0.5), {"p": Z, "t": T}, ["p"]),
    ("huber(p, t)", lambda p, t: F.huber_loss(p, t), {"p": Z, "t": T}, ["p"]),
    ("sum(gelu(z) * t)", lambda z, t: torch.sum(F.gelu(z) * t), {"z": Z, "t": T}, ["z"]),
    ("sum(leaky_relu(z, 0.2) * t)", lambda z, t: torch.sum(F.leaky_relu(z, 0.2) * t), {"z": Z, "t": T}, ["z"]),
    ("sum(softmax(z) * t)", lambda z, t: torch.sum(torch.softmax(z, 0) * t), {"z": Z, "t": T}, ["z"]),
    ("-sum(y * log_softmax(z))", lambda z, y: -torch.sum(y * torch.log_softmax(z, 0)), {"z": Z, "y": Y}, ["z"]),
    ("logsumexp(z)", lambda z: torch.logsumexp(z, 0), {"z": Z}, ["z"]),
    ("norm(z)", lambda z: torch.linalg.vector_norm(z), {"z": Z}, ["z"]),
    ("norm(z, 3)", lambda z: torch.linalg.vector_norm(z, ord=3), {"z": Z}, ["z"]),
    ("dot(z, t)", lambda z, t: torch.dot(z, t), {"z": Z, "t": T}, ["z", "t"]),
    ("prod(p)", lambda p: torch.prod(p), {"p": P}, ["p"]),
    ("max(z) - min(z)", lambda z: torch.amax(z) - torch.amin(z), {"z": Z}, ["z"]),
    ("sum(sigmoid(z) * relu(t) + softplus(z))",
     lambda z, t: torch.sum(torch.sigmoid(z) * torch.relu(t) + F.softplus(z)), {"z": Z, "t": T}, ["z", "t"]),
]


@pytest.mark.parametrize("expression, reference, tensors, wrt", LOSSES, ids=[c[0] for c in LOSSES])
def test_matches_torch_functional_exactly_and_passes_the_check(expression, reference, tensors, wrt):
    ours, report = gradcli_grads(expression, tensors, wrt)
    theirs = torch_grads(reference, tensors, wrt)
    for n in wrt:
        # the lowering calls the same torch functions: the same float32 numbers, bit for bit
        assert torch.equal(ours[n].float(), theirs[n]), (n, ours[n], theirs[n])
    assert report.f.data == pytest.approx(reference(**tensors).item())


def test_seed_9_mse_spelling(run_json):
    code, doc = run_json("grad", "mse(θ*x, y)", "θ=1", "x=2", "y=3", "--wrt", "θ")
    assert code == 0
    assert doc["f"]["data"] == 1.0 and doc["gradient"]["θ"]["data"] == -4.0


def test_max_with_one_argument_reduces_and_with_two_is_elementwise(run_json):
    _, one = run_json("grad", "max(x)", "x=[1,5,3]")
    assert one["f"]["data"] == 5.0 and one["gradient"]["x"]["data"] == [0.0, 1.0, 0.0]
    _, two = run_json("grad", "sum(max(x, 2))", "x=[1,5,3]")
    assert two["f"]["data"] == 10.0 and two["gradient"]["x"]["data"] == [0.0, 1.0, 1.0]


def test_a_tie_in_max_is_a_kink_not_a_failure(run_json):
    code, doc = run_json("grad", "max(x)", "x=[1,3,3]")
    assert code == 0
    assert doc["gradient"]["x"]["data"] == [0.0, 0.5, 0.5]  # torch splits the gradient between ties
    assert doc["check"]["variables"]["x"]["status"] == "kink"


def test_prod_with_a_zero(run_json):
    code, doc = run_json("grad", "prod(x)", "x=[2,0,3]")
    assert code == 0 and doc["gradient"]["x"]["data"] == [0.0, 6.0, 0.0]


def test_broadcasting_sums_gradients_back_to_each_shape():
    a = torch.tensor([1.0, -2.0, 0.5])
    b = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    ours, _ = gradcli_grads("sum(sin(a) * b + a**2)", {"a": a, "b": b}, ["a", "b"], dtype="float64")
    theirs = torch_grads(lambda a, b: torch.sum(torch.sin(a) * b + a**2), {"a": a.double(), "b": b.double()},
                         ["a", "b"])
    assert torch.allclose(ours["a"], theirs["a"]) and torch.allclose(ours["b"], theirs["b"])
    assert list(ours["a"].shape) == [3] and list(ours["b"].shape) == [2, 3]


def test_scalar_with_a_tensor_and_mean_over_the_broadcast_shape():
    ours, _ = gradcli_grads("mean((w*x - y)**2)", {"w": torch.tensor(0.5), "x": torch.tensor([1.0, 2.0, 3.0]),
                                                   "y": torch.tensor([2.0, 4.0, 6.0])}, ["w"], dtype="float64")
    # d/dw mean((wx - y)^2) = mean(2 x (wx - y)) = 2/3 * (1*(-1.5) + 2*(-3) + 3*(-4.5)) = -14
    assert ours["w"].item() == pytest.approx(-14.0)


def test_nested_reductions():
    z = torch.tensor([0.3, -1.0, 2.0])
    ours, _ = gradcli_grads("mean(z * sum(z**2)) + log(sum(exp(z - max(z))))", {"z": z}, ["z"], dtype="float64")
    theirs = torch_grads(lambda z: torch.mean(z * torch.sum(z**2)) + torch.log(torch.sum(torch.exp(z - torch.amax(z)))),
                         {"z": z.double()}, ["z"])
    assert torch.allclose(ours["z"], theirs["z"])


def test_a_million_element_loss_is_checked_vectorised():
    n = 10**6
    report = api.grad("mean((t - p)**2)", {"p": "randn(1000000)", "t": "randn(1000000)"}, wrt="p", seed=1)
    v = report.variables[0]
    assert v.status == "agree" and v.gradient.shape == [n]
    assert v.formula == "p/500000 - t/500000"  # d mean((t-p)^2)/dp = 2(p-t)/n, n = 10^6


@pytest.mark.parametrize("argument, message", [
    ("leaky_relu(x, y)", "slope"),
    ("huber(x, y, -1)", "positive"),
    ("norm(x, y)", "the p of norm"),
    ("mse(x)", "mse takes 2 arguments, not 1"),
])
def test_parameters_must_be_numbers(run, argument, message):
    result = run("grad", argument, "x=[1,2]", "y=[1,1]")
    assert result.exit_code == 2 and message in result.stderr


SLICES = [
    ("sum((x[1:] - x[:-1])**2)", lambda x: torch.sum((x[1:] - x[:-1]) ** 2)),
    ("sum(x[::2] * x[1::2])", lambda x: torch.sum(x[::2] * x[1::2])),
    ("x[0]*x[-1] + mean(x[2:5])", lambda x: x[0] * x[-1] + torch.mean(x[2:5])),
    ("logsumexp(x[1:]) - x[0]", lambda x: torch.logsumexp(x[1:], 0) - x[0]),
]


@pytest.mark.parametrize("expression, reference", SLICES, ids=[c[0] for c in SLICES])
def test_slices_against_torch_and_symbolic(expression, reference):
    x = torch.tensor([0.5, -1.0, 2.0, 0.25, 1.5, -0.75])
    ours, report = gradcli_grads(expression, {"x": x}, ["x"], dtype="float64")
    theirs = torch_grads(reference, {"x": x.double()}, ["x"])
    assert torch.allclose(ours["x"], theirs["x"])
    jac = api.jacobian(expression, {"x": repr(x.tolist())}, dtype="float64")
    assert jac.status == "ok"
    hess = api.hessian(expression, {"x": repr(x.tolist())}, dtype="float64")
    assert hess.status == "ok"


def test_slices_of_matrices(run_json):
    code, doc = run_json("grad", "sum(x[1:, 0]**2) + x[0, 1]", "x=[[1,2],[3,4],[5,6]]")
    assert code == 0
    assert doc["gradient"]["x"]["data"] == [[0.0, 1.0], [6.0, 0.0], [10.0, 0.0]]


@pytest.mark.parametrize("expression, message", [
    ("x[5]", "x[5] is out of range: x has shape [3]"),
    ("x[0, 1]", "x[0,1] has 2 indices, but x is of shape [3]"),
    ("sum(x[3:])", "x[3:] is empty"),
    ("sum(x[::-1])", "step must be positive"),
])
def test_index_errors_name_the_variable_shape_and_index(run, expression, message):
    result = run("grad", expression, "x=[1,2,3]")
    assert result.exit_code == 2 and message in result.stderr


@pytest.mark.parametrize("expression, reference", [
    ("log_softmax(x)[0]", lambda x: torch.log_softmax(x, 0)[0]),
    ("softmax(x)[-1] * x[0]", lambda x: torch.softmax(x, 0)[-1] * x[0]),
    ("sum(x * softmax(x)[1])", lambda x: torch.sum(x * torch.softmax(x, 0)[1])),
    ("(x**2 + sin(x))[2]", lambda x: (x**2 + torch.sin(x))[2]),
])
def test_an_element_of_a_tensor_valued_subexpression(expression, reference):
    x = torch.tensor([0.5, -1.0, 2.0])
    ours, _ = gradcli_grads(expression, {"x": x}, ["x"], dtype="float64")
    theirs = torch_grads(reference, {"x": x.double()}, ["x"])
    assert torch.allclose(ours["x"], theirs["x"])
    assert api.jacobian(expression, {"x": "[0.5, -1, 2]"}, dtype="float64").status == "ok"


def test_subexpression_index_errors(run):
    out_of_range = run("grad", "softmax(x)[5]", "x=[1,2]")
    assert out_of_range.exit_code == 2 and "out of range: softmax(x) has shape [2]" in out_of_range.stderr
    sliced = run("grad", "sum(softmax(x)[1:])", "x=[1,2]")  # slices of expressions work (issue 17)
    assert sliced.exit_code == 0, sliced.stderr
    stepped = run("grad", "sum(softmax(x)[::-1])", "x=[1,2]")
    assert stepped.exit_code == 2 and "step must be positive" in stepped.stderr


@pytest.mark.parametrize("expression, reference", [
    ("sum(x - x + y)", lambda x, y: torch.sum(x - x + y)),
    ("mean(x*0 + y**2)", lambda x, y: torch.mean(x * 0 + y**2)),
    ("sum(x**0 * y)", lambda x, y: torch.sum(x**0 * y)),
    ("x - x + y", lambda x, y: torch.sum(x - x + y)),
])
def test_variables_sympy_cancels_still_set_the_shape(expression, reference):
    # sympy reads x - x + y as y; torch broadcasts y over x's shape before summing
    x, y = torch.tensor([1.0, 2.0, 3.0]), torch.tensor(0.5)
    ours, report = gradcli_grads(expression, {"x": x, "y": y}, ["x", "y"], dtype="float64")
    theirs = torch_grads(reference, {"x": x.double(), "y": y.double()}, ["x", "y"])
    assert torch.allclose(ours["y"], theirs["y"]) and torch.allclose(ours["x"], theirs["x"])
    reduced = expression.startswith(("sum", "mean"))
    assert report.f.data == pytest.approx(float(reference(x.double(), y.double())) if reduced else [0.5] * 3)
