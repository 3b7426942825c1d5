"""Lp normalisation along a dim (:func:`torch.nn.functional.normalize`): each vector along ``dim`` divided by
its p-norm, floored at ``eps``. Swin V2's cosine attention normalises its queries and keys with it.

The reference (the top of this file), with sums along ``dim`` (kept, so they broadcast back) and a dot for
the forward-mode tangent:

    n    = ||x||_p = (sum |x|^p)^(1/p)      p = 2: sqrt(sum x^2); p = inf / -inf: max / min |x|;
                                            p = 0: the number of non-zeros
    d    = max(n, eps)                      the floor keeps a zero vector from dividing by 0
    y    = x / d

Backward (quotient rule; the floor passes the gradient of n only where n > eps, as torch's clamp_min):

    dx   = dout / d - [n > eps] (sum dout x / d^2) dn/dx
    dn/dx = sign(x) |x|^(p-1) / n^(p-1)     p = 2: x / n, so dx = (dout - y sum dout y) / d
                                            p = 1: sign(x) (0 at x = 0)
                                            p = inf / -inf: sign(x) [|x| = n] / (the number of such x):
                                            ties share the gradient, as torch's norm backward
                                            p = 0: 0 (a count is piecewise constant)
                                            p < 1: 0 at x = 0 (torch's choice where |x|^(p-1) is infinite)
    ẏ    = ẋ / d - [n > eps] x ṅ / d^2,     ṅ = sum dn/dx ẋ

Where ``[n > eps]`` holds, ``d = n``, so ``dn/dx`` is evaluated with ``d`` for ``n``: the same values
there, and finite (not ``0 / 0``) in the rows whose norm is below the floor, which the mask discards.

Saved: the input only. The norm is recomputed in the backward and the jvp (one reduction), so the backward
is a differentiable tensor expression of ``x``: double backward works (a saved norm, computed without
autograd, would cut ``dx``'s dependence on ``x`` through it).

Under CUDA (XPU, MPS) autocast the op runs in float32 and returns float32, as torch's (its norm is on
autocast's float32 list and the division promotes); on CPU it runs in the input's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from . import _autocast
from ._checks import OpArgumentError, check_floating, normalize_dim
from ._function import fast_apply, without_jvp

Dims = tuple[int, ...]


# ------------------------------------------------------------------------------------------ the reference
def vector_norm(x: torch.Tensor, p: float, dim: Dims) -> torch.Tensor:
    """``n = (sum |x|^p)^(1/p)`` along ``dim``, kept; ``sqrt(sum x^2)`` for p = 2, ``max |x|`` / ``min |x|``
    for p = inf / -inf, the number of non-zeros for p = 0."""
    if p == 2:
        n = torch.sqrt((x * x).sum(dim, keepdim=True))
    elif p == math.inf:
        n = x.abs().amax(dim, keepdim=True)
    elif p == -math.inf:
        n = x.abs().amin(dim, keepdim=True)
    elif p == 0:
        n = (x != 0).sum(dim, keepdim=True).to(x.dtype)
    else:
        n = (x.abs() ** p).sum(dim, keepdim=True) ** (1 / p)
    return n


def norm_derivative(x: torch.Tensor, n: torch.Tensor, p: float, dim: Dims) -> torch.Tensor:
    """``dn/dx = sign(x) |x|^(p-1) / n^(p-1)`` (``x / n`` for p = 2); for p = ±inf ``sign(x) [|x| = n]``
    shared among the ties; 0 for p = 0, and at ``x = 0``."""
    if p == 0:
        return torch.zeros_like(x)
    if math.isinf(p):
        at_extreme = x.abs() == n
        ties = at_extreme.sum(dim, keepdim=True)
        dn = torch.sign(x) * at_extreme / ties
        return dn
    if p == 2:
        dn = x / n
        return dn
    dn = torch.sign(x) * x.abs() ** (p - 1) / n ** (p - 1)
    dn = torch.where(x != 0, dn, 0)  # p < 1: |0|^(p-1) is infinite, and sign(0) = 0
    return dn


def floored_norm(x: torch.Tensor, p: float, dim: Dims, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The norm ``n = ||x||_p`` along ``dim`` and the divisor ``d = max(n, eps)``."""
    n = vector_norm(x, p, dim)
    d = torch.clamp_min(n, eps)
    return n, d


def normalize_forward(x: torch.Tensor, p: float = 2.0, dim: Dims = (1,), eps: float = 1e-12) -> torch.Tensor:
    """``y = x / max(||x||_p, eps)`` along ``dim``."""
    _, d = floored_norm(x, p, dim, eps)
    y = x / d
    return y


def normalize_backward(
    dout: torch.Tensor, x: torch.Tensor, p: float = 2.0, dim: Dims = (1,), eps: float = 1e-12
) -> torch.Tensor:
    """``dx = dout / d - [n > eps] (sum dout x / d^2) dn/dx``."""
    n, d = floored_norm(x, p, dim, eps)
    through_norm = n > eps  # where the floor passes the norm's gradient
    dout_dot_x = (dout * x).sum(dim, keepdim=True)
    dn = norm_derivative(x, d, p, dim)  # d = n where it is used
    dx = dout / d - torch.where(through_norm, dout_dot_x / (d * d) * dn, 0)
    return dx


def normalize_jvp(
    x_dot: torch.Tensor, x: torch.Tensor, p: float = 2.0, dim: Dims = (1,), eps: float = 1e-12
) -> torch.Tensor:
    """``ẏ = ẋ / d - [n > eps] x ṅ / d^2`` with ``ṅ = sum dn/dx ẋ``."""
    n, d = floored_norm(x, p, dim, eps)
    through_norm = n > eps
    n_dot = (norm_derivative(x, d, p, dim) * x_dot).sum(dim, keepdim=True)
    out_dot = x_dot / d - torch.where(through_norm, x * n_dot / (d * d), 0)
    return out_dot


# ---------------------------------------------------------------------------------------- the Function
@fast_apply
class NormalizeFunction(torch.autograd.Function):
    """``y = x / max(||x||_p, eps)`` along the dims ``dim`` (non-negative), x ``(*)`` -> ``(*)``.

    Backward ``dx = dout / d - [n > eps] (sum dout x / d^2) dn/dx``; jvp
    ``ẏ = ẋ / d - [n > eps] x (sum dn/dx ẋ) / d^2``; ``n = ||x||_p``, ``d = max(n, eps)``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, p: float, dim: Dims, eps: float) -> torch.Tensor:
        return normalize_forward(x, p, dim, eps)

    @staticmethod
    def setup_context(
        ctx: Any, inputs: tuple[torch.Tensor, float, Dims, float], output: torch.Tensor
    ) -> None:
        x, ctx.p, ctx.dim, ctx.eps = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (x,) = ctx.saved_tensors
        return normalize_backward(dout, x, ctx.p, ctx.dim, ctx.eps), None, None, None

    @staticmethod
    def jvp(ctx: Any, x_dot: torch.Tensor, *_: None) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return normalize_jvp(x_dot, x, ctx.p, ctx.dim, ctx.eps)


_NORMALIZE_FOR_COMPILE = without_jvp(NormalizeFunction)


def _dims(dim: int | Sequence[int], ndim: int) -> Dims:
    """``dim`` (an int or a sequence of distinct ints) as a tuple of non-negative dims."""
    many = isinstance(dim, Sequence) and not isinstance(dim, str)
    dims = tuple(normalize_dim("dim", d, ndim) for d in (dim if many else (dim,)))
    if len(set(dims)) != len(dims):
        raise OpArgumentError(f"dim must not repeat a dimension, got {dim!r}")
    return dims


def normalize(
    input: torch.Tensor,
    p: float = 2.0,
    dim: int | Sequence[int] = 1,
    eps: float = 1e-12,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.normalize`: ``x / max(||x||_p, eps)`` along ``dim``.

    Args:
        input: floating tensor of any shape.
        p: the norm's exponent, any real number: 2 (Euclidean), 1, ``math.inf`` (the largest ``|x|``),
            ``-math.inf`` (the smallest), 0 (the number of non-zeros), or another.
        dim: the dim (or dims) holding each vector.
        eps: the floor of the norm, so that a zero vector is not divided by 0.
        out: not supported (torch's ``out=`` result is not differentiable): must be None.

    Shape:
        - Input: ``(*)``, any shape.
        - Output and input gradient ``dx``: ``(*)``, the same shape as the input.

    Returns:
        ``input`` with each vector along ``dim`` scaled to p-norm 1 (or divided by ``eps`` when its norm is
        below it), a new tensor.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
        >>> MF.normalize(x)
        tensor([[0.6000, 0.8000],
                [0.0000, 0.0000]])
        >>> MF.normalize(x, p=1.0, dim=-1)
        tensor([[0.4286, 0.5714],
                [0.0000, 0.0000]])
    """
    check_floating("input", input)
    if out is not None:
        raise OpArgumentError(
            "out is not supported by the manual normalize (torch's out= result is not differentiable); "
            "use the returned tensor"
        )
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise OpArgumentError(f"p must be a real number (the norm's exponent), got {p!r}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"eps must be a real number, got {type(eps).__name__} {eps!r}")
    dims = _dims(dim, input.dim())
    policy: _autocast.Policy = "fp32" if _autocast.fp32_under_autocast(input) else "same"
    function = _NORMALIZE_FOR_COMPILE if torch.compiler.is_compiling() else NormalizeFunction
    return _autocast.apply(function, policy, input, float(p), dims, float(eps))
