"""Transfer learning from pretrained ImageNet models (CS231n's transfer-learning notes), on built-in or
manual ops.

The model takes CIFAR-style float batches ``(N, 3, H, W)`` in [0, 1] (the data module's
``pixel_normalization: none``) and does the weights' own preprocessing on the device, batched: bilinear resize
to ``resolution``, then ``(x - mean) / std`` with the weights' mean/std. A
:class:`~lightning_modules.data.CIFAR10DataModule` that normalises as well is refused in ``setup`` (every
stage), since images normalised twice are silently off-scale.

Fine-tuning schedules (``finetuning``; ``strategy`` is its deprecated old name, accepted for one release):

- ``"feature_extraction"``: the backbone is frozen; only the new head trains.
- ``"last_blocks"``: the last ``trainable_blocks`` blocks of the backbone and the head train.
- ``"full"``: everything trains; the backbone at ``backbone_lr_factor`` times the head's learning rate.
- ``"gradual"``: starts as feature extraction; the :class:`GradualUnfreezing` callback (a Lightning
  ``BaseFinetuning``) unfreezes ``trainable_blocks`` more blocks, deepest first, at epoch
  ``unfreeze_at_epoch`` and every ``unfreeze_every`` epochs after, each as a new optimizer param group at
  ``backbone_lr_factor`` times the head's learning rate.

A frozen part of the backbone runs in eval mode whatever Lightning does (``train()`` is overridden):
its BatchNorm layers normalise with, and never update, their ImageNet running statistics, and its
dropout / stochastic depth is off, so frozen features are deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.callbacks import BaseFinetuning
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torch.optim import Optimizer

from custom_ops.deprecation import renamed_keyword
from lightning_modules.classifier import DEFAULT_LOSS, ImageClassifier, LossName
from lightning_modules.data import CIFAR10DataModule
from torch_cs231n.interop.function_mode import attach_manual_functions
from torch_cs231n.interop.pretrained import (
    backbone_blocks,
    load_exact,
    load_pretrained,
    read_state_dict,
    replace_head,
)
from torch_cs231n.interop.swap import to_manual
from torch_cs231n.nets.models import Ops

Finetuning = Literal["feature_extraction", "last_blocks", "full", "gradual"]
FINETUNINGS: tuple[str, ...] = ("feature_extraction", "last_blocks", "full", "gradual")


class TransferLearning(ImageClassifier):
    """A pretrained ImageNet backbone with a new ``num_classes`` head.

    Args:
        backbone: a torchvision classification model name (``torchvision.models.get_model``) or
            ``"efficientnet_lite0"`` (offline weights from the ``transfer`` extra).
        weights: the weights enum member (``"DEFAULT"``, ``"IMAGENET1K_V1"``, ...), or ``None`` for random
            initialisation (only when meant: a missing pretrained file is an error, never a fallback).
        weights_path: a local weights file for the backbone's ImageNet architecture (1000 classes).
        num_classes: classes of the new head.
        resolution: side of the square images fed to the backbone (inputs are resized to it).
        finetuning: ``"feature_extraction"``, ``"last_blocks"``, ``"full"`` or ``"gradual"`` (module doc).
        trainable_blocks: blocks trained by ``"last_blocks"``, and unfrozen per step by ``"gradual"``.
        backbone_lr_factor: backbone learning rate / head learning rate (``"full"``, ``"last_blocks"``,
            ``"gradual"``).
        unfreeze_at_epoch, unfreeze_every: the ``"gradual"`` schedule.
        ops: ``"builtin"`` or ``"manual"`` (:func:`torch_cs231n.interop.swap.to_manual` on backbone and head,
            :func:`torch_cs231n.interop.function_mode.attach_manual_functions` for the functional calls in
            their
            ``forward``, and the manual softmax loss).
        channels_last: keep weights and activations in ``torch.channels_last`` (NHWC) memory format,
            faster for convolutions on CPU (oneDNN) and on CUDA with mixed precision.
        init_weights: a checkpoint (or state dict) of a ``TransferLearning`` model of the same backbone and
            ``num_classes`` to start from, loaded with ``weights_only=True`` after the pretrained backbone:
            a second fine-tuning stage with a new optimizer and schedule (``--ckpt_path`` would instead
            resume the old ones). Every key must match.
        loss: ``"softmax"`` or ``"svm"``.
        optimizer: builds the optimizer (default AdamW, lr 1e-3); its ``lr`` is the head's.
        lr_scheduler: optional epoch-wise scheduler factory.
        strategy: deprecated old name of ``finetuning`` (one release): a ``FutureWarning`` naming
            ``--model.init_args.finetuning``; a ``TypeError`` with a non-default ``finetuning`` too.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = "DEFAULT",
        weights_path: str | None = None,
        num_classes: int = 10,
        resolution: int = 224,
        finetuning: Finetuning = "feature_extraction",
        trainable_blocks: int = 2,
        backbone_lr_factor: float = 0.1,
        unfreeze_at_epoch: int = 1,
        unfreeze_every: int = 1,
        ops: Ops = "builtin",
        channels_last: bool = False,
        init_weights: str | None = None,
        loss: LossName = DEFAULT_LOSS,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        strategy: Finetuning | None = None,
    ):
        finetuning = renamed_keyword(  # before save_hyperparameters: they record the resolved `finetuning`
            "TransferLearning",
            "strategy",
            strategy,
            "finetuning",
            finetuning,
            "feature_extraction",
            new_key="--model.init_args.finetuning",
        )
        if finetuning not in FINETUNINGS:
            raise ValueError(f"finetuning must be one of {FINETUNINGS}, got {finetuning!r}")
        for name, value, low in (
            ("resolution", resolution, 32),
            ("trainable_blocks", trainable_blocks, 1),
            ("unfreeze_at_epoch", unfreeze_at_epoch, 0),
            ("unfreeze_every", unfreeze_every, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if not backbone_lr_factor > 0:
            raise ValueError(f"backbone_lr_factor must be > 0, got {backbone_lr_factor!r}")
        pretrained = load_pretrained(backbone, weights, weights_path, image_size=resolution)
        head_name = replace_head(pretrained.model, num_classes)
        super().__init__(pretrained.model, num_classes, loss, 0.0, ops, optimizer, lr_scheduler)
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler", "strategy"])
        self.head_name = head_name
        self.register_buffer("mean", torch.tensor(pretrained.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pretrained.std).view(1, 3, 1, 1), persistent=False)
        self.resolution = resolution
        self.finetuning = finetuning
        self.trainable_blocks = trainable_blocks
        self.backbone_lr_factor = float(backbone_lr_factor)
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.unfreeze_every = unfreeze_every
        if ops == "manual":  # the layers, and the torch.nn.functional calls in the backbone's forward
            attach_manual_functions(to_manual(self.net))
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net.to(memory_format=self.memory_format)
        if init_weights is not None:
            load_exact(self, read_state_dict(init_weights), f"init_weights '{init_weights}'")
        if finetuning != "full":
            self.set_trainable(self.backbone_modules(), False)
        if finetuning == "last_blocks":
            for _, modules in self.blocks()[-trainable_blocks:]:
                self.set_trainable(modules, True)
        self.train()  # frozen parts to eval mode now: Lightning captures and restores modes around validation

    def setup(self, stage: str) -> None:
        """Refuse a data module that normalises its images: this model normalises them itself.

        Raises:
            ValueError: the trainer's data module is a ``CIFAR10DataModule`` with a ``pixel_normalization``
                other than ``"none"``.
        """
        datamodule = self.trainer.datamodule
        if isinstance(datamodule, CIFAR10DataModule) and datamodule.pixel_normalization != "none":
            raise ValueError(
                "The model TransferLearning (--model.class_path lightning_modules.transfer.TransferLearning) "
                "normalises its inputs itself with the pretrained weights' mean/std and needs images in "
                "[0, 1], but the data module normalises them too (--data.init_args.pixel_normalization "
                f"{datamodule.pixel_normalization}): set --data.init_args.pixel_normalization none, or the "
                "images are normalised twice."
            )

    # ------------------------------------------------------------------------------------------ parts
    @property
    def head(self) -> nn.Module:
        """The new classifier layer."""
        return self.net.get_submodule(self.head_name)

    def blocks(self) -> list[tuple[str, list[nn.Module]]]:
        """The backbone's blocks, input side first
        (:func:`torch_cs231n.interop.pretrained.backbone_blocks`)."""
        return backbone_blocks(self.net, self.head_name)

    def backbone_modules(self) -> list[nn.Module]:
        """Every module of every backbone block."""
        return [m for _, modules in self.blocks() for m in modules]

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter of the network except the head's, frozen or not."""
        head = {id(p) for p in self.head.parameters()}
        return (p for p in self.net.parameters() if id(p) not in head)

    @staticmethod
    def set_trainable(modules: list[nn.Module], trainable: bool) -> None:
        """Set ``requires_grad`` of all parameters of ``modules``."""
        for module in modules:
            module.requires_grad_(trainable)

    def train(self, mode: bool = True) -> TransferLearning:
        """``nn.Module.train``, except that every module of the backbone whose parameters are all frozen
        stays in eval mode (BatchNorm keeps its running statistics; no dropout / stochastic depth)."""
        super().train(mode)
        if mode:
            for module in self.net.modules():
                params = list(module.parameters())
                if params and not any(p.requires_grad for p in params):
                    module.eval()
        return self

    # ------------------------------------------------------------------------------------------ model
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """RGB images ``(N, 3, H, W)`` in [0, 1] -> class scores ``(N, num_classes)``."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"x must have shape (N, 3, H, W) (RGB in [0, 1]), got {tuple(x.shape)}")
        size = (self.resolution, self.resolution)
        if tuple(x.shape[-2:]) != size:
            shrink = x.shape[-1] > self.resolution or x.shape[-2] > self.resolution
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
        return self.net(((x - self.mean) / self.std).contiguous(memory_format=self.memory_format))

    def param_groups(self) -> list[dict[str, Any]]:
        """Head at the optimizer's ``lr``; trainable backbone parameters at ``backbone_lr_factor * lr``."""
        backbone = [p for p in self.backbone_parameters() if p.requires_grad]
        return [
            {"params": list(self.head.parameters())},
            {"params": backbone, "lr_factor": self.backbone_lr_factor},
        ]

    def configure_callbacks(self) -> list[Callback]:
        if self.finetuning != "gradual":
            return []
        return [
            GradualUnfreezing(
                self.unfreeze_at_epoch, self.trainable_blocks, self.unfreeze_every, self.backbone_lr_factor
            )
        ]


class GradualUnfreezing(BaseFinetuning):
    """Unfreeze a :class:`TransferLearning` backbone block by block, deepest first.

    At epoch ``unfreeze_at_epoch + k * every`` (k = 0, 1, ...) the next ``blocks_per_step`` frozen blocks
    (counting from the head) become trainable and join the optimizer as one new param group with
    ``lr = lr_factor * (the head's current lr)``; their BatchNorm layers return to training mode.
    """

    def __init__(self, unfreeze_at_epoch: int = 1, blocks_per_step: int = 2, every: int = 1, lr_factor=0.1):
        super().__init__()
        if unfreeze_at_epoch < 0 or blocks_per_step < 1 or every < 1 or not lr_factor > 0:
            raise ValueError(
                "need unfreeze_at_epoch >= 0, blocks_per_step >= 1, every >= 1 and lr_factor > 0, got "
                f"{unfreeze_at_epoch}, {blocks_per_step}, {every}, {lr_factor}"
            )
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.blocks_per_step = blocks_per_step
        self.every = every
        self.lr_factor = lr_factor

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        if not isinstance(pl_module, TransferLearning):
            raise TypeError(
                f"GradualUnfreezing needs a TransferLearning module, got {type(pl_module).__name__}"
            )
        self.freeze(pl_module.backbone_modules(), train_bn=False)

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: Optimizer) -> None:
        steps_done = epoch - self.unfreeze_at_epoch
        if steps_done < 0 or steps_done % self.every:
            return
        step = steps_done // self.every
        blocks = pl_module.blocks()
        stop = len(blocks) - step * self.blocks_per_step
        chosen = blocks[max(stop - self.blocks_per_step, 0) : max(stop, 0)]
        if not chosen:
            return
        modules = [m for _, block in chosen for m in block]
        lr = optimizer.param_groups[0]["lr"] * self.lr_factor
        self.unfreeze_and_add_param_group(modules, optimizer, lr=lr, train_bn=True)
        self.join_schedulers(pl_module.trainer.lr_scheduler_configs, optimizer)
        pl_module.train(pl_module.training)  # the unfrozen BatchNorm layers leave eval mode

    def join_schedulers(self, configs: list[Any], optimizer: Optimizer) -> None:
        """Give the new param group a base lr in every scheduler of ``optimizer`` that keeps one per group
        (``CosineAnnealingLR`` zips ``base_lrs`` strictly with the groups past ``T_max`` and would fail on a
        group it does not know). The base lr is ``lr_factor`` times the head's, so the group follows the
        schedule in step with the head."""
        group = optimizer.param_groups[-1]
        for config in configs:
            scheduler = config.scheduler
            base_lrs = getattr(scheduler, "base_lrs", None)
            if (
                scheduler.optimizer is optimizer
                and base_lrs is not None
                and len(base_lrs) < len(optimizer.param_groups)
            ):
                group.setdefault("initial_lr", base_lrs[0] * self.lr_factor)
                base_lrs.append(group["initial_lr"])
