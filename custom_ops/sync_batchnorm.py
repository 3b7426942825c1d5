"""Synchronised batch normalisation: batch norm in training over the *global* batch, the union of the local
batches of every process of a group (data-parallel training, e.g. DDP), as :class:`torch.nn.SyncBatchNorm`.

Notation of ``batchnorm.py``; per channel, rank k holds M_k values x_k (M_k may differ between ranks, and
may be 0), and ``Σ_k`` is an ``all_reduce`` (sum) over the group; M = Σ_k M_k.

Forward (training), two all_reduces, so the variance is the same two-pass one as on a single process:
    [S, M] = Σ_k [sum(x_k), M_k]          (one all_reduce of C + 1 values, packed in float64)
    mu = S / M;  xc_k = x_k - mu
    var = Σ_k sum(xc_k^2) / M             (second all_reduce, C values)
    s = 1 / sqrt(var + eps);  out_k = xc_k * (gamma * s) + beta
Backward, one all_reduce of the two per-channel gradient sums:
    [dbeta, dgamma] = Σ_k [sum(dout_k), s * sum(dout_k * xc_k)]
    dx_k = gamma * s * (dout_k - dbeta / M - xhat_k * dgamma / M)      (global sums, global M)
Forward mode (jvp), one all_reduce of the two per-channel tangent sums:
    ȯut_k = γ s (ẋ_k − mean(ẋ) − x̂_k mean(ẋ x̂)) + γ̇ x̂_k + β̇          (means over the global batch)
The parameter gradients returned are the *local* sums ``sum(dout_k)``, ``s * sum(dout_k * xc_k)``: DDP
all-reduces (averages) parameter gradients itself, as it does for torch's SyncBatchNorm.

Why not one all_reduce of [M, sum(x), sum(x^2)]: ``var = sum(x^2) / M - mu^2`` cancels catastrophically
when |mu| >> std (a float32 feature map with mean 100 and std 1 keeps ~3 digits of its variance). The
second, C-value all_reduce costs one more round-trip per layer and keeps the variance exactly as accurate
as on one process. The count travels in float64 (exact up to 2^53, where float32 stops at 2^24 values),
and so does the sum of x, added up across ranks without float32 rounding. torch all-gathers every rank's
(mean, invstd, count) instead and combines them; all-reduced sums and counts handle unequal and empty
local batches just as well.

Running statistics as ``nn.SyncBatchNorm``: ``running = (1 - momentum) * running + momentum * batch``
with the unbiased variance of the global batch, ``var * M / (M - 1)``. In eval mode, or with no
initialised process group, or a group of one process, :func:`sync_batch_norm` is the manual
:func:`~custom_ops.batchnorm.batch_norm` (no communication), as torch's SyncBatchNorm falls back to
``F.batch_norm``.

Every rank of the group must call the forward and the backward the same number of times, with the same
``requires_grad`` on the input (the backward all-reduces only when an input gradient is needed): each
collective is matched by one on every other rank, or the processes wait forever.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch.autograd.function import once_differentiable

from . import _autocast
from ._checks import check_floating, check_ndim, check_norm_params_dtype, check_shape
from ._function import fast_apply, without_jvp
from ._transforms import vmap_loop
from .batchnorm import _affine, _channel_view, batch_norm


@fast_apply
class SyncBatchNormFunction(torch.autograd.Function):
    """x ``(N, C, *)`` (N may differ between ranks), weight/bias ``(C,)`` or None, ``group`` a process
    group (None: the default group) -> ``(out, global_batch_mean, global_batch_unbiased_var, xc, s, M)``:
    the output, the statistics for the running ones, and (non-differentiable, for the backward) the centred
    input, ``s = 1 / sqrt(var + eps)`` and the global count ``M`` (a float)."""

    @staticmethod
    def forward(
        x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float, group: Any
    ) -> tuple[Any, ...]:
        ndim, channels = x.dim(), x.shape[1]
        dims = [d for d in range(ndim) if d != 1]
        local_count = x.new_full((1,), x.numel() // channels, dtype=torch.float64)
        local = torch.cat([x.sum(dims).to(torch.float64), local_count])
        dist.all_reduce(local, group=group)
        count = local[-1].item()  # the global M (a host sync, as in torch's SyncBatchNorm)
        if count <= 1:  # every rank sees the same M, so every rank raises
            raise ValueError(
                f"sync_batch_norm in training needs more than 1 value per channel over the whole group, got "
                f"{count:.0f} (local input shape {tuple(x.shape)})"
            )
        mean = (local[:-1] / count).to(x.dtype)
        xc = x - _channel_view(mean, ndim)
        buffer = xc * xc  # reused as the output buffer, as in batchnorm.py
        var = buffer.sum(dims)
        dist.all_reduce(var, group=group)
        var.mul_(1.0 / count)
        invstd = (var + eps).rsqrt_()
        out = _affine(xc, invstd if weight is None else invstd * weight, bias, buffer)
        unbiased_var = var.mul_(count / (count - 1))
        return out, mean, unbiased_var, xc, invstd, count

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
        _, weight, bias, _, group = inputs
        _, mean, unbiased_var, xc, invstd, count = output
        ctx.mark_non_differentiable(mean, unbiased_var, xc, invstd)
        # Gradients stay materialised (zeros for an unused output): every rank must enter the backward's
        # all_reduce with a tensor.
        ctx.save_for_backward(xc, invstd, weight)
        ctx.save_for_forward(xc, invstd, weight)
        ctx.count, ctx.group, ctx.has_bias = count, group, bias is not None

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: torch.Tensor, *_: Any) -> tuple[torch.Tensor | None, ...]:
        xc, invstd, weight = ctx.saved_tensors
        ndim = xc.dim()
        dims = [d for d in range(ndim) if d != 1]
        buffer = dout * xc  # one full-size temporary: dout * xc gives dgamma, then holds dx
        dgamma = buffer.sum(dims).mul_(invstd)  # local sum(dout * xhat)
        dbeta = dout.sum(dims)  # local sum(dout)
        dx = None
        if ctx.needs_input_grad[0]:
            sums = torch.cat([dbeta, dgamma])
            dist.all_reduce(sums, group=ctx.group)
            dbeta_all, dgamma_all = sums.chunk(2)
            scale = invstd if weight is None else invstd * weight
            # dx = scale * dout - (xc * scale * s * dgamma / M + scale * dbeta / M), global sums and M
            neg_inv_m = -1.0 / ctx.count
            dx = _affine(dout, scale, (scale * dbeta_all).mul_(neg_inv_m), buffer)
            dx.addcmul_(xc, _channel_view((scale * invstd).mul_(dgamma_all).mul_(neg_inv_m), ndim))
        dw = dgamma if weight is not None and ctx.needs_input_grad[1] else None
        db = dbeta if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db, None, None

    @staticmethod
    def jvp(ctx: Any, x_t: torch.Tensor | None, weight_t: Any, bias_t: Any, *_: Any) -> tuple[Any, ...]:
        """``ȯut_k = γ s (ẋ_k − mean(ẋ) − x̂_k mean(ẋ x̂)) + γ̇ x̂_k + β̇``, the means over the global batch
        (one all_reduce of the two per-channel tangent sums); the statistics' tangents are not computed
        (non-differentiable outputs)."""
        xc, invstd, weight = ctx.saved_tensors
        ndim = xc.dim()
        dims = [d for d in range(ndim) if d != 1]
        xhat = xc * _channel_view(invstd, ndim)
        out_t = torch.zeros_like(xc)
        if x_t is not None:
            sums = torch.cat([x_t.sum(dims), (x_t * xhat).sum(dims)])
            dist.all_reduce(sums, group=ctx.group)
            mean_x_t, mean_x_t_xhat = (sums / ctx.count).chunk(2)
            centred = x_t - _channel_view(mean_x_t, ndim) - xhat * _channel_view(mean_x_t_xhat, ndim)
            gamma_s = invstd if weight is None else weight * invstd
            out_t = out_t + _channel_view(gamma_s, ndim) * centred
        if weight_t is not None:
            out_t = out_t + _channel_view(weight_t, ndim) * xhat
        if bias_t is not None:
            out_t = out_t + _channel_view(bias_t, ndim)
        return out_t, None, None, None, None, None

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], *args: Any) -> tuple[Any, Any]:
        """Each vmapped slice in turn, with its own global statistics (every rank must vmap over the same
        number of slices: each slice is one set of collectives)."""
        return vmap_loop(SyncBatchNormFunction, info, in_dims, *args)


_SyncBatchNormTraced = without_jvp(SyncBatchNormFunction)


def _needs_sync(process_group: Any) -> bool:
    """Whether a process group of more than one process is there to synchronise with."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(process_group) > 1


def sync_batch_norm(
    input: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    process_group: Any = None,
) -> torch.Tensor:
    """Batch norm over the global batch of ``process_group``: the manual twin of the computation of
    :class:`torch.nn.SyncBatchNorm` (which has no functional form), arguments as :func:`batch_norm`.

    Args:
        input: this rank's part of the batch, ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)``; N may differ
            between ranks (and be 0), C and the other dims may not.
        running_mean, running_var: ``(C,)`` or None; updated in place in training with the global batch's
            mean and unbiased variance (every rank computes the same update), used in eval.
        weight, bias: ``(C,)`` or None.
        training: normalise with the statistics of the global batch (synchronised), else with the
            running statistics (local, no communication).
        momentum: weight of the new batch in the running statistics.
        eps: added to the variance.
        process_group: the ranks to synchronise over; None is the default (world) group. Without an
            initialised process group, or with one process, this is :func:`batch_norm`.

    Returns:
        The normalised input, shaped like ``input``.

    Every rank of the group must call it together (see the module docstring).
    """
    if not training or not _needs_sync(process_group):
        return batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
    check_floating("input", input)
    check_ndim("input", input, (2, 3, 4), "(N, C), (N, C, L) or (N, C, H, W)")
    check_norm_params_dtype(input, weight=weight, bias=bias)
    channels = input.shape[1]
    if channels == 0:
        raise ValueError("sync_batch_norm: the number of input channels should be non-zero")
    for name, t in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        check_shape(name, t, (channels,), f"one value per channel, input has C={channels}")
    function = _SyncBatchNormTraced if torch.compiler.is_compiling() else SyncBatchNormFunction
    out, mean, var, *_ = _autocast.apply(function, "fp32_internal", input, weight, bias, eps, process_group)
    with torch.no_grad():
        if running_mean is not None:
            running_mean.lerp_(mean.to(running_mean.dtype), momentum)
        if running_var is not None:
            running_var.lerp_(var.to(running_var.dtype), momentum)
    return out
