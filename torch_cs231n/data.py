"""CIFAR-10 arrays from an ``.npz`` file, read and validated with numpy alone (no Lightning, no torchvision).

The layout is that of ``../shared/data/cifar10_train.npz``: ``x_train`` ``(N, 32, 32, 3)`` uint8 (HWC, RGB)
and ``y_train`` ``(N,)`` integer labels in ``[0, 10)``, optionally ``x_test``/``y_test`` in the same
layout. :mod:`lightning_modules.data` builds its data module on these functions, and the experiments of
:mod:`torch_cs231n.experiments` train on them directly.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
IMAGE_SHAPE = (32, 32, 3)


class CIFAR10DataError(ValueError):
    """A CIFAR-10 file exists but is corrupt or does not hold what is expected."""


def looked_for(path: str | Path) -> str:
    """Where a (possibly relative) ``path`` was looked for, for "not found" messages.

    Args:
        path: the path as given (relative paths are relative to the working directory).

    Returns:
        ``'/abs/path' (working directory: /cwd)``.
    """
    return f"'{Path(path).resolve()}' (working directory: {Path.cwd()})"


def check_split(source: str, x: np.ndarray, y: np.ndarray, x_name: str, y_name: str) -> None:
    """Require images ``x`` ``(N, 32, 32, 3)`` uint8 and labels ``y`` ``(N,)`` integers in [0, 10).

    Args:
        source: the file, for the message.
        x: the images.
        y: the labels.
        x_name: the name of ``x`` in ``source``, for the message.
        y_name: the name of ``y`` in ``source``, for the message.

    Raises:
        CIFAR10DataError: naming ``source``, the array and what it holds.
    """
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE:
        raise CIFAR10DataError(
            f"{source}: {x_name} must be (N, 32, 32, 3) uint8 (HWC, RGB), got {x.shape} {x.dtype}"
        )
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (x.shape[0],):
        raise CIFAR10DataError(
            f"{source}: {y_name} must be ({x.shape[0]},) integer labels to match {x_name}, "
            f"got {y.shape} {y.dtype}"
        )
    if y.size and (y.min() < 0 or y.max() >= len(CLASSES)):
        raise CIFAR10DataError(f"{source}: {y_name} must hold labels in [0, 10), got [{y.min()}, {y.max()}]")


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read and validate a CIFAR-10 ``.npz``.

    Args:
        path: the file.

    Returns:
        ``x_train``, ``y_train`` and, if present, ``x_test``, ``y_test`` (images ``(N, 32, 32, 3)`` uint8,
        labels ``(N,)`` int64).

    Raises:
        FileNotFoundError: no such file; the message gives the absolute path looked for.
        CIFAR10DataError: the file is not an ``.npz``, or lacks or misshapes an array.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{path}: no such .npz file; looked for {looked_for(path)}") from err
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        # numpy reads a file that is neither a zip nor a .npy as a pickle and suggests allow_pickle, which
        # would run code from the file: not an option for a data file, so not suggested here.
        cause = "neither a zip archive of .npy arrays nor a .npy file" if "allow_pickle" in str(err) else err
        raise CIFAR10DataError(
            f"{path}: not a readable .npz archive ({cause}); expected a file written by numpy.savez with "
            "x_train, y_train [, x_test, y_test]"
        ) from err
    missing = [name for name in ("x_train", "y_train") if name not in arrays]
    if missing:
        raise CIFAR10DataError(f"{path}: missing array(s) {missing}; the file holds {sorted(arrays)}")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise CIFAR10DataError(
            f"{path}: x_test and y_test must be given together; the file holds {sorted(arrays)}"
        )
    out = {}
    for split in ("train", "test"):
        if f"x_{split}" in arrays:
            x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
            check_split(str(path), x, y, f"x_{split}", f"y_{split}")
            out[f"x_{split}"], out[f"y_{split}"] = x, y.astype(np.int64)
    return out
