"""Gradients by PyTorch's autograd, three ways, each on fresh leaves.

Every method builds its own leaf tensors, so gradients never accumulate across methods
(the seeds' warning: `.grad` adds up unless zeroed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from gradcli.errors import GradcliError

METHODS = ("grad", "backward", "jacobian")
REDUCTIONS = ("sum", "mean")

Function = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


@dataclass
class Gradient:
    """What one autograd method produced."""

    method: str
    call: str  # the torch call, as a reader would write it
    output: torch.Tensor  # f, before any reduction (detached)
    differentiated: torch.Tensor  # the scalar that was differentiated (detached)
    gradients: dict[str, torch.Tensor]


def _reduce(out: torch.Tensor, reduction: str) -> torch.Tensor:
    if out.dim() == 0:
        return out
    return out.sum() if reduction == "sum" else out.mean()


def _leaves(values: Mapping[str, torch.Tensor], wrt: list[str]) -> dict[str, torch.Tensor]:
    return {n: values[n].detach().clone().requires_grad_(True) for n in wrt}


def _env(values: Mapping[str, torch.Tensor], leaves: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    env = {n: v.detach() for n, v in values.items()}
    env.update(leaves)
    return env


def _by_grad(fn: Function, values, wrt, reduction) -> Gradient:
    leaves = _leaves(values, wrt)
    out = fn(_env(values, leaves))
    scalar = _reduce(out, reduction)
    tensors = list(leaves.values())
    if scalar.requires_grad:
        grads = torch.autograd.grad(scalar, tensors, allow_unused=True, materialize_grads=True)
    else:  # f does not depend on any variable (x - x): every gradient is zero
        grads = [torch.zeros_like(t) for t in tensors]
    return Gradient("grad", f"torch.autograd.grad(f, [{', '.join(wrt)}])", out.detach(), scalar.detach(),
                    dict(zip(wrt, (g.detach() for g in grads))))


def _by_backward(fn: Function, values, wrt, reduction) -> Gradient:
    leaves = _leaves(values, wrt)
    out = fn(_env(values, leaves))
    scalar = _reduce(out, reduction)
    if scalar.requires_grad:
        scalar.backward()
    grads = {n: (t.grad if t.grad is not None else torch.zeros_like(t)).detach() for n, t in leaves.items()}
    return Gradient("backward", "f.backward(); " + ", ".join(f"{n}.grad" for n in wrt), out.detach(),
                    scalar.detach(), grads)


def _by_jacobian(fn: Function, values, wrt, reduction) -> Gradient:
    leaves = _leaves(values, wrt)
    captured: dict[str, torch.Tensor] = {}

    def f(*tensors: torch.Tensor) -> torch.Tensor:
        out = fn(_env(values, dict(zip(wrt, tensors))))
        captured["out"] = out
        return _reduce(out, reduction)

    jac = torch.autograd.functional.jacobian(f, tuple(leaves.values()))
    out = captured["out"]
    return Gradient("jacobian", f"torch.autograd.functional.jacobian(f, ({', '.join(wrt)},))", out.detach(),
                    _reduce(out, reduction).detach(), dict(zip(wrt, (j.detach() for j in jac))))


_BY_METHOD = {"grad": _by_grad, "backward": _by_backward, "jacobian": _by_jacobian}


def gradient(fn: Function, values: Mapping[str, torch.Tensor], wrt: list[str], *, method: str,
             reduction: str = "sum") -> Gradient:
    """The gradient of fn (reduced to a scalar if it is not one) with respect to `wrt`."""
    if method not in _BY_METHOD:
        raise GradcliError(f"unknown method '{method}'", hint="choose " + ", ".join(METHODS) + " or all")
    if reduction not in REDUCTIONS:
        raise GradcliError(f"unknown reduction '{reduction}'", hint="choose sum or mean")
    try:
        return _BY_METHOD[method](fn, values, wrt, reduction)
    except (RuntimeError, TypeError, ValueError, IndexError, NotImplementedError) as exc:
        raise torch_error(exc) from None


def torch_error(exc: BaseException) -> GradcliError:
    """A torch failure on user input, as a one-line error with a hint where one helps."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    hint = None
    if "not implemented for" in message and ("Half" in message or "BFloat16" in message):
        hint = "this function has no kernel for that dtype on this device: try --dtype float32"
    elif "out of memory" in message.lower():
        hint = "use smaller values, or --device cpu"
    return GradcliError(f"torch could not compute this: {message}", hint=hint)
