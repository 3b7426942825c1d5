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

import importlib
import json
import re
import shutil
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import torch
import yaml
from jsonargparse import DefaultHelpFormatter, Namespace
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins import CheckpointIO

from torch_cs231n.data import CIFAR10DataError
from torch_cs231n.interop.checkpoint import CheckpointError, load_checkpoint, state_dict_mismatch

from .checkpointing import (
    ChecksummedCheckpointIO,
    configured_optimizers,
    find_last_checkpoint,
    optimizer_changes,
)
from .data import CIFAR10UnavailableError, ImageFileError
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


class ConfigFileError(ValueError):
    """A ``--config`` (or ``--search``) file does not exist or is not YAML; the message names it."""


class ArgumentValueError(ValueError):
    """A model or data class refused the value of one of its arguments (its own ``ValueError``)."""


# The errors a command reports as its one- or two-line message (exit status 2; the traceback with
# `--debug`): the user's arguments, files and data, each message saying what to do. Anything else is a bug
# and keeps its traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    CheckpointError,
    CheckpointMismatchError,
    MissingCheckpointError,
    LinkedArgumentError,
    ConfigFileError,
    ArgumentValueError,
    CIFAR10DataError,
    CIFAR10UnavailableError,
    ImageFileError,
    FileNotFoundError,
    IsADirectoryError,
)


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

# The modules of the project's model and data classes: imported before parsing, so that LightningCLI's short
# class names work (`--model FullyConnectedNet`, `--data CIFAR10DataModule`).
PROJECT_CLASS_MODULES: tuple[str, ...] = (
    "lightning_modules.fc_net",
    "lightning_modules.conv_net",
    "lightning_modules.transfer",
    "lightning_modules.data",
)


def option_values(args: Sequence[str], names: Sequence[str]) -> list[str]:
    """The values of the options ``names`` in ``args`` (``--name VALUE`` or ``--name=VALUE``), in order."""
    values = []
    for i, arg in enumerate(args):
        name, equals, value = arg.partition("=")
        if name in names:
            if equals:
                values.append(value)
            elif i + 1 < len(args):
                values.append(args[i + 1])
    return values


def load_yaml_file(path: str | Path, option: str) -> Any:
    """The content of the YAML file ``path`` given with ``option``.

    Raises:
        ConfigFileError: the file does not exist, is a folder, or is not valid YAML; the message names the
            option, the file and (for YAML) the line and column of the problem.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigFileError(
            f"{option} {path}: the file {what} (looked for '{path.absolute()}'); give a YAML file"
        )
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigFileError(f"{option} {path}: not valid YAML{where}: {problem}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigFileError(f"{option} {path}: cannot read the file ({err})") from err


def check_config_files(args: Sequence[str]) -> None:
    """Raise :class:`ConfigFileError` for a ``--config`` file in ``args`` that is missing or not YAML."""
    for path in option_values(args, ("--config", "-c")):
        load_yaml_file(path, "--config")


def is_lightning_checkpoint(checkpoint: Any) -> bool:
    """Whether ``checkpoint`` is a Lightning checkpoint (rather than a plain state dict)."""
    return isinstance(checkpoint, Mapping) and "pytorch-lightning_version" in checkpoint


def plain_state_dict(checkpoint: Any, ckpt_path: str, subcommand: str) -> dict[str, torch.Tensor]:
    """The weights of a ``--ckpt_path`` that is no Lightning checkpoint: a plain state dict (name ->
    tensor, e.g. ``torch.save(model.state_dict(), path)``) or a dict holding one under ``"state_dict"``.

    Raises:
        CheckpointError: the file holds something else, or ``subcommand`` is ``fit``, which resumes a run
            and needs the optimizer, epoch and step that only a Lightning checkpoint holds.
    """
    weights = checkpoint.get("state_dict") if isinstance(checkpoint, Mapping) else None
    weights = checkpoint if weights is None else weights
    if (
        not isinstance(weights, Mapping)
        or not weights
        or not all(isinstance(v, torch.Tensor) for v in weights.values())
    ):
        held = sorted(map(str, checkpoint))[:8] if isinstance(checkpoint, Mapping) else type(checkpoint)
        raise CheckpointError(
            f"{ckpt_path}: neither a Lightning checkpoint nor a state dict of tensors (it holds {held}); use "
            "a checkpoint written by `cs231n fit`, or torch.save(model.state_dict(), PATH)"
        )
    if subcommand == "fit":
        raise CheckpointError(
            f"--ckpt_path {ckpt_path} is a plain state dict (weights only): `fit --ckpt_path` resumes a run "
            "and needs the optimizer state, epoch and step that only a checkpoint written by `cs231n fit` "
            "holds. Give such a .ckpt (or --ckpt_path last); a state dict serves validate, test and predict."
        )
    return dict(weights)


_SPHINX_ROLE = re.compile(r":(?:\w+:)?\w+:`(~?)([^`<]*?)(?:\s*<([^`>]+)>)?`")


def strip_sphinx_roles(text: str) -> str:
    """``text`` with Sphinx roles shown as plain names: ``:class:`~a.b.C``` -> ``C``,
    ``:func:`torch.no_grad``` -> ``torch.no_grad``, ``:paramref:`title <target>``` -> ``title``.

    Examples::

        >>> strip_sphinx_roles("as a :class:`datetime.timedelta`, see :paramref:`~a.Trainer.max_steps`")
        'as a datetime.timedelta, see max_steps'
    """

    def plain(match: re.Match[str]) -> str:
        tilde, name, target = match.groups()
        if target is not None and name.strip():
            return name.strip()
        name = (target or name).strip()
        return name.rsplit(".", 1)[-1] if tilde else name

    return _SPHINX_ROLE.sub(plain, text)


class CS231nHelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help formatter, with the Sphinx roles of docstrings (Lightning's and ours) shown as
    plain names (:func:`strip_sphinx_roles`)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return super()._split_lines(strip_sphinx_roles(text), width)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return super()._fill_text(strip_sphinx_roles(text), width, indent)


# Lines of jsonargparse's parser messages that describe its own machinery rather than the mistake.
_PARSER_NOISE = re.compile(
    r"(Does not validate against any of the Union subtypes|Subtypes: |Errors:$"
    r"|- Expected a <class 'NoneType'>|Given value type: |Given value: (NestedArg|Namespace)\()"
)


def condense_parser_message(message: str) -> str:
    r"""jsonargparse's multi-line parse error as one line: the full option key, then what is wrong.

    Examples::

        >>> condense_parser_message(
        ...     'Parser key "data":\n  Does not validate against any of the Union subtypes\n  Errors:\n'
        ...     "    - Problem with given class_path 'x.CIFAR10DataModule':\n"
        ...     '        Parser key "pixel_normalization":\n          Expected a Literal. Got value: foo\n'
        ...     "    - Expected a <class 'NoneType'>"
        ... )
        '--data.init_args.pixel_normalization: Expected a Literal. Got value: foo'
    """
    keys, details = [], []
    for line in message.splitlines():
        text = line.strip()
        key = re.fullmatch(r'(?:- )?Parser key "([^"]+)":', text)
        if key:
            keys.append(key.group(1))
        elif re.fullmatch(r"(?:- )?Problem with given class_path '[^']+':", text):
            keys.append("init_args")
        elif text and not _PARSER_NOISE.match(text):
            details.append(text.removeprefix("- "))
    where = f"--{'.'.join(keys)}: " if keys else ""
    return where + "; ".join(details)


class CS231nArgumentParser(LightningArgumentParser):
    """``LightningArgumentParser`` whose errors are two lines: the option and what is wrong
    (:func:`condense_parser_message`), then where to look; jsonargparse's full message (all of the usage,
    every union member's error) when :attr:`debug` is set (``cs231n --debug``). Its help, the classes'
    (``--model.help NAME``) included, shows no Sphinx roles (:class:`CS231nHelpFormatter`)."""

    debug: ClassVar[bool] = False

    def __init__(self, *args: Any, formatter_class: type = CS231nHelpFormatter, **kwargs: Any) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if self.debug or not self.exit_on_error:
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        sys.stderr.write(
            f"{prog}: error: {condense_parser_message(message)}\n"
            f"  (`{prog} --help` lists the options; add --debug for the parser's full message)\n"
        )
        raise SystemExit(2)


class CS231nCLI(LightningCLI):
    """LightningCLI with a best/last checkpoint callback under ``checkpoint``, and checkpoints that cannot
    silently override the user.

    With ``--ckpt_path``:
        - the arguments and config files the user gives (the default config files included) win; the
          checkpoint's saved hyper-parameters (model and data) fill in only what they leave unset
          (LightningCLI alone applies the checkpoint's on top of everything the user typed);
        - a checkpoint of another model or data class than the one given, or whose ``state_dict`` does not
          fit the model, is refused with a :class:`CheckpointMismatchError` naming both;
        - ``last`` is the newest ``last.ckpt`` of the runs of the config's experiment
          (``--checkpoint.dirpath``, or the run folders of the logger's ``save_dir/name``; not the folders
          below them, where ``cs231n tune`` trials and evaluations go), an error when there is none;
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
        silenced.

        Before parsing, every ``--config`` file must exist and be YAML (:class:`ConfigFileError`), and with
        ``--ckpt_path`` but no model in the arguments or config files, the model is the checkpoint's saved
        class and hyper-parameters (:meth:`_with_checkpoint_model`)."""
        if not isinstance(args, (dict, Namespace)):
            command_line = list(sys.argv[1:] if args is None else args)
            check_config_files(command_line)
            with_model = self._with_checkpoint_model(command_line)
            args = args if with_model == command_line else with_model
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            super().parse_arguments(parser, args)
        if isinstance(args, (dict, Namespace)):
            self.given = parser.parse_object(args, defaults=False)
            self.command_line: list[str] = []
        else:
            self.given = parser.parse_args(self._with_default_config_files(args), defaults=False)
            self.command_line = list(sys.argv[1:] if args is None else args)
        self._rename_deprecated_init_args(parser)
        self._name_unnamed_logger()

    def _with_checkpoint_model(self, args: list[str]) -> list[str]:
        """``args`` with ``--model`` set to the class and hyper-parameters saved in the ``--ckpt_path``
        checkpoint, when the arguments and config files name no model: ``cs231n validate --ckpt_path X``
        needs no ``--config``. Arguments typed after it still win. A path that is no checkpoint file fails
        here with the checkpoint's own message (:func:`~torch_cs231n.interop.checkpoint.load_checkpoint`)."""
        run = hasattr(self, "_subcommand_method_arguments")  # run=False: fit's options, no subcommand
        if not run or not args or args[0] not in LIGHTNING_SUBCOMMANDS:
            return args
        ckpt_path = option_values(args, ("--ckpt_path",))
        if not ckpt_path or ckpt_path[-1] == "last" or self._model_given(args):
            return args
        checkpoint = self._read_checkpoint(ckpt_path[-1])
        saved = dict(checkpoint.get("hyper_parameters") or {}) if isinstance(checkpoint, dict) else {}
        class_path = saved.pop("_class_path", None)
        if not class_path:
            return args
        init_args = {k: v for k, v in saved.items() if not k.startswith("_") and k != "num_classes"}
        for old, new in RENAMED_INIT_ARGS.get(class_path, {}).items():
            if old in init_args:  # a checkpoint written before the rename
                init_args.setdefault(new, init_args.pop(old))
        model = json.dumps({"class_path": class_path, "init_args": init_args}, default=str)
        return [args[0], f"--model={model}", *args[1:]]

    def _read_checkpoint(self, path: str) -> Any:
        """:func:`~torch_cs231n.interop.checkpoint.load_checkpoint` of ``path``, read and verified once per
        run: the model named from a checkpoint (no ``--config``) and the resumed state come from one file."""
        read = getattr(self, "_checkpoint_read", None)
        if read is None or read[0] != path:
            read = self._checkpoint_read = (path, load_checkpoint(path))
        return read[1]

    @staticmethod
    def _model_given(args: list[str]) -> bool:
        """Whether ``args`` or a config file they or :data:`DEFAULT_CONFIG_FILES` load set ``model``."""
        if any(arg == "--model" or arg.startswith(("--model=", "--model.")) for arg in args):
            return True
        defaults = [path for path in DEFAULT_CONFIG_FILES if Path(path).is_file()]
        for path in [*defaults, *option_values(args, ("--config", "-c"))]:
            loaded = load_yaml_file(path, "--config")
            if isinstance(loaded, dict) and ("model" in loaded or "model" in (loaded.get(args[0]) or {})):
                return True
        return False

    def _name_unnamed_logger(self) -> None:
        """A logger left with Lightning's default name ``lightning_logs`` (no ``--config``: the base config
        names none) is named after the model class, so that such a run logs to
        ``lightning_logs/FullyConnectedNet/version_N`` rather than ``lightning_logs/lightning_logs/``."""
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        logger = (config.get("trainer") or Namespace()).get("logger")
        model = config.get("model")
        init_args = logger.get("init_args") if isinstance(logger, Namespace) else None
        if init_args is None or init_args.get("name") != "lightning_logs" or not isinstance(model, Namespace):
            return
        given = (self.given.get(subcommand) if subcommand else self.given) or Namespace()
        try:
            typed = given.get("trainer.logger.init_args.name")
        except (KeyError, AttributeError, TypeError):  # a logger list or `false` among the given values
            typed = None
        if typed is None and model.get("class_path"):
            init_args["name"] = model.class_path.rsplit(".", 1)[-1]

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
        hold the new names.

        The old and the new key both set: the one typed on the command line wins over one from a config file
        (so ``--data.init_args.normalization none`` works with every shipped config, which use the new
        ``pixel_normalization``); both on the command line, or both only in config files, is a parser
        error."""
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
                    old_typed, new_typed = (self._typed(key, name) for name in (old, new))
                    if old_typed == new_typed:
                        parser.error(
                            f"--{key}.init_args.{old} is the deprecated old name of --{key}.init_args.{new}: "
                            f"give only --{key}.init_args.{new}"
                        )
                    if new_typed:  # the command line's new key wins over a config's old one
                        warnings.warn(
                            f"{key}.init_args.{old} in a config file is deprecated and will be removed in "
                            f"the next release (overridden here by --{key}.init_args.{new}); rename it to "
                            f"{new}",
                            FutureWarning,
                            stacklevel=2,
                        )
                        init_args[old] = None
                        continue
                warnings.warn(
                    f"--{key}.init_args.{old} is deprecated and will be removed in the next release; use "
                    f"'--{key}.init_args.{new}' instead",
                    FutureWarning,
                    stacklevel=2,
                )
                init_args[new], init_args[old] = init_args[old], None

    def _typed(self, key: str, name: str) -> bool:
        """Whether ``--{key}.init_args.{name}`` (or its short form ``--{key}.{name}``) is on the command
        line (not only in a config file)."""
        options = {f"--{key}.init_args.{name}", f"--{key}.{name}"}
        return any(arg.split("=", 1)[0] in options for arg in self.command_line)

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
            ckpt_path = str(find_last_checkpoint(self._last_checkpoint_search(config)))
            config["ckpt_path"] = ckpt_path
            print(f"cs231n {subcommand}: --ckpt_path last is {ckpt_path}", flush=True)
        self.checkpoint = self._read_checkpoint(ckpt_path)
        if not is_lightning_checkpoint(self.checkpoint):
            self.checkpoint = {"state_dict": plain_state_dict(self.checkpoint, ckpt_path, subcommand)}
            self.plain_weights = True
            return
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
    def _last_checkpoint_search(config: Namespace) -> list[tuple[Path, str]]:
        """Where the runs of ``config``'s experiment write their ``last.ckpt``, as ``(folder, glob pattern)``
        pairs of a fixed depth (:func:`~lightning_modules.checkpointing.find_last_checkpoint`):
        ``--checkpoint.dirpath``; else the loggers' ``save_dir/name`` folders, one run (version) folder
        deep; else (no logger) ``default_root_dir``. Runs of other experiments, in folders below
        (``cs231n tune`` trials, evaluations, a logger name that continues this one), do not match."""
        if config.get("checkpoint") and config.checkpoint.get("dirpath"):
            return [(Path(config.checkpoint.dirpath), "last.ckpt")]
        loggers = config.trainer.get("logger")
        loggers = loggers if isinstance(loggers, list) else [loggers]
        search = []
        for logger in loggers:
            init_args = logger.get("init_args") if isinstance(logger, (dict, Namespace)) else None
            if init_args is not None and init_args.get("save_dir") is not None:
                folder = Path(init_args.get("save_dir")) / str(init_args.get("name") or "lightning_logs")
                search.append((folder, "*/checkpoints/last.ckpt"))
        return search or [(Path(config.trainer.get("default_root_dir") or "."), "checkpoints/last.ckpt")]

    def before_instantiate_classes(self) -> None:
        """``validate`` / ``test`` / ``predict`` log into ``NAME/SUBCOMMAND/version_N`` of the logger's
        ``save_dir``: their own folder, not a new run folder among the experiment's training runs (which
        ``--ckpt_path last`` and ``cs231n plot`` read)."""
        if self.subcommand in EVALUATION_SUBCOMMANDS:
            trainer = self.config[self.subcommand].trainer
            trainer.logger = evaluation_logger_config(trainer.get("logger"), self.subcommand)

    def _run_subcommand(self, subcommand: str) -> None:
        """Run it as LightningCLI does; when it fails, remove the run folders it created that hold no result
        (:func:`remove_failed_run_folders`) before the error goes on."""
        folders = [
            Path(logger.log_dir) for logger in self.trainer.loggers if getattr(logger, "log_dir", None)
        ]
        new = [folder for folder in dict.fromkeys(folders) if not folder.exists()]
        created = {parent for folder in new for parent in folder.parents if not parent.exists()}
        try:
            super()._run_subcommand(subcommand)
        except BaseException:
            if self.trainer.is_global_zero:
                remove_failed_run_folders(new, subcommand in EVALUATION_SUBCOMMANDS, created)
            raise

    def after_instantiate_classes(self) -> None:
        """Refuse a ``model.init_args.num_classes`` other than the data module's (which the model gets), and
        a checkpoint whose ``state_dict`` does not fit the instantiated model."""
        self._check_linked_num_classes()
        checkpoint = getattr(self, "checkpoint", None)
        if checkpoint is None or "state_dict" not in checkpoint:
            return
        self._check_resumed_optimizer(checkpoint)
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
        if getattr(self, "plain_weights", False):
            self.model.load_state_dict(checkpoint["state_dict"])

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        """The trainer's arguments; a plain state dict was loaded into the model already, so the trainer
        gets no ``ckpt_path`` to restore (it holds no Lightning state)."""
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if getattr(self, "plain_weights", False):
            kwargs["ckpt_path"] = None
        return kwargs

    def instantiate_classes(self) -> None:
        """Instantiate as LightningCLI does; a ``ValueError`` a model or data class raises for its arguments
        becomes an :class:`ArgumentValueError` naming the class (jsonargparse wraps it in its own
        "Does not validate against any of the Union subtypes" error); other errors propagate unchanged."""
        try:
            super().instantiate_classes()
        except ValueError as err:
            cause = err
            while cause.__cause__ is not None:
                cause = cause.__cause__
            if isinstance(cause, USER_ERRORS):  # e.g. a file the class was given: its own message
                raise cause from None
            if cause is err or not isinstance(cause, ValueError):
                raise
            found = re.search(r"class_path='([\w.]+)'", str(err))
            where = f"{found.group(1).rsplit('.', 1)[-1]}: " if found else ""
            raise ArgumentValueError(f"{where}{cause}") from err

    def _check_resumed_optimizer(self, checkpoint: dict[str, Any]) -> None:
        """``fit --ckpt_path``: refuse optimizer or scheduler hyper-parameters other than the checkpoint's run
        trained with (e.g. a new ``--model.init_args.optimizer.init_args.lr``).

        Lightning restores the optimizer and scheduler state whole when it resumes, so such a value would be
        ignored while the run's ``config.yaml`` records it. Applying it over the restored state instead
        would break the exact resume, and with a scheduler "lr" would be ambiguous (the first lr of the
        schedule, or the one from now on?): a new value is a new run."""
        if self.subcommand != "fit" or not checkpoint.get("optimizer_states"):
            return
        try:
            configured = self.model.configure_optimizers()
        except Exception:  # a module that needs its trainer to configure its optimizer: nothing to compare
            return
        changes = optimizer_changes(checkpoint, *configured_optimizers(configured))
        if changes:
            ckpt_path = self.config[self.subcommand].ckpt_path
            raise CheckpointMismatchError(
                "\n".join(
                    [
                        f"--ckpt_path {ckpt_path}: the arguments configure the optimizer otherwise than the "
                        "run being resumed, whose optimizer and scheduler state a resume restores whole "
                        "(the arguments would be ignored):",
                        *(f"  {change}" for change in changes),
                        "Drop the option (--model.init_args.optimizer.init_args.NAME or "
                        "--model.init_args.lr_scheduler...) to resume the run as it was, or start a new run "
                        "without --ckpt_path to train with it.",
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


def evaluation_logger_config(logger: Any, subcommand: str) -> Any:
    """The parsed ``trainer.logger`` of an evaluation run: each logger given with a ``name`` (a
    ``class_path``/``init_args`` entry, alone or in a list) gets the name ``NAME/SUBCOMMAND`` (``NAME``: its
    name, or Lightning's default ``lightning_logs``); anything else is returned as it is."""
    if isinstance(logger, list):
        return [evaluation_logger_config(entry, subcommand) for entry in logger]
    init_args = logger.get("init_args") if isinstance(logger, (dict, Namespace)) else None
    if init_args is not None and "name" in init_args:
        init_args["name"] = f"{init_args['name'] or 'lightning_logs'}/{subcommand}"
    return logger


# What a run folder holds before the run has produced anything: the config, the hyper-parameters and
# TensorBoard's event files.
RUN_FOLDER_PREAMBLE = ("config.yaml", "hparams.yaml", "events.out.tfevents.*")


def remove_failed_run_folders(folders: Sequence[Path], evaluation: bool, created: set[Path]) -> None:
    """Remove the run ``folders`` of a failed run (those it created), then those of their parents that it
    created too and that this left empty (e.g. an evaluation's ``NAME/SUBCOMMAND`` folder).

    Args:
        folders: the run folders the run created.
        evaluation: a failed ``validate`` / ``test`` / ``predict``: its folders go whole (partial metrics
            of a failed evaluation are no result); a failed ``fit``'s only while they hold nothing but
            :data:`RUN_FOLDER_PREAMBLE` (its checkpoints and metrics so far stay).
        created: the parent folders that did not exist before the run.

    Examples::

        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> run = root / "exp" / "validate" / "version_0"
        >>> run.mkdir(parents=True)
        >>> (run / "events.out.tfevents.1.host.0").touch()
        >>> remove_failed_run_folders([run], True, {root / "exp", root / "exp" / "validate"})
        >>> list(root.iterdir())
        []
    """
    for folder in folders:
        if not folder.is_dir():
            continue
        files = [path for path in folder.rglob("*") if not path.is_dir()]
        if not evaluation and not all(
            any(p.match(pattern) for pattern in RUN_FOLDER_PREAMBLE) for p in files
        ):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        parent = folder.parent
        while parent in created and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent


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
    for module in PROJECT_CLASS_MODULES:  # their classes answer to short names
        importlib.import_module(module)
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
        parser_class=CS231nArgumentParser,
        args=None if args is None else list(args),
        run=run,
    )


def default_config_kwargs(run: bool) -> dict[str, Any]:
    """LightningCLI ``parser_kwargs`` loading :data:`DEFAULT_CONFIG_FILES`: per subcommand when the CLI
    runs one (the program named ``cs231n`` however it was started), else (``run=False``: ``fit``'s options
    alone) for the one parser."""
    files = {"default_config_files": list(DEFAULT_CONFIG_FILES)}
    return {"prog": "cs231n", **{name: files for name in LIGHTNING_SUBCOMMANDS}} if run else files

