"""Symbolic derivatives alone, for `gradcli diff`: sympy only, never torch.

Without values there are no shapes, so every variable is read as a scalar: `sum(h)` and
`mean(h)` of a scalar are h itself (said in a note). For tensors, `gradcli grad` knows the
shapes and applies the chain rule around reductions.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

import sympy

from gradcli.core import sympy_functions
from gradcli.core.parse import parse_expression
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


def diff(expression: str, variables: Sequence[str] | None = None, *, order: int = 1,
         simplify: bool = True) -> DiffReport:
    """The symbolic derivative of `expression` with respect to each variable, up to `order`."""
    if not 1 <= order <= MAX_DIFF_ORDER:
        raise GradcliError(f"--order must be between 1 and {MAX_DIFF_ORDER}, not {order}")
    parsed = parse_expression(expression)
    if parsed.is_list:
        raise GradcliError("diff takes one expression, not a list", hint="use gradcli jacobian for a vector function")
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
