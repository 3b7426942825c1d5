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

``"fast"`` (default) — the gradients are computed by forward convolutions (the fast kernels), each by one
of a few routes; the fastest for the arguments' signature is measured on its first call ("route selection"):
          dx = conv_transpose2d(dout, w)      (output_padding restores rows the forward never reached)
               or col2im: dcols = w^T dout, a 1x1 convolution, each tap's plane then added at its offset
          dw = correlation of x with dout over the batch: a convolution in which the batch plays the
               channel role, with stride and dilation swapped;
               or the im2col product [dw | db] = dout @ [cols | 1]^T, a 1x1 convolution over a chunk of
               samples at a time (db comes with dw, as the weight of a constant-1 input)
dw comes in the weight's memory format, which autograd keeps as ``.grad`` without a copy.

Both backwards are differentiable functions of the saved x and w, so double backward works.
Saved for backward: x and w (what the built-in saves).

``padding="same"`` with an even dilated kernel extent needs one more row (column) of zeros on one side:
as torch, the extra goes to the bottom (right). The Functions then zero-pad x by that extra inside the
forward (``F.pad``, a forward op), convolve with the symmetric part, and crop dx back to x's size; dw is
taken on the padded x, re-padded in backward rather than saved.
An empty batch (N = 0) gives an empty output, an empty dx and a zero dw, as torch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

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
from ._timing import best_times

Pair = tuple[int, int]
Grads = tuple[torch.Tensor, "torch.Tensor | None"]  # (dw, db)
ConvAlgorithm = Literal["fast", "im2col"]


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length along one spatial dim: ``floor((size + 2p - d(k-1) - 1) / s) + 1``."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


# ------------------------------------------------------------------------------------- route selection
# Both gradients have more than one route, all built from forward convolutions (the fast kernels); which is
# fastest, at which chunk size and in which operand order, depends on the shapes, the dtype and the machine
# (1x to 4x apart, measured). So the first call of each signature (shapes and strides of the tensors, the
# hyper-parameters, dtype, device) times every candidate on its real arguments and keeps the fastest for
# the later calls, as custom_ops.fused does for its compiled kernels.

select_fastest = True
"""Time the gradient routes on the first call of each signature and keep the fastest; off, each gradient's
default route runs: the transposed convolution for dx, the correlation for dw (what the built-in's
backward computes, so a FLOP counter counts the same work). The defaults also run with deterministic
algorithms on (``torch.use_deterministic_algorithms``): the same sums in every run."""
_TIMED_CALLS = 3
_MAX_SIGNATURES = 256
_ROUTES: dict[tuple, Callable[..., Any]] = {}  # signature -> the fastest route, measured on first use

# Routes that work a chunk of samples at a time are timed with chunks of a power of two samples (or the
# whole batch) whose working set takes 0.5 to 4 MiB, or one sample where it is larger: a larger chunk times
# well alone, its working set staying in the cache from call to call, but less so within a training step.
_CHUNK_BYTES = (1 << 19, 1 << 22)


def _chunk_sizes(n: int, sample_bytes: int) -> list[int]:
    """The chunk sizes to time for a batch of ``n`` (see _CHUNK_BYTES), the largest (the default) first."""
    low, high = _CHUNK_BYTES
    powers = (*(1 << i for i in range(n.bit_length())), n)
    sizes = sorted({size for size in powers if low <= size * sample_bytes <= high}, reverse=True)
    return sizes or [max(1, min(n, high // sample_bytes))]


def _fastest(routes: dict[str, Callable[..., Any]], args: tuple) -> Callable[..., Any]:
    """The route with the best of :data:`_TIMED_CALLS` calls on ``args``, taken in turns after one untimed
    call each (:func:`custom_ops._timing.best_times`)."""
    calls = {name: functools.partial(route, *args) for name, route in routes.items()}
    with torch.no_grad():
        times = best_times(calls, args[0].is_cuda, timed=_TIMED_CALLS, untimed=1)
    return routes[min(times, key=times.__getitem__)]


def _run_fastest(kind: str, candidates: Callable[[], dict[str, Callable[..., Any]]], args: tuple) -> Any:
    """The fastest of ``candidates()`` (timed on the first call of the signature of ``args``) applied to
    ``args``; the first candidate, untimed, under ``torch.compile`` or a dispatch mode (a FLOP counter, a
    trace: timing would run, and count, every candidate), with deterministic algorithms on (the routes sum
    in different orders, and a timing may pick another one in another run), past :data:`_MAX_SIGNATURES`
    signatures or with :data:`select_fastest` off."""
    if (
        not select_fastest
        or torch.compiler.is_compiling()
        or is_in_torch_dispatch_mode()
        or torch.are_deterministic_algorithms_enabled()
    ):
        return next(iter(candidates().values()))(*args)
    key = (
        kind,
        *[(a.shape, a.stride(), a.dtype, a.device) if isinstance(a, torch.Tensor) else a for a in args],
    )
    route = _ROUTES.get(key)
    if route is None:
        if len(_ROUTES) >= _MAX_SIGNATURES:
            return next(iter(candidates().values()))(*args)
        route = _ROUTES[key] = _fastest(candidates(), args)
    return route(*args)


def _product_conv(image: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A convolution whose kernel is one column wide, used as a matrix product over the channels (and the
    kernel rows). The width dilation changes nothing for such a kernel: it steers PyTorch, whose
    single-thread heuristic sends a 1x1 convolution of a batch under 16 to its BLAS path, to oneDNN, whose
    kernels use the full vector width (twice as fast on an AVX-512 AMD CPU, measured)."""
    return torch.conv2d(image, weight, dilation=(1, 2))


# -------------------------------------------------------------------------------------- input gradient
# dx[n, c, h, w] = sum_{o, i, j} w[o, c, i, j] * dout[n, o, y, z]   over h + p = y*s + i*d, w + p = z*s + j*d
#
# Two routes: the transposed convolution of dout with w (any groups), or (groups == 1) col2im, the
# "im2col" backward with its matrix product as a 1x1 convolution: faster where the transposed convolution
# is slow, with few input channels or a stride (an RGB first layer, a 1x1 stride-2 shortcut).


def _dx_transposed(dout, weight, input_hw: Pair, stride, padding, dilation, groups: int) -> torch.Tensor:
    """dx as the transposed convolution of ``dout`` ``(N, O, Ho, Wo)`` with ``weight``."""
    output_padding = tuple(
        size - ((o - 1) * s - 2 * p + d * (k - 1) + 1)
        for size, o, s, p, d, k in zip(input_hw, dout.shape[2:], stride, padding, dilation, weight.shape[2:])
    )
    return torch.conv_transpose2d(dout, weight, None, stride, padding, output_padding, groups, dilation)


def _dx_col2im(
    dout, weight, input_hw: Pair, stride, padding, dilation, groups: int, *, chunk: int
) -> torch.Tensor:
    """dx by col2im, ``chunk`` samples at a time: ``dcols = w^T dout`` ``(n, C*kh*kw, Ho, Wo)`` as a 1x1
    convolution of dout, then each tap's plane of dcols added into the padded dx at the tap's offset (with
    the stride as the step), the padding cropped at the end. ``dx`` in dout's memory layout."""
    n, o, ho, wo = dout.shape
    _, c, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    w_t = weight.reshape(o, -1).t().reshape(-1, o, 1, 1)  # (C*kh*kw, O, 1, 1)
    dx = dout.new_zeros(n, c, input_hw[0] + 2 * ph, input_hw[1] + 2 * pw)
    for start in range(0, n, chunk):
        dcols = _product_conv(dout[start : start + chunk], w_t).unflatten(1, (c, kh, kw))
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
                cols = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
                dx[start : start + chunk, :, rows, cols] += dcols[:, :, i, j]
    dx = dx[:, :, ph : ph + input_hw[0], pw : pw + input_hw[1]]
    return dx.contiguous(memory_format=memory_format(dout))


def conv2d_input_grad(
    dout, weight, input_hw: Pair, stride: Pair, padding: Pair, dilation: Pair, groups: int
) -> torch.Tensor:
    """dx ``(N, C, H, W)`` (``input_hw``) of the convolution of x with ``weight``, from ``dout``
    ``(N, O, Ho, Wo)``: the fastest route for the signature (see "route selection")."""
    args = (dout, weight, input_hw, stride, padding, dilation, groups)
    if groups > 1 or dout.shape[0] == 0:
        return _dx_transposed(*args)

    def candidates() -> dict[str, Callable[..., torch.Tensor]]:
        c, kh, kw = weight.shape[1:]
        sizes = _chunk_sizes(dout.shape[0], c * kh * kw * dout[0, 0].numel() * dout.element_size())
        routes: dict[str, Callable[..., torch.Tensor]] = {"transposed": _dx_transposed}
        routes.update({f"col2im/{size}": functools.partial(_dx_col2im, chunk=size) for size in sizes})
        return routes

    return _run_fastest("dx", candidates, args)


# ------------------------------------------------------------------------------------- weight gradient
# dw[o, c, i, j] = sum_{n, y, z} dout[n, o, y, z] * xpad[n, c, y*s + i*d, z*s + j*d],   db[o] = sum dout[:, o]
#
# Two routes: the correlation of x with dout over the batch, a convolution with the batch in the channel
# role (any groups), or (groups == 1) the columns: the im2col matrix product
#     [dw | db] = dout (O, N*L) @ [cols | 1] (N*L, C*kh*kw + 1)
# as a 1x1 convolution, a chunk of samples at a time; beyond the product it costs the columns (kh*kw
# copies of x) and one transposition of dout, and gives db with dw.


def _correlation(
    x, dout, weight_shape: Sequence[int], stride: Pair, padding: Pair, dilation: Pair, groups: int
) -> torch.Tensor:
    """dw as one convolution of x (batch as channels) with dout (batch as input channels), stride d and
    dilation s, one group per conv group; it can cover more than (kh, kw), the extra taps are cropped."""
    n, _, h, w = x.shape
    o, cg, kh, kw = weight_shape
    if groups == 1:
        xg, dg = x.transpose(0, 1), dout.transpose(0, 1)
    else:
        og = o // groups
        xg = x.reshape(n, groups, cg, h, w).permute(2, 1, 0, 3, 4).reshape(cg, groups * n, h, w)
        dg = dout.reshape(n, groups, og, *dout.shape[2:]).permute(1, 2, 0, 3, 4)
        dg = dg.reshape(o, n, *dout.shape[2:])
    dw = torch.conv2d(xg, dg, None, dilation, padding, stride, groups)  # (Cg, O, >=kh, >=kw)
    return dw[:, :, :kh, :kw].transpose(0, 1)


def _correlation_route(
    x, dout, weight_shape, stride, padding, dilation, groups: int, bias: bool, layout: torch.memory_format
) -> Grads:
    """``(dw, db)`` by :func:`_correlation`, dw in ``layout``, db (when ``bias``) a plain sum."""
    dw = _correlation(x, dout, weight_shape, stride, padding, dilation, groups)
    return dw.contiguous(memory_format=layout), dout.sum((0, 2, 3)) if bias else None


def _windows(x, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> torch.Tensor:
    """The input windows of x ``(N, C, H, W)``, a view ``(C, kh, kw, N, Ho, Wo)`` of the padded input:
    ``windows[c, i, j, n, y, z] = xpad[n, c, y*s + i*d, z*s + j*d]``. Copied out as ``(C*kh*kw, N*L)`` they
    are the im2col matrix (the CS231n columns as rows)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    xp = F.pad(x, (padding[1], padding[1], padding[0], padding[0])) if any(padding) else x
    windows = xp.unfold(2, dh * (kh - 1) + 1, sh).unfold(3, dw * (kw - 1) + 1, sw)[..., ::dh, ::dw]
    return windows.permute(1, 4, 5, 0, 2, 3)  # from (N, C, Ho, Wo, kh, kw)


def _sum_of_products(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sum_n a[n] @ b[:, n].T`` for a ``(n, M, K)`` and b ``(P, n, K)``: an ``(M, P)`` matrix product
    reducing over n*K, as one convolution (:func:`_product_conv` when n = 1). a is read as a channels_last
    image of n rows of M pixels with K channels (a row-major a is that layout: no copy), b as the
    channels_last weight ``(P, K, n, 1)``, whose kernel spans the n rows."""
    n, m, k = a.shape
    image = a.reshape(1, n, m, k).permute(0, 3, 1, 2)  # (1, K, n, M), channels_last
    weight = b.reshape(b.shape[0], n, 1, k).permute(0, 3, 1, 2)  # (P, K, n, 1), channels_last
    out = _product_conv(image, weight)  # (1, P, 1, M)
    return out.permute(0, 2, 3, 1).reshape(m, b.shape[0])  # a view when the output is channels_last


def _columns_route(
    x,
    dout,
    weight_shape,
    stride,
    padding,
    dilation,
    groups: int,
    bias: bool,
    layout: torch.memory_format,
    *,
    chunk: int,
    dout_image: bool,
) -> Grads:
    """``(dw, db)`` as the im2col product ``[dw | db] = dout (O, N*L) @ [cols | 1] (N*L, C*kh*kw + 1)``,
    the row of ones only when ``bias`` (db is the weight of a constant-1 input). ``chunk`` samples at a time
    (their columns stay in cache), each chunk one :func:`_sum_of_products` with dout as its image
    (``dout_image``: read as it is, the samples as kernel rows) or as its weight (transposed to
    ``(O, n*L)``). The chunks share their buffers, unless autograd records them (a double backward).
    Partial sums of a reduced dtype add up in float32."""
    o, c, kh, kw = weight_shape
    rows, length = c * kh * kw + bias, dout.shape[2] * dout.shape[3]
    windows = _windows(x, (kh, kw), stride, padding, dilation)  # (C, kh, kw, N, Ho, Wo)
    cols_buffer = dout_buffer = total = None
    for start in range(0, x.shape[0], chunk):
        n = min(chunk, x.shape[0] - start)
        if cols_buffer is None or torch.is_grad_enabled():
            cols_buffer = x.new_empty(rows * chunk * length)
            dout_buffer = None if dout_image else x.new_empty(o * chunk * length)
        cols = cols_buffer[: rows * n * length].view(rows, n, length)
        cols[: c * kh * kw].view(c, kh, kw, n, *dout.shape[2:]).copy_(windows[:, :, :, start : start + n])
        if bias:
            cols[-1] = 1
        d = dout[start : start + n]
        if dout_image:
            part = _sum_of_products(d.reshape(n, o, -1), cols)
        else:
            dt = dout_buffer[: o * n * length].view(o, n, *dout.shape[2:]).copy_(d.transpose(0, 1))
            part = _sum_of_products(cols.view(1, rows, -1), dt.view(o, 1, -1)).t()
        total = part.to(torch.promote_types(part.dtype, torch.float32)) if total is None else total + part
    total = total.to(x.dtype)  # (O, C*kh*kw [+ 1])
    dw = total[:, : c * kh * kw].reshape(weight_shape).contiguous(memory_format=layout)
    return dw, total[:, -1].contiguous() if bias else None


def conv2d_weight_grad(
    x,
    dout,
    weight_shape: Sequence[int],
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    groups: int,
    bias: bool,
    layout: torch.memory_format = torch.contiguous_format,
) -> Grads:
    """``(dw, db)`` of the convolution of x ``(N, C, H, W)`` that gave ``dout``, db None unless ``bias``:
    the fastest route for the signature (see "route selection"). dw comes in ``layout``, the weight's
    memory format: what autograd accumulates into ``weight.grad`` without a copy, a copy that each route's
    timing so includes (transposing the correlation's ``(C, O, kh, kw)`` result costs 29 ms for a 512x512
    3x3 kernel on this CPU, where its product took 1 ms)."""
    args = (x, dout, tuple(weight_shape), stride, padding, dilation, groups, bias, layout)
    if x.shape[0] == 0:  # an empty batch: no term in the sums
        dw = x.new_zeros(weight_shape).contiguous(memory_format=layout)
        return dw, x.new_zeros(weight_shape[0]) if bias else None
    if groups > 1:
        return _correlation_route(*args)

    def candidates() -> dict[str, Callable[..., Grads]]:
        c, kh, kw = weight_shape[1:]
        sizes = _chunk_sizes(x.shape[0], (c * kh * kw + bias) * dout[0, 0].numel() * x.element_size())
        routes: dict[str, Callable[..., Grads]] = {"correlation": _correlation_route}
        for size in sizes:
            for dout_image in (False, True):
                name = f"columns/{size}/{'dout' if dout_image else 'cols'}"
                routes[name] = functools.partial(_columns_route, chunk=size, dout_image=dout_image)
        return routes

    return _run_fastest("dw", candidates, args)


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
    if need_dw:  # db comes with dw, from the same product
        dw, db = conv2d_weight_grad(
            xp, dout, weight.shape, stride, padding, dilation, groups, need_db, memory_format(weight)
        )
    elif need_db:
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
