"""Tensor programs (issue 17): matrix products, transposes, dims, slices, conditionals.

Each feature is checked against the same computation written by hand in torch (a second route),
and the symbolic check against a tampered lowering (a wrong torch function must be caught).
"""

import pytest
import sympy
import torch

from gradcli import api
from gradcli.core import lower
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


def assert_matches_torch_and_agrees(expression, reference, tensors):
    """gradcli's f and gradient by every variable equal hand-written torch's (the second
    route), and gradcli's own check says agree for each."""
    report = run(expression, tensors, list(tensors))
    theirs, value = torch_grads(reference, tensors, list(tensors))
    for n, g in gradients(report).items():
        torch.testing.assert_close(g, theirs[n], rtol=1e-10, atol=1e-12)
    assert report.f.data == pytest.approx(value.sum().item())
    assert {v.status for v in report.variables} == {"agree"}, [(v.name, v.note) for v in report.variables]


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
def test_a_tampered_lowering_is_caught_by_the_entry_by_entry_check(monkeypatch, fresh_lowering, cls, wrong,
                                                                     expression, tensors):
    monkeypatch.setitem(lower._FUNCTIONS, cls, wrong)
    report = run(expression, tensors, list(tensors))
    assert report.status == "failed"
    assert "disagree" in {v.status for v in report.variables}


def test_dot_of_two_long_vectors_keeps_the_scalar_route_at_any_size():
    n = 4 * SYMBOLIC_EXPANSION_LIMIT
    report = api.grad("dot(x, y)", {"x": f"linspace(0, 1, {n})", "y": f"linspace(1, 2, {n})"}, wrt="x")
    assert report.variables[0].status == "agree"


def test_above_the_symbolic_limit_the_check_says_unavailable_never_agree():
    """A batched product has no matrix form either: neither route checks it, and the note says
    why, with the size limit."""
    report = api.grad("sum(B @ x)", {"B": "ones(4, 20, 20)", "x": "ones(20)"}, check="symbolic")
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


# --------------------------------------------------------------------------- axes

AXES = [
    ("sum(sum(A, dim=1) ** 2)", lambda A: torch.sum(A, dim=1) ** 2),
    ("sum(sum(A, axis=0, keepdim=True) * A)", lambda A: torch.sum(A, dim=0, keepdim=True) * A),
    ("sum(sum(T, dim=(0, 2)) ** 2)", lambda T: torch.sum(T, dim=(0, 2)) ** 2),
    ("sum(mean(A, -1) ** 2)", lambda A: torch.mean(A, dim=-1) ** 2),
    ("sum(prod(A, dim=0))", lambda A: torch.prod(A, dim=0)),
    ("sum(prod(T, dim=(0, 1), keepdim=True) * T)", lambda T: torch.prod(torch.prod(T, 1, keepdim=True), 0,
                                                                         keepdim=True) * T),
    ("sum(max(A, dim=1) * min(A, axis=0))", lambda A: torch.amax(A, dim=1) * torch.amin(A, dim=0)),
    ("sum(max(A, dim=0, keepdim=True) - A)", lambda A: torch.amax(A, dim=0, keepdim=True) - A),
    ("sum(norm(A, dim=1))", lambda A: torch.linalg.vector_norm(A, dim=1)),
    ("sum(norm(A, 3, dim=0, keepdim=True))", lambda A: torch.linalg.vector_norm(A, ord=3, dim=0, keepdim=True)),
    ("sum(logsumexp(A, dim=1) ** 2)", lambda A: torch.logsumexp(A, dim=1) ** 2),
    ("sum(softmax(A, dim=1) * A)", lambda A: torch.softmax(A, dim=1) * A),
    ("sum(log_softmax(A, axis=0) * A)", lambda A: torch.log_softmax(A, dim=0) * A),
    ("var(A)", lambda A: torch.var(A)),
    ("sum(var(A, dim=1))", lambda A: torch.var(A, dim=1)),
    ("sum(var(A, dim=0, correction=0, keepdim=True) * A)", lambda A: torch.var(A, dim=0, correction=0,
                                                                                keepdim=True) * A),
    ("std(A)", lambda A: torch.std(A)),
    ("sum(std(T, dim=(1, 2), correction=2))", lambda T: torch.std(T, dim=(1, 2), correction=2)),
]


@pytest.mark.parametrize("expression, reference", AXES, ids=[c[0] for c in AXES])
def test_reductions_over_dims_match_hand_written_torch_and_pass_the_check(expression, reference):
    tensors = {"T": BATCH} if "(T" in expression else {"A": A}
    assert_matches_torch_and_agrees(expression, reference, tensors)


def test_var_and_std_use_torchs_correction_of_1_by_default():
    values = {"x": "[1, 2, 3, 4]"}
    assert api.evaluate("var(x)", values).f.data == pytest.approx(5 / 3)
    assert api.evaluate("var(x, correction=0)", values).f.data == pytest.approx(5 / 4)
    assert api.evaluate("std(x)", values).f.data == pytest.approx((5 / 3) ** 0.5)


# --------------------------------------------------------------------------- building and slicing

BUILDING = [
    ("sum(einsum('ij,j->i', A, x) ** 2)", lambda A, x: torch.einsum("ij,j->i", A, x) ** 2, {"A": A, "x": X}),
    ('einsum("i,i", x, y)', lambda x, y: torch.einsum("i,i", x, y), {"x": X, "y": Y}),
    ('sum(einsum("ij,kj->ik", A, M) * 2)', lambda A, M: torch.einsum("ij,kj->ik", A, M) * 2, {"A": A, "M": M}),
    ('einsum("ii", A)', lambda A: torch.einsum("ii", A), {"A": A}),
    ("sum(diag(x) @ A)", lambda x, A: torch.diag(x) @ A, {"x": X, "A": A}),
    ("sum(diag(A) * x)", lambda A, x: torch.diag(A) * x, {"A": A, "x": X}),
    ("sum((eye(3) + A) @ x)", lambda A, x: (torch.eye(3, dtype=A.dtype) + A) @ x, {"A": A, "x": X}),
    ("sum(eye(2, 3) * M)", lambda M: torch.eye(2, 3, dtype=M.dtype) * M, {"M": M}),
    ("sum(stack([x, A @ x], dim=1) ** 2)", lambda x, A: torch.stack([x, A @ x], dim=1) ** 2, {"x": X, "A": A}),
    ("sum(stack([x, y]) * A[:2])", lambda x, y, A: torch.stack([x, y]) * A[:2], {"x": X, "y": Y, "A": A}),
    ("sum([x[0] * x[1], x[2] ** 2] * [1, 2])",
     lambda x: torch.stack([x[0] * x[1], x[2] ** 2]) * torch.tensor([1.0, 2.0], dtype=x.dtype), {"x": X}),
    ("sum([[x[0], 1], [2, x[1]]] @ x[1:])",
     lambda x: torch.stack([torch.stack([x[0], torch.ones_like(x[0])]), torch.stack([2 * torch.ones_like(x[0]),
                                                                                      x[1]])]) @ x[1:], {"x": X}),
    ("sum(A[:, 0] * x)", lambda A, x: A[:, 0] * x, {"A": A, "x": X}),
    ("sum(A[1:3] ** 2)", lambda A: A[1:3] ** 2, {"A": A}),
    ("sum(A[..., -1] * x)", lambda A, x: A[..., -1] * x, {"A": A, "x": X}),
    ("sum(T[..., 0, :] ** 2)", lambda T: T[..., 0, :] ** 2, {"T": BATCH}),
    ("sum((A @ x)[1:] ** 2)", lambda A, x: (A @ x)[1:] ** 2, {"A": A, "x": X}),
    ("sum(sin(A)[:, 1] * x)", lambda A, x: torch.sin(A)[:, 1] * x, {"A": A, "x": X}),
    ("sum(exp(A)[..., -1])", lambda A: torch.exp(A)[..., -1], {"A": A}),
]


@pytest.mark.parametrize("expression, reference, tensors", BUILDING, ids=[c[0] for c in BUILDING])
def test_einsum_diag_eye_stack_and_slices_match_hand_written_torch(expression, reference, tensors):
    assert_matches_torch_and_agrees(expression, reference, tensors)


# --------------------------------------------------------------------------- conditionals

CONDITIONALS = [
    ("sum(where(x > 0, x ** 2, -x))", lambda x: torch.where(x > 0, x ** 2, -x)),
    ("sum(where(x <= y, sin(x), y * x))", lambda x, y: torch.where(x <= y, torch.sin(x), y * x)),
    ("sum(where(x != 0.5, exp(x), 0))", lambda x: torch.where(x != 0.5, torch.exp(x), 0.0)),
    ("sum(where(-1 < x < 1, x, 1))", lambda x: torch.where((-1 < x) & (x < 1), x, 1.0)),
    ("sum(clamp(x, -0.5, 0.5) * y)", lambda x, y: torch.clamp(x, -0.5, 0.5) * y),
    ("sum(clip(x * y, -0.1, 0.2))", lambda x, y: torch.clamp(x * y, -0.1, 0.2)),
    ("sum(where(A @ x > 0, A @ x, 0.1 * (A @ x)))", lambda A, x: torch.where(A @ x > 0, A @ x, 0.1 * (A @ x))),
]


@pytest.mark.parametrize("expression, reference", CONDITIONALS, ids=[c[0] for c in CONDITIONALS])
def test_where_comparisons_and_clamp_match_hand_written_torch(expression, reference):
    import inspect

    pool = {"x": X, "y": Y, "A": A}
    tensors = {n: pool[n] for n in inspect.signature(reference).parameters}
    assert_matches_torch_and_agrees(expression, reference, tensors)


def test_the_where_trap_is_shown_never_hidden_and_names_the_double_where():
    report = api.grad("where(x > 0, sqrt(x), 0)", {"x": "-1"})
    (x,) = report.variables
    assert x.gradient.data == "nan" or x.gradient.data != x.gradient.data  # autograd's nan, as torch computes
    assert x.symbolic.data == 0 and x.status == "disagree" and report.status == "failed"
    assert "0 * inf = nan" in x.note and "not a gradcli error" in x.note
    assert "where(x > 0, sqrt(where(x > 0, x, 1)), 0)" in x.note
    # the safe form, typed as the note says, is kept as typed (sympy would fold it back) and agrees
    safe = api.grad("where(x > 0, sqrt(where(x > 0, x, 1)), 0)", {"x": "-1"})
    assert safe.variables[0].gradient.data == 0 and safe.variables[0].status == "agree"
    assert safe.parsed == "where(x > 0, sqrt(where(x > 0, x, 1)), 0)"


def test_the_where_trap_in_a_tensor_program_guards_what_the_condition_tests():
    report = api.grad("sum(where(A @ x > 0, sqrt(A @ x), 0))", {"A": "[[1, 2], [-3, 1]]", "x": "[1, 1]"}, wrt="x")
    assert report.status == "failed"
    assert "where(A @ x > 0, sqrt(where(A @ x > 0, A @ x, 1)), 0)" in report.variables[0].note


def test_clamp_at_its_bounds_is_a_kink_with_torchs_convention():
    report = api.grad("sum(clamp(x, -1, 1))", {"x": "[-1, 0, 1, 2]"})
    (x,) = report.variables
    assert x.gradient.data == [1, 1, 1, 0] and x.status == "kink"
    assert "clamp'(x) = 1 at min and max" in x.note


TAMPERED_AXES = [
    (sf.sum_dim, lambda x, dims, keepdim: torch.sum(x, dim=dims or None, keepdim=bool(keepdim)) * 1.01,
     "sum(sum(A, dim=0) ** 2)"),
    (sf.softmax_dim, lambda x, dim: torch.softmax(x, (dim + 1) % x.dim()), "sum(softmax(A, dim=1) * A)"),
    (sf.var_dim, lambda x, c, dims, keepdim: torch.var(x, dim=dims or None, correction=0), "sum(var(A, dim=1))"),
    (sf.einsum, lambda *args: torch.einsum(args[-1], *args[:-1]).T, 'sum(einsum("ij,jk->ik", A, A) * A)'),
    (sf.stack, lambda *args: torch.stack(args[-2::-1], dim=args[-1]), "sum(stack([A[0], A[1]]) * A[:2])"),
    (sf.clamp, lambda x, lo, hi: 1.01 * torch.clamp(x, lo, hi), "sum(clamp(A, -0.5, 0.5))"),
    (sf.diag, lambda a: torch.diag(a) * 1.01, "sum(diag(A) ** 2)"),
]


@pytest.mark.parametrize("cls, wrong, expression", TAMPERED_AXES, ids=[c[2] for c in TAMPERED_AXES])
def test_a_tampered_dim_or_building_lowering_is_caught(monkeypatch, fresh_lowering, cls, wrong, expression):
    monkeypatch.setitem(lower._FUNCTIONS, cls, wrong)
    report = run(expression, {"A": A}, ["A"])
    assert report.status == "failed" and report.variables[0].status == "disagree"


@pytest.mark.parametrize("expression, values, message", [
    ("sum(A, dim=2)", {"A": "ones(2, 3)"}, "sum: dim 2 is out of range for shape [2, 3]"),
    ("sum(softmax(x, dim=1))", {"x": "[1, 2]"}, "softmax: dim 1 is out of range for shape [2]"),
    ('einsum("ij,j->i", A, x)', {"A": "ones(2, 3)", "x": "[1, 2]"}, "the letter 'j' stands for sizes 3 and 2"),
    ('einsum("ij,j->i", A)', {"A": "ones(2, 3)"}, "name 2 operands, but it is given 1"),
    ('einsum("ijk", A)', {"A": "ones(2, 3)"}, "the subscript 'ijk' names 3 dimensions"),
    ("sum(stack([x, y]))", {"x": "[1, 2]", "y": "[1, 2, 3]"}, "stack needs tensors of one shape, not [2] and [3]"),
    ("sum([x, 1])", {"x": "[1, 2]"}, "stack needs tensors of one shape, not [2] and []"),
    ("sum(diag(T))", {"T": "ones(2, 2, 2)"}, "diag takes a vector"),
    ("sum(A[..., 5])", {"A": "ones(2, 3)"}, "does not fit shape [2, 3]"),
    ("sum((A @ x)[0, 1:])", {"A": "ones(2, 2)", "x": "[1, 2]"}, "does not fit shape [2]"),
    ("var(x[0:1])", {"x": "[1, 2]"}, "var of 1 element with correction=1 divides by 0"),
    ("sum(x, dim=(0, 0))", {"x": "[1, 2]"}, "a dim is named twice"),
    ("x @ x @ x", {"x": "[1, 2]"}, "matmul needs tensors of 1 dimension or more, not shapes [] and [2]"),
])
def test_dim_and_building_mismatches_name_the_shapes(expression, values, message):
    with pytest.raises(GradcliError) as info:
        api.grad(expression, values)
    assert message in info.value.message
    assert info.value.span is not None


@pytest.mark.parametrize("text, message", [
    ('einsum("ij,j->k", A, x)', "einsum's output letter 'k' is in no operand"),
    ('einsum("i1,j", A, x)', "einsum's subscripts are letters"),
    ('einsum("ij->ii", A)', "names a letter twice"),
    ("einsum(A, x)", "the first argument of einsum is its subscripts"),
    ('sin("x")', "strings are not allowed"),
    ('sum(x, dim="0")', "dim must be a whole number"),
    ("sum(x, dim=0.5)", "dim must be a whole number"),
    ("sum(x, keepdim=1)", "keepdim is True or False"),
    ("x > 0", "comparisons are only allowed as the condition of where"),
    ("where(x, 1, 0)", "the condition of where is a comparison"),
    ("where(x is y, 1, 0)", "the comparison 'is' is not allowed"),
    ("sum(x, dim=0, axis=0)", "sum is given dim twice"),
    ("max(x, y, dim=0)", "max(x, dim=...) reduces one tensor"),
    ("transpose(A, 0)", "transpose takes two dims to swap"),
    ("x.shape", "attribute access"),
    ("x[..., ...]", "one ... at most"),
    ("stack(x)", "stack takes a bracketed list"),
])
def test_tensor_syntax_is_refused_with_a_reason(text, message):
    with pytest.raises(GradcliError) as info:
        parse_expression(text)
    assert message in info.value.message
    assert info.value.span is not None


def test_eye_is_still_a_value_constructor_after_equals():
    report = api.grad("sum(A @ x)", {"A": "eye(2)", "x": "[1, 2]"}, wrt="x")
    assert report.variables[0].gradient.data == [1, 1]


def test_explain_shows_the_torch_code_of_each_new_node():
    report = api.grad('sum(einsum("ij,j->i", A, x)) + sum(sum(A, dim=0, keepdim=True)) + where(x[0] > 0, x[1], 0) '
                      '+ sum(stack([x, x], dim=1)) + sum(eye(2) @ x) + x @ A.T @ x + sum(A[..., -1])',
                      {"A": "[[1, 2], [3, 4]]", "x": "[1, 2]"}, explain=True)
    torch_line = dict(report.explain)["torch"]
    for piece in ["torch.einsum('ij,j->i', A, x)", "torch.sum(A, dim=0, keepdim=True)",
                  "torch.where(x[0] > 0, x[1], 0)", "torch.stack([x, x], dim=1)", "torch.eye(2) @ x", "A.T",
                  "A[..., -1]"]:
        assert piece in torch_line, (piece, torch_line)


def test_terms_sympy_cancels_keep_their_shape_or_are_refused():
    values = {"x": "[1, 2]", "y": "0.5"}
    # sum(x) - sum(x) is a scalar: y is added once, as torch does
    assert api.grad("sum(sum(x) - sum(x) + y)", values, wrt="y").variables[0].gradient.data == 1
    assert api.grad("sum(x - x + y)", values, wrt="y").variables[0].gradient.data == 2
    # A @ x - A @ x had a shape of its own, which sympy's 0 has lost: refused, never guessed
    for text in ("sum(A @ x - A @ x + y)", "sum(A[..., 0] - A[..., 0] + y)"):
        with pytest.raises(GradcliError, match="sympy cancelled terms holding a tensor operation"):
            api.grad(text, {"A": "ones(2, 2)", **values})
