"""``cs231n tune``: hyperparameter search over a config with Optuna, one ``fit`` per trial.

    cs231n tune --config configs/two_layer_default.yaml --search configs/search/two_layer.yaml \\
        --n-trials 16 --study-name two_layer --storage sqlite:///lightning_logs/tune/two_layer/study.db \\
        --output lightning_logs/tune/two_layer/best.yaml --trainer.max_epochs 3

Every option that is not one of ``tune``'s is a ``fit`` option, given to every trial. A trial is the
``fit`` of ``--config`` with those options and the trial's values as ``--key=value`` overrides, built by
the project's CLI (:func:`lightning_modules.cli.run_lightning`), so it trains, checkpoints and logs as
``cs231n fit`` does, into its own folder ``SAVE_DIR/tune/STUDY/trialNNN`` (logger name ``tune/STUDY``,
version ``trialNNN``: not a run of the config's experiment, which ``--ckpt_path last`` would resume;
:func:`trial_folder_args`). Every trial runs with
the same ``seed_everything`` (the config's; a random one is drawn once for the whole study), so trials
differ only by the hyperparameters. The objective, maximised, is the best ``val/acc`` of the trial's
epochs: the validation split the data module carves from the training data (``val_size``), never a test
split. Trials are reported to Optuna after every validation and pruned on ``val/acc`` by
``optuna_integration.PyTorchLightningPruningCallback`` (it drives ``lightning.pytorch``) with a
``MedianPruner`` (no pruning before 3 trials have completed, nor in the first epoch).

The search space is a YAML file mapping options (as on the ``fit`` command line, without ``--``) to
distributions::

    model.init_args.optimizer.init_args.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    model.init_args.dropout_keep_ratio: {type: float, low: 0.5, high: 1.0, step: 0.05}
    data.init_args.batch_size: {type: int, low: 64, high: 512, log: true}
    model.init_args.hidden_dims: {type: categorical, choices: [[100], [200], [400]]}

``float`` and ``int`` take ``low``, ``high`` (inclusive), optionally ``log: true`` or a ``step``;
``categorical`` takes a non-empty list of ``choices`` (lists such as ``hidden_dims`` are allowed). Every key
must be an option of the config (defaults included); anything else is a :class:`SearchSpaceError` naming
the key.

The study lives in ``--storage`` (an SQLAlchemy URL; default an SQLite file next to ``--output``) under
``--study-name`` (default: the search file's name); running the command again with the same name adds
``--n-trials`` trials to it. Several processes of one machine can share the SQLite file; several machines
run trials of one study at once when they share a database server (e.g. ``--storage
postgresql://user:pass@host/db``, with its SQLAlchemy driver installed), each with its own
``--sampler-seed`` (or none: the TPE sampler is unseeded by default). At the end
the best trial so far becomes ``--output``, a complete config that ``cs231n fit --config BEST.yaml``
runs: the config with the best trial's values (and its seed) filled in; the ``fit`` options given to tune
(how long the trials ran, on which data) are listed in its header, not copied (:func:`write_best_config`).
Next to it: ``history.png`` (Optuna's optimisation history) and ``importances.png`` (parameter importances,
drawn once at least 2 trials have completed and a parameter took different values).
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import optuna
from jsonargparse import Namespace
from lightning.pytorch import Callback, LightningModule, Trainer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback
from sqlalchemy.engine import make_url

from .cli import DEFAULT_CONFIG_FILES, CS231nCLI, load_yaml_file, run_lightning

MONITOR = "val/acc"
FIELDS: dict[str, set[str]] = {
    "float": {"low", "high", "log", "step"},
    "int": {"low", "high", "log", "step"},
    "categorical": {"choices"},
}
EXAMPLE = "{type: float, low: 1.0e-4, high: 1.0e-2, log: true}"


class TuneError(ValueError):
    """``cs231n tune`` cannot go on: its arguments or the study's state do not allow it."""


class SearchSpaceError(TuneError):
    """The search-space file is malformed or names an option the config does not have."""


# ----------------------------------------------------------------------------------------- search space
def load_search_space(path: str | Path) -> dict[str, BaseDistribution]:
    """Read and check a search-space file (format in the module doc).

    Args:
        path: the YAML file, mapping option keys to distribution specs.

    Returns:
        Option key -> Optuna distribution, in file order. Categorical choices that are not scalars
        (e.g. ``[100]``) are held as their JSON text, which the command line parses back.

    Raises:
        ConfigFileError: (:mod:`lightning_modules.cli`) the file does not exist or is not YAML.
        SearchSpaceError: naming the file and the key, for a spec that is not a mapping, an unknown
            ``type`` or field, a missing ``low``/``high``/``choices``, or values Optuna refuses.
    """
    spec = load_yaml_file(path, "--search")
    if not isinstance(spec, dict) or not spec:
        raise SearchSpaceError(
            f"{path}: expected a mapping of option keys to distributions, e.g. lr: {EXAMPLE}"
        )
    return {str(key): _distribution(str(key), value, path) for key, value in spec.items()}


def _distribution(key: str, spec: Any, path: str | Path) -> BaseDistribution:
    """One checked distribution; errors name ``path`` and ``key``."""

    def fail(problem: str) -> SearchSpaceError:
        return SearchSpaceError(f"{path}: {key}: {problem}")

    if not isinstance(spec, dict):
        raise fail(f"expected a distribution like {EXAMPLE}, got {spec!r}")
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in FIELDS:
        raise fail(f"unknown distribution type {kind!r} (expected one of {', '.join(FIELDS)})")
    unknown = sorted(set(spec) - FIELDS[kind] - {"type"})
    if unknown:
        raise fail(f"unknown fields {unknown} for type {kind} (allowed: {', '.join(sorted(FIELDS[kind]))})")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise fail(f"type categorical needs a non-empty list of choices, got {choices!r}")
        return CategoricalDistribution([c if _is_scalar(c) else json.dumps(c) for c in choices])
    missing = [name for name in ("low", "high") if name not in spec]
    if missing:
        raise fail(f"type {kind} needs {' and '.join(missing)}")
    low, high = (_number(spec[name], kind, fail, name) for name in ("low", "high"))
    step = None if spec.get("step") is None else _number(spec["step"], kind, fail, "step")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise fail(f"log must be true or false, got {log!r}")
    try:
        if kind == "float":
            return FloatDistribution(low, high, log=log, step=step)
        return IntDistribution(low, high, log=log, step=1 if step is None else step)
    except ValueError as err:
        raise fail(str(err)) from err


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _number(value: Any, kind: str, fail: Callable[[str], SearchSpaceError], name: str) -> float | int:
    """``value`` as the ``kind``'s number (YAML reads ``1e-4`` as text: floats accept numeric text)."""
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(f"{name} of type int must be an integer, got {value!r}")
        return value
    if not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    raise fail(f"{name} of type float must be a number, got {value!r}")


def check_keys(space: dict[str, BaseDistribution], config: Namespace, path: str | Path, source: str) -> None:
    """Every key of ``space`` must be one value of the parsed ``config`` (defaults included).

    Args:
        space: the search space (:func:`load_search_space`).
        config: the parsed ``fit`` config.
        path: the search-space file, for the message.
        source: what ``config`` was parsed from, for the message.

    Raises:
        SearchSpaceError: naming a key that is not an option (with close matches), or a group of options.
    """
    options = list(config.keys())
    for key in space:
        if key not in config:
            close = difflib.get_close_matches(key, options, n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise SearchSpaceError(f"{path}: {key} is not an option of {source}{hint}")
        if isinstance(config[key], Namespace):
            leaves = list(config[key].keys())  # a Namespace is not iterable
            inner = ", ".join(f"{key}.{name}" for name in leaves)
            raise SearchSpaceError(f"{path}: {key} is a group of options ({inner}), not one value")


def overrides(params: dict[str, Any]) -> list[str]:
    """Trial values as ``fit`` options: ``{"a.b": 0.1, "c": "[100]"} -> ["--a.b=0.1", "--c=[100]"]``.

    Args:
        params: option key -> value (Optuna's ``trial.params``).

    Returns:
        One ``--key=value`` argument per entry; non-text values in JSON (``null``, ``true``, ``1e-05``).
    """
    return [
        f"--{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in params.items()
    ]


def _suggest(trial: optuna.Trial, key: str, distribution: BaseDistribution) -> Any:
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            key, distribution.low, distribution.high, log=distribution.log, step=distribution.step
        )
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            key, distribution.low, distribution.high, log=distribution.log, step=distribution.step
        )
    return trial.suggest_categorical(key, distribution.choices)


# ---------------------------------------------------------------------------------------------- trials
class BestMetric(Callback):
    """Keeps the best (largest) value of ``monitor`` over the validations of a fit (sanity check excluded).

    Args:
        monitor: the logged metric, e.g. ``val/acc``.
    """

    def __init__(self, monitor: str = MONITOR) -> None:
        super().__init__()
        self.monitor = monitor
        self.best: float | None = None

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        self.best = float(value) if self.best is None else max(self.best, float(value))


def _build(args: list[str]) -> CS231nCLI:
    """The ``fit`` of ``args``, built but not run; a parse error (jsonargparse exits) becomes a TuneError."""
    try:
        return run_lightning(args, run=False)
    except SystemExit as err:
        raise TuneError(f"the fit options do not parse (see the message above): {' '.join(args)}") from err


def _sqlite_folder(storage: str) -> None:
    """Create the folder of an SQLite storage file (SQLite creates the file, not its folder)."""
    url = make_url(storage)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def tune(
    config: str | Path,
    search_space: str | Path,
    n_trials: int,
    storage: str | None = None,
    study_name: str | None = None,
    output: str | Path | None = None,
    fit_args: Sequence[str] = (),
    pruner: optuna.pruners.BasePruner | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> optuna.Study:
    """Run ``n_trials`` trials of a study (created, or continued when it exists), then write the best
    config and the figures (module doc).

    Args:
        config: the base ``fit`` config (YAML).
        search_space: the search-space file (:func:`load_search_space`).
        n_trials: trials to add to the study in this call.
        storage: Optuna storage URL; ``None``: ``sqlite:///`` a ``study.db`` next to ``output``.
        study_name: the study to create or continue; ``None``: the search file's stem.
        output: where to write the best config; ``None``: ``lightning_logs/tune/STUDY/best.yaml``. The
            figures go into its folder.
        fit_args: ``fit`` options for every trial, e.g. ``["--trainer.max_epochs=3"]``.
        pruner: Optuna pruner; ``None``: ``MedianPruner(n_startup_trials=3, n_warmup_steps=1)``.
        sampler: Optuna sampler; ``None``: Optuna's default (TPE, unseeded).

    Returns:
        The study, with all its trials (also those of earlier calls and of other machines).

    Raises:
        SearchSpaceError: a malformed search space, or a key that is not an option of the config.
        TuneError: the options do not parse, a trial logs no ``val/acc``, or no trial has completed.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise TuneError(
            f"--n-trials must be a positive number of trials to add to the study, got {n_trials!r}"
        )
    space = load_search_space(search_space)
    base = _build(["--config", str(config), *fit_args])
    check_keys(space, base.config, search_space, " ".join([str(config), *fit_args]))
    seed = base.config.get("seed_everything")  # an int: LightningCLI draws one for `true`
    seed = 0 if seed is False or seed is None else int(seed)
    common = ["--config", str(config), *fit_args, f"--seed_everything={seed}"]

    study_name = study_name or Path(search_space).stem
    output = Path(output) if output is not None else Path("lightning_logs", "tune", study_name, "best.yaml")
    output.parent.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{output.parent / 'study.db'}"
    _sqlite_folder(storage)

    def objective(trial: optuna.Trial) -> float:
        params = {key: _suggest(trial, key, distribution) for key, distribution in space.items()}
        cli = _build([*common, *trial_folder_args(base.config, study_name, trial.number), *overrides(params)])
        best = BestMetric(MONITOR)
        cli.trainer.callbacks.extend([best, PyTorchLightningPruningCallback(trial, monitor=MONITOR)])
        trial.set_user_attr("log_dir", str(cli.trainer.log_dir))
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        if best.best is None:
            raise TuneError(
                f"trial {trial.number} logged no {MONITOR}: the data module needs a validation split"
            )
        return best.best

    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction="maximize",
        load_if_exists=True,
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        sampler=sampler,
    )
    study.optimize(objective, n_trials=n_trials)

    folder = output.parent
    figures = save_figures(study, folder)
    states = [trial.state for trial in study.trials]
    counts = ", ".join(f"{states.count(s)} {s.name.lower()}" for s in TrialState if states.count(s))
    where = make_url(storage).render_as_string(hide_password=True)
    print(f"cs231n tune: study {study_name!r} in {where}: {len(states)} trials ({counts})", flush=True)
    if TrialState.COMPLETE not in states:
        raise TuneError(f"no trial of study {study_name!r} has completed: no best config to write")
    write_best_config(study, config, seed, fit_args, output, where)
    best = study.best_trial
    print(f"best trial #{best.number}: {MONITOR} {best.value:.4f} ({best.user_attrs.get('log_dir')})")
    for key, value in best.params.items():
        print(f"  {key}: {value}")
    print(f"wrote {', '.join(str(p) for p in [output, *figures])}", flush=True)
    return study


def trial_folder_args(config: Namespace, study_name: str, number: int) -> list[str]:
    """``fit`` options sending trial ``number`` into its own folder ``ROOT/tune/STUDY/trialNNN``, away from
    the config's own runs (where ``--ckpt_path last`` looks for them, one run folder below
    ``save_dir/name``).

    Args:
        config: the parsed ``fit`` config of the study.
        study_name: the study.
        number: the trial's number.

    Returns:
        With a logger that has ``save_dir``, ``name`` and ``version`` (CSV, TensorBoard): its name
        ``tune/STUDY`` and version ``trialNNN``, ``ROOT`` being its ``save_dir``; without one:
        ``--trainer.default_root_dir`` (``ROOT`` the config's ``default_root_dir``). Plus
        ``--checkpoint.dirpath`` into the trial's folder when the config sets one (the trials would share it).

    Examples::

        >>> trial_folder_args(Namespace({"trainer.default_root_dir": "runs"}), "lr", 3)
        ['--trainer.default_root_dir=runs/tune/lr/trial003']
    """
    name, version = f"tune/{study_name}", f"trial{number:03d}"
    keys = [f"trainer.logger.init_args.{option}" for option in ("save_dir", "name", "version")]
    if all(key in config for key in keys):
        folder = Path(config[keys[0]] or ".", name, version)
        args = [f"--{keys[1]}={name}", f"--{keys[2]}={version}"]
    else:
        folder = Path(config.get("trainer.default_root_dir") or ".", name, version)
        args = [f"--trainer.default_root_dir={folder}"]
    if config.get("checkpoint.dirpath"):
        args.append(f"--checkpoint.dirpath={folder / 'checkpoints'}")
    return args


def write_best_config(
    study: optuna.Study,
    config: str | Path,
    seed: int,
    fit_args: Sequence[str],
    output: Path,
    storage: str,
) -> Path:
    """Write the complete config of the study's best trial: ``config`` (over the default config files)
    with ``seed`` and the trial's searched values, under a comment header that says what else it holds.

    The ``fit`` options given to the trials (``fit_args``: how long and where the search ran, e.g.
    ``--trainer.max_epochs 3``) are not copied: the header lists them, to add to reproduce the trial.

    Args:
        study: a study with at least one completed trial.
        config: the base config.
        seed: the ``seed_everything`` every trial ran with.
        fit_args: the ``fit`` options given to every trial.
        output: the file to write.
        storage: the storage (password hidden), for the header.

    Returns:
        ``output``.
    """
    best = study.best_trial
    cli = _build(["--config", str(config), f"--seed_everything={seed}", *overrides(best.params)])
    defaults = [path for path in DEFAULT_CONFIG_FILES if Path(path).is_file()]
    header = [
        f"# cs231n tune: trial #{best.number} of study {study.study_name!r} ({storage}),",
        f"# the best {MONITOR} of {len(study.trials)} trials: {best.value:.4f}. Its values:",
        *(f"#   {key}: {value}" for key, value in best.params.items()),
        f"# over {config} (with the defaults of {', '.join(defaults) or 'no default config file'}),",
        f"# and seed_everything: {seed}, the seed of every trial.",
        "# Not copied: the fit options given to tune"
        + (", which the trials ran with (add them to reproduce the trial):" if fit_args else " (none)."),
        *(f"#   {option}" for option in fit_args),
        "# Run: cs231n fit --config THIS_FILE",
    ]
    output.write_text("\n".join(header) + "\n" + cli.parser.dump(cli.config, skip_none=False))
    return output


def save_figures(study: optuna.Study, folder: Path) -> list[Path]:
    """Optuna's optimisation history (``history.png``) and parameter importances (``importances.png``;
    skipped with a note below 2 completed trials or when no parameter took two values).

    Args:
        study: the study.
        folder: where to write the PNGs.

    Returns:
        The files written.
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    values = [(key, repr(value)) for trial in complete for key, value in trial.params.items()]
    varied = len(set(values)) > len({key for key, _ in values})  # some parameter took two values
    summary = f"study {study.study_name!r}, {len(complete)} of {len(study.trials)} trials completed"
    plots = {
        "history.png": (optuna.visualization.matplotlib.plot_optimization_history, "optimisation history")
    }
    if len(complete) >= 2 and varied:
        plots["importances.png"] = (optuna.visualization.matplotlib.plot_param_importances, "importances")
    else:
        (folder / "importances.png").unlink(missing_ok=True)  # an earlier call's would be stale
        print(f"cs231n tune: no importances.png: needs 2 completed trials with different values ({summary})")
    written = []
    for name, (plot, title) in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            ax = plot(study, target_name=MONITOR)
        for loc in ("left", "center", "right"):
            ax.set_title("", loc=loc)
        ax.set_title(f"{MONITOR} {title}: {summary}")
        if name == "importances.png":  # shorter labels: model.init_args.reg -> model.reg
            labels = [label.get_text().replace(".init_args.", ".") for label in ax.get_yticklabels()]
            ax.set_yticks(ax.get_yticks(), labels)
        ax.figure.set_size_inches(10, 5)
        ax.figure.savefig(folder / name, dpi=100, bbox_inches="tight")
        plt.close(ax.figure)
        written.append(folder / name)
    return written


# ------------------------------------------------------------------------------------- command line
def main(argv: Sequence[str]) -> int:
    """``cs231n tune`` (module doc); returns the exit status.

    Args:
        argv: the arguments after ``tune``; those that are not ``tune``'s go to every trial's ``fit``.

    Returns:
        0 on success, 2 on a :class:`TuneError` (printed).
    """
    parser = argparse.ArgumentParser(
        prog="cs231n tune",
        description="Hyperparameter search with Optuna: one `cs231n fit` per trial, maximising the best "
        f"{MONITOR} of its epochs; pruned on {MONITOR}; writes the best trial's complete config.",
        epilog="Any other option is a fit option given to every trial, e.g. --trainer.max_epochs 3.",
        allow_abbrev=False,
    )
    parser.add_argument("--config", required=True, metavar="CONFIG", help="the base fit config (YAML)")
    parser.add_argument(
        "--search",
        required=True,
        metavar="SPACE.yaml",
        help="search space (YAML): option key -> distribution",
    )
    parser.add_argument(
        "--n-trials", type=int, default=20, metavar="N", help="trials to add to the study (default 20)"
    )
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage URL (default: sqlite:/// a study.db next to --output)",
    )
    parser.add_argument(
        "--study-name", metavar="NAME", help="study to create or continue (default: the search file's name)"
    )
    parser.add_argument(
        "--output",
        metavar="BEST.yaml",
        help="the best config to write (default: lightning_logs/tune/STUDY/best.yaml)",
    )
    parser.add_argument(
        "--sampler-seed",
        type=int,
        metavar="N",
        help="seed of Optuna's TPE sampler (default: unseeded; give each machine of a shared study its own)",
    )
    args, fit_args = parser.parse_known_args(list(argv))
    sampler = None if args.sampler_seed is None else optuna.samplers.TPESampler(seed=args.sampler_seed)
    try:
        tune(
            args.config,
            args.search,
            args.n_trials,
            args.storage,
            args.study_name,
            args.output,
            fit_args,
            sampler=sampler,
        )
    except TuneError as err:
        print(f"cs231n tune: error: {err}", file=sys.stderr, flush=True)
        return 2
    return 0
