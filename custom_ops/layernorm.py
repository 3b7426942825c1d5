"""Layer normalisation (CS231n ``layernorm_forward`` / ``layernorm_backward``): statistics per sample
over the ``D`` values of the trailing ``normalized_shape`` dims.

Forward:   mu = mean over D;  xc = x - mu;  var = |xc|^2 / D (two-pass, stable);  s = 1 / sqrt(var + eps)
           xhat = xc * s;  out = gamma * xhat + beta      (gamma, beta of shape normalized_shape)
Backward:  g = dout * gamma
           dx = s * (g - mean_D(g) - xhat * mean_D(g * xhat))
           dgamma = sum over leading dims of dout * xhat;  dbeta = sum over leading dims of dout
Saved for backward: xhat (the size of x), s (one per sample) and gamma — the built-in saves x, mu and
s, the same bytes. Every full-size step is one plain elementwise op or reduction; the backward allocates
one full-size temporary (dout * xhat, later overwritten by dx), and with gamma the per-sample means
mean_D(g) and mean_D(g * xhat) are matrix-vector products with gamma. ``once_differentiable``.
The forward and backward formulas are fused kernels (:func:`custom_ops.fused.kernel`): with fusion on, each
runs as one compiled pass over memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.autograd.function import once_differentiable

from . import _autocast, fused
from ._checks import OpArgumentError, check_floating, check_norm_params_dtype, check_shape


def standardize(x: torch.Tensor, start_dim: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``xhat = (x - mu) * s`` over the trailing dims from ``start_dim`` on (``D`` values), and
    ``s = 1 / sqrt(var + eps)`` (keepdim): the shared forward of layer norm and group norm (a group norm is
    a layer norm over each group).

    Two-pass variance ``|xc|^2 / D`` (var_mean's Welford kernel is far slower); ``s`` is computed in place on
    the small per-sample tensor, then ``xhat = xc * s`` in place on the one full-size temporary.
    """
    dims = tuple(range(start_dim, x.dim()))
    d = max(math.prod(x.shape[start_dim:]), 1)
    xhat = x - x.mean(dims, keepdim=True)
    invstd = torch.linalg.vector_norm(xhat, 2, dims, keepdim=True).square_().mul_(1.0 / d).add_(eps).rsqrt_()
    xhat *= invstd
    return xhat, invstd


def layer_norm_affine(
    xhat: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None
) -> torch.Tensor:
    """``gamma * xhat + beta`` (``gamma``, ``beta`` optional): a new tensor, never ``xhat`` itself."""
    if weight is not None:
        if bias is None:
            return xhat * weight
        # into an empty_like buffer: an output allocated by addcmul would lose channels_last
        return torch.addcmul(bias, xhat, weight, out=torch.empty_like(xhat))
    return xhat + bias if bias is not None else xhat.clone()  # never return a saved tensor


@fused.kernel
def layer_norm_forward(
    x: torch.Tensor, normalized_ndim: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(out, xhat, s)``: layer norm over the trailing ``normalized_ndim`` dims of x."""
    xhat, invstd = standardize(x, x.dim() - normalized_ndim, eps)
    return layer_norm_affine(xhat, weight, bias), xhat, invstd


@fused.kernel
def layer_norm_backward(
    dout: torch.Tensor,
    xhat: torch.Tensor,
    invstd: torch.Tensor,
    weight: torch.Tensor | None,
    normalized_ndim: int,
    need_dx: bool,
    need_dweight: bool,
    need_dbias: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """``(dx, dgamma, dbeta)`` of layer norm over the trailing ``normalized_ndim`` dims, from the saved
    xhat, ``s`` and gamma (None where not needed; ``need_dweight`` only with a weight)."""
    k = normalized_ndim
    leading, dims = tuple(range(xhat.dim() - k)), tuple(range(xhat.dim() - k, xhat.dim()))
    dx = dw = db = None
    # One full-size temporary: p = dout * xhat gives dgamma and mean_D(g * xhat), then holds dx.
    p = dout * xhat
    # Sum over the leading dims; when normalized_shape is the whole input there are none, and
    # sum(()) would reduce over every dim: then the gradient is the product itself.
    if need_dweight:
        dw = p.sum(leading) if leading else p.clone()
    if need_dbias:
        db = dout.sum(leading) if leading else dout.clone()
    if need_dx:
        if weight is not None:
            # mean_D(g) and mean_D(g * xhat) for g = dout * gamma: matrix-vector products with gamma.
            gamma = weight.flatten()
            scale = -1.0 / gamma.numel()
            neg_mean_g = (dout.flatten(-k) @ gamma).mul_(scale).view(invstd.shape)
            neg_mean_gx = (p.flatten(-k) @ gamma).mul_(scale).view(invstd.shape)
            dx = torch.addcmul(neg_mean_g, dout, weight, out=p)
        else:
            neg_mean_gx = p.mean(dims, keepdim=True).neg_()
            dx = torch.sub(dout, dout.mean(dims, keepdim=True), out=p)
        # dx = s * (g - mean(g) - xhat * mean(g * xhat))
        dx.addcmul_(xhat, neg_mean_gx).mul_(invstd)
    return dx, dw, db


class LayerNormFunction(torch.autograd.Function):
    """x ``(*, *normalized_shape)``, weight/bias ``normalized_shape`` or None -> same shape as x."""

    @staticmethod
    def forward(ctx, x, normalized_ndim: int, weight, bias, eps: float):
        out, xhat, invstd = layer_norm_forward(x, normalized_ndim, weight, bias, eps)
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.normalized_ndim = normalized_ndim
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        xhat, invstd, weight = ctx.saved_tensors
        need_dx, _, need_dw, need_db = ctx.needs_input_grad[:4]
        dx, dw, db = layer_norm_backward(
            dout,
            xhat,
            invstd,
            weight,
            ctx.normalized_ndim,
            need_dx,
            weight is not None and need_dw,
            ctx.has_bias and need_db,
        )
        return dx, None, dw, db, None


def check_layer_norm_arguments(
    input: torch.Tensor,
    normalized_shape: int | Sequence[int],
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
) -> tuple[int, ...]:
    """The argument checks of :func:`layer_norm` (an :class:`OpArgumentError` or a ``TypeError`` naming the
    bad argument); returns ``normalized_shape`` as a tuple."""
    check_floating("input", input)
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if len(shape) == 0 or input.dim() < len(shape) or tuple(input.shape[-len(shape) :]) != shape:
        raise OpArgumentError(
            f"input must have shape (*, {', '.join(map(str, shape))}) to match normalized_shape={shape}, "
            f"got {tuple(input.shape)}"
        )
    check_norm_params_dtype(input, weight=weight, bias=bias)
    check_shape("weight", weight, shape, "normalized_shape")
    check_shape("bias", bias, shape, "normalized_shape")
    return shape


def layer_norm(
    input: torch.Tensor,
    normalized_shape: int | Sequence[int],
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.layer_norm`.

    Args:
        input: floating tensor ``(*, *normalized_shape)``.
        normalized_shape: the trailing dims to normalise over (an int for one dim); may be the whole shape.
        weight, bias: ``normalized_shape``, or None (no scale, no shift).
        eps: added to the variance.

    Shape:
        - Input: ``(*, *normalized_shape)``; the leading dims may hold no element.
        - Output and ``dx``: same shape as the input.
        - weight, bias, and ``dgamma``, ``dbeta``: ``normalized_shape``.

    Returns:
        ``(input - mean) / sqrt(var + eps) * weight + bias``, statistics per sample over the normalised dims.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> MF.layer_norm(torch.tensor([[1.0, 2.0, 3.0]]), (3,))
        tensor([[-1.2247,  0.0000,  1.2247]])
    """
    shape = check_layer_norm_arguments(input, normalized_shape, weight, bias)
    return _autocast.apply(LayerNormFunction, "fp32_internal", input, len(shape), weight, bias, eps)
