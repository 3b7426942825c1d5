"""2-D average pooling (the average twin of CS231n's ``max_pool_forward_naive``), with torch's padding,
``ceil_mode``, ``count_include_pad`` and ``divisor_override``.

The reference (what :func:`custom_ops.reference_path` runs), with the windows copied out as columns as
conv.py's im2col does:

    xpad    = x padded with zeros             the padding, and ceil_mode's overhang at the bottom/right
    windows = im2col(xpad)                    (N, C, kh*kw, Ho, Wo), one column per output pixel
    out     = sum over each window / div
    share   = dout / div                      what each position of a window receives
    dx      = col2im(share copied kh*kw times), cropped to x: each position sums the shares of its windows
    ẏ       = avg_pool(ẋ)                     forward mode: the pooling is linear

div[i, j] = divisor_override if given; else the window's size clipped to the padded input
(count_include_pad=True: padding counts, the ceil_mode overhang does not); else the number of real input
positions in the window (count_include_pad=False).

The default adds up kh * kw strided slices of the padded input instead of copying the columns out (and
in backward, adds the shares into kh * kw strided slices of a zero buffer): no kh*kw-times larger copy.
Under a ``torch.func`` transform it steps aside for the reference (its buffers are not batched).
Nothing is saved but shapes and the divisors (a number, or an (Ho, Wo) tensor when they differ);
outputs and dx keep a ``channels_last`` input's layout. Every formula is linear in dout, so double
backward works, and so does forward-over-reverse.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from . import _autocast, _function, _reference
from ._checks import OpArgumentError, OpDtypeError, check_int, check_ndim, check_tensor, int_pair
from ._layout import memory_format
from ._transforms import transforms_active

Pair = tuple[int, int]
Divisor = int | torch.Tensor  # one divisor for every window, or the (Ho, Wo) divisors


def _output_size(size: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """torch's ``pooling_output_shape`` (dilation 1): the last window must start inside the input or
    its left padding."""
    out = (size + 2 * p - k + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _divisors(size: int, out: int, k: int, s: int, p: int, count_include_pad: bool) -> list[int]:
    """Per output index along one dim: the window's extent counted in its average."""
    sizes = []
    for i in range(out):
        start = i * s - p
        end = min(start + k, size + p)  # clipped to the padded input, not to the ceil_mode overhang
        if not count_include_pad:
            start, end = max(start, 0), min(end, size)
        sizes.append(end - start)
    return sizes


def _pad_amounts(shape: torch.Size, k: Pair, s: Pair, p: Pair, out: Pair) -> tuple[int, int, int, int]:
    """``F.pad`` amounts (left, right, top, bottom): the padding, plus the ceil_mode overhang."""
    h, w = shape[-2:]
    extra_h = max(0, (out[0] - 1) * s[0] + k[0] - (h + 2 * p[0]))
    extra_w = max(0, (out[1] - 1) * s[1] + k[1] - (w + 2 * p[1]))
    return p[1], p[1] + extra_w, p[0], p[0] + extra_h


def _crop(padded: torch.Tensor, pads: tuple[int, int, int, int], h: int, w: int) -> torch.Tensor:
    """The ``(h, w)`` block of ``padded`` inside the ``pads`` (left, right, top, bottom)."""
    return padded[:, :, pads[2] : pads[2] + h, pads[0] : pads[0] + w] if any(pads) else padded


# ========================================================================================= the reference
def avg_pool2d_reference(
    x: torch.Tensor, kernel: Pair, stride: Pair, padding: Pair, out_size: Pair, divisor: Divisor
) -> torch.Tensor:
    """The average of each window of x ``(N, C, H, W)``: ``(N, C, Ho, Wo)``."""
    n, c = x.shape[:2]
    xpad = F.pad(x, _pad_amounts(x.shape, kernel, stride, padding, out_size))
    windows = F.unfold(xpad, kernel, stride=stride).reshape(n, c, kernel[0] * kernel[1], *out_size)
    window_sums = windows.sum(2)
    out = window_sums / divisor
    return out.contiguous(memory_format=memory_format(x))


def avg_pool2d_reference_backward(
    dout: torch.Tensor,
    input_shape: Sequence[int],
    kernel: Pair,
    stride: Pair,
    padding: Pair,
    divisor: Divisor,
    layout: torch.memory_format,
) -> torch.Tensor:
    """dx ``input_shape`` of :func:`avg_pool2d_reference` from ``dout`` ``(N, C, Ho, Wo)``, in ``layout``."""
    n, c, h, w = input_shape
    out_size = tuple(dout.shape[2:])
    pads = _pad_amounts(input_shape, kernel, stride, padding, out_size)
    taps, length = kernel[0] * kernel[1], out_size[0] * out_size[1]
    share = dout / divisor  # what each position of a window receives
    dcols = share.reshape(n, c, 1, length).expand(n, c, taps, length).reshape(n, c * taps, length)
    dxpad = F.fold(dcols, (h + pads[2] + pads[3], w + pads[0] + pads[1]), kernel, stride=stride)
    return _crop(dxpad, pads, h, w).contiguous(memory_format=layout)


# ================================================================= the default: strided slices, no copy
def _windows(t: torch.Tensor, k: Pair, s: Pair, out: Pair):
    """The ``kh * kw`` strided views of ``t`` (padded input or gradient buffer), one per kernel offset:
    view ``(a, b)`` holds the element at offset ``(a, b)`` of every window, shape ``(N, C, Ho, Wo)``."""
    span_h, span_w = (out[0] - 1) * s[0] + 1, (out[1] - 1) * s[1] + 1
    for a in range(k[0]):
        for b in range(k[1]):
            yield t[:, :, a : a + span_h : s[0], b : b + span_w : s[1]]


def _window_sums(x: torch.Tensor, k: Pair, s: Pair, p: Pair, out: Pair) -> torch.Tensor:
    """Sum of each window of the zero-padded ``x``: ``(N, C, Ho, Wo)`` in ``x``'s layout."""
    pads = _pad_amounts(x.shape, k, s, p, out)
    padded = F.pad(x, pads) if any(pads) else x
    total = torch.empty((*x.shape[:2], *out), dtype=x.dtype, device=x.device, memory_format=memory_format(x))
    for i, view in enumerate(_windows(padded, k, s, out)):
        if i == 0:
            total.copy_(view)
        else:
            total += view
    return total


def _window_shares(
    share: torch.Tensor, input_shape: Sequence[int], k: Pair, s: Pair, p: Pair, layout: torch.memory_format
) -> torch.Tensor:
    """dx: each window's ``share`` ``(N, C, Ho, Wo)`` added to the window's positions (kh * kw strided
    slices of a zero buffer, padded as the forward), in ``layout``."""
    n, c, h, w = input_shape
    out_size = tuple(share.shape[2:])
    pads = _pad_amounts(input_shape, k, s, p, out_size)
    buffer = torch.empty(
        (n, c, h + pads[2] + pads[3], w + pads[0] + pads[1]),
        dtype=share.dtype,
        device=share.device,
        memory_format=layout,
    ).zero_()
    for view in _windows(buffer, k, s, out_size):
        view += share
    return _crop(buffer, pads, h, w).contiguous(memory_format=layout)


def _tuned() -> bool:
    """Whether the strided slices run: not on the reference path, nor under a transform."""
    return not (_reference.is_active() or transforms_active())


def avg_pool2d_forward(
    x: torch.Tensor, kernel: Pair, stride: Pair, padding: Pair, out_size: Pair, divisor: Divisor
) -> torch.Tensor:
    """The average of each window: the strided slices, or :func:`avg_pool2d_reference`."""
    if not _tuned():
        return avg_pool2d_reference(x, kernel, stride, padding, out_size, divisor)
    return _window_sums(x, kernel, stride, padding, out_size).div_(divisor)


def avg_pool2d_backward(
    dout: torch.Tensor,
    input_shape: Sequence[int],
    kernel: Pair,
    stride: Pair,
    padding: Pair,
    divisor: Divisor,
    layout: torch.memory_format,
) -> torch.Tensor:
    """dx of :func:`avg_pool2d_forward`: the strided slices, or :func:`avg_pool2d_reference_backward`."""
    if not _tuned():
        return avg_pool2d_reference_backward(dout, input_shape, kernel, stride, padding, divisor, layout)
    return _window_shares(dout / divisor, input_shape, kernel, stride, padding, layout)


@_function.fast_apply
class AvgPool2dFunction(torch.autograd.Function):
    """x ``(N, C, H, W)`` -> ``(N, C, Ho, Wo)``; ``divisor`` is a number or an ``(Ho, Wo)`` tensor."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, kernel_size: Pair, stride: Pair, padding: Pair, out_size: Pair, divisor):
        return avg_pool2d_forward(x, kernel_size, stride, padding, out_size, divisor)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, kernel_size, stride, padding, out_size, divisor = inputs
        ctx.geometry = (kernel_size, stride, padding, out_size)
        ctx.input_shape = x.shape
        ctx.memory_format = memory_format(x)
        tensors = (divisor,) if isinstance(divisor, torch.Tensor) else ()
        ctx.save_for_backward(*tensors)
        ctx.save_for_forward(*tensors)
        ctx.divisor = None if tensors else divisor

    @staticmethod
    def backward(ctx, dout):
        k, s, p, _ = ctx.geometry
        divisor = ctx.saved_tensors[0] if ctx.divisor is None else ctx.divisor
        dx = avg_pool2d_backward(dout, ctx.input_shape, k, s, p, divisor, ctx.memory_format)
        return dx, None, None, None, None, None

    @staticmethod
    def jvp(ctx, x_t, *_):
        """``ẏ = avg_pool(ẋ)``: the pooling is linear."""
        divisor = ctx.saved_tensors[0] if ctx.divisor is None else ctx.divisor
        return avg_pool2d_forward(x_t, *ctx.geometry, divisor)


AvgPool2dTraced = _function.without_jvp(
    AvgPool2dFunction
)  # for torch.compile (custom_ops._function)


def avg_pool2d(
    input: torch.Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.avg_pool2d`.

    Args:
        input: ``(N, C, H, W)`` or ``(C, H, W)``, floating point (int64 inputs are averaged with
            truncating division and get no gradient, as in torch).
        kernel_size: ``kh`` and ``kw``, an int or a pair.
        stride: an int or a pair; None (or ``()``): ``kernel_size``.
        padding: zeros added on both sides, an int or a pair; at most half the kernel.
        ceil_mode: round the output size up (a last, partial window), as long as it starts inside the
            input or its left padding.
        count_include_pad: whether the zero padding counts in a window's divisor.
        divisor_override: if given, the divisor of every window.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``; input gradient: the same (and the same layout).
        - Output: ``(N, C, Ho, Wo)`` or ``(C, Ho, Wo)``, ``Ho = floor((H + 2 ph - kh) / sh) + 1``
          (``ceil`` with ``ceil_mode``), ``Wo`` likewise.

    Returns:
        The average of each window.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)
        >>> MF.avg_pool2d(x, 2)
        tensor([[[[ 2.5000,  4.5000],
                  [10.5000, 12.5000]]]])
        >>> MF.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False).shape
        torch.Size([1, 1, 2, 2])
    """
    check_tensor("input", input)
    check_ndim("input", input, (3, 4), "(N, C, H, W) or (C, H, W)")
    kernel = int_pair("kernel_size", kernel_size)
    if stride is None or (isinstance(stride, Sequence) and len(stride) == 0):  # torch: () is None too
        stride_ = kernel
    else:
        stride_ = int_pair("stride", stride)
    padding_ = int_pair("padding", padding)
    if min(kernel) <= 0 or min(stride_) <= 0:
        raise OpArgumentError(f"kernel_size and stride must be positive, got {kernel_size!r} and {stride!r}")
    if min(padding_) < 0 or any(2 * p > k for p, k in zip(padding_, kernel)):
        raise OpArgumentError(f"padding must be between 0 and half the kernel size {kernel}, got {padding!r}")
    if divisor_override is not None and check_int("divisor_override", divisor_override) == 0:
        raise OpArgumentError("divisor_override must not be zero, got 0")
    in_size = tuple(input.shape[-2:])
    out_size = tuple(
        _output_size(size, k, s, p, bool(ceil_mode))
        for size, k, s, p in zip(in_size, kernel, stride_, padding_)
    )
    if min(out_size) < 1:
        raise OpArgumentError(
            f"kernel_size {kernel} is larger than the padded input {in_size} + 2*{padding_}: "
            f"the output would be {out_size}"
        )
    if not input.is_floating_point():
        if input.dtype != torch.int64:
            raise OpDtypeError(f"input must be a floating-point (or int64) tensor, got dtype {input.dtype}")
        return _integer_avg_pool2d(
            input, kernel, stride_, padding_, out_size, count_include_pad, divisor_override
        )
    divisor = _divisor(in_size, kernel, stride_, padding_, out_size, count_include_pad, divisor_override)
    if isinstance(divisor, list):
        divisor = torch.tensor(divisor, dtype=input.dtype, device=input.device)
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    out = _autocast.apply(
        AvgPool2dTraced if torch.compiler.is_compiling() else AvgPool2dFunction,
        "same",
        x,
        kernel,
        stride_,
        padding_,
        out_size,
        divisor,
    )
    return out.squeeze(0) if unbatched else out


def _divisor(in_size, kernel, stride, padding, out_size, count_include_pad, divisor_override):
    """A number when every window has the same divisor, else the ``(Ho, Wo)`` divisors as nested lists."""
    if divisor_override is not None:
        return divisor_override
    rows, cols = (
        _divisors(size, out, k, s, p, bool(count_include_pad))
        for size, out, k, s, p in zip(in_size, out_size, kernel, stride, padding)
    )
    if len(set(rows)) == 1 and len(set(cols)) == 1:
        return rows[0] * cols[0]
    return [[r * c for c in cols] for r in rows]


def _integer_avg_pool2d(input, kernel, stride, padding, out_size, count_include_pad, divisor_override):
    """torch's int64 average: window sums divided with truncation (no gradient)."""
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    divisor = _divisor(
        tuple(x.shape[-2:]), kernel, stride, padding, out_size, count_include_pad, divisor_override
    )
    if isinstance(divisor, list):
        divisor = torch.tensor(divisor, dtype=torch.int64, device=x.device)
    out = _window_sums(x, kernel, stride, padding, out_size).div_(divisor, rounding_mode="trunc")
    return out.squeeze(0) if unbatched else out
