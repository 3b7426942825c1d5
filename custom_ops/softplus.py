"""Softplus and Mish, the smooth ReLUs: softplus is a ReLU with its kink rounded off, and Mish (used by
YOLOv4's CSPDarknet) gates ``x`` with ``tanh`` of it, as SiLU gates ``x`` with a sigmoid.

The reference (the top of this file). Both are element-wise, so their Jacobians are diagonal and both
derivatives are one product with the local slope ``f'(x)``: backward ``dx = dout * f'(x)``, forward mode
``y_dot = f'(x) * x_dot``.

Softplus, with a sharpness ``beta`` and a ``threshold`` above which it is the identity (as torch):
    y      = log(1 + exp(beta x)) / beta          (beta x <= threshold)
           = x                                    (beta x >  threshold: the two differ by < exp(-threshold))
    f'(x)  = z / (z + 1) = sigmoid(beta x), z = exp(beta x)   (beta x <= threshold)
           = 1                                    (beta x >  threshold; at the threshold itself the smooth
                                                   slope, as torch's softplus_backward)
``log(1 + exp(bx))`` is written ``log1p(exp(bx))``, as torch computes it: accurate where ``exp(bx)`` is tiny
(very negative ``x``). ``exp(bx)`` overflows to inf above ``bx ~ 88`` in float32 (``~ 709`` in float64),
where the naive form gives inf; the threshold's identity branch takes over well before, and the smooth
branch is evaluated on ``min(bx, threshold)`` (otherwise the inf of the entries it discards would turn into
NaN in a double backward). A threshold above the overflow point gives torch's inf (forward) and NaN (slope)
there. The second derivative, ``beta z / (z + 1)^2``, is torch's: 0 from the threshold on.

Mish, with ``sp = softplus(x)`` (beta 1, threshold 20) and ``t = tanh(sp)``:
    y      = x t
    f'(x)  = t + x sigmoid(x) (1 - t^2)               (product rule; d sp / dx = sigmoid(x), tanh' = 1 - t^2)
which is torch's mish_backward. torch's mish kernel uses ``log1p(exp(x))`` without the threshold; above
``x = 20`` both give ``t = 1`` to float64 precision. The sigmoid is torch's (``torch.sigmoid``): its own
derivative ``s (1 - s)`` stays finite in a double backward where ``1 / (1 + exp(-x))``'s overflows. So the
second derivative is finite everywhere: 0 where ``exp(x)`` overflows, where torch's double backward of
mish gives NaN.

Saved: the input only (the built-ins save it too). The backwards are ordinary differentiable tensor
expressions of ``x``, so double backward and forward-over-reverse work.

In place (Mish's ``inplace=True``, as torch's ``mish_``): as the activations of
:mod:`custom_ops.activations` (its ``_pointwise`` wrapper runs it): the result is written into ``x``, which
is marked dirty, and the slope is computed from a copy of ``x`` taken before it is overwritten. torch's
softplus has no in-place form.

Under ``torch.compile`` the wrappers apply twins of the Functions without their ``jvp``. Under CUDA (XPU,
MPS) autocast softplus runs in float32, as torch's autocast lists it; Mish runs in the input's dtype.
"""

from __future__ import annotations

from typing import Any

import torch

from . import _autocast
from ._checks import OpArgumentError, check_floating
from ._function import fast_apply, without_jvp
from .activations import _input_grads, _output_tangent, _pointwise, _save_input, _vmap_elementwise


# ------------------------------------------------------------------------------------------ the reference
def _below_threshold(bx: torch.Tensor, threshold: float) -> torch.Tensor:
    """``min(bx, threshold)``, differentiable only where ``bx < threshold``: the argument of the smooth
    branch. Above the threshold ``where`` discards that branch, and its ``exp`` must not overflow there (an
    inf would become NaN in a double backward); at the threshold the value is ``bx``'s, with torch's zero
    second derivative (its softplus_double_backward masks ``beta x < threshold``). A NaN stays NaN."""
    return torch.where(bx >= threshold, threshold, bx)


def softplus_forward(x: torch.Tensor, beta: float = 1.0, threshold: float = 20.0) -> torch.Tensor:
    """``y = log(1 + exp(beta x)) / beta``, or ``x`` where ``beta x > threshold``."""
    bx = x * beta
    above = bx > threshold  # the identity branch
    smooth = torch.log1p(torch.exp(_below_threshold(bx, threshold))) / beta
    out = torch.where(above, x, smooth)
    return out


def softplus_derivative(x: torch.Tensor, beta: float = 1.0, threshold: float = 20.0) -> torch.Tensor:
    """``f'(x) = z / (z + 1) = sigmoid(beta x)``, ``z = exp(beta x)``; 1 where ``beta x > threshold``."""
    bx = x * beta
    above = bx > threshold
    z = torch.exp(_below_threshold(bx, threshold))
    smooth_slope = z / (z + 1)
    slope = torch.where(above, torch.ones_like(x), smooth_slope)
    return slope


def softplus_backward(
    dout: torch.Tensor, x: torch.Tensor, beta: float = 1.0, threshold: float = 20.0
) -> torch.Tensor:
    """``dx = dout * f'(x)``."""
    dx = dout * softplus_derivative(x, beta, threshold)
    return dx


def softplus_jvp(
    x_dot: torch.Tensor, x: torch.Tensor, beta: float = 1.0, threshold: float = 20.0
) -> torch.Tensor:
    """``y_dot = f'(x) * x_dot``."""
    out_dot = softplus_derivative(x, beta, threshold) * x_dot
    return out_dot


def mish_forward(x: torch.Tensor) -> torch.Tensor:
    """``y = x tanh(softplus(x))``."""
    sp = softplus_forward(x)
    t = torch.tanh(sp)
    out = x * t
    return out


def mish_derivative(x: torch.Tensor) -> torch.Tensor:
    """``f'(x) = t + x sigmoid(x) (1 - t^2)`` with ``t = tanh(softplus(x))``."""
    sp = softplus_forward(x)
    t = torch.tanh(sp)
    s = torch.sigmoid(x)  # d softplus(x) / dx
    slope = t + x * s * (1 - t * t)
    return slope


def mish_backward(dout: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``dx = dout * f'(x)``."""
    dx = dout * mish_derivative(x)
    return dx


def mish_jvp(x_dot: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y_dot = f'(x) * x_dot``."""
    out_dot = mish_derivative(x) * x_dot
    return out_dot


# ------------------------------------------------------------------------------------- the Functions
@fast_apply
class SoftplusFunction(torch.autograd.Function):
    """``y = log(1 + exp(beta x)) / beta`` (``x`` where ``beta x > threshold``), x ``(*)`` -> ``(*)``.

    Backward ``dx = dout * f'(x)``; jvp ``y_dot = f'(x) * x_dot``; ``f'(x) = sigmoid(beta x)``, 1 where
    ``beta x > threshold``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, beta: float, threshold: float) -> torch.Tensor:
        return softplus_forward(x, beta, threshold)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, float, float], output: torch.Tensor) -> None:
        x, ctx.beta, ctx.threshold = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        return softplus_backward(dout, x, ctx.beta, ctx.threshold), None, None

    @staticmethod
    def jvp(ctx: Any, x_dot: torch.Tensor, *_: None) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return softplus_jvp(x_dot, x, ctx.beta, ctx.threshold)


@fast_apply
class MishFunction(torch.autograd.Function):
    """``y = x tanh(softplus(x))``, x ``(*)`` -> ``(*)``; with ``original`` (a copy of ``x``), the result of
    ``original`` is written into ``x``.

    Backward ``dx = dout * f'(x)``; jvp ``y_dot = f'(x) * x_dot``; ``f'(x) = t + x sigmoid(x) (1 - t^2)``,
    ``t = tanh(softplus(x))``.
    """

    @staticmethod
    def forward(x: torch.Tensor, original: torch.Tensor | None) -> torch.Tensor:
        if original is None:
            return mish_forward(x)
        return x.copy_(mish_forward(original))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, Any], output: torch.Tensor) -> None:
        _save_input(ctx, *inputs)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        (x,) = ctx.saved_tensors
        return _input_grads(ctx, mish_backward(dout, x))

    @staticmethod
    def jvp(ctx: Any, x_dot: torch.Tensor | None, original_dot: torch.Tensor | None) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        out_dot = mish_jvp(original_dot if ctx.inplace else x_dot, x)
        return _output_tangent(x_dot, out_dot) if ctx.inplace else out_dot

    @staticmethod
    def vmap(
        info: Any, in_dims: tuple[Any, ...], x: torch.Tensor, original: torch.Tensor | None
    ) -> tuple[torch.Tensor, int]:
        return _vmap_elementwise(MishFunction, in_dims, x, original)


# ------------------------------------------------------------------------------- the functional twins
_SOFTPLUS_FOR_COMPILE = without_jvp(SoftplusFunction)
_MISH_FOR_COMPILE = without_jvp(MishFunction)


def softplus(input: torch.Tensor, beta: float = 1.0, threshold: float = 20.0) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.softplus`: ``log(1 + exp(beta x)) / beta``, and ``x``
    itself where ``beta x > threshold``.

    Args:
        input: floating tensor of any shape.
        beta: the sharpness (a real number; the larger, the closer to ReLU).
        threshold: above ``beta x > threshold`` the op is the identity (a real number).

    Shape:
        - Input: ``(*)``, any shape.
        - Output and input gradient ``dx``: ``(*)``, the same shape as the input.

    Returns:
        The softplus of ``input``, a new tensor.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> x = torch.tensor([-2.0, 0.0, 2.0, 30.0])
        >>> MF.softplus(x)
        tensor([ 0.1269,  0.6931,  2.1269, 30.0000])
        >>> MF.softplus(x, beta=2.0, threshold=3.0)[2:]  # 2 x > 3: the identity
        tensor([ 2., 30.])
    """
    check_floating("input", input)
    for name, value in (("beta", beta), ("threshold", threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    if beta == 0:
        raise OpArgumentError("beta must be non-zero (softplus divides by it), got 0")
    policy: _autocast.Policy = "fp32" if _autocast.fp32_under_autocast(input) else "same"
    function = _SOFTPLUS_FOR_COMPILE if torch.compiler.is_compiling() else SoftplusFunction
    return _autocast.apply(function, policy, input, float(beta), float(threshold))


def mish(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.mish`: ``x * tanh(softplus(x))``.

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
        >>> MF.mish(x)
        tensor([-0.0726, -0.3034,  0.0000,  1.9440,  8.0000])
        >>> y = torch.tensor([-1.0, 2.0])
        >>> MF.mish(y, inplace=True) is y
        True
    """
    return _pointwise(MishFunction, _MISH_FOR_COMPILE, input, inplace)
