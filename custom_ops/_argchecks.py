"""Argument checks of group_norm, gelu, tanh, softmax/log_softmax, avg_pool2d and the adaptive pools that
:mod:`custom_ops._checks` does not have. As there, every message names the argument and what was
expected, with torch's exception type: a non-int where torch wants an int is a ``TypeError``, a bad pair
an :class:`~custom_ops._checks.OpArgumentError`, a dim out of range an ``IndexError`` (torch's
"Dimension out of range").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._checks import OpArgumentError


def check_tensor(name: str, value: object) -> torch.Tensor:
    """Raise ``TypeError`` unless ``value`` is a tensor; return it."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_int(name: str, value: object) -> int:
    """Raise ``TypeError`` unless ``value`` is an int (not a bool); return it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    return value


def int_pair(name: str, value: int | Sequence[int]) -> tuple[int, int]:
    """An int or a sequence of one or two ints (torch's convention for 2-D hyper-parameters) as a pair."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        values = tuple(value)
        if len(values) not in (1, 2):
            raise OpArgumentError(f"{name} must be an int or a pair of ints, got {value!r}")
        for v in values:
            check_int(name, v)
        return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])
    check_int(name, value)
    return value, value  # type: ignore[return-value]


def normalize_dim(name: str, dim: object, ndim: int) -> int:
    """``dim`` in ``[-ndim, ndim)`` (a 0-d tensor has dims -1 and 0) as a non-negative index; an
    ``IndexError`` otherwise, as torch raises."""
    dim = check_int(name, dim)
    rank = max(ndim, 1)
    if not -rank <= dim < rank:
        raise IndexError(
            f"{name} out of range: expected to be in range of [{-rank}, {rank - 1}] for a {ndim}-D input, "
            f"got {dim}"
        )
    return dim % rank


# Devices whose torch.autocast runs softmax, log_softmax and group_norm in float32 (their CUDA, XPU and MPS
# autocast lists); on CPU torch's autocast leaves them alone.
_FP32_AUTOCAST_DEVICES = ("cuda", "xpu", "mps")


def fp32_under_autocast(tensor: torch.Tensor) -> bool:
    """Whether torch's autocast would run a softmax or group norm of ``tensor`` in float32 right now: autocast
    is on for its device, the device lists those ops as float32, and the tensor is not float64."""
    device_type = tensor.device.type
    return (
        device_type in _FP32_AUTOCAST_DEVICES
        and torch.is_autocast_enabled(device_type)
        and tensor.is_floating_point()
        and tensor.dtype != torch.float64
    )
