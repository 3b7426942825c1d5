"""Mixed precision for the manual operators.

A custom ``autograd.Function`` is opaque to ``torch.autocast``: its forward would run on whatever dtypes
arrive and its backward outside the autocast region, with mismatched dtypes. So every functional wrapper
calls :func:`apply`, which does for the Function what autocast does for its built-in twin: cast the
floating-point arguments per the op's policy, then run the Function with autocast disabled. The casts are
ordinary differentiable ``.to()`` calls, so gradients reach the original dtypes as they do for built-ins.

Policies, as PyTorch's autocast op lists and kernels behave:
- ``"lower"``: under autocast, run in the autocast dtype (float16/bfloat16): linear, conv2d.
- ``"fp32"``: under autocast, run in float32 and return float32: the losses.
- ``"fp32_internal"``: always compute in float32 when the input is float16/bfloat16 and return the input's
  dtype, as the built-in normalisation kernels accumulate in float32: batch_norm, layer_norm.
- ``"same"``: run in the input's dtype: relu, dropout, max_pool2d.

:func:`apply` also checks, as torch's ops do, that every tensor argument is on the input's device (torch's
``RuntimeError``, naming the argument), and leaves autocast alone on devices that have none (``meta``, on
which large models are built before their weights are loaded).
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any, Literal

import torch

Policy = Literal["lower", "fp32", "fp32_internal", "same"]
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _cast(dtype: torch.dtype, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)


def is_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type``; False on devices that have no autocast (``meta``), where
    :func:`torch.is_autocast_enabled` raises."""
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


@cache
def _argument_names(function: type[torch.autograd.Function]) -> tuple[str, ...]:
    """The names of ``function.forward``'s inputs (without ``ctx``), for error messages."""
    names = tuple(inspect.signature(function.forward).parameters)
    return names[1:] if names and names[0] == "ctx" else names


def check_same_device(function: type[torch.autograd.Function], args: tuple[Any, ...]) -> None:
    """Every tensor in ``args`` is on the device of ``args[0]`` (the input), else torch's ``RuntimeError``
    for tensors on different devices, naming the operator and the argument."""
    device = args[0].device
    for position, arg in enumerate(args):
        if isinstance(arg, torch.Tensor) and arg.device != device:
            names = _argument_names(function)
            name = names[position] if position < len(names) else f"#{position}"
            op = function.__name__.removesuffix("Function")
            raise RuntimeError(
                "Expected all tensors to be on the same device, but found at least two devices, "
                f"{device} and {arg.device}! ({op}: argument '{name}' is on {arg.device}, the input on "
                f"{device})"
            )


def apply(function: type[torch.autograd.Function], policy: Policy, *args: Any) -> Any:
    """Run ``function.apply(*args)`` with the dtype handling of ``policy`` (``args[0]`` is the input), after
    checking that every tensor argument is on the input's device."""
    x = args[0]
    check_same_device(function, args)
    device_type = x.device.type
    autocasting = is_enabled(device_type)
    out_dtype = None
    if autocasting and policy == "lower":
        args = _cast(torch.get_autocast_dtype(device_type), args)
    elif autocasting and policy == "fp32":
        args = _cast(torch.float32, args)
    elif policy == "fp32_internal" and x.dtype in _LOW_PRECISION:
        out_dtype = x.dtype
        args = _cast(torch.float32, args)
    if not autocasting:
        out = function.apply(*args)
    else:
        with torch.autocast(device_type, enabled=False):
            out = function.apply(*args)
    if out_dtype is None:
        return out
    if isinstance(out, tuple):
        return (out[0].to(out_dtype), *out[1:])
    return out.to(out_dtype)


# Devices whose torch.autocast runs softmax, log_softmax and group_norm in float32 (their CUDA, XPU and MPS
# autocast lists); on CPU torch's autocast leaves them alone.
_FP32_AUTOCAST_DEVICES = ("cuda", "xpu", "mps")


def fp32_under_autocast(tensor: torch.Tensor) -> bool:
    """Whether torch's autocast would run a softmax or group norm of ``tensor`` in float32 right now: autocast
    is on for its device, the device lists those ops as float32, and the tensor is not float64."""
    device_type = tensor.device.type
    return (
        device_type in _FP32_AUTOCAST_DEVICES
        and is_enabled(device_type)
        and tensor.is_floating_point()
        and tensor.dtype != torch.float64
    )
