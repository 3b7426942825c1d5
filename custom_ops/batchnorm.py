"""Batch normalisation, 1-D ``(N, C)`` and spatial ``(N, C, H, W)`` (CS231n ``batchnorm_forward``,
``batchnorm_backward_alt`` and ``spatial_batchnorm_*``): statistics per channel ``C`` over the ``M`` values of
all other dims.

The reference, first in this file, as the course writes it (x̂ = (x − μ) s, s = 1 / sqrt(σ² + ε)):

    forward (training):  μ = mean(x);  σ² = mean((x − μ)²);  x̂ = (x − μ) s;  out = γ x̂ + β
    backward:            dβ = Σ dout;  dγ = Σ dout x̂
                         dx = γ s (dout − mean(dout) − x̂ mean(dout x̂))
    forward-mode (jvp):  ȯut = γ s (ẋ − mean(ẋ) − x̂ mean(ẋ x̂)) + γ̇ x̂ + β̇

(means and sums per channel over M). The Jacobian in x is symmetric, so the tangent's x part is the
backward's dx formula applied to ẋ. In evaluation μ and σ² are the running statistics, constants:
``dx = γ s dout`` and ``ȯut = γ s ẋ + γ̇ x̂ + β̇``.

Running statistics. PyTorch (default, ``convention="torch"``): ``momentum`` is the weight of the *new*
batch, ``running = (1 - momentum) * running + momentum * batch``, and the running variance uses the
*unbiased* batch variance (``var * M / (M - 1)``) — exactly what ``nn.BatchNorm*`` does.
CS231n (``convention="cs231n"``): ``momentum`` (0.9 in the assignment) is the weight of the *old* value,
``running = momentum * running + (1 - momentum) * batch``, with the *biased* variance. The forward of
:class:`BatchNormFunction` updates them, in place, once per call (under forward-mode AD and ``torch.func``
transforms too: the forward runs once, below the transforms).

Beside the reference sit the tuned formulas, the default path (:func:`batch_norm_forward`,
:func:`batch_norm_backward`): the per-channel scalars folded first, so that every full-size step is one
elementwise op or reduction, full-size temporaries reused (``(x − μ)²`` becomes the output, ``dout (x − μ)``
becomes dx), and each a fused kernel (:func:`custom_ops.fused.kernel`: one compiled pass with fusion on).
The reference runs instead inside :func:`custom_ops.reference_path` and where the tuned formulas' ``out=``
and in-place writes have no batching rule: under ``torch.func`` transforms and gradcheck's batched checks.
The tests check both paths equal.

Saved for backward: the centred input x − μ (the size of x), s and γ — the built-in kernel saves x, μ and
s, the same bytes. The backward uses them as constants: ``once_differentiable`` (no double backward).
Under ``torch.func.vmap`` the op behaves as torch's ``batch_norm`` (:meth:`BatchNormFunction.vmap`): each
vmapped slice normalises with its own batch statistics; in training, running statistics must be batched
too (torch refuses unbatched ones: they would be updated in place by every slice); eval mode works.

An input with no element (an empty batch, or no channel), as torch: the output is an empty copy, the
running statistics stay as they are, and the weight and bias gradients are zeros (sums over nothing).
``eps`` must be positive in training and non-negative in eval, as ``torch.nn.functional.batch_norm``
checks (eps = 0 in training divides by a zero variance for a constant channel).
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import torch
from torch.autograd.function import once_differentiable

from . import _autocast, fused
from ._checks import OpArgumentError, check_floating, check_norm_params_dtype, check_shape
from ._function import fast_apply, needed, without_jvp
from ._transforms import reference_formulas, refuse_forward_over_reverse

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _channel_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """``(C,)`` -> ``(C, 1, ...)``, or per-sample ``(N, C)`` -> ``(N, C, 1, ...)``: broadcastable against an
    ``(N, C, *)`` input of ``ndim`` dims."""
    return t.reshape(*t.shape, *([1] * (ndim - 2))) if t.dim() == 2 else t.view(-1, *([1] * (ndim - 2)))


def _channel_dims(ndim: int) -> list[int]:
    """Every dim of an ``(N, C, *)`` tensor but the channel dim: the M values of each channel."""
    return [d for d in range(ndim) if d != 1]


# -------------------------------------------------------------------------------------------- reference
def scale_shift(xhat: torch.Tensor, gamma: torch.Tensor | None, beta: torch.Tensor | None) -> torch.Tensor:
    """``γ x̂ + β`` per channel (a missing γ is 1, a missing β is 0): a new tensor, never ``xhat``."""
    ndim = xhat.dim()
    scaled = xhat.clone() if gamma is None else xhat * _channel_view(gamma, ndim)
    return scaled if beta is None else scaled + _channel_view(beta, ndim)


def batchnorm_forward(
    x: torch.Tensor,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    training: bool,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference forward: ``(out, xc, s, mean, var)`` with ``xc = x − μ``, of x ``(N, C, *)``; in
    training μ, σ² are the batch mean and biased variance, in eval the running statistics."""
    ndim = x.dim()
    dims = _channel_dims(ndim)
    if training:
        mean = x.mean(dims)  # μ = (1/M) Σ x
        xc = x - _channel_view(mean, ndim)  # x − μ
        var = (xc * xc).mean(dims)  # σ² = (1/M) Σ (x − μ)², two-pass (stable)
    else:
        mean = running_mean
        var = running_var
        xc = x - _channel_view(mean, ndim)
    invstd = 1.0 / torch.sqrt(var + eps)  # s = 1 / sqrt(σ² + ε)
    xhat = xc * _channel_view(invstd, ndim)  # x̂ = (x − μ) s
    out = scale_shift(xhat, gamma, beta)  # γ x̂ + β
    return out, xc, invstd, mean, var


def batchnorm_backward_alt(
    dout: torch.Tensor, xc: torch.Tensor, invstd: torch.Tensor, gamma: torch.Tensor | None, training: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference backward (the course's simplified closed form): ``(dx, dγ, dβ)`` from the saved
    ``xc = x − μ``, s and γ."""
    ndim = xc.dim()
    dims = _channel_dims(ndim)
    xhat = xc * _channel_view(invstd, ndim)  # x̂, from the saved centred input
    dbeta = dout.sum(dims)  # dβ = Σ dout
    dgamma = (dout * xhat).sum(dims)  # dγ = Σ dout x̂
    gamma_s = invstd if gamma is None else gamma * invstd  # γ s
    if training:
        mean_dout = dout.mean(dims)  # mean(dout)
        mean_dout_xhat = (dout * xhat).mean(dims)  # mean(dout x̂)
        centred = dout - _channel_view(mean_dout, ndim) - xhat * _channel_view(mean_dout_xhat, ndim)
        dx = _channel_view(gamma_s, ndim) * centred  # γ s (dout − mean(dout) − x̂ mean(dout x̂))
    else:
        dx = _channel_view(gamma_s, ndim) * dout  # γ s dout: μ, σ² are constants
    return dx, dgamma, dbeta


def batchnorm_jvp(
    x_t: torch.Tensor | None,
    gamma_t: torch.Tensor | None,
    beta_t: torch.Tensor | None,
    xc: torch.Tensor,
    invstd: torch.Tensor,
    gamma: torch.Tensor | None,
    training: bool,
) -> torch.Tensor:
    """The reference forward-mode derivative: the output tangent for the tangents ``ẋ``, ``γ̇``, ``β̇``
    (None: zero), from ``xc = x − μ``, s and γ (:class:`BatchNormFunction` recomputes xc and s from x, so
    that the tangent is a differentiable function of the inputs: reverse-over-forward differentiates it)."""
    ndim = xc.dim()
    dims = _channel_dims(ndim)
    xhat = xc * _channel_view(invstd, ndim)  # x̂
    gamma_s = invstd if gamma is None else gamma * invstd  # γ s
    out_t = torch.zeros_like(xc)
    if x_t is not None:
        if training:
            mean_x_t = x_t.mean(dims)  # mean(ẋ)
            mean_x_t_xhat = (x_t * xhat).mean(dims)  # mean(ẋ x̂)
            centred = x_t - _channel_view(mean_x_t, ndim) - xhat * _channel_view(mean_x_t_xhat, ndim)
            out_t = out_t + _channel_view(gamma_s, ndim) * centred  # γ s (ẋ − mean(ẋ) − x̂ mean(ẋ x̂))
        else:
            out_t = out_t + _channel_view(gamma_s, ndim) * x_t  # γ s ẋ
    if gamma_t is not None:
        out_t = out_t + _channel_view(gamma_t, ndim) * xhat  # + γ̇ x̂
    if beta_t is not None:
        out_t = out_t + _channel_view(beta_t, ndim)  # + β̇
    return out_t


# ----------------------------------------------------------------------------------- tuned (the default)
def _affine(t: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor | None, out: torch.Tensor | None):
    """``t * scale + shift`` per channel (``scale``, ``shift`` of shape ``(C,)``), into ``out`` if given.

    One fused ``addcmul`` for ``(N, C)``; for spatial inputs a multiply then an in-place add, because
    addcmul's CPU kernel is several times slower when its first operand broadcasts along the inner dims.
    """
    if shift is not None and t.dim() == 2:
        return torch.addcmul(shift, t, scale, out=out)
    res = torch.mul(t, _channel_view(scale, t.dim()), out=out)
    return res if shift is None else res.add_(_channel_view(shift, t.dim()))


def batch_norm_affine(
    xc: torch.Tensor,
    invstd: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``xc * (γ s) + β`` per channel (γ, β optional), into ``out`` if given: the output of batch norm from
    the centred input."""
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
    """Tuned :func:`batchnorm_forward` (the same outputs): ``out = xc * (γ s) + β`` without materialising
    x̂, the square ``xc²`` reused as the output buffer, s computed in place on the small tensor."""
    ndim = x.dim()
    dims = _channel_dims(ndim)
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
    """Tuned :func:`batchnorm_backward_alt`: ``(dx, dγ, dβ)`` (None where not needed; ``need_dweight`` only
    with a weight). With x̂ = xc s and M values per channel, the closed form reads
    ``dx = (γ s) dout − (xc (γ s² dγ / M) + γ s dβ / M)``: per-channel coefficients first, then one
    full-size temporary, ``dout * xc``, which gives dγ and then holds dx."""
    ndim = xc.dim()
    dims = _channel_dims(ndim)
    buffer = dgamma = None
    if training or need_dweight:
        buffer = dout * xc
        dgamma = buffer.sum(dims).mul_(invstd)
    dbeta = dout.sum(dims) if training or need_dbias else None
    scale = invstd if weight is None else invstd * weight
    dx = None
    if need_dx:
        if training:
            neg_inv_m = -1.0 / (dout.numel() // dout.shape[1])
            dx = _affine(dout, scale, (scale * dbeta).mul_(neg_inv_m), buffer)
            dx.addcmul_(xc, _channel_view((scale * invstd).mul_(dgamma).mul_(neg_inv_m), ndim))
        else:
            dx = _affine(dout, scale, None, buffer)
    return dx, dgamma if need_dweight else None, dbeta if need_dbias else None


# ------------------------------------------------------------------------------------------ Functions
@fast_apply
class EmptyBatchNormFunction(torch.autograd.Function):
    """x with no element, weight/bias ``(C,)`` or None -> an empty copy of x; zero parameter gradients.

    jvp: ``ȯut = ẋ`` (γ and β touch no element).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        x, weight, bias = inputs
        ctx.param_shapes = [None if t is None else t.shape for t in (weight, bias)]
        ctx.shape = x.shape

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grads = [None if shape is None else dout.new_zeros(shape) for shape in ctx.param_shapes]
        return dout.clone(), *grads

    @staticmethod
    def jvp(ctx: Any, x_t: torch.Tensor | None, *_: Any) -> torch.Tensor | None:
        return None if x_t is None else x_t.clone()


_UNBATCHED_STATS = (
    "Batch norm got a batched tensor as input while the running_mean or running_var, which will be updated "
    "in place, were not batched.\nIf you are using a module and do not need eval mode, please set "
    "`track_running_stats` to be False.If you are using a prebuilt module and do not need eval mode, please "
    "see the functorch website for resources on how to patch your module to work with vmap"
)
"""torch's own message for the same mistake (``vmap`` over batch norm in training with unbatched running
statistics), word for word."""


@fast_apply
class BatchNormFunction(torch.autograd.Function):
    """x ``(N, C, *)``, weight/bias ``(C,)`` or None, running mean/var ``(C,)`` or None (required in eval)
    -> ``(out, xc, s)``: the output and, non-differentiable, what the backward and jvp use (the centred
    input ``x − μ`` and ``s = 1 / sqrt(σ² + ε)``). In training the forward updates the running statistics
    that are given, in place (see the module docstring for ``momentum`` and ``convention``).

    Backward: :func:`batchnorm_backward_alt`, ``dx = γ s (dout − mean(dout) − x̂ mean(dout x̂))``,
    ``dγ = Σ dout x̂``, ``dβ = Σ dout`` (eval: ``dx = γ s dout``).

    jvp: :func:`batchnorm_jvp`, ``ȯut = γ s (ẋ − mean(ẋ) − x̂ mean(ẋ x̂)) + γ̇ x̂ + β̇`` (eval:
    ``γ s ẋ + γ̇ x̂ + β̇``), x̂ and s recomputed from x; the running statistics are constants. The
    backward refuses forward-mode AD over it (:func:`custom_ops._transforms.refuse_forward_over_reverse`).

    vmap: :meth:`vmap`, as torch's ``batch_norm`` under ``torch.func.vmap``.
    """

    @staticmethod
    def forward(
        x: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        running_mean: torch.Tensor | None,
        running_var: torch.Tensor | None,
        training: bool,
        momentum: float,
        eps: float,
        convention: str,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        forward = batchnorm_forward if reference_formulas(x) else batch_norm_forward
        out, xc, invstd, mean, var = forward(x, weight, bias, running_mean, running_var, training, eps)
        if training:
            count = x.numel() // x.shape[1]
            update_running_stats(running_mean, running_var, mean, var, momentum, count, convention)
        return out, xc, invstd

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
        x, weight, bias, running_mean, running_var, training, _, eps, _ = inputs
        _, xc, invstd = output
        ctx.mark_non_differentiable(xc, invstd)
        ctx.set_materialize_grads(False)  # no zero-filled gradients for xc and s: backward ignores them
        ctx.save_for_backward(xc, invstd, weight)
        stats = (None, None) if training else (running_mean, running_var)  # training updated them in place
        ctx.save_for_forward(x, weight, *stats)
        ctx.training, ctx.eps = training, eps
        ctx.has_bias = bias is not None

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: torch.Tensor | None, *_: Any) -> tuple[torch.Tensor | None, ...]:
        if dout is None:  # gradients are not materialised: an undefined output gradient means zero
            return (None,) * 9
        refuse_forward_over_reverse(ctx, "batch_norm")
        xc, invstd, weight = ctx.saved_tensors
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        need_dw = need_dw and weight is not None
        need_db = need_db and ctx.has_bias
        if reference_formulas(dout):
            dx, dw, db = batchnorm_backward_alt(dout, xc, invstd, weight, ctx.training)
            dx, dw, db = needed((dx, dw, db), (need_dx, need_dw, need_db))
        else:
            dx, dw, db = batch_norm_backward(
                dout, xc, invstd, weight, ctx.training, need_dx, need_dw, need_db
            )
        return dx, dw, db, None, None, None, None, None, None

    @staticmethod
    def jvp(ctx: Any, x_t: torch.Tensor | None, weight_t: Any, bias_t: Any, *_: Any) -> tuple[Any, ...]:
        ctx.had_tangents = True
        x, weight, running_mean, running_var = ctx.saved_tensors
        _, xc, invstd, _, _ = batchnorm_forward(
            x, None, None, running_mean, running_var, ctx.training, ctx.eps
        )
        return batchnorm_jvp(x_t, weight_t, bias_t, xc, invstd, weight, ctx.training), None, None

    @staticmethod
    def vmap(
        info: Any,
        in_dims: tuple[int | None, ...],
        x: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        running_mean: torch.Tensor | None,
        running_var: torch.Tensor | None,
        training: bool,
        momentum: float,
        eps: float,
        convention: str,
    ) -> tuple[tuple[torch.Tensor, ...], tuple[int | None, ...]]:
        """Batch norm of each vmapped slice, as torch's batching rule: the B slices' C channels become one
        batch norm over ``B * C`` channels (x ``(B, N, C, *)`` -> ``(N, B * C, *)``), each with its own
        statistics. In training, running statistics must be batched too (each slice updates its own; torch's
        ``RuntimeError`` otherwise), unless only γ and β are batched: then x is normalised once (the
        statistics updated once) and the batched affine applied to it."""
        x_dim, w_dim, b_dim, mean_dim, var_dim = in_dims[:5]
        size = info.batch_size
        unbatched_stats = (running_mean is not None and mean_dim is None) or (
            running_var is not None and var_dim is None
        )
        static = (training, momentum, eps, convention)

        def batched(t: torch.Tensor, dim: int | None) -> torch.Tensor:
            return t.movedim(dim, 0) if dim is not None else t.expand(size, *t.shape)

        if training and unbatched_stats:
            if x_dim is not None:
                raise RuntimeError(_UNBATCHED_STATS)
            # Only γ and/or β batched: normalise x once, then γ x̂ + β per slice.
            xhat, xc, invstd = BatchNormFunction.apply(x, None, None, running_mean, running_var, *static)
            ndim = x.dim() + 1
            shape = (size, 1, -1, *([1] * (ndim - 3)))
            out = xhat.unsqueeze(0)
            if weight is not None:
                out = out * batched(weight, w_dim).reshape(shape)
            if bias is not None:
                out = out + batched(bias, b_dim).reshape(shape)
            return (out, xc, invstd), (0, None, None)
        xb = batched(x, x_dim)  # (B, N, C, *)
        channels = xb.shape[2]
        folded_x = xb.movedim(0, 1).flatten(1, 2)  # (N, B * C, *)

        def folded(t: torch.Tensor | None, dim: int | None) -> torch.Tensor | None:
            return None if t is None else batched(t, dim).reshape(size * channels)

        params = [folded(t, d) for t, d in ((weight, w_dim), (bias, b_dim))]
        stats = [folded(t, d) for t, d in ((running_mean, mean_dim), (running_var, var_dim))]
        out, xc, invstd = BatchNormFunction.apply(folded_x, *params, *stats, *static)
        if training:  # a statistic that reshape had to copy: write its update back
            for t, d, f in zip((running_mean, running_var), (mean_dim, var_dim), stats):
                if t is not None and f.data_ptr() != batched(t, d).data_ptr():
                    batched(t, d).copy_(f.view(size, channels))
        unfold = (out.unflatten(1, (size, channels)), xc.unflatten(1, (size, channels)))
        return (*unfold, invstd.view(size, channels)), (1, 1, 0)


_EmptyBatchNormTraced = without_jvp(EmptyBatchNormFunction)
_BatchNormTraced = without_jvp(BatchNormFunction)


def apply_fp32_internal(
    function: type[torch.autograd.Function],
    x: torch.Tensor,
    params: tuple[torch.Tensor | None, ...],
    stats: tuple[torch.Tensor | None, ...],
    training: bool,
    *static: Any,
) -> Any:
    """``function.apply(x, *params, *stats, training, *static)`` with the norms' "fp32_internal" mixed
    precision (:mod:`custom_ops._autocast`): a float16/bfloat16 ``x`` is normalised in float32, with its
    parameters (and, in eval, running statistics) cast to float32, and the output (the first) cast back;
    autocast is off inside. In training the running statistics pass uncast: the forward updates them in
    place. Every tensor must be on x's device (torch's ``RuntimeError``, as
    :func:`custom_ops._autocast.apply` checks)."""
    _autocast.check_same_device(function, (x, *params, *stats))
    out_dtype = x.dtype if x.dtype in _LOW_PRECISION else None
    if out_dtype is not None:
        x = x.float()
        params = tuple(None if t is None else t.float() for t in params)
        if not training:
            stats = tuple(None if t is None else t.float() for t in stats)
    device_type = x.device.type
    autocast_off = (
        torch.autocast(device_type, enabled=False)
        if _autocast.is_enabled(device_type)
        else contextlib.nullcontext()
    )
    with autocast_off:
        out = function.apply(x, *params, *stats, training, *static)
    if out_dtype is None:
        return out
    return (out[0].to(out_dtype), *out[1:]) if isinstance(out, tuple) else out.to(out_dtype)


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
    check_batch_norm_arguments(input, running_mean, running_var, weight, bias, training, eps, convention)
    if input.numel() == 0:
        return (_EmptyBatchNormTraced if torch.compiler.is_compiling() else EmptyBatchNormFunction).apply(
            input, weight, bias
        )
    stats = (running_mean, running_var)
    out, _, _ = apply_fp32_internal(
        _BatchNormTraced if torch.compiler.is_compiling() else BatchNormFunction,
        input,
        (weight, bias),
        stats,
        training,
        momentum,
        eps,
        convention,
    )
    return out
