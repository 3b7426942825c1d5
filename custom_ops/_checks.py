"""Input validation shared by the operators: every message names the argument and what was expected.

The exceptions are those of the built-in twins *and* the natural Python ones, so code written for either
catches them: a bad shape or argument value raises :class:`OpArgumentError` (a ``ValueError``, and a
``RuntimeError`` as torch raises), a tensor of a dtype the op does not compute in raises
:class:`OpDtypeError` (a ``TypeError``, and a ``NotImplementedError`` — itself a ``RuntimeError`` — as
torch's "not implemented for 'Long'" and "expected scalar type" errors). A non-tensor where a tensor is
expected raises a plain ``TypeError``, as torch does, and so does a non-int where torch wants an int; a dim
out of range raises an ``IndexError`` (torch's "Dimension out of range").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import _autocast
from .deprecation import renamed_keyword
from .errors import OpArgumentError, OpDtypeError

__all__ = ["OpArgumentError", "OpDtypeError", "renamed_keyword"]  # re-exported for the op files


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


def check_floating(name: str, tensor: torch.Tensor) -> None:
    """Raise ``TypeError`` unless ``tensor`` is a tensor, :class:`OpDtypeError` unless it is a real
    floating-point one."""
    if not isinstance(tensor, torch.Tensor):  # check_tensor, inlined: every op calls this on every call
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise OpDtypeError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")


def check_same_dtype(input: torch.Tensor, **others: torch.Tensor | None) -> None:
    """Raise :class:`OpDtypeError` if any of ``others`` (a floating tensor) has a dtype other than
    ``input``'s, unless autocast is on for the input's device (the op's autocast policy then casts them to
    one dtype)."""
    for name, tensor in others.items():
        if tensor is None:
            continue
        check_floating(name, tensor)
        if tensor.dtype != input.dtype and not _autocast.is_enabled(input.device.type):
            raise OpDtypeError(
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
    """Raise :class:`OpArgumentError` unless ``tensor.dim()`` is one of ``allowed``."""
    if tensor.dim() not in allowed:
        raise OpArgumentError(
            f"{name} must have shape {shape_hint} ({' or '.join(map(str, allowed))}-D), "
            f"got {tensor.dim()}-D shape {tuple(tensor.shape)}"
        )


def check_shape(name: str, tensor: torch.Tensor | None, expected: Sequence[int], why: str) -> None:
    """Raise :class:`OpArgumentError` unless ``tensor`` (if given) has exactly the ``expected`` shape."""
    if tensor is not None and tensor.shape != tuple(expected):  # a torch.Size is a tuple
        raise OpArgumentError(f"{name} must have shape {tuple(expected)} ({why}), got {tuple(tensor.shape)}")


def check_nonempty_planes(name: str, input: torch.Tensor, shape_hint: str) -> None:
    """Raise :class:`OpArgumentError` if a dim of ``input`` other than the batch (the first of a 4-D input)
    is 0: the built-in 2-D kernels accept an empty batch but no empty channel or plane."""
    dims = input.shape[1:] if input.dim() == 4 else input.shape
    if 0 in dims:
        raise OpArgumentError(
            f"{name} must have shape {shape_hint} with non-zero C, H and W (only N may be 0), "
            f"got {tuple(input.shape)}"
        )


def pair(name: str, value: int | Sequence[int]) -> tuple[int, int]:
    """Normalise an int or a pair of ints (PyTorch's convention for 2-D hyper-parameters); raise
    :class:`OpArgumentError` for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    try:
        values = tuple(value)
    except TypeError:
        raise OpArgumentError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if len(values) not in (1, 2) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise OpArgumentError(f"{name} must be an int or a pair of ints, got {value!r}")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def int_pair(name: str, value: int | Sequence[int]) -> tuple[int, int]:
    """As :func:`pair`, for the ops whose torch twin raises a ``TypeError`` for a non-int entry (avg_pool2d):
    an int or a sequence of one or two ints as a pair."""
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
