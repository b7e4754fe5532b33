"""The library API: each function runs the whole pipeline and returns a report.

    >>> import numpy as np
    >>> import gradcli
    >>> report = gradcli.grad("sum(w**2)", w=np.array([1.0, 2.0]))
    >>> report.gradient["w"].array
    array([2., 4.])

Values come as Python has them: text as typed after NAME= ("[1,2]", "randn(3)"), numbers,
lists, numpy arrays and scalars, torch tensors. A computation on torch tensors runs in their
dtype and on their device unless dtype= or device= says otherwise. Results are numpy arrays
(`.array`) and torch tensors (`.tensor`), and a report shows its table in a notebook.

The CLI is a thin layer over gradcli.commands; these are the same functions, taking Python's values.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch

from gradcli.commands import evaluate as evaluate_command
from gradcli.commands import grad as grad_command
from gradcli.commands import hessian as hessian_command
from gradcli.commands import jacobian as jacobian_command
from gradcli.commands import minimize as minimize_command
from gradcli.commands import vectors
from gradcli.core.values import ValuesArg, library_value, read_values
from gradcli.errors import GradcliError
from gradcli.render import notebook

__all__ = ["ValuesArg", "evaluate", "grad", "graph", "hessian", "jacobian", "jvp", "minimize", "read_values", "vjp"]

notebook.install()

ReportT = TypeVar("ReportT")


def tensors_given(values: ValuesArg, options: Mapping[str, Any], settings: Mapping[str, Any]) -> list[torch.Tensor]:
    """The torch tensors among the values (positional mapping and keyword variables) and v."""
    given = list(values.values()) if isinstance(values, Mapping) else []
    given += [value for name, value in options.items() if name not in settings or name == "vector"]
    return [value for value in given if isinstance(value, torch.Tensor)]


def kept_dtype_and_device(values: ValuesArg, options: dict[str, Any], settings: Mapping[str, Any]) -> None:
    """dtype and device from the torch tensors given, where the caller did not choose them:
    the floating dtype they promote to, and the device they are on."""
    tensors = tensors_given(values, options, settings)
    if "dtype" not in options or options["dtype"] is None:
        floating = [t.dtype for t in tensors if t.is_floating_point()]
        if floating:
            options["dtype"] = str(functools.reduce(torch.promote_types, floating)).removeprefix("torch.")
        else:
            options.pop("dtype", None)
    if "device" not in options or options["device"] is None:
        devices = sorted({str(t.device) for t in tensors})
        if len(devices) > 1:
            raise GradcliError(f"the tensors given are on different devices ({', '.join(devices)})",
                               hint="choose one with device=..., or move them: t.to(device)")
        if devices:
            options["device"] = devices[0]
        else:
            options.pop("device", None)


def takes_python_values(command: Callable[..., ReportT]) -> Callable[..., ReportT]:
    """`command` (a function of gradcli.commands), taking Python's values: torch tensors keep
    their dtype and device unless dtype= or device= is given; v (vjp, jvp) may be an array too."""
    settings = inspect.signature(command).parameters

    @functools.wraps(command)
    def run(expression: str, values: ValuesArg = (), **options: Any) -> ReportT:
        kept_dtype_and_device(values, options, settings)
        if options.get("vector") is not None:
            options["vector"] = library_value("v", options["vector"])
        return command(expression, values, **options)

    return run


grad = takes_python_values(grad_command.grad)
jacobian = takes_python_values(jacobian_command.jacobian)
hessian = takes_python_values(hessian_command.hessian)
vjp = takes_python_values(vectors.vjp)
jvp = takes_python_values(vectors.jvp)
evaluate = takes_python_values(evaluate_command.evaluate)
graph = takes_python_values(evaluate_command.graph)
minimize = takes_python_values(minimize_command.minimize)
