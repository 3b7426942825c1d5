"""Affine layer (CS231n ``affine_forward`` / ``affine_backward``).

The reference, as the course writes it (x ``(N, in)``, W ``(out, in)`` as torch stores it, b ``(out,)``; a
dot marks the forward-mode tangent):

    out  = x W^T + b
    dx   = dout W                  (N, out) @ (out, in)
    dW   = dout^T x                (out, N) @ (N, in): each example's outer product, summed
    db   = sum_n dout              the bias is added to every row
    ẏ    = ẋ W^T + x Ẇ^T + ḃ       the product rule (out is linear in each argument)

x may have any leading dims ``(*, in)``: they are flattened to N rows for dW and db (they may hold no element,
and ``in`` may be 0: then out = b and dW is an empty matrix). A 1-D weight ``(in,)`` (allowed by torch) is
a single output feature whose dim is dropped: ``out = x w`` of shape ``(*)``. The backward is made of matmuls,
so it is itself differentiable: double backward and forward-over-reverse work.

The tuned formulations, :func:`affine_forward` and :func:`affine_backward`, the default (also used by the
sandwich layers of :mod:`custom_ops.layer_utils`): the bias added inside the matrix multiply (``addmm``, one
call, no separate pass over the output), the output written through a 2-D view into a tensor of the final
shape, and only the gradients autograd asks for computed.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from . import _autocast, _reference
from ._checks import OpArgumentError, check_floating, check_same_dtype, check_shape
from ._function import fast_apply, without_jvp
from ._transforms import functorch_active


def _as_2d(t: torch.Tensor) -> torch.Tensor:
    """``(*, k)`` -> ``(prod(*), k)``, also when ``*`` or ``k`` is 0 (where ``reshape(-1, k)`` fails); a 2-D
    ``t`` itself."""
    return t if t.dim() == 2 else t.reshape(math.prod(t.shape[:-1]), t.shape[-1])


# ------------------------------------------------------------------------------------------- reference
def affine_forward_reference(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """``out = x W^T + b`` for x ``(*, in)``."""
    out = x @ w.t()
    if b is not None:
        out = out + b
    return out


def affine_backward_reference(
    dout: torch.Tensor, x: torch.Tensor, w: torch.Tensor, has_bias: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``dx = dout W``, ``dW = dout^T x``, ``db = sum_n dout`` (db None without a bias)."""
    dout_rows = _as_2d(dout)  # (N, out), N the product of the leading dims
    x_rows = _as_2d(x)  # (N, in)
    dx = dout @ w
    dw = dout_rows.t() @ x_rows
    db = dout_rows.sum(0) if has_bias else None
    return dx, dw, db


def affine_jvp_reference(
    x_dot: torch.Tensor | None,
    w_dot: torch.Tensor | None,
    b_dot: torch.Tensor | None,
    x: torch.Tensor,
    w: torch.Tensor,
) -> torch.Tensor:
    """``ẏ = ẋ W^T + x Ẇ^T + ḃ``, the terms of the inputs that have a tangent (None: no tangent)."""
    out_shape = (*x.shape[:-1], w.shape[0])
    out_dot = torch.zeros(out_shape, dtype=x.dtype, device=x.device)
    if x_dot is not None:
        out_dot = out_dot + x_dot @ w.t()
    if w_dot is not None:
        out_dot = out_dot + x @ w_dot.t()
    if b_dot is not None:
        out_dot = out_dot + b_dot
    return out_dot


# ------------------------------------------------------------------------------------------------ tuned
def affine_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x W^T + b`` for x ``(*, in)``, weight ``(out, in)``, bias ``(out,)`` or None: a new ``(*, out)``
    tensor (not a view)."""
    if x.dim() == 2:  # the common case, as torch's linear: one addmm (or mm) into a new tensor
        return torch.mm(x, weight.t()) if bias is None else torch.addmm(bias, x, weight.t())
    if functorch_active():  # vmap cannot batch the out= below
        return affine_forward_reference(x, weight, bias)
    x2d = _as_2d(x)
    # Written through a 2-D view into an output of the final shape: a Function must not return a view
    # (autograd forbids modifying one in place, e.g. by a following ReLU(inplace=True)).
    out = x.new_empty(*x.shape[:-1], weight.shape[0])
    out2d = out.view(x2d.shape[0], weight.shape[0])
    if bias is not None:
        torch.addmm(bias, x2d, weight.t(), out=out2d)
    else:
        torch.mm(x2d, weight.t(), out=out2d)
    return out


def affine_backward(
    dout: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, need_dx: bool, need_dw: bool, need_db: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """``(dx, dW, db)`` of :func:`affine_forward`, None where not needed: ``dout W``, ``dout^T x``,
    ``sum_n dout``."""
    dout2d = _as_2d(dout)
    dx = dw = db = None
    if need_dx:
        dx = torch.mm(dout2d, weight)
        dx = dx if x.dim() == 2 else dx.view(x.shape)
    if need_dw:
        dw = torch.mm(dout2d.t(), _as_2d(x))
    if need_db:
        db = dout2d.sum(0)
    return dx, dw, db


@fast_apply
class LinearFunction(torch.autograd.Function):
    """x ``(*, in)``, weight ``(out, in)``, bias ``(out,)`` or None -> ``(*, out)``.

    Forward-mode derivative (``jvp``): ``ẏ = ẋ Wᵀ + x Ẇᵀ + ḃ``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if _reference.is_active():
            return affine_forward_reference(x, weight, bias)
        return affine_forward(x, weight, bias)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        x, weight, bias = inputs
        ctx.has_bias = bias is not None
        ctx.reference = _reference.is_active()
        ctx.save_for_backward(x, weight)
        ctx.save_for_forward(x, weight)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        if ctx.reference:
            return affine_backward_reference(dout, x, weight, ctx.has_bias)
        need_dx, need_dw, need_db = ctx.needs_input_grad
        return affine_backward(dout, x, weight, need_dx, need_dw, ctx.has_bias and need_db)

    @staticmethod
    def jvp(
        ctx: Any, x_dot: torch.Tensor | None, w_dot: torch.Tensor | None, b_dot: torch.Tensor | None
    ) -> torch.Tensor:
        x, weight = ctx.saved_tensors
        return affine_jvp_reference(x_dot, w_dot, b_dot, x, weight)


_LinearFunctionTraced = without_jvp(LinearFunction)  # what torch.compile traces


def check_linear_arguments(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """The argument checks of :func:`linear`: an :class:`OpArgumentError` or a ``TypeError`` naming the bad
    argument."""
    check_floating("input", input)
    check_same_dtype(input, weight=weight, bias=bias)
    if weight.dim() not in (1, 2):
        raise OpArgumentError(
            f"weight must have shape (out_features, in_features) or (in_features,), got {tuple(weight.shape)}"
        )
    if input.dim() == 0 or input.shape[-1] != weight.shape[-1]:
        raise OpArgumentError(
            f"input must have shape (*, in_features={weight.shape[-1]}) to match weight "
            f"{tuple(weight.shape)}, got {tuple(input.shape)}"
        )
    if weight.dim() == 2:
        check_shape("bias", bias, (weight.shape[0],), "out_features")
    elif bias is not None and bias.dim() != 0:
        raise OpArgumentError(
            f"with a 1-D weight, bias must be None or a 0-d tensor, got shape {tuple(bias.shape)}"
        )


def linear(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.linear`.

    Args:
        input: floating tensor ``(*, in_features)`` (at least 1-D).
        weight: ``(out_features, in_features)``, or ``(in_features,)`` for one output feature whose dim is
            dropped (as torch does).
        bias: ``(out_features,)``, or for a 1-D weight a 0-d tensor; None for no bias.

    Shape:
        - Input: ``(*, in_features)``; ``*`` and ``in_features`` may be 0.
        - Output: ``(*, out_features)``; ``(*)`` for a 1-D weight.
        - Gradients: ``dx`` the shape of ``input``, ``dw`` ``(out_features, in_features)`` (the shape of
          ``weight``), ``db`` ``(out_features,)``.

    Returns:
        ``input @ weight.T + bias``.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> x = torch.tensor([[1.0, 2.0, 3.0]])
        >>> w = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]], requires_grad=True)
        >>> MF.linear(x, w, torch.tensor([0.0, 1.0]))
        tensor([[-2.,  4.]], grad_fn=<LinearFunctionBackward>)
        >>> x, w, b = (torch.randn(s, dtype=torch.double, requires_grad=True) for s in [(4, 3), (2, 3), 2])
        >>> torch.autograd.gradcheck(MF.linear, (x, w, b), check_forward_ad=True)
        True
    """
    check_linear_arguments(input, weight, bias)
    function = _LinearFunctionTraced if torch.compiler.is_compiling() else LinearFunction
    if weight.dim() == 1:  # one output feature, its dim dropped: the 2-D case on views
        b = None if bias is None else bias.reshape(1)
        return _autocast.apply(function, "lower", input, weight.unsqueeze(0), b).squeeze(-1)
    return _autocast.apply(function, "lower", input, weight, bias)
