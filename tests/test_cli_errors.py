"""The ``cs231n`` CLI on a newcomer's mistakes and papercuts (issue 21): short errors that name the file or
option, plain state dicts and folders as ``--ckpt_path``, short class names, renamed keys on the command
line, no inherited noise."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cifar_fixtures import tiny_fit_args, write_npz

from lightning_modules.cli import main, run_lightning

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
TWO_LAYER = CONFIG_DIR / "two_layer_default.yaml"


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    return write_npz(tmp_path_factory.mktemp("data") / "cifar_small.npz", n_train=64, n_test=16)


def tiny(npz: Path, save_dir: Path, *extra: str) -> list[str]:
    """A few batches of generated data on CPU, logging under ``save_dir``."""
    return tiny_fit_args(npz, f"--trainer.logger.init_args.save_dir={save_dir}", *extra)


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
