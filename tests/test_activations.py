"""The activations' derivatives at their kinks are torch's, out of place and in place, on both paths; the
in-place variants under forward-mode AD, ``torch.func`` and ``torch.compile`` (the registry's samples are out
of place).

At a kink (relu6's 0 and 6, hardsigmoid's and hardswish's -3 and 3) the derivative is a convention: torch's
kernels give 0 at relu6's and hardsigmoid's kinks, 0 at -3 and 1 at 3 for hardswish. Finite differences
cannot check it (gradcheck's samples stay away from the kinks), so these tests compare the gradient, the
forward-mode derivative (jvp) and the second derivative with the built-in's on inputs placed on the kinks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F

import custom_ops
import custom_ops.functional as MF

KINKS = {"relu6": (0.0, 6.0), "hardsigmoid": (-3.0, 3.0), "hardswish": (-3.0, 3.0)}
OPS = ["relu6", "hardsigmoid", "hardswish", "silu", "mish"]  # silu, mish: smooth, in place checked alongside
BUILTIN = {
    "relu6": F.relu6,
    "hardsigmoid": F.hardsigmoid,
    "hardswish": F.hardswish,
    "silu": F.silu,
    "mish": F.mish,
}
PATHS = ["default", "reference"]


def _path(name: str) -> contextlib.AbstractContextManager:
    return custom_ops.reference_path() if name == "reference" else contextlib.nullcontext()


def _points(op: str) -> torch.Tensor:
    """Each kink, a point just inside and just outside it, and points on the flat and sloped parts."""
    kinks = KINKS.get(op, (-3.0, 3.0))
    points = [p for k in kinks for p in (k, k - 1e-3, k + 1e-3)] + [-7.0, -1.5, 0.5, 7.5]
    return torch.tensor(points, dtype=torch.float64)


def _apply(fn: Callable[..., torch.Tensor], x: torch.Tensor, inplace: bool) -> torch.Tensor:
    """``fn`` on ``x``: in place on an intermediate copy of ``x`` (autograd refuses a leaf)."""
    hidden = x * 1.0
    return fn(hidden, inplace=True) if inplace else fn(hidden)


def _derivatives(fn: Callable[..., torch.Tensor], inplace: bool, x: torch.Tensor) -> dict[str, torch.Tensor]:
    leaf = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(_apply(fn, leaf, inplace).sum(), leaf)
    with fwAD.dual_level():
        dual = fwAD.make_dual(x.clone(), torch.ones_like(x))
        tangent = fwAD.unpack_dual(_apply(fn, dual, inplace)).tangent
    _, func_jvp = torch.func.jvp(lambda t: _apply(fn, t, inplace), (x,), (torch.ones_like(x),))
    return {"gradient": grad, "forward-mode derivative": tangent, "torch.func.jvp": func_jvp}


@pytest.mark.parametrize("path_name", PATHS)
@pytest.mark.parametrize("inplace", [False, True], ids=["out-of-place", "inplace"])
@pytest.mark.parametrize("op", OPS)
def test_derivatives_at_the_kinks_are_torchs(op: str, inplace: bool, path_name: str) -> None:
    x = _points(op)
    expected = _derivatives(BUILTIN[op], inplace, x)
    with _path(path_name):
        got = _derivatives(getattr(MF, op), inplace, x)
    for what, value in got.items():
        torch.testing.assert_close(
            value,
            expected[what],
            msg=lambda m, what=what: (
                f"{op} (inplace={inplace}, {path_name} path) {what} at {x.tolist()}: {m}"
            ),
        )


def _second_derivative(fn: Callable[..., torch.Tensor], inplace: bool, x: torch.Tensor) -> torch.Tensor:
    """The derivative in ``x`` of the gradient of ``fn``'s sum at ``x``."""
    leaf = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(_apply(fn, leaf, inplace).sum(), leaf, create_graph=True)
    if not grad.requires_grad:  # a slope made of masks only: the gradient is constant in x
        return torch.zeros_like(x)
    (second,) = torch.autograd.grad(grad.sum(), leaf, allow_unused=True, materialize_grads=True)
    return second


@pytest.mark.parametrize("path_name", PATHS)
@pytest.mark.parametrize("inplace", [False, True], ids=["out-of-place", "inplace"])
@pytest.mark.parametrize("op", ["relu6", "hardswish", "silu", "mish"])  # hardsigmoid: no double backward
def test_second_derivative_at_the_kinks_is_torchs(op: str, inplace: bool, path_name: str) -> None:
    x = _points(op)
    results = []
    for fn, context in ((BUILTIN[op], contextlib.nullcontext()), (getattr(MF, op), _path(path_name))):
        with context:
            results.append(_second_derivative(fn, inplace, x))
    torch.testing.assert_close(
        *results,
        msg=lambda m: f"{op} (inplace={inplace}, {path_name} path) second derivative at {x.tolist()}: {m}",
    )


def check_inplace_under_forward_ad_and_torch_func(
    label: str, manual: Callable[..., torch.Tensor], builtin: Callable[..., torch.Tensor]
) -> None:
    """``manual(t, inplace=True)`` passes gradcheck with forward-mode and batched checks, and under ``vmap``
    writes into the batched input and returns it, as ``builtin`` does; per-sample gradients match."""
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 4
    assert torch.autograd.gradcheck(
        lambda t: manual(t * 1.0, inplace=True),
        (x.clone().requires_grad_(),),
        check_forward_ad=True,
        check_batched_grad=True,
        check_batched_forward_grad=True,
    ), f"{label}(inplace=True): gradcheck failed"
    batch = x.clone().movedim(0, 1)  # the batch in dim 1
    out = torch.func.vmap(lambda t: manual(t, inplace=True), in_dims=1)(batch)
    grads = torch.func.vmap(torch.func.grad(lambda t: manual(t * 1.0, inplace=True).sum()))(x)
    assert out.data_ptr() == batch.data_ptr(), f"{label}(inplace=True) under vmap did not return its input"
    torch.testing.assert_close(
        batch.movedim(1, 0), builtin(x), msg=f"{label}(inplace=True) under vmap: wrong values"
    )
    expected = torch.func.vmap(torch.func.grad(lambda t: builtin(t * 1.0, inplace=True).sum()))(x)
    torch.testing.assert_close(grads, expected, msg=f"{label}(inplace=True): per-sample gradients differ")


def check_inplace_under_torch_compile_fullgraph(
    label: str, manual: Callable[..., torch.Tensor], builtin: Callable[..., torch.Tensor]
) -> None:
    """Under ``torch.compile(fullgraph=True)`` the in-place call writes the same values and gradients."""
    torch._dynamo.reset()  # the lambda below is one code object for every op: forget its earlier graphs
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)) * 4
    compiled = torch.compile(lambda t: manual(t * 2.0, inplace=True), fullgraph=True, backend="aot_eager")
    results = []
    for fn in (compiled, lambda t: builtin(t * 2.0, inplace=True)):
        leaf = x.clone().requires_grad_()
        out = fn(leaf)
        (grad,) = torch.autograd.grad(out.sum(), leaf)
        results.append((out.detach(), grad))
    for what, mine, theirs in zip(("output", "gradient"), *results):
        torch.testing.assert_close(
            mine, theirs, msg=lambda m, what=what: f"{label}(inplace=True) compiled {what}: {m}"
        )


@pytest.mark.parametrize("path_name", PATHS)
@pytest.mark.parametrize("op", OPS)
def test_inplace_under_forward_ad_and_torch_func(op: str, path_name: str) -> None:
    with _path(path_name):
        check_inplace_under_forward_ad_and_torch_func(
            f"{op} ({path_name} path)", getattr(MF, op), BUILTIN[op]
        )


@pytest.mark.parametrize("op", OPS)
def test_inplace_under_torch_compile_fullgraph(op: str) -> None:
    check_inplace_under_torch_compile_fullgraph(op, getattr(MF, op), BUILTIN[op])
