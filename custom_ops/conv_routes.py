"""The fast routes of conv2d's gradients (``algorithm="fast"``) and the timing that picks one.

Each gradient of :mod:`custom_ops.conv` has more than one route built from forward convolutions (the fast
kernels); all compute the reference formulas of ``conv.py`` (tested equal to them in
``tests/test_conv_weight_grad.py``), summing in other orders:

dx:  ``"transposed"`` (the default): the transposed convolution of dout with w; output_padding restores
     the rows the forward never reached.
     ``"col2im/<chunk>"`` (groups 1): ``dcols = w^T dout`` as a 1x1 convolution, each tap's plane then added
     into the padded dx at its offset: faster where the transposed convolution is slow, with few input
     channels or a stride (an RGB first layer, a 1x1 stride-2 shortcut).
dw:  ``"correlation"`` (the default): the correlation of x with dout over the batch, a convolution in which
     the batch plays the channel role, with stride and dilation swapped; db a plain sum.
     ``"columns/<chunk>/<operand>"`` (groups 1): the im2col product ``[dw | db] = dout @ [cols | 1]^T`` as
     a 1x1 convolution over a chunk of samples at a time (db comes with dw, as the weight of a constant-1
     input); beyond the product it costs the columns (kh*kw copies of x) and one transposition of dout.

Which is fastest, at which chunk size and in which operand order, depends on the shapes, the dtype and the
machine. So the first call of each signature (shapes and strides of the tensors, the hyper-parameters,
dtype, device) times every candidate on its real arguments and keeps the fastest for the later calls, as
:mod:`custom_ops.fused` does for its compiled kernels. The defaults run untimed wherever timing would be
wrong or seen (see :func:`run_fastest`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from ._layout import memory_format
from ._timing import best_times
from ._transforms import transforms_active

Pair = tuple[int, int]
Grads = tuple[torch.Tensor, "torch.Tensor | None"]  # (dw, db)

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


def run_fastest(
    kind: str, candidates: Callable[[], dict[str, Callable[..., Any]]], args: tuple, select: bool
) -> Any:
    """The fastest of ``candidates()`` (timed on the first call of the signature of ``args``) applied to
    ``args``. The first candidate (the default route) runs untimed where timing would be wrong or seen:
    with ``select`` off; under ``torch.compile``; under a dispatch mode (a FLOP counter, a trace: timing
    would run, and count, every candidate); under a ``torch.func`` transform or gradcheck's vmap (the
    transform would see every candidate, and the chunked routes write into buffers of their own);
    with deterministic algorithms on (the routes sum in different orders, and a timing may pick another
    one in another run); past :data:`_MAX_SIGNATURES` signatures."""
    if (
        not select
        or torch.compiler.is_compiling()
        or is_in_torch_dispatch_mode()
        or torch.are_deterministic_algorithms_enabled()
        or transforms_active()
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
    kernels use the full vector width."""
    return torch.conv2d(image, weight, dilation=(1, 2))


# -------------------------------------------------------------------------------------- input gradient
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
    dout,
    weight,
    input_hw: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    groups: int,
    select: bool = True,
) -> torch.Tensor:
    """dx ``(N, C, H, W)`` (``input_hw``) of the convolution of x with ``weight``, from ``dout``
    ``(N, O, Ho, Wo)``: the fastest route for the signature (timed when ``select``), else the transposed
    convolution."""
    args = (dout, weight, input_hw, stride, padding, dilation, groups)
    if groups > 1 or dout.shape[0] == 0:
        return _dx_transposed(*args)

    def candidates() -> dict[str, Callable[..., torch.Tensor]]:
        c, kh, kw = weight.shape[1:]
        sizes = _chunk_sizes(dout.shape[0], c * kh * kw * dout[0, 0].numel() * dout.element_size())
        routes: dict[str, Callable[..., torch.Tensor]] = {"transposed": _dx_transposed}
        routes.update({f"col2im/{size}": functools.partial(_dx_col2im, chunk=size) for size in sizes})
        return routes

    return run_fastest("dx", candidates, args, select)


# ------------------------------------------------------------------------------------- weight gradient
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
    if dw.shape[2:] != (kh, kw):
        dw = dw[:, :, :kh, :kw]
    return dw.transpose(0, 1)


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
    select: bool = True,
) -> Grads:
    """``(dw, db)`` of the convolution of x ``(N, C, H, W)`` that gave ``dout``, db None unless ``bias``:
    the fastest route for the signature (timed when ``select``), else the correlation. dw comes in
    ``layout``, the weight's memory format: what autograd accumulates into ``weight.grad`` without a copy,
    a copy that each route's timing so includes (for the correlation's ``(C, O, kh, kw)`` result it can
    cost more than the product)."""
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

    return run_fastest("dw", candidates, args, select)
