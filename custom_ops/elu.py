"""The exponential family: ELU, CELU and SELU, ReLUs whose negative side is an exponential curve.

A sigmoid or tanh saturates on both sides: for large ``|x|`` its slope is nearly 0 and the gradient dies.
ReLU does not saturate for ``x > 0`` (slope 1) but passes nothing for ``x < 0``. ELU keeps the slope 1 for
``x > 0`` and bends smoothly to ``-alpha`` for ``x -> -inf``: it saturates on the negative side only (a
deactivation robust to noise), while its negative outputs bring the mean activation closer to zero. The
price is an ``exp`` per element.

The reference (the top of this file). Each is element-wise, so both derivatives are one product with the
local slope ``f'(x)``: backward ``dx = dout * f'(x)``, forward mode ``y_dot = f'(x) * x_dot``.

    ELU:   y = x (x > 0), a (exp(x) - 1) (x <= 0)          f'(x) = 1, a exp(x) = y + a
    CELU:  y = x (x > 0), a (exp(x / a) - 1) (x <= 0)      f'(x) = 1, exp(x / a) = y / a + 1
    SELU:  y = s x (x > 0), s a (exp(x) - 1) (x <= 0)      f'(x) = s, s a exp(x) = y + s a
           with torch's constants a = 1.6732632423543772848170429916717 and
           s = 1.0507009873554804934193349852946 (self-normalising: mean 0, variance 1 kept across layers)

``exp(x) - 1`` is computed as ``expm1(x)``, accurate near 0 (torch's kernels do the same). At the kink
``x = 0`` the slope is PyTorch's, the negative side's (torch's kernels test ``x <= 0``): ELU's is ``a``,
CELU's 1, SELU's ``s a``. Saved: the output where it determines the slope (``y <= 0`` exactly where
``x <= 0``: always for CELU and SELU, for ELU when ``a >= 0``), as torch's in-place kernels save it; else
(ELU with ``a < 0``) the input. The backwards are ordinary differentiable tensor expressions, so double
backward and forward-over-reverse work.

The tuned formulations (``tuned_*``, below the reference; the default path) compute the same values, bit for
bit, with float-only kernels (``max(x, 0)``, ``expm1(min(x, 0))``, ``sign``, clamps) instead of comparisons
producing bool masks and ``torch.where``, which on CPU cost many float passes each. They are fused kernels
(:func:`custom_ops.fused.kernel`): with fusion on, each runs as one compiled pass. They run on the plain
first-order path only: under :func:`custom_ops.reference_path`, under a ``torch.func`` transform, under
``torch.compile`` and when autograd records the derivative (a double backward), the reference formulas run
(:func:`custom_ops._transforms.pointwise_reference`); their own derivatives are torch's at the kinks, where a
clamp's are not.

In place (``inplace=True``, as in torch): the result is written into ``x``, which is returned and marked
dirty, as for the activations of :mod:`custom_ops.activations`. Where the output is saved, the copy of the
input taken for autograd's history lives only during the call; with a negative ``alpha`` the copy is saved
(torch refuses that case in its backward: "In-place elu backward calculation is triggered with a negative
slope"; here the gradient is computed).
"""

from __future__ import annotations

import torch

from . import fused
from ._checks import OpArgumentError
from ._function import without_jvp
from .activations import _pointwise, _reference_function

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


# ------------------------------------------------------------------------------------------ the reference
def elu_forward(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``y = x (x > 0), a (exp(x) - 1) (x <= 0)``."""
    out = torch.where(x > 0, x, alpha * torch.expm1(x))
    return out


def elu_derivative(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``f'(x) = 1 (x > 0), a exp(x) (x <= 0)``, from the input."""
    slope = torch.where(x > 0, torch.ones_like(x), alpha * torch.exp(x))
    return slope


def elu_derivative_from_output(out: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``f'(x) = 1 (y > 0), y + a (y <= 0)``: ``a exp(x) = y + a``; for ``a >= 0`` only, where ``y <= 0``
    exactly where ``x <= 0``."""
    slope = torch.where(out > 0, torch.ones_like(out), out + alpha)
    return slope


def elu_slope(saved: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``f'(x)`` from what the Function saves: the output where ``a >= 0``, else the input."""
    slope = elu_derivative_from_output(saved, alpha) if alpha >= 0 else elu_derivative(saved, alpha)
    return slope


def elu_backward(dout: torch.Tensor, saved: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``dx = dout * f'(x)``, ``saved`` the output where ``a >= 0``, else the input."""
    dx = dout * elu_slope(saved, alpha)
    return dx


def elu_jvp(x_dot: torch.Tensor, saved: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``y_dot = f'(x) * x_dot``, ``saved`` the output where ``a >= 0``, else the input."""
    out_dot = elu_slope(saved, alpha) * x_dot
    return out_dot


def celu_forward(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``y = x (x > 0), a (exp(x / a) - 1) (x <= 0)``."""
    out = torch.where(x > 0, x, alpha * torch.expm1(x / alpha))
    return out


def celu_derivative(out: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``f'(x) = 1 (x > 0), exp(x / a) = y / a + 1 (x <= 0)``, from the output (``y <= 0`` exactly where
    ``x <= 0``, whatever the sign of ``a``)."""
    slope = torch.where(out > 0, torch.ones_like(out), out / alpha + 1)
    return slope


def celu_backward(dout: torch.Tensor, out: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``dx = dout * f'(x)``."""
    dx = dout * celu_derivative(out, alpha)
    return dx


def celu_jvp(x_dot: torch.Tensor, out: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``y_dot = f'(x) * x_dot``."""
    out_dot = celu_derivative(out, alpha) * x_dot
    return out_dot


def selu_forward(x: torch.Tensor) -> torch.Tensor:
    """``y = s x (x > 0), s a (exp(x) - 1) (x <= 0)``."""
    out = torch.where(x > 0, SELU_SCALE * x, SELU_SCALE * SELU_ALPHA * torch.expm1(x))
    return out


def selu_derivative(out: torch.Tensor) -> torch.Tensor:
    """``f'(x) = s (x > 0), s a exp(x) = y + s a (x <= 0)``, from the output."""
    slope = torch.where(out > 0, torch.full_like(out, SELU_SCALE), out + SELU_SCALE * SELU_ALPHA)
    return slope


def selu_backward(dout: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``dx = dout * f'(x)``."""
    dx = dout * selu_derivative(out)
    return dx


def selu_jvp(x_dot: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``y_dot = f'(x) * x_dot``."""
    out_dot = selu_derivative(out) * x_dot
    return out_dot


# ---------------------------------------------------------------------------- the tuned formulations
# The reference's masks (x > 0 and where) are bool kernels, which on CPU cost many float passes each; the
# tuned kernels are float-only. Forward: max(x, 0) + a expm1(min(x, 0)) (CELU: expm1(min(x, 0) / a)), one of
# the two terms 0 everywhere, so exact: four or five passes on two temporaries (the last step in place on the
# first: each fresh large temporary costs an allocation, which can mean page faults), where the reference
# selects through bool masks. Backward from the saved output y: min(y, 0) is y on the negative side and 0 on
# the positive side, so CELU's slope min(y, 0) / a + 1 is 1 there without any mask; ELU's and SELU's need the
# positive side's own value selected with [y > 0] = max(sign(y), 0) (0 at y = 0, where torch's slope is the
# negative side's). Each selection multiplies by 0 or 1 and adds a 0, so the tuned values equal the
# reference's exactly. Each backward kernel is also its op's tuned jvp (x_dot for dout); the products with
# dout are out of place (under vmap of the backward dout is batched, the slope not).
def _one_where_positive(saved: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """1 where ``saved > 0``, ``negative`` elsewhere: ``negative (1 - p) + p``, ``p = [saved > 0]``, four
    passes on two temporaries."""
    positive = saved.sign().clamp_min_(0)
    return torch.rsub(positive, 1).mul_(negative).add_(positive)


@fused.kernel
def tuned_elu_forward(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``max(x, 0) + a expm1(min(x, 0))``."""
    return x.clamp_min(0).add_(x.clamp_max(0).expm1_(), alpha=alpha)


@fused.kernel
def tuned_elu_backward(dout: torch.Tensor, saved: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``dout * f'(x)``, ``saved`` the output where ``a >= 0``, else the input."""
    if alpha < 0:  # from the input: a exp(min(x, 0)), which is a on the positive side
        slope = _one_where_positive(saved, saved.clamp_max(0).exp_().mul_(alpha))
    elif alpha <= 1:
        # y + a lies in [0, a] for y <= 0, above sign(y) (-1 or 0), and min(y, 0) + a = a <= 1 = sign(y) for
        # y > 0: the larger of the two is the slope, y = 0 included (a). Four passes, no selection.
        slope = saved.clamp_max(0).add_(alpha).clamp_min_(saved.sign())
    else:
        slope = _one_where_positive(saved, saved.clamp_max(0).add_(alpha))
    return dout * slope


@fused.kernel
def tuned_celu_forward(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``max(x, 0) + a expm1(min(x, 0) / a)``."""
    return x.clamp_min(0).add_(x.clamp_max(0).div_(alpha).expm1_(), alpha=alpha)


@fused.kernel
def tuned_celu_backward(dout: torch.Tensor, out: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``dout * (min(y, 0) / a + 1)``: ``y / a + 1`` for ``y <= 0``, ``0 / a + 1 = 1`` for ``y > 0``."""
    slope = out.clamp_max(0).div_(alpha).add_(1)
    return dout * slope


@fused.kernel
def tuned_selu_forward(x: torch.Tensor) -> torch.Tensor:
    """``s max(x, 0) + s a expm1(min(x, 0))``."""
    return x.clamp_max(0).expm1_().mul_(SELU_SCALE * SELU_ALPHA).add_(x.clamp_min(0), alpha=SELU_SCALE)


@fused.kernel
def tuned_selu_backward(dout: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``dout * f'(x)``, ``f'`` = ``s`` where ``y > 0``, else ``y + s a``."""
    # n = min(y, 0) + s a, then n + [y > 0] (s - n): on the positive side n = s a, and s - s a is exact
    # (s a / 2 <= s <= s a, Sterbenz), so the sum is s exactly. One pass fewer than p s + n (1 - p).
    negative = out.clamp_max(0).add_(SELU_SCALE * SELU_ALPHA)
    slope = torch.rsub(negative, SELU_SCALE).mul_(out.sign().clamp_min_(0)).add_(negative)
    return dout * slope


# ------------------------------------------------------------------------------------- the Functions


ELUFunction = _reference_function(
    __name__,
    "ELUFunction",
    """``y = x (x > 0), a (exp(x) - 1) (x <= 0)``, x ``(*)`` -> ``(*)``; with ``original`` (a copy of
    ``x``), the result of ``original`` is written into ``x``.

    Backward ``dx = dout * f'(x)``; jvp ``y_dot = f'(x) * x_dot``; ``f'(x) = 1 (x > 0), y + a (x <= 0)``
    from the saved output (``a exp(x)`` from the input where ``a < 0``).
    """,
    (elu_forward, elu_backward, elu_jvp),
    ("alpha",),
    saves_output=lambda alpha: alpha >= 0,  # else y > 0 also where x < 0
    tuned=(tuned_elu_forward, tuned_elu_backward),
)

CELUFunction = _reference_function(
    __name__,
    "CELUFunction",
    """``y = x (x > 0), a (exp(x / a) - 1) (x <= 0)``, x ``(*)`` -> ``(*)``; with ``original`` (a copy of
    ``x``), the result of ``original`` is written into ``x``.

    Backward ``dx = dout * f'(x)``; jvp ``y_dot = f'(x) * x_dot``; ``f'(x) = 1 (x > 0), y / a + 1
    (x <= 0)`` from the saved output.
    """,
    (celu_forward, celu_backward, celu_jvp),
    ("alpha",),
    tuned=(tuned_celu_forward, tuned_celu_backward),
)

SELUFunction = _reference_function(
    __name__,
    "SELUFunction",
    """``y = s x (x > 0), s a (exp(x) - 1) (x <= 0)``, x ``(*)`` -> ``(*)``; with ``original`` (a copy of
    ``x``), the result of ``original`` is written into ``x``.

    Backward ``dx = dout * f'(x)``; jvp ``y_dot = f'(x) * x_dot``; ``f'(x) = s (x > 0), y + s a (x <= 0)``
    from the saved output.
    """,
    (selu_forward, selu_backward, selu_jvp),
    tuned=(tuned_selu_forward, tuned_selu_backward),
)


# ------------------------------------------------------------------------------- the functional twins
_ELU_FOR_COMPILE = without_jvp(ELUFunction)
_CELU_FOR_COMPILE = without_jvp(CELUFunction)
_SELU_FOR_COMPILE = without_jvp(SELUFunction)


def elu(input: torch.Tensor, alpha: float = 1.0, inplace: bool = False) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.elu`: ``x`` where positive, ``alpha (exp(x) - 1)``
    elsewhere.

    Args:
        input: floating tensor of any shape.
        alpha: the negative side's limit is ``-alpha``. Default: 1.0
        inplace: write the result into ``input`` and return it (autograd refuses it on a leaf that
            requires grad, as for torch).

    Shape:
        - Input: ``(*)``, any shape.
        - Output and input gradient ``dx``: ``(*)``, the same shape as the input.

    Returns:
        The activation of ``input`` (``input`` itself, modified, with ``inplace=True``).

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> MF.elu(torch.tensor([-10.0, -1.0, 0.0, 2.0]))
        tensor([-1.0000, -0.6321,  0.0000,  2.0000])
    """
    return _pointwise(ELUFunction, _ELU_FOR_COMPILE, input, inplace, float(alpha))


def celu(input: torch.Tensor, alpha: float = 1.0, inplace: bool = False) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.celu`: ``x`` where positive, ``alpha (exp(x / alpha) - 1)``
    elsewhere (continuously differentiable at 0 for every ``alpha``).

    Args:
        input: floating tensor of any shape.
        alpha: the negative side's limit is ``-alpha``; not 0. Default: 1.0
        inplace: write the result into ``input`` and return it (autograd refuses it on a leaf that
            requires grad, as for torch).

    Shape:
        - Input: ``(*)``, any shape.
        - Output and input gradient ``dx``: ``(*)``, the same shape as the input.

    Returns:
        The activation of ``input`` (``input`` itself, modified, with ``inplace=True``).

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> MF.celu(torch.tensor([-10.0, -1.0, 0.0, 2.0]), alpha=2.0)
        tensor([-1.9865, -0.7869,  0.0000,  2.0000])
    """
    if alpha == 0:
        raise OpArgumentError("alpha cannot be 0 for CELU (it divides x), got alpha=0")
    return _pointwise(CELUFunction, _CELU_FOR_COMPILE, input, inplace, float(alpha))


def selu(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.selu`: ``scale * elu(x, alpha)`` with torch's constants
    (``SELU_SCALE``, ``SELU_ALPHA``).

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
        >>> MF.selu(torch.tensor([-10.0, -1.0, 0.0, 2.0]))
        tensor([-1.7580, -1.1113,  0.0000,  2.1014])
    """
    return _pointwise(SELUFunction, _SELU_FOR_COMPILE, input, inplace)
