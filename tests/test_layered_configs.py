"""The layered configs: configs/base.yaml under every experiment config, the data location in one place, an
ignored configs/local.yaml over the base, and what a checkpoint may fill in."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cifar_fixtures import write_npz

import lightning_modules.cli as cli
from lightning_modules.cli import run_lightning
from lightning_modules.dispatcher import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DATA = "../shared/data/cifar10_train.npz"
FC, CONV, TRANSFER = (f"lightning_modules.{m}" for m in ("fc_net", "conv_net", "transfer"))

# config -> key values of its complete config: each as written in the flat config before the layering.
EXPECTED: dict[str, dict[str, object]] = {
    "two_layer_default": {
        "model.class_path": f"{FC}.FullyConnectedNet",
        "model.init_args.hidden_dims": [100],
        "model.init_args.optimizer.init_args.lr": 1e-3,
        "trainer.max_epochs": 10,
        "data.init_args.batch_size": 100,
        "data.init_args.pixel_normalization": "mean_image",
    },
    "two_layer_tuned": {
        "model.init_args.hidden_dims": [512],
        "model.init_args.lr_scheduler.init_args.lr_decay": 0.9,
        "trainer.max_epochs": 10,
        "data.init_args.batch_size": 256,
    },
    "fc_net_tuned": {
        "model.class_path": f"{FC}.FullyConnectedNet",
        "model.init_args.hidden_dims": [1024, 512, 256],
        "model.init_args.dropout_keep_ratio": 0.7,
        "model.init_args.optimizer.init_args.lr": 1e-3,
        "model.init_args.lr_scheduler.init_args.T_max": 80,
        "trainer.max_epochs": 80,
        "data.init_args.batch_size": 256,
        "data.init_args.augment": True,
        "data.init_args.crop_padding": 0,
    },
    "conv_net": {
        "model.class_path": f"{CONV}.ThreeLayerConvNet",
        "model.init_args.hidden_dim": 500,
        "trainer.max_epochs": 1,
        "data.init_args.batch_size": 50,
    },
    "convnet_challenge": {
        "model.class_path": f"{CONV}.ConvNet",
        "model.init_args.channels": [32, 64, 128],
        "model.init_args.optimizer.init_args.lr": 2e-3,
        "trainer.max_epochs": 10,
        "trainer.log_every_n_steps": 50,
        "data.init_args.batch_size": 128,
    },
    "transfer_efficientnet_lite0": {
        "model.class_path": f"{TRANSFER}.TransferLearning",
        "model.init_args.resolution": 96,
        "trainer.precision": "bf16-mixed",
        "trainer.max_epochs": 3,
        "trainer.log_every_n_steps": 50,
        "data.init_args.batch_size": 64,
        "data.init_args.pixel_normalization": "none",
    },
    "transfer_feature_extraction_cpu": {
        "model.init_args.finetuning": "feature_extraction",
        "trainer.accelerator": "cpu",
        "trainer.max_epochs": 2,
        "data.init_args.augment": False,
    },
    "transfer_resnet18": {
        "model.init_args.backbone": "resnet18",
        "trainer.accelerator": "gpu",
        "trainer.devices": 1,
        "trainer.precision": "16-mixed",
        "trainer.max_epochs": 5,
        "trainer.log_every_n_steps": 50,
        "data.init_args.num_workers": 4,
    },
}
# What every config keeps from the base unless it says otherwise.
BASE = {
    "seed_everything": 0,
    "trainer.accelerator": "auto",
    "trainer.log_every_n_steps": 20,
    "trainer.logger.class_path": "lightning.pytorch.loggers.CSVLogger",
    "trainer.logger.init_args.save_dir": "lightning_logs",
    "data.class_path": "lightning_modules.data.CIFAR10DataModule",
    "data.init_args.data_dir": "data/cifar10",
    "data.init_args.npz_path": DATA,
    "data.init_args.download": True,
    "data.init_args.val_size": 1000,
}


def lookup(config: dict, key: str) -> object:
    for part in key.split("."):
        config = config[part]
    return config


def resolved(capsys, *argv: str) -> dict:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--print_config"])
    assert exit_.value.code in (0, None), f"{argv} does not parse"
    return yaml.safe_load(capsys.readouterr().out)


def test_every_experiment_config_is_listed() -> None:
    experiments = {p.stem for p in CONFIGS.glob("*.yaml")} - {"base", "local"}
    assert experiments == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_layered_config_resolves_to_the_complete_config(name: str, capsys, monkeypatch) -> None:
    monkeypatch.setattr(cli, "DEFAULT_CONFIG_FILES", (str(CONFIGS / "base.yaml"),))  # no local.yaml here
    config = resolved(capsys, "fit", "--config", str(CONFIGS / f"{name}.yaml"))
    expected = {**BASE, "trainer.logger.init_args.name": name, **EXPECTED[name]}
    for key, value in expected.items():
        assert lookup(config, key) == value, f"{name}: {key} is {lookup(config, key)!r}, expected {value!r}"


def test_experiment_configs_do_not_repeat_the_base() -> None:
    """The data location (and the rest of the base) is written once, in configs/base.yaml."""
    for path in CONFIGS.glob("*.yaml"):
        if path.stem in EXPECTED:
            text = path.read_text().split("\n")
            body = "\n".join(line for line in text if not line.lstrip().startswith("#"))
            for key in ("npz_path", "data_dir", "download", "val_size", "seed_everything", "save_dir"):
                assert f"{key}:" not in body, f"{path.name} repeats {key} of base.yaml"


def test_local_config_overrides_the_base_and_the_experiment_wins(tmp_path, capsys, monkeypatch) -> None:
    local = tmp_path / "local.yaml"
    local.write_text("data:\n  init_args:\n    npz_path: /elsewhere/c.npz\n    batch_size: 7\n")
    monkeypatch.setattr(cli, "DEFAULT_CONFIG_FILES", (str(CONFIGS / "base.yaml"), str(local)))
    monkeypatch.chdir(tmp_path)  # the base is found wherever cs231n runs
    config = resolved(capsys, "validate", "--config", str(CONFIGS / "fc_net_tuned.yaml"))
    assert lookup(config, "data.init_args.npz_path") == "/elsewhere/c.npz"
    assert lookup(config, "data.init_args.batch_size") == 256, (
        "the experiment config must win over local.yaml"
    )
    assert lookup(config, "data.init_args.val_size") == 1000 and config["seed_everything"] == 0


def test_without_a_config_the_base_still_applies(capsys) -> None:
    config = resolved(capsys, "fit", "--model=lightning_modules.fc_net.FullyConnectedNet")
    assert lookup(config, "data.init_args.npz_path") == DATA and config["seed_everything"] == 0


def test_checkpoint_fills_only_what_neither_the_user_nor_the_base_sets(tmp_path, monkeypatch) -> None:
    """``validate --config C --ckpt_path X``: typed options win, then the config and the base (the data
    location of this machine, not the checkpoint's), and the checkpoint fills what is left."""
    trained_on = write_npz(tmp_path / "trained.npz", n_train=64)
    here = write_npz(tmp_path / "here.npz", n_train=64)
    local = tmp_path / "local.yaml"
    local.write_text(f"data:\n  init_args:\n    npz_path: {here}\n    val_size: 16\n")
    monkeypatch.setattr(cli, "DEFAULT_CONFIG_FILES", (str(CONFIGS / "base.yaml"), str(local)))
    common = [
        f"--config={CONFIGS / 'fc_net_tuned.yaml'}",
        "--model.init_args.hidden_dims=[8]",
        "--data.init_args.batch_size=8",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.logger.init_args.save_dir={tmp_path}",
    ]
    fit = run_lightning(
        ["fit", *common, f"--data.init_args.npz_path={trained_on}", "--data.init_args.seed=5",
         "--model.init_args.ops=builtin", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
         "--trainer.limit_val_batches=1"]
    )  # fmt: skip
    ckpt = fit.trainer.checkpoint_callback.last_model_path
    validated = run_lightning(["validate", *common, "--trainer.limit_val_batches=1", f"--ckpt_path={ckpt}"])
    data = validated.datamodule.hparams
    assert data.npz_path == str(here), "the checkpoint's data path replaced this machine's (local.yaml)"
    assert data.seed == 5, "a value that only the checkpoint sets was not filled in"
    assert validated.model.hparams.ops == "manual", "the config's ops lost to the checkpoint's"
    assert validated.model.hparams.hidden_dims == [8]
