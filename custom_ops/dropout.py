"""Inverted dropout (CS231n ``dropout_forward`` / ``dropout_backward``).

``p`` is the probability of *dropping* a unit, as in ``torch.nn.functional.dropout``. The CS231n
assignment's ``dropout_param["p"]`` is the probability of *keeping* one: CS231n ``p=0.8`` is ``p=0.2`` here.

Forward (training):  mask ~ Bernoulli(1 - p),  out = x * mask / (1 - p)
Backward:            dx = dout * mask / (1 - p)
Evaluation:          out = x (inverted scaling already kept the expected activation unchanged).
Only the boolean mask (1 byte per element) is saved. The backward is a masked multiply, so double
backward works.
"""

from __future__ import annotations

import torch

from . import _autocast
from ._checks import check_floating


class DropoutFunction(torch.autograd.Function):
    """x ``(*)`` -> ``(*)``; the mask is drawn from ``generator`` (the global RNG when None)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
        mask = torch.empty_like(x, dtype=torch.bool).bernoulli_(1.0 - p, generator=generator)
        scale = 1.0 / (1.0 - p)
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return (x * mask).mul_(scale)

    @staticmethod
    def backward(ctx, dout: torch.Tensor):
        (mask,) = ctx.saved_tensors
        return (dout * mask).mul_(ctx.scale), None, None


def dropout(
    input: torch.Tensor, p: float = 0.5, training: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.dropout`; any shape.

    Args:
        input: floating tensor of any shape.
        p: probability of dropping each element, in ``[0, 1)`` (CS231n's ``p`` is the keep probability).
        training: apply dropout; when False the input is returned unchanged.
        generator: optional ``torch.Generator`` (on ``input``'s device) making the mask reproducible.
    """
    check_floating("input", input)
    if not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"p (the drop probability) must be in [0, 1), got {p!r}")
    if not training or p == 0.0:
        return input
    return _autocast.apply(DropoutFunction, "same", input, float(p), generator)
