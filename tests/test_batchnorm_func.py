"""Batch norm's running statistics under forward-mode AD and ``torch.func``, and its vmap rule's cases
beyond the registry samples of ``tests/test_func.py`` (batched running statistics, only γ/β batched, an
empty input), each against ``torch.nn.functional.batch_norm``; second derivatives of the norms (whose
backward is once differentiable): reverse-over-forward against the built-in's Hessian, forward-over-reverse
refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F

import custom_ops.functional as MF

F64 = torch.float64
TWINS = {"manual": MF.batch_norm, "builtin": F.batch_norm}


def _stats(c: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(c, dtype=F64), torch.ones(c, dtype=F64)


def _forward_ad(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> None:
    with fwAD.dual_level():
        fn(fwAD.make_dual(x, torch.ones_like(x)))


TRANSFORMS = {
    "call": lambda fn, x: fn(x),
    "forward_ad": _forward_ad,
    "func.jvp": lambda fn, x: torch.func.jvp(fn, (x,), (torch.ones_like(x),)),
    "func.grad": lambda fn, x: torch.func.grad(lambda t: fn(t).pow(3).sum())(x),
    "func.vjp": lambda fn, x: torch.func.vjp(fn, x)[1](torch.ones_like(x)),
    "func.jacrev": lambda fn, x: torch.func.jacrev(fn)(x),
}


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_running_stats_updated_once_per_call(transform: str) -> None:
    x = torch.randn(6, 3, 2, dtype=F64)
    after = {}
    for name, op in TWINS.items():
        mean, var = _stats()
        TRANSFORMS[transform](lambda t, op=op, m=mean, v=var: op(t, m, v, None, None, True), x)
        after[name] = (mean, var)
    torch.testing.assert_close(
        after["manual"], after["builtin"], msg=lambda m: f"running statistics after {transform}: {m}"
    )


@pytest.mark.parametrize("stats_dim", [0, 1])
def test_vmap_with_batched_running_stats(stats_dim: int) -> None:
    """Each vmapped slice normalises with its own statistics and updates its own running ones, as a loop of
    the built-in over the slices; also when the running statistics' batch dim is not the leading one (the
    update is written back; torch's own vmap rule drops it there)."""
    x = torch.randn(4, 5, 3, dtype=F64)  # 4 slices of (5, 3)
    w = torch.randn(3, dtype=F64)
    mean = torch.randn(4, 3, dtype=F64).movedim(0, stats_dim).contiguous()
    var = torch.rand(4, 3, dtype=F64).add(0.5).movedim(0, stats_dim).contiguous()
    ref_mean, ref_var = mean.clone(), var.clone()
    out = torch.func.vmap(lambda x, m, v: MF.batch_norm(x, m, v, w, None, True), (0, stats_dim, stats_dim))(
        x, mean, var
    )
    ref = torch.stack(
        [
            F.batch_norm(x[i], ref_mean.select(stats_dim, i), ref_var.select(stats_dim, i), w, None, True)
            for i in range(4)
        ]
    )
    torch.testing.assert_close(out, ref, msg=lambda m: f"vmap output vs a loop of the built-in: {m}")
    torch.testing.assert_close(
        (mean, var), (ref_mean, ref_var), msg=lambda m: f"running statistics vs a loop of the built-in: {m}"
    )


def test_vmap_over_gamma_only_updates_the_stats_once() -> None:
    """Only γ batched (an ensemble sharing the input): x normalised once, its statistics updated once."""
    x, gammas = torch.randn(6, 3, dtype=F64), torch.randn(4, 3, dtype=F64)
    outs, stats = {}, {}
    for name, op in TWINS.items():
        mean, var = _stats()
        outs[name] = torch.func.vmap(lambda g, op=op, m=mean, v=var: op(x, m, v, g, None, True))(gammas)
        stats[name] = (mean, var)
    torch.testing.assert_close(outs["manual"], outs["builtin"], msg=lambda m: f"vmap output: {m}")
    torch.testing.assert_close(stats["manual"], stats["builtin"], msg=lambda m: f"running statistics: {m}")


def test_vmap_refuses_unbatched_running_stats_in_training() -> None:
    x = torch.randn(4, 5, 3, dtype=F64)
    mean, var = _stats()
    with pytest.raises(RuntimeError, match="running_mean or running_var, which will be updated in place"):
        torch.func.vmap(lambda t: MF.batch_norm(t, mean, var, None, None, True))(x)
    assert mean.eq(0).all() and var.eq(1).all(), "a refused call changed the running statistics"


def test_empty_input_under_jvp_and_vmap() -> None:
    x, w = torch.randn(0, 3, dtype=F64), torch.randn(3, dtype=F64)
    out, out_t = torch.func.jvp(lambda t: MF.batch_norm(t, None, None, w, None, True), (x,), (x,))
    assert out.shape == out_t.shape == (0, 3), f"empty input under jvp gave {out.shape}, {out_t.shape}"
    batched = torch.func.vmap(lambda t: MF.batch_norm(t, None, None, w, None, True))(
        torch.randn(2, 0, 3, dtype=F64)
    )
    assert batched.shape == (2, 0, 3), f"empty input under vmap gave {tuple(batched.shape)}"


NORMS = {
    "batch_norm-train": (MF.batch_norm, F.batch_norm, lambda f, x: f(x, None, None, None, None, True)),
    "batch_norm-eval": (
        MF.batch_norm,
        F.batch_norm,
        lambda f, x: f(x, torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64), None, None, False),
    ),
    "layer_norm": (MF.layer_norm, F.layer_norm, lambda f, x: f(x, (3, 2))),
    "group_norm": (MF.group_norm, F.group_norm, lambda f, x: f(x, 3)),
}


@pytest.mark.parametrize("name", NORMS)
def test_second_derivatives(name: str) -> None:
    """``jacrev(jacfwd(f))`` (reverse over the hand-written jvp) equals the built-in's Hessian;
    ``torch.func.hessian`` (forward over the once-differentiable backward) raises, as double backward."""
    manual, builtin, call = NORMS[name]
    x = torch.randn(4, 3, 2, dtype=F64)

    def loss(f: Callable[..., torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda t: call(f, t).pow(3).sum()

    hessian = torch.func.jacrev(torch.func.jacfwd(loss(manual)))(x)
    torch.testing.assert_close(
        hessian, torch.func.hessian(loss(builtin))(x), msg=lambda m: f"{name}: jacrev(jacfwd) Hessian: {m}"
    )
    with pytest.raises(RuntimeError, match="forward-over-reverse"):
        torch.func.hessian(loss(manual))(x)
