"""Memory layout helpers: results keep a ``channels_last`` input's layout, as the built-in kernels do."""

from __future__ import annotations

import torch

# The dispatch key of the legacy ``torch._vmap_internals.vmap`` (what gradcheck's batched checks run): in
# the thread's dispatch keys while it runs; a key with no name in torch._C.DispatchKey.
_LEGACY_VMAP = torch._C._parse_dispatch_key("VmapMode")


def transforms_active() -> bool:
    """Whether a ``torch.func`` transform (``vmap``, ``grad``, ``jvp``, ...) or the legacy
    ``torch._vmap_internals.vmap`` (gradcheck's ``check_batched_grad`` / ``check_batched_forward_grad``)
    is running."""
    if torch._C._are_functorch_transforms_active():
        return True
    # Dynamo cannot trace the dispatch-key query; a compiled graph does not run under the legacy vmap.
    return not torch.compiler.is_compiling() and torch._C._dispatch_tls_is_dispatch_key_included(_LEGACY_VMAP)


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a 4-D tensor laid out NHWC (and not also NCHW), else contiguous.

    Under a transform (:func:`transforms_active`) the layout is not asked (``vmap`` cannot answer for a
    batched tensor, nor lay one out channels_last) and results come contiguous: a layout, not a value."""
    if transforms_active():
        return torch.contiguous_format
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
