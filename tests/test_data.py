"""CIFAR10DataModule on small generated data in both on-disk formats."""

from __future__ import annotations

import re
import struct
import urllib.error
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_fixtures import make_images, write_npz, write_official_batches
from torchvision.io import encode_jpeg, encode_png, write_file

from lightning_modules.data import CIFAR10DataError, CIFAR10DataModule, load_npz


def _batches(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def _chw_float(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0


def test_npz_split_sizes_order_and_batch_format(tmp_path):
    path = write_npz(tmp_path / "c.npz", n_train=60)
    x, y = make_images(60, seed=0)
    dm = CIFAR10DataModule(npz_path=str(path), val_size=10, batch_size=16, pixel_normalization="none")
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
    dm = CIFAR10DataModule(npz_path=str(path), val_size=10, num_train=20, pixel_normalization="none")
    dm.setup("fit")
    assert dm.split_sizes() == {"train": 20, "val": 10}
    with pytest.raises(ValueError, match="num_train=55 exceeds the 50"):
        CIFAR10DataModule(npz_path=str(path), val_size=10, num_train=55).setup("fit")


def test_holdout_keeps_the_reported_validation_images_out_of_every_split(tmp_path):
    path = write_npz(tmp_path / "c.npz", n_train=60)
    x, _ = make_images(60, seed=0)
    dm = CIFAR10DataModule(npz_path=str(path), val_size=10, holdout=10, pixel_normalization="none")
    dm.setup("fit")
    assert dm.split_sizes() == {"train": 40, "val": 10}, dm.split_sizes()
    xv, _ = _batches(dm.val_dataloader())
    torch.testing.assert_close(xv, _chw_float(x[40:50]), msg="holdout: val is not the 10 images before it")
    xt, _ = _batches(dm.train_dataloader())
    seen, held_out = torch.cat([xt, xv]).flatten(1), _chw_float(x[50:]).flatten(1)
    assert not (seen[:, None] == held_out[None]).all(-1).any(), "a held-out image reached a split"
    with pytest.raises(ValueError, match="val_size=10 plus holdout=50 must be smaller than the 60"):
        CIFAR10DataModule(npz_path=str(path), val_size=10, holdout=50).setup("fit")


def test_official_batches_are_read_in_order(tmp_path):
    write_official_batches(tmp_path, per_batch=12, n_test=10)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), val_size=12, batch_size=8, pixel_normalization="none")
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
    dm = CIFAR10DataModule(npz_path=str(path), val_size=10, pixel_normalization="per_channel")
    dm.setup("fit")
    train = x[:50].astype(np.float64) / 255.0
    np.testing.assert_allclose(dm.stats["mean"].flatten().numpy(), train.mean((0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(dm.stats["std"].flatten().numpy(), train.std((0, 1, 2)), rtol=1e-4)
    xv, _ = _batches(dm.val_dataloader())
    expected = (_chw_float(x[50:]) - dm.stats["mean"]) / dm.stats["std"]
    torch.testing.assert_close(xv, expected)

    # A fresh module (e.g. for `test` from a checkpoint) uses the saved numbers, not its own.
    saved = dm.state_dict()
    other = CIFAR10DataModule(npz_path=str(path), val_size=30, pixel_normalization="per_channel")
    other.setup("test")
    assert not torch.equal(other.stats["mean"], saved["mean"]), "different splits should give other stats"
    other.load_state_dict(saved)
    torch.testing.assert_close(other.stats["mean"], saved["mean"])
    xt, _ = _batches(other.test_dataloader())
    torch.testing.assert_close(xt, (_chw_float(make_images(8, seed=1)[0]) - saved["mean"]) / saved["std"])


def test_mean_image_is_cs231n_scale(tmp_path):
    path = write_npz(tmp_path / "c.npz", n_train=40)
    x, _ = make_images(40, seed=0)
    dm = CIFAR10DataModule(npz_path=str(path), val_size=10, pixel_normalization="mean_image")
    dm.setup("fit")
    mean = x[:30].astype(np.float64).mean(0).transpose(2, 0, 1)  # 0..255 scale, (3, 32, 32)
    np.testing.assert_allclose(dm.stats["mean"].numpy(), mean, rtol=1e-5)
    xv, _ = _batches(dm.val_dataloader())
    torch.testing.assert_close(xv, _chw_float(x[30:]) * 255.0 - dm.stats["mean"], rtol=1e-5, atol=1e-3)


def test_state_dict_with_other_normalization_is_refused(tmp_path):
    path = write_npz(tmp_path / "c.npz", n_train=30)
    dm = CIFAR10DataModule(npz_path=str(path), val_size=10, pixel_normalization="mean_image")
    dm.setup("fit")
    with pytest.raises(
        ValueError, match=r"pixel_normalization='mean_image'.*pixel_normalization='per_channel'"
    ):
        CIFAR10DataModule(npz_path=str(path), pixel_normalization="per_channel").load_state_dict(
            dm.state_dict()
        )


def test_deprecated_normalization_keyword_is_pixel_normalization(tmp_path):
    """``normalization``, the old name of ``pixel_normalization``, works for one release: a FutureWarning
    naming the new key; the hyper-parameters record ``pixel_normalization``; with the new keyword too, a
    TypeError."""
    path = write_npz(tmp_path / "c.npz", n_train=30)
    with pytest.warns(
        FutureWarning, match=r"'normalization' is deprecated.*--data\.init_args\.pixel_normalization"
    ):
        dm = CIFAR10DataModule(npz_path=str(path), val_size=10, normalization="mean_image")
    assert dm.pixel_normalization == "mean_image", dm.pixel_normalization
    assert dm.hparams.pixel_normalization == "mean_image" and "normalization" not in dm.hparams, dm.hparams
    assert CIFAR10DataModule().hparams.pixel_normalization == "per_channel", "the default is logged too"
    with pytest.raises(TypeError, match="give only pixel_normalization"):
        CIFAR10DataModule(pixel_normalization="none", normalization="mean_image")
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="pixel_normalization must be one of"):
        CIFAR10DataModule(normalization="zscore")
    dm.setup("fit")
    old_state = dm.state_dict()  # a checkpoint written before the rename names the mode `normalization`
    old_state["normalization"] = old_state.pop("pixel_normalization")
    restored = CIFAR10DataModule(npz_path=str(path), pixel_normalization="mean_image")
    restored.load_state_dict(old_state)
    assert set(restored.stats) == {"mean"} and torch.equal(restored.stats["mean"], dm.stats["mean"])


def test_augmentation_is_per_image_and_training_only(tmp_path):
    path = write_npz(tmp_path / "c.npz", n_train=74)
    dm = CIFAR10DataModule(
        npz_path=str(path), val_size=10, batch_size=64, pixel_normalization="none", augment=True
    )
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
    """Relative paths are resolved against the working directory: errors show both."""
    monkeypatch.chdir(tmp_path)
    where = re.escape(f"'{tmp_path / 'nope.npz'}' (working directory: {tmp_path})")
    with pytest.raises(
        FileNotFoundError,
        match=rf"npz_path 'nope\.npz' does not exist; looked for {where}.*--data\.init_args\.npz_path",
    ):
        CIFAR10DataModule(npz_path="nope.npz").setup("fit")
    where = re.escape(f"'{tmp_path / 'empty' / 'cifar-10-batches-py'}' (working directory: {tmp_path})")
    with pytest.raises(FileNotFoundError, match=rf"batches .* in {where}.*download.*npz_path"):
        CIFAR10DataModule(data_dir="empty").setup("fit")
    with pytest.raises(FileNotFoundError, match=re.escape(f"'{tmp_path / 'gone.npz'}' (working directory: ")):
        load_npz("gone.npz")


def _offline_download(monkeypatch) -> None:
    """torchvision's real download path, with the network call failing after a partial write."""
    import torchvision.datasets.utils

    def partial_then_fail(url: str, filename: str, *args, **kwargs) -> None:
        with open(filename, "wb") as f:
            f.write(b"\x1f\x8b partial archive")
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.utils, "_get_redirect_url", lambda url, max_hops=3: url)
    monkeypatch.setattr(torchvision.datasets.utils, "_urlretrieve", partial_then_fail)


def test_failed_download_is_one_clear_error_and_leaves_nothing_behind(tmp_path, monkeypatch):
    _offline_download(monkeypatch)
    monkeypatch.chdir(tmp_path)
    dm = CIFAR10DataModule(data_dir="data/cifar10", download=True)
    with pytest.raises(RuntimeError) as info:
        dm.prepare_data()
    message = str(info.value)
    for expected in (
        f"Could not download CIFAR-10 into '{tmp_path / 'data' / 'cifar10'}' (working directory: {tmp_path})",
        "URLError: <urlopen error Temporary failure in name resolution>",
        "--data.init_args.npz_path",
        "--data.init_args.download false --data.init_args.data_dir",
    ):
        assert expected in message, f"{expected!r} missing from: {message}"
    assert isinstance(info.value.__cause__, urllib.error.URLError), "the network error is not the cause"
    assert list(tmp_path.iterdir()) == [], f"the failed download left {list(tmp_path.rglob('*'))}"

    # In a folder that already exists, only what the attempt created goes; the user's files stay.
    folder = tmp_path / "mine"
    (folder / "cifar-10-batches-py").mkdir(parents=True)
    (folder / "notes.txt").write_text("keep me")
    (folder / "cifar-10-batches-py" / "readme.html").write_text("keep me too")
    with pytest.raises(RuntimeError, match="Could not download CIFAR-10"):
        CIFAR10DataModule(data_dir=str(folder), download=True).prepare_data()
    left = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    assert left == ["cifar-10-batches-py", "cifar-10-batches-py/readme.html", "notes.txt"], (
        f"expected only the pre-existing files to remain, found {left}"
    )


def test_missing_npz_falls_back_to_download_with_the_absolute_path(tmp_path, monkeypatch):
    _offline_download(monkeypatch)
    monkeypatch.chdir(tmp_path)
    dm = CIFAR10DataModule(data_dir="data", npz_path="missing.npz", download=True)
    where = re.escape(f"'{tmp_path / 'missing.npz'}' (working directory: {tmp_path})")
    with (
        pytest.warns(UserWarning, match=rf"npz_path 'missing\.npz' does not exist \(looked for {where}\)"),
        pytest.raises(RuntimeError, match=rf"npz_path 'missing\.npz' does not exist.*{where}.*URLError"),
    ):
        dm.prepare_data()
    assert not (tmp_path / "data").exists(), "the failed download left its folder behind"


def _write_image(path: Path, image: torch.Tensor) -> Path:
    """``image`` (C, H, W) uint8 as a PNG or JPEG file, by the suffix of ``path``."""
    encoded = encode_png(image) if path.suffix == ".png" else encode_jpeg(image, quality=95)
    write_file(str(path), encoded)
    return path


def _write_png16(path: Path, value: int, height: int = 20, width: int = 30) -> Path:
    """A constant 16-bit greyscale PNG (torchvision cannot encode one), written chunk by chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + struct.pack(">H", value) * width  # filter byte 0, then big-endian samples
    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)  # 16 bit, greyscale
    png = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png)
    return path


def test_predict_images_are_read_resized_and_normalised_like_validation(tmp_path):
    npz = write_npz(tmp_path / "c.npz", n_train=40, n_test=8)
    grey = _write_image(tmp_path / "grey.png", torch.full((1, 40, 50), 200, dtype=torch.uint8))
    wide = torch.zeros(3, 40, 80, dtype=torch.uint8)
    wide[0, :, :16] = 255  # a red strip at the left, outside the centre crop
    wide[2, :, 16:] = 255  # blue elsewhere
    (tmp_path / "photos").mkdir()
    wide_path = _write_image(tmp_path / "photos" / "wide.png", wide)
    jpeg = _write_image(tmp_path / "photos" / "colour.jpg", torch.full((3, 41, 33), 90, dtype=torch.uint8))
    deep = _write_png16(tmp_path / "deep.png", 257 * 60)  # 16-bit 15420 = 8-bit 60
    fitted = CIFAR10DataModule(npz_path=str(npz), val_size=10, pixel_normalization="per_channel")
    fitted.setup("fit")
    dm = CIFAR10DataModule(
        npz_path=str(npz),
        val_size=10,
        pixel_normalization="per_channel",
        predict_images=[str(grey), str(tmp_path / "photos" / "*.*"), str(grey), str(deep)],
    )
    dm.load_state_dict(fitted.state_dict())  # as the checkpoint does
    dm.setup("predict")
    assert dm.split_sizes() == {}, "predict_images must not load the CIFAR-10 data"
    x, ids = next(iter(dm.predict_dataloader()))
    assert ids == [str(grey), str(jpeg), str(wide_path), str(deep)], (
        f"ids: expected the absolute paths once each, got {ids}"
    )
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32, f"batch {x.shape} {x.dtype}"
    raw = x * fitted.stats["std"] + fitted.stats["mean"]  # undo the validation normalisation
    torch.testing.assert_close(raw[0], torch.full((3, 32, 32), 200 / 255), msg="grey PNG is not grey RGB")
    torch.testing.assert_close(raw[1], torch.full((3, 32, 32), 90 / 255), atol=2 / 255, rtol=0)
    blue = torch.zeros(3, 32, 32)
    blue[2] = 1.0
    torch.testing.assert_close(
        raw[2], blue, msg="a wide image must be resized by its shorter side and centre-cropped"
    )
    torch.testing.assert_close(
        raw[3], torch.full((3, 32, 32), 60 / 255), msg="16-bit PNG not scaled to 8 bit"
    )


def test_predict_images_without_a_checkpoint_use_the_training_statistics(tmp_path):
    npz = write_npz(tmp_path / "c.npz", n_train=40)
    image = _write_image(tmp_path / "a.png", torch.zeros(3, 8, 8, dtype=torch.uint8))
    fitted = CIFAR10DataModule(npz_path=str(npz), val_size=10)
    fitted.setup("fit")
    dm = CIFAR10DataModule(npz_path=str(npz), val_size=10, predict_images=[str(image)])
    dm.setup("predict")
    x, _ = next(iter(dm.predict_dataloader()))
    torch.testing.assert_close(x[0], (-fitted.stats["mean"] / fitted.stats["std"]).expand(3, 32, 32))


def test_predict_on_a_split_gives_its_indices(tmp_path):
    npz = write_npz(tmp_path / "c.npz", n_train=30, n_test=12)
    dm = CIFAR10DataModule(npz_path=str(npz), val_size=10, eval_batch_size=5, pixel_normalization="none")
    dm.setup("predict")
    xs, ids = zip(*dm.predict_dataloader())
    assert torch.cat(ids).tolist() == list(range(12)), "predict ids must be the test split's indices"
    torch.testing.assert_close(torch.cat(xs), _chw_float(make_images(12, seed=1)[0]))


def test_bad_predict_images_are_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    (tmp_path / "broken.jpg").write_bytes(b"not an image at all")
    cases = [
        (["shots/*.png"], FileNotFoundError, r"the pattern 'shots/\*\.png' matches no file; looked for '"),
        (["nope.jpg"], FileNotFoundError, r"'nope\.jpg' not found; looked for '"),
        (["folder"], FileNotFoundError, r"'folder' is a folder \(give a pattern such as folder/\*\.jpg\)"),
        (["broken.jpg"], ValueError, r"cannot read '.*broken\.jpg' \(working directory: .*\) as an image"),
    ]
    for patterns, error, message in cases:
        dm = CIFAR10DataModule(predict_images=patterns)
        with pytest.raises(error, match=message):
            dm.setup("predict")
        if error is FileNotFoundError:
            with pytest.raises(error, match=re.escape(f"(working directory: {tmp_path})")):
                dm.setup("predict")
    assert CIFAR10DataModule(predict_images="a.jpg").predict_images == ["a.jpg"], "one string is one pattern"
    for value in ([], [""], [3], 3):
        with pytest.raises(ValueError, match=r"predict_images \(--data\.init_args\.predict_images\) must be"):
            CIFAR10DataModule(predict_images=value)


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
    with pytest.raises(ValueError, match=r"pixel_normalization must be one of .*'per_channel'"):
        CIFAR10DataModule(pixel_normalization="zscore")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        CIFAR10DataModule(batch_size=0)
    with pytest.raises(ValueError, match="val_size must be an int >= 0"):
        CIFAR10DataModule(val_size=-1)
