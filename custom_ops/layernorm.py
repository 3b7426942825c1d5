"""Layer normalisation (CS231n ``layernorm_forward`` / ``layernorm_backward``): statistics per sample
over the ``D`` values of the trailing ``normalized_shape`` dims.

Forward:   mu, var = mean and biased variance over D;  s = 1 / sqrt(var + eps)
           xhat = (x - mu) * s;  out = gamma * xhat + beta      (gamma, beta of shape normalized_shape)
Backward:  g = dout * gamma
           dx = s * (g - mean_D(g) - xhat * mean_D(g * xhat))
           dgamma = sum over leading dims of dout * xhat;  dbeta = sum over leading dims of dout
Saved for backward: xhat (the size of x), s (one per sample) and gamma. ``once_differentiable``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.autograd.function import once_differentiable

from . import _autocast
from ._checks import check_floating, check_same_dtype, check_shape


class LayerNormFunction(torch.autograd.Function):
    """x ``(*, *normalized_shape)``, weight/bias ``normalized_shape`` or None -> same shape as x."""

    @staticmethod
    def forward(ctx, x, normalized_ndim: int, weight, bias, eps: float):
        dims = tuple(range(x.dim() - normalized_ndim, x.dim()))
        var, mean = torch.var_mean(x, dim=dims, correction=0, keepdim=True)
        invstd = torch.rsqrt(var + eps)
        xhat = (x - mean) * invstd
        out = xhat
        if weight is not None:
            out = out * weight
        if bias is not None:
            out = out + bias
        elif weight is None:
            out = out.clone()  # never return a saved tensor as the output
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.dims = dims
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        xhat, invstd, weight = ctx.saved_tensors
        dims = ctx.dims
        leading = tuple(range(xhat.dim() - len(dims)))
        g = dout if weight is None else dout * weight
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = invstd * (g - g.mean(dims, keepdim=True) - xhat * (g * xhat).mean(dims, keepdim=True))
        if weight is not None and ctx.needs_input_grad[2]:
            dw = (dout * xhat).sum(leading)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            db = dout.sum(leading)
        return dx, None, dw, db, None


def layer_norm(
    input: torch.Tensor,
    normalized_shape: int | Sequence[int],
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.layer_norm`.

    Shapes: input ``(*, *normalized_shape)``; weight and bias ``normalized_shape``; output like input.
    """
    check_floating("input", input)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if len(shape) == 0 or input.dim() < len(shape) or tuple(input.shape[-len(shape) :]) != shape:
        raise ValueError(
            f"input must have shape (*, {', '.join(map(str, shape))}) to match normalized_shape={shape}, "
            f"got {tuple(input.shape)}"
        )
    check_same_dtype(input, weight=weight, bias=bias)
    check_shape("weight", weight, shape, "normalized_shape")
    check_shape("bias", bias, shape, "normalized_shape")
    return _autocast.apply(LayerNormFunction, "fp32_internal", input, len(shape), weight, bias, eps)
