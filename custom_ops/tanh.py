"""Tanh, the squashing non-linearity of the CS231n RNN (``rnn_step_forward`` / ``rnn_step_backward``).

The reference, as the course writes it (a dot marks the forward-mode tangent):

    out  = tanh(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x))
    dx   = dout * (1 - out^2)          d tanh(x) / dx = 1 - tanh(x)^2
    ẏ    = ẋ * (1 - out^2)             the same local derivative (the Jacobian is diagonal)

Saved: the output only (as the built-in). The backward is a tensor expression of the saved output, so double
backward works (autograd differentiates through the saved output too), and forward-over-reverse as well.

The tuned backward, :func:`tanh_backward`, the default: ``dout - (dout * out) * out`` computed in one new
tensor, where the reference's three formulas make three (on CPU a new tensor costs more than a pass over
one). It is a :func:`custom_ops.fused.kernel`: one compiled pass with fusion on.
"""

from __future__ import annotations

from typing import Any

import torch

from . import _autocast, _reference, fused
from ._checks import OpDtypeError, check_tensor
from ._function import fast_apply, without_jvp


# ------------------------------------------------------------------------------------------- reference
def tanh_forward_reference(x: torch.Tensor) -> torch.Tensor:
    """``out = tanh(x)``."""
    out = torch.tanh(x)
    return out


def tanh_backward_reference(dout: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``dx = dout * (1 - out^2)``."""
    local = 1 - out * out
    dx = dout * local
    return dx


def tanh_jvp_reference(x_dot: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``ẏ = ẋ * (1 - out^2)``."""
    local = 1 - out * out
    out_dot = x_dot * local
    return out_dot


# ------------------------------------------------------------------------------------------------ tuned
@fused.kernel
def tanh_backward(dout: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``dx = dout - (dout * out) * out`` (= ``dout * (1 - out^2)``) from the saved output, in the buffer of
    ``dout * out`` (batched under ``vmap`` whenever either is)."""
    return torch.mul(dout, out).mul_(out).neg_().add_(dout)


@fast_apply
class TanhFunction(torch.autograd.Function):
    """x ``(*)`` -> ``(*)``.

    Forward-mode derivative (``jvp``): ``ẏ = ẋ ⊙ (1 − y²)``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return tanh_forward_reference(x)  # the reference is the fastest forward

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        ctx.reference = _reference.is_active()
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        if ctx.reference:
            return tanh_backward_reference(dout, out)
        return tanh_backward(dout, out)

    @staticmethod
    def jvp(ctx: Any, x_dot: torch.Tensor) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        return tanh_jvp_reference(x_dot, out)


_TanhFunctionTraced = without_jvp(TanhFunction)  # what torch.compile traces


def tanh(input: torch.Tensor) -> torch.Tensor:
    """Manual twin of :func:`torch.tanh` (and :func:`torch.nn.functional.tanh`).

    Args:
        input: any shape. Integer and bool inputs are promoted to the default floating dtype, as
            ``torch.tanh`` does (they get no gradient); complex inputs are refused.

    Shape:
        - Input: ``(*)``; output and input gradient: ``(*)``, the same shape.

    Returns:
        ``tanh(input)``, a new tensor.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> MF.tanh(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([-0.7616,  0.0000,  0.9640])
        >>> torch.func.jvp(MF.tanh, (torch.zeros(2),), (torch.tensor([1.0, 2.0]),))[1]  # ẋ (1 − tanh²)
        tensor([1., 2.])
    """
    check_tensor("input", input)
    if input.is_complex():
        raise OpDtypeError(f"input must be a real tensor, got dtype {input.dtype}")
    if not input.is_floating_point():
        input = input.to(torch.get_default_dtype())
    function = _TanhFunctionTraced if torch.compiler.is_compiling() else TanhFunction
    return _autocast.apply(function, "same", input)
