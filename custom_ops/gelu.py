"""GELU, the Gaussian error linear unit of transformers and ConvNeXt: ``x`` weighted by the probability
``Phi(x)`` that a standard normal is below it.

Exact (``approximate="none"``):
    out = x Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))
    dx  = dout * (Phi(x) + x phi(x)),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)   (the normal density)
Tanh approximation (``approximate="tanh"``), with u = sqrt(2 / pi) (x + 0.044715 x^3) and t = tanh(u):
    out = 0.5 x (1 + t)
    dx  = dout * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2 / pi) (1 + 3 * 0.044715 x^2))
Saved for backward: the input only (the built-in saves it too). The backward is an ordinary tensor
expression of ``x``, so double backward works.

The forward and backward formulas are fused kernels (:func:`custom_ops.fused.kernel`): with fusion on, each
runs as one compiled pass (the eager formulas make one pass per step, five to eleven).
"""

from __future__ import annotations

import math

import torch

from . import _autocast, fused
from ._checks import OpArgumentError, check_floating

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_KAPPA = 0.044715


@fused.kernel
def gelu_forward(x: torch.Tensor, approximate: str) -> torch.Tensor:
    """``out = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))``, or ``0.5 x (1 + tanh(u))`` with ``"tanh"``."""
    if approximate == "tanh":
        t = torch.mul(x, x).mul_(_KAPPA).add_(1).mul_(x).mul_(_SQRT_2_OVER_PI).tanh_()  # tanh(u)
        return t.add_(1).mul_(x).mul_(0.5)
    return torch.mul(x, _SQRT_HALF).erf_().add_(1).mul_(x).mul_(0.5)  # 0.5 x (1 + erf(x / sqrt 2))


@fused.kernel
def gelu_backward(dout: torch.Tensor, x: torch.Tensor, approximate: str) -> torch.Tensor:
    """``dx = dout * (Phi(x) + x phi(x))``, or the tanh approximation's derivative with ``"tanh"``."""
    # In-place steps only on fresh temporaries whose values no autograd node keeps (the results of
    # exp and tanh are kept: never modified), so the backward stays differentiable.
    if approximate == "tanh":
        x2 = x * x
        t = torch.tanh(torch.mul(x2, _KAPPA).add_(1).mul_(x).mul_(_SQRT_2_OVER_PI))
        du = torch.mul(x2, 3 * _KAPPA).add_(1).mul_(_SQRT_2_OVER_PI)  # du/dx
        # 0.5 (1 + t) + 0.5 x (1 - t^2) du
        slope = torch.mul(t, t).neg_().add_(1).mul_(du).mul_(x).add_(t).add_(1).mul_(0.5)
    else:
        pdf = torch.exp(torch.mul(x, x).mul_(-0.5))  # phi(x) sqrt(2 pi)
        cdf = torch.mul(x, _SQRT_HALF).erf_().add_(1).mul_(0.5)  # Phi(x)
        slope = cdf.addcmul_(x, pdf, value=_INV_SQRT_2PI)  # Phi(x) + x phi(x)
    return slope.mul_(dout)


class GELUFunction(torch.autograd.Function):
    """x ``(*)`` -> ``(*)``; ``approximate`` is ``"none"`` or ``"tanh"``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, approximate: str) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.approximate = approximate
        return gelu_forward(x, approximate)

    @staticmethod
    def backward(ctx, dout: torch.Tensor):
        (x,) = ctx.saved_tensors
        return gelu_backward(dout, x, ctx.approximate), None


def gelu(input: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.gelu`.

    Args:
        input: any shape, floating point.
        approximate: ``"none"`` (exact, with ``erf``) or ``"tanh"`` (the tanh approximation).

    Shape:
        - Input: ``(*)``; output and input gradient: ``(*)``, the same shape.

    Returns:
        ``input * Phi(input)`` (or its tanh approximation), a new tensor.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> MF.gelu(torch.tensor([-1.0, 0.0, 1.0]))
        tensor([-0.1587,  0.0000,  0.8413])
        >>> MF.gelu(torch.tensor([1.0]), approximate="tanh")
        tensor([0.8412])
    """
    check_floating("input", input)
    if approximate not in ("none", "tanh"):
        raise OpArgumentError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return _autocast.apply(GELUFunction, "same", input, approximate)
