"""``cs231n tune``: Optuna studies of tiny fits, the best config, re-runs, pruning, search-space errors."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from cifar_fixtures import tiny_fit_args, write_npz
from optuna.trial import TrialState

from lightning_modules.cli import run_lightning
from lightning_modules.dispatcher import main
from lightning_modules.tune import SearchSpaceError, tune

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "two_layer_default.yaml"
SEARCH = ROOT / "configs" / "search" / "two_layer.yaml"
LR = "model.init_args.optimizer.init_args.lr"


def trial_args(npz: Path, save_dir: Path) -> list[str]:
    """fit options shrinking every trial to 2 batches of generated data, 1 epoch, on CPU."""
    return tiny_fit_args(npz, f"--trainer.logger.init_args.save_dir={save_dir}")


def lookup(config: dict, key: str):
    for part in key.split("."):
        config = config[part]
    return config


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    return write_npz(tmp_path_factory.mktemp("data") / "cifar_small.npz", n_train=64)


@pytest.fixture(scope="module")
def studied(npz, tmp_path_factory) -> tuple[optuna.Study, Path, Path]:
    """`cs231n tune` of 3 tiny trials: (study, output folder, storage URL)."""
    tmp = tmp_path_factory.mktemp("tune")
    storage = f"sqlite:///{tmp / 'study.db'}"
    argv = ["tune", f"--config={CONFIG}", f"--search={SEARCH}", "--n-trials=3", f"--storage={storage}"]
    argv += ["--study-name=tiny", f"--output={tmp / 'out' / 'best.yaml'}", *trial_args(npz, tmp / "logs")]
    assert main(argv) == 0
    return optuna.load_study(study_name="tiny", storage=storage), tmp / "out", tmp / "logs"


def test_every_trial_is_a_fit_in_its_own_folder(studied):
    study, _, logs = studied
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3, f"trials {study.trials}"
    folders = [Path(t.user_attrs["log_dir"]) for t in study.trials]
    expected = [logs / "tune" / "tiny" / f"trial{t.number:03d}" for t in study.trials]
    assert folders == expected, f"trial log dirs {folders}, expected {expected}"
    for trial, folder in zip(study.trials, folders):
        saved = yaml.safe_load((folder / "config.yaml").read_text())
        assert lookup(saved, LR) == trial.params[LR], f"{folder} did not train with trial {trial.number}'s lr"
        assert saved["seed_everything"] == 0, "every trial must run with the config's seed"
        assert 0.0 <= trial.value <= 1.0 and trial.intermediate_values == {0: trial.value}


def test_best_config_is_complete_and_reproduces_the_best_trial(studied, npz, tmp_path):
    study, out, _ = studied
    best_yaml = out / "best.yaml"
    saved = yaml.safe_load(best_yaml.read_text())
    for key, value in study.best_params.items():
        expected = json.loads(value) if key.endswith("hidden_dims") else value
        assert lookup(saved, key) == expected, f"best.yaml has {key}={lookup(saved, key)}, best trial {value}"
    logger = saved["trainer"]["logger"]["init_args"]
    assert (logger["name"], logger["version"]) == ("two_layer_default", None), (
        f"best.yaml must log as the config's experiment, not into a trial's folder: {logger}"
    )
    limits = {key: saved["trainer"][key] for key in ("max_epochs", "limit_train_batches", "accelerator")}
    assert limits == {"max_epochs": 10, "limit_train_batches": None, "accelerator": "auto"}, (
        f"best.yaml must hold the config's trainer, not the fit options given to tune: {limits}"
    )
    header = best_yaml.read_text().split("\nseed_everything")[0]
    assert "#   --trainer.limit_train_batches=2\n" in header and "seed_everything: 0" in header, (
        f"the header must list the fit options not copied and the seed:\n{header}"
    )
    cli = run_lightning(["fit", f"--config={best_yaml}", *trial_args(npz, tmp_path)])
    assert cli.model.hparams.reg == study.best_params["model.init_args.reg"]
    assert cli.trainer.callback_metrics["val/acc"].item() == pytest.approx(study.best_value), (
        "fit --config best.yaml does not reproduce the best trial's val/acc"
    )
    for name in ("history.png", "importances.png"):
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000, f"{name} is not a PNG figure"


def test_rerun_continues_the_study_and_records_pruned_trials(npz, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    common = dict(storage=storage, study_name="again", output=tmp_path / "best.yaml")
    fit_args = trial_args(npz, tmp_path / "logs")
    tune(CONFIG, SEARCH, 1, fit_args=fit_args, **common)
    assert (tmp_path / "history.png").is_file() and not (tmp_path / "importances.png").exists(), (
        "one completed trial: a history, no importances (they need 2)"
    )
    study = tune(
        CONFIG, SEARCH, 1, fit_args=fit_args, pruner=optuna.pruners.ThresholdPruner(lower=2.0), **common
    )
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED], (
        f"the re-run must add a trial, pruned at val/acc < 2: {study.trials}"
    )
    assert study.trials[1].intermediate_values.keys() == {0}, "the pruned trial reported no val/acc"
    assert f"trial #{study.trials[0].number} " in (tmp_path / "best.yaml").read_text()


def test_ckpt_path_last_never_resumes_a_trial(studied, npz):
    """The trials are runs of the study, not of the config's experiment: with only trials on disk, ``fit
    --ckpt_path last`` of the config finds nothing to resume (it used to continue a trial)."""
    _, _, logs = studied
    assert len(list(logs.rglob("last.ckpt"))) == 3, "each trial must write a last.ckpt"
    with pytest.raises(FileNotFoundError, match=r"--ckpt_path last: no last\.ckpt"):
        run_lightning(["fit", f"--config={CONFIG}", *trial_args(npz, logs), "--ckpt_path=last"])


@pytest.mark.parametrize("n_trials", ["0", "-2"])
def test_n_trials_must_be_positive(n_trials, npz, tmp_path, capsys):
    argv = ["tune", f"--config={CONFIG}", f"--search={SEARCH}", f"--n-trials={n_trials}"]
    assert main([*argv, f"--output={tmp_path / 'best.yaml'}", *trial_args(npz, tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--n-trials must be a positive number of trials to add to the study, got {n_trials}" in err, err
    assert not list(tmp_path.iterdir()), "a refused --n-trials must not start a study"


@pytest.mark.parametrize(
    ("spec", "key", "problem"),
    [
        ({LR: {"type": "gauss", "low": 1, "high": 2}}, LR, "unknown distribution type 'gauss'"),
        ({LR: {"type": "float", "low": 1e-4}}, LR, "needs high"),
        ({LR: {"type": "int", "high": 3}}, LR, "needs low"),
        ({LR: {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, LR, "low"),
        ({LR: {"type": "categorical", "choices": []}}, LR, "non-empty list of choices"),
        (
            {"model.init_args.learning_rate": {"type": "float", "low": 0.1, "high": 1}},
            "learning_rate",
            "not an",
        ),
        (
            {"model.init_args.optimizer": {"type": "categorical", "choices": [1]}},
            "optimizer",
            "group of options",
        ),
    ],
    ids=["type", "no_high", "no_low", "log_of_0", "no_choices", "not_in_config", "group"],
)
def test_bad_search_space_is_a_clear_error_naming_the_key(spec, key, problem, npz, tmp_path, capsys):
    search = tmp_path / "bad.yaml"
    search.write_text(yaml.safe_dump(spec))
    argv = ["tune", f"--config={CONFIG}", f"--search={search}", f"--output={tmp_path / 'out' / 'best.yaml'}"]
    assert main([*argv, *trial_args(npz, tmp_path / "logs")]) == 2
    err = capsys.readouterr().err
    assert "cs231n tune: error:" in err and key in err and problem in err and str(search) in err, err
    assert not (tmp_path / "out").exists(), "a bad search space must fail before the study starts"
    with pytest.raises(SearchSpaceError, match=key):
        tune(CONFIG, search, 1, output=tmp_path / "out" / "best.yaml", fit_args=trial_args(npz, tmp_path))


def test_help_lists_tune(capsys):
    assert main(["--help"]) == 0
    assert "  tune " in capsys.readouterr().out, "`cs231n --help` does not list tune"
    with pytest.raises(SystemExit) as done:
        main(["tune", "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and all(
        f"--{o}" in out for o in ("search", "n-trials", "storage", "study-name")
    )
