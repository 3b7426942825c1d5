"""Scaled dot-product attention, as the CS231n assignment's Transformer writes it: every query scores every
key, a softmax turns each row of scores into probabilities, and the output is those probabilities' average
of the values.

The reference (the top of this file), with Q ``(..., L, E)``, K ``(..., S, E)``, V ``(..., S, Ev)``, an
additive mask M (0 where a key takes part, -inf where it does not; a float mask is added as it is) and
inverted dropout on the probabilities (``keep`` the 0/1 mask, p the drop probability); a dot marks the
forward-mode tangent:

    S      = (scale Q) Kᵀ + M                                   scores (..., L, S); scale = 1 / sqrt(E)
    P      = softmax(S)                                         row-wise, max-subtracted
    P_drop = P * keep / (1 - p)                                 P itself when p = 0
    O      = P_drop V                                           (..., L, Ev)

    dV     = P_dropᵀ dO
    dP     = (dO Vᵀ) * keep / (1 - p)                           through the dropout: the same scaled mask
    dS     = P ⊙ (dP − rowsum(dP ⊙ P))                          the softmax's Jacobian diag(P) − P Pᵀ
    dQ     = scale · dS K,   dK = scale · dSᵀ Q,   dM = dS      (dM summed over the dims M was broadcast on)

    Ṡ      = scale (Q̇ Kᵀ + Q K̇ᵀ) + Ṁ
    Ṗ      = P ⊙ (Ṡ − rowsum(Ṡ ⊙ P))
    Ȯ      = Ṗ_drop V + P_drop V̇                                Ṗ_drop = Ṗ * keep / (1 - p)

A row whose keys are all masked out (every score -inf) has no probabilities: its P is 0, so its output and
gradients are 0, as torch's own attention gives (its "safe softmax"), rather than the 0/0 = NaN of a plain
softmax. ``is_causal`` is the boolean mask ``tril(ones(L, S))``: query i sees keys 0..i. Grouped-query
attention (``enable_gqa``): K and V with fewer heads (dim -3) are repeated to the query's heads (each head
``groups`` times in a row), and dK, dV are summed over each group.

Saved for backward: Q, K, V and the probabilities P (plus the dropout mask as booleans), like the textbook:
O(B·H·L·S) numbers, where torch's flash and memory-efficient kernels save only the output and one
log-sum-exp per query row, O(B·H·L), and recompute P block by block in their backward. That is what the
bench's ``saved`` column shows for ``scaled_dot_product_attention`` (``python -m torch_cs231n.tools.bench
--op scaled_dot_product_attention``). The Function returns P as a second output, so the backward is an
ordinary differentiable expression of the saved tensors and double backward works; the multi-head layer
reads its attention weights from that output.

The dropout mask is drawn by :func:`scaled_dot_product_attention` itself, as torch's math kernel draws it
(``bernoulli_`` on a tensor of the probabilities' shape and dtype: on CPU the same draws as the built-in for
the same seed), and handed to the Function, which is deterministic; under ``torch.func.vmap`` the draw
follows vmap's ``randomness=`` as torch's random ops do (see :mod:`custom_ops.dropout`).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from . import _autocast
from ._checks import OpArgumentError, OpDtypeError, check_floating
from ._function import fast_apply, needed, without_jvp


# ------------------------------------------------------------------------------------------ the reference
def expand_heads(t: torch.Tensor, groups: int) -> torch.Tensor:
    """Grouped-query attention: each head of ``t`` (dim -3) repeated ``groups`` times in a row."""
    if groups == 1:
        return t
    return t.repeat_interleave(groups, dim=-3)


def sum_heads(dt: torch.Tensor, groups: int) -> torch.Tensor:
    """The gradient of :func:`expand_heads`: each group of ``groups`` heads summed into its one head."""
    if groups == 1:
        return dt
    heads = dt.shape[-3] // groups
    return dt.reshape(*dt.shape[:-3], heads, groups, *dt.shape[-2:]).sum(-3)


def safe_softmax(scores: torch.Tensor) -> torch.Tensor:
    """``P = exp(S - max S) / sum(exp(S - max S))`` along the last dim; 0 for a row that is all -inf."""
    if scores.shape[-1] == 0:  # no keys: no probabilities
        return scores.clone()
    row_max = scores.amax(-1, keepdim=True)
    row_max = torch.where(row_max == -math.inf, 0.0, row_max)  # fully masked row: exp(-inf) = 0 below
    exp_scores = torch.exp(scores - row_max)
    row_sum = exp_scores.sum(-1, keepdim=True)
    probs = exp_scores / torch.where(row_sum == 0, 1.0, row_sum)
    return probs


def dropout_probs(probs: torch.Tensor, keep: torch.Tensor | None, p: float) -> torch.Tensor:
    """``P * keep / (1 - p)``: P itself for p = 0, zeros for p = 1 (no mask drawn)."""
    if p == 0.0:
        return probs
    if keep is None:
        return probs * 0.0
    return probs * keep / (1.0 - p)


def attention_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None,
    keep: torch.Tensor | None,
    p: float,
    scale: float,
    groups_k: int = 1,
    groups_v: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``O = dropout(softmax(scale Q Kᵀ + M)) V``; returns O and the probabilities P (before dropout)."""
    k_heads = expand_heads(k, groups_k)
    v_heads = expand_heads(v, groups_v)
    q_scaled = scale * q  # scaling Q (L x E numbers) costs less than scaling S (L x S)
    scores = q_scaled @ k_heads.mT
    if mask is not None:
        scores = scores + mask
    probs = safe_softmax(scores)
    probs_drop = dropout_probs(probs, keep, p)
    out = probs_drop @ v_heads
    return out, probs


def attention_backward(
    dout: torch.Tensor,
    dprobs_out: torch.Tensor | None,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    probs: torch.Tensor,
    keep: torch.Tensor | None,
    p: float,
    scale: float,
    groups_k: int = 1,
    groups_v: int = 1,
    mask_shape: torch.Size | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``dQ = scale dS K``, ``dK = scale dSᵀ Q``, ``dV = P_dropᵀ dO``, ``dM = dS``, with
    ``dS = P ⊙ (dP − rowsum(dP ⊙ P))``; ``dprobs_out`` is the gradient reaching the returned P (or None)."""
    k_heads = expand_heads(k, groups_k)
    v_heads = expand_heads(v, groups_v)
    probs_drop = dropout_probs(probs, keep, p)
    dv_heads = probs_drop.mT @ dout
    dprobs = dropout_probs(dout @ v_heads.mT, keep, p)  # the same scaled mask as the forward's
    if dprobs_out is not None:
        dprobs = dprobs + dprobs_out
    dscores = probs * (dprobs - (dprobs * probs).sum(-1, keepdim=True))
    dq = scale * (dscores @ k_heads)
    dk_heads = dscores.mT @ (scale * q)
    # undo the broadcasting of the batch dims, then the repetition of the heads
    dq = dq.sum_to_size(q.shape)
    dk = sum_heads(dk_heads.sum_to_size(k_heads.shape), groups_k)
    dv = sum_heads(dv_heads.sum_to_size(v_heads.shape), groups_v)
    dmask = None if mask_shape is None else dscores.sum_to_size(mask_shape)
    return dq, dk, dv, dmask


def attention_jvp(
    q_dot: torch.Tensor | None,
    k_dot: torch.Tensor | None,
    v_dot: torch.Tensor | None,
    mask_dot: torch.Tensor | None,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    probs: torch.Tensor,
    keep: torch.Tensor | None,
    p: float,
    scale: float,
    groups_k: int = 1,
    groups_v: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``Ṡ = scale (Q̇ Kᵀ + Q K̇ᵀ) + Ṁ``, ``Ṗ = P ⊙ (Ṡ − rowsum(Ṡ ⊙ P))``, ``Ȯ = Ṗ_drop V + P_drop V̇``
    (a missing tangent is zero); returns Ȯ and Ṗ."""
    k_heads = expand_heads(k, groups_k)
    v_heads = expand_heads(v, groups_v)
    scores_dot = torch.zeros_like(probs)
    if q_dot is not None:
        scores_dot = scores_dot + scale * (q_dot @ k_heads.mT)
    if k_dot is not None:
        scores_dot = scores_dot + scale * (q @ expand_heads(k_dot, groups_k).mT)
    if mask_dot is not None:
        scores_dot = scores_dot + mask_dot
    probs_dot = probs * (scores_dot - (scores_dot * probs).sum(-1, keepdim=True))
    out_dot = dropout_probs(probs_dot, keep, p) @ v_heads
    if v_dot is not None:
        out_dot = out_dot + dropout_probs(probs, keep, p) @ expand_heads(v_dot, groups_v)
    return out_dot, probs_dot


# ---------------------------------------------------------------------------------------- the Function
@fast_apply
class AttentionFunction(torch.autograd.Function):
    """q ``(..., L, E)``, k ``(..., S, E)``, v ``(..., S, Ev)``, mask (additive, broadcastable to
    ``(..., L, S)``, or None), keep (the boolean dropout mask of P's shape, or None) -> O ``(..., L, Ev)`` and
    the probabilities P ``(..., L, S)``.

    Backward: ``dV = P_dropᵀ dO``, ``dS = P ⊙ (dP − rowsum(dP ⊙ P))``, ``dQ = scale dS K``,
    ``dK = scale dSᵀ Q``, ``dM = dS``; jvp: ``Ṗ = P ⊙ (Ṡ − rowsum(Ṡ ⊙ P))``, ``Ȯ = Ṗ_drop V + P_drop V̇``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        keep: torch.Tensor | None,
        p: float,
        scale: float,
        groups_k: int,
        groups_v: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return attention_forward(q, k, v, mask, keep, p, scale, groups_k, groups_v)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, torch.Tensor]) -> None:
        q, k, v, mask, keep, p, scale, groups_k, groups_v = inputs
        ctx.p, ctx.scale, ctx.groups_k, ctx.groups_v = p, scale, groups_k, groups_v
        ctx.mask_shape = None if mask is None else mask.shape
        ctx.save_for_backward(q, k, v, output[1], keep)
        ctx.save_for_forward(q, k, v, output[1], keep)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor, dprobs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        q, k, v, probs, keep = ctx.saved_tensors
        grads = attention_backward(
            dout,
            dprobs,
            q,
            k,
            v,
            probs,
            keep,
            ctx.p,
            ctx.scale,
            ctx.groups_k,
            ctx.groups_v,
            ctx.mask_shape,
        )
        return (*needed(grads, ctx.needs_input_grad[:4]), None, None, None, None, None)

    @staticmethod
    def jvp(
        ctx: Any,
        q_dot: torch.Tensor | None,
        k_dot: torch.Tensor | None,
        v_dot: torch.Tensor | None,
        mask_dot: torch.Tensor | None,
        *_: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v, probs, keep = ctx.saved_tensors
        return attention_jvp(
            q_dot, k_dot, v_dot, mask_dot, q, k, v, probs, keep, ctx.p, ctx.scale, ctx.groups_k, ctx.groups_v
        )


_ATTENTION_FOR_COMPILE = without_jvp(AttentionFunction)


# ------------------------------------------------------------------------------------------- the wrapper
def _heads_groups(name: str, query: torch.Tensor, other: torch.Tensor) -> int:
    """How many query heads share each head of ``other`` (key or value) under ``enable_gqa``."""
    if query.dim() < 3 or other.dim() < 3:
        raise OpArgumentError(
            f"enable_gqa needs query and {name} with a heads dim (-3): got {query.dim()}-D query and "
            f"{other.dim()}-D {name}"
        )
    heads, other_heads = query.shape[-3], other.shape[-3]
    if other_heads == 0 or heads % other_heads != 0:
        raise OpArgumentError(
            "Number of heads in key and value must divide the number of heads in query: "
            f"query has {heads} heads, {name} {other_heads}"
        )
    return heads // other_heads


def _additive_mask(
    attn_mask: torch.Tensor | None, is_causal: bool, query: torch.Tensor, key: torch.Tensor
) -> torch.Tensor | None:
    """M of the reference: 0 where a key takes part and -inf where it does not (boolean and causal masks),
    a float mask in the query's dtype as it is."""
    L, S = query.shape[-2], key.shape[-2]
    if is_causal:
        attn_mask = torch.ones(L, S, dtype=torch.bool, device=query.device).tril()
    if attn_mask is None:
        return None
    if attn_mask.dtype == torch.bool:
        zeros = torch.zeros(attn_mask.shape, dtype=query.dtype, device=query.device)
        return zeros.masked_fill(attn_mask.logical_not(), -math.inf)
    return attn_mask.to(query.dtype)


def _check_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None,
    dropout_p: float,
    is_causal: bool,
    scale: float | None,
) -> None:
    for name, t in (("query", query), ("key", key), ("value", value)):
        check_floating(name, t)
        if t.dim() < 2:
            raise OpArgumentError(
                f"{name} must have shape (..., length, features) (2-D or more), got {t.dim()}-D"
            )
    if not (query.dtype == key.dtype == value.dtype) and not _autocast.is_enabled(query.device.type):
        raise OpDtypeError(
            "Expected query, key, and value to have the same dtype, but got query.dtype: "
            f"{query.dtype}, key.dtype: {key.dtype} and value.dtype: {value.dtype} instead"
        )
    if key.shape[-1] != query.shape[-1]:
        raise OpArgumentError(
            f"key must have shape (..., S, E={query.shape[-1]}) (query's feature size), "
            f"got {tuple(key.shape)}"
        )
    if value.shape[-2] != key.shape[-2]:
        raise OpArgumentError(
            f"value must have shape (..., S={key.shape[-2]}, Ev) (key's length), got {tuple(value.shape)}"
        )
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)) or not 0.0 <= dropout_p <= 1.0:
        raise OpArgumentError(f"dropout probability has to be between 0 and 1, but got {dropout_p!r}")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))):
        raise TypeError(f"scale must be a float or None, got {type(scale).__name__} {scale!r}")
    if attn_mask is None:
        return
    if is_causal:
        raise OpArgumentError(
            "_scaled_dot_product_attention: Explicit attn_mask should not be set when is_causal=True"
        )
    if not isinstance(attn_mask, torch.Tensor):
        raise TypeError(f"attn_mask must be a torch.Tensor or None, got {type(attn_mask).__name__}")
    if attn_mask.dtype != torch.bool and not attn_mask.is_floating_point():
        raise OpDtypeError(
            "Expected attn_mask dtype to be bool or float or to match query dtype, but got attn_mask.dtype: "
            f"{attn_mask.dtype} and query.dtype: {query.dtype} instead"
        )


def _draw_keep(
    query: torch.Tensor, key: torch.Tensor, dropout_p: float, groups_k: int
) -> torch.Tensor | None:
    """The boolean dropout mask, ``Bernoulli(1 - p)`` in a fresh tensor of the probabilities' shape and the
    query's dtype (torch's draw; batched under ``vmap`` when query or key is); None for p = 0 or 1."""
    if dropout_p in (0.0, 1.0):
        return None
    # (..., L, 1) + (..., 1, S): a new tensor of P's broadcast shape, batched with the inputs under vmap
    template = query[..., :1] + expand_heads(key[..., :1], groups_k).mT.to(query.dtype)
    # drawn in the row-major order of P, whatever the layout of the query (torch's empty_like of P)
    keep = torch.empty_like(template, memory_format=torch.contiguous_format).bernoulli_(1.0 - dropout_p)
    return keep.bool()


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.scaled_dot_product_attention` (same parameters, order and
    defaults): ``softmax(scale Q Kᵀ + M) V``, with dropout on the probabilities.

    Args:
        query: ``(..., L, E)``, floating point.
        key: ``(..., S, E)``, the query's dtype; its batch dims broadcast with the query's.
        value: ``(..., S, Ev)``, the query's dtype.
        attn_mask: None, a boolean mask (True: the key takes part in the query's attention) or a float
            mask added to the scores (it may require grad), broadcastable to ``(..., L, S)``.
        dropout_p: probability of dropping each attention probability, in ``[0, 1]``; applied whenever it
            is positive (there is no ``training`` flag, as for torch: pass 0 in evaluation).
        is_causal: mask with ``tril(ones(L, S))`` (query i attends to keys 0..i); not with ``attn_mask``.
        scale: the factor of the scores; default ``1 / sqrt(E)``.
        enable_gqa: grouped-query attention: key and value may have fewer heads (dim -3) than the query,
            each repeated to the query's heads.

    Shape:
        - query and its gradient ``(..., L, E)``; key and its gradient ``(..., S, E)``; value and its
          gradient ``(..., S, Ev)``; a float mask's gradient has the mask's shape.
        - Output: ``(..., L, Ev)`` (the broadcast batch dims).

    Returns:
        The attention output. A row whose keys are all masked out gives 0 (as torch's kernels do).

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> q = k = v = torch.eye(2).view(1, 1, 2, 2)
        >>> MF.scaled_dot_product_attention(q, k, v, is_causal=True)
        tensor([[[[1.0000, 0.0000],
                  [0.3302, 0.6698]]]])
        >>> MF.scaled_dot_product_attention(q, k, v, attn_mask=torch.tensor([False, True])).squeeze()
        tensor([[0., 1.],
                [0., 1.]])
    """
    return attention_and_weights(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)[0]


def attention_and_weights(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    need_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`scaled_dot_product_attention`'s output and, with ``need_weights``, the attention weights it
    averaged the values with, ``P_drop = P * keep / (1 - p)`` (the probabilities after dropout, as
    :func:`torch.nn.functional.multi_head_attention_forward` returns them; differentiable), else None."""
    _check_attention(query, key, value, attn_mask, dropout_p, is_causal, scale)
    groups_k = _heads_groups("key", query, key) if enable_gqa else 1
    groups_v = _heads_groups("value", query, value) if enable_gqa else 1
    mask = _additive_mask(attn_mask, is_causal, query, key)
    if mask is not None:
        scores_shape = (
            *torch.broadcast_shapes(query.shape[:-2], key.shape[:-2]),
            query.shape[-2],
            key.shape[-2],
        )
        try:
            torch.broadcast_shapes(mask.shape, scores_shape)
        except RuntimeError:
            raise OpArgumentError(
                f"attn_mask must be broadcastable to the scores' shape {scores_shape} (..., L, S), "
                f"got {tuple(mask.shape)}"
            ) from None
    p = float(dropout_p)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    keep = _draw_keep(query, key, p, groups_k)
    function = _ATTENTION_FOR_COMPILE if torch.compiler.is_compiling() else AttentionFunction
    out, probs = _autocast.apply(
        function, "lower", query, key, value, mask, keep, p, scale, groups_k, groups_v
    )
    return out, (dropout_probs(probs, keep, p) if need_weights else None)
