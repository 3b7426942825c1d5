"""CS231n weight initialisation, shared by the manual and the built-in models.

Both model variants are built from the same layer types (the manual layers subclass their ``torch.nn``
twins) and then re-initialised here, in module order, from the global RNG: the same seed gives the same
parameters whichever ops the model computes with.

Schemes for a weight ``W`` with ``fan_in`` inputs per output unit (``in_features`` for an affine layer,
``C * kh * kw`` for a convolution):
    gaussian: W ~ N(0, weight_scale^2)           (the CS231n assignments)
    xavier:   W ~ N(0, 1 / fan_in)
    kaiming:  W ~ N(0, 2 / fan_in)               (He et al., for ReLU nets)
Biases start at 0, normalisation layers at gamma = 1, beta = 0.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

InitScheme = Literal["gaussian", "xavier", "kaiming"]
INIT_SCHEMES: tuple[str, ...] = ("gaussian", "xavier", "kaiming")


def check_weight_scale(weight_scale: float) -> None:
    """Require a finite ``weight_scale > 0`` (an int or float), whatever the scheme: a zero, negative, NaN
    or infinite value is a configuration error even where ``init`` does not use it.

    Raises:
        ValueError: naming ``weight_scale`` and the value.
    """
    if (
        isinstance(weight_scale, bool)
        or not isinstance(weight_scale, (int, float))
        or not math.isfinite(weight_scale)
        or weight_scale <= 0
    ):
        raise ValueError(f"weight_scale must be a finite float > 0, got {weight_scale!r}")


def weight_std(init: InitScheme, fan_in: int, weight_scale: float) -> float:
    """Standard deviation of the weights of one layer under ``init``."""
    if init == "gaussian":
        return float(weight_scale)
    if init == "xavier":
        return 1.0 / math.sqrt(fan_in)
    if init == "kaiming":
        return math.sqrt(2.0 / fan_in)
    raise ValueError(f"init must be one of {INIT_SCHEMES}, got {init!r}")


@torch.no_grad()
def init_weights_(model: nn.Module, init: InitScheme = "gaussian", weight_scale: float = 1e-2) -> nn.Module:
    """Re-initialise every affine/conv layer and normalisation layer of ``model`` in place.

    Affine and conv weights get ``N(0, std^2)`` with ``std`` from :func:`weight_std`, biases 0; batch, layer
    and group norm get ``gamma = 1, beta = 0``. Layers are visited in ``model.modules()`` order, so two models
    with the same structure draw the same numbers from the same RNG state.

    Args:
        model: any module; its ``Linear``/``Conv2d`` and norm layers (built-in or manual) are re-initialised.
        init: the scheme of :func:`weight_std` (``"gaussian"``: ``std = weight_scale``).
        weight_scale: the std of ``"gaussian"``, a multiplier for the fan-in schemes.

    Returns:
        ``model``, re-initialised in place.

    Raises:
        ValueError: ``init`` is not a scheme, or ``weight_scale`` is not a finite float > 0.

    Examples::

        >>> import torch
        >>> from torch_cs231n.nets.init import init_weights_
        >>> layer = init_weights_(torch.nn.Linear(3, 2), weight_scale=0.5)
        >>> layer.bias
        Parameter containing:
        tensor([0., 0.], requires_grad=True)
    """
    if init not in INIT_SCHEMES:
        raise ValueError(f"init must be one of {INIT_SCHEMES}, got {init!r}")
    check_weight_scale(weight_scale)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            fan_in = module.weight[0].numel()  # in_features, or C_in/groups * kh * kw
            module.weight.normal_(0.0, weight_std(init, fan_in, weight_scale))
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)):
            if module.weight is not None:
                module.weight.fill_(1.0)
            if module.bias is not None:
                module.bias.zero_()
    return model
