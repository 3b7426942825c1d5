"""The CS231n ``FullyConnectedNet`` as a ``LightningModule``."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from torch_cs231n.nets.models import build_fc_net

from .classifier import (
    DEFAULT_LOSS,
    DEFAULT_OPTIMIZER,
    DEFAULT_REG,
    ImageClassifier,
    LossName,
    add_builder_defaults,
)


class FullyConnectedNet(ImageClassifier):
    """``{affine - [batch/layer norm] - relu - [dropout]} x (L - 1) - affine - softmax/svm``.

    Input ``(N, 3, 32, 32)`` (or ``(N, input_dim)``), scores ``(N, num_classes)``. A two-layer net is
    ``hidden_dims=[H]``. The model arguments (``net_args``: ``input_dim``, ``num_classes``,
    ``dropout_keep_ratio`` (the KEEP probability), ``normalization``, ``weight_scale``, ``init``, ``ops``)
    and their defaults are those of :func:`torch_cs231n.nets.models.build_fc_net`; the training arguments are
    :class:`ImageClassifier`'s.
    """

    def __init__(
        self,
        hidden_dims: list[int],
        *,
        reg: float = DEFAULT_REG,
        loss: LossName = DEFAULT_LOSS,
        optimizer: OptimizerCallable = DEFAULT_OPTIMIZER,
        lr_scheduler: LRSchedulerCallable | None = None,
        **net_args: Any,
    ):
        net = build_fc_net(hidden_dims, **net_args)
        add_builder_defaults(build_fc_net, net_args)  # saved whole, as hyper-parameters
        num_classes, ops = net_args["num_classes"], net_args["ops"]
        super().__init__(net, num_classes, loss, reg, ops, optimizer, lr_scheduler)
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
