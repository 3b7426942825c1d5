"""ReLU (CS231n ``relu_forward`` / ``relu_backward``).

Forward:   out = max(x, 0)
Backward:  dx = dout * [out > 0]
Only the output is saved (it is returned anyway, so saving it costs no memory); the backward is a
masked multiply, itself differentiable, so double backward works.
"""

from __future__ import annotations

import torch

from . import _autocast
from ._checks import check_floating


class ReLUFunction(torch.autograd.Function):
    """x ``(*)`` -> ``(*)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clamp_min(0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, dout: torch.Tensor) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        return dout * (out > 0)


def relu(input: torch.Tensor) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.relu`; any shape."""
    check_floating("input", input)
    return _autocast.apply(ReLUFunction, "same", input)
