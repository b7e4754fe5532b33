"""Symbolic derivatives alone, for `gradcli diff`: sympy only, never torch.

Without values there are no shapes, so every variable is read as a scalar: `sum(h)` and
`mean(h)` of a scalar are h itself (said in a note). For tensors, `gradcli grad` knows the
shapes and applies the chain rule around reductions. With `--shape x=3 --shape A=3x3` the
variables are vectors and matrices, and the gradient comes in matrix form (core/matrix_form.py):
`(A + Aᵀ) @ x` for `x @ A @ x`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

import sympy

from gradcli.core import sympy_functions
from gradcli.core.parse import ParsedExpression, parse_expression
from gradcli.errors import GradcliError
from gradcli.report import Derivative, DiffReport

MAX_DIFF_ORDER = 50
SIMPLIFY_SECONDS = 1.0  # simplify() is tried for this long at most, then the raw derivative stands
SIMPLIFY_MAX_OPS = 300  # larger derivatives are not simplified at all


class _Timeout(Exception):
    pass


def _simplify(expr: sympy.Expr) -> tuple[sympy.Expr, bool]:
    """sympy.simplify under a time bound: a large expression never hangs `diff`."""
    if sympy.count_ops(expr) > SIMPLIFY_MAX_OPS:
        return expr, False
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return expr, False

    def stop(signum: int, frame: FrameType | None) -> NoReturn:
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, SIMPLIFY_SECONDS)
    try:
        simpler = sympy.simplify(expr)
    except _Timeout:
        return expr, False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    # Keep the simpler form only when it really is shorter.
    if sympy.count_ops(simpler) < sympy.count_ops(expr):
        return simpler, True
    return expr, False


def _latex(expr: sympy.Expr) -> str:
    latex: str = sympy.latex(expr)  # sympy is untyped (Any)
    return (latex.replace(r"\operatorname{tsum}", r"\sum")
            .replace(r"\operatorname{tmean}", r"\operatorname{mean}"))


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """`NAME=3x3` (or `NAME=3`, `NAME=2,3`, `NAME=()` for a scalar) -> (NAME, (3, 3))."""
    name, sep, dims = text.partition("=")
    name, dims = name.strip(), dims.strip().replace("×", "x").replace(",", "x")
    if not sep or not name.isidentifier():
        raise GradcliError(f"--shape {text!r} is not NAME=SHAPE", hint="for example --shape A=3x3 --shape x=3")
    if dims in ("()", ""):
        return name, ()
    parts = dims.strip("()[]").split("x")
    if not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise GradcliError(f"--shape {text!r}: {dims!r} is not a shape such as 3 or 3x3",
                           hint="sizes are whole numbers above 0, joined by x")
    return name, tuple(int(p) for p in parts)


def _matrix_form(parsed: ParsedExpression, expr: sympy.Basic, names: Sequence[str],
                 shapes: dict[str, tuple[int, ...]]) -> list[Derivative]:
    """Each gradient in matrix form: sympy's matrix calculus over the given shapes."""
    from gradcli.core import matrix_form

    unknown = sorted(set(shapes) - set(parsed.variables))
    if unknown:
        raise GradcliError(f"--shape names {', '.join(unknown)}, not a variable of the expression "
                           f"(its variables: {', '.join(parsed.variables) or 'none'})")
    if any(v.indices for v in parsed.variables.values()):
        raise GradcliError("diff --shape takes whole variables, not elements such as x[0]",
                           hint="gradcli grad with values differentiates through indexing")
    converter = matrix_form.Converter({v.symbol: shapes.get(n, ()) for n, v in parsed.variables.items()})
    results = []
    try:
        objective, ndim = converter.convert_with_ndim(expr)
        if ndim != 0:
            raise GradcliError("the expression is not a scalar at these shapes",
                               hint="wrap it in sum(...) or give the shapes that make it one")
        for n in names:
            wrt = converter.symbols[parsed.variables[n].symbol]
            if not isinstance(wrt, sympy.MatrixSymbol):
                raise GradcliError(f"{n} is a scalar here: give it a shape, or leave --shape out")
            formula = matrix_form.gradient(objective, wrt)
            results.append(Derivative(n, 1, formula, matrix_form.render(formula, unicode=False),
                                      matrix_form.render_latex(formula), matrix_form.render(formula), False))
    except matrix_form.MatrixFormUnsupported as why:
        raise GradcliError(f"no derivative in matrix form: {why}",
                           hint="leave --shape out for the scalar derivative") from None
    return results


def diff(expression: str, variables: Sequence[str] | None = None, *, order: int = 1,
         simplify: bool = True, shapes: Sequence[str] = ()) -> DiffReport:
    """The symbolic derivative of `expression` with respect to each variable, up to `order`;
    with `shapes` (`x=3`, `A=3x3`), the gradient in matrix form."""
    if not 1 <= order <= MAX_DIFF_ORDER:
        raise GradcliError(f"--order must be between 1 and {MAX_DIFF_ORDER}, not {order}")
    shape_of = dict(parse_shape(text) for text in shapes)
    if shape_of and order != 1:
        raise GradcliError("--shape gives the gradient in matrix form: first order only",
                           hint="leave --order out, or --shape out for scalar derivatives of higher order")
    parsed = parse_expression(expression)
    if parsed.is_list:
        raise GradcliError("diff takes one expression, not a list", hint="use gradcli jacobian for a vector function")
    if shape_of:
        names = list(variables) if variables else list(parsed.variables)
        for n in names:
            if n not in parsed.variables:
                raise GradcliError(f"{n} is not a variable of the expression "
                                   f"(its variables: {', '.join(parsed.variables) or 'none'})")
        derivatives = _matrix_form(parsed, parsed.expr, names, shape_of)
        return DiffReport(expression, parsed.pretty(), derivatives)
    if sympy_functions.has_tensor_ops(parsed.components):
        raise GradcliError("the expression has matrix operations, whose derivative depends on the shapes",
                           hint="give each variable's shape (--shape NAME=3 for a vector, NAME=3x3 for a matrix) "
                                "for the gradient in matrix form; gradcli grad and jacobian compute it at values")
    expr = sympy_functions.expand_definitions(parsed.expr)
    notes = []
    reductions = list(expr.atoms(sympy_functions.Reduction))
    if reductions:
        expr = expr.replace(lambda n: isinstance(n, sympy_functions.Reduction), lambda n: n.args[0])
        notes.append("diff reads every variable as a scalar, so sum(h) and mean(h) are h; "
                     "gradcli grad with tensor values applies them")
    names = list(variables) if variables else list(parsed.variables)
    for n in names:
        if n not in parsed.variables:
            raise GradcliError(f"{n} is not a variable of the expression "
                               f"(its variables: {', '.join(parsed.variables) or 'none'})")
    results = []
    for n in names:
        var = parsed.variables[n]
        symbols = [var.symbol] if var.used_whole else []
        symbols += list(var.indices.values())
        for sym in symbols:
            label = str(sym)
            d = expr
            for k in range(1, order + 1):
                d = sympy.diff(d, sym)
                shown, simplified = _simplify(d) if simplify else (d, False)
                results.append(Derivative(label, k, shown, sympy.sstr(shown), _latex(shown),
                                          sympy.pretty(shown, use_unicode=True), simplified))
    return DiffReport(expression, parsed.pretty(), results, warnings=notes)
