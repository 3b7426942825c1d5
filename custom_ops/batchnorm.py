"""Batch normalisation, 1-D ``(N, C)`` and spatial ``(N, C, H, W)`` (CS231n ``batchnorm_*`` and
``spatial_batchnorm_*``): statistics per channel ``C`` over the ``M`` values of all other dims.

Forward (training):  mu = mean over M;  xc = x - mu;  var = mean(xc^2) over M (two-pass, stable)
                     s = 1 / sqrt(var + eps);  xhat = xc * s;  out = xc * (gamma * s) + beta
Backward (the simplified closed form of the CS231n ``batchnorm_backward_alt``, with xhat = xc * s):
                     dbeta = sum(dout);  dgamma = sum(dout * xhat) = s * sum(dout * xc)
                     dx = gamma * s * (dout - dbeta / M - xhat * dgamma / M)
                        = (gamma * s) * dout - (xc * (gamma * s^2 * dgamma / (s * M)) + gamma * s * dbeta / M)
In evaluation mu, var are the running statistics (constants), so dx = gamma * s * dout.

Running statistics. PyTorch (default, ``convention="torch"``): ``momentum`` is the weight of the *new*
batch, ``running = (1 - momentum) * running + momentum * batch``, and the running variance uses the
*unbiased* batch variance (``var * M / (M - 1)``) — exactly what ``nn.BatchNorm*`` does.
CS231n (``convention="cs231n"``): ``momentum`` (0.9 in the assignment) is the weight of the *old* value,
``running = momentum * running + (1 - momentum) * batch``, with the *biased* variance.

The forward and backward formulas are fused kernels (:func:`custom_ops.fused.kernel`): with fusion on, each
runs as one compiled pass over memory instead of one eager pass per step.

Saved for backward: the centred input xc (the size of x), s and gamma (C each) — the built-in kernel
saves x, mu and s, the same bytes. Every full-size step is one plain elementwise op or reduction (the
per-channel scalars are folded first), and full-size temporaries are reused: xc^2 becomes the output,
dout * xc becomes dx. The backward uses xc as a constant, so it is
``once_differentiable`` (no double backward).

An input with no element (an empty batch, or no channel), as torch: the output is an empty copy, the
running statistics stay as they are, and the weight and bias gradients are zeros (sums over nothing).
``eps`` must be positive in training and non-negative in eval, as ``torch.nn.functional.batch_norm``
checks (eps = 0 in training divides by a zero variance for a constant channel).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.autograd.function import once_differentiable

from . import _autocast, fused
from ._checks import OpArgumentError, check_floating, check_norm_params_dtype, check_shape


def _channel_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """``(C,)`` -> ``(C, 1, ...)``, or per-sample ``(N, C)`` -> ``(N, C, 1, ...)``: broadcastable against an
    ``(N, C, *)`` input of ``ndim`` dims."""
    return t.reshape(*t.shape, *([1] * (ndim - 2))) if t.dim() == 2 else t.view(-1, *([1] * (ndim - 2)))


def _affine(t: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor | None, out: torch.Tensor | None):
    """``t * scale + shift`` per channel (``scale``, ``shift`` of shape ``(C,)``), into ``out`` if given.

    One fused ``addcmul`` for ``(N, C)``; for spatial inputs a multiply then an in-place add, because
    addcmul's CPU kernel is several times slower when its first operand broadcasts along the inner dims.
    """
    if shift is not None and t.dim() == 2:
        return torch.addcmul(shift, t, scale, out=out)
    res = torch.mul(t, _channel_view(scale, t.dim()), out=out)
    return res if shift is None else res.add_(_channel_view(shift, t.dim()))


class EmptyBatchNormFunction(torch.autograd.Function):
    """x with no element, weight/bias ``(C,)`` or None -> an empty copy of x; zero parameter gradients."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.param_shapes = [None if t is None else t.shape for t in (weight, bias)]
        return x.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dout):
        grads = [None if shape is None else dout.new_zeros(shape) for shape in ctx.param_shapes]
        return dout.clone(), *grads


def batch_norm_affine(
    xc: torch.Tensor,
    invstd: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``xc * (gamma * s) + beta`` per channel (``gamma``, ``beta`` optional), into ``out`` if given: the
    output of batch norm from the centred input."""
    return _affine(xc, invstd if weight is None else invstd * weight, bias, out)


@fused.kernel
def batch_norm_forward(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    training: bool,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(out, xc, s, mean, var)`` of x ``(N, C, *)`` (see the module docstring): in training the batch
    mean and biased variance, in eval the running statistics (then required)."""
    ndim = x.dim()
    dims = [d for d in range(ndim) if d != 1]
    buffer = None
    if training:
        mean = x.mean(dims)
        xc = x - _channel_view(mean, ndim)
        # Two-pass variance: mean of the squared centred values (var_mean's Welford kernel is far
        # slower); the full-size square is then reused as the output buffer.
        buffer = xc * xc
        var = buffer.sum(dims).mul_(1.0 / (x.numel() // x.shape[1]))
    else:
        mean, var = running_mean, running_var
        xc = x - _channel_view(mean, ndim)
    invstd = (var + eps).rsqrt_()
    return batch_norm_affine(xc, invstd, weight, bias, buffer), xc, invstd, mean, var


@fused.kernel
def batch_norm_backward(
    dout: torch.Tensor,
    xc: torch.Tensor,
    invstd: torch.Tensor,
    weight: torch.Tensor | None,
    training: bool,
    need_dx: bool,
    need_dweight: bool,
    need_dbias: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """``(dx, dgamma, dbeta)`` of :func:`batch_norm_forward` from the saved ``xc``, ``s`` and gamma (None
    where not needed; ``need_dweight`` only with a weight)."""
    ndim = xc.dim()
    dims = [d for d in range(ndim) if d != 1]
    buffer = dgamma = None
    if training or need_dweight:
        # One full-size temporary: dout * xc gives dgamma, then holds dx.
        buffer = dout * xc
        dgamma = buffer.sum(dims).mul_(invstd)
    dbeta = dout.sum(dims) if training or need_dbias else None
    scale = invstd if weight is None else invstd * weight
    dx = None
    if need_dx:
        if training:
            # dx = scale * dout - (xc * scale * s * dgamma / M + scale * dbeta / M)
            neg_inv_m = -1.0 / (dout.numel() // dout.shape[1])
            dx = _affine(dout, scale, (scale * dbeta).mul_(neg_inv_m), buffer)
            dx.addcmul_(xc, _channel_view((scale * invstd).mul_(dgamma).mul_(neg_inv_m), ndim))
        else:
            dx = _affine(dout, scale, None, buffer)
    return dx, dgamma if need_dweight else None, dbeta if need_dbias else None


class BatchNormFunction(torch.autograd.Function):
    """x ``(N, C, *)``, weight/bias ``(C,)`` or None, mean/var ``(C,)`` (used only in eval) ->
    training: ``(out, batch_mean, batch_biased_var)``; eval: ``out``."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training: bool, eps: float):
        out, xc, invstd, mean, var = batch_norm_forward(
            x, weight, bias, running_mean, running_var, training, eps
        )
        ctx.save_for_backward(xc, invstd, weight)
        ctx.training = training
        ctx.has_bias = bias is not None
        if not training:
            return out
        ctx.mark_non_differentiable(mean, var)
        ctx.set_materialize_grads(False)  # no zero-filled gradients for mean and var: backward ignores them
        return out, mean, var

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, *_):
        if dout is None:  # gradients are not materialised: an undefined output gradient means zero
            return None, None, None, None, None, None, None
        xc, invstd, weight = ctx.saved_tensors
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        dx, dw, db = batch_norm_backward(
            dout,
            xc,
            invstd,
            weight,
            ctx.training,
            need_dx,
            weight is not None and need_dw,
            ctx.has_bias and need_db,
        )
        return dx, dw, db, None, None, None, None


def check_batch_norm_arguments(
    input: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    training: bool,
    eps: float,
    convention: str,
) -> int:
    """The argument checks of :func:`batch_norm` (an :class:`OpArgumentError` or a ``TypeError`` naming the
    bad argument); returns the number of values per channel ``M`` (0 for an input with no element)."""
    check_floating("input", input)
    if input.dim() < 2 and input.numel() > 0:
        raise OpArgumentError(
            f"input must have shape (N, C, *) (at least 2-D), got {input.dim()}-D shape {tuple(input.shape)}"
        )
    check_norm_params_dtype(input, weight=weight, bias=bias)
    channels = input.shape[1] if input.dim() >= 2 else 0
    for name, t in (
        ("running_mean", running_mean),
        ("running_var", running_var),
        ("weight", weight),
        ("bias", bias),
    ):
        if t is not None and t.shape != (channels,):  # the message is formatted only for a bad shape
            check_shape(name, t, (channels,), f"one value per channel, input has C={channels}")
    if convention not in ("torch", "cs231n"):
        raise OpArgumentError(f"convention must be 'torch' or 'cs231n', got {convention!r}")
    count = input.numel() // channels if channels else 0
    if training and count == 1:
        raise OpArgumentError(
            f"batch_norm in training needs more than 1 value per channel, got input shape "
            f"{tuple(input.shape)}"
        )
    if training and eps <= 0:
        raise OpArgumentError(f"eps must be positive in training (it is added to the variance), got {eps}")
    if eps < 0:
        raise OpArgumentError(f"eps must be non-negative, got {eps}")
    if not training and (running_mean is None or running_var is None):
        raise OpArgumentError("running_mean and running_var are required when training=False")
    return count


def update_running_stats(
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    mean: torch.Tensor,
    var: torch.Tensor,
    momentum: float,
    count: int,
    convention: str,
) -> None:
    """Blend the batch ``mean`` and biased ``var`` (of ``count`` values per channel) into the running
    statistics that are given, in place, by ``convention`` (see the module docstring)."""
    running = [t for t in (running_mean, running_var) if t is not None]
    if not running:
        return
    new_weight = momentum if convention == "torch" else 1.0 - momentum
    if running_var is not None and convention == "torch":
        var = var * (count / (count - 1))
    batch = [b.to(t.dtype) for t, b in zip((running_mean, running_var), (mean, var)) if t is not None]
    # running = lerp(running, batch, new_weight), both statistics in one call (on CPU a loop of lerp_: the
    # same values), as data: under no_grad where autograd could record it (a statistic that requires grad),
    # else directly. The built-in kernel updates them in its own loop; here each call costs microseconds.
    if torch.is_grad_enabled() and any(t.requires_grad for t in (*running, *batch)):
        with torch.no_grad():
            torch._foreach_lerp_(running, batch, new_weight)
    else:
        torch._foreach_lerp_(running, batch, new_weight)


def batch_norm(
    input: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    convention: Literal["torch", "cs231n"] = "torch",
) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.batch_norm` (same parameters, order and defaults).

    Args:
        input: floating tensor ``(N, C, *)``: ``(N, C)``, ``(N, C, L)``, ``(N, C, H, W)``, ...
        running_mean, running_var: ``(C,)`` or None; in training, when given, updated in place (see the
            module docstring for ``convention``); in eval they normalise the input (required then).
        weight, bias: ``(C,)`` or None (no scale, no shift).
        training: normalise with the batch statistics (else with the running ones).
        momentum: weight of the new batch in the running statistics (``convention="torch"``).
        eps: added to the variance; positive in training, non-negative in eval (as torch checks).
        convention: keyword-only, ``"torch"`` or ``"cs231n"`` (momentum as the weight of the old value,
            biased running variance).

    Shape:
        - Input: ``(N, C, *)``; in training at least 2 values per channel, or none at all (an input with no
          element is returned as an empty copy, running statistics untouched, as torch).
        - Output and ``dx``: same shape as the input.
        - running_mean, running_var, weight, bias, and ``dgamma``, ``dbeta``: ``(C,)``.

    Returns:
        ``(input - mean) / sqrt(var + eps) * weight + bias`` per channel.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> x = torch.tensor([[1.0, 2.0], [3.0, 6.0]])  # N=2, C=2
        >>> MF.batch_norm(x, None, None, training=True)
        tensor([[-1.0000, -1.0000],
                [ 1.0000,  1.0000]])
    """
    count = check_batch_norm_arguments(
        input, running_mean, running_var, weight, bias, training, eps, convention
    )
    if input.numel() == 0:
        return EmptyBatchNormFunction.apply(input, weight, bias)
    if training:
        out, mean, var = _autocast.apply(
            BatchNormFunction, "fp32_internal", input, weight, bias, None, None, True, eps
        )
        update_running_stats(running_mean, running_var, mean, var, momentum, count, convention)
        return out
    return _autocast.apply(
        BatchNormFunction, "fp32_internal", input, weight, bias, running_mean, running_var, False, eps
    )
