"""Tensor programs (issue 17): matrix products, transposes, dims, slices, conditionals.

Each feature is checked against the same computation written by hand in torch (a second route),
and the symbolic check against a tampered lowering (a wrong torch function must be caught).
"""

import pytest
import sympy
import torch

from gradcli import api
from gradcli.core import lower, session
from gradcli.core import sympy_functions as sf
from gradcli.core.limits import SYMBOLIC_EXPANSION_LIMIT
from gradcli.core.parse import parse_expression
from gradcli.errors import GradcliError

torch.manual_seed(17)
A = torch.randn(3, 3, dtype=torch.float64)
B = torch.randn(3, 2, dtype=torch.float64)
M = torch.randn(2, 3, dtype=torch.float64)
X = torch.randn(3, dtype=torch.float64)
Y = torch.randn(3, dtype=torch.float64)
BATCH = torch.randn(2, 3, 3, dtype=torch.float64)


def torch_grads(fn, tensors, wrt):
    leaves = {n: t.detach().clone().requires_grad_(n in wrt) for n, t in tensors.items()}
    out = fn(**leaves)
    out.sum().backward()
    return {n: leaves[n].grad for n in wrt}, out.detach()


def run(expression, tensors, wrt, dtype="float64", command=api.grad, **options):
    values = {n: repr(t.tolist()) for n, t in tensors.items()}
    return command(expression, values, wrt=wrt, dtype=dtype, **options)


def gradients(report):
    return {v.name: torch.tensor(v.gradient.data, dtype=torch.float64) for v in report.variables}


MATRIX = [
    ("sum(A @ x)", lambda A, x: A @ x, {"A": A, "x": X}, ["A", "x"]),
    ("x @ A @ x", lambda A, x: x @ A @ x, {"A": A, "x": X}, ["A", "x"]),
    ("sum(matmul(A, B) ** 2)", lambda A, B: (A @ B) ** 2, {"A": A, "B": B}, ["A", "B"]),
    ("sum(M @ A)", lambda M, A: M @ A, {"M": M, "A": A}, ["M", "A"]),
    ("x @ y", lambda x, y: torch.dot(x, y), {"x": X, "y": Y}, ["x", "y"]),
    ("sum(sin(T @ x))", lambda T, x: torch.sin(T @ x), {"T": BATCH, "x": X}, ["T", "x"]),
    ("sum(T @ A)", lambda T, A: T @ A, {"T": BATCH, "A": A}, ["T", "A"]),
    ("sum(A.T * B[:, 0])", lambda A, B: A.T * B[:, 0], {"A": A, "B": B}, ["A", "B"]),
    ("sum(transpose(M) @ M)", lambda M: M.T @ M, {"M": M}, ["M"]),
    ("sum(transpose(T, 0, 2) * x)", lambda T, x: torch.transpose(T, 0, 2) * x[:2],
     {"T": BATCH, "x": X[:2].clone()}, ["T", "x"]),
    ("sum(outer(x, y) * A)", lambda x, y, A: torch.outer(x, y) * A, {"x": X, "y": Y, "A": A}, ["x", "y", "A"]),
    ("dot(x, y)", lambda x, y: torch.dot(x, y), {"x": X, "y": Y}, ["x", "y"]),
    ("sum(dot(A, x))", lambda A, x: A @ x, {"A": A, "x": X}, ["A", "x"]),
    ("sum(dot(x, B))", lambda x, B: x @ B, {"x": X, "B": B}, ["x", "B"]),
    ("sum(dot(M, A) * 2)", lambda M, A: (M @ A) * 2, {"M": M, "A": A}, ["M", "A"]),
    ("sum(exp(A.T @ A - 1))", lambda A: torch.exp(A.T @ A - 1), {"A": A}, ["A"]),
]


@pytest.mark.parametrize("expression, reference, tensors, wrt", MATRIX, ids=[c[0] for c in MATRIX])
def test_matrix_algebra_matches_hand_written_torch_and_passes_the_check(expression, reference, tensors, wrt):
    report = run(expression, tensors, wrt)
    theirs, value = torch_grads(reference, tensors, wrt)
    ours = gradients(report)
    for n in wrt:
        torch.testing.assert_close(ours[n], theirs[n], rtol=1e-12, atol=1e-12)
    assert report.f.data == pytest.approx(value.sum().item())
    assert report.status == "ok"
    assert {v.status for v in report.variables} == {"agree"}, [(v.name, v.note) for v in report.variables]


def test_dot_of_a_matrix_is_numpys_matrix_product_never_a_silent_sum():
    report = api.grad("dot(x, dot(A, x))", {"A": "[[1,2,0],[-1,3,4],[5,0,2]]", "x": "[1,2,3]"}, wrt="x")
    (x,) = report.variables
    assert x.gradient.data == [19, 25, 25]  # (A + A.T) x, what numpy's dot means
    assert x.status == "agree"


@pytest.mark.parametrize("expression, values, message", [
    ("dot(x, y)", {"x": "[1, 2]", "y": "[1, 2, 3]"}, "dot: shapes [2] and [3] do not fit"),
    ("sum(dot(T, x))", {"T": "ones(2,2,2)", "x": "[1, 2]"}, "dot takes vectors and matrices"),
    ("dot(x, y)", {"x": "2", "y": "[1, 2]"}, "dot takes vectors and matrices"),
    ("sum(A @ x)", {"A": "ones(2, 3)", "x": "[1, 2]"}, "matmul: shapes [2, 3] and [2] do not fit"),
    ("sum(x @ 2)", {"x": "[1, 2]"}, "matmul needs tensors of 1 dimension or more"),
    ("sum(outer(A, x))", {"A": "ones(2, 2)", "x": "[1, 2]"}, "outer takes two vectors, not shapes [2, 2] and [2]"),
    ("sum(transpose(x, 0, 3))", {"x": "ones(2, 2)"}, "dim 3 is out of range"),
    ("sum(A @ x + y)", {"A": "ones(2, 2)", "x": "[1, 2]", "y": "[1, 2, 3]"}, "do not fit together in y + A @ x"),
])
def test_shape_mismatches_name_both_shapes_and_point_at_the_operation(expression, values, message):
    with pytest.raises(GradcliError) as info:
        api.grad(expression, values)
    assert message in info.value.message
    assert info.value.span is not None and info.value.span.source == expression


def test_the_caret_points_at_the_operation_that_does_not_fit():
    with pytest.raises(GradcliError) as info:
        api.grad("sum(x) + sum(A @ x)", {"A": "ones(2, 3)", "x": "[1, 2]"})
    span = info.value.span
    assert "sum(x) + sum(A @ x)"[span.start:span.end] == "A @ x"


TAMPERED = [
    (sf.matmul, lambda a, b: 1.01 * torch.matmul(a, b), "sum(sin(A @ x))", {"A": A, "x": X}),
    (sf.dot, lambda a, b: 1.01 * torch.matmul(a, b), "sum(dot(A, x) ** 2)", {"A": A, "x": X}),
    (sf.transpose, lambda a, dims: a, "sum(A.T @ x)", {"A": A, "x": X}),
    (sf.outer, lambda a, b: torch.outer(b, a), "sum(outer(x, y) * A)", {"x": X, "y": Y, "A": A}),
]


@pytest.mark.parametrize("cls, wrong, expression, tensors", TAMPERED, ids=[c[2] for c in TAMPERED])
def test_a_tampered_lowering_is_caught_by_the_entry_by_entry_check(monkeypatch, cls, wrong, expression, tensors):
    session.parse_cached.cache_clear()  # a fresh lowering, through the tampered table
    monkeypatch.setitem(lower._FUNCTIONS, cls, wrong)
    report = run(expression, tensors, list(tensors))
    assert report.status == "failed"
    assert "disagree" in {v.status for v in report.variables}
    session.parse_cached.cache_clear()


def test_dot_of_two_long_vectors_keeps_the_scalar_route_at_any_size():
    n = 4 * SYMBOLIC_EXPANSION_LIMIT
    report = api.grad("dot(x, y)", {"x": f"linspace(0, 1, {n})", "y": f"linspace(1, 2, {n})"}, wrt="x")
    assert report.variables[0].status == "agree"


def test_above_the_symbolic_limit_the_check_says_unavailable_never_agree():
    """A batched product has no matrix form either: neither route checks it, and the note says
    why, with the size limit."""
    report = api.grad("sum(B @ x)", {"B": "ones(4, 20, 20)", "x": "ones(20)"})
    assert {v.status for v in report.variables} == {"unavailable"}
    note = report.variables[0].note
    assert "entries exceed the symbolic limit" in note and str(SYMBOLIC_EXPANSION_LIMIT) in note.replace(",", "")
    assert "no matrix form: B has 3 dimensions" in note


def test_above_the_symbolic_limit_the_matrix_form_checks():
    """sympy's matrix calculus does not grow with the entries: A @ x at 40 x 40 is checked."""
    report = api.grad("sum(A @ x)", {"A": "ones(40, 40)", "x": "ones(40)"})
    assert {v.status for v in report.variables} == {"agree"}
    assert {v.name: v.formula for v in report.variables} == {"A": "ones @ xᵀ", "x": "Aᵀ @ ones"}


def test_jacobian_vjp_jvp_and_hessian_of_a_matrix_product():
    tensors = {"A": A, "x": X}
    jac = run("A @ x", tensors, ["A", "x"], command=api.jacobian)
    assert jac.status == "ok" and {v.status for v in jac.variables} == {"agree"}
    expected = torch.autograd.functional.jacobian(lambda a, x: a @ x, (A, X))
    by_name = {v.name: torch.tensor(v.gradient.data, dtype=torch.float64) for v in jac.variables}
    torch.testing.assert_close(by_name["A"], expected[0])
    torch.testing.assert_close(by_name["x"], expected[1])
    v = [1.0, -2.0, 0.5]
    vjp = run("A @ x", tensors, ["A", "x"], command=api.vjp, vector=v)
    assert vjp.status == "ok" and {r.status for r in vjp.variables} == {"agree"}
    torch.testing.assert_close(torch.tensor(vjp.variables[1].gradient.data, dtype=torch.float64),
                               A.T @ torch.tensor(v, dtype=torch.float64))
    jvp = run("A @ x", tensors, ["x"], command=api.jvp, vector=v)
    assert jvp.status == "ok" and {r.status for r in jvp.variables} == {"agree"}
    torch.testing.assert_close(torch.tensor(jvp.variables[0].gradient.data, dtype=torch.float64),
                               A @ torch.tensor(v, dtype=torch.float64))
    hess = run("x @ A @ x", tensors, ["x"], command=api.hessian)
    assert hess.status == "ok" and {r.status for r in hess.variables} == {"agree"}
    torch.testing.assert_close(torch.tensor(hess.variables[0].gradient.data, dtype=torch.float64), A + A.T)


def test_tensor_operations_are_never_folded_or_evaluated_by_sympy():
    x = sympy.Symbol("x", real=True)
    node = sf.matmul(x, x)
    assert node.is_number is False and not node.free_symbols - {x}
    assert str(parse_expression("x @ A.T @ x").expr) == "x @ A.T @ x"
    with pytest.raises(GradcliError, match="attribute access"):
        parse_expression("x.shape")
