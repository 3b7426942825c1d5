"""Accounting of the memory an operator saves for its backward pass.

Autograd keeps alive every tensor an op saves for backward until the backward runs. We observe those
tensors with :func:`torch.autograd.graph.saved_tensors_hooks` (which sees the tensors saved by built-in
kernels and by custom ``autograd.Function.save_for_backward`` alike) and count bytes by this rule:

* bytes are counted per distinct *storage*, once, whatever number of views of it are saved — a saved
  ``weight.t()`` costs what ``weight`` costs;
* storages of the ``exclude`` tensors are not counted: the benchmark passes the op's parameters and
  buffers (weight, bias, running statistics), which exist whether or not autograd records anything;
* the activation input and the output *are* counted: in a network an activation is often freed once no
  backward needs it, so saving it is a real cost. (When a neighbouring layer saves the same activation
  anyway the true cost is lower; ``extra_bytes`` reports what is left after also excluding the op's
  input and output storages.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class SavedMemory:
    """Bytes saved for backward by one call.

    Attributes:
        bytes: distinct storages saved, parameters and buffers excluded (the rule of the module docstring).
        extra_bytes: the same, also excluding the storages of the activation input(s) and the output(s).
    """

    bytes: int
    extra_bytes: int


def _storage_key(t: torch.Tensor) -> tuple[str, int]:
    storage = t.untyped_storage()
    return str(t.device), storage.data_ptr()


def flat_tensors(values: Any) -> list[torch.Tensor]:
    """The tensors of ``values``: a tensor, or (nested) tuples and lists of them; anything else is skipped."""
    if isinstance(values, torch.Tensor):
        return [values]
    if isinstance(values, (tuple, list)):
        return [t for v in values for t in flat_tensors(v)]
    return []


def saved_memory(
    fn: Callable[..., Any],
    args: Iterable[Any],
    exclude: Iterable[torch.Tensor | None] = (),
    activations: Iterable[torch.Tensor | None] = (),
) -> SavedMemory:
    """Run ``fn(*args)`` once with autograd recording and measure what it saves for backward.

    Args:
        fn: the op; called as ``fn(*args)``.
        args: its arguments (the grad inputs should already require grad, or nothing is saved).
        exclude: tensors whose storages are not counted (parameters, buffers).
        activations: activation inputs, excluded only from ``extra_bytes`` (the outputs are found from
            ``fn``'s return value).

    Returns:
        :class:`SavedMemory` of the call.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> from torch_cs231n.tools.memory import saved_memory
        >>> x = torch.randn(4, 5, requires_grad=True)  # 80 bytes
        >>> w, b = torch.randn(3, 5, requires_grad=True), torch.randn(3, requires_grad=True)
        >>> saved_memory(MF.linear, (x, w, b), exclude=(w, b), activations=(x,))  # saves x (and w, excluded)
        SavedMemory(bytes=80, extra_bytes=0)
    """
    saved: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.enable_grad():
        out = fn(*args)
    skip = {_storage_key(t) for t in exclude if t is not None}
    skip_extra = skip | {_storage_key(t) for t in [*activations, *flat_tensors(out)] if t is not None}
    sizes = {}
    for t in saved:
        sizes[_storage_key(t)] = t.untyped_storage().nbytes()
    total = sum(size for key, size in sizes.items() if key not in skip)
    extra = sum(size for key, size in sizes.items() if key not in skip_extra)
    return SavedMemory(bytes=total, extra_bytes=extra)
