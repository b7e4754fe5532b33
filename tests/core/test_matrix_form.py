"""The matrix-form route (core/matrix_form.py): sympy's matrix calculus, evaluated with numpy,
checked against the same functions written by hand in torch (a second route)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import sympy
import torch
from sympy import Determinant, Identity, Inverse, MatrixSymbol, OneMatrix, Trace
from sympy.matrices.expressions import MatrixExpr
from sympy.matrices.expressions.hadamard import HadamardPower

from gradcli.core import matrix_form as mf
from gradcli.core import numeric
from gradcli.core.check import Verdict
from gradcli.core.parse import parse_expression

N = 4
x, b = MatrixSymbol("x", N, 1), MatrixSymbol("b", N, 1)
A, X = MatrixSymbol("A", N, N), MatrixSymbol("X", N, N)
ONES = OneMatrix(1, N)


def _values(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((N, 1)), "b": rng.standard_normal((N, 1)),
            "A": rng.standard_normal((N, N)), "X": rng.standard_normal((N, N)) + N * np.eye(N)}


def _torch_gradient(f: Callable[[dict[str, torch.Tensor]], torch.Tensor], values: dict[str, np.ndarray],
                    name: str) -> np.ndarray:
    leaves = {k: torch.tensor(v, requires_grad=(k == name)) for k, v in values.items()}
    (g,) = torch.autograd.grad(f(leaves).sum(), [leaves[name]])
    return g.numpy()


CASES: list[tuple[str, Any, MatrixSymbol, Callable[[dict[str, torch.Tensor]], torch.Tensor]]] = [
    ("quadratic form", x.T * A * x, x, lambda t: t["x"].T @ t["A"] @ t["x"]),
    ("least squares by x", ONES * HadamardPower(A * x - b, 2), x, lambda t: ((t["A"] @ t["x"] - t["b"]) ** 2).sum()),
    ("least squares by A", ONES * HadamardPower(A * x - b, 2), A, lambda t: ((t["A"] @ t["x"] - t["b"]) ** 2).sum()),
    ("logdet", sympy.log(Determinant(X)), X, lambda t: torch.logdet(t["X"])),
    ("det", Determinant(X), X, lambda t: torch.det(t["X"])),
    ("sympy issue 30527", Trace(Identity(N) - X) ** 2, X,
     lambda t: torch.trace(torch.eye(N, dtype=torch.float64) - t["X"]) ** 2),
    ("trace plus a constant (sympy 26561)", Trace(X) + 1, X, lambda t: torch.trace(t["X"]) + 1),
    ("logsumexp", sympy.log(ONES * (A * x).applyfunc(sympy.exp)), x, lambda t: torch.logsumexp(t["A"] @ t["x"], 0)),
    ("trace of the inverse", Trace(Inverse(X)), X, lambda t: torch.trace(torch.linalg.inv(t["X"]))),
    ("product of two traces", Trace(X) * (x.T * X * x), X,
     lambda t: torch.trace(t["X"]) * (t["x"].T @ t["X"] @ t["x"])),
    ("inverse quadratic form by A", x.T * Inverse(A + N * Identity(N)) * x, A,
     lambda t: t["x"].T @ torch.linalg.inv(t["A"] + N * torch.eye(N, dtype=torch.float64)) @ t["x"]),
]


@pytest.mark.parametrize(("label", "objective", "wrt", "by_hand"), CASES, ids=[c[0] for c in CASES])
def test_gradient_matches_torch_by_hand(label: str, objective: Any, wrt: MatrixSymbol,
                                        by_hand: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> None:
    values = _values()
    formula = mf.gradient(objective, wrt)
    assert isinstance(formula, MatrixExpr) and tuple(formula.shape) == tuple(wrt.shape)
    got = mf.evaluate(formula, values)
    np.testing.assert_allclose(got, _torch_gradient(by_hand, values, wrt.name), rtol=1e-10, atol=1e-12)


def test_the_formula_does_not_grow_with_the_shape() -> None:
    """At n = 1000 the gradient is the same few symbols, not a million entries."""
    big_x, big_a, big_b = MatrixSymbol("x", 1000, 1), MatrixSymbol("A", 1000, 1000), MatrixSymbol("b", 1000, 1)
    formula = mf.gradient(OneMatrix(1, 1000) * HadamardPower(big_a * big_x - big_b, 2), big_x)
    assert mf.render(formula) == "2*Aᵀ @ (A @ x - b)"
    assert sympy.count_ops(formula) < 10


@pytest.mark.parametrize(("objective", "wrt", "pretty", "plain", "latex"), [
    (x.T * A * x, x, "(A + Aᵀ) @ x", "(A + A.T) @ x", r"\left(A + A^{T}\right) x"),
    (ONES * HadamardPower(A * x - b, 2), x, "2*Aᵀ @ (A @ x - b)", "2*A.T @ (A @ x - b)",
     r"2 A^{T} \left(A x - b\right)"),
    (sympy.log(Determinant(X)), X, "X⁻ᵀ", "inv(X).T", "X^{-T}"),
])
def test_printing(objective: Any, wrt: MatrixSymbol, pretty: str, plain: str, latex: str) -> None:
    formula = mf.gradient(objective, wrt)
    assert mf.render(formula) == pretty
    assert mf.render(formula, unicode=False) == plain
    assert mf.render_latex(formula) == latex


def test_converts_gradclis_tree() -> None:
    """sum and mean of elementwise functions of vectors, from the parser's tree."""
    parsed = parse_expression("sum(exp(x)*x**2) + mean(sin(x)*y)")
    converter = mf.Converter({v.symbol: (N,) for v in parsed.variables.values()})
    objective = converter.convert(parsed.expr)
    values = _values()
    values["y"] = np.linspace(-1, 1, N).reshape(N, 1)
    got = mf.evaluate(mf.gradient(objective, converter.symbols[parsed.variables["x"].symbol]), values)
    expected = _torch_gradient(lambda t: (torch.exp(t["x"]) * t["x"] ** 2).sum() + (torch.sin(t["x"]) * t["y"]).mean(),
                               values, "x")
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def _numeric(by_hand: Callable[[dict[str, torch.Tensor]], torch.Tensor], values: dict[str, np.ndarray]) -> mf.Judge:
    """The numeric route (core/numeric.py) over f written by hand in torch: neither sympy nor
    autograd takes part."""
    point = {k: torch.tensor(v) for k, v in values.items()}
    probes: dict[str, numeric.Probe] = {}

    def judge(name: str, answer: Any) -> bool | None:
        if name not in probes:
            probes[name] = numeric.gradient_probe(lambda env: by_hand(dict(env)), point, name)
        candidate = torch.as_tensor(np.asarray(answer, dtype=np.float64)).reshape(point[name].shape)
        status = probes[name].judge(candidate, rtol=1e-6, atol=1e-8).status
        return True if status == Verdict.AGREE else False if status == Verdict.DISAGREE else None

    return judge


def test_a_wrong_autograd_is_caught_and_blamed() -> None:
    values = _values()
    objective = sympy.log(Determinant(X))
    honest = _torch_gradient(lambda t: torch.logdet(t["X"]), values, "X")
    judge = _numeric(lambda t: torch.logdet(t["X"]), values)
    check = mf.check_gradient(objective, X, values, honest, rtol=1e-6, atol=1e-8, judge=judge)
    assert check.verdict == mf.AGREE
    tampered = honest.copy()
    tampered[0, 1] += 0.5
    check = mf.check_gradient(objective, X, values, tampered, rtol=1e-6, atol=1e-8, judge=judge)
    assert check.verdict == mf.AUTOGRAD_ERROR
    assert "autograd's error" in check.message


def test_a_wrong_sympy_derivative_is_blamed_on_sympy(monkeypatch: pytest.MonkeyPatch) -> None:
    """sympy's matrix calculus, deliberately broken: d tr(M)/dX comes out doubled."""
    values = _values()
    objective = ONES * HadamardPower(A * x - b, 2)
    honest = _torch_gradient(lambda t: ((t["A"] @ t["x"] - t["b"]) ** 2).sum(), values, "x")
    real_diff = Trace.diff

    def doubled(self: Trace, *symbols: Any, **kwargs: Any) -> Any:
        return 2 * real_diff(self, *symbols, **kwargs)

    monkeypatch.setattr(Trace, "diff", doubled)
    monkeypatch.setattr(MatrixExpr, "diff", doubled)
    judge = _numeric(lambda t: ((t["A"] @ t["x"] - t["b"]) ** 2).sum(), values)
    check = mf.check_gradient(objective, x, values, honest, rtol=1e-6, atol=1e-8, judge=judge)
    assert check.verdict == mf.SYMPY_ERROR
    assert check.message == ("sympy's matrix formula disagrees with autograd and with finite "
                             "differences: sympy's error")


def test_without_a_numeric_route_a_disagreement_is_not_arbitrated() -> None:
    values = _values()
    wrong = np.zeros((N, 1))
    check = mf.check_gradient(x.T * A * x, x, values, wrong, rtol=1e-6, atol=1e-8)
    assert check.verdict == mf.DISAGREE


def test_a_lowering_that_computes_another_function_is_not_blamed_on_sympy() -> None:
    """torch's f is not the typed f: finite differences of torch's f side with autograd, so the
    value of f decides, and the disagreement stays a disagreement."""
    values = _values()

    def wrong(t: dict[str, torch.Tensor]) -> torch.Tensor:
        return ((t["A"].T @ t["x"] - t["b"]) ** 2).sum()  # a lowering that transposed A

    autograd = _torch_gradient(wrong, values, "x")
    check = mf.check_gradient(ONES * HadamardPower(A * x - b, 2), x, values, autograd, rtol=1e-6, atol=1e-8,
                              judge=_numeric(wrong, values), f_value=float(wrong(
                                  {k: torch.tensor(v) for k, v in values.items()})))
    assert check.verdict == mf.DISAGREE
    assert "the lowering computes another function" in check.message


def test_what_it_cannot_do_is_unavailable_not_agree() -> None:
    element = X[0, 1] ** 2  # sympy's MatrixElement derivative is 0 (sympy issue 17229)
    check = mf.check_gradient(element, X, _values(), np.zeros((N, N)), rtol=1e-6, atol=1e-8)
    assert check.verdict == mf.UNAVAILABLE
    scalar = mf.check_gradient(sympy.Symbol("s") ** 2, sympy.Symbol("s"), {"s": 1.0}, 2.0, rtol=1e-6, atol=1e-8)
    assert scalar.verdict == mf.UNAVAILABLE


JACOBIANS: list[tuple[Any, str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = [
    (A * x, "A", lambda v, a: a @ v),
    ((A * x).applyfunc(sympy.exp), "diag(exp(A @ x)) @ A", lambda v, a: torch.exp(a @ v)),
    (A * x.applyfunc(sympy.sin), "A @ diag(cos(x))", lambda v, a: a @ torch.sin(v)),
    (A * x + 2 * HadamardPower(x, 3), "6*diag(x**2) + A", lambda v, a: a @ v + 2 * v**3),
]


@pytest.mark.parametrize(("output", "pretty", "by_hand"), JACOBIANS, ids=[j[1] for j in JACOBIANS])
def test_jacobian_matches_torch_by_hand(output: Any, pretty: str,
                                        by_hand: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    values = _values()
    formula = mf.jacobian(output, x)
    assert mf.render(formula) == pretty
    a = torch.tensor(values["A"])
    expected = torch.autograd.functional.jacobian(lambda v: by_hand(v, a), torch.tensor(values["x"][:, 0]))
    np.testing.assert_allclose(mf.evaluate(formula, values), expected.numpy(), rtol=1e-12, atol=1e-14)


def test_entry_points_from_the_parsed_tree() -> None:
    """matrix_gradients and matrix_jacobians read the parser's tree, table and torch values."""
    parsed = parse_expression("exp(x)*y")
    values = {"x": torch.tensor([0.5, -1.0, 2.0]), "y": torch.tensor([1.0, 2.0, 3.0])}
    table = parsed.symbol_table()
    grads = mf.matrix_gradients(parsed.components, parsed.shape, table, values, ["x", "y"], "mean")
    x_grad, y_grad = grads["x"], grads["y"]
    assert isinstance(x_grad, mf.MatrixGradient) and isinstance(y_grad, mf.MatrixGradient)
    np.testing.assert_allclose(x_grad.value, (torch.exp(values["x"]) * values["y"]).double().numpy() / 3, rtol=1e-7)
    np.testing.assert_allclose(y_grad.value, torch.exp(values["x"]).double().numpy() / 3, rtol=1e-7)
    jacobians = mf.matrix_jacobians(parsed.components, parsed.shape, table, values, ["x"])
    x_jacobian = jacobians["x"]
    assert isinstance(x_jacobian, mf.MatrixGradient)
    assert x_jacobian.formula == "diag(exp(x)*y)"
    np.testing.assert_allclose(x_jacobian.value, np.diag((torch.exp(values["x"]) * values["y"]).double().numpy()),
                               rtol=1e-7)
    indexed = parse_expression("x[0]*y[1]")
    reasons = mf.matrix_gradients(indexed.components, indexed.shape, indexed.symbol_table(), values, ["x"])
    assert isinstance(reasons["x"], str) and "x[0]" in reasons["x"]


def test_complete_fills_what_the_entry_route_could_not() -> None:
    """reference.py's hook: the formula always, the value only where the other route had none,
    and both reasons where neither route has a value."""
    from gradcli.core.reference import SymbolicGradient

    parsed = parse_expression("sum(x**2)")
    values = {"x": torch.tensor([1.0, 2.0]), "y": torch.tensor([3.0, 4.0])}
    found = mf.matrix_gradients(parsed.components, parsed.shape, parsed.symbol_table(), values, ["x"])
    kept = SymbolicGradient("x entry by entry", torch.tensor([2.0, 4.0], dtype=torch.float64))
    results = {"x": kept}
    mf.complete(results, found)
    assert results["x"].formula == "2*x" and results["x"].value is not None
    too_big = {"x": SymbolicGradient("?", None, "9 entries exceed the symbolic limit 8")}
    mf.complete(too_big, found)
    assert too_big["x"].unavailable is None and too_big["x"].value is not None
    np.testing.assert_allclose(too_big["x"].value.numpy(), [2.0, 4.0])
    neither = {"y": SymbolicGradient("?", None, "9 entries exceed the symbolic limit 8")}
    mf.complete(neither, {"y": "outer of other than two vectors"})
    assert neither["y"].value is None
    assert neither["y"].unavailable == ("9 entries exceed the symbolic limit 8; no matrix form: "
                                        "outer of other than two vectors")


# ---------------------------------------------------------------------------------------------
# Through the commands: above the entry-by-entry limit, the matrix form checks on its own

BIG = 40  # 40 x 40 is over the expansion limit (tests/core/test_tensor_programs.py says which)


def _big_values() -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(3)
    return {"A": torch.tensor(rng.standard_normal((BIG, BIG)) / BIG**0.5),
            "x": torch.tensor(rng.standard_normal(BIG)), "b": torch.tensor(rng.standard_normal(BIG))}


def _as_text(values: dict[str, torch.Tensor]) -> dict[str, str]:
    return {name: repr(t.tolist()) for name, t in values.items()}


def test_a_large_program_is_checked_in_matrix_form() -> None:
    from gradcli import api

    values = _big_values()
    report = api.grad("sum((A @ x - b)**2)", _as_text(values), dtype="float64")
    by_name = {v.name: v for v in report.variables}
    assert {v.status for v in report.variables} == {"agree"}
    assert by_name["x"].formula == "2*Aᵀ @ (A @ x - b)"
    hand = {k: v.double().requires_grad_() for k, v in values.items()}
    torch.sum((hand["A"] @ hand["x"] - hand["b"]) ** 2).backward()
    for name, leaf in hand.items():
        assert leaf.grad is not None
        np.testing.assert_allclose(np.asarray(by_name[name].gradient.data), leaf.grad.numpy(), rtol=1e-10)


def test_a_tampered_matmul_is_caught_by_the_matrix_form_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradcli import api
    from gradcli.core import lower, session
    from gradcli.core import sympy_functions as sf

    session.parse_cached.cache_clear()  # a fresh lowering, through the tampered table
    monkeypatch.setitem(lower._FUNCTIONS, sf.matmul, lambda a, b: 1.01 * torch.matmul(a, b))
    try:
        report = api.grad("sum((A @ x - b)**2)", _as_text(_big_values()), wrt="x", dtype="float64")
    finally:
        session.parse_cached.cache_clear()
    assert report.status == "failed"
    assert [v.status for v in report.variables] == ["disagree"]
    # torch's f is not the matrix form's f: the lowering erred, never sympy
    assert "the lowering to torch erred" in (report.variables[0].note or "")


def test_a_wrong_sympy_matrix_derivative_is_blamed_on_sympy_by_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """sympy's matrix calculus deliberately broken (every derivative doubled): finite differences
    side with autograd, torch's f is the matrix form's f, so the verdict names sympy."""
    from gradcli import api

    real_diff = Trace.diff

    def doubled(self: Trace, *symbols: Any, **kwargs: Any) -> Any:
        return 2 * real_diff(self, *symbols, **kwargs)

    monkeypatch.setattr(Trace, "diff", doubled)
    monkeypatch.setattr(MatrixExpr, "diff", doubled)
    report = api.grad("sum((A @ x - b)**2)", _as_text(_big_values()), wrt="x", dtype="float64")
    (variable,) = report.variables
    assert variable.status == "sympy error"
    assert "sympy's formula disagrees with autograd and with finite differences: sympy's error" in (variable.note or "")
    np.testing.assert_allclose(np.asarray(variable.gradient.data), _torch_gradient(
        lambda t: ((t["A"] @ t["x"] - t["b"]) ** 2).sum(),
        {k: v.numpy() for k, v in _big_values().items()}, "x"), rtol=1e-10)


def _spd(n: int, seed: int) -> torch.Tensor:
    m = torch.tensor(np.random.default_rng(seed).standard_normal((n, n)))
    return m @ m.T + n * torch.eye(n, dtype=torch.float64)


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.tensor(np.random.default_rng(seed).standard_normal(shape))


PROGRAMS: list[tuple[str, dict[str, torch.Tensor], Callable[..., torch.Tensor]]] = [
    ("x @ A @ x", {"x": _rand(6), "A": _rand(6, 6, seed=1)}, lambda x, A: x @ A @ x),
    ("sum((A @ x - b)**2)", {"A": _rand(7, 5), "x": _rand(5, seed=1), "b": _rand(7, seed=2)},
     lambda A, x, b: torch.sum((A @ x - b) ** 2)),
    ("logdet(X)", {"X": _spd(6, 0)}, lambda X: torch.logdet(X)),
    ("det(X)", {"X": _spd(4, 1)}, lambda X: torch.det(X)),
    ("logabsdet(X)", {"X": _rand(5, 5, seed=3)}, lambda X: torch.linalg.slogdet(X)[1]),
    ("trace(inv(X) @ A)", {"X": _spd(5, 2), "A": _rand(5, 5)}, lambda X, A: torch.trace(torch.linalg.inv(X) @ A)),
    ("sum(solve(X, b))", {"X": _spd(5, 3), "b": _rand(5)}, lambda X, b: torch.sum(torch.linalg.solve(X, b))),
    ("sum(sigmoid(linear(Z, W, c)))", {"Z": _rand(8, 3), "W": _rand(4, 3, seed=1), "c": _rand(4, seed=2)},
     lambda Z, W, c: torch.sum(torch.sigmoid(torch.nn.functional.linear(Z, W, c)))),
    ("trace(X.T @ X) + sum(outer(b, c) * X)", {"X": _rand(4, 4), "b": _rand(4, seed=1), "c": _rand(4, seed=2)},
     lambda X, b, c: torch.trace(X.T @ X) + torch.sum(torch.outer(b, c) * X)),
    ("mean(exp(A @ x) * y)", {"A": _rand(6, 4), "x": _rand(4, seed=1), "y": _rand(6, seed=2)},
     lambda A, x, y: torch.mean(torch.exp(A @ x) * y)),
    # reductions over a dim, and eye
    ("sum(sum(X**2, dim=1) * y)", {"X": _rand(4, 3), "y": _rand(4, seed=1)},
     lambda X, y: torch.sum(torch.sum(X**2, dim=1) * y)),
    ("sum(exp(mean(X, dim=0)) * z)", {"X": _rand(4, 3), "z": _rand(3, seed=1)},
     lambda X, z: torch.sum(torch.exp(torch.mean(X, dim=0)) * z)),
    ("sum(sum(X, dim=0, keepdim=True) @ W) + trace(eye(3) @ W @ V)",
     {"X": _rand(4, 3), "W": _rand(3, 2, seed=1), "V": _rand(2, 3, seed=2)},
     lambda X, W, V: torch.sum(torch.sum(X, dim=0, keepdim=True) @ W)
     + torch.trace(torch.eye(3, dtype=W.dtype) @ W @ V)),
    # scalar variables: differentiated as 1x1 matrices, broadcast by ones
    ("bce(sigmoid(X @ w + b), y)", {"X": _rand(9, 2), "w": _rand(2, seed=1),
                                    "b": torch.tensor(0.3, dtype=torch.float64), "y": (_rand(9, seed=2) > 0).double()},
     lambda X, w, b, y: torch.nn.functional.binary_cross_entropy(torch.sigmoid(X @ w + b), y)),
    ("b*x @ x + sin(b) + sum(b*A + b**2*exp(A))", {"x": _rand(3), "b": torch.tensor(0.7, dtype=torch.float64),
                                                   "A": _rand(3, 2, seed=1)},
     lambda x, b, A: b * x @ x + torch.sin(b) + torch.sum(b * A + b**2 * torch.exp(A))),
]


@pytest.mark.parametrize(("text", "values", "by_hand"), PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_tensor_programs_against_torch_by_hand(text: str, values: dict[str, torch.Tensor],
                                               by_hand: Callable[..., torch.Tensor]) -> None:
    """The parsed program in matrix form, evaluated, is the gradient of the same program
    written by hand in torch (float64), for every variable."""
    parsed = parse_expression(text)
    names = list(parsed.variables)
    found = mf.matrix_gradients(parsed.components, parsed.shape, parsed.symbol_table(), values, names)
    leaves = {k: v.clone().requires_grad_() for k, v in values.items()}
    grads = torch.autograd.grad(by_hand(**leaves), [leaves[n] for n in names])
    for name, expected in zip(names, grads, strict=True):
        got = found[name]
        assert isinstance(got, mf.MatrixGradient), got
        np.testing.assert_allclose(got.value, expected.numpy(), rtol=1e-9, atol=1e-12)


def test_kinks_in_matrix_form_are_kinks_not_agreement() -> None:
    """relu and abs at 0 inside a large program: the matrix form's derivative is NaN there, so the
    check says kink (torch's convention), never agree by coincidence."""
    from gradcli import api

    x = _rand(40).tolist()
    report = api.grad("sum(relu(A @ x))", {"A": repr(torch.zeros(40, 40).tolist()), "x": repr(x)}, dtype="float64")
    assert {v.status for v in report.variables} == {"kink"}
    away = api.grad("sum(abs(A @ x))", {"A": repr(_rand(40, 40).tolist()), "x": repr(x)}, dtype="float64")
    assert {v.status for v in away.variables} == {"agree"}
    assert {v.name: v.formula for v in away.variables} == {"A": "sign(A @ x) @ xᵀ", "x": "Aᵀ @ sign(A @ x)"}


def test_a_matrix_formula_that_disagrees_with_the_entries_is_not_shown() -> None:
    from gradcli.core.reference import SymbolicGradient

    parsed = parse_expression("sum(x**2)")
    found = mf.matrix_gradients(parsed.components, parsed.shape, parsed.symbol_table(),
                                {"x": torch.tensor([1.0, 2.0])}, ["x"])
    wrong_entries = {"x": SymbolicGradient("[2*x[0], 3*x[1]]", torch.tensor([2.0, 6.0], dtype=torch.float64))}
    mf.complete(wrong_entries, found)
    assert wrong_entries["x"].formula == "[2*x[0], 3*x[1]]"
