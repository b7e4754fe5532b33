"""gradcli: type a function, get its derivatives from PyTorch's autograd, checked by sympy.

The library API mirrors the CLI: `gradcli.grad(...)` returns the report `gradcli grad` prints.
Importing this package is cheap; torch and sympy load on first use.
"""

from __future__ import annotations

from typing import Any

from gradcli.version import __version__

__all__ = ["__version__", "grad", "jacobian", "hessian", "vjp", "jvp", "evaluate", "graph", "diff",
           "minimize", "GradcliError", "ExitStatus"]
_API = {"grad", "jacobian", "hessian", "vjp", "jvp", "evaluate", "graph"}


def __getattr__(name: str) -> Any:
    # Lazy, so `import gradcli` (and the CLI's --help) never loads torch or sympy, and the
    # console script's warm-mode client (gradcli/entry.py) not even dataclasses.
    if name in ("ExitStatus", "GradcliError"):
        from gradcli import errors

        return getattr(errors, name)
    if name == "diff":  # symbolic only: never loads torch
        from gradcli.commands.diff import diff

        return diff
    if name == "minimize":  # gradient descent: gradcli/minimize.py, over the same pipeline
        from gradcli.commands.minimize import minimize

        return minimize
    if name in _API or name == "api":
        import importlib

        api = importlib.import_module("gradcli.api")
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module 'gradcli' has no attribute {name!r}")
