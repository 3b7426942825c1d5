"""ReLU (CS231n ``relu_forward`` / ``relu_backward``).

The reference, as the course writes it (``x`` the input, ``out`` the output, ``dout`` the upstream gradient,
a dot the forward-mode tangent):

    out  = max(x, 0)
    dx   = dout * [out > 0]          the local gradient is 1 where the unit is on, 0 where it is off
    ẏ    = ẋ * [out > 0]             the same mask applied to the tangent (the Jacobian is diagonal)

``[out > 0]`` equals ``[x > 0]``, so only the output is saved (the built-in saves it too, and the next layer
usually keeps it anyway). The backward is a masked multiply, itself differentiable, so double backward (and
forward-over-reverse) works.

The tuned backward, :func:`relu_backward`, the default: the mask made with ``sign(out)`` (0 or 1, as
``out >= 0``) instead of a comparison, since float-only elementwise kernels run much faster on CPU than ones
mixing bool and float; the product is written into the mask's buffer, so it makes one new tensor where the
reference makes two. Where ``dout`` is batched by ``vmap`` (it cannot be written into an unbatched mask) the
reference runs. It is a :func:`custom_ops.fused.kernel`: with fusion on it runs as one compiled pass, written
as a select (:func:`_relu_backward_select`), which a compiled loop vectorises best.

In place (``inplace=True``): x is clamped in place and returned; the Function marks it dirty
(``ctx.mark_dirty``), so autograd rebases x's history on the ReLU exactly as for torch's ``relu_``, and the
backward reads the (saved) output as before: no extra memory. Under a ``torch.func`` transform, which cannot
follow a custom Function's in-place update of a tangent, the in-place ReLU is the out-of-place one copied
into x (one temporary more), and behaves as torch's ``relu_`` there.
"""

from __future__ import annotations

from typing import Any

import torch

from . import _autocast, _reference, fused
from ._checks import check_floating
from ._function import fast_apply, without_jvp
from ._transforms import functorch_active, is_batched


# ------------------------------------------------------------------------------------------- reference
def relu_forward_reference(x: torch.Tensor) -> torch.Tensor:
    """``out = max(x, 0)``."""
    out = x.clamp_min(0)
    return out


def relu_backward_reference(dout: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``dx = dout * [out > 0]``."""
    on = out > 0
    dx = dout * on
    return dx


def relu_jvp_reference(x_dot: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``ẏ = ẋ * [out > 0]``."""
    on = out > 0
    out_dot = x_dot * on
    return out_dot


# ------------------------------------------------------------------------------------------------ tuned
def _relu_backward_select(dout: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``dx = dout * [out > 0]`` as one select: what fusion compiles (in eager, a bool mask costs several
    times the float-only ``sign``)."""
    return dout.masked_fill(out <= 0, 0)


@fused.kernel(one_loop=_relu_backward_select)
def relu_backward(dout: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``dx = dout * [out > 0]`` from the saved output, ``sign(out)`` the 0/1 mask (out >= 0), multiplied in
    the mask's buffer: one new tensor (a second costs more than the multiply on CPU). ``dout`` must not be
    batched by ``vmap`` where ``out`` is not (a batched product cannot be written into the mask):
    :func:`custom_ops._transforms.is_batched` tells."""
    return out.sign().mul_(dout)


@fast_apply
class ReLUFunction(torch.autograd.Function):
    """x ``(*)`` -> ``(*)``; with ``inplace`` the result overwrites x.

    Forward-mode derivative (``jvp``): ``ẏ = ẋ ⊙ [x > 0]``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, inplace: bool) -> torch.Tensor:
        if inplace:
            return x.clamp_min_(0)
        return relu_forward_reference(x)  # the reference is the fastest forward

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        x, inplace = inputs
        if inplace:
            ctx.mark_dirty(x)
        ctx.inplace = inplace
        ctx.reference = _reference.is_active()
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor, None]:
        (out,) = ctx.saved_tensors
        if ctx.reference or is_batched(dout):
            return relu_backward_reference(dout, out), None
        return relu_backward(dout, out), None

    @staticmethod
    def jvp(ctx: Any, x_dot: torch.Tensor, _inplace: None) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        if not ctx.inplace:
            return relu_jvp_reference(x_dot, out)
        # x was modified in place: autograd requires its tangent to be updated in place too (and the
        # version bump made visible through a batched tangent, as gradcheck's batched forward check uses)
        x_dot.mul_(out > 0)
        torch.autograd.graph.increment_version(x_dot)
        return x_dot


_ReLUFunctionTraced = without_jvp(ReLUFunction)  # what torch.compile traces


def relu(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.relu`.

    Args:
        input: floating tensor of any shape.
        inplace: write the result into ``input`` and return it (autograd refuses it on a leaf that
            requires grad, as for torch).

    Shape:
        - Input: ``(*)``, any shape.
        - Output and input gradient ``dx``: ``(*)``, the same shape as the input.

    Returns:
        ``max(input, 0)`` (``input`` itself, modified, with ``inplace=True``).

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> MF.relu(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([0., 0., 2.])
        >>> x = torch.tensor([-1.0, 3.0])
        >>> torch.func.jvp(MF.relu, (x,), (torch.ones(2),))  # (output, tangent ẋ ⊙ [x > 0])
        (tensor([0., 3.]), tensor([0., 1.]))
    """
    check_floating("input", input)
    function = _ReLUFunctionTraced if torch.compiler.is_compiling() else ReLUFunction
    if inplace and functorch_active():
        return input.copy_(_autocast.apply(function, "same", input, False))
    return _autocast.apply(function, "same", input, bool(inplace))
