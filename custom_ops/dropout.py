"""Inverted dropout (CS231n ``dropout_forward`` / ``dropout_backward``).

``p`` is the probability of *dropping* a unit, as in ``torch.nn.functional.dropout``. The CS231n
assignment's ``dropout_param["p"]`` is the probability of *keeping* one: CS231n ``p=0.8`` is ``p=0.2`` here.

Forward (training):  mask ~ Bernoulli(1 - p),  out = x * mask / (1 - p)
Backward:            dx = dout * mask / (1 - p)
p = 1 (training):    out = x * 0 (zeros; NaN where x is infinite, as torch), dx = dout * 0; no mask drawn
Evaluation, p = 0:   out = x itself (inverted scaling already kept the expected activation unchanged).
Only the boolean mask (1 byte per element) is saved; the forward draws the mask as 0/1 values in x's
dtype, as torch does (the same draws), and keeps their boolean copy. The backward is a masked multiply, so
double backward works.

The backward's masked multiply by the scale is a :func:`custom_ops.fused.kernel`: one compiled pass with
fusion on (two in the eager formula). The forward runs the same formula eagerly: drawing the mask dominates
it. The mask itself is always drawn eagerly, so it is the same with fusion on or off.

In place (``inplace=True``): the result is written into ``input``, which is returned; the Function marks it
dirty (``ctx.mark_dirty``) so autograd rebases its history on the dropout, as for torch's ``dropout_``.
The backward needs only the mask, so nothing else is kept.
"""

from __future__ import annotations

import torch

from . import _autocast, fused
from ._checks import OpArgumentError, check_floating


@fused.kernel
def masked_scale(t: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """``t * mask * scale``: the kept values of ``t`` scaled by ``1 / (1 - p)``, the dropped ones zero."""
    return torch.mul(t, mask).mul_(scale)


class DropoutFunction(torch.autograd.Function):
    """x ``(*)`` -> ``(*)``; the mask is drawn from ``generator`` (the global RNG when None); with
    ``inplace`` the result overwrites x."""

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, p: float, generator: torch.Generator | None, inplace: bool
    ) -> torch.Tensor:
        if p == 1.0:  # everything dropped: no mask drawn (torch draws none either)
            noise = mask = None
            scale = 0.0
        else:
            # The mask drawn as torch draws it: 0/1 in x's dtype (the same values as a boolean draw), which
            # multiplies x directly; its boolean copy is what is saved (1 byte per element).
            noise = torch.empty_like(x).bernoulli_(1.0 - p, generator=generator)
            mask = noise.bool()
            scale = 1.0 / (1.0 - p)
        ctx.save_for_backward(mask)
        ctx.scale = scale
        if inplace:
            ctx.mark_dirty(x)
            return x.mul_(0.0) if noise is None else x.mul_(noise).mul_(scale)
        # The eager formula of masked_scale (never compiled here): the draw (about 10 ns per element on
        # CPU) dominates the forward, and a kernel call's overhead costs more than the pass it would save.
        return x * 0.0 if noise is None else masked_scale.fn(x, noise, scale)

    @staticmethod
    def backward(ctx, dout: torch.Tensor):
        (mask,) = ctx.saved_tensors
        if mask is None:
            return dout * 0.0, None, None, None
        # The boolean mask read as 0/1 bytes: multiplying by it converts it on the fly (on CPU several times
        # faster than converting a bool tensor), the same values.
        return masked_scale(dout, mask.view(torch.uint8), ctx.scale), None, None, None


def dropout(
    input: torch.Tensor,
    p: float = 0.5,
    training: bool = True,
    inplace: bool = False,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.dropout` (same parameters, order and defaults).

    Args:
        input: floating tensor of any shape.
        p: probability of dropping each element, in ``[0, 1]`` (CS231n's ``p`` is the keep probability);
            ``p=1`` gives zeros.
        training: apply dropout; when False the input is returned unchanged.
        inplace: write the result into ``input`` and return it (refused by autograd, as for torch, on a
            leaf that requires grad).
        generator: keyword-only, optional ``torch.Generator`` (on ``input``'s device) making the mask
            reproducible; by default the global RNG, whose CPU stream gives torch's mask for the same seed.

    Shape:
        - Input: ``(*)``, any shape.
        - Output and input gradient ``dx`` (``dout`` times the mask): ``(*)``, the same shape.

    Returns:
        The dropped-out tensor (``input`` itself in eval mode, for ``p=0``, and with ``inplace=True``).

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> out = MF.dropout(torch.ones(1000), p=0.5)  # kept values scaled by 1 / (1 - p)
        >>> sorted(out.unique().tolist())
        [0.0, 2.0]
        >>> MF.dropout(torch.ones(3), p=0.5, training=False)
        tensor([1., 1., 1.])
    """
    check_floating("input", input)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise OpArgumentError(f"p (the drop probability) must be in [0, 1], got {p!r}")
    if not training or p == 0.0:
        return input
    return _autocast.apply(DropoutFunction, "same", input, float(p), generator, bool(inplace))
