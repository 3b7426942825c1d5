"""The ``cs231n`` command line: LightningCLI subcommands plus ``plot`` and ``bench``.

    cs231n fit --config configs/two_layer_default.yaml      # also validate / test / predict
    cs231n fit --config configs/fc_net_tuned.yaml --ckpt_path runs/.../checkpoints/last.ckpt   # resume
    cs231n plot LOG_DIR [--out DIR]                          # CS231n Solver figures from a CSV log
    cs231n bench ...                                         # torch_cs231n.tools.bench
    cs231n tune --config CONFIG --search SPACE.yaml ...      # Optuna search (lightning_modules.tune)

Models and data modules are given in subclass mode (``class_path`` + ``init_args``), so any
``LightningModule`` / ``LightningDataModule`` works. Every run saves two checkpoints, the best by ``val/acc``
and the last (``--checkpoint.*`` configures them), logs the learning rate and the training time per
epoch (``time/epoch_s``), and writes CSV logs to
``lightning_logs/`` unless the config chooses another logger (e.g. TensorBoard).

Configs are layered: ``configs/base.yaml`` (trainer, logger, seed, data module and its location) is a
default config file of ``fit``/``validate``/``test``/``predict``, then the optional, git-ignored
``configs/local.yaml`` (this machine's values), then ``--config``, then the command line
(:data:`DEFAULT_CONFIG_FILES`).
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins import CheckpointIO

from torch_cs231n.interop.checkpoint import CheckpointError, load_checkpoint, state_dict_mismatch

from .checkpointing import ChecksummedCheckpointIO, find_last_checkpoint
from .layer_sync import trainer_kwargs_with_manual_sync
from .prediction import PredictionWriter
from .seeding import EpochSeeding


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


class CheckpointMismatchError(ValueError):
    """The checkpoint given with ``--ckpt_path`` was written by another model class or does not fit the
    model the arguments describe."""


class MissingCheckpointError(ValueError):
    """``validate`` / ``test`` / ``predict`` without ``--ckpt_path``: they would evaluate random weights."""


class LinkedArgumentError(ValueError):
    """A model argument that the data module sets (``num_classes``) was given a different value."""


EVALUATION_SUBCOMMANDS = ("validate", "test", "predict")
LIGHTNING_SUBCOMMANDS = ("fit", *EVALUATION_SUBCOMMANDS)

# The settings the experiment configs share (trainer, logger, seed, data location), loaded before any
# `--config` by fit / validate / test / predict (and `tune`), whatever the working directory: an experiment
# config and the command line override them. `configs/local.yaml` (git-ignored, optional, loaded after the
# base) holds this machine's own values, e.g. another `data.init_args.npz_path`.
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_CONFIG_FILES: tuple[str, ...] = (str(CONFIG_DIR / "base.yaml"), str(CONFIG_DIR / "local.yaml"))

# Init arguments renamed (class path -> {old name: new name}); the old names are accepted for one release.
RENAMED_INIT_ARGS: dict[str, dict[str, str]] = {
    "lightning_modules.transfer.TransferLearning": {"strategy": "finetuning"},
    "lightning_modules.data.CIFAR10DataModule": {"normalization": "pixel_normalization"},
}


class CS231nCLI(LightningCLI):
    """LightningCLI with a best/last checkpoint callback under ``checkpoint``, and checkpoints that cannot
    silently override the user.

    With ``--ckpt_path``:
        - the arguments and config files the user gives (the default config files included) win; the
          checkpoint's saved hyper-parameters (model and data) fill in only what they leave unset
          (LightningCLI alone applies the checkpoint's on top of everything the user typed);
        - a checkpoint of another model or data class than the one given, or whose ``state_dict`` does not
          fit the model, is refused with a :class:`CheckpointMismatchError` naming both;
        - ``last`` is the newest ``last.ckpt`` of the run's experiment folder (``--checkpoint.dirpath``, or
          the logger's ``save_dir/name``), an error when there is none;
        - the file is read with ``weights_only=True`` and its tensor checksum verified
          (:mod:`torch_cs231n.interop.checkpoint`).
    ``validate``, ``test`` and ``predict`` require ``--ckpt_path`` (:class:`MissingCheckpointError`).
    """

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
        # The model's number of classes is the data's: set once, by the data module.
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse as LightningCLI does, and also keep what the user gave explicitly (no defaults).

        ``args`` given from Python (:func:`run_lightning`) is this CLI's documented API, so LightningCLI's
        warning against combining it with ``sys.argv`` (which then holds the caller's own options) is
        silenced."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            super().parse_arguments(parser, args)
        if isinstance(args, (dict, Namespace)):
            self.given = parser.parse_object(args, defaults=False)
        else:
            self.given = parser.parse_args(self._with_default_config_files(args), defaults=False)
        self._rename_deprecated_init_args(parser)

    def _with_default_config_files(self, args: Sequence[str] | None) -> list[str]:
        """``args`` with the existing :data:`DEFAULT_CONFIG_FILES` as leading ``--config`` options (after
        the subcommand): what the user gives includes the base config, which is part of every experiment
        config, so that its values too win over a checkpoint's (``parse_args(defaults=False)`` leaves the
        default config files out)."""
        args = list(sys.argv[1:] if args is None else args)
        files = [f"--config={path}" for path in DEFAULT_CONFIG_FILES if Path(path).is_file()]
        if not hasattr(self, "_subcommand_method_arguments"):  # run=False: fit's options alone
            return [*files, *args]
        if not args or args[0] not in self.subcommands():
            return args
        return [args[0], *files, *args[1:]]

    def _rename_deprecated_init_args(self, parser: LightningArgumentParser) -> None:
        """Move the old names of :data:`RENAMED_INIT_ARGS` to the new ones before anything is instantiated,
        with a ``FutureWarning`` naming the new key, so that the saved config and the logged hyper-parameters
        hold the new names; the old and the new key both given is a parser error."""
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        given = (self.given.get(subcommand) if subcommand else self.given) or Namespace()
        for key in ("model", "data"):
            section = config.get(key)
            renamed = RENAMED_INIT_ARGS.get(section.get("class_path") or "", {}) if section else {}
            init_args = section.get("init_args") if section else None
            given_args = (given.get(key) or Namespace()).get("init_args") or Namespace()
            for old, new in renamed.items():
                if init_args is None or init_args.get(old) is None:
                    continue
                if new in given_args:
                    parser.error(
                        f"--{key}.init_args.{old} is the deprecated old name of --{key}.init_args.{new}: "
                        f"give only --{key}.init_args.{new}"
                    )
                warnings.warn(
                    f"--{key}.init_args.{old} is deprecated and will be removed in the next release; use "
                    f"'--{key}.init_args.{new}' instead",
                    FutureWarning,
                    stacklevel=2,
                )
                init_args[new], init_args[old] = init_args[old], None

    def _parse_ckpt_path(self) -> None:
        """Resolve ``--ckpt_path``, verify the file, and fill in only the hyper-parameters left unset."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        if ckpt_path is None:
            if subcommand in EVALUATION_SUBCOMMANDS:
                raise MissingCheckpointError(
                    f"cs231n {subcommand} needs --ckpt_path: without it the model would be evaluated with "
                    "freshly initialised (random) weights. Pass --ckpt_path PATH (a .ckpt written by `cs231n "
                    "fit`) or --ckpt_path last (the newest last.ckpt of this config's experiment)."
                )
            return
        if ckpt_path == "last":
            ckpt_path = str(find_last_checkpoint(self._experiment_dirs(config)))
            config["ckpt_path"] = ckpt_path
            print(f"cs231n {subcommand}: --ckpt_path last is {ckpt_path}", flush=True)
        self.checkpoint = load_checkpoint(ckpt_path)
        given = self.given.get(subcommand) or Namespace()
        for key, saved_key in (("model", "hyper_parameters"), ("data", "datamodule_hyper_parameters")):
            self._fill_from_checkpoint(subcommand, key, given.get(key), saved_key, ckpt_path)

    def _fill_from_checkpoint(
        self, subcommand: str, key: str, given: Namespace | None, saved_key: str, ckpt_path: str
    ) -> None:
        saved = dict(self.checkpoint.get(saved_key) or {})
        saved.pop("_instantiator", None)
        saved_class = saved.pop("_class_path", None)
        current = self.config[subcommand].get(key)
        user_class = current.class_path if given is not None and given.get("class_path") else None
        if saved_class and user_class and user_class != saved_class:
            raise CheckpointMismatchError(
                f"--ckpt_path {ckpt_path} holds a {saved_class}, but the arguments give {key} "
                f"{user_class}. Use a checkpoint of {user_class.rsplit('.', 1)[-1]}, or the "
                f"config the checkpoint was trained with."
            )
        given_args = set((given.get("init_args") or Namespace()).keys()) if given is not None else set()
        class_path = saved_class or (current.class_path if current is not None else None)
        for old, new in RENAMED_INIT_ARGS.get(class_path or "", {}).items():
            if old in saved:  # a checkpoint written before the rename
                saved.setdefault(new, saved.pop(old))
            if old in given_args:  # the user's deprecated key gives the new one
                given_args.add(new)
        unset = {name: value for name, value in saved.items() if name not in given_args}
        if class_path is None or (not unset and current is not None):
            return
        update = {subcommand: {key: {"class_path": class_path, "init_args": unset}}}
        try:
            self.config = self.parser.parse_object(update, self.config)
        except SystemExit:
            sys.stderr.write(f"the {key} hyper-parameters saved in {ckpt_path} do not fit {class_path}\n")
            raise

    @staticmethod
    def _experiment_dirs(config: Namespace) -> list[Path]:
        """Where a run of ``config`` writes its checkpoints: ``--checkpoint.dirpath``, or the loggers'
        ``save_dir/name`` folders (or ``default_root_dir`` without a logger)."""
        if config.get("checkpoint") and config.checkpoint.get("dirpath"):
            return [Path(config.checkpoint.dirpath)]
        loggers = config.trainer.get("logger")
        loggers = loggers if isinstance(loggers, list) else [loggers]
        dirs = []
        for logger in loggers:
            init_args = logger.get("init_args") if isinstance(logger, (dict, Namespace)) else None
            if init_args is not None and init_args.get("save_dir") is not None:
                dirs.append(Path(init_args.get("save_dir")) / str(init_args.get("name") or "lightning_logs"))
        return dirs or [Path(config.trainer.get("default_root_dir") or ".")]

    def after_instantiate_classes(self) -> None:
        """Refuse a ``model.init_args.num_classes`` other than the data module's (which the model gets), and
        a checkpoint whose ``state_dict`` does not fit the instantiated model."""
        self._check_linked_num_classes()
        checkpoint = getattr(self, "checkpoint", None)
        if checkpoint is None or "state_dict" not in checkpoint:
            return
        problems = state_dict_mismatch(self.model.state_dict(), checkpoint["state_dict"])
        if problems:
            saved = checkpoint.get("hyper_parameters") or {}
            differ = [
                f"{name}: checkpoint {saved[name]!r}, arguments {value!r}"
                for name, value in self.model.hparams.items()
                if name in saved and saved[name] != value
            ]
            ckpt_path = self.config[self.subcommand].ckpt_path
            raise CheckpointMismatchError(
                "\n".join(
                    [
                        f"the weights in --ckpt_path {ckpt_path} do not fit the model "
                        f"{type(self.model).__name__} built from the arguments:",
                        *problems,
                        *(["hyper-parameters that differ: " + "; ".join(differ)] if differ else []),
                        "Drop the arguments that change the architecture (the checkpoint fills in what is "
                        "left unset), or use a checkpoint trained with them.",
                    ]
                )
            )

    def _check_linked_num_classes(self) -> None:
        """``num_classes`` is linked from the data module to the model (``link_arguments``), which would
        silently replace a value the user gave: one that differs is an error instead (an equal one, as in
        older configs, is accepted)."""
        given = self.given.get(self.subcommand) if self.subcommand else self.given
        try:
            value = given.get("model.init_args.num_classes") if isinstance(given, Namespace) else None
        except (KeyError, AttributeError, TypeError):
            value = None
        data_classes = getattr(self.datamodule, "num_classes", None)
        if value is not None and value != data_classes:
            raise LinkedArgumentError(
                f"--model.init_args.num_classes {value}: the model's number of classes is the data module's "
                f"({type(self.datamodule).__name__}.num_classes = {data_classes}), set by the CLI; drop the "
                "argument (or the config's model num_classes)."
            )

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        """LightningCLI's trainer, plus: checkpoints with checksums (none with ``enable_checkpointing
        false``), TensorBoard next to a CSV log, and
        ``sync_batchnorm`` that keeps manual batch norm manual (:mod:`lightning_modules.layer_sync`)."""
        plugins = config.get("plugins")
        plugins = [] if plugins is None else list(plugins) if isinstance(plugins, list) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(ChecksummedCheckpointIO())
        config["plugins"] = plugins
        config["logger"] = with_tensorboard(config.get("logger"))
        if config.get("enable_checkpointing") is False:  # the `checkpoint` callback stands aside
            callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
        return super()._instantiate_trainer(trainer_kwargs_with_manual_sync(config), callbacks)


def with_tensorboard(logger: Any) -> Any:
    """A single ``CSVLogger`` becomes ``[that logger, a TensorBoardLogger writing into the same run
    folder]``; anything else (no logger, several, another kind) is left as configured."""
    if not isinstance(logger, CSVLogger):
        return logger
    return [logger, TensorBoardLogger(logger.save_dir, logger.name, logger.version, default_hp_metric=False)]


def run_lightning(args: Sequence[str] | None = None, run: bool = True) -> CS231nCLI:
    """Run a LightningCLI subcommand (``fit``, ``validate``, ``test``, ``predict``) with ``args``
    (``None``: the command line). ``run=False``: ``args`` are ``fit``'s options without a subcommand, and
    the model, data module and trainer are built but not run (``cs231n tune`` runs them)."""
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
            "callbacks": [
                LearningRateLogger(logging_interval="epoch"),
                EpochTimer(),
                EpochSeeding(),
                PredictionWriter(),  # predictions.csv for `predict`
            ],
        },
        save_config_kwargs={"overwrite": True},
        parser_kwargs=default_config_kwargs(run),
        args=None if args is None else list(args),
        run=run,
    )


def default_config_kwargs(run: bool) -> dict[str, Any]:
    """LightningCLI ``parser_kwargs`` loading :data:`DEFAULT_CONFIG_FILES`: per subcommand when the CLI
    runs one, else (``run=False``: ``fit``'s options alone) for the one parser."""
    files = {"default_config_files": list(DEFAULT_CONFIG_FILES)}
    return {name: files for name in LIGHTNING_SUBCOMMANDS} if run else files


# Subcommand -> one line of help. LightningCLI runs fit, validate, test and predict; main() dispatches the
# others to their modules.
COMMANDS: dict[str, str] = {
    "fit": "train a model (resume with --ckpt_path PATH|last)",
    "validate": "evaluate a checkpoint on the validation split",
    "test": "evaluate a checkpoint on the test split",
    "predict": "predict with a checkpoint; writes predictions.csv into the run folder",
    "plot": "the CS231n Solver figures (loss, accuracy, first-layer weights) of a run",
    "bench": "manual vs built-in ops: speed and saved memory",
    "summary": "a config's model layer by layer: output shapes, activations, parameters, memory",
    "experiment": "the lecture's experiments, e.g. `experiment activations` (weight initialisation)",
    "gradcheck": "numeric gradient check of every op's backward (exit 0 when all rel errors < 1e-7)",
    "tune": "hyperparameter search with Optuna (--search SPACE.yaml); writes the best trial's config",
}


def usage() -> str:
    """The top-level help: every subcommand with a line each."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    return "\n".join(
        [
            f"usage: cs231n {{{','.join(COMMANDS)}}} ...",
            "",
            "The CS231n layers as PyTorch operators, trained with Lightning.",
            "",
            "subcommands:",
            *lines,
            "",
            "`cs231n SUBCOMMAND --help` lists the options of one, e.g. cs231n fit --help.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cs231n`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr, flush=True)
        return 0 if args else 2
    if args[0] not in COMMANDS and not args[0].startswith("-"):
        print(f"{usage()}\n\ncs231n: error: unknown subcommand {args[0]!r}", file=sys.stderr, flush=True)
        return 2
    if args[0] == "plot":
        from torch_cs231n.tools.plotting import main as plot_main

        return plot_main(args[1:])
    if args[0] == "bench":
        from torch_cs231n.tools import bench  # imported lazily: `fit` must not depend on the benchmark module

        return bench.main(args[1:])
    if args[0] == "summary":
        from torch_cs231n.tools import summary

        return summary.main(args[1:])
    if args[0] == "experiment":
        from torch_cs231n import experiments

        return experiments.main(args[1:])
    if args[0] == "gradcheck":
        from torch_cs231n.tools import gradcheck

        return gradcheck.main(args[1:])
    if args[0] == "tune":
        from . import tune  # imported lazily: `fit` must not depend on Optuna

        return tune.main(args[1:])
    try:
        run_lightning(None if argv is None else args)
    except (
        CheckpointError,
        CheckpointMismatchError,
        MissingCheckpointError,
        LinkedArgumentError,
        FileNotFoundError,
    ) as err:
        print(f"cs231n {args[0]}: error: {err}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
