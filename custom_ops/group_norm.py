"""Group normalisation (CS231n ``spatial_groupnorm_forward`` / ``spatial_groupnorm_backward``): statistics
per sample over each group of ``C / G`` channels and all spatial positions (``D`` values per group),
then a per-channel scale and shift. ``G = 1`` is layer norm over ``(C, *)``; ``G = C`` is instance norm.

The reference, first in this file: the layer-norm formulas per (sample, group) (x̂ = (x − μ) s,
s = 1 / sqrt(σ² + ε); means over the D values of a group; γ, β per channel):

    forward:             μ = mean(x);  σ² = mean((x − μ)²);  x̂ = (x − μ) s;  out = γ x̂ + β
    backward:            g = γ dout;  dx = s (g − mean(g) − x̂ mean(g x̂))
                         dγ = Σ dout x̂;  dβ = Σ dout   (per channel, over samples and positions)
    forward-mode (jvp):  ȯut = γ s (ẋ − mean(ẋ) − x̂ mean(ẋ x̂)) + γ̇ x̂ + β̇

Beside it, the tuned formulas, the default path (:func:`group_norm_forward`, :func:`group_norm_backward`):
both group means of the backward from per-(n, c) sums over the positions, ``S1 = Σ dout`` and
``S2 = Σ dout x̂``: ``mean(g) = Σ_{c in group} γ[c] S1[n, c] / D``, ``mean(g x̂)`` the same with S2; dγ and
dβ are S2 and S1 summed over n. So ``dx = A dout + B x̂ + K`` with per-(n, c) coefficients ``A = γ s``,
``B = −s mean(g x̂)``, ``K = −s mean(g)``, folded on the small ``(N, C)`` tensors first, and one full-size
temporary (``dout x̂``, then overwritten by dx); each a fused kernel (:func:`custom_ops.fused.kernel`). The
reference runs instead inside :func:`custom_ops.reference_path`, under ``torch.func`` transforms and in
gradcheck's batched checks (:func:`custom_ops._transforms.reference_formulas`); the tests check both equal.

Saved for backward: x̂ (the size of x), s (one per sample and group) and γ — the built-in saves x, μ and s,
the same bytes. The backward uses them as constants: ``once_differentiable``. The formulas are per sample:
under ``torch.func.vmap`` the vmapped slices' samples are one batch (:meth:`GroupNormFunction.vmap`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from . import _autocast, fused
from ._checks import OpArgumentError, check_floating, check_int, check_norm_params_dtype
from ._function import fast_apply, needed, without_jvp
from ._transforms import only_first_batched, reference_formulas, refuse_forward_over_reverse, vmap_loop
from .batchnorm import _channel_view, scale_shift
from .layernorm import standardize


# -------------------------------------------------------------------------------------------- reference
def _groups(t: torch.Tensor, num_groups: int) -> torch.Tensor:
    """``(N, C, *)`` -> ``(N, G, C / G, *)``: a view in any memory layout."""
    return t.view(t.shape[0], num_groups, t.shape[1] // num_groups, *t.shape[2:])


def _ungroup(t: torch.Tensor) -> torch.Tensor:
    """``(N, G, C / G, *)`` -> ``(N, C, *)``."""
    return t.reshape(t.shape[0], t.shape[1] * t.shape[2], *t.shape[3:])


def _group_dims(t: torch.Tensor) -> tuple[int, ...]:
    """The dims of a group of ``(N, G, C / G, *)``: its channels and positions, the D values."""
    return tuple(range(2, t.dim()))


def groupnorm_forward(
    x: torch.Tensor, num_groups: int, gamma: torch.Tensor | None, beta: torch.Tensor | None, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference forward: ``(out, xhat, s)``, x, out and xhat ``(N, C, *)``, s ``(N, G)``."""
    xg = _groups(x, num_groups)  # (N, G, C/G, *)
    dims = _group_dims(xg)
    mean = xg.mean(dims, keepdim=True)  # μ = (1/D) Σ x, per sample and group
    xc = xg - mean  # x − μ
    var = (xc * xc).mean(dims, keepdim=True)  # σ² = (1/D) Σ (x − μ)², two-pass (stable)
    invstd = 1.0 / torch.sqrt(var + eps)  # s = 1 / sqrt(σ² + ε)
    xhat = _ungroup(xc * invstd)  # x̂ = (x − μ) s, back to (N, C, *)
    out = scale_shift(xhat, gamma, beta)  # γ x̂ + β, per channel
    return out, xhat, invstd.reshape(x.shape[0], num_groups)


def groupnorm_backward(
    dout: torch.Tensor, xhat: torch.Tensor, invstd: torch.Tensor, gamma: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference backward: ``(dx, dγ, dβ)`` from the saved x̂, s ``(N, G)`` and γ."""
    num_groups = invstd.shape[1]
    per_channel = [0, *range(2, dout.dim())]  # samples and positions
    dbeta = dout.sum(per_channel)  # dβ = Σ dout
    dgamma = (dout * xhat).sum(per_channel)  # dγ = Σ dout x̂
    g = dout if gamma is None else dout * _channel_view(gamma, dout.dim())  # g = γ dout
    gg, xg = _groups(g, num_groups), _groups(xhat, num_groups)  # (N, G, C/G, *)
    dims = _group_dims(gg)
    s = invstd.view(*invstd.shape, *([1] * len(dims)))  # (N, G, 1, ...)
    mean_g = gg.mean(dims, keepdim=True)  # mean(g)
    mean_g_xhat = (gg * xg).mean(dims, keepdim=True)  # mean(g x̂)
    dx = s * (gg - mean_g - xg * mean_g_xhat)  # s (g − mean(g) − x̂ mean(g x̂))
    return _ungroup(dx), dgamma, dbeta


def groupnorm_jvp(
    x_t: torch.Tensor | None,
    gamma_t: torch.Tensor | None,
    beta_t: torch.Tensor | None,
    xhat: torch.Tensor,
    invstd: torch.Tensor,
    gamma: torch.Tensor | None,
) -> torch.Tensor:
    """The reference forward-mode derivative: the output tangent for the tangents ``ẋ``, ``γ̇``, ``β̇``
    (None: zero), from the saved x̂, s ``(N, G)`` and γ."""
    ndim = xhat.dim()
    out_t = torch.zeros_like(xhat)
    if x_t is not None:
        num_groups = invstd.shape[1]
        tg, xg = _groups(x_t, num_groups), _groups(xhat, num_groups)  # (N, G, C/G, *)
        dims = _group_dims(tg)
        s = invstd.view(*invstd.shape, *([1] * len(dims)))
        mean_x_t = tg.mean(dims, keepdim=True)  # mean(ẋ)
        mean_x_t_xhat = (tg * xg).mean(dims, keepdim=True)  # mean(ẋ x̂)
        xhat_t = _ungroup(s * (tg - mean_x_t - xg * mean_x_t_xhat))  # s (ẋ − mean(ẋ) − x̂ mean(ẋ x̂))
        out_t = out_t + (xhat_t if gamma is None else _channel_view(gamma, ndim) * xhat_t)  # γ ẋ̂
    if gamma_t is not None:
        out_t = out_t + _channel_view(gamma_t, ndim) * xhat  # + γ̇ x̂
    if beta_t is not None:
        out_t = out_t + _channel_view(beta_t, ndim)  # + β̇
    return out_t


# ----------------------------------------------------------------------------------- tuned (the default)
def _per_channel(t: torch.Tensor, channels_per_group: int) -> torch.Tensor:
    """``(N, G)`` -> ``(N, C)``: each group's value repeated for its channels."""
    n, groups = t.shape
    return t.unsqueeze(2).expand(n, groups, channels_per_group).reshape(n, groups * channels_per_group)


@fused.kernel
def group_norm_forward(
    x: torch.Tensor, num_groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tuned :func:`groupnorm_forward` (the same outputs)."""
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
    """Tuned :func:`groupnorm_backward`: ``(dx, dγ, dβ)``, None where not needed."""
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


# ------------------------------------------------------------------------------------------ Function
@fast_apply
class GroupNormFunction(torch.autograd.Function):
    """x ``(N, C, *)``, weight/bias ``(C,)`` or None -> ``(out, xhat, s)``: the output (shaped like x) and,
    non-differentiable, what the backward and jvp use (s ``(N, G)``).

    Backward: :func:`groupnorm_backward`, ``dx = s (g − mean(g) − x̂ mean(g x̂))`` per group for
    ``g = γ dout``, ``dγ = Σ dout x̂``, ``dβ = Σ dout``.

    jvp: :func:`groupnorm_jvp`, ``ȯut = γ s (ẋ − mean(ẋ) − x̂ mean(ẋ x̂)) + γ̇ x̂ + β̇``, x̂ and s recomputed
    from x (reverse-over-forward works; forward-over-reverse is refused, as double backward).
    """

    @staticmethod
    def forward(
        x: torch.Tensor,
        num_groups: int,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        eps: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        forward = groupnorm_forward if reference_formulas(x) else group_norm_forward
        return forward(x, num_groups, weight, bias, eps)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
        x, num_groups, weight, bias, eps = inputs
        _, xhat, invstd = output
        ctx.mark_non_differentiable(xhat, invstd)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.save_for_forward(x, weight)
        ctx.num_groups, ctx.eps = num_groups, eps
        ctx.has_bias = bias is not None

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: torch.Tensor | None, *_: Any) -> tuple[torch.Tensor | None, ...]:
        if dout is None:  # gradients are not materialised: an undefined output gradient means zero
            return None, None, None, None, None
        refuse_forward_over_reverse(ctx, "group_norm")
        xhat, invstd, weight = ctx.saved_tensors
        need_dx, _, need_dw, need_db = ctx.needs_input_grad[:4]
        need_dw = need_dw and weight is not None
        need_db = need_db and ctx.has_bias
        if reference_formulas(dout):
            grads = groupnorm_backward(dout, xhat, invstd, weight)
            dx, dw, db = needed(grads, (need_dx, need_dw, need_db))
        else:
            dx, dw, db = group_norm_backward(dout, xhat, invstd, weight, need_dx, need_dw, need_db)
        return dx, None, dw, db, None

    @staticmethod
    def jvp(ctx: Any, x_t: torch.Tensor | None, _: Any, weight_t: Any, bias_t: Any, *__: Any) -> tuple:
        ctx.had_tangents = True
        x, weight = ctx.saved_tensors
        _, xhat, invstd = groupnorm_forward(x, ctx.num_groups, None, None, ctx.eps)  # differentiable in x
        return groupnorm_jvp(x_t, weight_t, bias_t, xhat, invstd, weight), None, None

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], x, num_groups, weight, bias, eps) -> tuple[Any, Any]:
        """Per sample: with only x batched the slices' samples are one batch (x ``(B, N, C, *)`` ->
        ``(B * N, C, *)``); with γ or β batched, each slice in turn."""
        args = (x, num_groups, weight, bias, eps)
        if not only_first_batched(in_dims):
            return vmap_loop(GroupNormFunction, info, in_dims, *args)
        out, xhat, invstd = GroupNormFunction.apply(x.movedim(in_dims[0], 0).flatten(0, 1), *args[1:])
        size = info.batch_size
        return tuple(t.unflatten(0, (size, -1)) for t in (out, xhat, invstd)), (0, 0, 0)


_GroupNormTraced = without_jvp(GroupNormFunction)


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
    function = _GroupNormTraced if torch.compiler.is_compiling() else GroupNormFunction
    return _autocast.apply(function, "fp32_internal", input, num_groups, weight, bias, eps)[0]
