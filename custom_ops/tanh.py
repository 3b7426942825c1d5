"""Tanh, the squashing non-linearity of the CS231n RNN (``rnn_step_forward`` / ``rnn_step_backward``).

Forward:   out = tanh(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x))
Backward:  dx = dout * (1 - out^2)
Saved for backward: the output only (as the built-in). The backward is a tensor expression of the saved
output, so double backward works (autograd differentiates through the saved output too).

The backward's formula is a fused kernel (:func:`custom_ops.fused.kernel`): with fusion on, it runs as one
compiled pass (the eager formula makes four).
"""

from __future__ import annotations

import torch

from . import _autocast, fused
from ._checks import OpDtypeError, check_tensor


@fused.kernel
def tanh_backward(dout: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``dx = dout * (1 - out^2)`` from the saved output."""
    return torch.mul(out, out).neg_().add_(1).mul_(dout)


class TanhFunction(torch.autograd.Function):
    """x ``(*)`` -> ``(*)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = torch.tanh(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, dout: torch.Tensor) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        return tanh_backward(dout, out)


def tanh(input: torch.Tensor) -> torch.Tensor:
    """Manual twin of :func:`torch.tanh` (and :func:`torch.nn.functional.tanh`).

    Args:
        input: any shape. Integer and bool inputs are promoted to the default floating dtype, as
            ``torch.tanh`` does (they get no gradient); complex inputs are refused.

    Shape:
        - Input: ``(*)``; output and input gradient: ``(*)``, the same shape.

    Returns:
        ``tanh(input)``, a new tensor.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> MF.tanh(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([-0.7616,  0.0000,  0.9640])
    """
    check_tensor("input", input)
    if input.is_complex():
        raise OpDtypeError(f"input must be a real tensor, got dtype {input.dtype}")
    if not input.is_floating_point():
        input = input.to(torch.get_default_dtype())
    return _autocast.apply(TanhFunction, "same", input)
