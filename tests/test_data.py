"""CIFAR10DataModule on small generated data in both on-disk formats."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch
from cifar_fixtures import make_images, write_npz, write_official_batches

from lightning_modules.data import CIFAR10DataError, CIFAR10DataModule


def _batches(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def _chw_float(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0


def test_npz_split_sizes_order_and_batch_format(tmp_path):
    path = write_npz(tmp_path / "c.npz", n_train=60)
    x, y = make_images(60, seed=0)
    dm = CIFAR10DataModule(npz_path=str(path), val_size=10, batch_size=16, normalization="none")
    dm.setup("fit")
    assert dm.split_sizes() == {"train": 50, "val": 10}, dm.split_sizes()
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (16, 3, 32, 32) and xb.dtype == torch.float32, (xb.shape, xb.dtype)
    assert yb.dtype == torch.int64 and xb.min() >= 0.0 and xb.max() <= 1.0
    # Validation = the LAST val_size images, in order (CS231n split), unshuffled.
    xv, yv = _batches(dm.val_dataloader())
    torch.testing.assert_close(xv, _chw_float(x[50:]), msg="val split is not the last 10 training images")
    assert yv.tolist() == y[50:].tolist()
    # Training = the images before it; the shuffle covers each exactly once per epoch.
    xt, _ = _batches(dm.train_dataloader())
    assert sorted(xt.sum((1, 2, 3)).tolist()) == pytest.approx(
        sorted(_chw_float(x[:50]).sum((1, 2, 3)).tolist())
    )


def test_num_train_takes_the_first_images(tmp_path):
    path = write_npz(tmp_path / "c.npz", n_train=60)
    dm = CIFAR10DataModule(npz_path=str(path), val_size=10, num_train=20, normalization="none")
    dm.setup("fit")
    assert dm.split_sizes() == {"train": 20, "val": 10}
    with pytest.raises(ValueError, match="num_train=55 exceeds the 50"):
        CIFAR10DataModule(npz_path=str(path), val_size=10, num_train=55).setup("fit")


def test_official_batches_are_read_in_order(tmp_path):
    write_official_batches(tmp_path, per_batch=12, n_test=10)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), val_size=12, batch_size=8, normalization="none")
    dm.setup("fit")
    assert dm.split_sizes() == {"train": 48, "val": 12, "test": 10}, dm.split_sizes()
    x5, y5 = make_images(12, seed=4)  # data_batch_5 is generated with seed 4: it is the validation split
    xv, yv = _batches(dm.val_dataloader())
    torch.testing.assert_close(xv, _chw_float(x5), msg="official CHW rows were not decoded to the same image")
    assert yv.tolist() == y5.tolist()
    xt, _ = _batches(dm.test_dataloader())
    torch.testing.assert_close(xt, _chw_float(make_images(10, seed=5)[0]))


def test_per_channel_statistics_are_from_the_train_split_and_reused(tmp_path):
    path = write_npz(tmp_path / "c.npz", n_train=60, n_test=8)
    x, _ = make_images(60, seed=0)
    dm = CIFAR10DataModule(npz_path=str(path), val_size=10, normalization="per_channel")
    dm.setup("fit")
    train = x[:50].astype(np.float64) / 255.0
    np.testing.assert_allclose(dm.stats["mean"].flatten().numpy(), train.mean((0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(dm.stats["std"].flatten().numpy(), train.std((0, 1, 2)), rtol=1e-4)
    xv, _ = _batches(dm.val_dataloader())
    expected = (_chw_float(x[50:]) - dm.stats["mean"]) / dm.stats["std"]
    torch.testing.assert_close(xv, expected)

    # A fresh module (e.g. for `test` from a checkpoint) uses the saved numbers, not its own.
    saved = dm.state_dict()
    other = CIFAR10DataModule(npz_path=str(path), val_size=30, normalization="per_channel")
    other.setup("test")
    assert not torch.equal(other.stats["mean"], saved["mean"]), "different splits should give other stats"
    other.load_state_dict(saved)
    torch.testing.assert_close(other.stats["mean"], saved["mean"])
    xt, _ = _batches(other.test_dataloader())
    torch.testing.assert_close(xt, (_chw_float(make_images(8, seed=1)[0]) - saved["mean"]) / saved["std"])


def test_mean_image_is_cs231n_scale(tmp_path):
    path = write_npz(tmp_path / "c.npz", n_train=40)
    x, _ = make_images(40, seed=0)
    dm = CIFAR10DataModule(npz_path=str(path), val_size=10, normalization="mean_image")
    dm.setup("fit")
    mean = x[:30].astype(np.float64).mean(0).transpose(2, 0, 1)  # 0..255 scale, (3, 32, 32)
    np.testing.assert_allclose(dm.stats["mean"].numpy(), mean, rtol=1e-5)
    xv, _ = _batches(dm.val_dataloader())
    torch.testing.assert_close(xv, _chw_float(x[30:]) * 255.0 - dm.stats["mean"], rtol=1e-5, atol=1e-3)


def test_state_dict_with_other_normalization_is_refused(tmp_path):
    path = write_npz(tmp_path / "c.npz", n_train=30)
    dm = CIFAR10DataModule(npz_path=str(path), val_size=10, normalization="mean_image")
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"normalization='mean_image'.*normalization='per_channel'"):
        CIFAR10DataModule(npz_path=str(path), normalization="per_channel").load_state_dict(dm.state_dict())


def test_augmentation_is_per_image_and_training_only(tmp_path):
    path = write_npz(tmp_path / "c.npz", n_train=74)
    dm = CIFAR10DataModule(npz_path=str(path), val_size=10, batch_size=64, normalization="none", augment=True)
    dm.setup("fit")
    image, label = dm._splits["train"][0]
    torch.manual_seed(0)
    xb, yb = dm._transform(train=True)((image.expand(64, -1, -1, -1), label.expand(64)))
    assert xb.shape == (64, 3, 32, 32) and xb.dtype == torch.float32 and yb.shape == (64,)
    distinct = len({tuple(x.flatten().tolist()) for x in xb})
    assert distinct > 20, f"64 copies of one image gave {distinct} distinct crops/flips: not drawn per image"
    xv, _ = _batches(dm.val_dataloader())
    torch.testing.assert_close(xv, dm._splits["val"].images.float() / 255.0, msg="val batches were augmented")


def test_test_without_test_split_says_so(tmp_path):
    path = write_npz(tmp_path / "c.npz", n_train=30)
    dm = CIFAR10DataModule(npz_path=str(path), val_size=10)
    with pytest.raises(RuntimeError, match=r"No test split: .*c\.npz.* has no test images.*validate"):
        dm.setup("test")
    dm.setup("fit")
    assert len(next(iter(dm.predict_dataloader()))[0]) == 10, "predict falls back to the validation split"


def test_missing_data_errors_say_where_and_which_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        FileNotFoundError, match=r"npz_path 'nope\.npz' does not exist.*--data\.init_args\.npz_path"
    ):
        CIFAR10DataModule(npz_path="nope.npz").setup("fit")
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py.*download.*npz_path"):
        CIFAR10DataModule(data_dir=str(tmp_path / "empty")).setup("fit")


def test_offline_download_failure_is_actionable(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), download=True)
    with pytest.raises(RuntimeError, match=r"Could not download CIFAR-10 .*npz_path"):
        dm.prepare_data()
    # A missing npz with download=True falls back to the official dataset, with a warning.
    dm = CIFAR10DataModule(data_dir=str(tmp_path), npz_path=str(tmp_path / "missing.npz"), download=True)
    with (
        pytest.warns(UserWarning, match="missing.npz' does not exist; using the official"),
        pytest.raises(RuntimeError),
    ):
        dm.prepare_data()


def test_corrupt_or_misshapen_files_are_named(tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip archive")
    with pytest.raises(CIFAR10DataError, match=r"garbage\.npz: not a readable \.npz"):
        CIFAR10DataModule(npz_path=str(garbage)).setup("fit")

    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x_train=np.zeros((20, 3, 32, 32), np.uint8), y_train=np.zeros(20, np.int64))
    with pytest.raises(
        CIFAR10DataError, match=r"wrong\.npz: x_train must be \(N, 32, 32, 3\) uint8.*\(20, 3, 32, 32\)"
    ):
        CIFAR10DataModule(npz_path=str(wrong)).setup("fit")

    labels = tmp_path / "labels.npz"
    np.savez(labels, x_train=np.zeros((20, 32, 32, 3), np.uint8), y_train=np.full(20, 10))
    with pytest.raises(CIFAR10DataError, match=r"labels\.npz: y_train must hold labels in \[0, 10\)"):
        CIFAR10DataModule(npz_path=str(labels)).setup("fit")

    missing = tmp_path / "missing_keys.npz"
    np.savez(missing, images=np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(
        CIFAR10DataError, match=r"missing array\(s\) \['x_train', 'y_train'\]; the file holds \['images'\]"
    ):
        CIFAR10DataModule(npz_path=str(missing)).setup("fit")

    folder = write_official_batches(tmp_path / "official", per_batch=4)
    (folder / "data_batch_3").write_bytes(b"\x80\x04truncated")
    with pytest.raises(CIFAR10DataError, match=r"data_batch_3: not a readable CIFAR-10 python batch"):
        CIFAR10DataModule(data_dir=str(tmp_path / "official"), val_size=2).setup("fit")


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match=r"normalization must be one of .*'per_channel'"):
        CIFAR10DataModule(normalization="zscore")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        CIFAR10DataModule(batch_size=0)
    with pytest.raises(ValueError, match="val_size must be an int >= 0"):
        CIFAR10DataModule(val_size=-1)
