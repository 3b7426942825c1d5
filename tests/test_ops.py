"""Every registered manual operator against finite differences and against its built-in twin.

All tests iterate over ``custom_ops.testing.OP_CASES``, the samples of every op's spec; a new op or
sample there is checked here for free.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from custom_ops.testing import OP_CASES, PARITY_CASES, SPECS, OpCase

CUDA = pytest.param(
    "cuda",
    marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")],
)
DEVICES = ["cpu", CUDA]
# torch's own warning for the built-in twin of conv2d[same-even-kernel] (the manual op pads the same way)
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
ONE_CASE_PER_OP = [spec.cases[0] for spec in SPECS.values()]


def ids(cases: list[OpCase]) -> list[str]:
    return [case.id for case in cases]


def call(case: OpCase, fn: Callable[..., torch.Tensor], args: list[Any], seed: int = 0) -> torch.Tensor:
    """Call ``fn``; random ops get the same global-RNG state on every call (forked: tests stay isolated)."""
    if not case.random:
        return fn(*args)
    devices = [args[0].device] if args[0].device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return fn(*args)


def differentiable(
    case: OpCase, args: list[Any]
) -> tuple[Callable[..., torch.Tensor], tuple[torch.Tensor, ...]]:
    """``fn(*grad_tensors)`` calling the manual op with the other arguments fixed, and the grad tensors."""

    def fn(*grad_tensors: torch.Tensor) -> torch.Tensor:
        full = list(args)
        for i, t in zip(case.grad_inputs, grad_tensors):
            full[i] = t
        return call(case, case.manual, full)

    return fn, tuple(args[i] for i in case.grad_inputs)


def run_and_grad(
    case: OpCase,
    fn: Callable[..., torch.Tensor],
    args: list[Any],
    forward_context: contextlib.AbstractContextManager | None = None,
) -> tuple[torch.Tensor, list]:
    """Output of ``fn`` and the gradients of a fixed random projection of it w.r.t. the grad inputs.
    Only the forward runs in ``forward_context`` (autocast: the backward runs outside, as in training)."""
    with forward_context or contextlib.nullcontext():
        out = call(case, fn, args)
    values = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    weight = torch.empty_like(out).copy_(values)  # same memory format as the output
    grads = torch.autograd.grad((out * weight).sum(), [args[i] for i in case.grad_inputs])
    return out, list(grads)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str, **tol: float) -> None:
    torch.testing.assert_close(actual, expected, msg=lambda m: f"{what}: {m}", **tol)


@pytest.mark.parametrize("case", OP_CASES, ids=ids(OP_CASES))
def test_gradcheck_float64(case: OpCase) -> None:
    fn, inputs = differentiable(case, case.inputs(torch.float64))
    assert gradcheck(fn, inputs), f"{case.id}: analytic gradient differs from finite differences"


DOUBLE = [case for case in OP_CASES if case.double_backward]


@pytest.mark.parametrize("case", DOUBLE, ids=ids(DOUBLE))
def test_gradgradcheck_float64(case: OpCase) -> None:
    fn, inputs = differentiable(case, case.inputs(torch.float64))
    assert gradgradcheck(fn, inputs), f"{case.id}: the backward's own gradient is wrong"


SINGLE = [case for case in OP_CASES if not case.double_backward]


@pytest.mark.parametrize("case", SINGLE, ids=ids(SINGLE))
def test_once_differentiable_ops_refuse_double_backward(case: OpCase) -> None:
    fn, inputs = differentiable(case, case.inputs(torch.float64))
    out = fn(*inputs)
    (grad,) = torch.autograd.grad(out.sum() if out.dim() else out, inputs[0], create_graph=True)
    with pytest.raises(RuntimeError, match=r"once_differentiable|does not require grad|doesn't require"):
        torch.autograd.grad(grad.sum(), inputs[0])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", PARITY_CASES, ids=ids(PARITY_CASES))
def test_parity_with_builtin_float32(case: OpCase, device: str) -> None:
    if case.random and device == "cuda":
        pytest.skip("CUDA dropout draws its mask with a different RNG stream; see test_dropout_statistics")
    manual_args = case.inputs(torch.float32, device)
    builtin_args = case.inputs(torch.float32, device)
    out, grads = run_and_grad(case, case.manual, manual_args)
    ref, ref_grads = run_and_grad(case, case.builtin, builtin_args)
    assert_close(out, ref, f"{case.id} output")
    for i, g, r in zip(case.grad_inputs, grads, ref_grads):
        assert_close(g, r, f"{case.id} gradient of input #{i}")
        # A parameter's gradient in another layout than the built-in's is copied by autograd into .grad.
        assert i == 0 or g.is_contiguous() or not r.is_contiguous(), (
            f"{case.id}: the gradient of input #{i} is not contiguous (strides {g.stride()}), the built-in's "
            "is: autograd would copy it into .grad on every step"
        )
    # Side effects on non-differentiable tensor arguments (batch-norm running statistics) match too.
    for i, (a, b) in enumerate(zip(manual_args, builtin_args)):
        if isinstance(a, torch.Tensor) and i not in case.grad_inputs and a.is_floating_point():
            assert_close(a, b, f"{case.id} argument #{i} after the call")


def _noncontiguous(t: torch.Tensor) -> torch.Tensor:
    """The same values in a non-contiguous tensor (every other element of a doubled last dim)."""
    wide = torch.stack([t, torch.full_like(t, float("nan"))], dim=-1).flatten(-2)
    view = wide[..., ::2]
    assert not view.is_contiguous()
    return view


# channels_last applies to (N, C, H, W) inputs only
LAYOUTS = [
    (case, layout)
    for case in OP_CASES
    for layout in ("noncontiguous", "channels_last")
    if layout == "noncontiguous" or case.spatial
]


@pytest.mark.parametrize(("case", "layout"), LAYOUTS, ids=[f"{c.id}-{layout}" for c, layout in LAYOUTS])
def test_layouts_match_contiguous(case: OpCase, layout: str) -> None:

    def with_layout() -> list[Any]:
        args = case.inputs(torch.float64, requires_grad=False)
        x = args[0]
        args[0] = (
            _noncontiguous(x)
            if layout == "noncontiguous"
            else x.contiguous(memory_format=torch.channels_last)
        )
        for i in case.grad_inputs:
            args[i].requires_grad_(True)
        return args

    # A random op draws its mask in memory order (as the built-in does), so its reference is the built-in
    # on the same layout; the others must give the contiguous result.
    if case.random:
        ref, ref_grads = run_and_grad(case, case.builtin, with_layout())
    else:
        ref, ref_grads = run_and_grad(case, case.manual, case.inputs(torch.float64))
    out, grads = run_and_grad(case, case.manual, with_layout())
    assert_close(out, ref, f"{case.id} output with {layout} input")
    for i, g, r in zip(case.grad_inputs, grads, ref_grads):
        assert_close(g, r, f"{case.id} gradient of input #{i} with {layout} input")
    if layout == "channels_last" and out.dim() == 4 and _keeps_channels_last(case, with_layout()):
        assert out.is_contiguous(memory_format=torch.channels_last), f"{case.id}: output lost channels_last"
        assert grads[0].is_contiguous(memory_format=torch.channels_last), f"{case.id}: dx lost channels_last"


def _keeps_channels_last(case: OpCase, args: list[Any]) -> bool:
    """Whether the built-in keeps a channels_last input's layout in its output and input gradient (the
    layer ops do; a batched matrix product, whose 4-D input is a stack of matrices, does not)."""
    out, grads = run_and_grad(case, case.builtin, args)
    return out.is_contiguous(memory_format=torch.channels_last) and grads[0].is_contiguous(
        memory_format=torch.channels_last
    )


@pytest.mark.parametrize("case", ONE_CASE_PER_OP, ids=ids(ONE_CASE_PER_OP))
def test_compile_fullgraph(case: OpCase) -> None:
    """Dynamo traces each op (forward and hand-written backward) into one graph with no break."""
    torch._dynamo.reset()
    compiled = torch.compile(case.manual, fullgraph=True, backend="aot_eager")
    out, grads = run_and_grad(case, compiled, case.inputs(torch.float32))
    ref, ref_grads = run_and_grad(case, case.manual, case.inputs(torch.float32))
    assert_close(out, ref, f"{case.id} compiled output")
    for i, g, r in zip(case.grad_inputs, grads, ref_grads):
        assert_close(g, r, f"{case.id} compiled gradient of input #{i}")


@pytest.mark.slow
@pytest.mark.parametrize("case", ONE_CASE_PER_OP, ids=ids(ONE_CASE_PER_OP))
def test_compile_inductor(case: OpCase) -> None:
    """The default inductor backend generates working kernels for each op."""
    torch._dynamo.reset()
    compiled = torch.compile(case.manual, fullgraph=True)
    out, grads = run_and_grad(case, compiled, case.inputs(torch.float32))
    ref, ref_grads = run_and_grad(case, case.manual, case.inputs(torch.float32))
    assert_close(out, ref, f"{case.id} inductor output", rtol=1e-4, atol=1e-5)
    for i, g, r in zip(case.grad_inputs, grads, ref_grads):
        assert_close(g, r, f"{case.id} inductor gradient of input #{i}", rtol=1e-4, atol=1e-5)


AUTOCAST = [
    pytest.param("cpu", torch.bfloat16, id="cpu-bfloat16"),
    pytest.param("cuda", torch.float16, id="cuda-float16", marks=CUDA.marks),
]


@pytest.mark.parametrize(("device", "dtype"), AUTOCAST)
@pytest.mark.parametrize("case", ONE_CASE_PER_OP, ids=ids(ONE_CASE_PER_OP))
def test_autocast_close_to_builtin(case: OpCase, device: str, dtype: torch.dtype) -> None:
    results = []
    for fn in (case.manual, case.builtin):
        args = case.inputs(torch.float32, device)
        out, grads = run_and_grad(case, fn, args, torch.autocast(device, dtype=dtype))
        results.append((out, grads, [args[i] for i in case.grad_inputs]))
    (out, grads, leaves), (ref, ref_grads, _) = results
    assert out.dtype == ref.dtype, f"{case.id}: autocast output dtype {out.dtype}, built-in gives {ref.dtype}"
    assert_close(out.float(), ref.float(), f"{case.id} autocast output", rtol=2e-2, atol=2e-2)
    for i, g, r, leaf in zip(case.grad_inputs, grads, ref_grads, leaves):
        assert g.dtype == leaf.dtype, f"{case.id}: gradient #{i} has dtype {g.dtype}, its input {leaf.dtype}"
        assert_close(g.float(), r.float(), f"{case.id} autocast gradient #{i}", rtol=5e-2, atol=5e-2)
