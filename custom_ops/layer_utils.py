"""The CS231n "sandwich" layers (the course's ``layer_utils.py``: ``affine_relu_forward``,
``conv_relu_pool_forward``, ...), each a single ``autograd.Function``: the chain of layers in one forward and
one hand-written backward, reusing the math of the op files.

affine_relu:     a = x W^T + b;  out = max(a, 0)
                 da = dout * [out > 0];  dx = da W,  dW = da^T x,  db = sum_n da
affine_bn_relu:  a = x W^T + b;  y = xc * (gamma s) + beta (batch norm: xc = a - mu, s = 1/sqrt(var + eps));
                 out = max(y, 0)
                 dy = dout * [y > 0], y recomputed from the saved xc;  da = batch norm backward of dy (the
                 closed form of batchnorm.py);  then the affine backward of da
affine_ln_relu:  as affine_bn_relu, with layer norm over the features: y = gamma * xhat + beta, xhat saved
conv_relu:       a = conv(x, w) + b;  out = max(a, 0);  da = dout * [out > 0];  dx = transposed conv of da,
                 dw = correlation of x with da, db = sum da  (conv.py's "fast" backward)
conv_bn_relu:    as affine_bn_relu, with the convolution and spatial batch norm
conv_relu_pool:  a = conv(x, w) + b;  out = max(maxpool(a), 0): ReLU and max pooling commute
                 (max_i max(a_i, 0) = max(max_i a_i, 0), the same maxima), so the ReLU runs on the pooled
                 tensor (kh*kw times smaller);  dp = dout * [out > 0];  da = dp scattered to each window's
                 max (pool.py's backward);  then the conv backward of da

Forward mode (jvp), the chain rule through the chain: the pre-activation's tangent is bilinear,
``ȧ = ẋ W^T + x Ẇ^T + ḃ`` (``conv(ẋ, W) + conv(x, Ẇ) + ḃ``); the norm's tangent ``ẏ`` is the norm file's
(:func:`~custom_ops.batchnorm.batchnorm_jvp`, :func:`~custom_ops.layernorm.layernorm_jvp`); the ReLU
passes ``ȯut = ẏ [y > 0]``; the max pool takes the tangent at each window's max.

The reference: inside :func:`custom_ops.reference_path`, under ``torch.func`` transforms and in
gradcheck's batched checks, the norm and ReLU parts run the reference formulas of batchnorm.py and
layernorm.py (no fused kernel, no in-place mask), and linear/conv/pool their own reference paths.

vmap: each Function has a rule. With only x batched, the vmapped slices go through as one batch (their
samples stacked; eval batch norm is per sample too); otherwise each slice is applied in turn. Training
batch norm refuses unbatched running statistics, as torch's ``batch_norm`` under ``vmap``.

Saved for backward, against the chain of manual ops (which saves x, W and, per layer, what its Function
saves):
- affine_relu, conv_relu: x, W and out, as the chain (out is the next layer's input, which it keeps anyway).
- affine_bn_relu, conv_bn_relu: x, W, xc, s, gamma and beta; no ReLU output: the mask [y > 0] is recomputed
  in backward from xc (one elementwise pass), one activation-sized tensor fewer than the chain.
- affine_ln_relu: x, W, xhat, s, gamma and beta; likewise no ReLU output.
- conv_relu_pool: x, W, the pooled output and the int64 indices of the maxima; the chain also keeps the
  full-size ReLU output.
The forwards apply the ReLU in place on a tensor they made (the affine or conv output, the norm output, the
pooled maxima), so they allocate one activation-sized tensor fewer than the chain.

Batch norm: training normalises with the batch statistics and updates the running ones exactly as
:func:`custom_ops.batchnorm.batch_norm` (torch convention: ``momentum`` the weight of the new batch, the
unbiased variance), in the Function's forward: once per call, under transforms too; eval uses the running
statistics.

Mixed precision follows the chain. Under ``torch.autocast`` the affine or convolution part runs in the
autocast dtype (linear and conv2d's "lower" policy), max pooling and the ReLU in their input's dtype;
the norm part computes in float32 whenever its input (the pre-activation) is float16/bfloat16, with its
parameters (and the running statistics it reads in eval) in float32, and returns the pre-activation's
dtype (batch_norm and layer_norm's "fp32_internal" policy). Inputs with no element in a batch-norm sandwich
run the chain of manual ops (there is nothing to fuse; the running statistics stay as they are).

Double backward: the affine_relu, conv_relu and conv_relu_pool backwards are differentiable functions of
the saved tensors, as the chain's; the norm sandwiches' backwards are ``once_differentiable``, as the norms'.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import _autocast, fused
from ._checks import OpArgumentError, check_ndim, check_nonempty_planes
from ._function import fast_apply, needed, without_jvp
from ._layout import memory_format
from ._transforms import only_first_batched, reference_formulas, refuse_forward_over_reverse, vmap_loop
from .batchnorm import (
    _UNBATCHED_STATS,
    _channel_view,
    batch_norm,
    batch_norm_affine,
    batch_norm_backward,
    batch_norm_forward,
    batchnorm_backward_alt,
    batchnorm_forward,
    batchnorm_jvp,
    check_batch_norm_arguments,
    scale_shift,
    update_running_stats,
)
from .conv import (
    Pair,
    check_conv2d_tensors,
    conv2d_backward,
    conv2d_forward,
    conv2d_geometry,
    conv_output_size,
)
from .conv import conv2d as manual_conv2d
from .layernorm import (
    check_layer_norm_arguments,
    layer_norm_affine,
    layer_norm_backward,
    layer_norm_forward,
    layernorm_backward,
    layernorm_forward,
    layernorm_jvp,
)
from .linear import affine_backward, affine_forward, check_linear_arguments
from .linear import linear as manual_linear
from .pool import max_pool2d_geometry, max_pool2d_input_grad
from .relu import relu as manual_relu
from .relu import relu_backward

_LOW_PRECISION = (torch.float16, torch.bfloat16)
ConvConf = tuple[Pair, Pair, Pair, int, Pair]  # stride, padding, dilation, groups, extra (conv.py)


# --------------------------------------------------------------------------------------------- helpers
def _masked(dout: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``dout * [y > 0]`` from the recomputed pre-ReLU ``y`` (a temporary: overwritten with the result)."""
    return y.gt_(0).mul_(dout)


def _relu_grad(dout: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``dout * [out > 0]`` from the ReLU output: relu.py's tuned backward, or the reference product (out of
    place: ``dout`` may be batched where ``out`` is not)."""
    return dout * (out > 0) if reference_formulas(dout) else relu_backward(dout, out)


def _norm_dtype(pre: torch.Tensor) -> torch.dtype:
    """The dtype a norm computes in: float32 for a float16/bfloat16 input, else the input's."""
    return torch.float32 if pre.dtype in _LOW_PRECISION else pre.dtype


def _pre_activation_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype of the linear or conv output that the chain hands to the next op: the autocast dtype under
    autocast, else x's."""
    device_type = x.device.type
    return torch.get_autocast_dtype(device_type) if _autocast.is_enabled(device_type) else x.dtype


def _stand_in(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """A tensor with the shape, dtype and device of the chain's intermediate (one element of storage): what
    the next op's argument checks run on, before the sandwich computes it."""
    # Every stride 0: one element of storage (as an expanded 0-d tensor), made in a single call.
    strides = (0,) * len(shape)
    return torch.empty_strided(shape, strides, dtype=_pre_activation_dtype(x), device=x.device)


def _check_2d_weight(weight: torch.Tensor) -> None:
    """Raise :class:`OpArgumentError` unless the affine weight is 2-D (linear's 1-D weight drops the output
    dim, which no norm or sandwich takes)."""
    if weight.dim() != 2:
        raise OpArgumentError(
            f"weight must have shape (out_features, in_features) (a sandwich layer takes no 1-D weight), "
            f"got {tuple(weight.shape)}"
        )


def _conv_out_size(x: torch.Tensor, weight: torch.Tensor, conf: ConvConf) -> list[int]:
    """``[H_out, W_out]`` of the convolution ``conf`` of x ``(N, C, H, W)`` with ``weight``."""
    stride, padding, dilation, _, extra = conf
    return [
        conv_output_size(h + e, k, s, p, d)
        for h, e, k, s, p, d in zip(x.shape[2:], extra, weight.shape[2:], stride, padding, dilation)
    ]


def _conv_geometry(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int | Sequence[int],
    padding: str | int | Sequence[int],
    dilation: int | Sequence[int],
    groups: int,
) -> tuple[ConvConf, tuple[int, int, int, int]]:
    """conv2d's checks on x ``(N, C_in, H, W)``; ``(conf, output shape (N, C_out, H_out, W_out))``."""
    stride_, padding_, dilation_, extra = conv2d_geometry(x, weight, bias, stride, padding, dilation, groups)
    conf = (stride_, padding_, dilation_, groups, extra)
    return conf, (x.shape[0], weight.shape[0], *_conv_out_size(x, weight, conf))


def _apply_with_norm(
    function: type[torch.autograd.Function],
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    params: Sequence[torch.Tensor | None],
    stats: Sequence[torch.Tensor | None],
    cast_stats: bool,
    *static: object,
) -> tuple[torch.Tensor, ...]:
    """``function.apply(x, weight, bias, *params, *stats, *static)`` with the chain's mixed precision: under
    autocast, x, weight and bias in the autocast dtype (the "lower" policy of linear and conv2d, as
    ``_autocast.apply``), and the norm's parameters ``params`` in float32 when the pre-activation is
    float16/bfloat16 (the norms' "fp32_internal"), its running statistics ``stats`` too when ``cast_stats``
    (eval: only read; in training the forward updates them in place, so they pass uncast)."""
    _autocast.check_same_device(function, (x, weight, bias, *params, *stats))
    device_type = x.device.type
    autocasting = _autocast.is_enabled(device_type)
    if autocasting:
        low = torch.get_autocast_dtype(device_type)
        x, weight = x.to(low), weight.to(low)
        bias = None if bias is None else bias.to(low)
    if x.dtype in _LOW_PRECISION:
        params = [None if t is None else t.to(torch.float32) for t in params]
        if cast_stats:
            stats = [None if t is None else t.to(torch.float32) for t in stats]
    if not autocasting:
        return function.apply(x, weight, bias, *params, *stats, *static)
    with torch.autocast(device_type, enabled=False):
        return function.apply(x, weight, bias, *params, *stats, *static)


def _sum_tangents(*terms: torch.Tensor | None) -> torch.Tensor | None:
    """The sum of the terms that are not None (None when none is)."""
    present = [t for t in terms if t is not None]
    return sum(present[1:], present[0]) if present else None


def _affine_tangent(
    x: torch.Tensor, weight: torch.Tensor, x_t: torch.Tensor | None, w_t: torch.Tensor | None, b_t: Any
) -> torch.Tensor | None:
    """``ȧ = ẋ W^T + x Ẇ^T + ḃ``: the tangent of ``a = x W^T + b``, bilinear in (x, W); shaped as ``a``."""
    a_t = _sum_tangents(
        None if x_t is None else x_t @ weight.t(),
        None if w_t is None else x @ w_t.t(),
        b_t,
    )
    return None if a_t is None else a_t.expand(*x.shape[:-1], weight.shape[0])


def _conv_tangent(
    x: torch.Tensor,
    weight: torch.Tensor,
    conf: ConvConf,
    x_t: torch.Tensor | None,
    w_t: torch.Tensor | None,
    b_t: torch.Tensor | None,
) -> torch.Tensor | None:
    """``ȧ = conv(ẋ, W) + conv(x, Ẇ) + ḃ``: the tangent of ``a = conv(x, W) + b``, bilinear in (x, W);
    shaped as ``a``."""
    a_t = _sum_tangents(
        None if x_t is None else conv2d_forward(x_t, weight, None, *conf),
        None if w_t is None else conv2d_forward(x, w_t, None, *conf),
        None if b_t is None else b_t.view(-1, 1, 1),
    )
    return None if a_t is None else a_t.expand(x.shape[0], weight.shape[0], *_conv_out_size(x, weight, conf))


def _unpool(dp: torch.Tensor, index: torch.Tensor, shape: Sequence[int], layout: Any) -> torch.Tensor:
    """The max-pool backward: each entry of ``dp`` added at its window's max (``index``, the flat position
    in the ``H * W`` plane) of a zero tensor of ``shape``: pool.py's, or the reference out-of-place scatter
    (``dp`` may be batched where the zeros are not)."""
    if not reference_formulas(dp):
        return max_pool2d_input_grad(dp, index, shape, layout)
    n, c, h, w = shape
    zeros = dp.new_zeros(n, c, h * w)
    return zeros.scatter_add(2, index.reshape(n, c, -1), dp.reshape(n, c, -1)).view(n, c, h, w)


def _pooled(a: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``a`` at each pool window's max (``index``): the max pool's tangent."""
    n, c = index.shape[:2]
    return a.reshape(n, c, -1).gather(2, index.reshape(n, c, -1)).view(index.shape)


# The norm + ReLU part of the batch-norm sandwiches as fused kernels (:func:`custom_ops.fused.kernel`): the
# formulas of batchnorm.py's kernels with the ReLU (and, in backward, its mask recomputed from xc) in the same
# compiled pass, instead of one more eager pass each.
@fused.kernel
def bn_relu_forward(
    pre: torch.Tensor,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    training: bool,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(max(y, 0), xc, s, mean, var)`` for ``(y, xc, s, mean, var)`` of :func:`batch_norm_forward` (the
    ReLU in place on its output buffer)."""
    y, xc, invstd, mean, var = batch_norm_forward.fn(
        pre, gamma, beta, running_mean, running_var, training, eps
    )
    return y.clamp_min_(0), xc, invstd, mean, var


@fused.kernel
def bn_relu_backward(
    dout: torch.Tensor,
    xc: torch.Tensor,
    invstd: torch.Tensor,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
    training: bool,
    need_dx: bool,
    need_dgamma: bool,
    need_dbeta: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """``(dpre, dgamma, dbeta)`` of :func:`bn_relu_forward`: ``dy = dout * [y > 0]``, y recomputed from xc
    (bit for bit the forward's), then :func:`batch_norm_backward` of dy."""
    dy = _masked(dout, batch_norm_affine(xc, invstd, gamma, beta))
    return batch_norm_backward.fn(dy, xc, invstd, gamma, training, need_dx, need_dgamma, need_dbeta)


def _bn_y(xc: torch.Tensor, invstd: torch.Tensor, gamma: torch.Tensor | None, beta: torch.Tensor | None):
    """The reference batch-norm output ``y = γ x̂ + β`` recomputed from the saved ``xc`` (the forward's)."""
    return scale_shift(xc * _channel_view(invstd, xc.dim()), gamma, beta)


def _bn_relu_forward(
    pre: torch.Tensor,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(out, xc, s)``: ``out = max(batchnorm(pre), 0)`` in pre's dtype, the norm computed in
    :func:`_norm_dtype`: the reference formulas, or the fused kernel (its ReLU in place on the norm's output
    buffer). In training the running statistics given are updated (torch convention)."""
    norm_in = pre.to(_norm_dtype(pre))
    if reference_formulas(pre):
        y, xc, invstd, mean, var = batchnorm_forward(
            norm_in, gamma, beta, running_mean, running_var, training, eps
        )
        out = y.clamp_min(0)  # ReLU
    else:
        out, xc, invstd, mean, var = bn_relu_forward(
            norm_in, gamma, beta, running_mean, running_var, training, eps
        )
    if training:
        count = pre.numel() // pre.shape[1]
        update_running_stats(running_mean, running_var, mean, var, momentum, count, "torch")
    return out.to(pre.dtype), xc, invstd


def _bn_relu_backward(
    dout: torch.Tensor,
    xc: torch.Tensor,
    invstd: torch.Tensor,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
    training: bool,
    dtype: torch.dtype,
    need: Sequence[bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """``(dpre, dgamma, dbeta)``: the ReLU mask ``[y > 0]`` from ``y`` recomputed from ``xc`` (bit for bit
    the forward's), then the batch-norm backward; ``dpre`` in ``dtype``. ``need``: the Function's
    ``needs_input_grad`` (x, weight, bias, gamma, beta first)."""
    need_dpre, need_dgamma, need_dbeta = any(need[:3]), need[3], need[4]
    if reference_formulas(dout):
        dy = dout * (_bn_y(xc, invstd, gamma, beta) > 0)  # the ReLU's backward
        grads = batchnorm_backward_alt(dy, xc, invstd, gamma, training)
        dpre, dgamma, dbeta = needed(grads, (need_dpre, need_dgamma, need_dbeta))
    else:
        dpre, dgamma, dbeta = bn_relu_backward(
            dout, xc, invstd, gamma, beta, training, need_dpre, need_dgamma, need_dbeta
        )
    return None if dpre is None else dpre.to(dtype), dgamma, dbeta


def _bn_relu_jvp(
    pre: torch.Tensor,
    pre_t: torch.Tensor | None,
    gamma_t: torch.Tensor | None,
    beta_t: torch.Tensor | None,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    training: bool,
    eps: float,
) -> torch.Tensor:
    """``ȯut = ẏ [y > 0]`` for the batch norm's tangent ``ẏ`` (:func:`batchnorm_jvp`) of the pre-activation
    ``pre`` (recomputed from the inputs: the tangent is a differentiable function of them), in pre's
    dtype."""
    y, xc, invstd, _, _ = batchnorm_forward(
        pre.to(_norm_dtype(pre)), gamma, beta, running_mean, running_var, training, eps
    )
    y_t = batchnorm_jvp(pre_t, gamma_t, beta_t, xc, invstd, gamma, training)
    return (y_t * (y > 0)).to(pre.dtype)


def _affine_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``a = x W^T + b`` as plain differentiable ops (the jvps recompute the pre-activation with it)."""
    a = x @ weight.t()
    return a if bias is None else a + bias


def _ln_y(xhat: torch.Tensor, gamma: torch.Tensor | None, beta: torch.Tensor | None) -> torch.Tensor:
    """The layer-norm output ``y = γ x̂ + β`` recomputed from the saved x̂ (bit for bit the forward's)."""
    if reference_formulas(xhat):
        scaled = xhat if gamma is None else gamma * xhat
        return scaled if beta is None else scaled + beta
    return layer_norm_affine(xhat, gamma, beta)


# ------------------------------------------------------------------------------------------- vmap rules
def _vmap_x_only(
    function: Any,
    info: Any,
    in_dims: tuple[int | None, ...],
    args: tuple[Any, ...],
    per_sample: tuple[bool, ...],
    fold: bool,
) -> tuple[Any, Any]:
    """The vmap rule of a per-sample sandwich: with only x batched, the B slices' samples go through as one
    batch (``fold``: x ``(B, N, ...)`` -> ``(B * N, ...)``, for an op that takes one batch dim; else x with
    its extra leading dim, for the affine ops, which take any); the loop otherwise. ``per_sample``: which
    outputs carry the batch (the others, e.g. eval batch norm's s, are the same for every slice)."""
    if not only_first_batched(in_dims):
        return vmap_loop(function, info, in_dims, *args)
    x = args[0].movedim(in_dims[0], 0)
    out = function.apply(x.flatten(0, 1) if fold else x, *args[1:])
    outs = out if isinstance(out, tuple) else (out,)
    outs = tuple(t.unflatten(0, (info.batch_size, -1)) if fold and s else t for t, s in zip(outs, per_sample))
    dims = tuple(0 if s else None for s in per_sample)
    return (outs, dims) if isinstance(out, tuple) else (outs[0], dims[0])


def _vmap_bn(
    function: Any, info: Any, in_dims: tuple[int | None, ...], args: tuple[Any, ...]
) -> tuple[Any, Any]:
    """The vmap rule of a batch-norm sandwich ``(x, weight, bias, gamma, beta, running_mean, running_var,
    training, ...)``: as the chain of linear/conv and :func:`~custom_ops.batchnorm.batch_norm`. In eval
    (per sample) x's batch folds into N; in training each slice normalises with its own statistics (the
    loop), and running statistics must be batched (torch's ``RuntimeError`` otherwise, also when only γ or
    β is batched)."""
    running_mean, running_var, training = args[5], args[6], args[7]
    if training:
        if (running_mean is not None and in_dims[5] is None) or (
            running_var is not None and in_dims[6] is None
        ):
            raise RuntimeError(_UNBATCHED_STATS)
        return vmap_loop(function, info, in_dims, *args)
    return _vmap_x_only(function, info, in_dims, args, (True, True, False), fold=True)


# ------------------------------------------------------------------------------------------- Functions
@fast_apply
class AffineReLUFunction(torch.autograd.Function):
    """x ``(*, in)``, weight ``(out, in)``, bias ``(out,)`` or None -> ``(*, out)``.

    jvp: ``ȯut = (ẋ W^T + x Ẇ^T + ḃ) [out > 0]``.
    """

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        pre = affine_forward(x, weight, bias)
        return pre.clamp_min(0) if reference_formulas(x) else pre.clamp_min_(0)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight, output)
        ctx.save_for_forward(x, weight, output)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, out = ctx.saved_tensors
        need_dx, need_dw, need_db = ctx.needs_input_grad
        return affine_backward(_relu_grad(dout, out), x, weight, need_dx, need_dw, ctx.has_bias and need_db)

    @staticmethod
    def jvp(ctx: Any, x_t: Any, w_t: Any, b_t: Any) -> torch.Tensor:
        x, weight, out = ctx.saved_tensors
        return _affine_tangent(x, weight, x_t, w_t, b_t) * (out > 0)

    @staticmethod
    def vmap(info: Any, in_dims: Any, *args: Any) -> tuple[Any, Any]:
        return _vmap_x_only(AffineReLUFunction, info, in_dims, args, (True,), fold=False)


@fast_apply
class AffineBatchNormReLUFunction(torch.autograd.Function):
    """x ``(N, in)``, weight ``(C, in)``, bias, gamma, beta ``(C,)`` or None, running mean/var ``(C,)`` or
    None (required in eval; in training updated in place) -> ``(out, xc, s)``: out ``(N, C)`` and,
    non-differentiable, the batch norm's centred input and ``s`` (what the backward and jvp use).

    jvp: ``ȯut = ẏ [y > 0]``, ``ẏ`` :func:`batchnorm_jvp` of ``ȧ = ẋ W^T + x Ẇ^T + ḃ``.
    """

    @staticmethod
    def forward(x, weight, bias, gamma, beta, running_mean, running_var, training: bool, momentum, eps):
        pre = affine_forward(x, weight, bias)
        return _bn_relu_forward(pre, gamma, beta, running_mean, running_var, training, momentum, eps)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
        x, weight, bias, gamma, beta, running_mean, running_var, training, _, eps = inputs
        _, xc, invstd = output
        ctx.mark_non_differentiable(xc, invstd)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, weight, xc, invstd, gamma, beta)
        stats = (None, None) if training else (running_mean, running_var)  # training updated them in place
        ctx.save_for_forward(x, weight, bias, gamma, beta, *stats)
        ctx.has_bias = bias is not None
        ctx.training, ctx.eps = training, eps

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, *_):
        if dout is None:  # gradients are not materialised: an undefined output gradient means zero
            return (None,) * 10
        refuse_forward_over_reverse(ctx, "affine_bn_relu")
        x, weight, xc, invstd, gamma, beta = ctx.saved_tensors
        need = ctx.needs_input_grad
        dpre, dgamma, dbeta = _bn_relu_backward(dout, xc, invstd, gamma, beta, ctx.training, x.dtype, need)
        dx, dw, db = affine_backward(dpre, x, weight, need[0], need[1], ctx.has_bias and need[2])
        return dx, dw, db, dgamma, dbeta, None, None, None, None, None

    @staticmethod
    def jvp(ctx, x_t, w_t, b_t, gamma_t, beta_t, *_):
        ctx.had_tangents = True
        x, weight, bias, gamma, beta, running_mean, running_var = ctx.saved_tensors
        pre, pre_t = _affine_reference(x, weight, bias), _affine_tangent(x, weight, x_t, w_t, b_t)
        stats = (running_mean, running_var, ctx.training, ctx.eps)
        return _bn_relu_jvp(pre, pre_t, gamma_t, beta_t, gamma, beta, *stats), None, None

    @staticmethod
    def vmap(info: Any, in_dims: Any, *args: Any) -> tuple[Any, Any]:
        return _vmap_bn(AffineBatchNormReLUFunction, info, in_dims, args)


@fast_apply
class AffineLayerNormReLUFunction(torch.autograd.Function):
    """x ``(*, in)``, weight ``(D, in)``, bias, gamma, beta ``(D,)`` or None -> ``(out, xhat, s)``: out
    ``(*, D)`` and, non-differentiable, the layer norm's x̂ and ``s`` (what the backward and jvp use).

    jvp: ``ȯut = ẏ [y > 0]``, ``ẏ`` :func:`layernorm_jvp` of ``ȧ = ẋ W^T + x Ẇ^T + ḃ``.
    """

    @staticmethod
    def forward(x, weight, bias, gamma, beta, eps: float):
        pre = affine_forward(x, weight, bias)
        norm_in = pre.to(_norm_dtype(pre))
        if reference_formulas(x):
            y, xhat, invstd = layernorm_forward(norm_in, 1, gamma, beta, eps)
            out = y.clamp_min(0)  # ReLU
        else:
            y, xhat, invstd = layer_norm_forward(norm_in, 1, gamma, beta, eps)
            out = y.clamp_min_(0)
        return out.to(pre.dtype), xhat, invstd

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
        x, weight, bias, gamma, beta, eps = inputs
        _, xhat, invstd = output
        ctx.mark_non_differentiable(xhat, invstd)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, weight, xhat, invstd, gamma, beta)
        ctx.save_for_forward(x, weight, bias, gamma, beta)
        ctx.has_bias = bias is not None
        ctx.eps = eps

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, *_):
        if dout is None:  # gradients are not materialised: an undefined output gradient means zero
            return (None,) * 6
        refuse_forward_over_reverse(ctx, "affine_ln_relu")
        x, weight, xhat, invstd, gamma, beta = ctx.saved_tensors
        need = ctx.needs_input_grad
        need_dpre = any(need[:3])
        if reference_formulas(dout):
            dy = dout * (_ln_y(xhat, gamma, beta) > 0)  # the ReLU's backward
            grads = layernorm_backward(dy, xhat, invstd, gamma, 1)
            dpre, dgamma, dbeta = needed(grads, (need_dpre, need[3], need[4]))
        else:
            dy = _masked(dout, _ln_y(xhat, gamma, beta))  # y recomputed: the forward's, bit for bit
            dpre, dgamma, dbeta = layer_norm_backward(dy, xhat, invstd, gamma, 1, need_dpre, need[3], need[4])
        dpre = None if dpre is None else dpre.to(x.dtype)
        dx, dw, db = affine_backward(dpre, x, weight, need[0], need[1], ctx.has_bias and need[2])
        return dx, dw, db, dgamma, dbeta, None

    @staticmethod
    def jvp(ctx, x_t, w_t, b_t, gamma_t, beta_t, _):
        ctx.had_tangents = True
        x, weight, bias, gamma, beta = ctx.saved_tensors
        pre, pre_t = _affine_reference(x, weight, bias), _affine_tangent(x, weight, x_t, w_t, b_t)
        y, xhat, invstd = layernorm_forward(pre.to(_norm_dtype(pre)), 1, gamma, beta, ctx.eps)
        y_t = layernorm_jvp(pre_t, gamma_t, beta_t, xhat, invstd, gamma, 1)
        return (y_t * (y > 0)).to(pre.dtype), None, None

    @staticmethod
    def vmap(info: Any, in_dims: Any, *args: Any) -> tuple[Any, Any]:
        return _vmap_x_only(AffineLayerNormReLUFunction, info, in_dims, args, (True, True, True), fold=False)


@fast_apply
class ConvReLUFunction(torch.autograd.Function):
    """x ``(N, C, H, W)``, weight ``(O, C/groups, kh, kw)``, bias ``(O,)`` or None -> ``(N, O, Ho, Wo)``.

    jvp: ``ȯut = (conv(ẋ, W) + conv(x, Ẇ) + ḃ) [out > 0]``.
    """

    @staticmethod
    def forward(x, weight, bias, conf: ConvConf):
        pre = conv2d_forward(x, weight, bias, *conf)
        return pre.clamp_min(0) if reference_formulas(x) else pre.clamp_min_(0)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        x, weight, bias, conf = inputs
        ctx.save_for_backward(x, weight, output)
        ctx.save_for_forward(x, weight, output)
        ctx.conf = conf
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, dout):
        x, weight, out = ctx.saved_tensors
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        da = _relu_grad(dout, out)
        dx, dw, db = conv2d_backward(da, x, weight, ctx.conf, need_dx, need_dw, ctx.has_bias and need_db)
        return dx, dw, db, None

    @staticmethod
    def jvp(ctx, x_t, w_t, b_t, _):
        x, weight, out = ctx.saved_tensors
        return _conv_tangent(x, weight, ctx.conf, x_t, w_t, b_t) * (out > 0)

    @staticmethod
    def vmap(info: Any, in_dims: Any, *args: Any) -> tuple[Any, Any]:
        return _vmap_x_only(ConvReLUFunction, info, in_dims, args, (True,), fold=True)


@fast_apply
class ConvBatchNormReLUFunction(torch.autograd.Function):
    """x ``(N, C_in, H, W)``, weight ``(C, C_in/groups, kh, kw)``, bias, gamma, beta ``(C,)`` or None,
    running mean/var ``(C,)`` or None (required in eval; in training updated in place) -> ``(out, xc, s)``:
    out ``(N, C, Ho, Wo)`` and, non-differentiable, the batch norm's centred input and ``s``.

    jvp: ``ȯut = ẏ [y > 0]``, ``ẏ`` :func:`batchnorm_jvp` of ``ȧ = conv(ẋ, W) + conv(x, Ẇ) + ḃ``.
    """

    @staticmethod
    def forward(x, weight, bias, gamma, beta, running_mean, running_var, training: bool, momentum, eps, conf):
        pre = conv2d_forward(x, weight, bias, *conf)
        return _bn_relu_forward(pre, gamma, beta, running_mean, running_var, training, momentum, eps)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
        x, weight, bias, gamma, beta, running_mean, running_var, training, _, eps, conf = inputs
        _, xc, invstd = output
        ctx.mark_non_differentiable(xc, invstd)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x, weight, xc, invstd, gamma, beta)
        stats = (None, None) if training else (running_mean, running_var)  # training updated them in place
        ctx.save_for_forward(x, weight, bias, gamma, beta, *stats)
        ctx.conf = conf
        ctx.has_bias = bias is not None
        ctx.training, ctx.eps = training, eps

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, *_):
        if dout is None:  # gradients are not materialised: an undefined output gradient means zero
            return (None,) * 11
        refuse_forward_over_reverse(ctx, "conv_bn_relu")
        x, weight, xc, invstd, gamma, beta = ctx.saved_tensors
        need = ctx.needs_input_grad
        dpre, dgamma, dbeta = _bn_relu_backward(dout, xc, invstd, gamma, beta, ctx.training, x.dtype, need)
        dx, dw, db = conv2d_backward(dpre, x, weight, ctx.conf, need[0], need[1], ctx.has_bias and need[2])
        return dx, dw, db, dgamma, dbeta, None, None, None, None, None, None

    @staticmethod
    def jvp(ctx, x_t, w_t, b_t, gamma_t, beta_t, *_):
        ctx.had_tangents = True
        x, weight, bias, gamma, beta, running_mean, running_var = ctx.saved_tensors
        pre = conv2d_forward(x, weight, bias, *ctx.conf)
        pre_t = _conv_tangent(x, weight, ctx.conf, x_t, w_t, b_t)
        stats = (running_mean, running_var, ctx.training, ctx.eps)
        return _bn_relu_jvp(pre, pre_t, gamma_t, beta_t, gamma, beta, *stats), None, None

    @staticmethod
    def vmap(info: Any, in_dims: Any, *args: Any) -> tuple[Any, Any]:
        return _vmap_bn(ConvBatchNormReLUFunction, info, in_dims, args)


@fast_apply
class ConvReLUPoolFunction(torch.autograd.Function):
    """x ``(N, C, H, W)``, weight ``(O, C/groups, kh, kw)``, bias ``(O,)`` or None -> ``(out, index)``, both
    ``(N, O, Hp, Wp)``: out max pooled (no padding, no dilation) with ``kernel`` and ``stride``, and (int64,
    not differentiable) the flat position of each window's max in the conv output's ``Ho * Wo`` plane.

    jvp: ``ȯut = ȧ[index] [out > 0]`` for ``ȧ = conv(ẋ, W) + conv(x, Ẇ) + ḃ`` (the tangent at each window's
    max).
    """

    @staticmethod
    def forward(x, weight, bias, conf: ConvConf, kernel: Pair, stride: Pair):
        pre = conv2d_forward(x, weight, bias, *conf)
        pooled, index = F.max_pool2d(pre, kernel, stride, return_indices=True)
        # max(maxpool(a), 0) = maxpool(max(a, 0))
        out = pooled.clamp_min(0) if reference_formulas(x) else pooled.clamp_min_(0)
        return out, index

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
        x, weight, bias, conf, _, _ = inputs
        out, index = output
        ctx.mark_non_differentiable(index)
        ctx.save_for_backward(x, weight, out, index)
        ctx.save_for_forward(x, weight, out, index)
        ctx.conf = conf
        # the conv output's shape and layout (max pooling keeps the layout)
        ctx.pre = ((*out.shape[:2], *_conv_out_size(x, weight, conf)), memory_format(out))
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, dout, *_):
        x, weight, out, index = ctx.saved_tensors
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        da = _unpool(_relu_grad(dout, out), index, *ctx.pre)
        dx, dw, db = conv2d_backward(da, x, weight, ctx.conf, need_dx, need_dw, ctx.has_bias and need_db)
        return dx, dw, db, None, None, None

    @staticmethod
    def jvp(ctx, x_t, w_t, b_t, *_):
        x, weight, out, index = ctx.saved_tensors
        return _pooled(_conv_tangent(x, weight, ctx.conf, x_t, w_t, b_t), index) * (out > 0), None

    @staticmethod
    def vmap(info: Any, in_dims: Any, *args: Any) -> tuple[Any, Any]:
        return _vmap_x_only(ConvReLUPoolFunction, info, in_dims, args, (True, True), fold=True)


_AffineReLUTraced = without_jvp(AffineReLUFunction)
_AffineBatchNormReLUTraced = without_jvp(AffineBatchNormReLUFunction)
_AffineLayerNormReLUTraced = without_jvp(AffineLayerNormReLUFunction)
_ConvReLUTraced = without_jvp(ConvReLUFunction)
_ConvBatchNormReLUTraced = without_jvp(ConvBatchNormReLUFunction)
_ConvReLUPoolTraced = without_jvp(ConvReLUPoolFunction)


# ------------------------------------------------------------------------------------------- functional
def affine_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``relu(linear(x, weight, bias))`` in one Function (CS231n ``affine_relu_forward``/``_backward``).

    Args:
        x: floating tensor ``(*, in_features)``.
        weight: ``(out_features, in_features)``.
        bias: ``(out_features,)`` or None.

    Shape:
        - Input: ``(*, in_features)``; output ``(*, out_features)``.
        - Gradients: ``dx`` the shape of ``x``, ``dw`` ``(out_features, in_features)``, ``db``
          ``(out_features,)``.

    Returns:
        ``max(x @ weight.T + bias, 0)``.

    Examples::

        >>> import torch
        >>> from custom_ops.layer_utils import affine_relu
        >>> w = torch.tensor([[1.0, 1.0], [1.0, -1.0]], requires_grad=True)
        >>> affine_relu(torch.tensor([[1.0, -2.0]]), w, torch.zeros(2))
        tensor([[0., 3.]], grad_fn=<AffineReLUFunctionBackward>)
        >>> x, w, b = (torch.randn(s, dtype=torch.double, requires_grad=True) for s in [(4, 3), (2, 3), 2])
        >>> torch.autograd.gradcheck(affine_relu, (x, w, b))
        True
    """
    check_linear_arguments(x, weight, bias)
    _check_2d_weight(weight)
    function = _AffineReLUTraced if torch.compiler.is_compiling() else AffineReLUFunction
    return _autocast.apply(function, "lower", x, weight, bias)


def affine_bn_relu(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    bn_weight: torch.Tensor | None = None,
    bn_bias: torch.Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> torch.Tensor:
    """``relu(batch_norm(linear(x, weight, bias), ...))`` in one Function (CS231n ``affine_bn_relu``).

    Args:
        x: floating tensor ``(N, in_features)``.
        weight: ``(C, in_features)``, C = out_features.
        bias: ``(C,)`` or None.
        running_mean, running_var: ``(C,)`` or None; in training, when given, updated in place as
            :func:`custom_ops.batchnorm.batch_norm` does (unbiased variance); required in eval.
        bn_weight, bn_bias: the batch norm's gamma and beta, ``(C,)`` or None.
        training: normalise with the batch statistics (else with the running ones).
        momentum: weight of the new batch in the running statistics.
        eps: added to the variance; positive in training, non-negative in eval.

    Shape:
        - Input: ``(N, in_features)``, in training N > 1; output ``(N, C)``.
        - Gradients: ``dx`` ``(N, in_features)``, ``dw`` ``(C, in_features)``, ``db``, ``dgamma``,
          ``dbeta`` ``(C,)``.

    Returns:
        ``max(gamma * (a - mean) / sqrt(var + eps) + beta, 0)`` for ``a = x @ weight.T + bias``.

    Examples::

        >>> import torch
        >>> from custom_ops.layer_utils import affine_bn_relu
        >>> x, w = torch.tensor([[1.0], [3.0]]), torch.tensor([[1.0], [-1.0]])
        >>> mean, var = torch.zeros(2), torch.ones(2)
        >>> affine_bn_relu(x, w, None, mean, var, training=True)
        tensor([[0.0000, 1.0000],
                [1.0000, 0.0000]])
        >>> mean, var  # updated: 0.1 of the batch mean (2, -2) and unbiased variance (2, 2)
        (tensor([ 0.2000, -0.2000]), tensor([1.1000, 1.1000]))
    """
    check_linear_arguments(x, weight, bias)
    _check_2d_weight(weight)
    check_ndim("input", x, (2,), "(N, in_features)")
    pre = _stand_in(x, (x.shape[0], weight.shape[0]))
    check_batch_norm_arguments(pre, running_mean, running_var, bn_weight, bn_bias, training, eps, "torch")
    if pre.numel() == 0:
        pre = manual_linear(x, weight, bias)
        return manual_relu(
            batch_norm(pre, running_mean, running_var, bn_weight, bn_bias, training, momentum, eps)
        )
    function = _AffineBatchNormReLUTraced if torch.compiler.is_compiling() else AffineBatchNormReLUFunction
    params, stats = (bn_weight, bn_bias), (running_mean, running_var)
    static = (training, momentum, eps)
    return _apply_with_norm(function, x, weight, bias, params, stats, not training, *static)[0]


def affine_ln_relu(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    ln_weight: torch.Tensor | None = None,
    ln_bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """``relu(layer_norm(linear(x, weight, bias), (D,), ln_weight, ln_bias, eps))`` in one Function (the
    course's affine - layer norm - relu block).

    Args:
        x: floating tensor ``(*, in_features)``.
        weight: ``(D, in_features)``, D = out_features.
        bias: ``(D,)`` or None.
        ln_weight, ln_bias: the layer norm's gamma and beta, ``(D,)`` or None.
        eps: added to the variance.

    Shape:
        - Input: ``(*, in_features)``; output ``(*, D)``, normalised over the D features of each sample.
        - Gradients: ``dx`` the shape of ``x``, ``dw`` ``(D, in_features)``, ``db``, ``dgamma``, ``dbeta``
          ``(D,)``.

    Returns:
        ``max(gamma * (a - mean) / sqrt(var + eps) + beta, 0)`` for ``a = x @ weight.T + bias``, statistics
        per sample.

    Examples::

        >>> import torch
        >>> from custom_ops.layer_utils import affine_ln_relu
        >>> affine_ln_relu(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), None)
        tensor([[0.0000, 1.0000]])
    """
    check_linear_arguments(x, weight, bias)
    _check_2d_weight(weight)
    pre = _stand_in(x, (*x.shape[:-1], weight.shape[0]))
    check_layer_norm_arguments(pre, weight.shape[0], ln_weight, ln_bias)
    function = _AffineLayerNormReLUTraced if torch.compiler.is_compiling() else AffineLayerNormReLUFunction
    return _apply_with_norm(function, x, weight, bias, (ln_weight, ln_bias), (), False, eps)[0]


def conv_relu(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence[int] = 0,
    *,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    """``relu(conv2d(x, weight, bias, stride, padding, dilation, groups))`` in one Function (CS231n
    ``conv_relu_forward``/``_backward``).

    Args:
        x: floating tensor ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``.
        weight: ``(C_out, C_in / groups, kh, kw)``.
        bias: ``(C_out,)`` or None.
        stride, padding, dilation, groups: as :func:`custom_ops.conv.conv2d` (``padding`` an int, a pair,
            ``"valid"`` or ``"same"``).

    Shape:
        - Input: ``(N, C_in, H, W)`` or ``(C_in, H, W)``; output ``(N, C_out, H_out, W_out)`` (or unbatched),
          as conv2d.
        - Gradients: ``dx`` the shape of ``x``, ``dw`` the shape of ``weight``, ``db`` ``(C_out,)``.

    Returns:
        ``max(conv2d(x, weight) + bias, 0)``.

    Examples::

        >>> import torch
        >>> from custom_ops.layer_utils import conv_relu
        >>> conv_relu(torch.randn(8, 3, 32, 32), torch.randn(16, 3, 3, 3), padding=1).shape
        torch.Size([8, 16, 32, 32])
        >>> conv_relu(torch.ones(1, 1, 2, 2), torch.tensor([[[[1.0]]], [[[-1.0]]]]))  # 2 filters, 1x1
        tensor([[[[1., 1.],
                  [1., 1.]],
        <BLANKLINE>
                 [[0., 0.],
                  [0., 0.]]]])
    """
    check_conv2d_tensors(x, weight, bias)
    unbatched = x.dim() == 3
    x4 = x.unsqueeze(0) if unbatched else x
    conf, _ = _conv_geometry(x4, weight, bias, stride, padding, dilation, groups)
    function = _ConvReLUTraced if torch.compiler.is_compiling() else ConvReLUFunction
    out = _autocast.apply(function, "lower", x4, weight, bias, conf)
    return out.squeeze(0) if unbatched else out


def conv_bn_relu(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    bn_weight: torch.Tensor | None = None,
    bn_bias: torch.Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence[int] = 0,
    *,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    """``relu(batch_norm(conv2d(x, weight, bias, ...), ...))``, spatial batch norm, in one Function (the
    course's conv - spatial batchnorm - relu block).

    Args:
        x: floating tensor ``(N, C_in, H, W)``.
        weight: ``(C, C_in / groups, kh, kw)``.
        bias: ``(C,)`` or None (usually None: beta takes its place).
        running_mean, running_var, bn_weight, bn_bias, training, momentum, eps: as :func:`affine_bn_relu`,
            per channel over ``N * H_out * W_out`` values.
        stride, padding, dilation, groups: the convolution's, as :func:`conv_relu`.

    Shape:
        - Input: ``(N, C_in, H, W)``; output ``(N, C, H_out, W_out)``.
        - Gradients: ``dx`` the shape of ``x``, ``dw`` the shape of ``weight``, ``db``, ``dgamma``,
          ``dbeta`` ``(C,)``.

    Returns:
        ``max(gamma * (a - mean) / sqrt(var + eps) + beta, 0)`` per channel for ``a = conv2d(x, weight) +
        bias``.

    Examples::

        >>> import torch
        >>> from custom_ops.layer_utils import conv_bn_relu
        >>> g = torch.Generator().manual_seed(0)
        >>> x, w = torch.randn(8, 3, 16, 16, generator=g), torch.randn(4, 3, 3, 3, generator=g)
        >>> mean, var, gamma, beta = torch.zeros(4), torch.ones(4), torch.ones(4), torch.zeros(4)
        >>> out = conv_bn_relu(x, w, None, mean, var, gamma, beta, training=True, padding=1)
        >>> out.shape, bool(out.min() == 0), round(out.mean().item(), 1)  # half of a unit normal, clipped
        (torch.Size([8, 4, 16, 16]), True, 0.4)
    """
    check_conv2d_tensors(x, weight, bias)
    check_ndim("input", x, (4,), "(N, C_in, H, W)")
    conf, shape = _conv_geometry(x, weight, bias, stride, padding, dilation, groups)
    pre = _stand_in(x, shape)
    check_batch_norm_arguments(pre, running_mean, running_var, bn_weight, bn_bias, training, eps, "torch")
    if pre.numel() == 0:
        pre = manual_conv2d(x, weight, bias, stride, padding, dilation, groups)
        return manual_relu(
            batch_norm(pre, running_mean, running_var, bn_weight, bn_bias, training, momentum, eps)
        )
    function = _ConvBatchNormReLUTraced if torch.compiler.is_compiling() else ConvBatchNormReLUFunction
    params, stats = (bn_weight, bn_bias), (running_mean, running_var)
    static = (training, momentum, eps, conf)
    return _apply_with_norm(function, x, weight, bias, params, stats, not training, *static)[0]


def conv_relu_pool(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence[int] = 0,
    pool_kernel: int | Sequence[int] = 2,
    pool_stride: int | Sequence[int] | None = None,
    *,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    """``max_pool2d(relu(conv2d(x, weight, bias, ...)), pool_kernel, pool_stride)`` in one Function (CS231n
    ``conv_relu_pool_forward``/``_backward``).

    Args:
        x: floating tensor ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``.
        weight: ``(C_out, C_in / groups, kh, kw)``.
        bias: ``(C_out,)`` or None.
        stride, padding, dilation, groups: the convolution's, as :func:`conv_relu`.
        pool_kernel: the max pool's window, an int or ``(kh, kw)``.
        pool_stride: its step; None: ``pool_kernel``. (No pool padding, dilation or ceil mode.)

    Shape:
        - Input: ``(N, C_in, H, W)`` or ``(C_in, H, W)``; output ``(N, C_out, H_p, W_p)`` (or unbatched),
          ``H_p = floor((H_out - k) / s) + 1`` for the conv's ``H_out``.
        - Gradients: ``dx`` the shape of ``x``, ``dw`` the shape of ``weight``, ``db`` ``(C_out,)``.

    Returns:
        The max over each pool window of ``max(conv2d(x, weight) + bias, 0)``.

    Examples::

        >>> import torch
        >>> from custom_ops.layer_utils import conv_relu_pool
        >>> conv_relu_pool(torch.randn(8, 3, 32, 32), torch.randn(16, 3, 3, 3), padding=1).shape
        torch.Size([8, 16, 16, 16])
        >>> x = torch.arange(16.0).view(1, 1, 4, 4) - 8
        >>> conv_relu_pool(x, torch.ones(1, 1, 1, 1))  # the top windows' maxima, -3 and -1, clipped
        tensor([[[[0., 0.],
                  [5., 7.]]]])
    """
    check_conv2d_tensors(x, weight, bias)
    unbatched = x.dim() == 3
    x4 = x.unsqueeze(0) if unbatched else x
    conf, shape = _conv_geometry(x4, weight, bias, stride, padding, dilation, groups)
    check_nonempty_planes("input", _stand_in(x4, shape), "(N, C, H, W) or (C, H, W)")
    kernel, pool_stride_, _, _ = max_pool2d_geometry(shape[2:], pool_kernel, pool_stride, 0, 1, False)
    function = _ConvReLUPoolTraced if torch.compiler.is_compiling() else ConvReLUPoolFunction
    out = _autocast.apply(function, "lower", x4, weight, bias, conf, kernel, pool_stride_)[0]
    return out.squeeze(0) if unbatched else out
