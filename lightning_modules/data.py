"""CIFAR-10 as a ``LightningDataModule``: official batches or an ``.npz``, CS231n splits, batched transforms.

Sources (the first that applies):
    1. ``npz_path``, when that file exists: arrays ``x_train`` ``(N, 32, 32, 3)`` uint8 (HWC, RGB) and
       ``y_train`` ``(N,)`` int, optionally ``x_test``/``y_test`` in the same layout (the layout of
       ``../shared/data/cifar10_train.npz``).
    2. The official python batches in ``data_dir/cifar-10-batches-py`` (``data_batch_1..5``, ``test_batch``),
       downloaded and checksum-verified by :class:`torchvision.datasets.CIFAR10` when ``download=True``.
A missing ``npz_path`` falls back to (2) only when ``download=True`` (with a warning); otherwise it is an
error, so that a typo does not silently train on other data.

Splits, CS231n style: the validation set is the LAST ``val_size`` training images (1,000 of 50,000 by
default), the training set the images before it (optionally only the first ``num_train`` of them).

Images are kept in memory as uint8 ``(N, 3, 32, 32)``; each batch is indexed in one go and then
augmented (torchvision transforms v2 on uint8 tensors, no PIL), converted to float32 in [0, 1] and
normalised by the batch transform:
    per_channel: x = (x - mean_c) / std_c,  mean/std per channel over the training split
    mean_image:  x = 255 x - mean_image,   pixel values minus the mean training image (3, 32, 32),
                 both on the 0..255 scale, exactly as CS231n's ``get_CIFAR10_data`` (whose learning rates
                 and weight scales assume that scale)
    none:        x in [0, 1]
The statistics are computed once on the training split and saved in checkpoints (``state_dict``), so
``validate``/``test``/``predict`` and a resumed run use the same numbers.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

NormalizationMode = Literal["per_channel", "mean_image", "none"]
NORMALIZATIONS: tuple[str, ...] = ("per_channel", "mean_image", "none")
CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
BATCHES_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
IMAGE_SHAPE = (32, 32, 3)


class CIFAR10DataError(ValueError):
    """A CIFAR-10 file exists but is corrupt or does not hold what is expected."""


# ---------------------------------------------------------------------------------------------- loading
def _check_split(source: str, x: np.ndarray, y: np.ndarray, x_name: str, y_name: str) -> None:
    """``x`` must be ``(N, 32, 32, 3)`` uint8 and ``y`` ``(N,)`` integer labels in [0, 10)."""
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
    """Read and validate a CIFAR-10 ``.npz``; returns ``x_train``, ``y_train`` and, if present, ``x_test``,
    ``y_test`` (images ``(N, 32, 32, 3)`` uint8, labels ``(N,)`` int64)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise CIFAR10DataError(f"{path}: not a readable .npz archive ({err})") from err
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
            _check_split(str(path), x, y, f"x_{split}", f"y_{split}")
            out[f"x_{split}"], out[f"y_{split}"] = x, y.astype(np.int64)
    return out


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles the official batch files, allowing only the numpy globals they need."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def _load_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One official batch file -> images ``(N, 32, 32, 3)`` uint8, labels ``(N,)`` int64."""
    try:
        with open(path, "rb") as f:
            entry = _BatchUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as err:
        raise CIFAR10DataError(f"{path}: not a readable CIFAR-10 python batch ({err})") from err
    if not isinstance(entry, dict) or "data" not in entry or "labels" not in entry:
        keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise CIFAR10DataError(f"{path}: expected a dict with 'data' and 'labels', got {keys}")
    data, labels = np.asarray(entry["data"]), np.asarray(entry["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise CIFAR10DataError(f"{path}: 'data' must be (N, 3072) uint8, got {data.shape} {data.dtype}")
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # rows are CHW planes -> HWC
    _check_split(str(path), x, labels, "data", "labels")
    return np.ascontiguousarray(x), labels.astype(np.int64)


def load_official_batches(folder: str | Path) -> dict[str, np.ndarray]:
    """Read ``data_batch_1..5`` (and ``test_batch`` when present) of the official python version from
    ``folder`` (the ``cifar-10-batches-py`` directory); same keys and layout as :func:`load_npz`."""
    folder = Path(folder)
    missing = [name for name in TRAIN_BATCHES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing CIFAR-10 batch file(s) {missing}")
    xs, ys = zip(*(_load_batch(folder / name) for name in TRAIN_BATCHES))
    out = {"x_train": np.concatenate(xs), "y_train": np.concatenate(ys)}
    if (folder / TEST_BATCH).is_file():
        out["x_test"], out["y_test"] = _load_batch(folder / TEST_BATCH)
    return out


# ------------------------------------------------------------------------------------------ batching
class _ArrayDataset(Dataset):
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)``; ``__getitems__`` fetches a batch in one index."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.images[index], self.labels[index]


class BatchTransform:
    """The collate function: uint8 batch ``(B, 3, 32, 32)`` -> augmented, normalised float32 batch.

    ``x = (scale * images / 255 - mean) / std``; ``mean``/``std`` broadcast against ``(3, 32, 32)``
    (``(3, 1, 1)`` per channel, ``(3, 32, 32)`` for the mean image); ``None`` skips that step.
    ``augment`` applies a random crop with ``crop_padding`` zero padding and a horizontal flip, drawn
    independently per image (a v2 transform draws one set of parameters per call, so it is called per
    image, on uint8 tensors, before the float conversion).
    """

    def __init__(
        self,
        mean: torch.Tensor | None,
        std: torch.Tensor | None,
        augment: bool = False,
        crop_padding: int = 4,
        scale: float = 1.0,
    ):
        self.mean, self.std, self.scale = mean, std, scale
        self.augment = (
            v2.Compose([v2.RandomCrop(32, padding=crop_padding), v2.RandomHorizontalFlip()])
            if augment
            else None
        )

    def __call__(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        if self.augment is not None:
            images = torch.stack([self.augment(image) for image in images])
        x = images.to(torch.float32).mul_(self.scale / 255.0)
        if self.mean is not None:
            x.sub_(self.mean)
        if self.std is not None:
            x.div_(self.std)
        return x, labels


# -------------------------------------------------------------------------------------- data module
class CIFAR10DataModule(pl.LightningDataModule):
    """CIFAR-10 with the CS231n train/val split; batches ``(B, 3, 32, 32)`` float32 and ``(B,)`` int64.

    Args:
        data_dir: folder holding (or receiving) ``cifar-10-batches-py``.
        npz_path: an ``.npz`` with ``x_train``, ``y_train`` [, ``x_test``, ``y_test``]; used when it exists.
        download: download the official dataset into ``data_dir`` (checksum-verified) when needed.
        val_size: number of validation images, taken from the END of the training set.
        num_train: use only the first ``num_train`` training images (``None``: all of them).
        batch_size: training batch size.
        eval_batch_size: batch size for val/test/predict (``None``: ``batch_size``).
        num_workers: DataLoader worker processes.
        normalization: ``"per_channel"``, ``"mean_image"`` (CS231n) or ``"none"`` (values in [0, 1]).
        augment: random crop (``crop_padding`` pixels of zero padding) and horizontal flip in training.
        crop_padding: padding of the random crop.
        seed: seed of the training shuffle and augmentation generator (``None``: the global RNG).
    """

    num_classes = len(CLASSES)
    classes = CLASSES

    def __init__(
        self,
        data_dir: str = "data/cifar10",
        npz_path: str | None = None,
        download: bool = False,
        val_size: int = 1000,
        num_train: int | None = None,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        normalization: NormalizationMode = "per_channel",
        augment: bool = False,
        crop_padding: int = 4,
        seed: int | None = None,
    ):
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        non_negative = {"val_size": val_size, "num_workers": num_workers, "crop_padding": crop_padding}
        for name, value in non_negative.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        positive = {"batch_size": batch_size, "eval_batch_size": eval_batch_size, "num_train": num_train}
        for name, value in positive.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        # `normalization` is also a FullyConnectedNet argument (with another meaning); Lightning refuses to
        # log two different values under one key, so it is kept in the checkpoint state instead.
        self.save_hyperparameters(ignore=["normalization"])
        self.data_dir = Path(data_dir)
        self.npz_path = Path(npz_path) if npz_path is not None else None
        self.download = download
        self.val_size = val_size
        self.num_train = num_train
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.normalization = normalization
        self.augment = augment
        self.crop_padding = crop_padding
        self.seed = seed
        self.stats: dict[str, torch.Tensor] = {}
        self._splits: dict[str, _ArrayDataset] = {}
        self._source_description = ""

    # ----------------------------------------------------------------------------------- sources
    @property
    def batches_dir(self) -> Path:
        """Where the official python batches are expected: ``data_dir/cifar-10-batches-py``."""
        return self.data_dir / BATCHES_FOLDER

    def _use_npz(self) -> bool:
        if self.npz_path is None:
            return False
        if self.npz_path.is_file():
            return True
        if not self.download:
            raise FileNotFoundError(
                f"npz_path '{self.npz_path}' does not exist (working directory: {Path.cwd()}). Point "
                "npz_path (--data.init_args.npz_path) at an .npz with x_train, y_train [, x_test, y_test], "
                "or set npz_path null and download true to use the official dataset in data_dir."
            )
        warnings.warn(
            f"npz_path '{self.npz_path}' does not exist; using the official CIFAR-10 in '{self.batches_dir}' "
            "(download=True)",
            stacklevel=2,
        )
        return False

    def prepare_data(self) -> None:
        """Download the official dataset when it is the source, ``download=True`` and it is not there yet."""
        if self._use_npz() or not self.download or self._has_official_train():
            return
        from torchvision.datasets import CIFAR10

        try:
            CIFAR10(str(self.data_dir), train=True, download=True)  # verifies the archive's md5
        except (OSError, RuntimeError) as err:
            raise RuntimeError(
                f"Could not download CIFAR-10 into '{self.data_dir}' ({err}). Without network, copy the "
                f"official 'cifar-10-python.tar.gz' (extracted) into '{self.batches_dir}', or set npz_path "
                "(--data.init_args.npz_path) to an .npz such as ../shared/data/cifar10_train.npz."
            ) from err

    def _has_official_train(self) -> bool:
        return all((self.batches_dir / name).is_file() for name in TRAIN_BATCHES)

    def _load_arrays(self) -> dict[str, np.ndarray]:
        if self._use_npz():
            self._source_description = f"the npz file '{self.npz_path}'"
            return load_npz(self.npz_path)
        if not self._has_official_train():
            raise FileNotFoundError(
                "CIFAR-10 not found: expected the official python batches (data_batch_1..5[, test_batch]) "
                f"in "
                f"'{self.batches_dir.resolve()}'. Set download=True (--data.init_args.download true) to "
                "download them, data_dir (--data.init_args.data_dir) to the folder holding "
                f"'{BATCHES_FOLDER}', or npz_path (--data.init_args.npz_path) to an .npz with x_train, "
                "y_train, e.g. ../shared/data/cifar10_train.npz."
            )
        self._source_description = f"the official batches in '{self.batches_dir}'"
        return load_official_batches(self.batches_dir)

    # ------------------------------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        """Load the data once, carve the validation split and compute the normalisation statistics."""
        if self._splits:
            return
        arrays = self._load_arrays()
        x = torch.from_numpy(arrays["x_train"]).permute(0, 3, 1, 2).contiguous()  # HWC -> CHW
        y = torch.from_numpy(arrays["y_train"])
        if self.val_size >= x.shape[0]:
            raise ValueError(
                f"val_size={self.val_size} must be smaller than the {x.shape[0]} training images of "
                f"{self._source_description}"
            )
        n_train = x.shape[0] - self.val_size
        if self.num_train is not None:
            if self.num_train > n_train:
                raise ValueError(
                    f"num_train={self.num_train} exceeds the {n_train} training images left after val_size"
                )
            n_train = self.num_train
        self._splits["train"] = _ArrayDataset(x[:n_train], y[:n_train])
        self._splits["val"] = _ArrayDataset(x[x.shape[0] - self.val_size :], y[x.shape[0] - self.val_size :])
        if "x_test" in arrays:
            x_test = torch.from_numpy(arrays["x_test"]).permute(0, 3, 1, 2).contiguous()
            self._splits["test"] = _ArrayDataset(x_test, torch.from_numpy(arrays["y_test"]))
        if not self.stats:
            self.stats = compute_stats(self._splits["train"].images, self.normalization)
        if stage == "test":
            self._require_test()

    def _require_test(self) -> None:
        if "test" not in self._splits:
            raise RuntimeError(
                f"No test split: {self._source_description} has no test images (x_test/y_test in an .npz, "
                "test_batch in the official folder). Use `validate` for the validation split, or point "
                "npz_path/data_dir at data that includes the test set."
            )

    def split_sizes(self) -> dict[str, int]:
        """Number of images per loaded split, e.g. ``{"train": 49000, "val": 1000}`` (after ``setup``)."""
        return {name: len(dataset) for name, dataset in self._splits.items()}

    # ------------------------------------------------------------------------------- dataloaders
    def _transform(self, train: bool) -> BatchTransform:
        scale = 255.0 if self.normalization == "mean_image" else 1.0
        return BatchTransform(
            self.stats.get("mean"), self.stats.get("std"), self.augment and train, self.crop_padding, scale
        )

    def _loader(self, split: str, train: bool) -> DataLoader:
        if not self._splits:
            raise RuntimeError("call setup() before requesting a dataloader")
        generator = torch.Generator().manual_seed(self.seed) if self.seed is not None and train else None
        return DataLoader(
            self._splits[split],
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            generator=generator,
            num_workers=self.num_workers,
            collate_fn=self._transform(train),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        self._require_test()
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        """The test split when there is one, else the validation split."""
        return self._loader("test" if "test" in self._splits else "val", train=False)

    # ------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The normalisation mode and statistics, saved in Lightning checkpoints."""
        return {"normalization": self.normalization, **{k: v.clone() for k, v in self.stats.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore statistics saved by :meth:`state_dict` (they replace any computed in ``setup``)."""
        saved = state_dict.get("normalization")
        if saved != self.normalization:
            raise ValueError(
                f"the checkpoint's data statistics are for normalization={saved!r}, but this data module "
                f"uses normalization={self.normalization!r}"
            )
        self.stats = {k: v for k, v in state_dict.items() if k != "normalization"}


def compute_stats(images: torch.Tensor, normalization: NormalizationMode) -> dict[str, torch.Tensor]:
    """Normalisation statistics of uint8 images ``(N, 3, 32, 32)``.

    ``per_channel``: ``mean``, ``std`` of shape ``(3, 1, 1)`` on the [0, 1] scale; ``mean_image``: ``mean``
    ``(3, 32, 32)`` on the 0..255 scale (CS231n);
    ``none``: empty. Accumulated in float64 in chunks (no float copy of the whole set).
    """
    if normalization == "none":
        return {}
    n = images.shape[0]
    total = torch.zeros(images.shape[1:], dtype=torch.float64)
    total_sq = torch.zeros(images.shape[1:], dtype=torch.float64)
    for chunk in images.split(4096):
        chunk = chunk.to(torch.float64) / 255.0
        total += chunk.sum(0)
        total_sq += chunk.square().sum(0)
    if normalization == "mean_image":
        return {"mean": (total * (255.0 / n)).to(torch.float32)}
    pixels = n * images.shape[2] * images.shape[3]
    mean = total.sum((1, 2)) / pixels
    var = total_sq.sum((1, 2)) / pixels - mean.square()  # E[x^2] - E[x]^2 per channel
    std = var.clamp_min(1e-12).sqrt()
    return {"mean": mean.to(torch.float32).view(3, 1, 1), "std": std.to(torch.float32).view(3, 1, 1)}
