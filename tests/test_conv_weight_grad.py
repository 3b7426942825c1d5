"""The routes of the ``"fast"`` conv backward (custom_ops.conv_routes): each route on its own against the
reference formulas (custom_ops.conv, themselves checked against the built-in), and the selection that times
them on the first call of a signature."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck
from torch.utils.flop_counter import FlopCounterMode

import custom_ops.functional as MF
from custom_ops import conv, conv_routes

# (x shape, weight shape, stride, padding, dilation): stride with rows the forward never reaches, dilation,
# a batch that no chunk size divides, a 1x1 stride-2 shortcut, an RGB first layer
CONFIGS = [
    ((5, 3, 9, 8), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1)),
    ((3, 4, 10, 7), (6, 4, 3, 2), (2, 1), (1, 0), (1, 2)),
    ((4, 2, 11, 11), (3, 2, 3, 3), (3, 2), (2, 1), (2, 1)),
    ((6, 5, 8, 8), (7, 5, 1, 1), (2, 2), (0, 0), (1, 1)),
    ((2, 3, 16, 16), (8, 3, 7, 7), (2, 2), (3, 3), (1, 1)),
]
IDS = [f"x{'x'.join(map(str, c[0]))}-w{'x'.join(map(str, c[1]))}-s{c[2][0]}{c[2][1]}" for c in CONFIGS]


def _reference(x, w, stride, padding, dilation, bias: bool):
    """(out, dout, dx, dw, db) by the reference formulas (conv.py's im2col), db None without a bias; the
    reference checked against the built-in convolution's gradients first."""
    x = x.detach().requires_grad_()
    w = w.detach().requires_grad_()
    b = torch.randn(w.shape[0], dtype=x.dtype, requires_grad=True) if bias else None
    out = F.conv2d(x, w, b, stride, padding, dilation)
    dout = torch.randn_like(out)
    builtin = torch.autograd.grad(out, [x, w] + ([b] if bias else []), dout)
    conf = (stride, padding, dilation, 1, (0, 0))
    dx, dw, db = conv.conv2d_reference_backward(dout, x.detach(), w.detach(), conf, (True, True, bias))
    for name, mine, theirs in zip(("dx", "dw", "db"), (dx, dw, db), builtin):
        torch.testing.assert_close(mine, theirs, msg=lambda m, name=name: f"reference {name} vs builtin: {m}")
    return out, dout, dx, dw, db


@pytest.fixture
def forced_route(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """``force(prefix, suffix)``: from now on the selection picks the first candidate whose name has that
    prefix and suffix (else its first candidate)."""
    monkeypatch.setattr(conv_routes, "_ROUTES", {})

    def force(prefix: str, suffix: str = "") -> None:
        conv_routes._ROUTES.clear()

        def pick(routes, args):
            chosen = [r for name, r in routes.items() if name.startswith(prefix) and name.endswith(suffix)]
            return (chosen or list(routes.values()))[0]

        monkeypatch.setattr(conv_routes, "_fastest", pick)

    yield force


def _candidate_names(kind: str, x, w, stride, padding, dilation, bias: bool) -> list[str]:
    """The names the selection would time for these arguments."""
    names: list[str] = []

    def record(routes, args):
        names.extend(routes)
        return next(iter(routes.values()))

    saved_routes, saved_fastest = conv_routes._ROUTES, conv_routes._fastest
    conv_routes._ROUTES, conv_routes._fastest = {}, record
    try:
        _, dout, *_ = _reference(x, w, stride, padding, dilation, bias)
        if kind == "dw":
            conv_routes.conv2d_weight_grad(x, dout, w.shape, stride, padding, dilation, 1, bias)
        else:
            conv_routes.conv2d_input_grad(dout, w, x.shape[2:], stride, padding, dilation, 1)
    finally:
        conv_routes._ROUTES, conv_routes._fastest = saved_routes, saved_fastest
    return names


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_every_weight_grad_route_matches_the_builtin(config, bias: bool, layout, forced_route) -> None:
    """Each route gives the built-in's dw (in the weight's layout: autograd then keeps it as ``.grad``
    without a copy) and db."""
    xs, ws, stride, padding, dilation = config
    x, w = torch.randn(xs, dtype=torch.float64), torch.randn(ws, dtype=torch.float64)
    _, dout, _, dw_ref, db_ref = _reference(x, w, stride, padding, dilation, bias)
    names = _candidate_names("dw", x, w, stride, padding, dilation, bias)
    assert "correlation" in names and any(name.endswith("/dout") for name in names), names
    routes = {
        **{
            name: functools.partial(conv_routes._columns_route, chunk=size, dout_image=image)
            for name, size, image in [
                ("columns/1/cols", 1, False),
                ("columns/1/dout", 1, True),
                ("columns/2/cols", 2, False),
                ("columns/2/dout", 2, True),
                ("columns/all/cols", xs[0], False),
            ]
        },
        "correlation": conv_routes._correlation_route,
    }
    for name, route in routes.items():
        dw, db = route(x, dout, ws, stride, padding, dilation, 1, bias, layout)
        torch.testing.assert_close(dw, dw_ref, msg=lambda m, name=name: f"dw by {name}: {m}")
        assert dw.shape == ws, name
        assert dw.is_contiguous(memory_format=layout), f"dw by {name} is not in the weight's layout"
        if bias:
            torch.testing.assert_close(db, db_ref, msg=lambda m, name=name: f"db by {name}: {m}")
        else:
            assert db is None, name


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_every_input_grad_route_matches_the_builtin(config, layout) -> None:
    xs, ws, stride, padding, dilation = config
    x, w = torch.randn(xs, dtype=torch.float64), torch.randn(ws, dtype=torch.float64)
    x = x.contiguous(memory_format=layout)
    _, dout, dx_ref, _, _ = _reference(x, w, stride, padding, dilation, False)
    dout = dout.contiguous(memory_format=layout)
    names = _candidate_names("dx", x, w, stride, padding, dilation, False)
    assert names[0] == "transposed" and any(name.startswith("col2im/") for name in names), names
    routes = {
        "transposed": conv_routes._dx_transposed,
        **{f"col2im/{size}": functools.partial(conv_routes._dx_col2im, chunk=size) for size in (1, 2, xs[0])},
    }
    for name, route in routes.items():
        dx = route(dout, w, xs[2:], stride, padding, dilation, 1)
        torch.testing.assert_close(dx, dx_ref, msg=lambda m, name=name: f"dx by {name}: {m}")
        assert dx.is_contiguous(memory_format=layout), f"dx by {name} lost the layout of dout"


@pytest.mark.parametrize("route", [("columns", "cols"), ("columns", "dout"), ("correlation", "")])
def test_double_backward_through_each_weight_grad_route(route: tuple[str, str], forced_route) -> None:
    """The routes are differentiable (the chunks then get buffers of their own)."""
    forced_route(*route)
    x = torch.randn(3, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    fn = functools.partial(MF.conv2d, stride=(2, 1), padding=1)
    assert gradcheck(fn, (x, w, b)) and gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("route", ["transposed", "col2im"])
def test_double_backward_through_each_input_grad_route(route: str, forced_route) -> None:
    forced_route(route)
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    fn = functools.partial(MF.conv2d, stride=2, padding=1, dilation=(1, 2))
    assert gradcheck(fn, (x, w)) and gradgradcheck(fn, (x, w))


def test_the_selection_times_once_per_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first call of a signature times the candidates; later calls reuse the winner; a new shape or
    a new dtype is a new signature."""
    monkeypatch.setattr(conv_routes, "_ROUTES", {})
    timed: list[str] = []
    fastest = conv_routes._fastest

    def counting(routes, args):
        timed.append(next(iter(routes)))
        return fastest(routes, args)

    monkeypatch.setattr(conv_routes, "_fastest", counting)
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    w = torch.randn(5, 3, 3, 3, requires_grad=True)
    for _ in range(3):
        MF.conv2d(x, w, padding=1).sum().backward()
    assert len(timed) == 2 and len(conv_routes._ROUTES) == 2, timed  # dx and dw, once
    MF.conv2d(x[:2], w, padding=1).sum().backward()
    MF.conv2d(x.double(), w.double(), padding=1).sum().backward()
    assert len(timed) == 6 and len(conv_routes._ROUTES) == 6, timed
    assert {key[0] for key in conv_routes._ROUTES} == {"dx", "dw"}


def test_without_selection_the_defaults_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conv_routes, "_ROUTES", {})
    monkeypatch.setattr(conv, "select_fastest", False)
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    grads = torch.autograd.grad(MF.conv2d(x, w, b, padding=1).sum(), [x, w, b])
    expected = torch.autograd.grad(F.conv2d(x, w, b, padding=1).sum(), [x, w, b])
    for got, ref in zip(grads, expected):
        torch.testing.assert_close(got, ref)
    assert not conv_routes._ROUTES


def test_chunk_sizes() -> None:
    """Powers of two samples (or the whole batch) with 0.5 to 4 MiB each, the largest first; one sample
    when it is larger."""
    mib = 1 << 20
    assert conv_routes._chunk_sizes(64, mib // 8) == [32, 16, 8, 4]
    assert conv_routes._chunk_sizes(10, 2 * mib) == [2, 1]
    assert conv_routes._chunk_sizes(8, 40 * mib) == [1]
    assert conv_routes._chunk_sizes(3, 1024) == [3]


def test_no_timing_under_a_dispatch_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """A FLOP counter (a dispatch mode) would count every timed candidate: under one, the default routes
    run untimed and nothing is recorded; they count what the built-in's backward counts."""
    monkeypatch.setattr(conv_routes, "_ROUTES", {})
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    w = torch.randn(5, 3, 3, 3, requires_grad=True)
    counts = {}
    for name, fn in (("manual", MF.conv2d), ("builtin", F.conv2d)):
        with FlopCounterMode(display=False) as counter:
            fn(x, w, padding=1).sum().backward()
        counts[name] = counter.get_total_flops()
    assert not conv_routes._ROUTES, f"routes were timed under a FLOP counter: {list(conv_routes._ROUTES)}"
    assert counts["manual"] == counts["builtin"], f"FLOPs counted: {counts}"


def test_no_timing_with_deterministic_algorithms(monkeypatch: pytest.MonkeyPatch) -> None:
    """``torch.use_deterministic_algorithms(True)``: the default routes, the same sums in every run."""
    monkeypatch.setattr(conv_routes, "_ROUTES", {})
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    w = torch.randn(5, 3, 3, 3, requires_grad=True)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        grads = [torch.autograd.grad(MF.conv2d(x, w, padding=1).sum(), [x, w]) for _ in range(2)]
    finally:
        torch.use_deterministic_algorithms(deterministic)
    assert not conv_routes._ROUTES, f"routes were timed in deterministic mode: {list(conv_routes._ROUTES)}"
    for first, second in zip(*grads):
        assert torch.equal(first, second), "two deterministic backward passes differ"
