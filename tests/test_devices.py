"""Devices, as torch's ops handle them: every op runs on ``meta`` tensors (shapes and dtypes only, how large
models are built before their weights load), and refuses tensor arguments on another device than the
input's with torch's ``RuntimeError`` instead of reading memory it should not."""

from __future__ import annotations

import pytest
import torch
from test_ops import ids
from torch import nn

import custom_ops.nn as mnn
from custom_ops.testing import OP_CASES, OpCase

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")


def first(out: object) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out  # type: ignore[index,return-value]


@pytest.mark.parametrize("case", OP_CASES, ids=ids(OP_CASES))
def test_meta_tensors_give_the_builtin_shape_and_dtype(case: OpCase) -> None:
    args = case.inputs(torch.float32, "meta")
    out = first(case.manual(*args))
    ref = first(case.builtin(*case.inputs(torch.float32, "meta")))
    assert out.device.type == "meta", f"{case.id}: output on {out.device}, expected meta"
    assert (out.shape, out.dtype) == (ref.shape, ref.dtype), (
        f"{case.id}: meta output {tuple(out.shape)} {out.dtype}, built-in {tuple(ref.shape)} {ref.dtype}"
    )
    grads = torch.autograd.grad(out.sum(), [args[i] for i in case.grad_inputs])
    for i, g in zip(case.grad_inputs, grads):
        assert g.shape == args[i].shape and g.device.type == "meta", f"{case.id}: gradient #{i} on meta"


def tensor_positions(case: OpCase) -> list[int]:
    return [i for i, a in enumerate(case.inputs(torch.float32)) if i > 0 and isinstance(a, torch.Tensor)]


MIXED = [(case, i) for case in OP_CASES for i in tensor_positions(case)]


@pytest.mark.parametrize(("case", "position"), MIXED, ids=[f"{c.id}-arg{i}" for c, i in MIXED])
def test_tensor_on_another_device_is_refused(case: OpCase, position: int) -> None:
    args = case.inputs(torch.float32, requires_grad=False)
    args[position] = args[position].to("meta")
    with pytest.raises(RuntimeError, match="device"):
        case.manual(*args)


def test_module_twins_build_and_run_on_meta() -> None:
    model = nn.Sequential(
        mnn.Conv2d(3, 8, 3, device="meta"),
        mnn.BatchNorm2d(8, device="meta"),
        mnn.ReLU(),
        mnn.MaxPool2d(2),
        nn.Flatten(),
        mnn.Linear(8 * 3 * 3, 10, device="meta"),
    )
    out = model(torch.empty(2, 3, 8, 8, device="meta"))
    out.sum().backward()
    assert out.shape == (2, 10) and out.device.type == "meta"
    assert model[0].weight.grad is not None and model[0].weight.grad.device.type == "meta"
