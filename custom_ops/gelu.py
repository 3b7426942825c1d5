"""GELU, the Gaussian error linear unit of transformers and ConvNeXt: ``x`` weighted by the probability
``Phi(x)`` that a standard normal is below it.

The reference (the top of this file). GELU is element-wise, so its Jacobian is diagonal and both
derivatives are one product with the local slope ``f'(x)``: backward ``dx = dout * f'(x)``, forward mode
``y_dot = f'(x) * x_dot``.

Exact (``approximate="none"``), with the normal's distribution ``Phi`` and density ``phi``:
    Phi(x) = (1 + erf(x / sqrt 2)) / 2,   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
    y      = x Phi(x)
    f'(x)  = Phi(x) + x phi(x)                                   (product rule, Phi' = phi)
Tanh approximation (``approximate="tanh"``), ``Phi(x) ~ (1 + tanh(u)) / 2``:
    u      = sqrt(2 / pi) (x + 0.044715 x^3),   t = tanh(u)
    y      = x (1 + t) / 2
    f'(x)  = (1 + t) / 2 + x (1 - t^2) u' / 2,   u' = sqrt(2 / pi) (1 + 3 * 0.044715 x^2)
Saved: the input only (the built-in saves it too). The backward is an ordinary differentiable tensor
expression of ``x``, so double backward and forward-over-reverse work.

The tuned formulations (``tuned_*``, the default path) compute the same values in place on two or three
fresh temporaries instead of one per step. They are fused kernels (:func:`custom_ops.fused.kernel`): with
fusion on, each runs as one compiled pass. As for the other activations they run on the plain first-order
path only (:func:`custom_ops._transforms.pointwise_reference`).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from . import _autocast, fused
from ._checks import OpArgumentError, check_floating
from ._function import fast_apply, without_jvp
from ._transforms import pointwise_reference

_KAPPA = 0.044715  # the cubic term of the tanh approximation


# ------------------------------------------------------------------------------------------ the reference
def gelu_forward(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """``y = x Phi(x)``, or ``x (1 + tanh(u)) / 2`` with ``approximate="tanh"``."""
    if approximate == "tanh":
        u = math.sqrt(2 / math.pi) * (x + _KAPPA * x**3)
        t = torch.tanh(u)
        out = 0.5 * x * (1 + t)
        return out
    cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2)))  # Phi(x)
    out = x * cdf
    return out


def gelu_derivative(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """``f'(x) = Phi(x) + x phi(x)``, or the tanh approximation's ``(1 + t) / 2 + x (1 - t^2) u' / 2``."""
    if approximate == "tanh":
        u = math.sqrt(2 / math.pi) * (x + _KAPPA * x**3)
        t = torch.tanh(u)
        du = math.sqrt(2 / math.pi) * (1 + 3 * _KAPPA * x**2)  # u'(x)
        slope = 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * du
        return slope
    cdf = 0.5 * (1 + torch.erf(x / math.sqrt(2)))  # Phi(x)
    pdf = torch.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)  # phi(x)
    slope = cdf + x * pdf
    return slope


def gelu_backward(dout: torch.Tensor, x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """``dx = dout * f'(x)``."""
    dx = dout * gelu_derivative(x, approximate)
    return dx


def gelu_jvp(x_dot: torch.Tensor, x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """``y_dot = f'(x) * x_dot``."""
    out_dot = gelu_derivative(x, approximate) * x_dot
    return out_dot


# ---------------------------------------------------------------------------- the tuned formulations
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


@fused.kernel
def tuned_gelu_forward(x: torch.Tensor, approximate: str) -> torch.Tensor:
    """``x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))``, or ``0.5 x (1 + tanh(u))`` with ``"tanh"``."""
    if approximate == "tanh":
        t = torch.mul(x, x).mul_(_KAPPA).add_(1).mul_(x).mul_(_SQRT_2_OVER_PI).tanh_()  # tanh(u)
        return t.add_(1).mul_(x).mul_(0.5)
    return torch.mul(x, _SQRT_HALF).erf_().add_(1).mul_(x).mul_(0.5)


@fused.kernel
def tuned_gelu_backward(dout: torch.Tensor, x: torch.Tensor, approximate: str) -> torch.Tensor:
    """``dout * f'(x)``; also the tuned jvp, with the tangent ``x_dot`` for ``dout``."""
    if approximate == "tanh":
        x2 = x * x
        t = torch.mul(x2, _KAPPA).add_(1).mul_(x).mul_(_SQRT_2_OVER_PI).tanh_()
        du = torch.mul(x2, 3 * _KAPPA).add_(1).mul_(_SQRT_2_OVER_PI)  # u'(x)
        # 0.5 (1 + t) + 0.5 x (1 - t^2) u'
        slope = torch.mul(t, t).neg_().add_(1).mul_(du).mul_(x).add_(t).add_(1).mul_(0.5)
    else:
        pdf = torch.mul(x, x).mul_(-0.5).exp_()  # phi(x) sqrt(2 pi)
        cdf = torch.mul(x, _SQRT_HALF).erf_().add_(1).mul_(0.5)  # Phi(x)
        slope = cdf.addcmul_(x, pdf, value=_INV_SQRT_2PI)  # Phi(x) + x phi(x)
    # Out of place: under vmap of the backward, dout is batched and the slope is not.
    return dout * slope


# ---------------------------------------------------------------------------------------- the Function
@fast_apply
class GELUFunction(torch.autograd.Function):
    """``y = x Phi(x)`` (or its tanh approximation), x ``(*)`` -> ``(*)``; ``approximate`` is ``"none"`` or
    ``"tanh"``.

    Backward ``dx = dout * f'(x)``; jvp ``y_dot = f'(x) * x_dot``; ``f'(x) = Phi(x) + x phi(x)``, or
    ``(1 + t) / 2 + x (1 - t^2) u' / 2`` for the tanh approximation.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, approximate: str) -> torch.Tensor:
        if pointwise_reference():
            return gelu_forward(x, approximate)
        return tuned_gelu_forward(x, approximate)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, str], output: torch.Tensor) -> None:
        x, approximate = inputs
        ctx.approximate = approximate
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        if pointwise_reference():
            return gelu_backward(dout, x, ctx.approximate), None
        return tuned_gelu_backward(dout, x, ctx.approximate), None

    @staticmethod
    def jvp(ctx: Any, x_dot: torch.Tensor, _: None) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        if pointwise_reference():
            return gelu_jvp(x_dot, x, ctx.approximate)
        return tuned_gelu_backward(x_dot, x, ctx.approximate)


_GELU_FOR_COMPILE = without_jvp(GELUFunction)


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
    function = _GELU_FOR_COMPILE if torch.compiler.is_compiling() else GELUFunction
    return _autocast.apply(function, "same", input, approximate)
