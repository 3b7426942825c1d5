"""Element-wise activations met in torchvision classification models and EfficientNet-Lite: ReLU6,
Hardsigmoid, Hardswish, Sigmoid and SiLU (swish).

The reference (the top of this file). An element-wise op ``y = f(x)`` has a diagonal Jacobian, ``f'(x)`` on
the diagonal, so both of its derivatives are one product with the local slope ``f'(x)``:

    backward (vector-Jacobian product):      dx    = dout * f'(x)
    forward mode (Jacobian-vector product):  y_dot = f'(x) * x_dot

Each op below is written as its forward ``f`` (``<op>_forward``), its slope ``f'`` (``<op>_derivative``) and
the two products (``<op>_backward``, ``<op>_jvp``):

    ReLU6:        y = min(max(x, 0), 6)                f'(x) = [0 < x < 6]
    Hardsigmoid:  y = min(max(x / 6 + 1/2, 0), 1)      f'(x) = [-3 < x < 3] / 6
    Hardswish:    y = x min(max(x + 3, 0), 6) / 6      f'(x) = 0 (x <= -3), x/3 + 1/2 (-3 < x < 3), 1 (x >= 3)
    Sigmoid:      y = s = 1 / (1 + exp(-x))            f'(x) = s (1 - s)
    SiLU:         y = x s                              f'(x) = s (1 + x (1 - s))

At a kink the slope is PyTorch's: 0 at relu6's 0 and 6 and at hardsigmoid's -3 and 3; 0 at -3 and 1 at 3 for
hardswish. So gradients and forward-mode derivatives equal the built-ins' exactly, kinks included.
Saved: the output where it determines the slope (ReLU6, Sigmoid), else the input. The backwards are ordinary
differentiable tensor expressions, so double backward and forward-over-reverse work.

The tuned formulations (``tuned_*``, the default path) compute the same values with fewer temporaries, in
place on fresh ones, and take their masks from float-only kernels (clamp, sign, floor) instead of
comparisons producing bool masks, which on CPU cost several float passes each. They are fused kernels
(:func:`custom_ops.fused.kernel`): with fusion on, each runs as one compiled pass. They run on the plain
first-order path only: under :func:`custom_ops.reference_path`, under a ``torch.func`` transform and when
autograd records the derivative (a double backward), the reference formulas run
(:func:`custom_ops._transforms.pointwise_reference`); their own derivatives are torch's at the kinks, where
a clamp's are not.

In place (``inplace=True``, as in torch): the result is written into ``x``, which is returned and marked
dirty (``ctx.mark_dirty``), so autograd rebases ``x``'s history on the op, as for torch's ``relu6_``,
``hardsigmoid_``, ``hardswish_``, ``silu_``. ReLU6 saves the output, so in place costs no extra memory; the
others need the input for the slope and, like torch's in-place kernels, keep a copy of it taken before it is
overwritten (``original``: the functional wrapper takes it, and autograd records the copy, so the gradient
reaches ``x``'s earlier history through it). Under ``torch.func.vmap`` an in-place call writes into the
batched ``x`` itself, as the built-in does.

Under ``torch.compile`` the wrappers apply a twin of each Function without its ``jvp``, and an in-place call
runs as the op on the copy, written into ``x``: Dynamo traces neither a custom ``jvp`` nor ``mark_dirty``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from . import _autocast, fused
from ._checks import check_floating
from ._function import fast_apply, without_jvp
from ._transforms import pointwise_reference


# ------------------------------------------------------------------------------------------ the reference
def relu6_forward(x: torch.Tensor) -> torch.Tensor:
    """``y = min(max(x, 0), 6)``."""
    out = torch.clamp(x, 0, 6)
    return out


def relu6_derivative(out: torch.Tensor) -> torch.Tensor:
    """``f'(x) = [0 < x < 6]``, read from the output: ``0 < out < 6`` exactly where ``0 < x < 6``."""
    inside = (out > 0) & (out < 6)
    slope = inside.to(out.dtype)
    return slope


def relu6_backward(dout: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``dx = dout * [0 < x < 6]``."""
    dx = dout * relu6_derivative(out)
    return dx


def relu6_jvp(x_dot: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``y_dot = [0 < x < 6] * x_dot``."""
    out_dot = relu6_derivative(out) * x_dot
    return out_dot


def hardsigmoid_forward(x: torch.Tensor) -> torch.Tensor:
    """``y = min(max(x / 6 + 1/2, 0), 1)``: the line through (-3, 0) and (3, 1), clipped to [0, 1]."""
    out = torch.clamp(x / 6 + 0.5, 0, 1)
    return out


def hardsigmoid_derivative(x: torch.Tensor) -> torch.Tensor:
    """``f'(x) = [-3 < x < 3] / 6``: the line's slope inside, 0 on the flat parts and at the kinks."""
    inside = (x > -3) & (x < 3)
    slope = inside.to(x.dtype) / 6
    return slope


def hardsigmoid_backward(dout: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``dx = dout * [-3 < x < 3] / 6``."""
    dx = dout * hardsigmoid_derivative(x)
    return dx


def hardsigmoid_jvp(x_dot: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y_dot = [-3 < x < 3] / 6 * x_dot``."""
    out_dot = hardsigmoid_derivative(x) * x_dot
    return out_dot


def hardswish_forward(x: torch.Tensor) -> torch.Tensor:
    """``y = x min(max(x + 3, 0), 6) / 6``: ``x`` times a hard gate that opens from -3 to 3."""
    gate = torch.clamp(x + 3, 0, 6)
    out = x * gate / 6
    return out


def hardswish_derivative(x: torch.Tensor) -> torch.Tensor:
    """``f'(x) = 0 (x <= -3), x / 3 + 1/2 (-3 < x < 3), 1 (x >= 3)`` (product rule inside)."""
    inside = (x > -3) & (x < 3)
    above = x >= 3
    slope = torch.where(inside, x / 3 + 0.5, above.to(x.dtype))
    return slope


def hardswish_backward(dout: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``dx = dout * f'(x)``."""
    dx = dout * hardswish_derivative(x)
    return dx


def hardswish_jvp(x_dot: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y_dot = f'(x) * x_dot``."""
    out_dot = hardswish_derivative(x) * x_dot
    return out_dot


def sigmoid_forward(x: torch.Tensor) -> torch.Tensor:
    """``s = 1 / (1 + exp(-x))`` (``exp(-x)`` overflows to inf for very negative ``x``: ``s`` is then 0)."""
    s = 1 / (1 + torch.exp(-x))
    return s


def sigmoid_derivative(s: torch.Tensor) -> torch.Tensor:
    """``f'(x) = s (1 - s)``, from the output ``s``."""
    slope = s * (1 - s)
    return slope


def sigmoid_backward(dout: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``dx = dout * s (1 - s)``."""
    dx = dout * sigmoid_derivative(s)
    return dx


def sigmoid_jvp(x_dot: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``y_dot = s (1 - s) * x_dot``."""
    out_dot = sigmoid_derivative(s) * x_dot
    return out_dot


def silu_forward(x: torch.Tensor) -> torch.Tensor:
    """``y = x s`` with ``s = sigmoid(x)``."""
    s = sigmoid_forward(x)
    out = x * s
    return out


def silu_derivative(x: torch.Tensor) -> torch.Tensor:
    """``f'(x) = s + x s (1 - s) = s (1 + x (1 - s))`` (product rule, ``s' = s (1 - s)``)."""
    s = sigmoid_forward(x)
    slope = s * (1 + x * (1 - s))
    return slope


def silu_backward(dout: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``dx = dout * s (1 + x (1 - s))``."""
    dx = dout * silu_derivative(x)
    return dx


def silu_jvp(x_dot: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y_dot = s (1 + x (1 - s)) * x_dot``."""
    out_dot = silu_derivative(x) * x_dot
    return out_dot


# ---------------------------------------------------------------------------- the tuned formulations
# Sigmoid's tuned forward is torch.sigmoid itself (one kernel; the reference makes four passes). Each backward
# kernel is also its op's tuned jvp: the same product, with the tangent x_dot for dout. The product with dout
# (or x_dot) is out of place: under vmap of the backward the incoming gradient is batched and the slope is
# not, and an in-place product into the less batched tensor would be refused.
@fused.kernel
def tuned_relu6_backward(dout: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``dout * [0 < out < 6]``."""
    # [0 < out < 6] = sign(out * (6 - out)) for out in [0, 6].
    inside = torch.rsub(out, 6).mul_(out).sign_()
    return dout * inside


@fused.kernel
def tuned_hardsigmoid_forward(x: torch.Tensor) -> torch.Tensor:
    """``min(max(x / 6 + 1/2, 0), 1)``, in place on one temporary."""
    return (x / 6).add_(0.5).clamp_(0, 1)


@fused.kernel
def tuned_hardsigmoid_backward(dout: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``dout * [-3 < x < 3] / 6``."""
    # [|x| < 3] = max(sign(3 - |x|), 0): 1 inside, 0 at the kinks and beyond.
    slope = torch.rsub(x.abs(), 3).sign_().clamp_min_(0).div_(6)
    return dout * slope


@fused.kernel
def tuned_hardswish_forward(x: torch.Tensor) -> torch.Tensor:
    """``x min(max(x + 3, 0), 6) / 6``, in place on one temporary."""
    return (x + 3).clamp_(0, 6).mul_(x).div_(6)


@fused.kernel
def tuned_hardswish_backward(dout: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``dout * f'(x)``, ``f'(x) = 0 (x <= -3), x / 3 + 1/2 (-3 < x < 3), 1 (x >= 3)``."""
    # With q = clamp(x, -3, 3) / 3 in [-1, 1]: f'(x) = q + 1/2 - q floor(q^2) / 2. floor(q^2) is 1 at
    # q = +-1 (x <= -3 or x >= 3) and 0 inside (|q| < 1 there, so q^2 rounds below 1), so the kinks take
    # torch's values 0 and 1. (floor is a cheap float kernel; trunc and where-chains cost many times more.)
    q = x.clamp(-3, 3).div_(3)
    slope = torch.mul(q, q).floor_().mul_(q).mul_(-0.5).add_(q).add_(0.5)
    return dout * slope


@fused.kernel
def tuned_sigmoid_backward(dout: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``dout * s (1 - s)`` from the saved output ``s``."""
    slope = torch.rsub(s, 1).mul_(s)
    return dout * slope


@fused.kernel
def tuned_silu_forward(x: torch.Tensor) -> torch.Tensor:
    """``x sigmoid(x)``, in place on one temporary."""
    return torch.sigmoid(x).mul_(x)


@fused.kernel
def tuned_silu_backward(dout: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``dout * s (1 + x (1 - s))`` with ``s = sigmoid(x)``."""
    s = torch.sigmoid(x)
    # 1 + x (1 - s) = (x - x s) + 1, then times s, in place on one temporary.
    slope = torch.addcmul(x, x, s, value=-1).add_(1).mul_(s)
    return dout * slope


# ------------------------------------------------------------------------------------- the Functions
def _save_input(
    ctx: Any, x: torch.Tensor, original: torch.Tensor | None, output: torch.Tensor | None = None
) -> None:
    """Save the input the slope is computed from (``original`` when the op writes into ``x``), or the
    ``output`` where given (where it determines the slope: no copy of the input outlives the call), for
    the backward and for the jvp; mark ``x`` dirty when written in place."""
    ctx.inplace = original is not None
    source = original if ctx.inplace else x
    if output is not None:
        source = output
    if ctx.inplace:
        ctx.mark_dirty(x)
    ctx.save_for_backward(source)
    ctx.save_for_forward(source)


def _input_grads(ctx: Any, dx: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The gradients of ``(x, original)``: in place, the output depends on ``original`` only."""
    return (None, dx) if ctx.inplace else (dx, None)


def _output_tangent(x_dot: torch.Tensor | None, out_dot: torch.Tensor) -> torch.Tensor:
    """The tangent of an in-place output: forward-mode AD requires it written into ``x``'s own tangent."""
    if x_dot is None:
        return out_dot
    x_dot.copy_(out_dot)
    # Under gradcheck's (legacy) vmap an in-place copy into a batched tangent leaves its version counter,
    # which forward-mode AD checks, as it was.
    torch.autograd.graph.increment_version(x_dot)
    return x_dot


def _vmap_elementwise(
    function: type[torch.autograd.Function],
    in_dims: tuple[Any, ...],
    x: torch.Tensor,
    extra: Any,
    *params: Any,
) -> tuple[torch.Tensor, int]:
    """The vmap rule of an element-wise Function ``function(x, extra, *params)``: the op itself on the
    physical tensors, whatever dimension holds the batch. ``extra`` is ``original`` (laid out like ``x``
    here), None or a flag; ``params`` are numbers (a slope, an alpha). Called with the unwrapped ``x``,
    an in-place op writes into it and returns it: the batched ``x`` itself comes back, as from the
    built-in's in-place rule. (torch's generated rule, ``generate_vmap_rule = True``, returns a new
    tensor, which ``mark_dirty`` refuses.)"""
    x_dim, extra_dim = in_dims[:2]
    if isinstance(extra, torch.Tensor) and extra_dim != x_dim:
        batched = extra_dim is not None
        extra = extra.movedim(extra_dim, x_dim) if batched else extra.unsqueeze(x_dim).expand_as(x)
    return function.apply(x, extra, *params), x_dim


_TUNED: dict[str, tuple[Callable[..., torch.Tensor], ...]] = {}
"""The tuned ``(forward, backward, jvp)`` of each Function :func:`_reference_function` made, by
``module.name``: looked up, not held in the Functions' closures, which Dynamo cannot wrap a kernel in."""


def _reference_formulas() -> bool:
    """:func:`pointwise_reference`, or Dynamo tracing (it traces either path's eager formulas alike)."""
    return pointwise_reference() or torch.compiler.is_compiling()


def _reference_function(
    module: str,
    name: str,
    doc: str,
    formulas: tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor], Callable[..., torch.Tensor]],
    params: tuple[str, ...] = (),
    saves_output: Callable[..., bool] | None = None,
    tuned: tuple[Callable[..., torch.Tensor] | None, Callable[..., torch.Tensor]] | None = None,
) -> type[torch.autograd.Function]:
    """The Function ``name(x, original, *params)`` of an element-wise op computed by its reference
    ``formulas``, ``(forward(x, *params), backward(dout, saved, *params), jvp(x_dot, saved, *params))``,
    in the form of the Functions below: ``original`` is None out of place, else a copy of ``x`` whose
    result is written into ``x`` (returned, marked dirty); ``saved`` is the output where
    ``saves_output(*params)`` (where it determines the slope; None: always), else the input
    (``original`` in place). ``params`` names the numbers after ``original`` (a slope, an alpha).
    ``tuned``, ``(forward(x, *params) or None, backward(dout, saved, *params))``, are the tuned kernels
    run where :func:`~custom_ops._transforms.pointwise_reference` is false (a None forward: the reference
    forward serves both paths); the tuned backward is also the tuned jvp, with the tangent for ``dout``.
    The class is named ``name``, with docstring ``doc``, as if written in ``module``."""
    forward_formula, backward_formula, jvp_formula = formulas
    tuned_forward, tuned_backward = tuned or (None, None)
    key = f"{module}.{name}"
    _TUNED[key] = (
        forward_formula if tuned_forward is None else tuned_forward,
        backward_formula if tuned_backward is None else tuned_backward,
        jvp_formula if tuned_backward is None else tuned_backward,
    )

    def forward(x: torch.Tensor, original: torch.Tensor | None, *values: Any) -> torch.Tensor:
        formula = forward_formula if _reference_formulas() else _TUNED[key][0]
        if original is None:
            return formula(x, *values)
        return x.copy_(formula(original, *values))

    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        x, original, *ctx.values = inputs
        from_output = saves_output is None or saves_output(*ctx.values)
        _save_input(ctx, x, original, output if from_output else None)

    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (saved,) = ctx.saved_tensors
        formula = backward_formula if _reference_formulas() else _TUNED[key][1]
        dx = formula(dout, saved, *ctx.values)
        return (*_input_grads(ctx, dx), *(None for _ in ctx.values))

    def jvp(ctx: Any, x_dot: torch.Tensor | None, original_dot: torch.Tensor | None, *_: Any) -> torch.Tensor:
        (saved,) = ctx.saved_tensors
        formula = jvp_formula if _reference_formulas() else _TUNED[key][2]
        out_dot = formula(original_dot if ctx.inplace else x_dot, saved, *ctx.values)
        return _output_tangent(x_dot, out_dot) if ctx.inplace else out_dot

    def vmap(info: Any, in_dims: tuple[Any, ...], x: torch.Tensor, *args: Any) -> tuple[torch.Tensor, int]:
        return _vmap_elementwise(function, in_dims, x, *args)

    # forward's parameters by name, so that fast_apply binds a positional call for free
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter(n, positional) for n in ("x", "original", *params)]
    forward.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    methods = (forward, setup_context, backward, jvp, vmap)
    namespace: dict[str, Any] = {method.__name__: staticmethod(method) for method in methods}
    namespace.update(__module__=module, __qualname__=name, __doc__=doc)
    function = fast_apply(type(name, (torch.autograd.Function,), namespace))
    return function


@fast_apply
class ReLU6Function(torch.autograd.Function):
    """``y = min(max(x, 0), 6)``, x ``(*)`` -> ``(*)``, in place into ``x`` when ``inplace``.

    Backward ``dx = dout * [0 < x < 6]``; jvp ``y_dot = [0 < x < 6] * x_dot``; both read the mask from the
    saved output.
    """

    @staticmethod
    def forward(x: torch.Tensor, inplace: bool) -> torch.Tensor:
        if not inplace:
            return relu6_forward(x)
        if pointwise_reference():
            return x.copy_(relu6_forward(x))
        return x.clamp_(0, 6)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, bool], output: torch.Tensor) -> None:
        x, inplace = inputs
        ctx.inplace = inplace
        if inplace:
            ctx.mark_dirty(x)
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor, None]:
        (out,) = ctx.saved_tensors
        dx = relu6_backward(dout, out) if pointwise_reference() else tuned_relu6_backward(dout, out)
        return dx, None

    @staticmethod
    def jvp(ctx: Any, x_dot: torch.Tensor, _: None) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        out_dot = relu6_jvp(x_dot, out) if pointwise_reference() else tuned_relu6_backward(x_dot, out)
        return _output_tangent(x_dot, out_dot) if ctx.inplace else out_dot

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], x: torch.Tensor, inplace: bool) -> tuple[torch.Tensor, int]:
        return _vmap_elementwise(ReLU6Function, in_dims, x, inplace)


@fast_apply
class HardsigmoidFunction(torch.autograd.Function):
    """``y = min(max(x / 6 + 1/2, 0), 1)``, x ``(*)`` -> ``(*)``; with ``original`` (a copy of ``x``), the
    result of ``original`` is written into ``x``.

    Backward ``dx = dout * [-3 < x < 3] / 6``; jvp ``y_dot = [-3 < x < 3] / 6 * x_dot``.
    """

    @staticmethod
    def forward(x: torch.Tensor, original: torch.Tensor | None) -> torch.Tensor:
        if original is None:
            return hardsigmoid_forward(x) if pointwise_reference() else tuned_hardsigmoid_forward(x)
        if pointwise_reference():
            return x.copy_(hardsigmoid_forward(original))
        return x.div_(6).add_(0.5).clamp_(0, 1)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, Any], output: torch.Tensor) -> None:
        _save_input(ctx, *inputs)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        (x,) = ctx.saved_tensors
        dx = hardsigmoid_backward(dout, x) if pointwise_reference() else tuned_hardsigmoid_backward(dout, x)
        return _input_grads(ctx, dx)

    @staticmethod
    def jvp(ctx: Any, x_dot: torch.Tensor | None, original_dot: torch.Tensor | None) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        tangent = original_dot if ctx.inplace else x_dot
        if pointwise_reference():
            out_dot = hardsigmoid_jvp(tangent, x)
        else:
            out_dot = tuned_hardsigmoid_backward(tangent, x)
        return _output_tangent(x_dot, out_dot) if ctx.inplace else out_dot

    @staticmethod
    def vmap(
        info: Any, in_dims: tuple[Any, ...], x: torch.Tensor, original: torch.Tensor | None
    ) -> tuple[torch.Tensor, int]:
        return _vmap_elementwise(HardsigmoidFunction, in_dims, x, original)


@fast_apply
class HardswishFunction(torch.autograd.Function):
    """``y = x min(max(x + 3, 0), 6) / 6``, x ``(*)`` -> ``(*)``; with ``original`` (a copy of ``x``), the
    result of ``original`` is written into ``x``.

    Backward ``dx = dout * f'(x)``; jvp ``y_dot = f'(x) * x_dot``; ``f'(x)`` is 0 for ``x <= -3``,
    ``x / 3 + 1/2`` for ``-3 < x < 3`` and 1 for ``x >= 3`` (torch's values at the kinks).
    """

    @staticmethod
    def forward(x: torch.Tensor, original: torch.Tensor | None) -> torch.Tensor:
        if original is None:
            return hardswish_forward(x) if pointwise_reference() else tuned_hardswish_forward(x)
        if pointwise_reference():
            return x.copy_(hardswish_forward(original))
        return x.add_(3).clamp_(0, 6).mul_(original).div_(6)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, Any], output: torch.Tensor) -> None:
        _save_input(ctx, *inputs)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        (x,) = ctx.saved_tensors
        dx = hardswish_backward(dout, x) if pointwise_reference() else tuned_hardswish_backward(dout, x)
        return _input_grads(ctx, dx)

    @staticmethod
    def jvp(ctx: Any, x_dot: torch.Tensor | None, original_dot: torch.Tensor | None) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        tangent = original_dot if ctx.inplace else x_dot
        out_dot = hardswish_jvp(tangent, x) if pointwise_reference() else tuned_hardswish_backward(tangent, x)
        return _output_tangent(x_dot, out_dot) if ctx.inplace else out_dot

    @staticmethod
    def vmap(
        info: Any, in_dims: tuple[Any, ...], x: torch.Tensor, original: torch.Tensor | None
    ) -> tuple[torch.Tensor, int]:
        return _vmap_elementwise(HardswishFunction, in_dims, x, original)


@fast_apply
class SigmoidFunction(torch.autograd.Function):
    """``s = 1 / (1 + exp(-x))``, x ``(*)`` -> ``(*)``.

    Backward ``dx = dout * s (1 - s)``; jvp ``y_dot = s (1 - s) * x_dot``; both from the saved output ``s``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return sigmoid_forward(x) if pointwise_reference() else torch.sigmoid(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> torch.Tensor:
        (s,) = ctx.saved_tensors
        return sigmoid_backward(dout, s) if pointwise_reference() else tuned_sigmoid_backward(dout, s)

    @staticmethod
    def jvp(ctx: Any, x_dot: torch.Tensor) -> torch.Tensor:
        (s,) = ctx.saved_tensors
        return sigmoid_jvp(x_dot, s) if pointwise_reference() else tuned_sigmoid_backward(x_dot, s)


@fast_apply
class SiLUFunction(torch.autograd.Function):
    """``y = x s``, ``s = sigmoid(x)``, x ``(*)`` -> ``(*)``; with ``original`` (a copy of ``x``), the result
    of ``original`` is written into ``x``.

    Backward ``dx = dout * s (1 + x (1 - s))``; jvp ``y_dot = s (1 + x (1 - s)) * x_dot``.
    """

    @staticmethod
    def forward(x: torch.Tensor, original: torch.Tensor | None) -> torch.Tensor:
        if original is None:
            return silu_forward(x) if pointwise_reference() else tuned_silu_forward(x)
        if pointwise_reference():
            return x.copy_(silu_forward(original))
        return x.mul_(torch.sigmoid(original))

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, Any], output: torch.Tensor) -> None:
        _save_input(ctx, *inputs)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        (x,) = ctx.saved_tensors
        dx = silu_backward(dout, x) if pointwise_reference() else tuned_silu_backward(dout, x)
        return _input_grads(ctx, dx)

    @staticmethod
    def jvp(ctx: Any, x_dot: torch.Tensor | None, original_dot: torch.Tensor | None) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        tangent = original_dot if ctx.inplace else x_dot
        out_dot = silu_jvp(tangent, x) if pointwise_reference() else tuned_silu_backward(tangent, x)
        return _output_tangent(x_dot, out_dot) if ctx.inplace else out_dot

    @staticmethod
    def vmap(
        info: Any, in_dims: tuple[Any, ...], x: torch.Tensor, original: torch.Tensor | None
    ) -> tuple[torch.Tensor, int]:
        return _vmap_elementwise(SiLUFunction, in_dims, x, original)


# ------------------------------------------------------------------------------- the functional twins
_FUNCTIONS: dict[str, type[torch.autograd.Function]] = {
    "relu6": ReLU6Function,
    "hardsigmoid": HardsigmoidFunction,
    "hardswish": HardswishFunction,
    "sigmoid": SigmoidFunction,
    "silu": SiLUFunction,
}
_FOR_COMPILE = {name: without_jvp(function) for name, function in _FUNCTIONS.items()}


def _apply(op: str, *args: Any) -> torch.Tensor:
    """Apply ``op``'s Function with the autocast policy "same" (its twin without jvp under Dynamo; the
    Functions are looked up by name, which Dynamo traces, where a class-keyed lookup breaks the graph)."""
    functions = _FOR_COMPILE if torch.compiler.is_compiling() else _FUNCTIONS
    return _autocast.apply(functions[op], "same", *args)


def _activation(op: str, input: torch.Tensor, inplace: bool) -> torch.Tensor:
    """Apply ``op``'s Function to ``(input, original)`` (:func:`_pointwise`)."""
    return _pointwise(_FUNCTIONS[op], _FOR_COMPILE[op], input, inplace)


def _pointwise(
    function: type[torch.autograd.Function],
    for_compile: type[torch.autograd.Function],
    input: torch.Tensor,
    inplace: bool,
    *params: Any,
) -> torch.Tensor:
    """Apply an element-wise ``function`` to ``(input, original, *params)`` with the autocast policy
    "same" (``for_compile``, its twin without jvp, under Dynamo): ``original`` is None out of place, else
    a copy of ``input`` taken before it is overwritten (recorded by autograd, so the gradient reaches
    ``input``'s history)."""
    check_floating("input", input)
    compiling = torch.compiler.is_compiling()
    applied = for_compile if compiling else function
    if not inplace:
        return _autocast.apply(applied, "same", input, None, *params)
    original = input.clone()
    if compiling:  # Dynamo does not trace a Function that marks an input dirty
        return input.copy_(_autocast.apply(applied, "same", original, None, *params))
    return _autocast.apply(applied, "same", input, original, *params)


def relu6(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.relu6`: ``min(max(x, 0), 6)``.

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
        >>> MF.relu6(x)
        tensor([0., 0., 0., 2., 6.])
    """
    check_floating("input", input)
    if (
        inplace and torch.compiler.is_compiling()
    ):  # Dynamo does not trace a Function that marks an input dirty
        return input.copy_(_apply("relu6", input, False))
    return _apply("relu6", input, bool(inplace))


def hardsigmoid(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.hardsigmoid`: ``min(max(x / 6 + 1/2, 0), 1)``.

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
        >>> MF.hardsigmoid(x)
        tensor([0.0000, 0.3333, 0.5000, 0.8333, 1.0000])
    """
    return _activation("hardsigmoid", input, inplace)


def hardswish(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.hardswish`: ``x * min(max(x + 3, 0), 6) / 6``.

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
        >>> MF.hardswish(x)
        tensor([-0.0000, -0.3333,  0.0000,  1.6667,  8.0000])
    """
    return _activation("hardswish", input, inplace)


def silu(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Manual twin of :func:`torch.nn.functional.silu`: ``x * sigmoid(x)`` (swish).

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
        >>> MF.silu(x)
        tensor([-0.0719, -0.2689,  0.0000,  1.7616,  7.9973])
    """
    return _activation("silu", input, inplace)


def sigmoid(input: torch.Tensor) -> torch.Tensor:
    """Manual twin of :func:`torch.sigmoid` (torch's has no ``inplace``): ``1 / (1 + exp(-x))``.

    Args:
        input: floating tensor of any shape.

    Shape:
        - Input: ``(*)``, any shape.
        - Output and input gradient ``dx``: ``(*)``, the same shape as the input.

    Returns:
        The logistic sigmoid of ``input``.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> x = torch.tensor([-4.0, -1.0, 0.0, 2.0, 8.0])
        >>> MF.sigmoid(x)
        tensor([0.0180, 0.2689, 0.5000, 0.8808, 0.9997])
    """
    check_floating("input", input)
    return _apply("sigmoid", input)
