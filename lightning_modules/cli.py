"""The ``cs231n`` command line: LightningCLI subcommands plus ``plot`` and ``bench``.

    cs231n fit --config configs/two_layer_default.yaml      # also validate / test / predict
    cs231n fit --config configs/fc_net_tuned.yaml --ckpt_path runs/.../checkpoints/last.ckpt   # resume
    cs231n plot LOG_DIR [--out DIR]                          # CS231n Solver figures from a CSV log
    cs231n bench ...                                         # torch_cs231n.bench

Models and data modules are given in subclass mode (``class_path`` + ``init_args``), so any
``LightningModule`` / ``LightningDataModule`` works. Every run saves two checkpoints, the best by ``val/acc``
and the last (``--checkpoint.*`` configures them), logs the learning rate and the training time per
epoch (``time/epoch_s``), and writes CSV logs to
``lightning_logs/`` unless the config chooses another logger (e.g. TensorBoard).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI


class EpochTimer(Callback):
    """Logs ``time/epoch_s``: wall seconds of each training epoch (its batches, without validation)."""

    def __init__(self) -> None:
        super().__init__()
        self._start = 0.0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module.log("time/epoch_s", time.perf_counter() - self._start, on_step=False, on_epoch=True)


class LearningRateLogger(LearningRateMonitor):
    """``LearningRateMonitor`` that stands aside when the trainer has no logger (``--trainer.logger false``)
    instead of failing the run: the learning rates are then simply not recorded."""

    def on_train_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)


class CS231nCLI(LightningCLI):
    """LightningCLI with a configurable best/last checkpoint callback under ``checkpoint``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-epoch{epoch:02d}-step{step}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )


def run_lightning(args: Sequence[str]) -> CS231nCLI:
    """Run a LightningCLI subcommand (``fit``, ``validate``, ``test``, ``predict``) with ``args``."""
    return CS231nCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,  # the models take `optimizer` / `lr_scheduler` arguments
        trainer_defaults={
            "logger": {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": "lightning_logs"},
            },
            "callbacks": [LearningRateLogger(logging_interval="epoch"), EpochTimer()],
        },
        save_config_kwargs={"overwrite": True},
        args=list(args),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cs231n`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "plot":
        from torch_cs231n.plotting import main as plot_main

        return plot_main(args[1:])
    if args and args[0] == "bench":
        from torch_cs231n import bench  # imported lazily: `fit` must not depend on the benchmark module

        return bench.main(args[1:])
    run_lightning(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
