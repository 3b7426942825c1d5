"""Forward-mode AD and ``torch.func`` on every registered op, as on its built-in twin.

Every case of ``custom_ops.registry`` is checked, on the default path and on the reference path
(:func:`custom_ops.reference_path`):

- ``gradcheck`` with ``check_forward_ad``, ``check_backward_ad``, ``check_batched_grad`` and
  ``check_batched_forward_grad``, each batched check where the built-in twin passes it too;
- ``torch.func.jvp`` and ``torch.func.vjp`` against the built-in's;
- ``torch.func.vmap`` over a batch of inputs against a Python loop and against the built-in under ``vmap``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import pytest
import torch
from test_ops import call, differentiable, ids, run_and_grad
from torch.autograd import gradcheck

import custom_ops
from custom_ops.testing import OP_CASES, OpCase

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")

PATHS = ["default", "reference"]


def path(name: str) -> contextlib.AbstractContextManager:
    return custom_ops.reference_path() if name == "reference" else contextlib.nullcontext()


def builtin_fn(case: OpCase, args: list[Any]) -> Callable[..., torch.Tensor]:
    """``fn(*grad_tensors)`` calling the built-in twin with the other arguments fixed."""

    def fn(*grad_tensors: torch.Tensor) -> torch.Tensor:
        full = list(args)
        for i, t in zip(case.grad_inputs, grad_tensors):
            full[i] = t
        return call(case, case.builtin, full)

    return fn


CASES_BY_ID = {case.id: case for case in OP_CASES}


@functools.cache
def builtin_passes(case_id: str, check: str) -> bool:
    """Whether the built-in twin passes ``gradcheck`` with the batched ``check`` on this case (where it does
    not, torch has no batching rule for it: the manual op is not asked for one either). Cached by the case's
    id: an OpCase holds dicts, so it cannot be a cache key."""
    case = CASES_BY_ID[case_id]
    args = case.inputs(torch.float64)
    fn = builtin_fn(case, args)
    inputs = tuple(args[i] for i in case.grad_inputs)
    try:
        return gradcheck(fn, inputs, check_forward_ad=check == "check_batched_forward_grad", **{check: True})
    except Exception:
        return False


@pytest.mark.parametrize("path_name", PATHS)
@pytest.mark.parametrize("case", OP_CASES, ids=ids(OP_CASES))
def test_gradcheck_forward_ad(case: OpCase, path_name: str) -> None:
    fn, inputs = differentiable(case, case.inputs(torch.float64))
    with path(path_name):
        assert gradcheck(fn, inputs, check_forward_ad=True, check_backward_ad=True), (
            f"{case.id}: forward-mode (jvp) or reverse-mode derivative differs from finite differences"
        )


@pytest.mark.parametrize("check", ["check_batched_grad", "check_batched_forward_grad"])
@pytest.mark.parametrize("path_name", PATHS)
@pytest.mark.parametrize("case", OP_CASES, ids=ids(OP_CASES))
def test_gradcheck_batched(case: OpCase, path_name: str, check: str) -> None:
    if not builtin_passes(case.id, check):
        pytest.skip(f"the built-in twin does not pass gradcheck({check}=True) here")
    fn, inputs = differentiable(case, case.inputs(torch.float64))
    forward_ad = check == "check_batched_forward_grad"
    with path(path_name):
        passed = gradcheck(
            fn, inputs, check_forward_ad=forward_ad, check_backward_ad=not forward_ad, **{check: True}
        )
    assert passed, f"{case.id}: {check} failed (the derivative under vmap differs)"


def tangents(inputs: tuple[torch.Tensor, ...], seed: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(t.shape, generator=generator, dtype=t.dtype).to(t.device) for t in inputs)


def builtin_jvp(
    fn: Callable[..., torch.Tensor], primals: tuple[torch.Tensor, ...], dirs: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.func.jvp`` of the built-in; where torch has no forward-mode formula for it (e.g.
    ``multi_margin_loss``), its reverse-mode Jacobian times the tangents."""
    try:
        return torch.func.jvp(fn, primals, dirs)
    except NotImplementedError:
        out = fn(*primals)
        jacobians = torch.func.jacrev(fn, argnums=tuple(range(len(primals))))(*primals)
        products = [(j * d).reshape(*out.shape, -1).sum(-1) for j, d in zip(jacobians, dirs)]
        return out, torch.stack(products).sum(0)


@pytest.mark.parametrize("path_name", PATHS)
@pytest.mark.parametrize("case", OP_CASES, ids=ids(OP_CASES))
def test_func_jvp_and_vjp_match_builtin(case: OpCase, path_name: str) -> None:
    args = case.inputs(torch.float64, requires_grad=False)
    fn, primals = differentiable(case, args)
    ref_fn = builtin_fn(case, args)
    dirs = tangents(primals, 1)
    with path(path_name):
        out, jvp_out = torch.func.jvp(fn, primals, dirs)
        out_v, vjp_fn = torch.func.vjp(fn, *primals)
        cotangent = tangents((out_v,), 2)[0]
        vjps = vjp_fn(cotangent)
    ref, ref_jvp = builtin_jvp(ref_fn, primals, dirs)
    _, ref_vjp_fn = torch.func.vjp(ref_fn, *primals)
    ref_vjps = ref_vjp_fn(cotangent)
    torch.testing.assert_close(out, ref, msg=lambda m: f"{case.id} output under torch.func.jvp: {m}")
    torch.testing.assert_close(jvp_out, ref_jvp, msg=lambda m: f"{case.id} jvp: {m}")
    for i, g, r in zip(case.grad_inputs, vjps, ref_vjps):
        torch.testing.assert_close(g, r, msg=lambda m, i=i: f"{case.id} vjp of input #{i}: {m}")


def batched(case: OpCase, size: int = 3) -> tuple[list[Any], torch.Tensor]:
    """The case's arguments, with input #0 replaced by a batch of ``size`` different inputs (stacked on a
    new leading dim)."""
    args = case.inputs(torch.float64, requires_grad=False)
    x = args[0]
    scales = torch.linspace(0.5, 1.5, size, dtype=x.dtype).view(-1, *([1] * x.dim()))
    return args, torch.stack([x.roll(k, -1) if x.dim() else x for k in range(size)]) * scales


@pytest.mark.parametrize("path_name", PATHS)
@pytest.mark.parametrize("case", OP_CASES, ids=ids(OP_CASES))
def test_vmap_matches_loop_and_builtin(case: OpCase, path_name: str) -> None:
    if case.random:
        pytest.skip("random op: vmap's randomness= modes are tested in tests/test_func_models.py")
    args, xs = batched(case)

    def on(fn: Callable[..., torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x: call(case, fn, [x, *args[1:]])

    try:
        ref = torch.func.vmap(on(case.builtin))(xs)
    except Exception as error:  # torch has no batching rule here: the manual op must refuse as well
        with path(path_name), pytest.raises(type(error)):
            torch.func.vmap(on(case.manual))(xs)
        return
    with path(path_name):
        out = torch.func.vmap(on(case.manual))(xs)
        loop = torch.stack([on(case.manual)(x) for x in xs])
    torch.testing.assert_close(out, loop, msg=lambda m: f"{case.id}: vmap differs from a Python loop: {m}")
    torch.testing.assert_close(out, ref, msg=lambda m: f"{case.id}: vmap differs from the built-in's: {m}")


@pytest.mark.parametrize("case", OP_CASES, ids=ids(OP_CASES))
def test_default_path_equals_reference(case: OpCase) -> None:
    """The tuned formulations (the default path) agree with the reference formulas: float64 tightly."""
    args = case.inputs(torch.float64)
    out, grads = run_and_grad(case, case.manual, args)
    ref_args = case.inputs(torch.float64)
    with custom_ops.reference_path():
        ref, ref_grads = run_and_grad(case, case.manual, ref_args)
    torch.testing.assert_close(out, ref, msg=lambda m: f"{case.id}: default path's output vs reference: {m}")
    for i, g, r in zip(case.grad_inputs, grads, ref_grads):
        torch.testing.assert_close(
            g, r, msg=lambda m, i=i: f"{case.id}: grad #{i}, default vs reference path: {m}"
        )
