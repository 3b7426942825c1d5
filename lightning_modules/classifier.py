"""The shared ``LightningModule`` of the CS231n classifiers: loss, L2 regularisation, metrics, optimizer.

Objective (CS231n): ``loss = data_loss(scores, y) + 0.5 * reg * sum_W ||W||^2`` over the weights of the
affine and conv layers (not biases, not normalisation parameters). ``data_loss`` is the softmax
(cross-entropy) or multiclass SVM loss: :mod:`custom_ops.functional` for ``ops="manual"``, the
:mod:`torch.nn.functional` twins for ``ops="builtin"``.

Logged: ``train/loss`` (the full objective, per step and per epoch), ``train/acc``, ``val/loss``,
``val/acc``, ``test/loss``, ``test/acc`` (``val/loss`` and ``test/loss`` are the data loss alone, comparable
across ``reg``). Under DDP the losses are averaged over the processes (``sync_dist``) and the accuracies
are torchmetrics states reduced over them, so every process logs the whole batch's numbers.
The optimizer and the optional scheduler are injected (``OptimizerCallable``), so configs choose any
``torch.optim`` or :mod:`torch_cs231n.nets.optim` rule; the scheduler steps once per epoch (CS231n
``lr_decay``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from torch_cs231n.nets.models import LossName, Ops, data_loss_fn
from torch_cs231n.nets.optim import SGD

# The training arguments' defaults, written once: ImageClassifier and every model class take them from here.
DEFAULT_LOSS: LossName = "softmax"
DEFAULT_REG = 0.0
DEFAULT_OPTIMIZER: OptimizerCallable = SGD


class ImageClassifier(pl.LightningModule):
    """A classifier network trained with a CS231n objective, as Lightning's examples do it: the
    ``LightningModule`` receives its network and holds the training plumbing (loss, L2 penalty, metrics,
    optimizer and scheduler) once, for every model of the package.

    Args:
        net: images ``(N, C, H, W)`` -> scores ``(N, num_classes)``, e.g. built by
            :mod:`torch_cs231n.nets.models`.
        num_classes: number of classes (of the accuracy metrics).
        loss: ``"softmax"`` or ``"svm"``.
        reg: L2 strength; the penalty is ``0.5 * reg * sum ||W||^2`` over affine/conv weights.
        ops: ``"manual"`` or ``"builtin"``: the data loss's implementation (the net's layers are the
            builder's business).
        optimizer: builds the optimizer from :meth:`param_groups` (default: CS231n SGD, lr 1e-2).
        lr_scheduler: builds an epoch-wise scheduler from the optimizer, e.g.
            ``torch_cs231n.nets.optim.LRDecay``.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        loss: LossName = DEFAULT_LOSS,
        reg: float = DEFAULT_REG,
        ops: Ops = "manual",
        optimizer: OptimizerCallable = DEFAULT_OPTIMIZER,
        lr_scheduler: LRSchedulerCallable | None = None,
    ):
        super().__init__()
        if not reg >= 0:
            raise ValueError(f"reg must be >= 0, got {reg!r}")
        self.data_loss = data_loss_fn(loss, ops)
        self.reg = float(reg)
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, C, H, W)`` -> class scores ``(N, num_classes)``."""
        return self.net(x)

    def regularized_weights(self) -> Iterator[nn.Parameter]:
        """The weights of the affine and conv layers (the L2-regularised parameters)."""
        for module in self.net.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                yield module.weight

    def reg_loss(self) -> torch.Tensor:
        """``0.5 * reg * sum ||W||^2``; a scalar (0 when ``reg == 0``)."""
        if self.reg == 0.0:
            return torch.zeros((), device=self.device)
        return 0.5 * self.reg * sum(w.square().sum() for w in self.regularized_weights())

    def loss(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training objective: data loss of scores ``(N, C)`` and labels ``(N,)`` plus the L2 penalty."""
        return self.data_loss(scores, y) + self.reg_loss()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        scores = self(x)
        loss = self.loss(scores, y)
        self.train_acc(scores.detach(), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str, metric: MulticlassAccuracy):
        x, y = batch
        scores = self(x)
        metric(scores, y)
        self.log(f"{stage}/loss", self.data_loss(scores, y), prog_bar=stage == "val", sync_dist=True)
        self.log(f"{stage}/acc", metric, prog_bar=stage == "val")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_acc)

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Class probabilities ``(B, num_classes)`` (softmax of the scores) of a batch ``(images, ids)``."""
        return self(batch[0]).softmax(1)

    def param_groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups, ``{"params": [...]}`` dicts: the first trains at the optimizer's
        ``lr``, each further one (skipped when empty) at its ``"lr_factor"`` times that ``lr``.
        Here: one group of all parameters; subclasses override this alone (not the optimizer plumbing)."""
        return [{"params": list(self.parameters())}]

    def configure_optimizers(self) -> Any:
        first, *others = self.param_groups()
        optimizer = self.optimizer_factory([first])
        lr = optimizer.param_groups[0]["lr"]
        for group in others:
            if group["params"]:
                optimizer.add_param_group({"params": group["params"], "lr": lr * group["lr_factor"]})
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class BuiltNetClassifier(ImageClassifier):
    """An :class:`ImageClassifier` whose network its class's ``build_net`` (a :mod:`torch_cs231n.nets.models`
    builder, set as a ``staticmethod``) makes from the model arguments ``net_args``, all keywords; the
    training arguments are :class:`ImageClassifier`'s. The saved hyper-parameters: ``net_args`` with the
    builder's defaults added, and the training arguments but ``optimizer`` and ``lr_scheduler``."""

    build_net: Callable[..., nn.Module]

    def __init__(
        self,
        *,
        reg: float = DEFAULT_REG,
        loss: LossName = DEFAULT_LOSS,
        optimizer: OptimizerCallable = DEFAULT_OPTIMIZER,
        lr_scheduler: LRSchedulerCallable | None = None,
        **net_args: Any,
    ):
        net = self.build_net(**net_args)
        add_builder_defaults(self.build_net, net_args)  # saved whole, as hyper-parameters
        num_classes, ops = net_args["num_classes"], net_args["ops"]
        super().__init__(net, num_classes, loss, reg, ops, optimizer, lr_scheduler)
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])


def add_builder_defaults(builder: Callable[..., nn.Module], net_args: dict[str, Any]) -> None:
    """Add to a model's ``net_args`` (keyword arguments of ``builder``) the defaults of those it lacks, in
    place: its saved hyper-parameters then name the whole architecture, and the values the module needs as
    well (``ops``, ``num_classes``) come from the one place their defaults are written, the builder."""
    for name, parameter in inspect.signature(builder).parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            net_args.setdefault(name, parameter.default)
