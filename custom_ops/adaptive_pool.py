"""Global average pooling: ``adaptive_avg_pool2d`` with output size 1, the pooling before the classifier
of ResNet, MobileNet and EfficientNet (and inside their squeeze-and-excitation blocks).

Forward:   out[n, c, 0, 0] = (1 / (H W)) * sum_{y, z} x[n, c, y, z]
Backward:  dx[n, c, y, z] = dout[n, c, 0, 0] / (H W)      (every position shares the gradient equally)
Nothing is saved but the input shape (and layout: dx keeps a ``channels_last`` input's layout).
The backward is linear in dout, so double backward works.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import _autocast
from ._checks import check_floating, check_ndim
from ._layout import memory_format


class GlobalAvgPool2dFunction(torch.autograd.Function):
    """x ``(N, C, H, W)`` -> ``(N, C, 1, 1)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.input_shape = x.shape
        ctx.memory_format = memory_format(x)
        return x.mean(dim=(2, 3), keepdim=True)

    @staticmethod
    def backward(ctx, dout: torch.Tensor) -> torch.Tensor:
        _, _, h, w = ctx.input_shape
        return (dout / (h * w)).expand(ctx.input_shape).contiguous(memory_format=ctx.memory_format)


def is_global(output_size: int | Sequence[int | None] | None) -> bool:
    """Whether an ``AdaptiveAvgPool2d`` ``output_size`` means global pooling: ``1`` or ``(1, 1)``."""
    if isinstance(output_size, int):
        return output_size == 1
    return isinstance(output_size, Sequence) and len(output_size) == 2 and tuple(output_size) == (1, 1)


def adaptive_avg_pool2d(input: torch.Tensor, output_size: int | Sequence[int]) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.adaptive_avg_pool2d` for global pooling only.

    Shapes: input ``(N, C, H, W)`` or ``(C, H, W)`` -> ``(N, C, 1, 1)`` or ``(C, 1, 1)``; ``output_size``
    must be ``1`` or ``(1, 1)``.
    """
    check_floating("input", input)
    check_ndim("input", input, (3, 4), "(N, C, H, W) or (C, H, W)")
    if not is_global(output_size):
        raise ValueError(
            f"output_size must be 1 or (1, 1) (the manual op is global average pooling), got {output_size!r}"
        )
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    out = _autocast.apply(GlobalAvgPool2dFunction, "same", x)
    return out.squeeze(0) if unbatched else out
