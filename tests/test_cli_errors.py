"""The ``cs231n`` CLI on a newcomer's mistakes and papercuts (issue 21): short errors that name the file or
option, plain state dicts and folders as ``--ckpt_path``, short class names, renamed keys on the command
line, no inherited noise."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from cifar_fixtures import tiny_fit_args, write_npz

from lightning_modules.cli import ArgumentValueError, run_lightning
from lightning_modules.dispatcher import main, quiet_inherited_noise
from torch_cs231n.data import CIFAR10DataError, load_npz

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
TWO_LAYER = CONFIG_DIR / "two_layer_default.yaml"


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    return write_npz(tmp_path_factory.mktemp("data") / "cifar_small.npz", n_train=64, n_test=16)


def tiny(npz: Path, save_dir: Path, *extra: str) -> list[str]:
    """A few batches of generated data on CPU, logging under ``save_dir``."""
    return tiny_fit_args(npz, f"--trainer.logger.init_args.save_dir={save_dir}", *extra)


@pytest.fixture(scope="module")
def fitted(npz, tmp_path_factory):
    """A tiny two_layer_default fit (2 steps, fewer than base.yaml's log_every_n_steps 20): its CLI."""
    return run_lightning(["fit", f"--config={TWO_LAYER}", *tiny(npz, tmp_path_factory.mktemp("logs"))])


def status(argv: list[str]) -> int:
    """The exit status of ``cs231n ARGV``: ``main``'s return value, or the parser's ``SystemExit`` code."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def short_error(capsys) -> str:
    """stderr of a failed command, checked to be the one-line message and its hint, no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) <= 2 and "Traceback" not in err, f"expected a one- or two-line error, got:\n{err}"
    return err


# --------------------------------------------------------- item 7: files the project must name or accept
def test_a_plain_state_dict_validates_like_its_checkpoint(fitted, npz, tmp_path, capsys):
    """The project's own message promises that a plain state dict works as --ckpt_path: validate, test and
    predict load it into the model; fit (which resumes a run) refuses it, saying why."""
    state_dict = tmp_path / "weights.pt"
    torch.save(fitted.model.state_dict(), state_dict)
    args = [f"--config={TWO_LAYER}", *tiny(npz, tmp_path), f"--ckpt_path={state_dict}"]
    cli = run_lightning(["validate", *args])
    expected = fitted.trainer.callback_metrics["val/loss"].item()
    got = cli.trainer.callback_metrics["val/loss"].item()
    assert got == pytest.approx(expected, rel=1e-6), f"val/loss {got} with the state dict, {expected} fitted"
    assert main(["fit", *args]) == 2
    assert "plain state dict" in short_error(capsys), "fit must say why a state dict cannot resume"


def test_an_empty_predict_image_is_named(fitted, npz, tmp_path, capsys):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    ckpt = fitted.trainer.checkpoint_callback.last_model_path
    args = [*tiny(npz, tmp_path), f"--ckpt_path={ckpt}", f"--data.init_args.predict_images={empty}"]
    assert main(["predict", *args]) == 2
    err = short_error(capsys)
    assert "empty.png" in err and "empty (0 bytes)" in err, f"the empty image is not named: {err}"


def test_bad_yaml_and_missing_files_are_named_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: [max_epochs\n")
    assert main(["fit", f"--config={bad}"]) == 2
    err = short_error(capsys)
    assert f"--config {bad}: not valid YAML at line 2" in err, f"the bad config is not named: {err}"
    assert main(["fit", "--config", str(tmp_path / "nowhere.yaml")]) == 2
    assert "nowhere.yaml: the file does not exist" in short_error(capsys)
    assert main(["tune", f"--config={TWO_LAYER}", "--search", str(tmp_path / "space.yaml")]) == 2
    assert "--search " in (err := short_error(capsys)) and "space.yaml: the file does not exist" in err, err
    assert main(["tune", f"--config={TWO_LAYER}", "--search", str(bad)]) == 2
    assert f"--search {bad}: not valid YAML" in short_error(capsys)


def test_a_file_that_is_no_npz_does_not_suggest_allow_pickle(tmp_path):
    text = tmp_path / "cifar.npz"
    text.write_text("not an archive\n")
    with pytest.raises(CIFAR10DataError) as err:
        load_npz(text)
    message = str(err.value)
    assert "cifar.npz" in message and "allow_pickle" not in message, f"unsafe or unnamed: {message}"


# ------------------------------------------------------------------ item 8: short errors, --debug, bugs
def test_argument_errors_are_the_projects_message_in_two_lines(npz, tmp_path, capsys):
    args = [f"--config={TWO_LAYER}", *tiny(npz, tmp_path)]
    assert main(["fit", *args, "--data.init_args.val_size=-1"]) == 2
    err = short_error(capsys)
    assert "CIFAR10DataModule: val_size must be an int >= 0, got -1" in err and "--debug" in err, err
    assert status(["fit", *args, "--data.init_args.pixel_normalization=foo"]) == 2
    err = short_error(capsys)
    assert "--data.init_args.pixel_normalization" in err and "foo" in err and "NoneType" not in err, err
    assert main(["fit", *args, "--data.init_args.val_size=100"]) == 2  # a data error, raised in setup
    assert "val_size=100 plus holdout=0 must be smaller than the 64 training images" in short_error(capsys)


def test_debug_shows_the_traceback_and_bugs_keep_theirs(npz, tmp_path, monkeypatch, capsys):
    args = [f"--config={TWO_LAYER}", *tiny(npz, tmp_path), "--data.init_args.val_size=-1"]
    with pytest.raises(ArgumentValueError, match="val_size must be an int >= 0"):
        main(["--debug", "fit", *args])
    with pytest.raises(SystemExit):  # the parser's own full message, with the usage
        main(["fit", *args, "--data.init_args.pixel_normalization=foo", "--debug"])
    assert "Does not validate against any of the Union subtypes" in capsys.readouterr().err

    def bug(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr("lightning_modules.cli.run_lightning", bug)
    with pytest.raises(KeyError, match="a bug"):
        main(["fit", *args])
    assert main(["--help"]) == 0 and "--debug" in capsys.readouterr().out, "--help does not document --debug"


# -------------------------------------------------------------------- item 9: plot a short fit run
def test_plot_draws_a_fit_shorter_than_the_logging_interval(fitted, tmp_path, capsys):
    log_dir = Path(fitted.trainer.log_dir)
    assert "train/loss_step" not in (log_dir / "metrics.csv").read_text(), "the run logged per-step loss"
    assert main(["plot", str(log_dir), "--out", str(tmp_path)]) == 0, capsys.readouterr()
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG"), "no loss figure written"


# ---------------------------------------------------------------------------- item 11: less noise
def test_validate_prints_none_of_the_inherited_noise(fitted, npz, tmp_path, capfd, recwarn):
    ckpt = fitted.trainer.checkpoint_callback.last_model_path
    assert main(["validate", f"--config={TWO_LAYER}", *tiny(npz, tmp_path), f"--ckpt_path={ckpt}"]) == 0
    printed = capfd.readouterr().err + "\n".join(str(w.message) for w in recwarn)
    for noise in ("💡 Tip", "LeafSpec", "The dirpath has changed"):
        assert noise not in printed, f"{noise!r} is still printed:\n{printed}"


@pytest.mark.parametrize(
    ("logger_name", "noise"),
    [
        ("torch.utils.cpp_extension", "No CUDA runtime is found, using CUDA_HOME='/usr/local/cuda'"),
        ("lightning.pytorch.utilities.rank_zero", "💡 Tip: For seamless cloud logging, try litlogger"),
    ],
    ids=["cuda_runtime", "lightning_tip"],
)
def test_inherited_log_lines_are_dropped_and_other_lines_kept(logger_name, noise, caplog):
    """Bench and compile load torch's C++ builder, which notes a CUDA folder on a machine without a GPU;
    every Trainer advertises a product. Both are dropped; the same loggers' other messages are kept."""
    quiet_inherited_noise()
    logger = logging.getLogger(logger_name)
    with caplog.at_level(logging.INFO, logger=logger_name):
        logger.warning(noise)
        logger.warning("a real warning")
    assert [r.getMessage() for r in caplog.records] == ["a real warning"], caplog.records


def test_help_imports_neither_torch_nor_lightning():
    """`cs231n --help` and `cs231n plot --help` answer without loading torch or Lightning (seconds)."""
    probe = (
        "import sys\n"
        "from lightning_modules.dispatcher import main\n"
        "assert main(['--help']) == 0\n"
        "try:\n    main(['plot', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'lightning', 'matplotlib') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", f"imported for --help: {done.stdout[-300:]}"


# ------------------------------------------------------------------- item 13: the renamed data key
def test_the_old_data_key_on_the_command_line_wins_over_a_configs_new_key(npz, tmp_path):
    """Every shipped config sets ``pixel_normalization``; ``--data.init_args.normalization`` typed on the
    command line overrides it, with the FutureWarning naming the new key."""
    args = [f"--config={TWO_LAYER}", *tiny(npz, tmp_path, "--data.init_args.normalization=none")]
    with pytest.warns(FutureWarning, match=r"--data\.init_args\.pixel_normalization"):
        cli = run_lightning(args, run=False)
    assert cli.datamodule.pixel_normalization == "none", (
        f"the config's mean_image won over the typed old key: {cli.datamodule.pixel_normalization}"
    )
    assert cli.datamodule.hparams.pixel_normalization == "none", "the hyper-parameters record another value"


def test_the_new_key_on_the_command_line_wins_over_a_configs_old_key(npz, tmp_path):
    old = yaml.safe_load(TWO_LAYER.read_text())
    old["data"]["init_args"]["normalization"] = old["data"]["init_args"].pop("pixel_normalization")
    config = tmp_path / "old_keys.yaml"
    config.write_text(yaml.safe_dump(old))
    args = [f"--config={config}", *tiny(npz, tmp_path, "--data.init_args.pixel_normalization=none")]
    with pytest.warns(FutureWarning, match=r"normalization in a config file is deprecated"):
        cli = run_lightning(args, run=False)
    assert cli.datamodule.pixel_normalization == "none", "the config's old key won over the typed new key"


def test_the_old_and_the_new_key_both_typed_is_an_error(npz, tmp_path):
    args = [
        f"--config={TWO_LAYER}",
        *tiny(npz, tmp_path, "--data.init_args.normalization=none", "--data.pixel_normalization=none"),
    ]
    with pytest.raises(SystemExit):
        run_lightning(args, run=False)


# ------------------------------------------------- item 14: short names, checkpoint-only runs, help text
def test_short_class_names_and_a_config_less_fit_logs_under_the_model_name(npz, tmp_path):
    args = ["--model=FullyConnectedNet", "--model.init_args.hidden_dims=[8]", "--data=CIFAR10DataModule"]
    cli = run_lightning(["fit", *args, *tiny(npz, tmp_path)])
    assert type(cli.model).__name__ == "FullyConnectedNet" and cli.trainer.global_step == 2
    run = Path(cli.trainer.log_dir).relative_to(tmp_path)
    assert run.parts[0] == "FullyConnectedNet", f"a config-less fit logs to {run}, not FullyConnectedNet/"


def test_validate_from_a_checkpoint_alone(fitted, npz, tmp_path):
    """No --config: the model is the checkpoint's class with its saved hyper-parameters."""
    ckpt = fitted.trainer.checkpoint_callback.last_model_path
    cli = run_lightning(["validate", *tiny(npz, tmp_path), f"--ckpt_path={ckpt}"])
    hparams = cli.model.hparams
    assert hparams.hidden_dims == [100] and hparams.weight_scale == 1e-3, f"not the checkpoint's: {hparams}"
    expected = fitted.trainer.callback_metrics["val/loss"].item()
    assert cli.trainer.callback_metrics["val/loss"].item() == pytest.approx(expected, rel=1e-6)
    assert Path(cli.trainer.log_dir).relative_to(tmp_path).parts[0] == "FullyConnectedNet"


def test_a_folder_as_ckpt_path_is_called_a_folder(fitted, tmp_path, capsys):
    run_dir = Path(fitted.trainer.checkpoint_callback.last_model_path).parent
    for config in ([], [f"--config={TWO_LAYER}"]):
        assert main(["validate", *config, f"--ckpt_path={run_dir}"]) == 2
        err = short_error(capsys)
        assert "is a folder, not a checkpoint file" in err and "last.ckpt" in err, err


@pytest.mark.parametrize("what", ["fit", "model", "data"])
def test_help_shows_no_sphinx_roles(what, capsys):
    option = {
        "fit": "--help",
        "model": "--model.help=FullyConnectedNet",
        "data": "--data.help=CIFAR10DataModule",
    }
    assert status(["fit", option[what]]) == 0
    out = capsys.readouterr().out
    roles = re.findall(r":[a-z]+:`[^`]*`", out)
    assert len(out) > 500 and not roles, f"{len(roles)} raw Sphinx roles in the help, e.g. {roles[:3]}"
