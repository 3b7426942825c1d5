"""ReLU (CS231n ``relu_forward`` / ``relu_backward``).

Forward:   out = max(x, 0)
Backward:  dx = dout * [out > 0] = dout * sign(out)      (out >= 0, so sign(out) is the 0/1 mask)
Only the output is saved (the built-in saves it too, and the next layer usually keeps it anyway). The
mask is made with ``sign`` rather than a comparison: float-only elementwise kernels are much faster on
CPU than ones mixing bool and float. The backward is a masked multiply, itself differentiable, so double
backward works.
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
        return out.sign().mul_(dout)


def relu(input: torch.Tensor) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.relu`; any shape."""
    check_floating("input", input)
    return _autocast.apply(ReLUFunction, "same", input)
