"""Swap the built-in layers of any model for their manual twins from :mod:`custom_ops.nn`, and back.

The manual classes subclass their built-in twins with the same attributes, so a swap is a change of the
module's class, in place: parameters, buffers, hooks, train/eval mode, device and dtype are untouched
(the very same tensors), the model's structure and ``state_dict`` keys do not change, and an optimizer
built before the swap still holds the right parameters. Only layers whose type is *exactly* a built-in
with a twin are swapped; subclasses that override ``forward`` (e.g. a third-party "same padding" conv)
and layers without a twin are kept and listed in the :class:`SwapReport`. Functional calls inside a
model's ``forward`` (``torch.flatten``, ``x + identity``, ``F.adaptive_avg_pool2d``) are not layers and
stay built-in; :func:`torch_cs231n.interop.function_mode.attach_manual_functions` routes the layer-level ones
(``F.relu``, ``F.layer_norm``, ...) to the manual twins too, and :func:`manual_share` measures how much of
a forward and backward pass runs on manual ops.

>>> import torchvision
>>> from torch_cs231n.interop.swap import count_layers, to_manual
>>> model = to_manual(torchvision.models.resnet18(num_classes=10))
>>> count_layers(model)["builtin"]
0
>>> model, report = to_manual(torchvision.models.mobilenet_v3_small(), report=True)
>>> print(report)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, overload

from torch import nn

from custom_ops import nn as mnn
from custom_ops.conv import ConvAlgorithm, resolve_algorithm
from custom_ops.registry import OPS
from torch_cs231n.interop.function_mode import ManualShare as ManualShare
from torch_cs231n.interop.function_mode import detach_manual_functions
from torch_cs231n.interop.function_mode import manual_share as manual_share
from torch_cs231n.nets.sandwich import sandwich, unsandwich

_log = logging.getLogger(__name__)

TWINS: dict[type[nn.Module], type[nn.Module]] = {
    builtin: manual for facts in OPS.values() for builtin, manual in facts.module_twins.items()
}
"""Every built-in layer type that has a manual twin (the module twins of :data:`custom_ops.registry.OPS`);
a twin subclasses its built-in and adds no state except the extras below."""

BUILTINS: dict[type[nn.Module], type[nn.Module]] = {manual: builtin for builtin, manual in TWINS.items()}
"""Every manual layer type and its built-in twin."""

# Attributes a manual twin adds to its built-in (set on the way to manual, removed on the way back).
_EXTRA_ATTRIBUTES: dict[type[nn.Module], tuple[str, ...]] = {
    mnn.Conv2d: ("algorithm",),
    mnn.Dropout: ("generator",),
}

# Leaf layers that do no arithmetic (reshapes, identity): listed apart from the layers missing a twin.
_NO_MATH = (nn.Identity, nn.Flatten, nn.Unflatten)


@dataclass
class SwapReport:
    """What a swap did. Entries are ``(qualified name, type name, detail)``.

    Attributes:
        direction: ``"manual"`` (built-in -> manual) or ``"builtin"``.
        swapped: layers whose class changed; detail is the new class's qualified name.
        kept: leaf layers that do arithmetic but were not swapped, with the reason (no twin, or a
            subclass of a built-in), and (to manual) the attention blocks, with what they compute in
            their own ``forward``.
        no_math: leaf layers with no arithmetic to swap (``Identity``, ``Flatten``, reshapes, empty
            containers).
    """

    direction: Literal["manual", "builtin"]
    swapped: list[tuple[str, str, str]] = field(default_factory=list)
    kept: list[tuple[str, str, str]] = field(default_factory=list)
    no_math: list[tuple[str, str, str]] = field(default_factory=list)

    def swapped_counts(self) -> Counter[str]:
        """Number of swapped layers per original type name."""
        return Counter(type_name for _, type_name, _ in self.swapped)

    def __str__(self) -> str:
        lines = [f"to_{self.direction}: swapped {len(self.swapped)} layers"]
        lines += [f"  {name}: {count}" for name, count in sorted(self.swapped_counts().items())]
        lines.append(f"kept {len(self.kept)} layers (no {self.direction} twin)")
        reasons = Counter((type_name, reason) for _, type_name, reason in self.kept)
        lines += [f"  {name}: {count} ({reason})" for (name, reason), count in sorted(reasons.items())]
        if self.no_math:
            counts = Counter((type_name, detail) for _, type_name, detail in self.no_math)
            lines.append(
                "no arithmetic: "
                + ", ".join(
                    f"{n} x{c}" + ("" if detail == "no arithmetic" else f" ({detail})")
                    for (n, detail), c in sorted(counts.items())
                )
            )
        if self.direction == "manual":
            lines.append(
                "functional calls inside forward (F.relu, F.layer_norm, ...) are not layers and were not "
                "swapped: attach_manual_functions routes them, manual_share measures what runs manual"
            )
        return "\n".join(lines)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _why_kept(module: nn.Module, table: dict[type[nn.Module], type[nn.Module]]) -> str:
    """Reason a leaf layer of a type missing from ``table`` has no twin."""
    for base in type(module).__mro__[1:]:
        if base in table:
            if type(module).forward is base.forward:
                return f"subclass of {base.__name__} (only exact built-in types are swapped)"
            return f"subclass of {base.__name__} with its own forward"
    return "no twin"


# Attention blocks without a twin, by qualified class name: what their forward computes, and whether their
# child layers are only parameter holders, so that the report lists the block and not those children.
_ATTENTION: dict[str, tuple[str, bool]] = {
    "torchvision.models.swin_transformer.ShiftedWindowAttention": (
        "attention: F.linear on the qkv and proj weights (those layers are never called), q·kᵀ and "
        "attention·v matmuls, relative position bias, F.softmax and F.dropout in its forward",
        False,
    ),
    "torchvision.models.swin_transformer.ShiftedWindowAttentionV2": (
        "attention: F.linear on the qkv and proj weights (those layers are never called), cosine "
        "attention (F.normalize, logit scale), q·kᵀ and attention·v matmuls, position bias from the "
        "cpb_mlp layers, F.softmax and F.dropout in its forward",
        False,
    ),
    "torchvision.models.maxvit.RelativePositionalMultiHeadAttention": (
        "attention: the to_qkv and merge layers, q·kᵀ and attention·v einsums, relative position bias "
        "and F.softmax in its forward",
        False,
    ),
}
_GENERIC_ATTENTION = ("attention computed in its own forward (manual_share tells what stays built-in)", False)

# Leaf modules that only reshape (torchvision's), listed with Identity/Flatten under "no arithmetic".
_RESHAPES = frozenset(
    {
        "torchvision.ops.misc.Permute",
        "torchvision.models.maxvit.SwapAxes",
        "torchvision.models.maxvit.WindowPartition",
        "torchvision.models.maxvit.WindowDepartition",
    }
)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.ParameterList, nn.ParameterDict)


def _attention(module: nn.Module) -> tuple[str, bool] | None:
    """``(what it computes, whether its children are parameter holders)`` for an attention block."""
    cls = type(module)
    if _qualname(cls) in _ATTENTION:
        return _ATTENTION[_qualname(cls)]
    return _GENERIC_ATTENTION if cls.__name__.endswith("Attention") else None


def _swap(
    model: nn.Module,
    table: dict[type[nn.Module], type[nn.Module]],
    direction: Literal["manual", "builtin"],
    algorithm: ConvAlgorithm,
) -> SwapReport:
    report = SwapReport(direction)
    already = set(BUILTINS) if direction == "manual" else set(TWINS)  # the target side: nothing to do
    holders: list[str] = []  # name prefixes of the children of attention blocks that only hold parameters
    for name, module in model.named_modules():
        cls = type(module)
        label = name or "<root>"
        if cls in table:
            new_cls = table[cls]
            for attribute in _EXTRA_ATTRIBUTES.get(cls, ()):  # leaving manual: drop its extra state
                module.__dict__.pop(attribute, None)
            module.__class__ = new_cls
            if new_cls is mnn.Conv2d:
                module.algorithm = algorithm
            elif new_cls is mnn.Dropout:
                module.generator = None
            report.swapped.append((label, cls.__name__, _qualname(new_cls)))
            if issubclass(cls, nn.MultiheadAttention):
                holders.append(f"{name}." if name else "")  # out_proj: its weight is used, it is never called
        elif cls in already or name.startswith(tuple(holders)):
            if issubclass(cls, nn.MultiheadAttention):
                holders.append(f"{name}." if name else "")
            continue
        elif (attention := _attention(module)) is not None:
            computes, children_hold_parameters = attention
            if direction == "manual":
                report.kept.append((label, cls.__name__, computes))
            if children_hold_parameters:
                holders.append(f"{name}." if name else "")
        elif next(module.children(), None) is not None:
            continue
        elif isinstance(module, _CONTAINERS):
            report.no_math.append((label, cls.__name__, "container without layers"))
        elif isinstance(module, _NO_MATH) or _qualname(cls) in _RESHAPES:
            report.no_math.append((label, cls.__name__, "no arithmetic"))
        else:
            report.kept.append((label, cls.__name__, _why_kept(module, table)))
    _log.info("%s", report)
    return report


@overload
def to_manual(
    model: nn.Module,
    *,
    report: Literal[False] = ...,
    algorithm: ConvAlgorithm = ...,
    strategy: ConvAlgorithm | None = ...,
    sandwiches: bool = ...,
) -> nn.Module: ...
@overload
def to_manual(
    model: nn.Module,
    *,
    report: Literal[True],
    algorithm: ConvAlgorithm = ...,
    strategy: ConvAlgorithm | None = ...,
    sandwiches: bool = ...,
) -> tuple[nn.Module, SwapReport]: ...
def to_manual(
    model: nn.Module,
    *,
    report: bool = False,
    algorithm: ConvAlgorithm = "fast",
    strategy: ConvAlgorithm | None = None,
    sandwiches: bool = True,
) -> nn.Module | tuple[nn.Module, SwapReport]:
    """Swap every built-in layer of ``model`` that has a manual twin for that twin, in place.

    Args:
        model: any module (the root itself may be a layer).
        report: also return the :class:`SwapReport` (it is logged at INFO level either way).
        algorithm: backward algorithm of the manual ``Conv2d`` layers, ``"fast"`` or ``"im2col"``.
        strategy: deprecated old name of ``algorithm`` (one release; a ``FutureWarning``).
        sandwiches: also make every ``nn.Sequential`` a
            :class:`~torch_cs231n.nets.sandwich.SandwichSequential`
            (same children and ``state_dict``), which runs the CS231n sandwich layers wherever consecutive
            manual layers form one (e.g. VGG's Conv2d - ReLU - MaxPool2d); :func:`to_builtin` undoes it.

    Returns:
        ``model`` (the same object, converted), or ``(model, report)`` when ``report`` is True.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    algorithm = resolve_algorithm("to_manual()", algorithm, strategy)
    swap_report = _swap(model, TWINS, "manual", algorithm)
    if sandwiches:
        sandwich(model)
    return (model, swap_report) if report else model


@overload
def to_builtin(model: nn.Module, *, report: Literal[False] = ...) -> nn.Module: ...
@overload
def to_builtin(model: nn.Module, *, report: Literal[True]) -> tuple[nn.Module, SwapReport]: ...
def to_builtin(model: nn.Module, *, report: bool = False) -> nn.Module | tuple[nn.Module, SwapReport]:
    """Swap every manual layer of ``model`` back to its built-in twin, in place (the reverse of
    :func:`to_manual`; a :class:`~torch_cs231n.nets.sandwich.SandwichSequential` becomes an ``nn.Sequential``
    again), and detach the :class:`~torch_cs231n.interop.function_mode.ManualFunctions` that
    :func:`~torch_cs231n.interop.function_mode.attach_manual_functions` gave it or any of its submodules, so
    that its
    functional calls run built-in too.

    Args:
        model: any module; changed in place (the same parameters and buffers).
        report: also return the :class:`SwapReport` of what was swapped and what was kept.

    Returns:
        ``model``, or ``(model, report)`` when ``report`` is True.

    Examples::

        >>> import custom_ops.nn
        >>> from torch_cs231n.interop.swap import to_builtin
        >>> type(to_builtin(custom_ops.nn.Linear(3, 2)))
        <class 'torch.nn.modules.linear.Linear'>
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for module in model.modules():
        detach_manual_functions(module)
    swap_report = _swap(model, BUILTINS, "builtin", "fast")
    unsandwich(model)
    return (model, swap_report) if report else model


def count_layers(model: nn.Module) -> dict[str, int]:
    """``{"manual": n, "builtin": m}``: how many layers of ``model`` are manual, and how many are
    built-ins that have a manual twin (0 after a complete :func:`to_manual`).

    Examples::

        >>> import torch, custom_ops.nn
        >>> from torch_cs231n.interop.swap import count_layers
        >>> count_layers(torch.nn.Sequential(custom_ops.nn.Linear(3, 4), torch.nn.ReLU()))
        {'manual': 1, 'builtin': 1}
    """
    types = [type(m) for m in model.modules()]
    return {"manual": sum(t in BUILTINS for t in types), "builtin": sum(t in TWINS for t in types)}
