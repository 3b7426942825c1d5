"""Group normalisation (CS231n ``spatial_groupnorm_forward`` / ``spatial_groupnorm_backward``): statistics
per sample over each group of ``C / G`` channels and all spatial positions (``D`` values per group),
then a per-channel scale and shift. ``G = 1`` is layer norm over ``(C, *)``; ``G = C`` is instance norm.

Forward:   per (sample n, group g):  mu = mean over D;  xc = x - mu;  var = |xc|^2 / D (two-pass)
           s = 1 / sqrt(var + eps);  xhat = xc * s;  out = gamma[c] * xhat + beta[c]
Backward:  the layer-norm closed form, per group, with g = dout * gamma[c]:
           dx = s * (g - mean_D(g) - xhat * mean_D(g * xhat))
           dgamma[c] = sum over n and positions of dout * xhat;  dbeta[c] = sum of dout
           Both group means come from per-(n, c) sums over the positions, S1 = sum(dout) and
           S2 = sum(dout * xhat): mean_D(g) = sum_{c in g} gamma[c] S1[n, c] / D, mean_D(g * xhat) the same
           with S2; dgamma and dbeta are S2 and S1 summed over n. So dx = A dout + B xhat + K with
           per-(n, c) coefficients A = gamma s, B = -s mean_D(g * xhat), K = -s mean_D(g), folded on the
           small (N, C) tensors first; one full-size temporary (dout * xhat, then overwritten by dx).
Saved for backward: xhat (the size of x), s (one per sample and group) and gamma — the built-in saves x,
mu and s, the same bytes. The backward treats xhat as a constant: ``once_differentiable``. The forward and
backward formulas are fused kernels (:func:`custom_ops.fused.kernel`): one compiled pass each with fusion on.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

from . import _autocast, fused
from ._checks import OpArgumentError, check_floating, check_int, check_norm_params_dtype
from .batchnorm import _channel_view
from .layernorm import standardize


def _per_channel(t: torch.Tensor, channels_per_group: int) -> torch.Tensor:
    """``(N, G)`` -> ``(N, C)``: each group's value repeated for its channels."""
    n, groups = t.shape
    return t.unsqueeze(2).expand(n, groups, channels_per_group).reshape(n, groups * channels_per_group)


@fused.kernel
def group_norm_forward(
    x: torch.Tensor, num_groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(out, xhat, s)`` of group norm: x, out and xhat ``(N, C, *)``, s ``(N, G)``."""
    n, c = x.shape[:2]
    xg = x.unflatten(1, (num_groups, c // num_groups))  # (N, G, C/G, *), a view in any layout
    xhat_g, invstd = standardize(xg, 2, eps)  # layer norm of each group
    xhat = xhat_g.flatten(1, 2)  # back to (N, C, *): a view whenever the layout allows
    if weight is not None:
        out = xhat * _channel_view(weight, x.dim())
        if bias is not None:
            out += _channel_view(bias, x.dim())
    else:
        out = xhat + _channel_view(bias, x.dim()) if bias is not None else xhat.clone()
    return out, xhat, invstd.view(n, num_groups)


@fused.kernel
def group_norm_backward(
    dout: torch.Tensor,
    xhat: torch.Tensor,
    invstd: torch.Tensor,
    weight: torch.Tensor | None,
    need_dx: bool,
    need_dweight: bool,
    need_dbias: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """``(dx, dgamma, dbeta)`` from the saved xhat, s ``(N, G)`` and gamma (None where not needed)."""
    n, c = xhat.shape[:2]
    groups = invstd.shape[1]
    per_group = c // groups
    ndim = xhat.dim()
    spatial = tuple(range(2, ndim))
    d = max(math.prod(xhat.shape[1:]) // groups, 1)
    # One full-size temporary: p = dout * xhat gives the per-(n, c) sums S2, then holds dx.
    p = dout * xhat
    s2 = p.sum(spatial) if spatial else p.clone()  # (N, C)
    s1 = dout.sum(spatial) if spatial else dout  # (N, C)
    dw = s2.sum(0) if need_dweight else None
    db = s1.sum(0) if need_dbias else None
    dx = None
    if need_dx:
        if weight is not None:
            s1 = s1 * weight
            s2 = s2 * weight
        # Group means of g and g * xhat, -s * mean: (N, G) -> per channel (N, C).
        neg_mean_g = _per_channel(s1.view(n, groups, per_group).sum(2).mul_(invstd).mul_(-1.0 / d), per_group)
        neg_mean_gx = _per_channel(
            s2.view(n, groups, per_group).sum(2).mul_(invstd).mul_(-1.0 / d), per_group
        )
        scale = _per_channel(invstd, per_group)  # s per (n, c)
        if weight is not None:
            scale = scale * weight
        # dx = s gamma dout - s mean(g) - xhat s mean(g xhat)
        dx = torch.mul(dout, _channel_view(scale, ndim), out=p)
        dx.addcmul_(xhat, _channel_view(neg_mean_gx, ndim)).add_(_channel_view(neg_mean_g, ndim))
    return dx, dw, db


class GroupNormFunction(torch.autograd.Function):
    """x ``(N, C, *)``, weight/bias ``(C,)`` or None -> same shape as x."""

    @staticmethod
    def forward(ctx, x, num_groups: int, weight, bias, eps: float):
        out, xhat, invstd = group_norm_forward(x, num_groups, weight, bias, eps)
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        xhat, invstd, weight = ctx.saved_tensors
        need_dx, _, need_dw, need_db = ctx.needs_input_grad[:4]
        dx, dw, db = group_norm_backward(
            dout, xhat, invstd, weight, need_dx, weight is not None and need_dw, ctx.has_bias and need_db
        )
        return dx, None, dw, db, None


def group_norm(
    input: torch.Tensor,
    num_groups: int,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.group_norm`.

    Args:
        input: ``(N, C, *)`` (``(N, C)``, ``(N, C, L)``, ``(N, C, H, W)``, ...), floating point.
        num_groups: G, the number of groups; must divide C.
        weight: ``(C,)`` per-channel scale gamma, or None (1).
        bias: ``(C,)`` per-channel shift beta, or None (0).
        eps: added to each group's variance.

    Shape:
        - Input: ``(N, C, *)``; output and input gradient: the same shape (and memory layout).
        - weight, bias and their gradients: ``(C,)``.

    Returns:
        ``gamma * (x - mean) / sqrt(var + eps) + beta``, the statistics of each sample's groups.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> x = torch.tensor([[[1.0, 3.0], [10.0, 30.0]]])  # N=1, C=2, L=2
        >>> MF.group_norm(x, 2)  # each channel its own group
        tensor([[[-1.0000,  1.0000],
                 [-1.0000,  1.0000]]])
    """
    check_floating("input", input)
    if input.dim() < 2:
        raise OpArgumentError(
            f"input must have shape (N, C, *) (at least 2-D), got {input.dim()}-D shape {tuple(input.shape)}"
        )
    check_int("num_groups", num_groups)
    channels = input.shape[1]
    if channels == 0 or math.prod(input.shape[2:]) == 0:
        raise OpArgumentError(
            f"input must have shape (N, C, *) with C > 0 and non-empty spatial dims, got {tuple(input.shape)}"
        )
    if num_groups <= 0 or channels % num_groups != 0:
        raise OpArgumentError(
            f"num_groups must be a positive divisor of the number of channels C={channels} of input "
            f"{tuple(input.shape)}, got num_groups={num_groups}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and (not isinstance(t, torch.Tensor) or tuple(t.shape) != (channels,)):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise OpArgumentError(
                f"{name} must have shape ({channels},) (one value per channel of input), got {got}"
            )
    check_norm_params_dtype(input, weight=weight, bias=bias)
    # torch's CUDA autocast runs group_norm in float32 (and returns float32)
    if _autocast.fp32_under_autocast(input):
        input, weight, bias = (t if t is None else t.float() for t in (input, weight, bias))
    return _autocast.apply(GroupNormFunction, "fp32_internal", input, num_groups, weight, bias, eps)
