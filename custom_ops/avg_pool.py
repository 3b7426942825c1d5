"""2-D average pooling (the average twin of CS231n's ``max_pool_forward_naive``), with torch's padding,
``ceil_mode``, ``count_include_pad`` and ``divisor_override``.

Forward:   out[n, c, i, j] = (1 / div[i, j]) * sum over the kh x kw window at (i sh - ph, j sw - pw)
           of the zero-padded x; computed as kh * kw strided slices of the padded input, added up.
           div[i, j] = divisor_override if given; else the window's size clipped to the padded input
           (count_include_pad=True: padding counts, the ceil_mode overhang does not); else the number
           of real input positions in the window (count_include_pad=False).
Backward:  every position of a window receives that window's dout / div: dx = the same kh * kw strided
           slices of a zero-padded buffer, each += dout / div, then the padding cropped off.
Nothing is saved but shapes and the divisors (a number, or an (Ho, Wo) tensor when they differ);
outputs and dx keep a ``channels_last`` input's layout.
The backward is linear in dout, so double backward works.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from . import _autocast
from ._checks import OpArgumentError, OpDtypeError, check_int, check_ndim, check_tensor, int_pair
from ._layout import memory_format

Pair = tuple[int, int]


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


def _windows(t: torch.Tensor, k: Pair, s: Pair, out: Pair):
    """The ``kh * kw`` strided views of ``t`` (padded input or gradient buffer), one per kernel offset:
    view ``(a, b)`` holds the element at offset ``(a, b)`` of every window, shape ``(N, C, Ho, Wo)``."""
    span_h, span_w = (out[0] - 1) * s[0] + 1, (out[1] - 1) * s[1] + 1
    for a in range(k[0]):
        for b in range(k[1]):
            yield t[:, :, a : a + span_h : s[0], b : b + span_w : s[1]]


def _pad_amounts(shape: torch.Size, k: Pair, s: Pair, p: Pair, out: Pair) -> tuple[int, int, int, int]:
    """``F.pad`` amounts (left, right, top, bottom): the padding, plus the ceil_mode overhang."""
    h, w = shape[-2:]
    extra_h = max(0, (out[0] - 1) * s[0] + k[0] - (h + 2 * p[0]))
    extra_w = max(0, (out[1] - 1) * s[1] + k[1] - (w + 2 * p[1]))
    return p[1], p[1] + extra_w, p[0], p[0] + extra_h


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


class AvgPool2dFunction(torch.autograd.Function):
    """x ``(N, C, H, W)`` -> ``(N, C, Ho, Wo)``; ``divisor`` is a number or an ``(Ho, Wo)`` tensor."""

    @staticmethod
    def forward(ctx, x, kernel_size: Pair, stride: Pair, padding: Pair, out_size: Pair, divisor):
        ctx.geometry = (kernel_size, stride, padding, out_size)
        ctx.input_shape = x.shape
        ctx.memory_format = memory_format(x)
        ctx.divisor = divisor
        return _window_sums(x, kernel_size, stride, padding, out_size).div_(divisor)

    @staticmethod
    def backward(ctx, dout):
        k, s, p, out_size = ctx.geometry
        n, c, h, w = ctx.input_shape
        share = dout / ctx.divisor  # what each position of a window receives
        pads = _pad_amounts(ctx.input_shape, k, s, p, out_size)
        buffer = torch.empty(
            (n, c, h + pads[2] + pads[3], w + pads[0] + pads[1]),
            dtype=dout.dtype,
            device=dout.device,
            memory_format=ctx.memory_format,
        ).zero_()
        for view in _windows(buffer, k, s, out_size):
            view += share
        dx = buffer[:, :, pads[2] : pads[2] + h, pads[0] : pads[0] + w] if any(pads) else buffer
        return dx.contiguous(memory_format=ctx.memory_format), None, None, None, None, None


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
    out = _autocast.apply(AvgPool2dFunction, "same", x, kernel, stride_, padding_, out_size, divisor)
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
