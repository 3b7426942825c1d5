"""2-D max pooling (CS231n ``max_pool_forward`` / ``max_pool_backward``), overlapping windows included.

Forward:   out[n, c, y, z] = max over the window at (y*s - p, z*s - p) of x[n, c]
           (computed with its flat argmax index into the H*W plane by the forward kernel
           ``max_pool2d_with_indices``; padding counts as -inf)
Backward:  each output gradient goes to its window's max: dx = scatter_add(zeros, index, dout)
           (add, not assign: overlapping windows can share a max).
Saved for backward: the int64 indices only (the built-in also keeps the input). The backward is a
scatter-add, linear in dout, so double backward works.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from . import _autocast
from ._checks import check_floating, check_ndim, pair
from ._layout import memory_format

Pair = tuple[int, int]


class MaxPool2dFunction(torch.autograd.Function):
    """x ``(N, C, H, W)`` -> ``(N, C, Ho, Wo)``."""

    @staticmethod
    def forward(ctx, x, kernel_size: Pair, stride: Pair, padding: Pair, ceil_mode: bool):
        out, index = F.max_pool2d(x, kernel_size, stride, padding, 1, ceil_mode, return_indices=True)
        ctx.save_for_backward(index)
        ctx.input_shape = x.shape
        ctx.memory_format = memory_format(x)
        return out

    @staticmethod
    def backward(ctx, dout):
        (index,) = ctx.saved_tensors
        n, c, h, w = ctx.input_shape
        zeros = dout.new_zeros(n, c, h * w)
        dx = zeros.scatter_add(2, index.flatten(2), dout.flatten(2)).view(n, c, h, w)
        return dx.contiguous(memory_format=ctx.memory_format), None, None, None, None


def max_pool2d(
    input: torch.Tensor,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    ceil_mode: bool = False,
) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.max_pool2d` (dilation 1).

    Shapes: input ``(N, C, H, W)`` or ``(C, H, W)`` -> ``(N, C, H_out, W_out)``; ``stride`` defaults to
    ``kernel_size``; ``padding`` is at most half the kernel.
    """
    check_floating("input", input)
    check_ndim("input", input, (3, 4), "(N, C, H, W) or (C, H, W)")
    kernel = pair("kernel_size", kernel_size)
    stride_ = kernel if stride is None else pair("stride", stride)
    padding_ = pair("padding", padding)
    if min(kernel) < 1 or min(stride_) < 1:
        raise ValueError(f"kernel_size and stride must be positive, got {kernel_size!r} and {stride!r}")
    if any(p < 0 or 2 * p > k for p, k in zip(padding_, kernel)):
        raise ValueError(f"padding must be between 0 and half the kernel size {kernel}, got {padding!r}")
    for dim, size, k, p in zip("HW", input.shape[-2:], kernel, padding_):
        if k > size + 2 * p:
            raise ValueError(
                f"kernel_size {k} along {dim} is larger than the padded input "
                f"({size} + 2*{p} = {size + 2 * p})"
            )
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    out = _autocast.apply(MaxPool2dFunction, "same", x, kernel, stride_, padding_, bool(ceil_mode))
    return out.squeeze(0) if unbatched else out
