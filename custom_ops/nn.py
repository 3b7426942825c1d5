"""Drop-in twins of :mod:`torch.nn` layers that compute with the manual operators.

Each class subclasses its built-in twin and only replaces the computation, so constructor arguments,
parameters, buffers, ``state_dict`` keys, ``reset_parameters`` (initialisation) and ``extra_repr`` are the
built-in's own: ``load_state_dict`` works in both directions, and ``isinstance(m, torch.nn.Conv2d)`` still
holds (code that special-cases built-in layers, e.g. Lightning's ``BaseFinetuning`` freezing BatchNorm,
keeps working). Use ``type(m)`` to tell a manual layer from a built-in one. The exception is
:class:`SyncBatchNorm`, which cannot be a ``torch.nn.SyncBatchNorm`` and still run under DDP on CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from . import functional as MF
from .conv import ConvAlgorithm, resolve_algorithm
from .sync_batchnorm import sync_batch_norm


class Linear(nn.Linear):
    """Twin of :class:`torch.nn.Linear`: ``(*, in_features) -> (*, out_features)``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.linear(input, self.weight, self.bias)


class ReLU(nn.ReLU):
    """Twin of :class:`torch.nn.ReLU`; ``inplace=True`` writes the result into the input, as torch."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.relu(input, self.inplace)


def _batch_norm_forward(
    bn: _BatchNorm, input: torch.Tensor, batch_norm: Callable[..., torch.Tensor] = MF.batch_norm
) -> torch.Tensor:
    """``_BatchNorm.forward`` of PyTorch, running the manual ``batch_norm`` (or ``sync_batch_norm``)."""
    bn._check_input_dim(input)
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average
            factor = 1.0 / float(bn.num_batches_tracked)
    use_batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    use_buffers = not bn.training or bn.track_running_stats
    return batch_norm(
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


def _rebuild_batch_norm(module: _BatchNorm, cls: type[_BatchNorm], **kwargs: Any) -> _BatchNorm:
    """A ``cls`` layer with the hyper-parameters of ``module``, sharing its parameters and buffers (the
    same tensors), its train/eval mode and ``qconfig``; ``kwargs`` go to the constructor."""
    if module.affine and module.bias is None:  # an affine layer built with bias=False (recent torch)
        kwargs["bias"] = False
    rebuilt = cls(
        module.num_features,
        eps=module.eps,
        momentum=module.momentum,
        affine=module.affine,
        track_running_stats=module.track_running_stats,
        **kwargs,
    )
    if module.affine:
        with torch.no_grad():
            rebuilt.weight = module.weight
            rebuilt.bias = module.bias
    rebuilt.running_mean = module.running_mean
    rebuilt.running_var = module.running_var
    rebuilt.num_batches_tracked = module.num_batches_tracked
    rebuilt.training = module.training
    if hasattr(module, "qconfig"):
        rebuilt.qconfig = module.qconfig
    return rebuilt


class SyncBatchNorm(_BatchNorm):
    r"""Twin of :class:`torch.nn.SyncBatchNorm`: batch norm whose training statistics are those of the
    global batch, all the local batches of ``process_group`` together (data-parallel training).

    Same constructor, parameters, buffers, ``state_dict`` keys and repr as the built-in, whose base class
    (``_BatchNorm``) it shares. It is the one twin that does *not* subclass its built-in:
    ``DistributedDataParallel`` refuses any ``torch.nn.SyncBatchNorm`` instance in a CPU module
    ("SyncBatchNorm layers only work with GPU modules"), and this layer synchronises CPU tensors too (gloo).

    In training, with an initialised process group of more than one process, it runs the manual
    :func:`~custom_ops.sync_batchnorm.sync_batch_norm` (all-reduced statistics, hand-written backward); in
    eval mode, or in a single process, it computes as the manual :class:`BatchNorm2d` (no communication).

    Args:
        num_features: C, the number of channels.
        eps: added to the variance. Default: 1e-5
        momentum: weight of the new batch in the running statistics; None: cumulative average.
            Default: 0.1
        affine: learnable ``weight`` and ``bias``. Default: True
        track_running_stats: keep ``running_mean``, ``running_var`` and ``num_batches_tracked``.
            Default: True
        process_group: the ranks whose batches are normalised together; None: the whole world.
        device, dtype, kwargs: as :class:`torch.nn.SyncBatchNorm` (``bias`` where torch has it).

    Shape:
        - Input: ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)``; this rank's N, which may differ between
          ranks.
        - Output: same shape as the input.

    Examples::

        >>> import torch, custom_ops.nn
        >>> bn = custom_ops.nn.SyncBatchNorm(64)
        >>> bn.eval()(torch.randn(8, 64, 16, 16)).shape  # eval: running statistics, no synchronisation
        torch.Size([8, 64, 16, 16])
        >>> # training needs torch.distributed initialised: statistics of the global batch
        >>> out = bn.train()(torch.randn(8, 64, 16, 16))  # doctest: +SKIP
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: Any = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, **kwargs)
        self.process_group = process_group

    # torch.nn.SyncBatchNorm's input checks (they look at the input only)
    _check_input_dim = nn.SyncBatchNorm._check_input_dim
    _check_non_zero_input_channels = nn.SyncBatchNorm._check_non_zero_input_channels

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        self._check_non_zero_input_channels(input)
        if not self.training:  # no synchronisation in eval mode, as torch.nn.SyncBatchNorm
            return _batch_norm_forward(self, input)
        return _batch_norm_forward(self, input, partial(sync_batch_norm, process_group=self.process_group))

    @classmethod
    def convert_sync_batchnorm(cls, module: nn.Module, process_group: Any = None) -> nn.Module:
        r"""Convert every batch norm layer of ``module`` to a synchronised one, as
        :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm` but keeping manual layers manual: the manual
        :class:`BatchNorm1d`, :class:`BatchNorm2d` (and :class:`SyncBatchNorm`) become this class, the
        built-in ``torch.nn.BatchNorm*`` (and any other ``_BatchNorm``) become
        :class:`torch.nn.SyncBatchNorm`. Parameters and buffers are shared (the same tensors), and the
        train/eval mode and ``requires_grad`` flags are kept.

        Args:
            module: a model, or a single batch norm layer.
            process_group: the ranks to synchronise over; None: the whole world.

        Returns:
            ``module`` with its batch norm layers replaced; a new layer if ``module`` is itself one.

        Examples::

            >>> import custom_ops.nn
            >>> from torch import nn
            >>> net = nn.Sequential(custom_ops.nn.Linear(20, 100), custom_ops.nn.BatchNorm1d(100))
            >>> net = custom_ops.nn.SyncBatchNorm.convert_sync_batchnorm(net)
            >>> type(net[1])
            <class 'custom_ops.nn.SyncBatchNorm'>
        """
        converted = module
        if isinstance(module, _BatchNorm):
            manual = isinstance(module, (BatchNorm1d, BatchNorm2d, SyncBatchNorm))
            target = cls if manual else nn.SyncBatchNorm
            converted = _rebuild_batch_norm(module, target, process_group=process_group)
        for name, child in module.named_children():
            converted.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return converted


class LayerNorm(nn.LayerNorm):
    """Twin of :class:`torch.nn.LayerNorm`: normalises over the trailing ``normalized_shape`` dims."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)


class Dropout(nn.Dropout):
    """Twin of :class:`torch.nn.Dropout` (``p`` is the drop probability, ``p=1`` gives zeros;
    ``inplace=True`` writes the result into the input, as torch). The optional keyword ``generator`` makes
    the masks reproducible."""

    def __init__(self, p: float = 0.5, inplace: bool = False, *, generator: torch.Generator | None = None):
        super().__init__(p, inplace)
        self.generator = generator

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.dropout(input, self.p, self.training, self.inplace, generator=self.generator)


class Conv2d(nn.Conv2d):
    """Twin of :class:`torch.nn.Conv2d` (grouped and depthwise included). The keyword ``algorithm``
    chooses the backward: ``"fast"`` (default) or the readable ``"im2col"`` reference (``strategy``, its
    deprecated old name, is accepted for one release with a ``FutureWarning``)."""

    def __init__(
        self,
        *args: Any,
        algorithm: ConvAlgorithm = "fast",
        strategy: ConvAlgorithm | None = None,
        **kwargs: Any,
    ):
        algorithm = resolve_algorithm("Conv2d()", algorithm, strategy)
        super().__init__(*args, **kwargs)
        self.algorithm = algorithm

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        padding = self.padding
        if self.padding_mode != "zeros":  # non-zero padding is a separate op, as in torch.nn.Conv2d
            input = nn.functional.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        return MF.conv2d(
            input, weight, bias, self.stride, padding, self.dilation, self.groups, algorithm=self.algorithm
        )

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text if self.algorithm == "fast" else f"{text}, algorithm={self.algorithm!r}"


class MaxPool2d(nn.MaxPool2d):
    """Twin of :class:`torch.nn.MaxPool2d` (padding, dilation, ``ceil_mode`` and ``return_indices``
    included: then ``(output, indices)``, torch's flat ``H * W`` indices)."""

    def forward(self, input: torch.Tensor) -> Any:
        return MF.max_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            self.return_indices,
        )


class ReLU6(nn.ReLU6):
    """Twin of :class:`torch.nn.ReLU6`; ``inplace=True`` writes the result into the input, as torch."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.relu6(input, self.inplace)


class Hardsigmoid(nn.Hardsigmoid):
    """Twin of :class:`torch.nn.Hardsigmoid`; ``inplace=True`` writes the result into the input, as torch."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.hardsigmoid(input, self.inplace)


class Hardswish(nn.Hardswish):
    """Twin of :class:`torch.nn.Hardswish`; ``inplace=True`` writes the result into the input, as torch."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.hardswish(input, self.inplace)


class Sigmoid(nn.Sigmoid):
    """Twin of :class:`torch.nn.Sigmoid`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.sigmoid(input)


class SiLU(nn.SiLU):
    """Twin of :class:`torch.nn.SiLU` (swish); ``inplace=True`` writes the result into the input, as
    torch."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.silu(input, self.inplace)


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """Twin of :class:`torch.nn.AdaptiveAvgPool2d`, any ``output_size`` (None entries keep the input's
    size): ``(N, C, H, W) -> (N, C, Ho, Wo)``; global pooling (1 or ``(1, 1)``) has its own fast path."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.adaptive_avg_pool2d(input, self.output_size)


class AdaptiveMaxPool2d(nn.AdaptiveMaxPool2d):
    """Twin of :class:`torch.nn.AdaptiveMaxPool2d`: ``(N, C, H, W) -> (N, C, Ho, Wo)``, and the flat
    indices of the maxima with ``return_indices=True``."""

    def forward(self, input: torch.Tensor) -> Any:
        return MF.adaptive_max_pool2d(input, self.output_size, self.return_indices)


class AvgPool2d(nn.AvgPool2d):
    """Twin of :class:`torch.nn.AvgPool2d` (padding, ``ceil_mode``, ``count_include_pad`` and
    ``divisor_override`` included)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.avg_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )


class GroupNorm(nn.GroupNorm):
    """Twin of :class:`torch.nn.GroupNorm`: ``(N, C, *)``, statistics per sample and group of channels."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)


class GELU(nn.GELU):
    """Twin of :class:`torch.nn.GELU` (``approximate="none"`` or ``"tanh"``)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.gelu(input, approximate=self.approximate)


class Tanh(nn.Tanh):
    """Twin of :class:`torch.nn.Tanh`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.tanh(input)


class Softmax(nn.Softmax):
    """Twin of :class:`torch.nn.Softmax` (``dim=None``: torch's deprecated implicit dim)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.softmax(input, self.dim, _stacklevel=5)


class LogSoftmax(nn.LogSoftmax):
    """Twin of :class:`torch.nn.LogSoftmax` (``dim=None``: torch's deprecated implicit dim)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.log_softmax(input, self.dim, _stacklevel=5)


class LeakyReLU(nn.LeakyReLU):
    """Twin of :class:`torch.nn.LeakyReLU`; ``inplace=True`` writes the result into the input, as torch."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.leaky_relu(input, self.negative_slope, self.inplace)


class PReLU(nn.PReLU):
    """Twin of :class:`torch.nn.PReLU`: the learned slope ``weight``, ``(num_parameters,)``, one per channel
    (dim 1 of the input) or one for all."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.prelu(input, self.weight)


class Hardtanh(nn.Hardtanh):
    """Twin of :class:`torch.nn.Hardtanh`; ``inplace=True`` writes the result into the input, as torch.
    (:class:`ReLU6` keeps its own twin: torch's ``nn.ReLU6`` subclasses ``nn.Hardtanh``.)"""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.hardtanh(input, self.min_val, self.max_val, self.inplace)


class ELU(nn.ELU):
    """Twin of :class:`torch.nn.ELU`; ``inplace=True`` writes the result into the input, as torch."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.elu(input, self.alpha, self.inplace)


class CELU(nn.CELU):
    """Twin of :class:`torch.nn.CELU`; ``inplace=True`` writes the result into the input, as torch."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.celu(input, self.alpha, self.inplace)


class SELU(nn.SELU):
    """Twin of :class:`torch.nn.SELU`; ``inplace=True`` writes the result into the input, as torch."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.selu(input, self.inplace)
class Softplus(nn.Softplus):
    """Twin of :class:`torch.nn.Softplus` (``beta``, ``threshold``)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.softplus(input, self.beta, self.threshold)


class Mish(nn.Mish):
    """Twin of :class:`torch.nn.Mish`; ``inplace=True`` writes the result into the input, as torch."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return MF.mish(input, self.inplace)
class MultiheadAttention(nn.MultiheadAttention):
    """Twin of :class:`torch.nn.MultiheadAttention`: always the manual path
    (:func:`custom_ops.functional.multi_head_attention_forward`), never torch's fused fast path; masks,
    ``batch_first`` (the inputs transposed to ``(L, N, E)`` and the output back, as torch's forward does),
    ``need_weights`` and ``average_attn_weights`` as torch."""

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        is_batched = query.dim() == 3
        key_padding_mask = F._canonical_mask(
            mask=key_padding_mask,
            mask_name="key_padding_mask",
            other_type=F._none_or_dtype(attn_mask),
            other_name="attn_mask",
            target_type=query.dtype,
        )
        attn_mask = F._canonical_mask(
            mask=attn_mask,
            mask_name="attn_mask",
            other_type=None,
            other_name="",
            target_type=query.dtype,
            check_other=False,
        )
        if self.batch_first and is_batched:  # keep torch's identities: self-attention projects once
            if key is value:
                if query is key:
                    query = key = value = query.transpose(1, 0)
                else:
                    query, key = (x.transpose(1, 0) for x in (query, key))
                    value = key
            else:
                query, key, value = (x.transpose(1, 0) for x in (query, key, value))
        separate = {}
        if not self._qkv_same_embed_dim:
            separate = {
                "use_separate_proj_weight": True,
                "q_proj_weight": self.q_proj_weight,
                "k_proj_weight": self.k_proj_weight,
                "v_proj_weight": self.v_proj_weight,
            }
        out, weights = MF.multi_head_attention_forward(
            query,
            key,
            value,
            self.embed_dim,
            self.num_heads,
            self.in_proj_weight,
            self.in_proj_bias,
            self.bias_k,
            self.bias_v,
            self.add_zero_attn,
            self.dropout,
            self.out_proj.weight,
            self.out_proj.bias,
            training=self.training,
            key_padding_mask=key_padding_mask,
            need_weights=need_weights,
            attn_mask=attn_mask,
            average_attn_weights=average_attn_weights,
            is_causal=is_causal,
            **separate,
        )
        if self.batch_first and is_batched:
            return out.transpose(1, 0), weights
        return out, weights


__all__ = [
    "CELU",
    "ELU",
    "GELU",
    "SELU",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "GroupNorm",
    "Hardsigmoid",
    "Hardswish",
    "Hardtanh",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MaxPool2d",
    "Mish",
    "MultiheadAttention",
    "PReLU",
    "ReLU",
    "ReLU6",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "SyncBatchNorm",
    "Tanh",
]
