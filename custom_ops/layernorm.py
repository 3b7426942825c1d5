"""Layer normalisation (CS231n ``layernorm_forward`` / ``layernorm_backward``): statistics per sample
over the ``D`` values of the trailing ``normalized_shape`` dims.

The reference, first in this file (x̂ = (x − μ) s, s = 1 / sqrt(σ² + ε); means over the D values of a
sample; γ, β of shape ``normalized_shape``):

    forward:             μ = mean(x);  σ² = mean((x − μ)²);  x̂ = (x − μ) s;  out = γ x̂ + β
    backward:            g = γ dout;  dx = s (g − mean(g) − x̂ mean(g x̂))
                         dγ = Σ_samples dout x̂;  dβ = Σ_samples dout
    forward-mode (jvp):  ȯut = γ s (ẋ − mean(ẋ) − x̂ mean(ẋ x̂)) + γ̇ x̂ + β̇

Beside it, the tuned formulas, the default path (:func:`standardize`, :func:`layer_norm_forward`,
:func:`layer_norm_backward`): every full-size step one plain elementwise op or reduction, s computed in
place on the small per-sample tensor, one full-size temporary in the backward (``dout x̂``, later
overwritten by dx), and with γ the per-sample means ``mean(g)`` and ``mean(g x̂)`` as matrix-vector products
with γ; each a fused kernel (:func:`custom_ops.fused.kernel`: one compiled pass with fusion on). The
reference runs instead inside :func:`custom_ops.reference_path`, under ``torch.func`` transforms and in
gradcheck's batched checks (:func:`custom_ops._transforms.reference_formulas`); the tests check both equal.

Saved for backward: x̂ (the size of x), s (one per sample) and γ — the built-in saves x, μ and s, the same
bytes. The backward uses them as constants: ``once_differentiable`` (no double backward). The formulas
are per sample: under ``torch.func.vmap`` the vmapped slices are one more batch dim
(:meth:`LayerNormFunction.vmap`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from . import _autocast, fused
from ._checks import OpArgumentError, check_floating, check_norm_params_dtype, check_shape
from ._function import fast_apply, needed, without_jvp
from ._transforms import only_first_batched, reference_formulas, refuse_forward_over_reverse, vmap_loop


# -------------------------------------------------------------------------------------------- reference
def _sum_over_samples(t: torch.Tensor, normalized_ndim: int) -> torch.Tensor:
    """``t`` summed over its leading (sample) dims, to the shape ``normalized_shape``; ``t`` itself when
    the normalised dims are the whole shape (``sum(())`` would sum over every dim)."""
    leading = tuple(range(t.dim() - normalized_ndim))
    return t.sum(leading) if leading else t


def layernorm_forward(
    x: torch.Tensor, normalized_ndim: int, gamma: torch.Tensor | None, beta: torch.Tensor | None, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference forward: ``(out, xhat, s)`` of layer norm over the trailing ``normalized_ndim`` dims
    (``s`` keeps those dims, of size 1)."""
    dims = tuple(range(x.dim() - normalized_ndim, x.dim()))
    mean = x.mean(dims, keepdim=True)  # μ = (1/D) Σ x, per sample
    xc = x - mean  # x − μ
    var = (xc * xc).mean(dims, keepdim=True)  # σ² = (1/D) Σ (x − μ)², two-pass (stable)
    invstd = 1.0 / torch.sqrt(var + eps)  # s = 1 / sqrt(σ² + ε)
    xhat = xc * invstd  # x̂ = (x − μ) s
    scaled = xhat.clone() if gamma is None else gamma * xhat  # γ x̂ (a new tensor: x̂ is saved)
    out = scaled if beta is None else scaled + beta  # γ x̂ + β
    return out, xhat, invstd


def layernorm_backward(
    dout: torch.Tensor,
    xhat: torch.Tensor,
    invstd: torch.Tensor,
    gamma: torch.Tensor | None,
    normalized_ndim: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference backward: ``(dx, dγ, dβ)`` from the saved x̂, s and γ."""
    dims = tuple(range(dout.dim() - normalized_ndim, dout.dim()))
    dbeta = _sum_over_samples(dout, normalized_ndim)  # dβ = Σ_samples dout
    dgamma = _sum_over_samples(dout * xhat, normalized_ndim)  # dγ = Σ_samples dout x̂
    g = dout if gamma is None else gamma * dout  # g = γ dout, the gradient of x̂
    mean_g = g.mean(dims, keepdim=True)  # mean(g)
    mean_g_xhat = (g * xhat).mean(dims, keepdim=True)  # mean(g x̂)
    dx = invstd * (g - mean_g - xhat * mean_g_xhat)  # s (g − mean(g) − x̂ mean(g x̂))
    return dx, dgamma, dbeta


def layernorm_jvp(
    x_t: torch.Tensor | None,
    gamma_t: torch.Tensor | None,
    beta_t: torch.Tensor | None,
    xhat: torch.Tensor,
    invstd: torch.Tensor,
    gamma: torch.Tensor | None,
    normalized_ndim: int,
) -> torch.Tensor:
    """The reference forward-mode derivative: the output tangent for the tangents ``ẋ``, ``γ̇``, ``β̇``
    (None: zero), from the saved x̂, s and γ."""
    dims = tuple(range(xhat.dim() - normalized_ndim, xhat.dim()))
    out_t = torch.zeros_like(xhat)
    if x_t is not None:
        mean_x_t = x_t.mean(dims, keepdim=True)  # mean(ẋ)
        mean_x_t_xhat = (x_t * xhat).mean(dims, keepdim=True)  # mean(ẋ x̂)
        xhat_t = invstd * (x_t - mean_x_t - xhat * mean_x_t_xhat)  # ẋ̂ = s (ẋ − mean(ẋ) − x̂ mean(ẋ x̂))
        out_t = out_t + (xhat_t if gamma is None else gamma * xhat_t)  # γ ẋ̂
    if gamma_t is not None:
        out_t = out_t + gamma_t * xhat  # + γ̇ x̂
    if beta_t is not None:
        out_t = out_t + beta_t  # + β̇
    return out_t


# ----------------------------------------------------------------------------------- tuned (the default)
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
    """Tuned :func:`layernorm_forward` (the same outputs)."""
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
    """Tuned :func:`layernorm_backward`: ``(dx, dγ, dβ)``, None where not needed (``need_dweight`` only with
    a weight)."""
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


# ------------------------------------------------------------------------------------------ Function
@fast_apply
class LayerNormFunction(torch.autograd.Function):
    """x ``(*, *normalized_shape)``, weight/bias ``normalized_shape`` or None -> ``(out, xhat, s)``: the
    output (shaped like x) and, non-differentiable, what the backward and jvp use.

    Backward: :func:`layernorm_backward`, ``dx = s (g − mean(g) − x̂ mean(g x̂))`` for ``g = γ dout``,
    ``dγ = Σ dout x̂``, ``dβ = Σ dout`` (sums over the samples).

    jvp: :func:`layernorm_jvp`, ``ȯut = γ s (ẋ − mean(ẋ) − x̂ mean(ẋ x̂)) + γ̇ x̂ + β̇``, x̂ and s recomputed
    from x (a differentiable function of the inputs: reverse-over-forward works; forward-over-reverse is
    refused, as double backward).
    """

    @staticmethod
    def forward(
        x: torch.Tensor,
        normalized_ndim: int,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        eps: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        forward = layernorm_forward if reference_formulas(x) else layer_norm_forward
        return forward(x, normalized_ndim, weight, bias, eps)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, ...]) -> None:
        x, normalized_ndim, weight, bias, eps = inputs
        _, xhat, invstd = output
        ctx.mark_non_differentiable(xhat, invstd)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.save_for_forward(x, weight)
        ctx.normalized_ndim, ctx.eps = normalized_ndim, eps
        ctx.has_bias = bias is not None

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: torch.Tensor | None, *_: Any) -> tuple[torch.Tensor | None, ...]:
        if dout is None:  # gradients are not materialised: an undefined output gradient means zero
            return None, None, None, None, None
        refuse_forward_over_reverse(ctx, "layer_norm")
        xhat, invstd, weight = ctx.saved_tensors
        need_dx, _, need_dw, need_db = ctx.needs_input_grad[:4]
        need_dw = need_dw and weight is not None
        need_db = need_db and ctx.has_bias
        if reference_formulas(dout):
            grads = layernorm_backward(dout, xhat, invstd, weight, ctx.normalized_ndim)
            dx, dw, db = needed(grads, (need_dx, need_dw, need_db))
        else:
            dx, dw, db = layer_norm_backward(
                dout, xhat, invstd, weight, ctx.normalized_ndim, need_dx, need_dw, need_db
            )
        return dx, None, dw, db, None

    @staticmethod
    def jvp(ctx: Any, x_t: torch.Tensor | None, _: Any, weight_t: Any, bias_t: Any, *__: Any) -> tuple:
        ctx.had_tangents = True
        x, weight = ctx.saved_tensors
        _, xhat, invstd = layernorm_forward(
            x, ctx.normalized_ndim, None, None, ctx.eps
        )  # differentiable in x
        return layernorm_jvp(x_t, weight_t, bias_t, xhat, invstd, weight, ctx.normalized_ndim), None, None

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], x, normalized_ndim, weight, bias, eps) -> tuple[Any, Any]:
        """Per sample: with only x batched its batch is one more leading dim (x ``(B, *, *normalized)``, the
        statistics per slice and sample); with γ or β batched, each slice in turn."""
        args = (x, normalized_ndim, weight, bias, eps)
        if not only_first_batched(in_dims):
            return vmap_loop(LayerNormFunction, info, in_dims, *args)
        return LayerNormFunction.apply(x.movedim(in_dims[0], 0), *args[1:]), (0, 0, 0)


_LayerNormTraced = without_jvp(LayerNormFunction)


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
    function = _LayerNormTraced if torch.compiler.is_compiling() else LayerNormFunction
    return _autocast.apply(function, "fp32_internal", input, len(shape), weight, bias, eps)[0]
