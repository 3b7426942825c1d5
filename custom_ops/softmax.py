"""Softmax and log-softmax along one dim (the probabilities inside CS231n's ``softmax_loss``, and the
attention weights of a transformer).

The reference, as the course writes it (sums and maxima along ``dim``; a dot marks the forward-mode
tangent). Softmax, s its output:

    shifted = x - max(x)                     softmax is shift-invariant; the shift avoids overflow in exp
    s       = exp(shifted) / sum(exp(shifted))
    dx      = s * (dout - sum(dout * s))     the Jacobian diag(s) - s s^T times dout
    ṡ       = s * (ẋ - sum(s * ẋ))           the same (symmetric) Jacobian times the tangent

Log-softmax, out its output (exp(out) is the softmax s):

    out     = shifted - log(sum(exp(shifted)))
    dx      = dout - exp(out) * sum(dout)
    ẏ       = ẋ - sum(exp(out) * ẋ)

Saved: the output only (as the built-ins). Both backwards are tensor expressions of the saved output, so
double backward (and forward-over-reverse) works.

``dim=None`` follows torch's deprecated implicit choice (dim 0 for 0-, 1- and 3-D inputs, else dim 1,
with the same warning); ``dtype`` casts the input before the op, as torch does. Under CUDA (XPU, MPS)
autocast the ops run in float32, as torch's autocast lists them; on CPU they run in the input's dtype.

The tuned formulations, the default, are fused kernels (:func:`custom_ops.fused.kernel`): the same
formulas with their intermediates written in place (one temporary where the reference makes several),
compiled into one loop nest each with fusion on (the eager formulas make one pass per step, reductions
included).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from . import _autocast, _reference, fused
from ._checks import OpDtypeError, check_floating, check_tensor, normalize_dim
from ._function import fast_apply, without_jvp


# ------------------------------------------------------------------------------------------- reference
def softmax_forward_reference(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``s = exp(x - max(x)) / sum(exp(x - max(x)))`` along ``dim`` (x not empty)."""
    shifted = x - x.amax(dim, keepdim=True)
    exp_shifted = shifted.exp()
    s = exp_shifted / exp_shifted.sum(dim, keepdim=True)
    return s


def softmax_backward_reference(dout: torch.Tensor, s: torch.Tensor, dim: int) -> torch.Tensor:
    """``dx = s * (dout - sum(dout * s))`` from the saved output ``s``."""
    dout_dot_s = (dout * s).sum(dim, keepdim=True)
    dx = s * (dout - dout_dot_s)
    return dx


def softmax_jvp_reference(x_dot: torch.Tensor, s: torch.Tensor, dim: int) -> torch.Tensor:
    """``ṡ = s * (ẋ - sum(s * ẋ))`` from the saved output ``s``."""
    mean_x_dot = (s * x_dot).sum(dim, keepdim=True)  # the tangent's mean under the probabilities s
    s_dot = s * (x_dot - mean_x_dot)
    return s_dot


def log_softmax_forward_reference(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``out = (x - max(x)) - log(sum(exp(x - max(x))))`` along ``dim`` (x not empty)."""
    shifted = x - x.amax(dim, keepdim=True)
    log_sum_exp = shifted.exp().sum(dim, keepdim=True).log()
    out = shifted - log_sum_exp
    return out


def log_softmax_backward_reference(dout: torch.Tensor, out: torch.Tensor, dim: int) -> torch.Tensor:
    """``dx = dout - exp(out) * sum(dout)`` from the saved output."""
    s = out.exp()  # the softmax
    dx = dout - s * dout.sum(dim, keepdim=True)
    return dx


def log_softmax_jvp_reference(x_dot: torch.Tensor, out: torch.Tensor, dim: int) -> torch.Tensor:
    """``ẏ = ẋ - sum(exp(out) * ẋ)`` from the saved output."""
    s = out.exp()  # the softmax
    out_dot = x_dot - (s * x_dot).sum(dim, keepdim=True)
    return out_dot


# ------------------------------------------------------------------------------------------------ tuned
@fused.kernel
def softmax_forward(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``s = exp(x - max(x)) / sum(exp(x - max(x)))`` along ``dim`` (x not empty), in one buffer."""
    out = (x - x.amax(dim, keepdim=True)).exp_()
    out /= out.sum(dim, keepdim=True)
    return out


@fused.kernel
def softmax_backward(dout: torch.Tensor, s: torch.Tensor, dim: int) -> torch.Tensor:
    """``dx = s * (dout - sum(dout * s))`` from the saved output ``s``, the sum along ``dim``."""
    # s * (dout - sum(dout * s)) = dout * s - s * sum(dout * s), in the buffer of dout * s
    gs = dout * s
    return gs.addcmul_(s, gs.sum(dim, keepdim=True), value=-1)


@fused.kernel
def log_softmax_forward(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``out = (x - max(x)) - log(sum(exp(x - max(x))))`` along ``dim`` (x not empty), in one buffer."""
    out = x - x.amax(dim, keepdim=True)
    out -= out.exp().sum(dim, keepdim=True).log_()
    return out


@fused.kernel
def log_softmax_backward(dout: torch.Tensor, out: torch.Tensor, dim: int) -> torch.Tensor:
    """``dx = dout - exp(out) * sum(dout)`` from the saved output, the sum along ``dim``, in one call."""
    return torch.addcmul(dout, out.exp(), dout.sum(dim, keepdim=True), value=-1)


@fast_apply
class SoftmaxFunction(torch.autograd.Function):
    """x ``(*)`` -> ``(*)``, normalised along ``dim``.

    Forward-mode derivative (``jvp``): ``ṡ = s ⊙ (ẋ − Σ s ẋ)``, the sum along ``dim``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, dim: int) -> torch.Tensor:
        if x.numel() == 0:
            return torch.empty_like(x)
        if _reference.is_active():
            return softmax_forward_reference(x, dim)
        return softmax_forward(x, dim)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        ctx.dim = inputs[1]
        ctx.reference = _reference.is_active()
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor, None]:
        (s,) = ctx.saved_tensors
        if ctx.reference:
            return softmax_backward_reference(dout, s, ctx.dim), None
        return softmax_backward(dout, s, ctx.dim), None

    @staticmethod
    def jvp(ctx: Any, x_dot: torch.Tensor, _dim: None) -> torch.Tensor:
        (s,) = ctx.saved_tensors
        return softmax_jvp_reference(x_dot, s, ctx.dim)


_SoftmaxFunctionTraced = without_jvp(SoftmaxFunction)  # what torch.compile traces


@fast_apply
class LogSoftmaxFunction(torch.autograd.Function):
    """x ``(*)`` -> ``(*)``, normalised along ``dim``.

    Forward-mode derivative (``jvp``): ``ẏ = ẋ − Σ exp(y) ẋ``, the sum along ``dim``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, dim: int) -> torch.Tensor:
        if x.numel() == 0:
            return torch.empty_like(x)
        if _reference.is_active():
            return log_softmax_forward_reference(x, dim)
        return log_softmax_forward(x, dim)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        ctx.dim = inputs[1]
        ctx.reference = _reference.is_active()
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor, None]:
        (out,) = ctx.saved_tensors
        if ctx.reference:
            return log_softmax_backward_reference(dout, out, ctx.dim), None
        return log_softmax_backward(dout, out, ctx.dim), None

    @staticmethod
    def jvp(ctx: Any, x_dot: torch.Tensor, _dim: None) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        return log_softmax_jvp_reference(x_dot, out, ctx.dim)


_LogSoftmaxFunctionTraced = without_jvp(LogSoftmaxFunction)  # what torch.compile traces


def _implicit_dim(name: str, ndim: int, stacklevel: int) -> int:
    """torch's ``_get_softmax_dim``: the deprecated choice of a dim when none is given."""
    warnings.warn(
        f"Implicit dimension choice for {name} has been deprecated. "
        "Change the call to include dim=X as an argument.",
        UserWarning,
        stacklevel=stacklevel,
    )
    return 0 if ndim in (0, 1, 3) else 1


def _apply(
    function: type[torch.autograd.Function],
    name: str,
    input: torch.Tensor,
    dim: int | None,
    stacklevel: int,
    dtype: torch.dtype | None,
) -> torch.Tensor:
    check_tensor("input", input)
    if dim is None:
        dim = _implicit_dim(name, input.dim(), stacklevel + 1)
    dim = normalize_dim("dim", dim, input.dim())
    if dtype is None and _autocast.fp32_under_autocast(input):
        dtype = torch.float32  # torch's autocast runs (log_)softmax in float32 on CUDA, XPU and MPS
    if dtype is not None:
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise OpDtypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
        input = input.to(dtype)
    check_floating("input", input)
    return _autocast.apply(function, "same", input, dim)


def softmax(
    input: torch.Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.softmax`.

    Args:
        input: any shape, floating point (or any dtype when ``dtype`` is given).
        dim: the dim whose entries sum to 1. None: torch's deprecated implicit choice (dim 0 for 0-, 1-
            and 3-D inputs, else 1), with torch's warning.
        _stacklevel: where the implicit-dim warning points, as in torch.
        dtype: if given, the input is cast to it first (and the op computes in it).

    Shape:
        - Input: ``(*)``; output and input gradient: ``(*)``, the same shape.

    Returns:
        ``exp(input) / sum(exp(input), dim)``, a new tensor.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> MF.softmax(torch.tensor([[1.0, 2.0, 3.0]]), dim=1)
        tensor([[0.0900, 0.2447, 0.6652]])
        >>> MF.softmax(torch.tensor([0.0, 0.0]), dim=0, dtype=torch.float64)
        tensor([0.5000, 0.5000], dtype=torch.float64)
    """
    function = _SoftmaxFunctionTraced if torch.compiler.is_compiling() else SoftmaxFunction
    return _apply(function, "softmax", input, dim, _stacklevel, dtype)


def log_softmax(
    input: torch.Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.log_softmax`.

    Args:
        input: any shape, floating point (or any dtype when ``dtype`` is given).
        dim: the dim along which to normalise. None: torch's deprecated implicit choice (dim 0 for 0-,
            1- and 3-D inputs, else 1), with torch's warning.
        _stacklevel: where the implicit-dim warning points, as in torch.
        dtype: if given, the input is cast to it first (and the op computes in it).

    Shape:
        - Input: ``(*)``; output and input gradient: ``(*)``, the same shape.

    Returns:
        ``input - log(sum(exp(input), dim))``, a new tensor.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> MF.log_softmax(torch.tensor([[0.0, 0.0]]), dim=1)
        tensor([[-0.6931, -0.6931]])
    """
    function = _LogSoftmaxFunctionTraced if torch.compiler.is_compiling() else LogSoftmaxFunction
    return _apply(function, "log_softmax", input, dim, _stacklevel, dtype)
