"""The CS231n conv nets as ``LightningModule``s: the ``ThreeLayerConvNet`` and the challenge ``ConvNet``."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from torch_cs231n.models import build_convnet, build_three_layer_convnet

from .classifier import (
    DEFAULT_LOSS,
    DEFAULT_OPTIMIZER,
    DEFAULT_REG,
    ImageClassifier,
    LossName,
    add_builder_defaults,
)


class ThreeLayerConvNet(ImageClassifier):
    """``conv - relu - 2x2 max pool - affine - relu - affine - softmax/svm``.

    Input ``(N, *input_dim)``, scores ``(N, num_classes)``. The model arguments (``net_args``) and their
    defaults are those of :func:`torch_cs231n.models.build_three_layer_convnet`; the training arguments are
    :class:`ImageClassifier`'s.
    """

    def __init__(
        self,
        *,
        reg: float = DEFAULT_REG,
        loss: LossName = DEFAULT_LOSS,
        optimizer: OptimizerCallable = DEFAULT_OPTIMIZER,
        lr_scheduler: LRSchedulerCallable | None = None,
        **net_args: Any,
    ):
        net = build_three_layer_convnet(**net_args)
        add_builder_defaults(build_three_layer_convnet, net_args)  # saved whole, as hyper-parameters
        num_classes, ops = net_args["num_classes"], net_args["ops"]
        super().__init__(net, num_classes, loss, reg, ops, optimizer, lr_scheduler)
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])


class ConvNet(ImageClassifier):
    """The CS231n challenge net, ``{[conv - [norm] - relu] x K - pool} x stages - {affine - relu} x M -
    affine - softmax/svm``, for reaching high CIFAR-10 accuracy in a few epochs.

    Input ``(N, *input_dim)``, scores ``(N, num_classes)``. The model arguments (``net_args``) and their
    defaults are those of :func:`torch_cs231n.models.build_convnet`; the training arguments are
    :class:`ImageClassifier`'s.
    """

    def __init__(
        self,
        *,
        reg: float = DEFAULT_REG,
        loss: LossName = DEFAULT_LOSS,
        optimizer: OptimizerCallable = DEFAULT_OPTIMIZER,
        lr_scheduler: LRSchedulerCallable | None = None,
        **net_args: Any,
    ):
        net = build_convnet(**net_args)
        add_builder_defaults(build_convnet, net_args)  # saved whole, as hyper-parameters
        num_classes, ops = net_args["num_classes"], net_args["ops"]
        super().__init__(net, num_classes, loss, reg, ops, optimizer, lr_scheduler)
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
