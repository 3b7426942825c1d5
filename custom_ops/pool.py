"""2-D max pooling (CS231n ``max_pool_forward`` / ``max_pool_backward``): overlapping, padded and dilated
windows, ``ceil_mode``, and the indices of the maxima (``return_indices``).

The reference (what :func:`custom_ops.reference_path` runs), with the windows copied out as columns as
conv.py's im2col does:

    xpad    = x padded with -inf               the padding (and ceil_mode's overhang) never wins a max
    windows = im2col(xpad)                     (N, C, kh*kw, L), one column per output pixel, L = Ho*Wo
    out     = max over each window
    index   = y * W + z                        the flat position in x of the window's (first) max
    dx      = scatter_add(zeros, index, dout)  each dout added at its window's max (add, not assign:
                                               overlapping windows can share a max)
    ẏ       = ẋ gathered at index              forward mode: the max picks one entry of each window

(a window at output (y, z) reads xpad[n, c, y*s_h + i*d_h, z*s_w + j*d_w], s stride, d dilation.)
The default forward is the built-in kernel ``max_pool2d_with_indices``, the same maxima and indices
(torch's) without the columns; the default backward scatter-adds in place into its zeros.
Saved for backward: the int64 indices only (the built-in also keeps the input). The backward is a
scatter-add, linear in dout, so double backward works, and so does forward-over-reverse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from . import _autocast, _function, _reference
from ._checks import OpArgumentError, check_floating, check_ndim, check_nonempty_planes, pair
from ._layout import memory_format

Pair = tuple[int, int]


def pool_output_size(
    size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool
) -> int:
    """Output length along one dim, as PyTorch computes it: ``floor`` (or ``ceil`` with ``ceil_mode``) of
    ``(size + 2p - d(k-1) - 1) / s`` plus 1, where in ceil mode the last window must start inside the
    input or its left padding."""
    out = (size + 2 * padding - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


# ========================================================================================= the reference
def max_pool2d_reference(
    x: torch.Tensor, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, ceil_mode: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out, index)`` of x ``(N, C, H, W)``, both ``(N, C, Ho, Wo)``: each window's max and the flat
    ``H * W`` position of its first max.

    Examples::

        >>> import torch
        >>> from custom_ops.pool import max_pool2d_reference
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)
        >>> out, index = max_pool2d_reference(x, (2, 2), (2, 2), (0, 0), (1, 1), False)
        >>> out.view(-1).tolist(), index.view(-1).tolist()
        ([5.0, 7.0, 13.0, 15.0], [5, 7, 13, 15])
    """
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    ho = pool_output_size(h, kh, sh, ph, dh, ceil_mode)
    wo = pool_output_size(w, kw, sw, pw, dw, ceil_mode)
    bottom = max(0, (ho - 1) * sh + dh * (kh - 1) + 1 - (h + 2 * ph))  # ceil_mode's last window overhangs
    right = max(0, (wo - 1) * sw + dw * (kw - 1) + 1 - (w + 2 * pw))
    xpad = F.pad(x, (pw, pw + right, ph, ph + bottom), value=-math.inf)
    windows = F.unfold(xpad, kernel, dilation, 0, stride).reshape(n, c, kh * kw, ho, wo)
    out, arg = windows.max(dim=2)  # arg: the (first) max's position i * kw + j in its window
    top = torch.arange(ho, device=x.device).view(ho, 1) * sh - ph  # the window's first row in x
    left = torch.arange(wo, device=x.device) * sw - pw  # and first column
    row = top + (arg // kw) * dh
    col = left + (arg % kw) * dw
    index = row * w + col
    fmt = memory_format(x)  # a channels_last input gives channels_last results, as the built-in
    return out.contiguous(memory_format=fmt), index.contiguous(memory_format=fmt)


def max_pool2d_reference_backward(
    dout: torch.Tensor, index: torch.Tensor, input_shape: Sequence[int], layout: torch.memory_format
) -> torch.Tensor:
    """dx of the input ``input_shape`` ``(N, C, H, W)``: each entry of ``dout`` added at its window's max,
    the flat ``H * W`` position in ``index``; laid out as ``layout``."""
    n, c, h, w = input_shape
    length = index.shape[2] * index.shape[3]
    zeros = dout.new_zeros(n, c, h * w)
    dx = zeros.scatter_add(2, index.reshape(n, c, length), dout.reshape(n, c, length))
    return dx.view(n, c, h, w).contiguous(memory_format=layout)


def max_pool2d_jvp(x_t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The tangent of the pooled output: ``ẏ = ẋ`` gathered at each window's max (``index``)."""
    n, c, h, w = x_t.shape
    flat_index = index.reshape(n, c, index.shape[2] * index.shape[3])
    return x_t.reshape(n, c, h * w).gather(2, flat_index).view(index.shape)


# ============================================================================ the default: the kernel
def max_pool2d_forward(
    x: torch.Tensor, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair, ceil_mode: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out, index)``: the built-in forward kernel, or :func:`max_pool2d_reference` on the reference
    path."""
    if _reference.is_active():
        return max_pool2d_reference(x, kernel, stride, padding, dilation, ceil_mode)
    return F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, return_indices=True)


def max_pool2d_input_grad(
    dout: torch.Tensor, index: torch.Tensor, input_shape: Sequence[int], layout: torch.memory_format
) -> torch.Tensor:
    """:func:`max_pool2d_reference_backward` with the scatter-add made in place into the fresh zeros (the
    out-of-place one copies them first); the reference itself on the reference path."""
    if _reference.is_active():
        return max_pool2d_reference_backward(dout, index, input_shape, layout)
    n, c, h, w = input_shape
    length = index.shape[2] * index.shape[3]
    dx = dout.new_zeros(n, c, h * w).scatter_add_(2, index.reshape(n, c, length), dout.reshape(n, c, length))
    return dx.view(n, c, h, w).contiguous(memory_format=layout)


@_function.fast_apply
class MaxPool2dFunction(torch.autograd.Function):
    """x ``(N, C, H, W)`` -> ``(out, index)``, both ``(N, C, Ho, Wo)``; index (int64, not differentiable)
    is the flat position in the ``H * W`` plane of each window's max."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair, ceil_mode: bool):
        return max_pool2d_forward(x, kernel_size, stride, padding, dilation, ceil_mode)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x = inputs[0]
        _, index = output
        ctx.mark_non_differentiable(index)
        ctx.save_for_backward(index)
        ctx.save_for_forward(index)
        ctx.input_shape = x.shape
        ctx.memory_format = memory_format(x)

    @staticmethod
    def backward(ctx, dout, _dindex):
        (index,) = ctx.saved_tensors
        dx = max_pool2d_input_grad(dout, index, ctx.input_shape, ctx.memory_format)
        return dx, None, None, None, None, None

    @staticmethod
    def jvp(ctx, x_t, *_):
        """``ẏ = ẋ`` gathered at each window's max; the indices have no tangent."""
        (index,) = ctx.saved_tensors
        return max_pool2d_jvp(x_t, index), None


_MaxPool2dTraced = _function.without_jvp(
    MaxPool2dFunction
)  # for torch.compile (custom_ops._function)


def max_pool2d_geometry(
    plane: Sequence[int],
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None,
    padding: int | Sequence[int],
    dilation: int | Sequence[int],
    ceil_mode: bool,
) -> tuple[Pair, Pair, Pair, Pair]:
    """The hyper-parameter checks of :func:`max_pool2d` for an input plane ``(H, W)`` (an
    :class:`OpArgumentError` naming the bad one); returns ``(kernel, stride, padding, dilation)`` as pairs,
    the stride ``kernel`` when None or empty."""
    kernel = pair("kernel_size", kernel_size)
    no_stride = stride is None or (isinstance(stride, Sequence) and len(stride) == 0)
    stride_ = kernel if no_stride else pair("stride", stride)  # type: ignore[arg-type]
    padding_, dilation_ = pair("padding", padding), pair("dilation", dilation)
    for name, value, given in (("kernel_size", kernel, kernel_size), ("stride", stride_, stride)):
        if min(value) < 1:
            raise OpArgumentError(f"{name} must be positive, got {given!r}")
    if min(dilation_) < 1:
        raise OpArgumentError(f"dilation must be positive, got {dilation!r}")
    if any(p < 0 or 2 * p > k for p, k in zip(padding_, kernel)):
        raise OpArgumentError(f"padding must be between 0 and half the kernel size {kernel}, got {padding!r}")
    for dim, size, k, s, p, d in zip("HW", plane, kernel, stride_, padding_, dilation_):
        if pool_output_size(size, k, s, p, d, bool(ceil_mode)) < 1:
            extent = (
                f"kernel_size {k}"
                if d == 1
                else f"kernel_size {k} with dilation {d} (extent {d * (k - 1) + 1})"
            )
            raise OpArgumentError(
                f"{extent} along {dim} is larger than the padded input ({size} + 2*{p} = {size + 2 * p})"
            )
    return kernel, stride_, padding_, dilation_


def max_pool2d(
    input: torch.Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Manual twin of :func:`torch.nn.functional.max_pool2d` (same parameters, order and defaults).

    Args:
        input: floating tensor ``(N, C, H, W)`` or unbatched ``(C, H, W)``.
        kernel_size: window size, an int or ``(kh, kw)``.
        stride: window step; None (or an empty sequence): ``kernel_size``.
        padding: implicit ``-inf`` padding on both sides, at most half the kernel size.
        dilation: spacing between the window's elements.
        ceil_mode: round the output size up instead of down (the last window may hang over the edge).
        return_indices: also return the flat ``H * W`` index of each window's max (torch's indices, as
            :class:`torch.nn.MaxUnpool2d` takes them).

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``; N may be 0, C, H and W may not.
        - Output: ``(N, C, H_out, W_out)`` or ``(C, H_out, W_out)``, with ``H_out = floor((H + 2p - d(k-1)
          - 1) / s) + 1`` (``ceil`` in ceil mode).
        - Input gradient ``dx``: the shape of the input (``dout`` routed to each window's max).

    Returns:
        The pooled tensor, or ``(output, indices)`` with ``return_indices=True`` (indices int64, same shape).

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> MF.max_pool2d(torch.arange(16.0).view(1, 1, 4, 4), 2)
        tensor([[[[ 5.,  7.],
                  [13., 15.]]]])
    """
    check_floating("input", input)
    check_ndim("input", input, (3, 4), "(N, C, H, W) or (C, H, W)")
    check_nonempty_planes("input", input, "(N, C, H, W) or (C, H, W)")
    kernel, stride_, padding_, dilation_ = max_pool2d_geometry(
        input.shape[-2:], kernel_size, stride, padding, dilation, ceil_mode
    )
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    out, index = _autocast.apply(
        _MaxPool2dTraced if torch.compiler.is_compiling() else MaxPool2dFunction,
        "same",
        x,
        kernel,
        stride_,
        padding_,
        dilation_,
        bool(ceil_mode),
    )
    if unbatched:
        out, index = out.squeeze(0), index.squeeze(0)
    return (out, index) if return_indices else out
