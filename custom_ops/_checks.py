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
    """Raise ``TypeError`` if any of ``others`` (a floating tensor) has a dtype other than ``input``'s."""
    for name, tensor in others.items():
        if tensor is None:
            continue
        check_floating(name, tensor)
        if tensor.dtype != input.dtype:
            raise TypeError(
                f"{name} has dtype {tensor.dtype} but input has dtype {input.dtype}; "
                "cast them to one dtype (or run under torch.autocast)"
            )


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
