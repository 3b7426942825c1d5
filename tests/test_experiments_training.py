"""The training experiments (``cs231n experiment init-scale | optimizers | batchnorm | dropout``) and their
shared loop, on a tiny generated ``.npz`` in the layout of ``cifar10_train.npz``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_fixtures import write_npz

from torch_cs231n.experiments import main
from torch_cs231n.experiments._training import Splits, load_cifar10, train_fc_net
from torch_cs231n.nets.optim import SGD, Adam

N_IMAGES, N_VAL = 70, 20


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_npz(tmp_path_factory.mktemp("data") / "tiny.npz", n_train=N_IMAGES, seed=3)


@pytest.fixture(scope="module")
def data(npz: Path) -> Splits:
    return load_cifar10(npz, num_train=20, num_val=N_VAL)


def numbers(value: object) -> list[float]:
    """Every int/float in a JSON value (bools excluded)."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def accuracies(value: object, key: str = "") -> list[float]:
    """Every number under a key containing ``acc``."""
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in accuracies(v, k)]
    if isinstance(value, list):
        return [x for v in value for x in accuracies(v, key)]
    return [value] if "acc" in key and isinstance(value, float) else []


def run_cli(name: str, npz: Path, out: Path, *options: str) -> dict:
    """Run ``cs231n experiment NAME`` on ``npz``; check the exit status, the files and the numbers."""
    args = [
        name,
        "--data",
        str(npz),
        "--num-val",
        str(N_VAL),
        "--out",
        str(out),
        "--json",
        str(out / "x.json"),
    ]
    assert main([*args, *options]) == 0, f"cs231n experiment {name} failed"
    result = json.loads((out / "x.json").read_text())
    stem = name.replace("-", "_")
    assert result == json.loads((out / f"{stem}.json").read_text()), "--json and --out must write the same"
    assert result["data"] == str(npz) and result["num_val"] == N_VAL, "the JSON names its data"
    values = numbers(result)
    assert values and all(math.isfinite(v) for v in values), f"{name}: non-finite numbers in the JSON"
    accs = accuracies(result)
    assert accs and all(0 <= a <= 1 for a in accs), f"{name}: accuracies outside [0, 1]"
    return result


def pngs(out: Path) -> set[str]:
    return {p.name for p in out.glob("*.png") if p.stat().st_size > 1000}


# -------------------------------------------------------------------------------------- data and loop
def test_load_cifar10_takes_the_first_and_last_images_minus_the_mean_image(npz: Path) -> None:
    raw = np.load(npz)
    x, y = raw["x_train"].astype(np.float64), raw["y_train"]
    splits = load_cifar10(npz, num_train=15, num_val=N_VAL)
    mean = x[: N_IMAGES - N_VAL].mean(0)  # the training pool's mean image, on the 0..255 scale
    want_train = torch.from_numpy(x[:15] - mean).permute(0, 3, 1, 2).float()
    want_val = torch.from_numpy(x[-N_VAL:] - mean).permute(0, 3, 1, 2).float()
    assert splits.x_train.shape == (15, 3, 32, 32) and splits.x_val.shape == (N_VAL, 3, 32, 32), "NCHW"
    torch.testing.assert_close(splits.x_train, want_train, msg="training images: first 15, minus the mean")
    torch.testing.assert_close(splits.x_val, want_val, msg="validation images: the last ones, minus the mean")
    assert splits.y_train.tolist() == y[:15].tolist() and splits.y_val.tolist() == y[-N_VAL:].tolist()
    with pytest.raises(ValueError, match=r"num_train=51 \(--num-train\).*num_val=20 \(--num-val\)"):
        load_cifar10(npz, num_train=51, num_val=N_VAL)  # would overlap the validation images


def test_shared_loop_overfits_20_images_and_is_seeded(data: Splits) -> None:
    kwargs = {"optimizer": Adam, "lr": 1e-3, "weight_scale": 1e-3, "epochs": 15, "batch_size": 10}
    history = train_fc_net(data, [50], **kwargs)
    assert history["train_acc"][-1] == 1.0, f"20 images must be memorised, train acc {history['train_acc']}"
    assert len(history["loss"]) == 30 and len(history["val_acc"]) == 15, (
        "2 updates and 1 evaluation per epoch"
    )
    assert history["loss"][-1] < history["loss"][0] / 5, f"loss {history['loss'][0]} -> {history['loss'][-1]}"
    assert not history["diverged"]
    state = torch.random.get_rng_state()
    assert train_fc_net(data, [50], **kwargs) == history, "the same seed must give the same run"
    assert torch.equal(torch.random.get_rng_state(), state), "the caller's random state must be untouched"
    other = train_fc_net(data, [50], **kwargs, seed=1)
    assert other["loss"] != history["loss"], "another seed, another run"
    builtin = train_fc_net(data, [50], **kwargs, ops="builtin")
    np.testing.assert_allclose(builtin["loss"], history["loss"], atol=1e-4, err_msg="manual vs builtin ops")


def test_a_diverging_run_stops_with_finite_numbers(data: Splits) -> None:
    history = train_fc_net(data, [50, 50], optimizer=SGD, lr=1e3, weight_scale=1.0, epochs=5, batch_size=10)
    assert history["diverged"], "lr 1e3 on weight scale 1 must blow up"
    assert len(history["train_acc"]) < 5, "a diverged run stops"
    assert len(history["train_acc"]) >= 1, "with the accuracy of its last weights"
    assert all(math.isfinite(v) for v in history["loss"]), "only finite losses are recorded"


# ---------------------------------------------------------------------------------------- experiments
def test_init_scale(npz: Path, tmp_path: Path) -> None:
    result = run_cli(
        "init-scale", npz, tmp_path, "--num-train", "20", "--epochs", "12", "--batch-size", "10",
        "--weight-scales", "1e-4", "3e-2", "--learning-rates", "1e-3", "3e-2",
    )  # fmt: skip
    assert pngs(tmp_path) == {"init_scale.png"}
    assert [net["num_layers"] for net in result["nets"]] == [3, 5]
    assert [net["hidden_dims"] for net in result["nets"]] == [[100, 100], [100] * 4]
    for net in result["nets"]:
        assert np.shape(net["train_acc"]) == np.shape(net["diverged"]) == (2, 2), "weight scales x lrs"
    three, five = (np.array(net["train_acc"]) for net in result["nets"])
    assert three.max() == 1.0, f"the 3-layer net must overfit 20 images somewhere on the grid: {three}"
    assert five[0].max() <= 0.3, f"a 5-layer net at weight scale 1e-4 must not learn: {five[0]}"


def test_optimizers(npz: Path, tmp_path: Path) -> None:
    result = run_cli(
        "optimizers", npz, tmp_path, "--num-train", "20", "--epochs", "2", "--batch-size", "10",
        "--rules", "sgd", "adagrad", "adam", "--lr", "sgd=1e-3", "--update-steps", "200",
    )  # fmt: skip
    assert pngs(tmp_path) == {"optimizers.png", "optimizers_update_size.png"}
    assert [(run["rule"], run["lr"]) for run in result["runs"]] == [
        ("sgd", 1e-3),
        ("adagrad", 1e-3),
        ("adam", 1e-3),
    ]
    for run in result["runs"]:
        assert len(run["loss"]) == 4 and len(run["train_acc"]) == len(run["val_acc"]) == 2, run["rule"]
    update = result["update_size"]
    assert update["param"] == "fc1.weight" and [r["rule"] for r in update["runs"]] == ["adagrad", "adam"]
    adagrad = update["runs"][0]["update_ratio"]
    assert len(adagrad) == 200 and min(adagrad) > 0
    assert np.mean(adagrad[-20:]) < np.mean(adagrad[:20]) / 3, "Adagrad's steps shrink as its cache grows"


def test_batchnorm(npz: Path, tmp_path: Path) -> None:
    result = run_cli(
        "batchnorm", npz, tmp_path, "--num-train", "40", "--epochs", "10", "--batch-size", "10",
        "--weight-scales", "1e-4", "1e-2", "--batch-sizes", "5", "20",
    )  # fmt: skip
    assert pngs(tmp_path) == {
        "batchnorm_weight_scale.png",
        "batchnorm_batch_size.png",
        "batchnorm_layernorm.png",
    }
    sweep = result["weight_scale_sweep"]
    assert [run["normalization"] for run in sweep["runs"]] == [None, "batchnorm"]
    for run in sweep["runs"]:
        assert all(len(run[key]) == 2 for key in ("best_train_acc", "best_val_acc", "final_loss", "diverged"))
    plain, batchnorm = sweep["runs"]
    assert plain["final_loss"][0] == pytest.approx(math.log(10), abs=0.01), "1e-4: the signal vanishes"
    assert batchnorm["final_loss"][0] < 2.0, "batch norm restores it: the loss falls from log(10)"
    by_batch = result["batch_size_study"]
    pairs = [(run["normalization"], run["batch_size"]) for run in by_batch["runs"]]
    assert pairs == [(n, b) for n in (None, "batchnorm", "layernorm") for b in (5, 20)]
    assert all(len(run["train_acc"]) == len(run["val_acc"]) == 10 for run in by_batch["runs"])


def test_dropout(npz: Path, tmp_path: Path) -> None:
    options = ("--num-train", "40", "--epochs", "8", "--batch-size", "20", "--hidden", "100")
    result = run_cli("dropout", npz, tmp_path, *options)
    assert pngs(tmp_path) == {"dropout.png"}
    assert [run["keep_ratio"] for run in result["runs"]] == [1.0, 0.25] and result["hidden_dims"] == [100]
    plain, dropout = result["runs"]
    assert len(plain["train_acc"]) == len(dropout["val_acc"]) == 8
    assert plain["train_acc"][-1] == 1.0, "without dropout 40 images are memorised"
    assert sum(dropout["train_acc"]) < sum(plain["train_acc"]), "dropout slows the memorising"


def test_missing_data_names_the_path_and_the_option(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("init-scale", "optimizers", "batchnorm", "dropout"):
        assert main([name, "--data", "nowhere/cifar.npz", "--out", "figs"]) == 2, f"{name}: exit status 2"
        err = capsys.readouterr().err
        assert f"cs231n experiment {name}: error: --data nowhere/cifar.npz: no such file" in err, err
        assert str(tmp_path / "nowhere" / "cifar.npz") in err, f"{name}: the absolute path looked for"
        assert not (tmp_path / "figs").exists(), f"{name}: nothing written"


def test_too_many_training_images_is_a_clear_error(npz: Path, capsys) -> None:
    assert main(["dropout", "--data", str(npz), "--num-train", "60"]) == 2
    assert "num_train=60 (--num-train)" in capsys.readouterr().err
