"""2-D convolution (CS231n ``conv_forward`` / ``conv_backward``), grouped and depthwise included.

The reference (the course's im2col, what ``algorithm="im2col"`` and :func:`custom_ops.reference_path` run):
each output pixel is a dot product of the weight with the input window under it, so with the windows
copied out as columns the convolution is one matrix product per group:

    cols  = im2col(xpad)                      (N, G, Cg*kh*kw, L)   one column per output pixel, L = Ho*Wo
    out   = W @ cols + b                      W: (G, O/G, Cg*kh*kw)
    db    = sum_{n, y, z} dout
    dW    = sum_n dout @ cols^T
    dcols = W^T @ dout
    dx    = col2im(dcols)                     each column's entries added back where its window read them
    ẏ     = conv(ẋ, W) + conv(x, Ẇ) + ḃ       forward mode: the convolution is bilinear in (x, W)

(s stride, d dilation, Cg = C_in / groups input channels per group; a window at output (y, z) reads
xpad[n, c, y*s + i*d, z*s + j*d].) The columns are recomputed in backward rather than saved (they are
kh*kw times larger than x). Saved for backward: x and w (what the built-in saves).

``algorithm="fast"`` (the default) computes the same sums with the fast kernels: the forward is
``torch.conv2d``, and each gradient is a forward convolution by one of a few routes, the fastest timed on
the first call of each signature (:mod:`custom_ops.conv_routes`; :data:`select_fastest`). dw comes in the
weight's memory format, which autograd keeps as ``.grad`` without a copy.

Every backward is a differentiable function of the saved x and w, so double backward works, and so does
forward-over-reverse (the jvp of a gradient).

``padding="same"`` with an even dilated kernel extent needs one more row (column) of zeros on one side:
as torch, the extra goes to the bottom (right). The Functions then zero-pad x by that extra inside the
forward (``F.pad``, a forward op), convolve with the symmetric part, and crop dx back to x's size; dw is
taken on the padded x, re-padded in backward rather than saved.
An empty batch (N = 0) gives an empty output, an empty dx and a zero dw, as torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from . import _autocast, _function, _reference
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
from .conv_routes import conv2d_input_grad, conv2d_weight_grad

Pair = tuple[int, int]
Conf = tuple[Pair, Pair, Pair, int, Pair]  # stride, padding, dilation, groups, extra
Grads3 = tuple["torch.Tensor | None", "torch.Tensor | None", "torch.Tensor | None"]  # (dx, dw, db)
ConvAlgorithm = Literal["fast", "im2col"]


# ========================================================================================= the reference
def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length along one spatial dim: ``floor((size + 2p - d(k-1) - 1) / s) + 1``."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _pad_extra(x: torch.Tensor, extra: Pair) -> torch.Tensor:
    """x with ``extra = (rows, cols)`` zeros added at the bottom and right (asymmetric "same" padding)."""
    return x if extra == (0, 0) else F.pad(x, (0, extra[1], 0, extra[0]))


def _crop(dx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The gradient of :func:`_pad_extra`: the top-left block of ``dx`` of x's size, in x's layout."""
    h, w = x.shape[2:]
    if dx.shape[2:] == x.shape[2:]:
        return dx
    return dx[:, :, :h, :w].contiguous(memory_format=memory_format(x))


def im2col(x: torch.Tensor, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, groups: int):
    """The columns of x ``(N, C, H, W)``: ``(N, G, Cg*kh*kw, L)``, column l of group g the window of
    output pixel l over the group's channels (``F.unfold``, zero padding included)."""
    cols = F.unfold(x, kernel, dilation, padding, stride)  # (N, C*kh*kw, L)
    return cols.reshape(x.shape[0], groups, cols.shape[1] // groups, cols.shape[2])


def conv2d_reference(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, conf: Conf
) -> torch.Tensor:
    """The convolution of x ``(N, C, H, W)`` by im2col: ``out = W @ cols + b``; ``conf`` is
    ``(stride, padding, dilation, groups, extra)`` (``extra``: the bottom/right zeros of an asymmetric
    ``"same"``).

    Examples::

        >>> import torch, torch.nn.functional as F
        >>> from custom_ops.conv import conv2d_reference
        >>> x, w, b = torch.randn(2, 3, 6, 6), torch.randn(4, 3, 3, 3), torch.randn(4)
        >>> out = conv2d_reference(x, w, b, ((1, 1), (1, 1), (1, 1), 1, (0, 0)))
        >>> torch.allclose(out, F.conv2d(x, w, b, padding=1), atol=1e-5)
        True
    """
    stride, padding, dilation, groups, extra = conf
    xpad = _pad_extra(x, extra)
    n, _, h, w = xpad.shape
    o, cg, kh, kw = weight.shape
    ho = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
    wo = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
    cols = im2col(xpad, (kh, kw), stride, padding, dilation, groups)  # (N, G, Cg*kh*kw, L)
    w_mat = weight.reshape(groups, o // groups, cg * kh * kw)  # (G, O/G, Cg*kh*kw)
    out = torch.matmul(w_mat, cols).reshape(n, o, ho, wo)  # W @ cols
    if bias is not None:
        out = out + bias.view(1, o, 1, 1)
    return out.contiguous(memory_format=memory_format(x))  # a channels_last input stays channels_last


def conv2d_reference_backward(
    dout: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, conf: Conf, need: tuple[bool, bool, bool]
) -> Grads3:
    """``(dx, dw, db)`` of :func:`conv2d_reference`, None where ``need`` (for dx, dw, db) is false."""
    stride, padding, dilation, groups, extra = conf
    xpad = _pad_extra(x, extra)
    n, c, h, w = xpad.shape
    o, cg, kh, kw = weight.shape
    length = dout.shape[2] * dout.shape[3]
    d = dout.reshape(n, groups, o // groups, length)  # (N, G, O/G, L)
    w_mat = weight.reshape(groups, o // groups, cg * kh * kw)  # (G, O/G, Cg*kh*kw)
    dx = dw = db = None
    if need[0]:
        dcols = torch.matmul(w_mat.transpose(1, 2), d)  # W^T @ dout: (N, G, Cg*kh*kw, L)
        dxpad = F.fold(dcols.reshape(n, c * kh * kw, length), (h, w), (kh, kw), dilation, padding, stride)
        dx = _crop(dxpad, x).contiguous(memory_format=memory_format(x))
    if need[1]:
        cols = im2col(xpad, (kh, kw), stride, padding, dilation, groups)  # recomputed, not saved
        dw = torch.matmul(d, cols.transpose(2, 3)).sum(0).reshape(weight.shape)  # sum_n dout @ cols^T
    if need[2]:
        db = dout.sum((0, 2, 3))
    return dx, dw, db


def _conv_jvp(
    conv: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    weight: torch.Tensor,
    tangents: tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None],
    out_shape: Sequence[int],
) -> torch.Tensor:
    """``ẏ = conv(ẋ, W) + conv(x, Ẇ) + ḃ`` for the tangents ``(ẋ, Ẇ, ḃ)`` (None: zero) and ``conv(x, w)``
    the convolution without bias."""
    x_t, w_t, b_t = tangents
    terms = []
    if x_t is not None:
        terms.append(conv(x_t, weight))
    if w_t is not None:
        terms.append(conv(x, w_t))
    if b_t is not None:
        terms.append(b_t.view(1, -1, 1, 1).expand(out_shape).contiguous())
    return sum(terms[1:], terms[0])


def conv2d_reference_jvp(
    x: torch.Tensor,
    weight: torch.Tensor,
    tangents: tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None],
    conf: Conf,
    out_shape: Sequence[int],
) -> torch.Tensor:
    """The tangent ``ẏ = conv(ẋ, W) + conv(x, Ẇ) + ḃ`` of :func:`conv2d_reference` for the tangents
    ``(ẋ, Ẇ, ḃ)`` of ``(x, weight, bias)`` (None: zero), each convolution by im2col."""
    return _conv_jvp(lambda a, b: conv2d_reference(a, b, None, conf), x, weight, tangents, out_shape)


# ============================================================================ the default: fast kernels
select_fastest = True
"""Time the gradient routes (:mod:`custom_ops.conv_routes`) on the first call of each signature and keep
the fastest; off, each gradient's default route runs: the transposed convolution for dx, the correlation
for dw (what the built-in's backward computes, so a FLOP counter counts the same work). The defaults also
run with deterministic algorithms on (``torch.use_deterministic_algorithms``): the same sums in every run,
and under ``torch.compile``, a dispatch mode or a ``torch.func`` transform."""


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
    """The convolution of x ``(N, C, H, W)``, padded by ``extra`` zero rows/columns at the bottom/right:
    ``torch.conv2d``, or :func:`conv2d_reference` on the reference path."""
    if _reference.is_active():
        return conv2d_reference(x, weight, bias, (stride, padding, dilation, groups, extra))
    return torch.conv2d(_pad_extra(x, extra), weight, bias, stride, padding, dilation, groups)


def conv2d_backward(
    dout: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    conf: Conf,
    need_dx: bool,
    need_dw: bool,
    need_db: bool,
) -> Grads3:
    """``(dx, dw, db)`` of :func:`conv2d_forward` (the ``"fast"`` algorithm), None where not needed;
    ``conf`` is ``(stride, padding, dilation, groups, extra)``. The timed routes, or
    :func:`conv2d_reference_backward` on the reference path."""
    if _reference.is_active():
        return conv2d_reference_backward(dout, x, weight, conf, (need_dx, need_dw, need_db))
    stride, padding, dilation, groups, extra = conf
    xp = _pad_extra(x, extra)
    dx = dw = db = None
    if need_dx:
        dx = conv2d_input_grad(dout, weight, xp.shape[2:], stride, padding, dilation, groups, select_fastest)
        dx = _crop(dx, x)
    if need_dw:  # db comes with dw, from the same product
        dw, db = conv2d_weight_grad(
            xp,
            dout,
            weight.shape,
            stride,
            padding,
            dilation,
            groups,
            need_db,
            memory_format(weight),
            select_fastest,
        )
    elif need_db:
        db = dout.sum((0, 2, 3))
    return dx, dw, db


def conv2d_jvp(
    x: torch.Tensor,
    weight: torch.Tensor,
    tangents: tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None],
    conf: Conf,
    out_shape: Sequence[int],
) -> torch.Tensor:
    """The tangent ``ẏ = conv(ẋ, W) + conv(x, Ẇ) + ḃ`` of :func:`conv2d_forward` for the tangents
    ``(ẋ, Ẇ, ḃ)`` of ``(x, weight, bias)`` (None: zero)."""
    if _reference.is_active():
        return conv2d_reference_jvp(x, weight, tangents, conf, out_shape)
    return _conv_jvp(lambda a, b: conv2d_forward(a, b, None, *conf), x, weight, tangents, out_shape)


@_function.fast_apply
class Conv2dFunction(torch.autograd.Function):
    """``"fast"`` algorithm. x ``(N, C, H, W)``, weight ``(O, C/groups, kh, kw)``, bias ``(O,)`` or None
    -> ``(N, O, Ho, Wo)``; ``extra``: zero rows/columns added at the bottom/right before the convolution."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, bias, stride: Pair, padding: Pair, dilation: Pair, groups: int, extra: Pair):
        return conv2d_forward(x, weight, bias, stride, padding, dilation, groups, extra)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, *conf = inputs
        ctx.save_for_backward(x, weight)
        ctx.save_for_forward(x, weight)
        ctx.conf = tuple(conf)
        ctx.has_bias = bias is not None
        ctx.out_shape = output.shape

    @staticmethod
    def backward(ctx, dout):
        x, weight = ctx.saved_tensors
        need_dx, need_dw, need_db = ctx.needs_input_grad[:3]
        dx, dw, db = conv2d_backward(dout, x, weight, ctx.conf, need_dx, need_dw, ctx.has_bias and need_db)
        return dx, dw, db, None, None, None, None, None

    @staticmethod
    def jvp(ctx, x_t, w_t, b_t, *_):
        """``ẏ = conv(ẋ, W) + conv(x, Ẇ) + ḃ``."""
        x, weight = ctx.saved_tensors
        return conv2d_jvp(x, weight, (x_t, w_t, b_t), ctx.conf, ctx.out_shape)


@_function.fast_apply
class Conv2dIm2colFunction(torch.autograd.Function):
    """``"im2col"`` algorithm, the reference formulas; same shapes as :class:`Conv2dFunction`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weight, bias, stride: Pair, padding: Pair, dilation: Pair, groups: int, extra: Pair):
        return conv2d_reference(x, weight, bias, (stride, padding, dilation, groups, extra))

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias, *conf = inputs
        ctx.save_for_backward(x, weight)
        ctx.save_for_forward(x, weight)
        ctx.conf = tuple(conf)
        ctx.has_bias = bias is not None
        ctx.out_shape = output.shape

    @staticmethod
    def backward(ctx, dout):
        x, weight = ctx.saved_tensors
        need = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2])
        dx, dw, db = conv2d_reference_backward(dout, x, weight, ctx.conf, need)
        return dx, dw, db, None, None, None, None, None

    @staticmethod
    def jvp(ctx, x_t, w_t, b_t, *_):
        """``ẏ = conv(ẋ, W) + conv(x, Ẇ) + ḃ``, each convolution by im2col."""
        x, weight = ctx.saved_tensors
        return conv2d_reference_jvp(x, weight, (x_t, w_t, b_t), ctx.conf, ctx.out_shape)


_FUNCTIONS: dict[ConvAlgorithm, type[torch.autograd.Function]] = {
    "fast": Conv2dFunction,
    "im2col": Conv2dIm2colFunction,
}
# What torch.compile traces: the Functions without jvp (custom_ops._function).
_TRACED = {name: _function.without_jvp(function) for name, function in _FUNCTIONS.items()}
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
    functions = _TRACED if torch.compiler.is_compiling() else _FUNCTIONS  # see custom_ops._setup_context
    function = functions[resolve_algorithm("conv2d()", algorithm, strategy)]
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    stride_, padding_, dilation_, extra = conv2d_geometry(x, weight, bias, stride, padding, dilation, groups)
    out = _autocast.apply(function, "lower", x, weight, bias, stride_, padding_, dilation_, groups, extra)
    return out.squeeze(0) if unbatched else out
