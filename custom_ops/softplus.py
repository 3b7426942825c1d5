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

The tuned formulations (``tuned_*``, the default path) compute the same values (to the last bits) with
float-only kernels, in place on a few fresh temporaries. Softplus's threshold switch is a float step
``[beta x > threshold]`` made from ``sign`` and ``clamp`` (a bool mask and ``where`` cost many float passes
each on CPU), and above the threshold the smooth branch's argument is pushed to ``-max``, so that it adds
exactly 0 to ``x`` there; its ``log1p`` is ``log`` with a rounding correction (torch's CPU ``log1p`` is a
scalar loop), and its slope is ``torch.sigmoid`` alone where that rounds to 1 before the threshold (float32
with the default threshold). Where ``exp`` can overflow below the threshold they keep the reference's
``log1p`` and ``z / (z + 1)``, whose inf and NaN are torch's. Mish takes ``tanh(softplus(x))`` from one
sigmoid, ``s = sigmoid(x)``, ``p = s (2 - s)``: ``tanh(softplus(x)) = ((1 + e^x)^2 - 1) / ((1 + e^x)^2 + 1)
= p / (2 - p)`` (``1 + e^x = 1 / (1 - s)``), which neither cancels nor overflows, and a sigmoid costs less
than ``exp``, ``log1p`` and ``tanh``. They are fused kernels (:func:`custom_ops.fused.kernel`): with fusion
on, each runs as one compiled pass (softplus's compiled from the reference formulas, whose selects a
compiled loop vectorises). As for the other activations they run on the plain first-order path only
(:func:`custom_ops._transforms.pointwise_reference`): the derivatives of a double backward are the
reference formulas', torch's at the threshold.

In place (Mish's ``inplace=True``, as torch's ``mish_``): as the activations of
:mod:`custom_ops.activations` (its ``_pointwise`` wrapper runs it): the result is written into ``x``, which
is marked dirty, and the slope is computed from a copy of ``x`` taken before it is overwritten. torch's
softplus has no in-place form.

Under ``torch.compile`` the wrappers apply twins of the Functions without their ``jvp``. Under CUDA (XPU,
MPS) autocast softplus runs in float32, as torch's autocast lists it; Mish runs in the input's dtype.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from . import _autocast, fused
from ._checks import OpArgumentError, check_floating
from ._function import fast_apply, without_jvp
from ._transforms import pointwise_reference
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


# ---------------------------------------------------------------------------- the tuned formulations
# The threshold switch as a float step: [bx > threshold] = max(sign(bx - threshold), 0) (a difference of
# two distinct floats is never 0, so the step is exact at the seam; sign(NaN) is 0 and the NaN stays in
# the other terms). Three cheap passes where the reference's two comparisons and two selects cost many.
# The products with dout (or x_dot) are out of place: under vmap of the backward the incoming gradient is
# batched and the slope is not. With fusion on, the reference formulas themselves are compiled
# (``one_loop``): one compiled loop vectorises their selects and log1p, where the float-only steps would be
# extra work.
def _exp_may_overflow(threshold: float, dtype: torch.dtype) -> bool:
    """Whether ``exp`` of the smooth branch's argument, up to ``threshold``, can reach inf in ``dtype``
    (with a margin of 1): there the tuned kernels keep the reference's ``log1p`` and ``z / (z + 1)``, whose
    inf and NaN are torch's."""
    return threshold > math.log(torch.finfo(dtype).max) - 1


def _smooth_argument(bx: torch.Tensor, threshold: float, fresh: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(m, step)`` from ``bx = beta x`` (overwritten where ``fresh``): ``step = [bx > threshold]`` and
    ``m = min(bx, threshold)`` below the threshold, ``-max`` (a very negative finite number: ``exp`` of it
    is 0) above it, so that the smooth branch is exactly 0 where the identity takes over, without an inf
    (``threshold`` above ``exp``'s overflow) or a product with 0 to remove it."""
    step = torch.sub(bx, threshold).sign_().clamp_min_(0)
    m = bx.clamp_max_(threshold) if fresh else bx.clamp_max(threshold)
    return m.sub_(step, alpha=torch.finfo(bx.dtype).max), step


def _log1p(y: torch.Tensor) -> torch.Tensor:
    """``log(1 + y)`` for ``y >= 0`` (a NaN stays NaN), overwriting the fresh ``y``: ``log(u)`` with
    ``u = 1 + y``, corrected for the rounding of the sum, ``+ (y - (u - 1)) / u`` (exact where ``y <= 1``;
    above, below the last bit of ``log(u)``), so tiny ``y`` gives ``y``. (torch's CPU ``log1p`` is a scalar
    loop, several times the cost of ``log`` and these cheap passes.)"""
    u = torch.add(y, 1)
    y.sub_(u.sub_(1))  # u - 1 and 1 added back are exact below 2^(mantissa bits) (a last bit above)
    u.add_(1)
    correction = y.div_(u)
    return correction.add_(u.log_())


@fused.kernel(one_loop=softplus_forward)
def tuned_softplus_forward(x: torch.Tensor, beta: float, threshold: float) -> torch.Tensor:
    """``log1p(exp(beta x)) / beta``, or ``x`` where ``beta x > threshold``: the smooth branch (0 above the
    threshold) plus ``x`` times the step."""
    bx = x if beta == 1 else x * beta
    if threshold == math.inf:  # no identity branch: the smooth one everywhere, as the reference
        return torch.exp(bx).log1p_().div_(beta)
    m, step = _smooth_argument(bx, threshold, fresh=beta != 1)
    # x times the step, in the step's buffer: 0 * inf is NaN (x = -inf sits below the threshold, +inf for
    # beta < 0), made 0 again; x's own NaN stays in the smooth branch, and infinite x above the threshold
    # stays infinite.
    identity = step.mul_(x).nan_to_num_(nan=0.0, posinf=math.inf, neginf=-math.inf)
    z = m.exp_()
    out = z.log1p_() if _exp_may_overflow(threshold, x.dtype) else _log1p(z)
    if beta != 1:
        out.div_(beta)
    return out.add_(identity)


@fused.kernel(one_loop=softplus_backward)
def tuned_softplus_backward(
    dout: torch.Tensor, x: torch.Tensor, beta: float, threshold: float
) -> torch.Tensor:
    """``dout * f'(x)``, ``f'(x) = sigmoid(beta x)`` (1 where ``beta x > threshold``); also the tuned jvp,
    with the tangent ``x_dot`` for ``dout``."""
    bx = x if beta == 1 else x * beta
    if _exp_may_overflow(threshold, x.dtype):
        # exp(bx) can overflow below the threshold: z / (z + 1) as the reference, NaN there as torch's.
        m, step = _smooth_argument(bx, threshold, fresh=beta != 1)
        z = m.exp_()
        slope = z.div_(z + 1).add_(step)  # 0 + 1 above the threshold (z is 0 there)
    elif threshold >= math.log(2 / torch.finfo(x.dtype).eps) + 1:
        # sigmoid(bx) = z / (z + 1) in one kernel. From a little below this threshold (float32's default
        # 20) it rounds to exactly 1, the identity's slope: no step is needed.
        slope = torch.sigmoid(bx)
    else:
        # The slope is 1 above the threshold, and 1 >= sigmoid: the larger of the two. bx's clamp to
        # [-max, threshold] leaves bx - m = 0 up to the threshold, > 0 above, -inf (a step of -1, below
        # any sigmoid) at bx = -inf.
        m = bx.clamp(-torch.finfo(x.dtype).max, threshold)
        step = (bx.sub_(m) if beta != 1 else torch.sub(bx, m)).sign_()
        slope = m.sigmoid_().clamp_min_(step)
    return dout * slope


# Mish from one sigmoid s = sigmoid(x): p = s (2 - s) = 1 - (1 - s)^2 and tanh(softplus(x)) = p / (2 - p)
# (no cancellation: 2 - p is in [1, 2]; no overflow), where the reference takes exp, log1p and tanh (the
# priciest of the three) in five passes with two selects.
def _mish_gate(s: torch.Tensor) -> torch.Tensor:
    """``t = tanh(softplus(x)) = p / (2 - p)``, ``p = s (2 - s)``, from ``s = sigmoid(x)`` (kept)."""
    p = torch.rsub(s, 2).mul_(s)
    return p.div_(torch.rsub(p, 2))


@fused.kernel
def tuned_mish_forward(x: torch.Tensor) -> torch.Tensor:
    """``x tanh(softplus(x))``, with ``tanh(softplus(x)) = p / (2 - p)``, ``p = s (2 - s)``."""
    return _mish_gate(torch.sigmoid(x)).mul_(x)


@fused.kernel
def tuned_mish_backward(dout: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``dout * (t + x s (1 - t^2))``; also the tuned jvp, with the tangent ``x_dot`` for ``dout``."""
    s = torch.sigmoid(x)
    u = torch.rsub(s, 1)  # 1 - s
    p = torch.rsub(s, 2).mul_(s)
    d = torch.rsub(p, 2)
    t = p.div_(d)
    # 1 - t^2 = 4 (1 - p) / (2 - p)^2 = 4 (u / d)^2: accurate where t is close to 1 (1 - t * t is not:
    # near 1 the rounding of t is most of it).
    scaled = u.div_(d).square_().mul_(s)  # s (1 - t^2) / 4
    slope = t.addcmul_(scaled, x, value=4)
    return dout * slope


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
        if pointwise_reference():
            return softplus_forward(x, beta, threshold)
        return tuned_softplus_forward(x, beta, threshold)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, float, float], output: torch.Tensor) -> None:
        x, ctx.beta, ctx.threshold = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        if pointwise_reference():
            return softplus_backward(dout, x, ctx.beta, ctx.threshold), None, None
        return tuned_softplus_backward(dout, x, ctx.beta, ctx.threshold), None, None

    @staticmethod
    def jvp(ctx: Any, x_dot: torch.Tensor, *_: None) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        if pointwise_reference():
            return softplus_jvp(x_dot, x, ctx.beta, ctx.threshold)
        return tuned_softplus_backward(x_dot, x, ctx.beta, ctx.threshold)


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
            return mish_forward(x) if pointwise_reference() else tuned_mish_forward(x)
        if pointwise_reference():
            return x.copy_(mish_forward(original))
        return x.copy_(tuned_mish_forward(original))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, Any], output: torch.Tensor) -> None:
        _save_input(ctx, *inputs)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        (x,) = ctx.saved_tensors
        dx = mish_backward(dout, x) if pointwise_reference() else tuned_mish_backward(dout, x)
        return _input_grads(ctx, dx)

    @staticmethod
    def jvp(ctx: Any, x_dot: torch.Tensor | None, original_dot: torch.Tensor | None) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        tangent = original_dot if ctx.inplace else x_dot
        out_dot = mish_jvp(tangent, x) if pointwise_reference() else tuned_mish_backward(tangent, x)
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
