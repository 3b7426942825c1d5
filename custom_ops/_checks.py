"""Input validation shared by the operators: every message names the argument and what was expected."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_floating(name: str, tensor: torch.Tensor) -> None:
    """Raise ``TypeError`` unless ``tensor`` is a floating-point tensor."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")


def check_same_dtype(input: torch.Tensor, **others: torch.Tensor | None) -> None:
    """Raise ``TypeError`` if any of ``others`` (a floating tensor) has a dtype other than ``input``'s,
    unless autocast is on for the input's device (the op's autocast policy then casts them to one dtype)."""
    autocasting = torch.is_autocast_enabled(input.device.type)
    for name, tensor in others.items():
        if tensor is None:
            continue
        check_floating(name, tensor)
        if tensor.dtype != input.dtype and not autocasting:
            raise TypeError(
                f"{name} has dtype {tensor.dtype} but input has dtype {input.dtype}; "
                "cast them to one dtype (or run under torch.autocast)"
            )


def check_norm_params_dtype(input: torch.Tensor, **params: torch.Tensor | None) -> None:
    """Like :func:`check_same_dtype`, but also accept float32 parameters with a float16/bfloat16 input
    (the built-in normalisation kernels' "mixed dtype" rule, met under autocast: conv -> bf16 -> BN)."""
    if input.dtype in (torch.float16, torch.bfloat16):
        params = {k: v for k, v in params.items() if v is None or v.dtype != torch.float32}
    check_same_dtype(input, **params)


def check_ndim(name: str, tensor: torch.Tensor, allowed: Sequence[int], shape_hint: str) -> None:
    """Raise ``ValueError`` unless ``tensor.dim()`` is one of ``allowed``."""
    if tensor.dim() not in allowed:
        raise ValueError(
            f"{name} must have shape {shape_hint} ({' or '.join(map(str, allowed))}-D), "
            f"got {tensor.dim()}-D shape {tuple(tensor.shape)}"
        )


def check_shape(name: str, tensor: torch.Tensor | None, expected: Sequence[int], why: str) -> None:
    """Raise ``ValueError`` unless ``tensor`` (if given) has exactly the ``expected`` shape."""
    if tensor is not None and tuple(tensor.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)} ({why}), got {tuple(tensor.shape)}")


def pair(name: str, value: int | Sequence[int]) -> tuple[int, int]:
    """Normalise an int or a pair of ints (PyTorch's convention for 2-D hyper-parameters)."""
    if isinstance(value, int):
        return value, value
    values = tuple(value)
    if len(values) == 1:
        return values[0], values[0]
    if len(values) != 2 or not all(isinstance(v, int) for v in values):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return values[0], values[1]
