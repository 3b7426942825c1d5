"""Small generated CIFAR-10 data in the real on-disk formats (``.npz`` and the official python batches)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def tiny_fit_args(npz: Path, *extra: str) -> list[str]:
    """``cs231n`` options shrinking a run to 2 training and 1 validation batch of 8 generated images (of
    ``npz``), 1 epoch, on CPU, quiet; ``extra`` options follow (and win)."""
    return [
        f"--data.init_args.npz_path={npz}",
        "--data.init_args.val_size=16",
        "--data.init_args.batch_size=8",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        *extra,
    ]


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random images ``(n, 32, 32, 3)`` uint8 and labels ``(n,)`` int64 cycling through 0..9."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    y = (np.arange(n) % 10).astype(np.int64)
    return x, y


def write_npz(path: Path, n_train: int = 60, n_test: int | None = None, seed: int = 0) -> Path:
    """An ``.npz`` like ``cifar10_train.npz``: ``x_train``, ``y_train`` (+ ``x_test``, ``y_test``)."""
    x, y = make_images(n_train, seed)
    arrays = {"x_train": x, "y_train": y}
    if n_test is not None:
        arrays["x_test"], arrays["y_test"] = make_images(n_test, seed + 1)
    np.savez(path, **arrays)
    return path


def write_official_batches(root: Path, per_batch: int = 12, n_test: int | None = 10, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py/data_batch_1..5`` (+ ``test_batch``) in the official pickle layout:
    a dict with ``data`` ``(N, 3072)`` uint8 (CHW planes per row) and ``labels`` (a list of ints)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + (["test_batch"] if n_test else [])
    for i, name in enumerate(names):
        n = n_test if name == "test_batch" else per_batch
        x, y = make_images(n, seed + i)
        entry = {
            "batch_label": f"generated {name}",
            "labels": [int(v) for v in y],
            "data": x.transpose(0, 3, 1, 2).reshape(n, -1),
            "filenames": [f"img_{j}.png" for j in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    return folder
