"""Drop-in twins of :mod:`torch.nn` layers that compute with the manual operators.

Each class subclasses its built-in twin and only replaces the computation, so constructor arguments,
parameters, buffers, ``state_dict`` keys, ``reset_parameters`` (initialisation) and ``extra_repr`` are the
built-in's own: ``load_state_dict`` works in both directions, and ``isinstance(m, torch.nn.Conv2d)`` still
holds (code that special-cases built-in layers, e.g. Lightning's ``BaseFinetuning`` freezing BatchNorm,
keeps working). Use ``type(m)`` to tell a manual layer from a built-in one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import functional as F
from .adaptive_pool import is_global as is_global_pool
from .conv import Strategy


class Linear(nn.Linear):
    """Twin of :class:`torch.nn.Linear`: ``(*, in_features) -> (*, out_features)``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.linear(input, self.weight, self.bias)


class ReLU(nn.ReLU):
    """Twin of :class:`torch.nn.ReLU`. ``inplace`` is accepted for compatibility (and kept in the repr),
    but the manual op always returns a new tensor and never modifies its input."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.relu(input)


def _batch_norm_forward(bn: nn.modules.batchnorm._BatchNorm, input: torch.Tensor) -> torch.Tensor:
    """``_BatchNorm.forward`` of PyTorch, running the manual ``batch_norm``."""
    bn._check_input_dim(input)
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average
            factor = 1.0 / float(bn.num_batches_tracked)
    use_batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    use_buffers = not bn.training or bn.track_running_stats
    return F.batch_norm(
        input,
        bn.running_mean if use_buffers else None,
        bn.running_var if use_buffers else None,
        bn.weight,
        bn.bias,
        use_batch_stats,
        factor,
        bn.eps,
    )


class BatchNorm1d(nn.BatchNorm1d):
    """Twin of :class:`torch.nn.BatchNorm1d`: ``(N, C)`` or ``(N, C, L)``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return _batch_norm_forward(self, input)


class BatchNorm2d(nn.BatchNorm2d):
    """Twin of :class:`torch.nn.BatchNorm2d` (spatial batch norm): ``(N, C, H, W)``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return _batch_norm_forward(self, input)


class LayerNorm(nn.LayerNorm):
    """Twin of :class:`torch.nn.LayerNorm`: normalises over the trailing ``normalized_shape`` dims."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)


class Dropout(nn.Dropout):
    """Twin of :class:`torch.nn.Dropout` (``p`` is the drop probability). ``inplace`` is accepted for
    compatibility but ignored. The optional keyword ``generator`` makes the masks reproducible."""

    def __init__(self, p: float = 0.5, inplace: bool = False, *, generator: torch.Generator | None = None):
        super().__init__(p, inplace)
        self.generator = generator

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.dropout(input, self.p, self.training, self.generator)


class Conv2d(nn.Conv2d):
    """Twin of :class:`torch.nn.Conv2d` (grouped and depthwise included). The keyword ``strategy``
    chooses the backward: ``"fast"`` (default) or the readable ``"im2col"`` reference."""

    def __init__(self, *args: Any, strategy: Strategy = "fast", **kwargs: Any):
        super().__init__(*args, **kwargs)
        if strategy not in ("fast", "im2col"):
            raise ValueError(f"strategy must be 'fast' or 'im2col', got {strategy!r}")
        self.strategy = strategy

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        padding = self.padding
        if self.padding_mode != "zeros":  # non-zero padding is a separate op, as in torch.nn.Conv2d
            input = nn.functional.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        return F.conv2d(
            input, weight, bias, self.stride, padding, self.dilation, self.groups, strategy=self.strategy
        )

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text if self.strategy == "fast" else f"{text}, strategy={self.strategy!r}"


class MaxPool2d(nn.MaxPool2d):
    """Twin of :class:`torch.nn.MaxPool2d` (``dilation=1`` and ``return_indices=False`` only)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.dilation not in (1, (1, 1)) or self.return_indices:
            raise ValueError(
                "the manual MaxPool2d supports dilation=1 and return_indices=False only, got "
                f"dilation={self.dilation}, return_indices={self.return_indices}"
            )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode)


class ReLU6(nn.ReLU6):
    """Twin of :class:`torch.nn.ReLU6`; ``inplace`` is accepted for compatibility but ignored."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.relu6(input)


class Hardsigmoid(nn.Hardsigmoid):
    """Twin of :class:`torch.nn.Hardsigmoid`; ``inplace`` is accepted for compatibility but ignored."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.hardsigmoid(input)


class Hardswish(nn.Hardswish):
    """Twin of :class:`torch.nn.Hardswish`; ``inplace`` is accepted for compatibility but ignored."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.hardswish(input)


class Sigmoid(nn.Sigmoid):
    """Twin of :class:`torch.nn.Sigmoid`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.sigmoid(input)


class SiLU(nn.SiLU):
    """Twin of :class:`torch.nn.SiLU` (swish); ``inplace`` is accepted for compatibility but ignored."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.silu(input)


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """Twin of :class:`torch.nn.AdaptiveAvgPool2d` for global pooling (``output_size`` 1 or ``(1, 1)``):
    ``(N, C, H, W) -> (N, C, 1, 1)``."""

    def __init__(self, output_size: int | tuple[int, int]):
        super().__init__(output_size)
        if not is_global_pool(output_size):
            raise ValueError(
                "the manual AdaptiveAvgPool2d is global average pooling: output_size must be 1 or (1, 1), "
                f"got {output_size!r}"
            )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(input, self.output_size)


__all__ = [
    "AdaptiveAvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Hardsigmoid",
    "Hardswish",
    "LayerNorm",
    "Linear",
    "MaxPool2d",
    "ReLU",
    "ReLU6",
    "SiLU",
    "Sigmoid",
]
