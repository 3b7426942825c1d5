"""Hardtanh: the identity clipped to ``[min_val, max_val]`` (by default ``[-1, 1]``), a piecewise-linear
tanh; ReLU6 is ``hardtanh(x, 0, 6)``.

The reference (the top of this file). Hardtanh is element-wise, so its Jacobian is diagonal and both
derivatives are one product with the local slope ``f'(x)``:

    y     = min(max(x, lo), hi)
    f'(x) = [lo < x < hi]                1 inside, 0 on the flat parts
    backward:      dx    = dout * [lo < x < hi]
    forward mode:  y_dot = [lo < x < hi] * x_dot

At the kinks ``lo`` and ``hi`` the slope is PyTorch's, 0. Saved: the output, which determines the slope
(``lo < out < hi`` exactly where ``lo < x < hi``), as torch's in-place ``hardtanh_`` saves it. The backward
is a masked product, itself differentiable, so double backward and forward-over-reverse work.

The tuned formulations (``tuned_*``, below the reference; the default path) compute the same values, bit for
bit, with float-only kernels (the slope is ``sign(min(out - lo, hi - out))``; the forward is the reference's
clamp) instead of comparisons producing bool masks and ``torch.where``, which on CPU cost many float passes
each. They are fused kernels (:func:`custom_ops.fused.kernel`): with fusion on, each runs as one compiled
pass. They run on the plain first-order path only: under :func:`custom_ops.reference_path`, under a
``torch.func`` transform, under ``torch.compile`` and when autograd records the derivative (a double
backward), the reference formulas run (:func:`custom_ops._transforms.pointwise_reference`); their own
derivatives are torch's at the kinks, where a clamp's are not.

In place (``inplace=True``, as in torch): the result is written into ``x``, which is returned and marked
dirty, as for the activations of :mod:`custom_ops.activations`; the output is saved, so the copy of the
input taken for autograd's history lives only during the call.
"""

from __future__ import annotations

import torch

from . import fused
from ._checks import OpArgumentError
from ._function import without_jvp
from .activations import _pointwise, _reference_function


# ------------------------------------------------------------------------------------------ the reference
def hardtanh_forward(x: torch.Tensor, min_val: float = -1.0, max_val: float = 1.0) -> torch.Tensor:
    """``y = min(max(x, lo), hi)``."""
    out = torch.clamp(x, min_val, max_val)
    return out


def hardtanh_derivative(out: torch.Tensor, min_val: float = -1.0, max_val: float = 1.0) -> torch.Tensor:
    """``f'(x) = [lo < x < hi]``, read from the output (or the input: the same mask)."""
    inside = (out > min_val) & (out < max_val)
    slope = inside.to(out.dtype)
    return slope


def hardtanh_backward(
    dout: torch.Tensor, out: torch.Tensor, min_val: float = -1.0, max_val: float = 1.0
) -> torch.Tensor:
    """``dx = dout * [lo < x < hi]``."""
    dx = dout * hardtanh_derivative(out, min_val, max_val)
    return dx


def hardtanh_jvp(
    x_dot: torch.Tensor, out: torch.Tensor, min_val: float = -1.0, max_val: float = 1.0
) -> torch.Tensor:
    """``y_dot = [lo < x < hi] * x_dot``."""
    out_dot = hardtanh_derivative(out, min_val, max_val) * x_dot
    return out_dot


# ----------------------------------------------------------------------------- the tuned formulation
# The forward is a clamp, one float pass: the reference serves both paths. The reference's mask takes two
# comparisons, an "and" and a cast, bool kernels that on CPU cost many float passes each; the tuned kernel
# reads it from float passes. It is also Hardtanh's tuned jvp (x_dot for dout); the product with dout is out
# of place (under vmap of the backward dout is batched, the slope not).
@fused.kernel
def tuned_hardtanh_backward(
    dout: torch.Tensor, out: torch.Tensor, min_val: float = -1.0, max_val: float = 1.0
) -> torch.Tensor:
    """``dout * [lo < out < hi]``."""
    # For out in [lo, hi], both distances out - lo and hi - out are >= 0, and their minimum is 0 exactly on
    # a kink (a float difference is 0 only between equal numbers), so [lo < out < hi] = sign(min of the two):
    # four float passes on two temporaries. (Their product, relu6's trick, could underflow to 0 between
    # close bounds.)
    inside = torch.sub(out, min_val).clamp_max_(torch.rsub(out, max_val)).sign_()
    return dout * inside


# ---------------------------------------------------------------------------------------- the Function
HardtanhFunction = _reference_function(
    __name__,
    "HardtanhFunction",
    """``y = min(max(x, lo), hi)``, x ``(*)`` -> ``(*)``; with ``original`` (a copy of ``x``), the result of
    ``original`` is written into ``x``.

    Backward ``dx = dout * [lo < x < hi]``; jvp ``y_dot = [lo < x < hi] * x_dot``; both read the mask from
    the saved output.
    """,
    (hardtanh_forward, hardtanh_backward, hardtanh_jvp),
    ("min_val", "max_val"),
    tuned=(None, tuned_hardtanh_backward),
)

_HARDTANH_FOR_COMPILE = without_jvp(HardtanhFunction)


def hardtanh(
    input: torch.Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False
) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.hardtanh`: ``min(max(x, min_val), max_val)``.

    Args:
        input: floating tensor of any shape.
        min_val: the lower end of the linear region. Default: -1.0
        max_val: the upper end, at least ``min_val``. Default: 1.0
        inplace: write the result into ``input`` and return it (autograd refuses it on a leaf that
            requires grad, as for torch).

    Shape:
        - Input: ``(*)``, any shape.
        - Output and input gradient ``dx``: ``(*)``, the same shape as the input.

    Returns:
        The activation of ``input`` (``input`` itself, modified, with ``inplace=True``).

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> MF.hardtanh(torch.tensor([-3.0, -0.5, 0.0, 2.0]))
        tensor([-1.0000, -0.5000,  0.0000,  1.0000])
    """
    if min_val > max_val:
        raise OpArgumentError(
            f"min_val cannot be greater than max_val, got min_val={min_val}, max_val={max_val}"
        )
    return _pointwise(HardtanhFunction, _HARDTANH_FOR_COMPILE, input, inplace, min_val, max_val)
