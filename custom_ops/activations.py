"""Element-wise activations met in torchvision classification models and EfficientNet-Lite.

Each is an ``autograd.Function`` with its derivative written out; the backwards are ordinary tensor
expressions of what was saved, so double backward works.

ReLU6:        out = min(max(x, 0), 6)                 dx = dout * [0 < x < 6]
Hardsigmoid:  out = min(max(x / 6 + 1/2, 0), 1)       dx = dout / 6 * [-3 < x < 3]
Hardswish:    out = x * min(max(x + 3, 0), 6) / 6     dx = dout * (0 if x < -3, x/3 + 1/2 if x <= 3, else 1)
Sigmoid:      out = s = 1 / (1 + exp(-x))             dx = dout * s * (1 - s)
SiLU (swish): out = x * s                             dx = dout * s * (1 + x * (1 - s))
The kink conventions (which side a boundary point belongs to) are PyTorch's, so gradients match the
built-ins exactly, boundaries included.
Saved for backward: the output where it determines the derivative (ReLU6, Sigmoid), else the input.
"""

from __future__ import annotations

import torch

from . import _autocast
from ._checks import check_floating


class ReLU6Function(torch.autograd.Function):
    """x ``(*)`` -> ``(*)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clamp(0, 6)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, dout: torch.Tensor) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        return dout * ((out > 0) & (out < 6))


class HardsigmoidFunction(torch.autograd.Function):
    """x ``(*)`` -> ``(*)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return (x / 6 + 0.5).clamp(0, 1)

    @staticmethod
    def backward(ctx, dout: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return dout * ((x > -3) & (x < 3)) / 6


class HardswishFunction(torch.autograd.Function):
    """x ``(*)`` -> ``(*)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x * (x + 3).clamp(0, 6) / 6

    @staticmethod
    def backward(ctx, dout: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        slope = torch.where(x < -3, 0.0, torch.where(x <= 3, x / 3 + 0.5, 1.0))
        return dout * slope


class SigmoidFunction(torch.autograd.Function):
    """x ``(*)`` -> ``(*)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = torch.sigmoid(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, dout: torch.Tensor) -> torch.Tensor:
        (s,) = ctx.saved_tensors
        return dout * s * (1 - s)


class SiLUFunction(torch.autograd.Function):
    """x ``(*)`` -> ``(*)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, dout: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return dout * s * (1 + x * (1 - s))


def relu6(input: torch.Tensor) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.relu6`; any shape."""
    check_floating("input", input)
    return _autocast.apply(ReLU6Function, "same", input)


def hardsigmoid(input: torch.Tensor) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.hardsigmoid`; any shape."""
    check_floating("input", input)
    return _autocast.apply(HardsigmoidFunction, "same", input)


def hardswish(input: torch.Tensor) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.hardswish`; any shape."""
    check_floating("input", input)
    return _autocast.apply(HardswishFunction, "same", input)


def sigmoid(input: torch.Tensor) -> torch.Tensor:
    """Manual twin of :func:`torch.sigmoid`; any shape."""
    check_floating("input", input)
    return _autocast.apply(SigmoidFunction, "same", input)


def silu(input: torch.Tensor) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.silu` (swish); any shape."""
    check_floating("input", input)
    return _autocast.apply(SiLUFunction, "same", input)
