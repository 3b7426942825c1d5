"""Element-wise activations met in torchvision classification models and EfficientNet-Lite.

Each is an ``autograd.Function`` with its derivative written out; the backwards are ordinary tensor
expressions of what was saved, so double backward works.

ReLU6:        out = min(max(x, 0), 6)                 dx = dout * [0 < x < 6]
Hardsigmoid:  out = min(max(x / 6 + 1/2, 0), 1)       dx = dout / 6 * [-3 < x < 3]
Hardswish:    out = x * min(max(x + 3, 0), 6) / 6     dx = dout * (0 if x < -3, x/3 + 1/2 if x <= 3, else 1)
Sigmoid:      out = s = 1 / (1 + exp(-x))             dx = dout * s * (1 - s)
SiLU (swish): out = x * s                             dx = dout * s * (1 + x * (1 - s))
The kink conventions (which side a boundary point belongs to) are PyTorch's, so gradients match the
built-ins exactly, boundaries included.
Saved for backward: the output where it determines the derivative (ReLU6, Sigmoid), else the input.
Each forward and backward allocates one or two full-size tensors and works in place on them; the masks
of the derivatives come from float-only kernels (clamp, sign), which on CPU are many times faster than
comparisons producing bool masks mixed with float tensors.

The backward formulas, and the out-of-place forwards of several steps (Hardsigmoid, Hardswish, SiLU), are
fused kernels (:func:`custom_ops.fused.kernel`): with fusion on, each runs as one compiled pass (the eager
formulas make one pass per step); the in-place forwards run eagerly.

In place (``inplace=True``, the functional twins' and modules' argument as in torch): the result is
written into x, which is returned and marked dirty (``ctx.mark_dirty``), so autograd rebases x's history
on the op, as for torch's ``relu6_``, ``hardsigmoid_``, ``hardswish_``, ``silu_``. ReLU6 saves the output,
so in place costs no extra memory; the others need the input for the derivative and save a copy of it
taken before it is overwritten (torch's in-place kernels keep the original input too).
"""

from __future__ import annotations

import torch

from . import _autocast, fused
from ._checks import check_floating


@fused.kernel
def relu6_backward(dout: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``dx = dout * [0 < out < 6]`` from the saved output."""
    # [0 < out < 6] = sign(out * (6 - out)) for out in [0, 6]: float-only kernels, no bool mask.
    return torch.rsub(out, 6).mul_(out).sign_().mul_(dout)


@fused.kernel
def hardsigmoid_forward(x: torch.Tensor) -> torch.Tensor:
    """``out = min(max(x / 6 + 1/2, 0), 1)``."""
    return (x / 6).add_(0.5).clamp_(0, 1)


@fused.kernel
def hardsigmoid_backward(dout: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``dx = dout / 6 * [-3 < x < 3]``."""
    # -[|x| < 3] = min(sign(|x| - 3), 0): float-only kernels, no bool mask.
    return x.abs().sub_(3).sign_().clamp_max_(0).mul_(dout).div_(-6)


@fused.kernel
def hardswish_forward(x: torch.Tensor) -> torch.Tensor:
    """``out = x * min(max(x + 3, 0), 6) / 6``."""
    return (x + 3).clamp_(0, 6).mul_(x).div_(6)


@fused.kernel
def hardswish_backward(dout: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``dx = dout * (0 if x < -3, x/3 + 1/2 if x <= 3, else 1)``."""
    # With c = clamp(x, -3, 3): slope = c / 3 + 1/2 - sign(x - c) / 2, which is 0 below -3 and 1 above 3
    # (float-only kernels; a where-chain over bool masks is many times slower on CPU).
    c = x.clamp(-3, 3)
    beyond = torch.sub(x, c).sign_()
    return c.div_(3).add_(0.5).sub_(beyond, alpha=0.5).mul_(dout)


@fused.kernel
def sigmoid_backward(dout: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``dx = dout * s * (1 - s)`` from the saved output ``s``."""
    return torch.rsub(s, 1).mul_(s).mul_(dout)


@fused.kernel
def silu_forward(x: torch.Tensor) -> torch.Tensor:
    """``out = x * sigmoid(x)``."""
    return torch.sigmoid(x).mul_(x)


@fused.kernel
def silu_backward(dout: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``dx = dout * s * (1 + x * (1 - s))`` with ``s = sigmoid(x)``."""
    s = torch.sigmoid(x)
    # 1 + x * (1 - s) = (x - x * s) + 1, then times s and dout, in place on a fresh temporary.
    return torch.addcmul(x, x, s, value=-1).add_(1).mul_(s).mul_(dout)


def _dirty(ctx, x: torch.Tensor) -> torch.Tensor:
    """Mark ``x`` as modified in place by the forward (autograd then rebases its history); return it."""
    ctx.mark_dirty(x)
    return x


class ReLU6Function(torch.autograd.Function):
    """x ``(*)`` -> ``(*)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, inplace: bool) -> torch.Tensor:
        out = _dirty(ctx, x).clamp_(0, 6) if inplace else x.clamp(0, 6)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, dout: torch.Tensor):
        (out,) = ctx.saved_tensors
        return relu6_backward(dout, out), None


class HardsigmoidFunction(torch.autograd.Function):
    """x ``(*)`` -> ``(*)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, inplace: bool) -> torch.Tensor:
        if not inplace:
            ctx.save_for_backward(x)
            return hardsigmoid_forward(x)
        ctx.save_for_backward(x.clone())
        return _dirty(ctx, x).div_(6).add_(0.5).clamp_(0, 1)

    @staticmethod
    def backward(ctx, dout: torch.Tensor):
        (x,) = ctx.saved_tensors
        return hardsigmoid_backward(dout, x), None


class HardswishFunction(torch.autograd.Function):
    """x ``(*)`` -> ``(*)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, inplace: bool) -> torch.Tensor:
        if not inplace:
            ctx.save_for_backward(x)
            return hardswish_forward(x)
        original = x.clone()
        ctx.save_for_backward(original)
        return _dirty(ctx, x).add_(3).clamp_(0, 6).mul_(original).div_(6)

    @staticmethod
    def backward(ctx, dout: torch.Tensor):
        (x,) = ctx.saved_tensors
        return hardswish_backward(dout, x), None


class SigmoidFunction(torch.autograd.Function):
    """x ``(*)`` -> ``(*)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = torch.sigmoid(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, dout: torch.Tensor) -> torch.Tensor:
        (s,) = ctx.saved_tensors
        return sigmoid_backward(dout, s)


class SiLUFunction(torch.autograd.Function):
    """x ``(*)`` -> ``(*)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, inplace: bool) -> torch.Tensor:
        if not inplace:
            ctx.save_for_backward(x)
            return silu_forward(x)
        ctx.save_for_backward(x.clone())
        return _dirty(ctx, x).mul_(torch.sigmoid(x))

    @staticmethod
    def backward(ctx, dout: torch.Tensor):
        (x,) = ctx.saved_tensors
        return silu_backward(dout, x), None


def _activation(function: type[torch.autograd.Function], input: torch.Tensor, inplace: bool) -> torch.Tensor:
    check_floating("input", input)
    return _autocast.apply(function, "same", input, bool(inplace))


def relu6(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.relu6`: ``min(max(x, 0), 6)``.

    Args:
        input: floating tensor of any shape.
        inplace: write the result into ``input`` and return it (autograd refuses it on a leaf that
            requires grad, as for torch).

    Shape:
        - Input: ``(*)``, any shape.
        - Output and input gradient ``dx``: ``(*)``, the same shape as the input.

    Returns:
        The activation of ``input`` (``input`` itself, modified, with ``inplace=True``).

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> x = torch.tensor([-4.0, -1.0, 0.0, 2.0, 8.0])
        >>> MF.relu6(x)
        tensor([0., 0., 0., 2., 6.])
    """
    return _activation(ReLU6Function, input, inplace)


def hardsigmoid(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.hardsigmoid`: ``min(max(x / 6 + 1/2, 0), 1)``.

    Args:
        input: floating tensor of any shape.
        inplace: write the result into ``input`` and return it (autograd refuses it on a leaf that
            requires grad, as for torch).

    Shape:
        - Input: ``(*)``, any shape.
        - Output and input gradient ``dx``: ``(*)``, the same shape as the input.

    Returns:
        The activation of ``input`` (``input`` itself, modified, with ``inplace=True``).

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> x = torch.tensor([-4.0, -1.0, 0.0, 2.0, 8.0])
        >>> MF.hardsigmoid(x)
        tensor([0.0000, 0.3333, 0.5000, 0.8333, 1.0000])
    """
    return _activation(HardsigmoidFunction, input, inplace)


def hardswish(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.hardswish`: ``x * min(max(x + 3, 0), 6) / 6``.

    Args:
        input: floating tensor of any shape.
        inplace: write the result into ``input`` and return it (autograd refuses it on a leaf that
            requires grad, as for torch).

    Shape:
        - Input: ``(*)``, any shape.
        - Output and input gradient ``dx``: ``(*)``, the same shape as the input.

    Returns:
        The activation of ``input`` (``input`` itself, modified, with ``inplace=True``).

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> x = torch.tensor([-4.0, -1.0, 0.0, 2.0, 8.0])
        >>> MF.hardswish(x)
        tensor([-0.0000, -0.3333,  0.0000,  1.6667,  8.0000])
    """
    return _activation(HardswishFunction, input, inplace)


def silu(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.silu`: ``x * sigmoid(x)`` (swish).

    Args:
        input: floating tensor of any shape.
        inplace: write the result into ``input`` and return it (autograd refuses it on a leaf that
            requires grad, as for torch).

    Shape:
        - Input: ``(*)``, any shape.
        - Output and input gradient ``dx``: ``(*)``, the same shape as the input.

    Returns:
        The activation of ``input`` (``input`` itself, modified, with ``inplace=True``).

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> x = torch.tensor([-4.0, -1.0, 0.0, 2.0, 8.0])
        >>> MF.silu(x)
        tensor([-0.0719, -0.2689,  0.0000,  1.7616,  7.9973])
    """
    return _activation(SiLUFunction, input, inplace)


def sigmoid(input: torch.Tensor) -> torch.Tensor:
    """Manual twin of :func:`torch.sigmoid` (torch's has no ``inplace``): ``1 / (1 + exp(-x))``.

    Args:
        input: floating tensor of any shape.

    Shape:
        - Input: ``(*)``, any shape.
        - Output and input gradient ``dx``: ``(*)``, the same shape as the input.

    Returns:
        The logistic sigmoid of ``input``.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> x = torch.tensor([-4.0, -1.0, 0.0, 2.0, 8.0])
        >>> MF.sigmoid(x)
        tensor([0.0180, 0.2689, 0.5000, 0.8808, 0.9997])
    """
    check_floating("input", input)
    return _autocast.apply(SigmoidFunction, "same", input)
