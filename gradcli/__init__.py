"""gradcli: type a function, get its derivatives from PyTorch's autograd, checked by sympy.

The library API mirrors the CLI: `gradcli.grad(...)` returns the report `gradcli grad` prints.
Importing this package is cheap; torch and sympy load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "grad", "GradcliError", "ExitStatus"]

from gradcli.errors import ExitStatus, GradcliError


def __getattr__(name: str):
    if name == "grad":
        from gradcli.api import grad

        return grad
    raise AttributeError(f"module 'gradcli' has no attribute {name!r}")
