"""torch.func beyond the registry checks for conv2d and the pools: forward-over-reverse (Hessian-vector
products), per-sample gradients of a small conv net, and the conv routes stepping aside under transforms."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import gradcheck

import custom_ops
import custom_ops.functional as MF
import custom_ops.nn as mnn
from custom_ops import conv_routes

# (name, manual, built-in, input shape): one op each, with a weight where it has one
OPS: list[tuple[str, Callable[..., torch.Tensor], Callable[..., torch.Tensor]]] = [
    (
        "conv2d-fast",
        functools.partial(MF.conv2d, stride=2, padding=1),
        functools.partial(F.conv2d, stride=2, padding=1),
    ),
    (
        "conv2d-im2col",
        functools.partial(MF.conv2d, padding=1, algorithm="im2col"),
        functools.partial(F.conv2d, padding=1),
    ),
    (
        "max_pool2d",
        functools.partial(MF.max_pool2d, kernel_size=3, stride=2, padding=1),
        functools.partial(F.max_pool2d, kernel_size=3, stride=2, padding=1),
    ),
    (
        "avg_pool2d",
        functools.partial(MF.avg_pool2d, kernel_size=3, stride=2, padding=1, ceil_mode=True),
        functools.partial(F.avg_pool2d, kernel_size=3, stride=2, padding=1, ceil_mode=True),
    ),
    (
        "adaptive_avg_pool2d",
        functools.partial(MF.adaptive_avg_pool2d, output_size=(3, 2)),
        functools.partial(F.adaptive_avg_pool2d, output_size=(3, 2)),
    ),
    (
        "adaptive_max_pool2d",
        functools.partial(MF.adaptive_max_pool2d, output_size=(3, 2)),
        functools.partial(F.adaptive_max_pool2d, output_size=(3, 2)),
    ),
]


def _inputs(name: str) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randperm(2 * 3 * 7 * 6, generator=generator).to(torch.float64).view(2, 3, 7, 6) / 50  # no ties
    if name.startswith("conv2d"):
        return x, torch.randn(4, 3, 3, 3, generator=generator, dtype=torch.float64)
    return (x,)


@pytest.mark.parametrize("path", ["default", "reference"])
@pytest.mark.parametrize(("name", "manual", "builtin"), OPS, ids=[op[0] for op in OPS])
def test_forward_over_reverse(name: str, manual, builtin, path: str) -> None:
    """``jvp(grad(f))``, a Hessian-vector product, as the built-in's: the backward is differentiable
    forward math, which forward mode goes through."""
    primals = _inputs(name)
    tangents = tuple(torch.randn_like(p) for p in primals)

    def hvp(op: Callable[..., torch.Tensor]) -> tuple[torch.Tensor, ...]:
        loss = lambda *args: op(*args).pow(3).sum()  # noqa: E731  (a non-zero second derivative)
        grad = torch.func.grad(loss, argnums=tuple(range(len(primals))))
        return torch.func.jvp(grad, primals, tangents)[1]

    with custom_ops.reference_path(path == "reference"):
        got = hvp(manual)
    for i, (g, r) in enumerate(zip(got, hvp(builtin))):
        torch.testing.assert_close(
            g, r, msg=lambda m, i=i: f"{name}: Hessian-vector product, input #{i}: {m}"
        )


def test_conv_forward_over_reverse_by_gradcheck() -> None:
    """Forward mode over the fast conv's hand-written backward (its routes) against finite differences."""
    x = torch.randn(2, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    fn = functools.partial(MF.conv2d, stride=(2, 1), padding=1)
    assert gradcheck(lambda x, w: fn(x, w).pow(2).sum(), (x, w), check_forward_ad=True), "conv2d forward AD"
    assert torch.autograd.gradgradcheck(fn, (x, w), check_fwd_over_rev=True), "conv2d forward-over-reverse"


def _net(manual: bool) -> nn.Sequential:
    ops = mnn if manual else nn
    torch.manual_seed(0)
    return nn.Sequential(
        ops.Conv2d(3, 4, 3, padding=1),
        ops.MaxPool2d(2),  # the non-linearity (the ops of this file only)
        ops.Conv2d(4, 4, 3, stride=2, padding=1, bias=False),
        ops.AvgPool2d(2, ceil_mode=True),
        ops.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ).double()


def test_per_sample_gradients_of_a_conv_net(monkeypatch: pytest.MonkeyPatch) -> None:
    """``vmap(grad(loss))`` over ``functional_call``: per-sample gradients as a Python loop's and as the
    built-in net's; the conv routes are not timed under the transforms."""
    monkeypatch.setattr(conv_routes, "_ROUTES", {})
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    results = []
    for manual in (True, False):
        net = _net(manual)
        params = {k: v.detach() for k, v in net.named_parameters()}

        def loss(p: dict[str, torch.Tensor], sample: torch.Tensor, net: nn.Module = net) -> torch.Tensor:
            return torch.func.functional_call(net, p, (sample.unsqueeze(0),)).pow(2).sum()

        results.append(torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(params, x))
        if manual:
            loop = [torch.func.grad(loss)(params, sample) for sample in x]
            for k, g in results[0].items():
                torch.testing.assert_close(
                    g, torch.stack([s[k] for s in loop]), msg=lambda m, k=k: f"{k}: {m}"
                )
    for k in results[0]:
        torch.testing.assert_close(
            results[0][k], results[1][k], msg=lambda m, k=k: f"{k} vs built-in net: {m}"
        )
    assert not conv_routes._ROUTES, f"routes were timed under torch.func: {list(conv_routes._ROUTES)}"
