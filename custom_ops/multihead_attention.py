"""Multi-head attention, as the CS231n assignment's Transformer builds it: project the query, key and value
with three affine layers, split the features into ``num_heads`` heads, run scaled dot-product attention in
each head, join the heads and project once more.

    q, k, v = query W_qᵀ + b_q,  key W_kᵀ + b_k,  value W_vᵀ + b_v       (packed: one (3E, E) weight)
    q, k, v -> (N, heads, length, E / heads)
    O_h     = softmax(q_h k_hᵀ / sqrt(E / heads) + M) v_h                 per head (custom_ops.attention)
    out     = concat_h(O_h) W_oᵀ + b_o

Every arithmetic step is a manual operator: the projections are :func:`custom_ops.linear.linear` and the
attention is :func:`custom_ops.attention.scaled_dot_product_attention` (whose backward is written out), so
the gradients are theirs; only reshapes, concatenations and the masks' bookkeeping are built-in tensor
calls. The function follows :func:`torch.nn.functional.multi_head_attention_forward` step by step, with
torch's own argument checks (the same ``AssertionError``/``RuntimeError`` messages), masks
(``key_padding_mask`` and ``attn_mask``, boolean or float, merged into one additive mask), ``bias_k`` /
``bias_v``, ``add_zero_attn``, ``static_k`` / ``static_v`` and unbatched inputs.

Attention weights (``need_weights=True``): the probabilities after dropout, as torch returns them, read from
the manual attention (its Function returns them beside the output), per head or averaged over the heads.
One difference: a query whose keys are all masked out gets weights and output 0 (the manual attention's
safe softmax, as torch's ``need_weights=False`` path gives) where torch's ``need_weights=True`` path gives
NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .attention import attention_and_weights
from .linear import linear


def _in_projection_packed(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The packed projection: one affine layer for self-attention, two for key = value, else three."""
    E = q.size(-1)
    if k is v and q is k:  # self-attention: one (3E, E) product
        proj = linear(q, w, b).unflatten(-1, (3, E))
        return proj[..., 0, :], proj[..., 1, :], proj[..., 2, :]
    w_q, w_k, w_v = w.chunk(3)
    b_q, b_k, b_v = (None, None, None) if b is None else b.chunk(3)
    if k is v:  # encoder-decoder attention: one (2E, E) product for key and value
        w_kv = torch.cat([w_k, w_v])
        b_kv = None if b is None else torch.cat([b_k, b_v])
        kv = linear(k, w_kv, b_kv).unflatten(-1, (2, E))
        return linear(q, w_q, b_q), kv[..., 0, :], kv[..., 1, :]
    return linear(q, w_q, b_q), linear(k, w_k, b_k), linear(v, w_v, b_v)


def _in_projection(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    w_q: torch.Tensor,
    w_k: torch.Tensor,
    w_v: torch.Tensor,
    b: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Separate projections (``kdim``/``vdim`` other than ``embed_dim``), with torch's shape checks."""
    Eq, Ek, Ev = q.size(-1), k.size(-1), v.size(-1)
    for name, w, shape in (("query", w_q, (Eq, Eq)), ("key", w_k, (Eq, Ek)), ("value", w_v, (Eq, Ev))):
        if w.shape != shape:
            raise AssertionError(f"expecting {name} weights shape of {shape}, but got {w.shape}")
    b_q, b_k, b_v = (None, None, None) if b is None else b.chunk(3)
    for name, bias in (("query", b_q), ("key", b_k), ("value", b_v)):
        if bias is not None and bias.shape != (Eq,):
            raise AssertionError(f"expecting {name} bias shape of {(Eq,)}, but got {bias.shape}")
    return linear(q, w_q, b_q), linear(k, w_k, b_k), linear(v, w_v, b_v)


def _static(name: str, static: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    if static.size(0) != heads:
        raise AssertionError(f"expecting {name}.size(0) of {heads}, but got {static.size(0)}")
    if static.size(2) != head_dim:
        raise AssertionError(f"expecting {name}.size(2) of {head_dim}, but got {static.size(2)}")
    return static


def multi_head_attention_forward(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    embed_dim_to_check: int,
    num_heads: int,
    in_proj_weight: torch.Tensor | None,
    in_proj_bias: torch.Tensor | None,
    bias_k: torch.Tensor | None,
    bias_v: torch.Tensor | None,
    add_zero_attn: bool,
    dropout_p: float,
    out_proj_weight: torch.Tensor,
    out_proj_bias: torch.Tensor | None,
    training: bool = True,
    key_padding_mask: torch.Tensor | None = None,
    need_weights: bool = True,
    attn_mask: torch.Tensor | None = None,
    use_separate_proj_weight: bool = False,
    q_proj_weight: torch.Tensor | None = None,
    k_proj_weight: torch.Tensor | None = None,
    v_proj_weight: torch.Tensor | None = None,
    static_k: torch.Tensor | None = None,
    static_v: torch.Tensor | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Manual twin of :func:`torch.nn.functional.multi_head_attention_forward` (same parameters, order,
    defaults and checks), built from the manual ``linear`` and ``scaled_dot_product_attention``.

    Args:
        query: ``(L, N, E)``, or ``(L, E)`` unbatched.
        key: ``(S, N, E_k)`` (``(S, E_k)``); ``E_k = E`` unless ``use_separate_proj_weight``.
        value: ``(S, N, E_v)`` (``(S, E_v)``).
        embed_dim_to_check: ``E``, checked against the query.
        num_heads: heads; ``E`` must divide by it.
        in_proj_weight, in_proj_bias: the packed ``(3E, E)`` projection and its ``(3E,)`` bias.
        bias_k, bias_v: ``(1, 1, E)`` key and value appended to every sequence, or None.
        add_zero_attn: append a zero key and value (after the projections).
        dropout_p: dropout on the attention probabilities while ``training``.
        out_proj_weight, out_proj_bias: the output projection ``(E, E)``, ``(E,)``.
        training: apply dropout.
        key_padding_mask: ``(N, S)`` (``(S,)``), boolean (True: ignore the key) or float (added).
        need_weights: also return the attention weights.
        attn_mask: ``(L, S)`` or ``(N * num_heads, L, S)``, boolean (True: not allowed) or float (added).
        use_separate_proj_weight: use ``q_proj_weight`` ``(E, E)``, ``k_proj_weight`` ``(E, E_k)`` and
            ``v_proj_weight`` ``(E, E_v)`` instead of ``in_proj_weight``.
        static_k, static_v: ``(N * num_heads, S, E / num_heads)`` keys and values used as they are.
        average_attn_weights: average the returned weights over the heads.
        is_causal: a hint that ``attn_mask`` is the causal mask (torch requires the mask with it).

    Shape:
        - Output: ``(L, N, E)`` (``(L, E)``); every tensor argument's gradient has its shape.
        - Weights: ``(N, L, S)`` averaged, ``(N, num_heads, L, S)`` per head (no ``N`` unbatched).

    Returns:
        ``(output, weights)``; weights are None unless ``need_weights``.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> x = torch.randn(3, 2, 4)  # (L, N, E)
        >>> w, b = torch.randn(12, 4), torch.zeros(12)
        >>> out, weights = MF.multi_head_attention_forward(
        ...     x, x, x, 4, 2, w, b, None, None, False, 0.0, torch.eye(4), None)
        >>> out.shape, weights.shape, bool(torch.allclose(weights.sum(-1), torch.ones(2, 3)))
        (torch.Size([3, 2, 4]), torch.Size([2, 3, 3]), True)
    """
    is_batched = F._mha_shape_check(query, key, value, key_padding_mask, attn_mask, num_heads)
    if not is_batched:  # run as a batch of one
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    tgt_len, bsz, embed_dim = query.shape
    key_padding_mask = F._canonical_mask(
        mask=key_padding_mask,
        mask_name="key_padding_mask",
        other_type=F._none_or_dtype(attn_mask),
        other_name="attn_mask",
        target_type=query.dtype,
    )
    if is_causal and attn_mask is None:
        raise RuntimeError(
            "Need attn_mask if specifying the is_causal hint. You may use the Transformer module method "
            "`generate_square_subsequent_mask` to create this mask."
        )
    if is_causal and key_padding_mask is None and not need_weights:
        attn_mask = None  # the attention builds the causal mask itself
    else:
        attn_mask = F._canonical_mask(
            mask=attn_mask,
            mask_name="attn_mask",
            other_type=None,
            other_name="",
            target_type=query.dtype,
            check_other=False,
        )
        if key_padding_mask is not None:
            is_causal = False  # the merged mask is no longer causal
    if embed_dim != embed_dim_to_check:
        raise AssertionError(
            f"was expecting embedding dimension of {embed_dim_to_check}, but got {embed_dim}"
        )
    head_dim = embed_dim // num_heads
    if head_dim * num_heads != embed_dim:
        raise AssertionError(f"embed_dim {embed_dim} not divisible by num_heads {num_heads}")
    if use_separate_proj_weight:
        if key.shape[:2] != value.shape[:2]:
            raise AssertionError(
                f"key's sequence and batch dims {key.shape[:2]} do not match value's {value.shape[:2]}"
            )
    elif key.shape != value.shape:
        raise AssertionError(f"key shape {key.shape} does not match value shape {value.shape}")

    # the projections
    if not use_separate_proj_weight:
        if in_proj_weight is None:
            raise AssertionError("use_separate_proj_weight is False but in_proj_weight is None")
        q, k, v = _in_projection_packed(query, key, value, in_proj_weight, in_proj_bias)
    else:
        for name, w in (("q", q_proj_weight), ("k", k_proj_weight), ("v", v_proj_weight)):
            if w is None:
                raise AssertionError(f"use_separate_proj_weight is True but {name}_proj_weight is None")
        q, k, v = _in_projection(query, key, value, q_proj_weight, k_proj_weight, v_proj_weight, in_proj_bias)

    # the attention mask as (1 or N * heads, L, S)
    if attn_mask is not None:
        if attn_mask.dim() == 2:
            if attn_mask.shape != (tgt_len, key.shape[0]):
                raise RuntimeError(
                    f"The shape of the 2D attn_mask is {attn_mask.shape}, but should be "
                    f"{(tgt_len, key.shape[0])}."
                )
            attn_mask = attn_mask.unsqueeze(0)
        elif attn_mask.shape != (bsz * num_heads, tgt_len, key.shape[0]):
            raise RuntimeError(
                f"The shape of the 3D attn_mask is {attn_mask.shape}, but should be "
                f"{(bsz * num_heads, tgt_len, key.shape[0])}."
            )

    # bias_k, bias_v: one more key and value for every sequence
    if bias_k is not None and bias_v is not None:
        if static_k is not None:
            raise AssertionError("bias cannot be added to static key.")
        if static_v is not None:
            raise AssertionError("bias cannot be added to static value.")
        k = torch.cat([k, bias_k.repeat(1, bsz, 1)])
        v = torch.cat([v, bias_v.repeat(1, bsz, 1)])
        if attn_mask is not None:
            attn_mask = F.pad(attn_mask, (0, 1))
        if key_padding_mask is not None:
            key_padding_mask = F.pad(key_padding_mask, (0, 1))
    elif bias_k is not None:
        raise AssertionError("bias_k is set but bias_v is None")
    elif bias_v is not None:
        raise AssertionError("bias_v is set but bias_k is None")

    # the heads: (N * heads, length, head_dim)
    q = q.reshape(tgt_len, bsz * num_heads, head_dim).transpose(0, 1)
    if static_k is None:
        k = k.reshape(k.shape[0], bsz * num_heads, head_dim).transpose(0, 1)
    else:
        k = _static("static_k", static_k, bsz * num_heads, head_dim)
    if static_v is None:
        v = v.reshape(v.shape[0], bsz * num_heads, head_dim).transpose(0, 1)
    else:
        v = _static("static_v", static_v, bsz * num_heads, head_dim)
    if add_zero_attn:
        zeros = torch.zeros((bsz * num_heads, 1, head_dim), dtype=k.dtype, device=k.device)
        k = torch.cat([k, zeros], dim=1)
        v = torch.cat([v, zeros.to(v.dtype)], dim=1)
        if attn_mask is not None:
            attn_mask = F.pad(attn_mask, (0, 1))
        if key_padding_mask is not None:
            key_padding_mask = F.pad(key_padding_mask, (0, 1))
    src_len = k.size(1)

    # key padding merged into the attention mask
    if key_padding_mask is not None:
        F._check_key_padding_mask(key_padding_mask, src_len, bsz)
        key_padding_mask = (
            key_padding_mask.view(bsz, 1, 1, src_len)
            .expand(-1, num_heads, -1, -1)
            .reshape(bsz * num_heads, 1, src_len)
        )
        attn_mask = key_padding_mask if attn_mask is None else attn_mask + key_padding_mask
    if not training:
        dropout_p = 0.0
    if is_causal and attn_mask is None and need_weights:
        raise AssertionError("FIXME: is_causal not implemented for need_weights")

    # the attention, per head: (N, heads, L, head_dim)
    if attn_mask is not None:
        attn_mask = (
            attn_mask.unsqueeze(0) if attn_mask.size(0) == 1 else attn_mask.view(bsz, num_heads, -1, src_len)
        )
    out, weights = attention_and_weights(
        q.reshape(bsz, num_heads, tgt_len, head_dim),
        k.reshape(bsz, num_heads, src_len, head_dim),
        v.reshape(bsz, num_heads, src_len, head_dim),
        attn_mask,
        dropout_p,
        is_causal and attn_mask is None,
        need_weights=need_weights,
    )
    out = out.permute(2, 0, 1, 3).reshape(bsz * tgt_len, embed_dim)
    out = linear(out, out_proj_weight, out_proj_bias)
    out = out.view(tgt_len, bsz, out.size(1))
    if weights is None:
        return (out if is_batched else out.squeeze(1)), None
    if average_attn_weights:
        weights = weights.mean(dim=1)
    if not is_batched:
        return out.squeeze(1), weights.squeeze(0)
    return out, weights
