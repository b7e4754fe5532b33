"""Tampered lowerings the check routes must catch, shared by the tests of each route (kept out of
tests/helpers.py, which does not load torch)."""

from __future__ import annotations

from typing import Any

import torch


class WrongBackwardSin(torch.autograd.Function):
    """sin with a right forward and a backward 10% off. Each route must catch it by itself: finite
    differences differentiate the (right) forward, sympy's derivative of sin is cos."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.sin(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * 1.1 * torch.cos(x)
