"""The CS231n ``FullyConnectedNet`` as a ``LightningModule``."""

from __future__ import annotations

from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from torch_cs231n.init import InitScheme
from torch_cs231n.models import Normalization, Ops, build_fc_net
from torch_cs231n.optim import SGD

from .classifier import ImageClassifier, LossName


class FullyConnectedNet(ImageClassifier):
    """``{affine - [batch/layer norm] - relu - [dropout]} x (L - 1) - affine - softmax/svm``.

    Input ``(N, 3, 32, 32)`` (or ``(N, input_dim)``), scores ``(N, num_classes)``. A two-layer net is
    ``hidden_dims=[H]``. Model arguments as in :func:`torch_cs231n.models.build_fc_net`
    (``dropout_keep_ratio`` is the KEEP probability); training arguments as in :class:`ImageClassifier`.
    """

    def __init__(
        self,
        hidden_dims: list[int],
        input_dim: int = 3 * 32 * 32,
        num_classes: int = 10,
        dropout_keep_ratio: float = 1.0,
        normalization: Normalization = None,
        reg: float = 0.0,
        weight_scale: float = 1e-2,
        init: InitScheme = "gaussian",
        loss: LossName = "softmax",
        ops: Ops = "manual",
        optimizer: OptimizerCallable = SGD,
        lr_scheduler: LRSchedulerCallable | None = None,
    ):
        super().__init__(num_classes, loss, reg, ops, optimizer, lr_scheduler)
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.net = build_fc_net(
            hidden_dims, input_dim, num_classes, dropout_keep_ratio, normalization, weight_scale, init, ops
        )
