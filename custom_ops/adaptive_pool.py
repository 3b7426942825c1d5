"""Adaptive average and max pooling to any output size ``(Ho, Wo)``; global average pooling (output 1x1,
the pooling before the classifier of ResNet, MobileNet and EfficientNet and inside their
squeeze-and-excitation blocks) keeps its own fast path.

Windows (torch's): output row i pools input rows [start_i, end_i) with start_i = floor(i H / Ho) and
end_i = ceil((i + 1) H / Ho) — windows of unequal sizes, overlapping when Ho does not divide H (and
repeating rows when Ho > H); columns likewise with W, Wo.

Global average:  out[n, c] = (1 / (H W)) sum_{y, z} x[n, c, y, z];   dx = dout / (H W) broadcast.
Adaptive average: averaging is linear and separable, out = P_h x P_w^T (per image and channel), with
                 the pooling matrix P_h (Ho x H): P_h[i, y] = 1 / (end_i - start_i) for y in window i,
                 else 0 (P_w likewise);   dx = P_h^T dout P_w.   When Ho divides H and Wo divides W the
                 windows are uniform and disjoint: avg_pool2d with kernel = stride = (H / Ho, W / Wo).
Adaptive max:    out = the max of each window, with its flat index y * W + z into the H x W plane (the
                 first maximum in row-major window order, as torch). The max is separable: the max over
                 each column window of every row, then over each row window of those (Wo + Ho slices);
                 dx = scatter_add of dout to each window's argmax (add: windows can overlap).
Saved for backward: nothing (global), the two small pooling matrices (average), the int64 indices (max).
Every backward is linear in dout, so double backward works. Outputs, indices and dx keep a
``channels_last`` input's layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import _autocast
from ._checks import OpArgumentError, check_floating, check_int, check_ndim
from ._layout import memory_format
from .avg_pool import AvgPool2dFunction
from .pool import max_pool2d_input_grad


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


def _window_bounds(size: int, out: int) -> list[tuple[int, int]]:
    """``[start_i, end_i)`` of each of the ``out`` adaptive windows over ``size`` positions."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def _pooling_matrix(size: int, out: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(out, size)``: row i averages window i."""
    bounds = torch.tensor(_window_bounds(size, out), dtype=torch.int64, device=device).view(out, 2)
    position = torch.arange(size, device=device)
    inside = (position >= bounds[:, :1]) & (position < bounds[:, 1:])
    return inside.to(dtype) / (bounds[:, 1:] - bounds[:, :1]).to(dtype)


def _sandwich(left: torch.Tensor, t: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``left @ t @ right`` over the last two dims of ``t``, contracting the cheaper side first."""
    (a, b), (c, d) = left.shape, right.shape
    if a * b * c + a * c * d <= b * c * d + a * b * d:  # flops of (left @ t) @ right vs left @ (t @ right)
        return (left @ t) @ right
    return left @ (t @ right)


class AdaptiveAvgPool2dFunction(torch.autograd.Function):
    """x ``(N, C, H, W)``, pooling matrices ``(Ho, H)`` and ``(Wo, W)`` -> ``(N, C, Ho, Wo)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(rows, cols)
        ctx.memory_format = memory_format(x)
        return _sandwich(rows, x, cols.mT).contiguous(memory_format=ctx.memory_format)  # P_h x P_w^T

    @staticmethod
    def backward(ctx, dout: torch.Tensor):
        rows, cols = ctx.saved_tensors
        dx = _sandwich(rows.mT, dout, cols)  # P_h^T dout P_w
        return dx.contiguous(memory_format=ctx.memory_format), None, None


def _window_max(t: torch.Tensor, bounds: list[tuple[int, int]], dim: int):
    """Max of ``t`` over each window ``[start, end)`` of ``dim``, and the position (first maximum)."""
    values, positions = [], []
    for start, end in bounds:
        value, position = t.narrow(dim, start, end - start).max(dim)
        values.append(value)
        positions.append(position.add_(start))
    return torch.stack(values, dim), torch.stack(positions, dim)


class AdaptiveMaxPool2dFunction(torch.autograd.Function):
    """x ``(N, C, H, W)`` -> ``(out (N, C, Ho, Wo), indices (N, C, Ho, Wo) int64)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, out_size: tuple[int, int]):
        n, c, h, w = x.shape
        ho, wo = out_size
        fmt = memory_format(x)
        ctx.input_shape = x.shape
        ctx.memory_format = fmt
        if ho == 0 or wo == 0:  # an empty output
            index = torch.empty((n, c, ho, wo), dtype=torch.int64, device=x.device)
            ctx.save_for_backward(index)
            ctx.mark_non_differentiable(index)
            return x.new_empty(n, c, ho, wo), index
        # The max is separable: first over each column window of every input row, then over each row
        # window of those. Both take the first maximum, so the position is the first in row-major order.
        row_max, col = _window_max(x, _window_bounds(w, wo), dim=3)  # (N, C, H, Wo)
        out, row = _window_max(row_max, _window_bounds(h, ho), dim=2)  # (N, C, Ho, Wo)
        index = torch.gather(col, 2, row).add_(row * w)  # flat index y * W + z
        out, index = out.contiguous(memory_format=fmt), index.contiguous(memory_format=fmt)
        ctx.save_for_backward(index)
        ctx.mark_non_differentiable(index)
        return out, index

    @staticmethod
    def backward(ctx, dout: torch.Tensor, _dindex: torch.Tensor | None = None):
        (index,) = ctx.saved_tensors
        return max_pool2d_input_grad(dout, index, ctx.input_shape, ctx.memory_format), None


def _output_size(name: str, output_size: object, h: int, w: int) -> tuple[int, int]:
    """torch's ``output_size``: an int, or a pair whose None entries keep the input's size."""
    if isinstance(output_size, Sequence) and not isinstance(output_size, str):
        if len(output_size) != 2:
            raise OpArgumentError(
                f"{name}: output_size must be an int or a pair (an int or None each), got {output_size!r}"
            )
        sizes = tuple(d if v is None else check_int("output_size", v) for v, d in zip(output_size, (h, w)))
    else:
        size = check_int("output_size", output_size)
        sizes = (size, size)
    if min(sizes) < 0:
        raise OpArgumentError(f"{name}: output_size must be >= 0, got {output_size!r}")
    return sizes  # type: ignore[return-value]


def _check_input(name: str, input: torch.Tensor) -> None:
    check_floating("input", input)
    check_ndim("input", input, (3, 4), "(N, C, H, W) or (C, H, W)")
    if input.shape[-1] == 0 or input.shape[-2] == 0:
        raise OpArgumentError(f"{name}: input must have non-zero H and W, got shape {tuple(input.shape)}")


def is_global(output_size: int | Sequence[int | None] | None) -> bool:
    """Whether an ``AdaptiveAvgPool2d`` ``output_size`` means global pooling: ``1`` or ``(1, 1)``."""
    if isinstance(output_size, int):
        return output_size == 1
    return isinstance(output_size, Sequence) and len(output_size) == 2 and tuple(output_size) == (1, 1)


def adaptive_avg_pool2d(input: torch.Tensor, output_size: int | Sequence[int | None]) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.adaptive_avg_pool2d`.

    Args:
        input: ``(N, C, H, W)`` or ``(C, H, W)``, floating point.
        output_size: ``Ho`` and ``Wo``: an int (both) or a pair; a None entry keeps the input's size.
            Any size, also one that does not divide the input or exceeds it.

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``; input gradient: the same (and the same layout).
        - Output: ``(N, C, Ho, Wo)`` or ``(C, Ho, Wo)``.

    Returns:
        The average of each adaptive window (see the module docstring).

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> x = torch.arange(12.0).view(1, 1, 3, 4)
        >>> MF.adaptive_avg_pool2d(x, 1)  # global average pooling
        tensor([[[[5.5000]]]])
        >>> MF.adaptive_avg_pool2d(x, (2, None))  # windows rows [0, 2) and [1, 3)
        tensor([[[[2., 3., 4., 5.],
                  [6., 7., 8., 9.]]]])
    """
    _check_input("adaptive_avg_pool2d", input)
    h, w = input.shape[-2:]
    out_size = _output_size("adaptive_avg_pool2d", output_size, h, w)
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    if out_size == (1, 1):
        out = _autocast.apply(GlobalAvgPool2dFunction, "same", x)
    elif 0 not in out_size and h % out_size[0] == 0 and w % out_size[1] == 0:  # uniform windows
        kernel = (h // out_size[0], w // out_size[1])
        out = _autocast.apply(
            AvgPool2dFunction, "same", x, kernel, kernel, (0, 0), out_size, kernel[0] * kernel[1]
        )
    else:
        rows = _pooling_matrix(h, out_size[0], x.dtype, x.device)
        cols = _pooling_matrix(w, out_size[1], x.dtype, x.device)
        out = _autocast.apply(AdaptiveAvgPool2dFunction, "same", x, rows, cols)
    return out.squeeze(0) if unbatched else out


def adaptive_max_pool2d(
    input: torch.Tensor, output_size: int | Sequence[int | None], return_indices: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Manual twin of :func:`torch.nn.functional.adaptive_max_pool2d`.

    Args:
        input: ``(N, C, H, W)`` or ``(C, H, W)``, floating point.
        output_size: ``Ho`` and ``Wo``: an int (both) or a pair; a None entry keeps the input's size.
        return_indices: also return each maximum's flat index ``y * W + z`` into its ``H x W`` plane
            (what :func:`torch.nn.functional.max_unpool2d` takes).

    Shape:
        - Input: ``(N, C, H, W)`` or ``(C, H, W)``; input gradient: the same (and the same layout).
        - Output and indices: ``(N, C, Ho, Wo)`` or ``(C, Ho, Wo)``; indices int64.

    Returns:
        The maximum of each adaptive window, or ``(output, indices)`` with ``return_indices``.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> x = torch.tensor([[[[1.0, 5.0, 2.0], [4.0, 0.0, 3.0]]]])
        >>> MF.adaptive_max_pool2d(x, (1, 2), return_indices=True)
        (tensor([[[[5., 5.]]]]), tensor([[[[1, 1]]]]))
    """
    _check_input("adaptive_max_pool2d", input)
    out_size = _output_size("adaptive_max_pool2d", output_size, *input.shape[-2:])
    unbatched = input.dim() == 3
    x = input.unsqueeze(0) if unbatched else input
    out, index = _autocast.apply(AdaptiveMaxPool2dFunction, "same", x, out_size)
    if unbatched:
        out, index = out.squeeze(0), index.squeeze(0)
    return (out, index) if return_indices else out
