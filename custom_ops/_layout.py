"""Memory layout helpers: results keep a ``channels_last`` input's layout, as the built-in kernels do."""

from __future__ import annotations

import torch

from ._transforms import transforms_active


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a 4-D tensor laid out NHWC (and not also NCHW), else contiguous.

    Under a transform (:func:`transforms_active`) the layout is not asked (``vmap`` cannot answer for a
    batched tensor, nor lay one out channels_last) and results come contiguous: a layout, not a value."""
    if transforms_active():
        return torch.contiguous_format
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
