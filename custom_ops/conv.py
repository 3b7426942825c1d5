"""2-D convolution (CS231n ``conv_forward`` / ``conv_backward``), grouped and depthwise included.

Forward:  out[n, o, y, z] = b[o] + sum_{c, i, j} w[o, c, i, j] * xpad[n, g(o)*Cg + c, y*s + i*d, z*s + j*d]
          (s stride, d dilation, Cg = C_in / groups input channels per group, g(o) the group of o).

Two backward algorithms, selected by ``algorithm`` (the keyword ``strategy`` is its deprecated old name):

``"im2col"`` — the readable reference, the CS231n ``fast_layers`` idea. The forward is a matmul of the
weight with the columns of input patches (``unfold``); the backward is the affine backward on those
columns, then ``fold`` (col2im) scatters the column gradients back to the image:
          cols = unfold(x)                    (N, G, Cg*kh*kw, L)      L = H_out * W_out
          out  = W @ cols + b                 W: (G, O/G, Cg*kh*kw)
          dW   = sum_n dout @ cols^T,  dcols = W^T @ dout,  dx = fold(dcols),  db = sum dout
The columns are recomputed in backward rather than saved (they are kh*kw times larger than x).

``"fast"`` (default) — both gradients are themselves convolutions, run by the fast forward kernels:
          dx = conv_transpose2d(dout, w)      (output_padding restores rows the forward never reached)
          dw = correlation of x with dout over the batch: a convolution in which the batch plays the
               channel role, with stride and dilation swapped; or, for 1x1 kernels and few input taps
               (C_in*kh*kw <= 160, e.g. an RGB first layer), where that convolution is slow, the im2col
               product dw = sum_n dout_n @ unfold(x)_n^T, with the columns made only for this, a few
               samples at a time (cache-sized chunks).

Both backwards are differentiable functions of the saved x and w, so double backward works.
Saved for backward: x and w (what the built-in saves).

``padding="same"`` with an even dilated kernel extent needs one more row (column) of zeros on one side:
as torch, the extra goes to the bottom (right). The Functions then zero-pad x by that extra inside the
forward (``F.pad``, a forward op), convolve with the symmetric part, and crop dx back to x's size; dw is
taken on the padded x, re-padded in backward rather than saved.
An empty batch (N = 0) gives an empty output, an empty dx and a zero dw, as torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from . import _autocast
from ._checks import (
    OpArgumentError,
    check_floating,
    check_ndim,
    check_same_dtype,
    check_shape,
    pair,
    renamed_keyword,
)
from ._layout import memory_format

Pair = tuple[int, int]
ConvAlgorithm = Literal["fast", "im2col"]


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length along one spatial dim: ``floor((size + 2p - d(k-1) - 1) / s) + 1``."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv2d_input_grad(
    dout, weight, input_hw: Pair, stride: Pair, padding: Pair, dilation: Pair, groups: int
) -> torch.Tensor:
    """dx as the transposed convolution of ``dout`` ``(N, O, Ho, Wo)`` with ``weight``."""
    output_padding = tuple(
        size - ((o - 1) * s - 2 * p + d * (k - 1) + 1)
        for size, o, s, p, d, k in zip(input_hw, dout.shape[2:], stride, padding, dilation, weight.shape[2:])
    )
    return torch.conv_transpose2d(dout, weight, None, stride, padding, output_padding, groups, dilation)


# Below this many input taps per output channel (C_in * kh * kw), and for 1x1 kernels, the weight gradient
# as an im2col matmul beats the batch-as-channels correlation (measured on CPU: 3->32 3x3, 3->64 7x7, 1x1).
_UNFOLD_MAX_TAPS = 160
# Columns per batch chunk in that matmul: cache-sized chunks beat one batch-wide unfold on large images.
_UNFOLD_CHUNK_BYTES = 2 << 20


def conv2d_weight_grad(
    x, dout, weight_shape: Sequence[int], stride: Pair, padding: Pair, dilation: Pair, groups: int
) -> torch.Tensor:
    """dw[o, c, i, j] = sum_{n, y, z} dout[n, o, y, z] * xpad[n, c, y*s + i*d, z*s + j*d].

    That is a convolution of x (batch as channels) with dout (batch as input channels), stride d and
    dilation s, one group per conv group; it can cover more than (kh, kw), the extra taps are cropped.
    """
    n, _, h, w = x.shape
    o, cg, kh, kw = weight_shape
    if n == 0:  # an empty batch: no term in the sum
        return x.new_zeros(weight_shape)
    if groups == 1 and (kh * kw == 1 or cg * kh * kw <= _UNFOLD_MAX_TAPS):
        # Columns for a few samples at a time (about _UNFOLD_CHUNK_BYTES each), so they stay in cache.
        taps = cg * kh * kw * dout.shape[2] * dout.shape[3]
        chunk = max(1, _UNFOLD_CHUNK_BYTES // (taps * x.element_size()))
        dw = None
        for xs, ds in zip(x.split(chunk), dout.split(chunk)):
            cols = F.unfold(xs, (kh, kw), dilation, padding, stride)  # (chunk, C*kh*kw, L)
            part = torch.matmul(ds.reshape(ds.shape[0], o, -1), cols.transpose(1, 2)).sum(0)
            dw = part if dw is None else dw.add_(part)  # (O, C*kh*kw)
        return dw.view(weight_shape)
    if groups == 1:
        xg, dg = x.transpose(0, 1), dout.transpose(0, 1)
    else:
        og = o // groups
        xg = x.reshape(n, groups, cg, h, w).permute(2, 1, 0, 3, 4).reshape(cg, groups * n, h, w)
        dg = dout.reshape(n, groups, og, *dout.shape[2:]).permute(1, 2, 0, 3, 4)
        dg = dg.reshape(o, n, *dout.shape[2:])
    dw = torch.conv2d(xg, dg, None, dilation, padding, stride, groups)  # (Cg, O, >=kh, >=kw)
    return dw[:, :, :kh, :kw].transpose(0, 1)


def _pad_extra(x: torch.Tensor, extra: Pair) -> torch.Tensor:
    """x with ``extra = (rows, cols)`` zeros added at the bottom and right (asymmetric "same" padding)."""
    return x if extra == (0, 0) else F.pad(x, (0, extra[1], 0, extra[0]))


def _crop(dx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The gradient of :func:`_pad_extra`: the top-left block of ``dx`` of x's size, in x's layout."""
    h, w = x.shape[2:]
    if dx.shape[2:] == x.shape[2:]:
        return dx
    return dx[:, :, :h, :w].contiguous(memory_format=memory_format(x))


def conv2d_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    groups: int,
    extra: Pair,
) -> torch.Tensor:
    """The convolution of x ``(N, C, H, W)``, padded by ``extra`` zero rows/columns at the bottom/right."""
    return torch.conv2d(_pad_extra(x, extra), weight, bias, stride, padding, dilation, groups)


def conv2d_backward(
    dout: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    conf: tuple[Pair, Pair, Pair, int, Pair],
    need_dx: bool,
    need_dw: bool,
    need_db: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """``(dx, dw, db)`` of :func:`conv2d_forward` (the ``"fast"`` algorithm), None where not needed;
    ``conf`` is ``(stride, padding, dilation, groups, extra)``."""
    stride, padding, dilation, groups, extra = conf
    xp = _pad_extra(x, extra)
    dx = dw = db = None
    if need_dx:
        dx = conv2d_input_grad(dout, weight, xp.shape[2:], stride, padding, dilation, groups)
        dx = _crop(dx, x)
    if need_dw:
        dw = conv2d_weight_grad(xp, dout, weight.shape, stride, padding, dilation, groups)
    if need_db:
        db = dout.sum((0, 2, 3))
    return dx, dw, db


class Conv2dFunction(torch.autograd.Function):
    """``"fast"`` algorithm. x ``(N, C, H, W)``, weight ``(O, C/groups, kh, kw)``, bias ``(O,)`` or None
    -> ``(N, O, Ho, Wo)``; ``extra``: zero rows/columns added at the bottom/right before the convolution."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride: Pair, padding: Pair, dilation: Pair, groups: int, extra: Pair):
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation, groups, extra)
        ctx.has_bias = bias is not None
        return conv2d_forward(x, weight, bias, stride, padding, dilation, groups, extra)

    @staticmethod
    def backward(ctx, dout):
        x, weight = ctx.saved_tensors
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        dx, dw, db = conv2d_backward(dout, x, weight, ctx.conf, need_dx, need_dw, ctx.has_bias and need_db)
        return dx, dw, db, None, None, None, None, None


class Conv2dIm2colFunction(torch.autograd.Function):
    """``"im2col"`` algorithm; same shapes as :class:`Conv2dFunction`."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride: Pair, padding: Pair, dilation: Pair, groups: int, extra: Pair):
        input_format = memory_format(x)
        x_orig, x = x, _pad_extra(x, extra)
        n, _, h, w = x.shape
        o, cg, kh, kw = weight.shape
        ho = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
        wo = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
        cols = F.unfold(x, (kh, kw), dilation, padding, stride).view(n, groups, cg * kh * kw, ho * wo)
        out = torch.matmul(weight.view(groups, o // groups, cg * kh * kw), cols).view(n, o, ho, wo)
        if bias is not None:
            out = out + bias.view(1, o, 1, 1)
        out = out.contiguous(memory_format=input_format)  # a channels_last input stays channels_last
        ctx.save_for_backward(x_orig, weight)
        ctx.conf = (stride, padding, dilation, groups, extra)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, dout):
        x_orig, weight = ctx.saved_tensors
        stride, padding, dilation, groups, extra = ctx.conf
        x = _pad_extra(x_orig, extra)
        n, c, h, w = x.shape
        o, cg, kh, kw = weight.shape
        d = dout.reshape(n, groups, o // groups, dout.shape[2] * dout.shape[3])  # (N, G, O/G, L)
        w_mat = weight.view(groups, o // groups, cg * kh * kw)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dcols = torch.matmul(w_mat.transpose(1, 2), d).view(n, c * kh * kw, d.shape[3])
            dx = _crop(F.fold(dcols, (h, w), (kh, kw), dilation, padding, stride), x_orig)
            dx = dx.contiguous(memory_format=memory_format(x_orig))
        if ctx.needs_input_grad[1]:
            cols = F.unfold(x, (kh, kw), dilation, padding, stride).view(n, groups, cg * kh * kw, d.shape[3])
            dw = torch.einsum("ngol,ngkl->gok", d, cols).reshape(weight.shape)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dout.sum((0, 2, 3))
        return dx, dw, db, None, None, None, None, None


_FUNCTIONS: dict[ConvAlgorithm, type[torch.autograd.Function]] = {
    "fast": Conv2dFunction,
    "im2col": Conv2dIm2colFunction,
}
CONV_ALGORITHMS: tuple[ConvAlgorithm, ...] = tuple(_FUNCTIONS)
"""The backward algorithms, the default first."""


def check_algorithm(algorithm: object) -> ConvAlgorithm:
    """``algorithm`` if it is one of :data:`CONV_ALGORITHMS`, else an :class:`OpArgumentError` (a
    ``ValueError``). The one check of the algorithm: the functional op, the ``Conv2d`` module and
    ``to_manual`` call it."""
    for known in CONV_ALGORITHMS:
        if algorithm == known:
            return known
    raise OpArgumentError(f"algorithm must be {' or '.join(map(repr, CONV_ALGORITHMS))}, got {algorithm!r}")


def resolve_algorithm(where: str, algorithm: ConvAlgorithm, strategy: ConvAlgorithm | None) -> ConvAlgorithm:
    """The checked ``algorithm``, or the deprecated ``strategy`` (its old name, kept for one release: a
    ``FutureWarning`` pointing at the caller of ``where``; a ``TypeError`` with a non-default ``algorithm``
    too)."""
    return check_algorithm(
        renamed_keyword(where, "strategy", strategy, "algorithm", algorithm, "fast", stacklevel=4)
    )


def _resolve_padding(
    padding: str | int | Sequence[int], kernel: Pair, stride: Pair, dilation: Pair
) -> tuple[Pair, Pair]:
    """``(symmetric padding, extra bottom/right padding)``; the extra is non-zero only for ``"same"`` with an
    even dilated kernel extent ``d (k - 1)`` (torch puts the odd row/column at the bottom/right)."""
    if not isinstance(padding, str):
        pad = pair("padding", padding)
        if min(pad) < 0:
            raise OpArgumentError(f"padding must be non-negative, got {padding!r}")
        return pad, (0, 0)
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding != "same":
        raise OpArgumentError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    if stride != (1, 1):
        raise OpArgumentError(f"padding='same' needs stride=1, got stride={stride}")
    totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
    return (totals[0] // 2, totals[1] // 2), (totals[0] % 2, totals[1] % 2)


def check_conv2d_tensors(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """The tensor checks of :func:`conv2d`: floating, one dtype, input 3-D or 4-D, weight 4-D."""
    check_floating("input", input)
    check_ndim("input", input, (3, 4), "(N, C_in, H, W) or (C_in, H, W)")
    check_same_dtype(input, weight=weight, bias=bias)
    check_ndim("weight", weight, (4,), "(C_out, C_in / groups, kh, kw)")


def conv2d_geometry(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int | Sequence[int],
    padding: str | int | Sequence[int],
    dilation: int | Sequence[int],
    groups: int,
) -> tuple[Pair, Pair, Pair, Pair]:
    """The hyper-parameter checks of :func:`conv2d` against x ``(N, C_in, H, W)`` and the weight (an
    :class:`OpArgumentError` naming the bad one); returns ``(stride, padding, dilation, extra)`` as pairs,
    ``extra`` the bottom/right zero padding of an asymmetric ``"same"``."""
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise OpArgumentError(f"groups must be a positive int, got {groups!r}")
    out_channels, group_channels, kh, kw = weight.shape
    if out_channels % groups:  # checked first, as torch: then the channel check below blames the channels
        raise OpArgumentError(
            f"groups={groups} must divide the weight's C_out={out_channels} (weight {tuple(weight.shape)})"
        )
    if x.shape[1] != group_channels * groups:
        raise OpArgumentError(
            f"input has {x.shape[1]} channels but weight {tuple(weight.shape)} with groups={groups} "
            f"expects C_in = {group_channels} * {groups} = {group_channels * groups}"
        )
    check_shape("bias", bias, (out_channels,), "C_out")
    stride_, dilation_ = pair("stride", stride), pair("dilation", dilation)
    if min(stride_) < 1:
        raise OpArgumentError(f"stride must be positive, got {stride!r}")
    if min(dilation_) < 1:
        raise OpArgumentError(f"dilation must be positive, got {dilation!r}")
    padding_, extra = _resolve_padding(padding, (kh, kw), stride_, dilation_)
    for dim, size, k, p, d in zip("HW", x.shape[2:], (kh, kw), padding_, dilation_):
        if d * (k - 1) + 1 > size + 2 * p:
            raise OpArgumentError(
                f"kernel extent {d * (k - 1) + 1} along {dim} (kernel {k}, dilation {d}) is larger than "
                f"the padded input ({size} + 2*{p} = {size + 2 * p})"
            )
    return stride_, padding_, dilation_, extra


def conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    *,
    algorithm: ConvAlgorithm = "fast",
    strategy: ConvAlgorithm | None = None,
) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.conv2d` (same parameters, order and defaults).

    Args:
        input: floating tensor ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``.
        weight: ``(C_out, C_in / groups, kh, kw)``.
        bias: ``(C_out,)`` or None.
        stride: an int or ``(s_h, s_w)``.
        padding: an int, ``(p_h, p_w)``, ``"valid"`` (none) or ``"same"`` (output size = input size, needs
            stride 1; an odd total padding puts the extra row/column at the bottom/right, as torch).
        dilation: an int or ``(d_h, d_w)``.
        groups: input and output channels split into this many independent groups (``C_in`` for depthwise).
        algorithm: keyword-only, the backward (see the module docstring): ``"fast"`` (transposed convolution
            + correlation) or ``"im2col"`` (unfold + matmul, fold).
        strategy: deprecated old name of ``algorithm`` (one release; a ``FutureWarning``).

    Shape:
        - Input: ``(N, C_in, H, W)`` or ``(C_in, H, W)``; N may be 0.
        - Output: ``(N, C_out, H_out, W_out)`` or ``(C_out, H_out, W_out)``, with
          ``H_out = floor((H + 2 p_h - d_h (kh - 1) - 1) / s_h) + 1``.
        - Gradients: ``dx`` the shape of ``input``, ``dw`` ``(C_out, C_in / groups, kh, kw)``, ``db``
          ``(C_out,)``.

    Returns:
        The convolution (cross-correlation, as torch) of ``input`` with ``weight``, plus ``bias``.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> MF.conv2d(torch.randn(8, 3, 32, 32), torch.randn(16, 3, 3, 3), stride=2, padding=1).shape
        torch.Size([8, 16, 16, 16])
        >>> MF.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2))  # window sums
        tensor([[[[4., 4.],
                  [4., 4.]]]])
    """
    check_conv2d_tensors(input, weight, bias)
    function = _FUNCTIONS[resolve_algorithm("conv2d()", algorithm, strategy)]
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    stride_, padding_, dilation_, extra = conv2d_geometry(x, weight, bias, stride, padding, dilation, groups)
    out = _autocast.apply(function, "lower", x, weight, bias, stride_, padding_, dilation_, groups, extra)
    return out.squeeze(0) if unbatched else out
