"""Run the CS231n sandwich layers (:mod:`custom_ops.layer_utils`) in place of runs of manual layers.

:class:`SandwichSequential` is an ``nn.Sequential`` with the same children, names, ``state_dict`` and repr
(but for its class name): checkpoints load unchanged in both directions. Its ``forward`` walks the
children, and where consecutive children are manual layers (:mod:`custom_ops.nn`, exact classes) forming

    Linear - BatchNorm1d - ReLU   (2-D input)     -> affine_bn_relu
    Linear - LayerNorm - ReLU     (over the features) -> affine_ln_relu
    Linear - ReLU                                  -> affine_relu
    Conv2d - BatchNorm2d - ReLU   (4-D input)     -> conv_bn_relu
    Conv2d - ReLU - MaxPool2d                      -> conv_relu_pool
    Conv2d - ReLU                                  -> conv_relu

(the first that matches, in this order), it calls the sandwich with those modules' parameters and buffers:
one autograd Function instead of three, the same result. Batch norm goes through the manual
``BatchNorm`` module's own forward logic (train/eval, ``momentum=None`` as a cumulative average,
``num_batches_tracked``, ``track_running_stats=False``), so its buffers change exactly as the children's.

A run is left to the children (computed one by one, as ``nn.Sequential``) whenever fusing it could differ
from calling them: a configuration the sandwich does not compute (a conv with a padding mode other than
zeros or the ``"im2col"`` algorithm, a layer norm over more than the features, a max pool with padding,
dilation, ``ceil_mode`` or ``return_indices``), an input of other dims than listed, a child with hooks (or
any global module hook: hooks expect each layer's call), or an active torch function mode (it observes or
reroutes each layer's functional calls, e.g. :func:`torch_cs231n.interop.function_mode.manual_share`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as module_hooks

import custom_ops.layer_utils as layer_utils
import custom_ops.nn as mnn
from custom_ops.nn import _batch_norm_forward

Layers = Sequence[nn.Module]


def _conv_supported(conv: nn.Module) -> bool:
    """Zero padding and the ``"fast"`` backward: what the conv sandwiches compute."""
    return conv.padding_mode == "zeros" and conv.algorithm == "fast"


def _conv_options(conv: nn.Module) -> dict[str, Any]:
    """The conv's ``stride``, ``padding``, ``dilation`` and ``groups``, as the conv sandwiches' keywords."""
    return {"stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation, "groups": conv.groups}


def _affine_bn_relu(layers: Layers, x: torch.Tensor) -> torch.Tensor:
    linear, bn, _ = layers

    def fused(x: torch.Tensor, *statistics_and_norm: object) -> torch.Tensor:
        return layer_utils.affine_bn_relu(x, linear.weight, linear.bias, *statistics_and_norm)

    # The BatchNorm module's forward logic with the sandwich as its batch_norm; its input-dim check sees x,
    # which has the dims of the linear output (2-D).
    return _batch_norm_forward(bn, x, fused)


def _conv_bn_relu(layers: Layers, x: torch.Tensor) -> torch.Tensor:
    conv, bn, _ = layers

    def fused(x: torch.Tensor, *statistics_and_norm: object) -> torch.Tensor:
        return layer_utils.conv_bn_relu(
            x, conv.weight, conv.bias, *statistics_and_norm, **_conv_options(conv)
        )

    return _batch_norm_forward(bn, x, fused)  # x is 4-D, as the conv output that BatchNorm2d checks


def _affine_ln_relu(layers: Layers, x: torch.Tensor) -> torch.Tensor:
    linear, ln, _ = layers
    return layer_utils.affine_ln_relu(x, linear.weight, linear.bias, ln.weight, ln.bias, ln.eps)


def _affine_relu(layers: Layers, x: torch.Tensor) -> torch.Tensor:
    linear, _ = layers
    return layer_utils.affine_relu(x, linear.weight, linear.bias)


def _conv_relu_pool(layers: Layers, x: torch.Tensor) -> torch.Tensor:
    conv, _, pool = layers
    return layer_utils.conv_relu_pool(
        x,
        conv.weight,
        conv.bias,
        pool_kernel=pool.kernel_size,
        pool_stride=pool.stride,
        **_conv_options(conv),
    )


def _conv_relu(layers: Layers, x: torch.Tensor) -> torch.Tensor:
    conv, _ = layers
    return layer_utils.conv_relu(x, conv.weight, conv.bias, **_conv_options(conv))


def _plain_pool(pool: nn.Module) -> bool:
    """A max pool without padding, dilation, ``ceil_mode`` or indices: what ``conv_relu_pool`` computes."""
    return (
        pool.padding in (0, (0, 0))
        and pool.dilation in (1, (1, 1))
        and not pool.ceil_mode
        and not pool.return_indices
    )


@dataclass(frozen=True)
class _Sandwich:
    """A run of manual layers that one sandwich computes.

    Attributes:
        layers: the children's exact classes, in order.
        input_dims: the dims of the run's input it fuses for (None: any).
        supported: whether the sandwich computes this configuration of the layers exactly as they do.
        call: ``(layers, input) -> output`` with the sandwich.
    """

    layers: tuple[type[nn.Module], ...]
    input_dims: tuple[int, ...] | None
    supported: Callable[[Layers], bool]
    call: Callable[[Layers, torch.Tensor], torch.Tensor]


SANDWICH_PATTERNS: tuple[_Sandwich, ...] = (
    _Sandwich((mnn.Linear, mnn.BatchNorm1d, mnn.ReLU), (2,), lambda m: True, _affine_bn_relu),
    _Sandwich(
        (mnn.Linear, mnn.LayerNorm, mnn.ReLU),
        None,
        lambda m: tuple(m[1].normalized_shape) == (m[0].out_features,),
        _affine_ln_relu,
    ),
    _Sandwich((mnn.Linear, mnn.ReLU), None, lambda m: True, _affine_relu),
    _Sandwich((mnn.Conv2d, mnn.BatchNorm2d, mnn.ReLU), (4,), lambda m: _conv_supported(m[0]), _conv_bn_relu),
    _Sandwich(
        (mnn.Conv2d, mnn.ReLU, mnn.MaxPool2d),
        (3, 4),
        lambda m: _conv_supported(m[0]) and _plain_pool(m[2]),
        _conv_relu_pool,
    ),
    _Sandwich((mnn.Conv2d, mnn.ReLU), (3, 4), lambda m: _conv_supported(m[0]), _conv_relu),
)
"""The runs :class:`SandwichSequential` fuses, tried in this order at each child."""


def _has_hooks(module: nn.Module) -> bool:
    """Whether ``module`` has forward or backward hooks of its own (fusing would skip them)."""
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or module._backward_pre_hooks
    )


def _global_hooks() -> bool:
    """Whether a global module hook is registered (``nn.modules.module.register_module_forward_hook``...)."""
    return bool(
        module_hooks._global_forward_hooks
        or module_hooks._global_forward_pre_hooks
        or module_hooks._global_backward_hooks
        or module_hooks._global_backward_pre_hooks
    )


@functools.lru_cache(maxsize=256)
def _candidates(classes: tuple[type, ...]) -> tuple[tuple[_Sandwich, ...], ...]:
    """For each position of a run of children of these classes, the patterns whose layer classes are those
    of the children from there on, in order: the part of the matching that depends on the children alone,
    computed once per sequence of classes (the rest, input dims, hooks and configuration, on every call)."""
    return tuple(
        tuple(
            pattern
            for pattern in SANDWICH_PATTERNS
            if len(pattern.layers) <= len(classes) - start
            and all(c is cls for c, cls in zip(classes[start:], pattern.layers))
        )
        for start in range(len(classes))
    )


def _match(
    children: Layers, start: int, input: object, candidates: Sequence[_Sandwich] = SANDWICH_PATTERNS
) -> _Sandwich | None:
    """The sandwich that computes the run of ``children`` from ``start`` on for this input, if any, among
    ``candidates`` (all the patterns, or those :func:`_candidates` gives for ``start``)."""
    if not isinstance(input, torch.Tensor):
        return None
    for pattern in candidates:
        run = children[start : start + len(pattern.layers)]
        if (
            len(run) == len(pattern.layers)
            and all(type(m) is cls for m, cls in zip(run, pattern.layers))
            and (pattern.input_dims is None or input.dim() in pattern.input_dims)
            and not any(_has_hooks(m) for m in run)
            and pattern.supported(run)
        ):
            return pattern
    return None


class SandwichSequential(nn.Sequential):
    """An ``nn.Sequential`` that runs the CS231n sandwich layers in place of runs of manual layers (see the
    module docstring): same children, names, ``state_dict`` and results; fewer autograd Functions, less
    memory saved for backward, faster.

    Args:
        *args: as ``nn.Sequential``: modules, or one ``OrderedDict`` of named modules.

    Shape:
        - Input and output: those of the children in sequence; gradients those of the children's
          parameters and of the input.

    Examples::

        >>> import torch, custom_ops.nn as mnn
        >>> net = SandwichSequential(mnn.Linear(6, 8), mnn.ReLU(), mnn.Linear(8, 3))
        >>> net(torch.randn(4, 6)).shape  # Linear - ReLU run as one affine_relu, then the last Linear
        torch.Size([4, 3])
        >>> net
        SandwichSequential(
          (0): Linear(in_features=6, out_features=8, bias=True)
          (1): ReLU()
          (2): Linear(in_features=8, out_features=3, bias=True)
        )
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        children = tuple(self._modules.values())
        fusable = not _global_hooks() and not torch._C._is_torch_function_mode_enabled()
        if fusable and not torch.compiler.is_compiling():
            candidates = _candidates(tuple(map(type, children)))  # cached: the walk runs on every call
        else:
            candidates = [SANDWICH_PATTERNS] * len(children)
        i = 0
        while i < len(children):
            pattern = _match(children, i, input, candidates[i]) if fusable and candidates[i] else None
            if pattern is None:
                input = children[i](input)
                i += 1
            else:
                input = pattern.call(children[i : i + len(pattern.layers)], input)
                i += len(pattern.layers)
        return input


def sandwich(module: nn.Module) -> nn.Module:
    """Make every plain ``nn.Sequential`` in ``module`` (itself included, recursively) a
    :class:`SandwichSequential`, in place: a change of class, so parameters, buffers, hooks, train/eval mode
    and ``state_dict`` keys stay as they are. Subclasses of ``nn.Sequential`` are left alone.

    Args:
        module: a model.

    Returns:
        ``module``, converted.

    Examples::

        >>> import custom_ops.nn as mnn
        >>> from torch import nn
        >>> model = sandwich(nn.Sequential(nn.Sequential(mnn.Conv2d(3, 4, 3), mnn.ReLU()), nn.Flatten()))
        >>> type(model).__name__, type(model[0]).__name__
        ('SandwichSequential', 'SandwichSequential')
    """
    for child in module.modules():
        if type(child) is nn.Sequential:
            child.__class__ = SandwichSequential
    return module


def unsandwich(module: nn.Module) -> nn.Module:
    """The reverse of :func:`sandwich`: every :class:`SandwichSequential` in ``module`` (itself included)
    becomes a plain ``nn.Sequential`` again, in place.

    Examples::

        >>> from torch import nn
        >>> type(unsandwich(sandwich(nn.Sequential(nn.ReLU())))).__name__
        'Sequential'
    """
    for child in module.modules():
        if type(child) is SandwichSequential:
            child.__class__ = nn.Sequential
    return module
