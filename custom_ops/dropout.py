"""Inverted dropout (CS231n ``dropout_forward`` / ``dropout_backward``).

``p`` is the probability of *dropping* a unit, as in ``torch.nn.functional.dropout``. The CS231n
assignment's ``dropout_param["p"]`` is the probability of *keeping* one: CS231n ``p=0.8`` is ``p=0.2`` here.

The reference, as the course writes it (training mode; a dot marks the forward-mode tangent):

    mask ~ Bernoulli(1 - p)            1 keeps a unit, 0 drops it
    out  = x * mask / (1 - p)          inverted scaling: the expected activation stays x
    dx   = dout * mask / (1 - p)       the mask is a constant: the same scaled mask for the gradient
    ẏ    = ẋ * mask / (1 - p)

p = 1 (training): out = x * 0 (zeros; NaN where x is infinite, as torch), dx = dout * 0; no mask drawn.
Evaluation, p = 0: out = x itself (inverted scaling already kept the expected activation unchanged).

The mask is drawn by :func:`dropout` itself, as torch draws it (0/1 values in x's dtype from
``bernoulli_``: the same draws as ``F.dropout``), and handed to the Function, which is deterministic. So
under ``torch.func.vmap`` the draw follows vmap's ``randomness=`` exactly as torch's random ops do:
``"error"`` (the default) raises torch's error, ``"same"`` draws one mask for the whole batch,
``"different"`` one per element (the masks ``F.dropout`` draws there); a ``generator`` is used as torch's
random ops use one. Only the boolean copy of the mask is saved (1 byte per element). The backward is a
masked multiply, so double backward (and forward-over-reverse) works.

The tuned backward, :func:`masked_scale`, the default: the boolean mask read as 0/1 bytes, which a multiply
converts on the fly (on CPU several times faster than converting a bool tensor), scaled in the product's
buffer. It is a :func:`custom_ops.fused.kernel`: one compiled pass with fusion on (two in eager). The forward
runs the same formula eagerly: drawing the mask dominates it, and a compiled call's overhead costs more than
the pass it would save.

In place (``inplace=True``): the result is written into ``input``, which is returned; the Function marks it
dirty (``ctx.mark_dirty``) so autograd rebases its history on the dropout, as for torch's ``dropout_``.
Under a ``torch.func`` transform, which cannot follow a custom Function's in-place update of a tangent, the
out-of-place result is copied into ``input`` (one temporary more).
"""

from __future__ import annotations

from typing import Any

import torch

from . import _autocast, _reference, fused
from ._checks import OpArgumentError, check_floating
from ._function import fast_apply, without_jvp
from ._transforms import functorch_active


# ------------------------------------------------------------------------------------------- reference
def draw_mask(x: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """``mask ~ Bernoulli(1 - p)``, 0/1 values in x's dtype and shape (torch's draw for ``F.dropout``)."""
    mask = torch.empty_like(x).bernoulli_(1.0 - p, generator=generator)
    return mask


def dropout_forward_reference(x: torch.Tensor, mask: torch.Tensor | None, p: float) -> torch.Tensor:
    """``out = x * mask / (1 - p)``; ``x * 0`` for p = 1 (mask None)."""
    if mask is None:
        return x * 0.0
    out = x * mask / (1.0 - p)
    return out


def dropout_backward_reference(dout: torch.Tensor, mask: torch.Tensor | None, p: float) -> torch.Tensor:
    """``dx = dout * mask / (1 - p)``; ``dout * 0`` for p = 1 (mask None)."""
    if mask is None:
        return dout * 0.0
    dx = dout * mask / (1.0 - p)
    return dx


def dropout_jvp_reference(x_dot: torch.Tensor, mask: torch.Tensor | None, p: float) -> torch.Tensor:
    """``ẏ = ẋ * mask / (1 - p)``; ``ẋ * 0`` for p = 1 (mask None)."""
    if mask is None:
        return x_dot * 0.0
    out_dot = x_dot * mask / (1.0 - p)
    return out_dot


# ------------------------------------------------------------------------------------------------ tuned
@fused.kernel
def masked_scale(t: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """``t * mask * scale``: the kept values of ``t`` scaled by ``1 / (1 - p)``, the dropped ones zero."""
    return torch.mul(t, mask).mul_(scale)


@fast_apply
class DropoutFunction(torch.autograd.Function):
    """x ``(*)``, mask ``(*)`` (0/1 in x's dtype; None for p = 1) -> ``(*)``; with ``inplace`` the result
    overwrites x.

    Forward-mode derivative (``jvp``): ``ẏ = ẋ ⊙ mask / (1 − p)``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, mask: torch.Tensor | None, p: float, inplace: bool) -> torch.Tensor:
        if inplace:
            return x.mul_(0.0) if mask is None else x.mul_(mask).mul_(1.0 / (1.0 - p))
        if mask is None or _reference.is_active():
            return dropout_forward_reference(x, mask, p)
        return masked_scale.fn(x, mask, 1.0 / (1.0 - p))  # eagerly: see the module docstring

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        x, mask, p, inplace = inputs
        if inplace:
            ctx.mark_dirty(x)
        keep = None if mask is None else mask.bool()  # 1 byte per element
        ctx.p = p
        ctx.inplace = inplace
        ctx.reference = _reference.is_active()
        ctx.save_for_backward(keep)
        ctx.save_for_forward(keep)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (keep,) = ctx.saved_tensors
        if keep is None or ctx.reference:
            return dropout_backward_reference(dout, keep, ctx.p), None, None, None
        return masked_scale(dout, keep.view(torch.uint8), 1.0 / (1.0 - ctx.p)), None, None, None

    @staticmethod
    def jvp(ctx: Any, x_dot: torch.Tensor, _mask: None, _p: None, _inplace: None) -> torch.Tensor:
        (keep,) = ctx.saved_tensors
        if not ctx.inplace:
            return dropout_jvp_reference(x_dot, keep, ctx.p)
        # x was modified in place: autograd requires its tangent to be updated in place too (and the
        # version bump made visible through a batched tangent, as gradcheck's batched forward check uses)
        if keep is None:
            x_dot.mul_(0.0)
        else:
            x_dot.mul_(keep).mul_(1.0 / (1.0 - ctx.p))
        torch.autograd.graph.increment_version(x_dot)
        return x_dot


_DropoutFunctionTraced = without_jvp(DropoutFunction)  # what torch.compile traces


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
            Under ``torch.func.vmap`` the mask follows vmap's ``randomness=`` as ``F.dropout``'s does.

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
        >>> same = torch.func.vmap(MF.dropout, randomness="same")(torch.ones(2, 6))  # one mask for the batch
        >>> torch.equal(same[0], same[1])
        True
    """
    check_floating("input", input)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise OpArgumentError(f"p (the drop probability) must be in [0, 1], got {p!r}")
    if not training or p == 0.0:
        return input
    p = float(p)
    mask = None if p == 1.0 else draw_mask(input, p, generator)  # p = 1: no mask (torch draws none either)
    function = _DropoutFunctionTraced if torch.compiler.is_compiling() else DropoutFunction
    if inplace and functorch_active():
        return input.copy_(_autocast.apply(function, "same", input, mask, p, False))
    return _autocast.apply(function, "same", input, mask, p, bool(inplace))
