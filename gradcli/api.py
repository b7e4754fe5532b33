"""The library API: each function runs the whole pipeline and returns a report.

    >>> import gradcli
    >>> report = gradcli.grad("2*x**2 + 5", {"x": 5})
    >>> report.variables[0].gradient.data
    20.0

The CLI is a thin layer over these functions.
"""

from __future__ import annotations

from gradcli.commands.evaluate import evaluate, graph
from gradcli.commands.grad import grad
from gradcli.commands.hessian import hessian
from gradcli.commands.jacobian import jacobian
from gradcli.commands.vectors import jvp, vjp
from gradcli.core.values import ValuesArg, read_values

__all__ = ["ValuesArg", "evaluate", "grad", "graph", "hessian", "jacobian", "jvp", "read_values", "vjp"]
