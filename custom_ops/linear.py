"""Affine layer (CS231n ``affine_forward`` / ``affine_backward``).

Forward:   out = x W^T + b
Backward:  dx = dout W,   dW = dout^T x,   db = sum_n dout
(x flattened to 2-D over its leading dims). The backward is made of matmuls, so it is itself
differentiable and double backward works.
"""

from __future__ import annotations

import torch

from . import _autocast
from ._checks import check_floating, check_same_dtype, check_shape


class LinearFunction(torch.autograd.Function):
    """x ``(*, in)``, weight ``(out, in)``, bias ``(out,)`` or None -> ``(*, out)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        x2d = x.reshape(-1, x.shape[-1])
        out = torch.addmm(bias, x2d, weight.t()) if bias is not None else x2d @ weight.t()
        return out.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, dout: torch.Tensor):
        x, weight = ctx.saved_tensors
        dout2d = dout.reshape(-1, dout.shape[-1])
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = (dout2d @ weight).view(x.shape)
        if ctx.needs_input_grad[1]:
            dw = dout2d.t() @ x.reshape(-1, x.shape[-1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dout2d.sum(0)
        return dx, dw, db


def linear(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.linear`.

    Shapes: input ``(*, in_features)``, weight ``(out_features, in_features)``, bias ``(out_features,)``
    -> output ``(*, out_features)``.
    """
    check_floating("input", input)
    check_same_dtype(input, weight=weight, bias=bias)
    if weight.dim() != 2:
        raise ValueError(f"weight must have shape (out_features, in_features), got {tuple(weight.shape)}")
    if input.dim() == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"input must have shape (*, in_features={weight.shape[1]}) to match weight "
            f"{tuple(weight.shape)}, got {tuple(input.shape)}"
        )
    check_shape("bias", bias, (weight.shape[0],), "out_features")
    return _autocast.apply(LinearFunction, "lower", input, weight, bias)
