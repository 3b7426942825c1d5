"""The CS231n conv nets as ``LightningModule``s: the ``ThreeLayerConvNet`` and the challenge ``ConvNet``."""

from __future__ import annotations

from collections.abc import Sequence

from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from torch_cs231n.init import InitScheme
from torch_cs231n.models import Ops, SpatialNormalization, build_convnet, build_three_layer_convnet
from torch_cs231n.optim import SGD

from .classifier import ImageClassifier, LossName


class ThreeLayerConvNet(ImageClassifier):
    """``conv - relu - 2x2 max pool - affine - relu - affine - softmax/svm``.

    Input ``(N, *input_dim)``, scores ``(N, num_classes)``. Model arguments as in
    :func:`torch_cs231n.models.build_three_layer_convnet`; training arguments as in :class:`ImageClassifier`.
    """

    def __init__(
        self,
        input_dim: tuple[int, int, int] = (3, 32, 32),
        num_filters: int = 32,
        filter_size: int = 7,
        hidden_dim: int = 100,
        num_classes: int = 10,
        reg: float = 0.0,
        weight_scale: float = 1e-3,
        init: InitScheme = "gaussian",
        loss: LossName = "softmax",
        ops: Ops = "manual",
        optimizer: OptimizerCallable = SGD,
        lr_scheduler: LRSchedulerCallable | None = None,
    ):
        super().__init__(num_classes, loss, reg, ops, optimizer, lr_scheduler)
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.net = build_three_layer_convnet(
            input_dim, num_filters, filter_size, hidden_dim, num_classes, weight_scale, init, ops
        )


class ConvNet(ImageClassifier):
    """The CS231n challenge net, ``{[conv - [norm] - relu] x K - pool} x stages - {affine - relu} x M -
    affine - softmax/svm``, for reaching high CIFAR-10 accuracy in a few epochs.

    Input ``(N, *input_dim)``, scores ``(N, num_classes)``. Model arguments as in
    :func:`torch_cs231n.models.build_convnet`; training arguments as in :class:`ImageClassifier`.
    """

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 128),
        convs_per_stage: int = 2,
        hidden_dims: Sequence[int] = (),
        filter_size: int = 3,
        normalization: SpatialNormalization = "batchnorm",
        groups: int = 8,
        dropout_keep_ratio: float = 1.0,
        input_dim: tuple[int, int, int] = (3, 32, 32),
        num_classes: int = 10,
        reg: float = 0.0,
        weight_scale: float = 1e-2,
        init: InitScheme = "kaiming",
        loss: LossName = "softmax",
        ops: Ops = "manual",
        optimizer: OptimizerCallable = SGD,
        lr_scheduler: LRSchedulerCallable | None = None,
    ):
        super().__init__(num_classes, loss, reg, ops, optimizer, lr_scheduler)
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.net = build_convnet(
            channels,
            convs_per_stage,
            hidden_dims,
            filter_size,
            normalization,
            groups,
            dropout_keep_ratio,
            input_dim,
            num_classes,
            weight_scale,
            init,
            ops,
        )
