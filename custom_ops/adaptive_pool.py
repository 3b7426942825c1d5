"""Adaptive average and max pooling to any output size ``(Ho, Wo)``; global average pooling (output 1x1,
the pooling before the classifier of ResNet, MobileNet and EfficientNet and inside their
squeeze-and-excitation blocks) keeps its own fast path.

Windows (torch's): output row i pools input rows [start_i, end_i) with start_i = floor(i H / Ho) and
end_i = ceil((i + 1) H / Ho) — windows of unequal sizes, overlapping when Ho does not divide H (and
repeating rows when Ho > H); columns likewise with W, Wo.

The reference (what :func:`custom_ops.reference_path` runs):

Average: averaging is linear and separable; with the pooling matrix P_h (Ho x H), P_h[i, y] =
         1 / (end_i - start_i) for y in window i, else 0 (P_w likewise), per image and channel:
             out = P_h x P_w^T
             dx  = P_h^T dout P_w
             ẏ   = P_h ẋ P_w^T
Max:     for each window, its max and the flat index y * W + z of its first max in row-major order
         (as torch):
             out[i, j], index[i, j] = max, argmax of x over window (i, j)
             dx = scatter_add(zeros, index, dout)      (add: windows can overlap)
             ẏ  = ẋ gathered at index

The defaults: global average is a mean (dx = dout / (H W) broadcast); sizes that divide the input are
avg_pool2d with kernel = stride = (H / Ho, W / Wo) (uniform, disjoint windows); else the product
contracts the cheaper side first. The max is separable: the max over each column window of every row,
then over each row window of those (Wo + Ho slices instead of Ho * Wo windows).
Saved for backward: nothing (global), the two small pooling matrices (average), the int64 indices (max).
Every backward is linear in dout, so double backward works, and so does forward-over-reverse. Outputs,
indices and dx keep a ``channels_last`` input's layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import _autocast, _function, _reference
from ._checks import OpArgumentError, check_floating, check_int, check_ndim
from ._layout import memory_format
from .avg_pool import AvgPool2dFunction, AvgPool2dTraced
from .pool import max_pool2d_input_grad, max_pool2d_jvp


def _window_bounds(size: int, out: int) -> list[tuple[int, int]]:
    """``[start_i, end_i)`` of each of the ``out`` adaptive windows over ``size`` positions."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def _pooling_matrix(size: int, out: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``(out, size)``: row i averages window i."""
    bounds = torch.tensor(_window_bounds(size, out), dtype=torch.int64, device=device).view(out, 2)
    position = torch.arange(size, device=device)
    inside = (position >= bounds[:, :1]) & (position < bounds[:, 1:])
    return inside.to(dtype) / (bounds[:, 1:] - bounds[:, :1]).to(dtype)


# ========================================================================================= the reference
def adaptive_avg_pool2d_reference(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``out = P_h x P_w^T`` for x ``(N, C, H, W)`` and the pooling matrices ``rows`` = P_h ``(Ho, H)``,
    ``cols`` = P_w ``(Wo, W)``."""
    return rows @ x @ cols.mT


def adaptive_avg_pool2d_reference_backward(
    dout: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """``dx = P_h^T dout P_w``."""
    return rows.mT @ dout @ cols


def adaptive_max_pool2d_reference(x: torch.Tensor, out_size: tuple[int, int]):
    """``(out, index)`` ``(N, C, Ho, Wo)``: the max of each window of x ``(N, C, H, W)`` and the flat
    ``H * W`` position of its first max (row-major)."""
    n, c, h, w = x.shape
    values, indices = [], []
    for top, bottom in _window_bounds(h, out_size[0]):
        for left, right in _window_bounds(w, out_size[1]):
            window = x[:, :, top:bottom, left:right].reshape(
                n, c, (bottom - top) * (right - left)
            )  # row-major
            value, arg = window.max(dim=2)  # the first max
            row = top + arg // (right - left)
            col = left + arg % (right - left)
            values.append(value)
            indices.append(row * w + col)
    out = torch.stack(values, 2).reshape(n, c, *out_size)
    index = torch.stack(indices, 2).reshape(n, c, *out_size)
    return out, index


# ================================================================================= the Functions
@_function.fast_apply
class GlobalAvgPool2dFunction(torch.autograd.Function):
    """x ``(N, C, H, W)`` -> ``(N, C, 1, 1)``: the mean over the plane (the default for output 1x1)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        (x,) = inputs
        ctx.input_shape = x.shape
        ctx.memory_format = memory_format(x)

    @staticmethod
    def backward(ctx, dout: torch.Tensor) -> torch.Tensor:
        _, _, h, w = ctx.input_shape
        return (dout / (h * w)).expand(ctx.input_shape).contiguous(memory_format=ctx.memory_format)

    @staticmethod
    def jvp(ctx, x_t: torch.Tensor) -> torch.Tensor:
        """``ẏ = mean(ẋ)`` over the plane."""
        return x_t.mean(dim=(2, 3), keepdim=True)


_GlobalAvgPool2dTraced = _function.without_jvp(GlobalAvgPool2dFunction)  # for torch.compile


def _sandwich(left: torch.Tensor, t: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``left @ t @ right`` over the last two dims of ``t``, contracting the cheaper side first."""
    (a, b), (c, d) = left.shape, right.shape
    if a * b * c + a * c * d <= b * c * d + a * b * d:  # flops of (left @ t) @ right vs left @ (t @ right)
        return (left @ t) @ right
    return left @ (t @ right)


@_function.fast_apply
class AdaptiveAvgPool2dFunction(torch.autograd.Function):
    """x ``(N, C, H, W)``, pooling matrices ``(Ho, H)`` and ``(Wo, W)`` -> ``(N, C, Ho, Wo)``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        if _reference.is_active():
            out = adaptive_avg_pool2d_reference(x, rows, cols)
        else:
            out = _sandwich(rows, x, cols.mT)
        return out.contiguous(memory_format=memory_format(x))

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, rows, cols = inputs
        ctx.save_for_backward(rows, cols)
        ctx.save_for_forward(rows, cols)
        ctx.memory_format = memory_format(x)

    @staticmethod
    def backward(ctx, dout: torch.Tensor):
        rows, cols = ctx.saved_tensors
        if _reference.is_active():
            dx = adaptive_avg_pool2d_reference_backward(dout, rows, cols)
        else:
            dx = _sandwich(rows.mT, dout, cols)
        return dx.contiguous(memory_format=ctx.memory_format), None, None

    @staticmethod
    def jvp(ctx, x_t: torch.Tensor, *_):
        """``ẏ = P_h ẋ P_w^T``: the pooling is linear."""
        rows, cols = ctx.saved_tensors
        return adaptive_avg_pool2d_reference(x_t, rows, cols)


_AdaptiveAvgPool2dTraced = _function.without_jvp(AdaptiveAvgPool2dFunction)  # for torch.compile


def _window_max(t: torch.Tensor, bounds: list[tuple[int, int]], dim: int):
    """Max of ``t`` over each window ``[start, end)`` of ``dim``, and the position (first maximum)."""
    values, positions = [], []
    for start, end in bounds:
        value, position = t.narrow(dim, start, end - start).max(dim)
        values.append(value)
        positions.append(position + start)
    return torch.stack(values, dim), torch.stack(positions, dim)


def _separable_max(x: torch.Tensor, out_size: tuple[int, int]):
    """``(out, index)`` as :func:`adaptive_max_pool2d_reference`, the max taken first over each column
    window of every input row, then over each row window of those. Both take the first maximum, so the
    position is the first in row-major order."""
    h, w = x.shape[2:]
    row_max, col = _window_max(x, _window_bounds(w, out_size[1]), dim=3)  # (N, C, H, Wo)
    out, row = _window_max(row_max, _window_bounds(h, out_size[0]), dim=2)  # (N, C, Ho, Wo)
    index = torch.gather(col, 2, row) + row * w  # flat index y * W + z
    return out, index


@_function.fast_apply
class AdaptiveMaxPool2dFunction(torch.autograd.Function):
    """x ``(N, C, H, W)`` -> ``(out (N, C, Ho, Wo), indices (N, C, Ho, Wo) int64)``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, out_size: tuple[int, int]):
        n, c = x.shape[:2]
        if 0 in out_size:  # an empty output
            index = torch.empty((n, c, *out_size), dtype=torch.int64, device=x.device)
            return x.new_empty(n, c, *out_size), index
        if _reference.is_active():
            out, index = adaptive_max_pool2d_reference(x, out_size)
        else:
            out, index = _separable_max(x, out_size)
        fmt = memory_format(x)
        return out.contiguous(memory_format=fmt), index.contiguous(memory_format=fmt)

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
    def backward(ctx, dout: torch.Tensor, _dindex: torch.Tensor | None = None):
        (index,) = ctx.saved_tensors
        return max_pool2d_input_grad(dout, index, ctx.input_shape, ctx.memory_format), None

    @staticmethod
    def jvp(ctx, x_t: torch.Tensor, *_):
        """``ẏ = ẋ`` gathered at each window's max; the indices have no tangent."""
        (index,) = ctx.saved_tensors
        return max_pool2d_jvp(x_t, index), None


_AdaptiveMaxPool2dTraced = _function.without_jvp(AdaptiveMaxPool2dFunction)  # for torch.compile


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
    uniform = 0 not in out_size and h % out_size[0] == 0 and w % out_size[1] == 0
    if out_size == (1, 1) and not _reference.is_active():
        out = _autocast.apply(
            _GlobalAvgPool2dTraced if torch.compiler.is_compiling() else GlobalAvgPool2dFunction, "same", x
        )
    elif uniform and not _reference.is_active():  # disjoint windows of one size
        kernel = (h // out_size[0], w // out_size[1])
        args = (x, kernel, kernel, (0, 0), out_size, kernel[0] * kernel[1])
        out = _autocast.apply(
            AvgPool2dTraced if torch.compiler.is_compiling() else AvgPool2dFunction, "same", *args
        )
    else:
        rows = _pooling_matrix(h, out_size[0], x.dtype, x.device)
        cols = _pooling_matrix(w, out_size[1], x.dtype, x.device)
        out = _autocast.apply(
            _AdaptiveAvgPool2dTraced if torch.compiler.is_compiling() else AdaptiveAvgPool2dFunction,
            "same",
            x,
            rows,
            cols,
        )
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
    out, index = _autocast.apply(
        _AdaptiveMaxPool2dTraced if torch.compiler.is_compiling() else AdaptiveMaxPool2dFunction,
        "same",
        x,
        out_size,
    )
    if unbatched:
        out, index = out.squeeze(0), index.squeeze(0)
    return (out, index) if return_indices else out
