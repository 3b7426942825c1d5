"""Layer normalisation (CS231n ``layernorm_forward`` / ``layernorm_backward``): statistics per sample
over the ``D`` values of the trailing ``normalized_shape`` dims.

Forward:   mu = mean over D;  xc = x - mu;  var = |xc|^2 / D (two-pass, stable);  s = 1 / sqrt(var + eps)
           xhat = xc * s;  out = gamma * xhat + beta      (gamma, beta of shape normalized_shape)
Backward:  g = dout * gamma
           dx = s * (g - mean_D(g) - xhat * mean_D(g * xhat))
           dgamma = sum over leading dims of dout * xhat;  dbeta = sum over leading dims of dout
Saved for backward: xhat (the size of x), s (one per sample) and gamma — the built-in saves x, mu and
s, the same bytes. Every full-size step is one plain elementwise op or reduction on a fresh temporary.
``once_differentiable``.
"""

from __future__ import annotations

import math
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
        d = math.prod(x.shape[x.dim() - normalized_ndim :])
        xhat = x - x.mean(dims, keepdim=True)
        # Two-pass variance |xc|^2 / D (var_mean's Welford kernel is far slower); then xhat = xc * s in place.
        var = torch.linalg.vector_norm(xhat, 2, dims, keepdim=True).square_().div_(max(d, 1))
        invstd = torch.rsqrt(var + eps)
        xhat *= invstd
        if weight is not None:
            out = xhat * weight
            if bias is not None:
                out += bias
        else:
            out = xhat + bias if bias is not None else xhat.clone()  # never return a saved tensor
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
        dx = dw = db = None
        # Few full-size temporaries (fresh large allocations cost as much as a pass): p = dout * xhat
        # gives dgamma, then becomes g * xhat in place; dx is built in place in g = dout * gamma.
        p = dout * xhat
        if weight is not None and ctx.needs_input_grad[2]:
            dw = p.sum(leading)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            db = dout.sum(leading)
        if ctx.needs_input_grad[0]:
            if weight is not None:
                p *= weight
                g = dout * weight
            else:
                g = dout.clone()
            # dx = s * (g - mean(g) - xhat * mean(g * xhat))
            dx = g.sub_(g.mean(dims, keepdim=True)).addcmul_(xhat, p.mean(dims, keepdim=True), value=-1)
            dx *= invstd
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
