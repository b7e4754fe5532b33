"""gradcli: type a function, get its derivatives from PyTorch's autograd, checked by sympy.

The library API mirrors the CLI: `gradcli.grad(...)` returns the report `gradcli grad` prints,
taking values as Python has them (numbers, lists, numpy arrays, torch tensors, or text as
typed) and giving results as numpy arrays and torch tensors (see gradcli.api).
Importing this package is cheap; torch and sympy load on first use.
"""

from __future__ import annotations

from typing import Any

from gradcli.version import __version__

# Each public name and the module that defines it, imported on first use: `import gradcli` (and
# the CLI's --help) never loads torch or sympy, and the console script's warm-mode client
# (gradcli/entry.py) not even dataclasses. `diff` and `list_functions` never load torch at all.
# The computing functions come from gradcli.api: they take numpy arrays and torch tensors as
# values, and loading it lets reports show their tables in a notebook.
_LAZY = {
    "grad": "gradcli.api",
    "jacobian": "gradcli.api",
    "hessian": "gradcli.api",
    "vjp": "gradcli.api",
    "jvp": "gradcli.api",
    "evaluate": "gradcli.api",
    "graph": "gradcli.api",
    "diff": "gradcli.commands.diff",
    "minimize": "gradcli.api",
    "plot_data": "gradcli.commands.plot",
    "grad_points": "gradcli.commands.points",
    "list_functions": "gradcli.commands.functions",
    "GradcliError": "gradcli.errors",
    "ExitStatus": "gradcli.errors",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    import importlib

    if name == "api":
        return importlib.import_module("gradcli.api")
    if name in _LAZY:
        found = getattr(importlib.import_module(_LAZY[name]), name)
        if _LAZY[name] != "gradcli.errors":
            # Reports show their tables in a notebook (gradcli.diff's too, which never loads gradcli.api).
            importlib.import_module("gradcli.render.notebook").install()
        return found
    raise AttributeError(f"module 'gradcli' has no attribute {name!r}")
