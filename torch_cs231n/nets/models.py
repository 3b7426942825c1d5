"""The CS231n classifiers as plain ``nn.Module`` builders, computing with manual or built-in ops.

``ops="manual"`` builds the layers from :mod:`custom_ops.nn` (hand-written backward passes), ``"builtin"``
from :mod:`torch.nn`. The manual layers subclass their built-in twins, so both variants have the same
structure and ``state_dict`` keys, and :func:`torch_cs231n.nets.init.init_weights_` gives them identical
parameters for the same seed: the two can be compared on one run, and weights load across them. The manual
models are :class:`~torch_cs231n.nets.sandwich.SandwichSequential` containers, which compute runs such as
``conv - relu - pool`` with one fused CS231n sandwich layer (same children, ``state_dict`` and results).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

import custom_ops.functional as MF
import custom_ops.nn as manual_nn
from custom_ops.losses import builtin_svm_loss

from .init import InitScheme, check_weight_scale, init_weights_
from .sandwich import SandwichSequential

Ops = Literal["manual", "builtin"]
Normalization = Literal["batchnorm", "layernorm"] | None
SpatialNormalization = Literal["batchnorm", "groupnorm"] | None
OPS: tuple[str, ...] = ("manual", "builtin")
NORMALIZATIONS: tuple[str | None, ...] = (None, "batchnorm", "layernorm")
SPATIAL_NORMALIZATIONS: tuple[str | None, ...] = (None, "batchnorm", "groupnorm")
LossName = Literal["softmax", "svm"]
LOSSES: tuple[str, ...] = ("softmax", "svm")


def layer_namespace(ops: Ops) -> ModuleType:
    """The module holding ``Linear``, ``ReLU``, ``Conv2d``, ... for ops ``"manual"`` or ``"builtin"``."""
    if ops == "manual":
        return manual_nn
    if ops == "builtin":
        return nn
    raise ValueError(f"ops must be one of {OPS}, got {ops!r}")


def data_loss_fn(loss: LossName, ops: Ops) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(scores (N, C), y (N,)) -> scalar`` for ``loss`` in ``("softmax", "svm")`` and ``ops``: the
    CS231n data loss, :mod:`custom_ops.functional`'s for ``"manual"``, its ``torch.nn.functional`` twin for
    ``"builtin"``."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if ops not in OPS:
        raise ValueError(f"ops must be one of {OPS}, got {ops!r}")
    if ops == "manual":
        return MF.softmax_loss if loss == "softmax" else MF.svm_loss
    return F.cross_entropy if loss == "softmax" else builtin_svm_loss


def _sequential(ops: Ops) -> type[nn.Sequential]:
    """The container of a model with ``ops``: :class:`~torch_cs231n.nets.sandwich.SandwichSequential` for
    ``"manual"`` (runs of manual layers computed by the fused CS231n sandwich layers, same children and
    ``state_dict``), ``nn.Sequential`` for ``"builtin"``."""
    return SandwichSequential if ops == "manual" else nn.Sequential


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def build_fc_net(
    hidden_dims: Sequence[int],
    input_dim: int = 3 * 32 * 32,
    num_classes: int = 10,
    dropout_keep_ratio: float = 1.0,
    normalization: Normalization = None,
    weight_scale: float = 1e-2,
    init: InitScheme = "gaussian",
    ops: Ops = "manual",
) -> nn.Module:
    """The CS231n ``FullyConnectedNet``: ``{affine - [norm] - relu - [dropout]} x (L - 1) - affine``.

    Input ``(N, 3, 32, 32)`` or ``(N, input_dim)`` (flattened first); output class scores
    ``(N, num_classes)``.
    A two-layer net is ``hidden_dims=[H]``; ``hidden_dims=[]`` is a linear classifier.

    Args:
        hidden_dims: widths of the hidden layers.
        input_dim: features per example after flattening (``D``).
        num_classes: number of classes (``C``).
        dropout_keep_ratio: probability of KEEPING a unit (CS231n convention); 1 disables dropout.
        normalization: ``None``, ``"batchnorm"`` or ``"layernorm"`` after each hidden affine layer.
        weight_scale: weight std for ``init="gaussian"``; a finite float > 0.
        init: ``"gaussian"``, ``"xavier"`` (std 1/sqrt(fan_in)) or ``"kaiming"`` (std sqrt(2/fan_in)).
        ops: ``"manual"`` (:mod:`custom_ops.nn`) or ``"builtin"`` (:mod:`torch.nn`).

    Returns:
        An ``nn.Sequential`` (``flatten``, ``fc1``, [``norm1``], ``relu1``, [``dropout1``], ..., ``fcL``); for
        ``ops="manual"`` a :class:`~torch_cs231n.nets.sandwich.SandwichSequential`, which runs ``fc - [norm] -
        relu`` as one sandwich layer.

    Raises:
        ValueError: a bad argument, named; also ``normalization`` or ``dropout_keep_ratio < 1`` with
            ``hidden_dims=[]`` (a linear classifier has nothing to normalise or drop out).
    """
    layers = layer_namespace(ops)
    if isinstance(hidden_dims, (str, bytes)) or not isinstance(hidden_dims, Sequence):
        raise ValueError(f"hidden_dims must be a sequence of positive ints, got {hidden_dims!r}")
    dims = [_check_positive_int(f"hidden_dims[{i}]", h) for i, h in enumerate(hidden_dims)]
    _check_positive_int("input_dim", input_dim)
    _check_positive_int("num_classes", num_classes)
    if not 0.0 < dropout_keep_ratio <= 1.0:
        raise ValueError(
            f"dropout_keep_ratio (a keep probability) must be in (0, 1], got {dropout_keep_ratio!r}"
        )
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if not dims and (normalization is not None or dropout_keep_ratio < 1.0):
        raise ValueError(
            "hidden_dims=[] is a linear classifier: it has no hidden layer to normalise or drop out, so "
            f"normalization must be None and dropout_keep_ratio 1 (got normalization={normalization!r}, "
            f"dropout_keep_ratio={dropout_keep_ratio!r})"
        )
    check_weight_scale(weight_scale)

    modules: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    fan_in = input_dim
    for i, width in enumerate(dims, start=1):
        modules[f"fc{i}"] = layers.Linear(fan_in, width)
        if normalization == "batchnorm":
            modules[f"norm{i}"] = layers.BatchNorm1d(width)
        elif normalization == "layernorm":
            modules[f"norm{i}"] = layers.LayerNorm(width)
        modules[f"relu{i}"] = layers.ReLU()
        if dropout_keep_ratio < 1.0:
            modules[f"dropout{i}"] = layers.Dropout(p=1.0 - dropout_keep_ratio)  # torch p = drop probability
        fan_in = width
    modules[f"fc{len(dims) + 1}"] = layers.Linear(fan_in, num_classes)
    return init_weights_(_sequential(ops)(modules), init, weight_scale)


def build_three_layer_convnet(
    input_dim: tuple[int, int, int] = (3, 32, 32),
    num_filters: int = 32,
    filter_size: int = 7,
    hidden_dim: int = 100,
    num_classes: int = 10,
    weight_scale: float = 1e-3,
    init: InitScheme = "gaussian",
    ops: Ops = "manual",
) -> nn.Module:
    """The CS231n ``ThreeLayerConvNet``: ``conv - relu - 2x2 max pool - affine - relu - affine``.

    The convolution has stride 1 and padding ``(filter_size - 1) // 2`` (size-preserving for odd sizes).
    Input ``(N, C, H, W)`` = ``(N, *input_dim)``, output class scores ``(N, num_classes)``.
    Arguments as in :func:`build_fc_net`.

    Shape:
        - Input ``(N, *input_dim)``; output ``(N, num_classes)``; parameter gradients the parameters' shapes.

    Returns:
        An ``nn.Sequential`` of ``torch.nn`` layers (``ops="builtin"``), or a
        :class:`~torch_cs231n.nets.sandwich.SandwichSequential` of :mod:`custom_ops.nn` layers
        (``ops="manual"``),
        which runs ``conv - relu - pool`` and ``fc - relu`` as sandwich layers.

    Examples::

        >>> import torch
        >>> from torch_cs231n.nets.models import build_three_layer_convnet
        >>> net = build_three_layer_convnet(input_dim=(3, 8, 8), num_filters=4, hidden_dim=10)
        >>> net(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 10])
    """
    layers = layer_namespace(ops)
    check_weight_scale(weight_scale)
    if len(input_dim) != 3:
        raise ValueError(f"input_dim must be (C, H, W), got {input_dim!r}")
    channels, height, width = (_check_positive_int(f"input_dim[{i}]", d) for i, d in enumerate(input_dim))
    sizes = {"num_filters": num_filters, "filter_size": filter_size, "hidden_dim": hidden_dim}
    for name, value in {**sizes, "num_classes": num_classes}.items():
        _check_positive_int(name, value)
    pad = (filter_size - 1) // 2
    conv_h, conv_w = height + 2 * pad - filter_size + 1, width + 2 * pad - filter_size + 1
    if conv_h < 2 or conv_w < 2:
        raise ValueError(f"filter_size={filter_size} is too large for input_dim={tuple(input_dim)}")
    pooled = num_filters * (conv_h // 2) * (conv_w // 2)
    model = _sequential(ops)(
        OrderedDict(
            conv1=layers.Conv2d(channels, num_filters, filter_size, stride=1, padding=pad),
            relu1=layers.ReLU(),
            pool1=layers.MaxPool2d(kernel_size=2, stride=2),
            flatten=nn.Flatten(),
            fc1=layers.Linear(pooled, hidden_dim),
            relu2=layers.ReLU(),
            fc2=layers.Linear(hidden_dim, num_classes),
        )
    )
    return init_weights_(model, init, weight_scale)


def build_convnet(
    channels: Sequence[int] = (32, 64, 128),
    convs_per_stage: int = 2,
    hidden_dims: Sequence[int] = (),
    filter_size: int = 3,
    normalization: SpatialNormalization = "batchnorm",
    groups: int = 8,
    dropout_keep_ratio: float = 1.0,
    input_dim: tuple[int, int, int] = (3, 32, 32),
    num_classes: int = 10,
    weight_scale: float = 1e-2,
    init: InitScheme = "kaiming",
    ops: Ops = "manual",
) -> nn.Module:
    """The CS231n challenge net: ``{[conv - [norm] - relu] x convs_per_stage - 2x2 max pool} x stages -
    {affine - relu - [dropout]} x M - affine``.

    Stage ``s`` has ``channels[s]`` filters of ``filter_size x filter_size`` (stride 1, size-preserving
    padding) and halves the height and width with its pool, so the last stage's
    ``channels[-1] * (H / 2**stages) * (W / 2**stages)`` values feed the affine layers. With a normalisation
    the convolutions have no bias (the norm's ``beta`` takes its place).

    Args:
        channels: filters per stage (one 2x2 max pool per stage).
        convs_per_stage: conv layers in each stage (the course's ``[conv-relu-conv-relu-pool]`` is 2).
        hidden_dims: widths of the hidden affine layers after the conv stages (``()``: none).
        filter_size: an odd kernel size.
        normalization: ``None``, ``"batchnorm"`` (spatial batch norm) or ``"groupnorm"`` after each conv.
        groups: channel groups of ``"groupnorm"`` (must divide every ``channels[s]``).
        dropout_keep_ratio: probability of KEEPING a hidden affine unit; 1 disables dropout.
        input_dim, num_classes, weight_scale, init, ops: as in :func:`build_fc_net`.

    Shape:
        - Input: ``(N, *input_dim)``; output: class scores ``(N, num_classes)``.

    Returns:
        An ``nn.Sequential`` (``conv1_1``, [``norm1_1``], ``relu1_1``, ..., ``pool1``, ..., ``flatten``,
        [``fc1``, ``relu_fc1``, [``dropout1``], ...], ``fc``); for ``ops="manual"`` a
        :class:`~torch_cs231n.nets.sandwich.SandwichSequential`, which runs ``conv - [batchnorm] - relu [-
        pool]``
        and ``fc - relu`` as sandwich layers.

    Raises:
        ValueError: a bad argument, named.

    Examples::

        >>> import torch
        >>> net = build_convnet(channels=(8, 16), hidden_dims=(32,))
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    layers = layer_namespace(ops)
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or not channels:
        raise ValueError(f"channels must be a non-empty sequence of positive ints, got {channels!r}")
    widths = [_check_positive_int(f"channels[{i}]", c) for i, c in enumerate(channels)]
    if isinstance(hidden_dims, (str, bytes)) or not isinstance(hidden_dims, Sequence):
        raise ValueError(f"hidden_dims must be a sequence of positive ints, got {hidden_dims!r}")
    hidden = [_check_positive_int(f"hidden_dims[{i}]", h) for i, h in enumerate(hidden_dims)]
    _check_positive_int("convs_per_stage", convs_per_stage)
    if _check_positive_int("filter_size", filter_size) % 2 == 0:
        raise ValueError(f"filter_size must be odd (size-preserving padding), got {filter_size!r}")
    if normalization not in SPATIAL_NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {SPATIAL_NORMALIZATIONS}, got {normalization!r}")
    if normalization == "groupnorm" and any(c % _check_positive_int("groups", groups) for c in widths):
        raise ValueError(f"groups={groups!r} must divide every entry of channels={list(widths)}")
    if not 0.0 < dropout_keep_ratio <= 1.0:
        raise ValueError(
            f"dropout_keep_ratio (a keep probability) must be in (0, 1], got {dropout_keep_ratio!r}"
        )
    if not hidden and dropout_keep_ratio < 1.0:
        raise ValueError("dropout_keep_ratio < 1 needs hidden_dims: dropout acts on the hidden affine layers")
    if len(input_dim) != 3:
        raise ValueError(f"input_dim must be (C, H, W), got {input_dim!r}")
    in_channels, height, width = (_check_positive_int(f"input_dim[{i}]", d) for i, d in enumerate(input_dim))
    if height >> len(widths) == 0 or width >> len(widths) == 0:
        raise ValueError(f"{len(widths)} stages halve input_dim={tuple(input_dim)} to nothing")
    _check_positive_int("num_classes", num_classes)
    check_weight_scale(weight_scale)

    modules: OrderedDict[str, nn.Module] = OrderedDict()
    for s, out_channels in enumerate(widths, start=1):
        for j in range(1, convs_per_stage + 1):
            name = f"{s}_{j}"
            modules[f"conv{name}"] = layers.Conv2d(
                in_channels, out_channels, filter_size, padding=filter_size // 2, bias=normalization is None
            )
            if normalization == "batchnorm":
                modules[f"norm{name}"] = layers.BatchNorm2d(out_channels)
            elif normalization == "groupnorm":
                modules[f"norm{name}"] = layers.GroupNorm(groups, out_channels)
            modules[f"relu{name}"] = layers.ReLU()
            in_channels = out_channels
        modules[f"pool{s}"] = layers.MaxPool2d(kernel_size=2, stride=2)
        height, width = height // 2, width // 2
    modules["flatten"] = nn.Flatten()
    fan_in = in_channels * height * width
    for i, size in enumerate(hidden, start=1):
        modules[f"fc{i}"] = layers.Linear(fan_in, size)
        modules[f"relu_fc{i}"] = layers.ReLU()
        if dropout_keep_ratio < 1.0:
            modules[f"dropout{i}"] = layers.Dropout(p=1.0 - dropout_keep_ratio)
        fan_in = size
    modules["fc"] = layers.Linear(fan_in, num_classes)
    return init_weights_(_sequential(ops)(modules), init, weight_scale)
