"""The CS231n classifiers as plain ``nn.Module`` builders, computing with manual or built-in ops.

``ops="manual"`` builds the layers from :mod:`custom_ops.nn` (hand-written backward passes), ``"builtin"``
from :mod:`torch.nn`. The manual layers subclass their built-in twins, so both variants have the same
structure and ``state_dict`` keys, and :func:`torch_cs231n.init.init_weights_` gives them identical
parameters for the same seed: the two can be compared on one run, and weights load across them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from types import ModuleType
from typing import Literal

from torch import nn

import custom_ops.nn as manual_nn

from .init import InitScheme, check_weight_scale, init_weights_

Ops = Literal["manual", "builtin"]
Normalization = Literal["batchnorm", "layernorm"] | None
OPS: tuple[str, ...] = ("manual", "builtin")
NORMALIZATIONS: tuple[str | None, ...] = (None, "batchnorm", "layernorm")


def layer_namespace(ops: Ops) -> ModuleType:
    """The module holding ``Linear``, ``ReLU``, ``Conv2d``, ... for ops ``"manual"`` or ``"builtin"``."""
    if ops == "manual":
        return manual_nn
    if ops == "builtin":
        return nn
    raise ValueError(f"ops must be one of {OPS}, got {ops!r}")


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
        An ``nn.Sequential`` (``flatten``, ``fc1``, [``norm1``], ``relu1``, [``dropout1``], ..., ``fcL``).

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
    return init_weights_(nn.Sequential(modules), init, weight_scale)


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
    model = nn.Sequential(
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
