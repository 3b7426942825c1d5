"""``cs231n predict``: predictions.csv for the test split or for image files, from a checkpoint."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from cifar_fixtures import tiny_fit_args, write_npz
from torch.utils.data import DataLoader, TensorDataset
from torchvision.io import encode_jpeg, encode_png, write_file

from lightning_modules.classifier import ImageClassifier
from lightning_modules.cli import run_lightning
from lightning_modules.data import CLASSES, CIFAR10DataModule
from lightning_modules.fc_net import FullyConnectedNet
from lightning_modules.prediction import COLUMNS, PredictionWriter, class_probabilities, interleave_ranks
from lightning_modules.transfer import TransferLearning

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "two_layer_tuned.yaml"
MOUSE = REPO / ".." / "shared" / "data" / "mouse.jpg"


def _args(npz: Path, save_dir: Path, *extra: str) -> list[str]:
    """A tiny, quiet CPU run of ``CONFIG`` on generated data, logging under ``save_dir``."""
    logging = f"--trainer.logger.init_args.save_dir={save_dir}"
    return [f"--config={CONFIG}", *tiny_fit_args(npz, logging, *extra)]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[Path, Path]:
    """(npz with 64 training and 16 test images, the last checkpoint of a tiny fit on it)."""
    folder = tmp_path_factory.mktemp("predict")
    npz = write_npz(folder / "cifar_small.npz", n_train=64, n_test=16)
    cli = run_lightning(["fit", *_args(npz, folder / "logs")])
    return npz, Path(cli.trainer.checkpoint_callback.last_model_path)


def _images(folder: Path) -> list[Path]:
    """A grey 50x40 PNG and a colour 33x41 JPEG."""
    g = torch.Generator().manual_seed(0)
    grey, colour = folder / "grey.png", folder / "colour.jpg"
    write_file(str(grey), encode_png(torch.randint(0, 256, (1, 40, 50), dtype=torch.uint8, generator=g)))
    write_file(str(colour), encode_jpeg(torch.randint(0, 256, (3, 41, 33), dtype=torch.uint8, generator=g)))
    return [grey, colour]


def _read(path: Path, labelled: bool = True) -> list[dict[str, str]]:
    """The rows of predictions.csv, after checking its header (``label`` last when ``labelled``) and every
    row's class and probability."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    columns = (*COLUMNS, "label") if labelled else COLUMNS
    assert tuple(reader.fieldnames or ()) == columns, (
        f"{path}: columns {reader.fieldnames}, expected {columns}"
    )
    for row in rows:
        class_id, probability = int(row["class_id"]), float(row["probability"])
        assert 0 <= class_id < 10 and row["class_name"] == CLASSES[class_id], f"bad class in {row}"
        # the predicted class is the most probable of 10: at least 1/10
        assert 0.1 <= probability <= 1.0, f"probability of the predicted class out of [0.1, 1]: {row}"
    return rows


@pytest.mark.parametrize("returns", ["class indices", "probabilities", "scores"])
def test_predict_writes_one_row_per_test_image(returns, fitted, tmp_path, monkeypatch, capsys):
    """Whatever ``predict_step`` returns (today class indices), the CSV holds the same predictions."""
    npz, checkpoint = fitted
    if returns == "probabilities":
        monkeypatch.setattr(ImageClassifier, "predict_step", lambda self, batch, i: self(batch[0]).softmax(1))
    elif returns == "scores":
        monkeypatch.setattr(ImageClassifier, "predict_step", lambda self, batch, i: self(batch[0]))
    cli = run_lightning(["predict", *_args(npz, tmp_path), f"--ckpt_path={checkpoint}"])
    path = (Path(cli.trainer.log_dir) / "predictions.csv").resolve()
    printed = capsys.readouterr().out
    assert f"wrote 16 predictions to {path}" in printed, f"the CSV's path is not printed: {printed!r}"
    rows = _read(path)
    assert [row["image"] for row in rows] == [str(i) for i in range(16)], "expected rows 0..15 of x_test"
    assert {row["split"] for row in rows} == {"test"}, "the split column must say test"
    y_test = np.load(npz)["y_test"]
    assert [int(row["label"]) for row in rows] == y_test.tolist(), "label must be y_test of the row"

    x, ids = next(iter(cli.datamodule.predict_dataloader()))
    assert ids.tolist() == list(range(8)), f"predict batches must carry the rows of x_test, got {ids}"
    x = torch.cat([batch[0] for batch in cli.datamodule.predict_dataloader()])
    with torch.no_grad():
        probabilities = cli.model.eval()(x).softmax(1)
    assert [int(row["class_id"]) for row in rows] == probabilities.argmax(1).tolist(), (
        "not the model's classes"
    )
    written = torch.tensor([float(row["probability"]) for row in rows])
    torch.testing.assert_close(written, probabilities.amax(1), atol=1e-5, rtol=0, msg="not softmax(scores)")


def test_predict_on_the_validation_split_writes_the_npz_rows_and_labels(fitted, tmp_path):
    """Without a test split, predict runs on the validation split, the LAST training images: ``image`` is
    their row of x_train (40..55 here: 64 images, 8 held out, 16 for validation), not 0..15, so that
    ``y_train[image]`` is the row's label."""
    npz, checkpoint = fitted
    arrays = np.load(npz)
    np.savez(tmp_path / "no_test.npz", x_train=arrays["x_train"], y_train=arrays["y_train"])
    args = _args(tmp_path / "no_test.npz", tmp_path, "--data.init_args.holdout=8")
    cli = run_lightning(["predict", *args, f"--ckpt_path={checkpoint}"])
    rows = _read(Path(cli.trainer.log_dir) / "predictions.csv")
    assert [int(row["image"]) for row in rows] == list(range(40, 56)), (
        f"expected rows 40..55 of x_train, got {[row['image'] for row in rows]}"
    )
    assert {row["split"] for row in rows} == {"val"}, "the split column must say val"
    labels = [int(row["label"]) for row in rows]
    assert labels == arrays["y_train"][40:56].tolist(), f"label must be y_train of the row, got {labels}"
    images = torch.from_numpy(arrays["x_train"][40:56]).permute(0, 3, 1, 2).float() / 255.0
    mean, std = cli.datamodule.stats["mean"], cli.datamodule.stats["std"]
    with torch.no_grad():
        expected = cli.model.eval()((images - mean) / std).argmax(1)
    assert [int(row["class_id"]) for row in rows] == expected.tolist(), "not the classes of those rows"


def test_predict_images_win_over_the_test_split(fitted, tmp_path, capsys):
    """Image files of any size and mode; the CIFAR-10 data is neither needed nor downloaded."""
    _, checkpoint = fitted
    files = _images(tmp_path)
    patterns = json.dumps([str(files[0]), str(tmp_path / "*.jpg")])
    args = _args(tmp_path / "absent.npz", tmp_path, "--data.init_args.download=true")
    cli = run_lightning(
        ["predict", *args, f"--data.init_args.predict_images={patterns}", f"--ckpt_path={checkpoint}"]
    )
    path = Path(cli.trainer.log_dir) / "predictions.csv"
    rows = _read(path, labelled=False)
    assert [row["image"] for row in rows] == [str(f) for f in files], f"rows for {[r['image'] for r in rows]}"
    assert {row["split"] for row in rows} == {"files"}, "the split column must say files"
    assert not (tmp_path / "data").exists(), "predicting image files must not download CIFAR-10"
    assert "wrote 2 predictions" in capsys.readouterr().out, "the written CSV is not reported"


@pytest.mark.skipif(not MOUSE.is_file(), reason=f"{MOUSE} is absent (the shared data folder)")
def test_predict_the_mouse_photo(fitted, tmp_path):
    npz, checkpoint = fitted
    images = f"--data.init_args.predict_images=[{MOUSE}]"
    cli = run_lightning(["predict", *_args(npz, tmp_path), images, f"--ckpt_path={checkpoint}"])
    rows = _read(Path(cli.trainer.log_dir) / "predictions.csv", labelled=False)
    assert [row["image"] for row in rows] == [str(MOUSE.resolve())], f"expected one row for the mouse: {rows}"


def test_transfer_learning_predicts_image_files_without_a_logger(tmp_path):
    """TransferLearning takes [0, 1] images of any size (it resizes them itself); no logger: the CSV goes to
    ``default_root_dir``."""
    torch.manual_seed(0)
    model = TransferLearning("resnet18", weights=None, resolution=40)
    data = CIFAR10DataModule(
        data_dir=str(tmp_path / "none"),
        pixel_normalization="none",
        predict_images=[str(p) for p in _images(tmp_path)],
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        default_root_dir=tmp_path / "run",
        callbacks=[PredictionWriter()],
        enable_progress_bar=False,
    )
    trainer.predict(model, datamodule=data)
    rows = _read(tmp_path / "run" / "predictions.csv", labelled=False)
    assert len(rows) == 2, f"expected a row per image file, got {rows}"


def test_class_probabilities_of_each_output_kind():
    scores = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0]])
    expected = scores.softmax(1)
    torch.testing.assert_close(class_probabilities(scores), expected, msg="scores must go through softmax")
    torch.testing.assert_close(
        class_probabilities(expected), expected, msg="probabilities must stay as they are"
    )
    half = class_probabilities(expected.bfloat16())
    torch.testing.assert_close(half, expected.bfloat16().float(), msg="bfloat16 probabilities must stay too")
    indices = scores.argmax(1)
    torch.testing.assert_close(class_probabilities(indices, scores), expected, msg="indices: softmax(scores)")
    with pytest.raises(ValueError, match=r"class indices \(B,\): pass the model's scores"):
        class_probabilities(indices)
    with pytest.raises(
        ValueError, match=r"must return class probabilities or scores .*got torch.float32 \(2,\)"
    ):
        class_probabilities(scores[:, 0])


def test_rows_of_the_ranks_are_interleaved_back_in_order():
    """Lightning's predict sampler gives rank r of W the images r, r + W, ...: the last ranks get fewer."""
    rows = [(i, "test", 0, "airplane", 0.5, 3) for i in range(5)]
    merged = interleave_ranks([[rows[0], rows[2], rows[4]], [rows[1], rows[3]]])
    assert merged == rows, f"rows of 2 ranks merged as {[r[0] for r in merged]}, expected 0..4"
    assert interleave_ranks([[rows[0]], [rows[0]]]) == [rows[0]], "an image predicted twice must be kept once"


@pytest.mark.slow
def test_ddp_writes_one_csv_in_order(tmp_path):
    """Two CPU processes (gloo): rank 0 writes every rank's rows, in the data's order."""
    npz = write_npz(tmp_path / "c.npz", n_train=30, n_test=13)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        logger=False,
        default_root_dir=tmp_path,
        callbacks=[PredictionWriter()],
        enable_progress_bar=False,
    )
    data = CIFAR10DataModule(npz_path=str(npz), val_size=10, eval_batch_size=4, pixel_normalization="none")
    trainer.predict(FullyConnectedNet([8]), datamodule=data, return_predictions=False)
    rows = _read(tmp_path / "predictions.csv")
    assert [row["image"] for row in rows] == [str(i) for i in range(13)], (
        f"rows: {[r['image'] for r in rows]}"
    )


def test_batches_without_ids_are_refused(tmp_path):
    loader = DataLoader(TensorDataset(torch.rand(4, 3, 32, 32)), batch_size=2)
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        default_root_dir=tmp_path,
        callbacks=[PredictionWriter()],
        enable_progress_bar=False,
    )
    with pytest.raises(ValueError, match=r"needs predict batches \(images, ids\).*got a list"):
        trainer.predict(FullyConnectedNet([8]), loader)
