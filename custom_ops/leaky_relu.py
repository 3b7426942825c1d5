"""ReLU with a negative slope, fixed or learned: Leaky ReLU and PReLU (parametric ReLU).

A ReLU whose input stays negative passes no gradient (``dx = dout * [x > 0]`` is 0 for every example), so
its weights never change again: a "dead" unit, e.g. after a large update or a bad initialisation. A small
slope ``a`` on the negative side keeps a gradient flowing there; PReLU learns ``a``, one per channel or one
for the whole layer.

The reference (the top of this file). Both are element-wise in ``x``: the Jacobian in ``x`` is diagonal, so
the input gradient and the forward-mode derivative are one product with the local slope ``f'(x)``:

    Leaky ReLU:  y = x (x > 0), a x (x <= 0)          f'(x) = 1 (x > 0), a (x <= 0)
    PReLU:       y = x (x > 0), w_c x (x <= 0)        f'(x) = 1 (x > 0), w_c (x <= 0)
                 dw_c = Σ over all but the channel dim of dout * x * [x <= 0]

    backward:      dx    = dout * f'(x)
    forward mode:  y_dot = f'(x) * x_dot  (PReLU: + [x < 0] x w_dot)

At the kink ``x = 0`` the slope is PyTorch's: the negative side's (``a``, ``w_c``), as torch's kernels test
``x > 0``; but PReLU's forward mode takes the positive side's, 1, there, as torch's forward-mode formula
does. Saved: Leaky ReLU's output where it determines the slope (``a >= 0``: ``out > 0`` exactly where
``x > 0``), else the input; PReLU's input and weight. The backwards are ordinary differentiable tensor
expressions, so double backward and forward-over-reverse work.

The tuned formulations (``tuned_*``, below the reference; the default path) compute the same values, bit for
bit (but PReLU's weight gradient, a sum taken in another order), with float-only kernels (``max(x, 0)``,
``min(x, 0)``, ``sign``, clamps) instead of comparisons producing bool masks and ``torch.where``, which on CPU
cost many float passes each. They are fused kernels (:func:`custom_ops.fused.kernel`): with fusion on, each
runs as one compiled pass. They run on the plain first-order path only: under
:func:`custom_ops.reference_path`, under a ``torch.func`` transform, under ``torch.compile`` and when autograd
records the derivative (a double backward), the reference formulas run
(:func:`custom_ops._transforms.pointwise_reference`); their own derivatives are torch's at the kinks, where a
clamp's are not. PReLU's forward mode runs the reference formula on either path.

PReLU's weight ``w`` has ``C`` entries, one per channel (dim 1 of the input), or one for all channels
(``num_parameters=1``, or a 0-D weight); a 0-D or 1-D input has one channel.

In place (Leaky ReLU's ``inplace=True``, as in torch): the result is written into ``x``, which is returned
and marked dirty, as for the activations of :mod:`custom_ops.activations`. With ``a >= 0`` the output is
saved, so the copy of the input taken for autograd's history lives only during the call; with ``a < 0``
the copy is saved (torch refuses that case in its backward: "In-place leakyReLu backward calculation is
triggered with a negative slope"; here the gradient is computed).
"""

from __future__ import annotations

from typing import Any

import torch

from . import _autocast, fused
from ._checks import OpArgumentError, check_floating, check_same_dtype
from ._function import fast_apply, needed, without_jvp
from .activations import _pointwise, _reference_formulas, _reference_function


# ------------------------------------------------------------------------------------------ the reference
def leaky_relu_forward(x: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    """``y = x (x > 0), a x (x <= 0)``."""
    out = torch.where(x > 0, x, negative_slope * x)
    return out


def leaky_relu_derivative(x: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    """``f'(x) = 1 (x > 0), a (x <= 0)``. With ``a >= 0`` the output may be passed for ``x``: ``out > 0``
    exactly where ``x > 0``."""
    ones = torch.ones_like(x)
    slope = torch.where(x > 0, ones, negative_slope * ones)
    return slope


def leaky_relu_backward(dout: torch.Tensor, x: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    """``dx = dout * f'(x)``."""
    dx = dout * leaky_relu_derivative(x, negative_slope)
    return dx


def leaky_relu_jvp(x_dot: torch.Tensor, x: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    """``y_dot = f'(x) * x_dot``."""
    out_dot = leaky_relu_derivative(x, negative_slope) * x_dot
    return out_dot


def _per_channel(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """PReLU's weight laid out to broadcast against ``x``: a scalar, or ``(1, C, 1, ...)``."""
    if weight.numel() == 1:
        return weight.reshape(())
    shape = [1] * x.dim()
    shape[1] = weight.numel()
    return weight.reshape(shape)


def prelu_forward(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``y = x (x > 0), w_c x (x <= 0)``."""
    w = _per_channel(weight, x)
    out = torch.where(x > 0, x, w * x)
    return out


def prelu_derivative(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``f'(x) = 1 (x > 0), w_c (x <= 0)``, the slope in ``x``."""
    w = _per_channel(weight, x)
    slope = torch.where(x > 0, torch.ones_like(x), w)
    return slope


def prelu_backward(
    dout: torch.Tensor, x: torch.Tensor, weight: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``dx = dout * f'(x)``; ``dw_c = Σ dout * x * [x <= 0]`` over all dims but the channel dim (all
    dims for a single weight)."""
    dx = dout * prelu_derivative(x, weight)
    negative = x <= 0
    dw_all = dout * x * negative  # what each element contributes to its channel's weight
    if weight.numel() == 1:
        dw = dw_all.sum()
    else:
        other_dims = [d for d in range(x.dim()) if d != 1]
        dw = dw_all.sum(other_dims)
    dweight = dw.reshape(weight.shape)
    return dx, dweight


def prelu_jvp(
    x_dot: torch.Tensor | None, weight_dot: torch.Tensor | None, x: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """``y_dot = f'(x) * x_dot + [x < 0] x w_dot`` (a missing tangent is zero). At ``x = 0`` torch's
    forward mode takes the positive side's slope, 1 (its backward the weight's), and so does this one;
    the weight's term is 0 there either way."""
    w = _per_channel(weight, x)
    negative = x < 0
    out_dot = torch.zeros_like(x)
    if x_dot is not None:
        out_dot = out_dot + torch.where(negative, w * x_dot, x_dot)
    if weight_dot is not None:
        out_dot = out_dot + negative * x * _per_channel(weight_dot, x)
    return out_dot


# ---------------------------------------------------------------------------- the tuned formulations
# The reference's masks (x > 0 and where) are bool kernels, which on CPU cost many float passes each. The
# tuned kernels take them from float-only ones: the two sides of the kink are max(x, 0) and min(x, 0) (one
# of them is 0, so their weighted sum is exact), and [x > 0] = max(sign(x), 0), 0 at x = 0 where torch's
# slope is the negative side's. Each selection below multiplies by 0 or 1 and adds a 0, so the tuned values
# equal the reference's exactly. The backward kernel is also Leaky ReLU's tuned jvp (x_dot for dout); the
# products with dout are out of place (under vmap of the backward dout is batched, the slope not).
@fused.kernel
def tuned_leaky_relu_forward(x: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    """``max(x, 0) + a min(x, 0)``: three float passes on two temporaries, no mask."""
    return x.clamp_min(0).add_(x.clamp_max(0), alpha=negative_slope)


@fused.kernel
def tuned_leaky_relu_backward(
    dout: torch.Tensor, saved: torch.Tensor, negative_slope: float = 0.01
) -> torch.Tensor:
    """``dout * f'(x)``, ``f'`` = 1 where ``saved > 0``, else ``a`` (``saved``: the output or the input)."""
    if 0 <= negative_slope <= 1:
        # sign is 1, 0 or -1; clamped to [a, 1] it is 1 for x > 0 and a for x <= 0: two passes.
        slope = saved.sign().clamp_(negative_slope, 1)
    else:
        # [x > 0] + a (1 - [x > 0]): the clamp above would cut a > 1, or a < 0 at x = 0; two passes more.
        positive = saved.sign().clamp_min_(0)
        slope = torch.rsub(positive, 1).mul_(negative_slope).add_(positive)
    return dout * slope


@fused.kernel
def tuned_prelu_forward(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``max(x, 0) + w_c min(x, 0)``: three float passes on two temporaries, no mask."""
    return x.clamp_min(0).addcmul_(_per_channel(weight, x), x.clamp_max(0))


@fused.kernel
def tuned_prelu_backward(
    dout: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, need_dx: bool = True, need_dweight: bool = True
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``dx = dout * f'(x)`` and ``dw_c = Σ dout * min(x, 0)`` (``x [x <= 0] = min(x, 0)``), each only
    where asked for (None otherwise)."""
    dx = dweight = None
    if need_dx:
        # w_c (1 - [x > 0]) + [x > 0]: four passes on two temporaries, and the product.
        positive = x.sign().clamp_min_(0)
        slope = torch.rsub(positive, 1).mul_(_per_channel(weight, x)).add_(positive)
        dx = dout * slope
    if need_dweight:
        dw_all = dout * x.clamp_max(0)
        dw = dw_all.sum() if weight.numel() == 1 else dw_all.sum([d for d in range(x.dim()) if d != 1])
        dweight = dw.reshape(weight.shape)
    return dx, dweight


# ------------------------------------------------------------------------------------- the Functions
LeakyReLUFunction = _reference_function(
    __name__,
    "LeakyReLUFunction",
    """``y = x (x > 0), a x (x <= 0)``, x ``(*)`` -> ``(*)``, ``a`` the ``negative_slope``; with
    ``original`` (a copy of ``x``), the result of ``original`` is written into ``x``.

    Backward ``dx = dout * f'(x)``; jvp ``y_dot = f'(x) * x_dot``; ``f'(x) = 1 (x > 0), a (x <= 0)``, read
    from the saved output where ``a >= 0``, else from the input.
    """,
    (leaky_relu_forward, leaky_relu_backward, leaky_relu_jvp),
    ("negative_slope",),
    saves_output=lambda negative_slope: negative_slope >= 0,  # else out > 0 also where x < 0
    tuned=(tuned_leaky_relu_forward, tuned_leaky_relu_backward),
)


@fast_apply
class PReLUFunction(torch.autograd.Function):
    """``y = x (x > 0), w_c x (x <= 0)``, x ``(*)`` (channels in dim 1), weight ``(C,)``, ``(1,)`` or
    ``()`` -> ``(*)``.

    Backward ``dx = dout * f'(x)``, ``dw_c = Σ dout * x * [x <= 0]`` over all but the channel dim; jvp
    ``y_dot = f'(x) * x_dot + [x < 0] x w_dot`` (slope 1 at ``x = 0``, as torch's forward mode).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return prelu_forward(x, weight) if _reference_formulas() else tuned_prelu_forward(x, weight)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, torch.Tensor], output: torch.Tensor) -> None:
        x, weight = inputs
        ctx.save_for_backward(x, weight)
        ctx.save_for_forward(x, weight)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        if _reference_formulas():
            return needed(prelu_backward(dout, x, weight), ctx.needs_input_grad)
        return tuned_prelu_backward(dout, x, weight, *ctx.needs_input_grad)

    @staticmethod
    def jvp(ctx: Any, x_dot: torch.Tensor | None, weight_dot: torch.Tensor | None) -> torch.Tensor:
        x, weight = ctx.saved_tensors
        return prelu_jvp(x_dot, weight_dot, x, weight)


# ------------------------------------------------------------------------------- the functional twins
_LEAKY_RELU_FOR_COMPILE = without_jvp(LeakyReLUFunction)
_PRELU_FOR_COMPILE = without_jvp(PReLUFunction)


def leaky_relu(input: torch.Tensor, negative_slope: float = 0.01, inplace: bool = False) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.leaky_relu`: ``x`` where positive, ``negative_slope * x``
    elsewhere.

    Args:
        input: floating tensor of any shape.
        negative_slope: the slope ``a`` for ``x <= 0``. Default: 0.01
        inplace: write the result into ``input`` and return it (autograd refuses it on a leaf that
            requires grad, as for torch).

    Shape:
        - Input: ``(*)``, any shape.
        - Output and input gradient ``dx``: ``(*)``, the same shape as the input.

    Returns:
        The activation of ``input`` (``input`` itself, modified, with ``inplace=True``).

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> MF.leaky_relu(torch.tensor([-2.0, 0.0, 3.0]), 0.1)
        tensor([-0.2000,  0.0000,  3.0000])
    """
    return _pointwise(LeakyReLUFunction, _LEAKY_RELU_FOR_COMPILE, input, inplace, float(negative_slope))


def prelu(input: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.prelu`: ``x`` where positive, ``weight_c * x`` elsewhere,
    ``c`` the channel (dim 1) of the element.

    Args:
        input: floating tensor ``(N, C, *)``, or ``(*)`` with one channel (a 0-D or 1-D input).
        weight: the learned slopes, ``(C,)``, or ``(1,)`` or ``()`` for one slope shared by all channels;
            the input's dtype.

    Shape:
        - Input: ``(N, C, *)`` (or 0-D, 1-D); output and input gradient ``dx``: the same shape.
        - Weight and its gradient: ``(C,)``, ``(1,)`` or ``()``.

    Returns:
        The activation of ``input``, a new tensor.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> x = torch.tensor([[-2.0, 1.0], [-2.0, -4.0]])
        >>> MF.prelu(x, torch.tensor([0.5, 0.25]))  # channel 0: slope 0.5, channel 1: 0.25
        tensor([[-1.,  1.],
                [-1., -1.]])
    """
    check_floating("input", input)
    check_floating("weight", weight)
    check_same_dtype(input, weight=weight)
    if weight.dim() > 1:
        raise OpArgumentError(
            f"weight must be a scalar or a 1-D tensor (num_parameters,), got {weight.dim()}-D shape "
            f"{tuple(weight.shape)}"
        )
    channels = input.shape[1] if input.dim() >= 2 else 1
    if weight.numel() != 1 and weight.numel() != channels:
        raise OpArgumentError(
            f"weight must have 1 or C = {channels} elements (the input's channels, dim 1 of "
            f"{tuple(input.shape)}), got shape {tuple(weight.shape)}"
        )
    function = _PRELU_FOR_COMPILE if torch.compiler.is_compiling() else PReLUFunction
    return _autocast.apply(function, "lower", input, weight)
