"""CIFAR-10 as a ``LightningDataModule``: official batches or an ``.npz``, CS231n splits, batched transforms.

Sources (the first that applies):
    1. ``npz_path``, when that file exists: arrays ``x_train`` ``(N, 32, 32, 3)`` uint8 (HWC, RGB) and
       ``y_train`` ``(N,)`` int, optionally ``x_test``/``y_test`` in the same layout (the layout of
       ``../shared/data/cifar10_train.npz``).
    2. The official python batches in ``data_dir/cifar-10-batches-py`` (``data_batch_1..5``, ``test_batch``),
       downloaded and checksum-verified by :class:`torchvision.datasets.CIFAR10` when ``download=True``.
A missing ``npz_path`` falls back to (2) only when ``download=True`` (with a warning); otherwise it is an
error, so that a typo does not silently train on other data. Relative paths are resolved against the
working directory; every "not found" message gives the absolute path looked for and that directory. A
failed download is one error with its cause, and removes the files and folders the attempt created.

Splits, CS231n style: the validation set is the LAST ``val_size`` training images (1,000 of 50,000 by
default), the training set the images before it (optionally only the first ``num_train`` of them).
``holdout`` sets the last images aside before splitting, for selecting hyper-parameters on a split carved
from the training images: with ``holdout=1000`` the validation set is images 48,000..48,999 and the
reported validation images (the last 1,000) are never loaded.

Images are kept in memory as uint8 ``(N, 3, 32, 32)``; each batch is indexed in one go and then
augmented (torchvision transforms v2 on uint8 tensors, no PIL), converted to float32 in [0, 1] and
normalised by the batch transform (``pixel_normalization``):
    per_channel: x = (x - mean_c) / std_c,  mean/std per channel over the training split
    mean_image:  x = 255 x - mean_image,   pixel values minus the mean training image (3, 32, 32),
                 both on the 0..255 scale, exactly as CS231n's ``get_CIFAR10_data`` (whose learning rates
                 and weight scales assume that scale)
    none:        x in [0, 1]
The statistics are computed once on the training split and saved in checkpoints (``state_dict``), so
``validate``/``test``/``predict`` and a resumed run use the same numbers.

Prediction (``predict``) batches are ``(images, ids)``: the normalised images and one identifier per
image, from the first source that applies:
    1. ``predict_images``: image files (PNG/JPEG/WebP/GIF of any size and mode, or glob patterns), decoded
       to RGB, the shorter side resized to 32 (antialiased) and centre-cropped to 32x32, normalised with
       the training statistics of the checkpoint; ids are the absolute file paths (a list of ``str``). The
       training data is not loaded for this (nor downloaded) unless no checkpoint provides the statistics.
    2. the test split, when the data has one; ids are the rows of ``x_test`` (an int64 tensor).
    3. otherwise the validation split (as ``validate`` sees it); ids are its rows of ``x_train`` (with the
       default 50,000 images and ``val_size`` 1,000: 49,000..49,999), not its positions in the split.
The rows count in the source's arrays: the ``.npz``'s, or the official ``data_batch_1..5`` concatenated
(``test_batch`` for the test split). :attr:`CIFAR10DataModule.predict_source` tells the prediction writer
which split the ids are rows of and their labels.
"""

from __future__ import annotations

import glob
import os
import pickle
import random
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import v2

from custom_ops.deprecation import renamed_keyword
from torch_cs231n.data import CLASSES, CIFAR10DataError, load_npz, looked_for
from torch_cs231n.data import IMAGE_SHAPE as IMAGE_SHAPE  # re-exported: moved to torch_cs231n.data
from torch_cs231n.data import check_split as _check_split

from .seeding import EpochShuffle

PixelNormalization = Literal["per_channel", "mean_image", "none"]
PIXEL_NORMALIZATIONS: tuple[str, ...] = ("per_channel", "mean_image", "none")
BATCHES_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"


class CIFAR10UnavailableError(RuntimeError):
    """The data a run needs is not there: the source has no test split, or the download failed. The
    message says what to use instead."""


class ImageFileError(ValueError):
    """A ``predict_images`` file is empty or cannot be decoded as an image; the message names it."""


# ---------------------------------------------------------------------------------------------- loading
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
        raise FileNotFoundError(f"missing CIFAR-10 batch file(s) {missing} in {looked_for(folder)}")
    xs, ys = zip(*(_load_batch(folder / name) for name in TRAIN_BATCHES))
    out = {"x_train": np.concatenate(xs), "y_train": np.concatenate(ys)}
    if (folder / TEST_BATCH).is_file():
        out["x_test"], out["y_test"] = _load_batch(folder / TEST_BATCH)
    return out


def expand_image_paths(patterns: Sequence[str]) -> list[Path]:
    """The image files named by ``patterns``.

    Args:
        patterns: file paths or glob patterns (``~`` and ``**`` allowed).

    Returns:
        The files in the order of ``patterns``, each pattern's matches sorted, duplicates dropped.

    Raises:
        FileNotFoundError: a pattern matches no file, or a path does not exist or is a folder.
    """
    paths: dict[Path, None] = {}
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        if glob.has_magic(expanded):
            matches = sorted(Path(m) for m in glob.glob(expanded, recursive=True) if Path(m).is_file())
            if not matches:
                raise FileNotFoundError(
                    f"predict_images (--data.init_args.predict_images): the pattern '{pattern}' matches no "
                    f"file; looked for {looked_for(expanded)}"
                )
        elif Path(expanded).is_file():
            matches = [Path(expanded)]
        else:
            what = (
                "is a folder (give a pattern such as folder/*.jpg)"
                if Path(expanded).is_dir()
                else "not found"
            )
            raise FileNotFoundError(
                f"predict_images (--data.init_args.predict_images): '{pattern}' {what}; looked for "
                f"{looked_for(expanded)}"
            )
        paths.update(dict.fromkeys(matches))
    return list(paths)


def load_image(path: str | Path, size: int = 32) -> torch.Tensor:
    """Read an image the way the model sees CIFAR-10: RGB, ``size`` x ``size``.

    Args:
        path: a PNG, JPEG, WebP or GIF file of any size; grey, RGB or with alpha; 8 or 16 bit.
        size: side of the square output.

    Returns:
        uint8 ``(3, size, size)``: the shorter side resized to ``size`` (antialiased), then the centre crop.

    Raises:
        ImageFileError: (a ``ValueError``) the file is empty, or cannot be read or decoded as an image; the
            message names it.
    """
    try:
        raw = Path(path).read_bytes()
        if not raw:
            raise ValueError("the file is empty (0 bytes)")
        image = decode_image(torch.frombuffer(bytearray(raw), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except (OSError, RuntimeError, ValueError) as err:
        raise ImageFileError(
            f"predict_images (--data.init_args.predict_images): cannot read {looked_for(path)} as an image "
            f"(PNG, JPEG, WebP or GIF): {err}"
        ) from err
    image = v2.functional.to_dtype(image, torch.uint8, scale=True)  # 16-bit PNGs decode to uint16
    image = v2.functional.resize(image, size, antialias=True)
    return v2.functional.center_crop(image, [size, size])


# ------------------------------------------------------------------------------------------ batching
@dataclass(frozen=True)
class PredictSource:
    """What the ids of the predict batches identify.

    Attributes:
        split: ``"test"`` or ``"val"`` (the ids are rows of ``x_test`` / ``x_train``), or ``"files"`` (the
            ids are the paths of ``predict_images``).
        labels: id -> true label, when the split has labels (``None`` for files).
    """

    split: str
    labels: dict[int, int] | None = None


class _ArrayDataset(Dataset):
    """Images ``(N, 3, 32, 32)`` uint8 and one target per image: labels ``(N,)`` for training and
    evaluation, identifiers for prediction (split indices ``(N,)``, or a list of file paths).
    ``__getitems__`` fetches a batch in one index."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor | list[str]):
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        return self.images[index], self.targets[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | list[str]]:
        index = torch.as_tensor(indices, dtype=torch.long)
        if isinstance(self.targets, torch.Tensor):
            return self.images[index], self.targets[index]
        return self.images[index], [self.targets[i] for i in indices]


class BatchTransform:
    """The collate function: uint8 batch ``(B, 3, 32, 32)`` -> augmented, normalised float32 batch; the
    batch's second element (labels, or prediction identifiers) passes through unchanged.

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

    def __call__(self, batch: tuple[torch.Tensor, Any]) -> tuple[torch.Tensor, Any]:
        images, targets = batch
        if self.augment is not None:
            images = torch.stack([self.augment(image) for image in images])
        x = images.to(torch.float32).mul_(self.scale / 255.0)
        if self.mean is not None:
            x.sub_(self.mean)
        if self.std is not None:
            x.div_(self.std)
        return x, targets


# -------------------------------------------------------------------------------------- data module
class CIFAR10DataModule(pl.LightningDataModule):
    """CIFAR-10 with the CS231n train/val split; batches ``(B, 3, 32, 32)`` float32 and ``(B,)`` int64
    (labels; for ``predict``, identifiers: see the module doc).

    Args:
        data_dir: folder holding (or receiving) ``cifar-10-batches-py``.
        npz_path: an ``.npz`` with ``x_train``, ``y_train`` [, ``x_test``, ``y_test``]; used when it exists.
        download: download the official dataset into ``data_dir`` (checksum-verified) when needed.
        val_size: number of validation images, taken from the END of the training set.
        holdout: images at the very end set aside (never loaded) before the split: ``1000`` selects
            hyper-parameters on the 1,000 images before the reported validation images (module doc).
        num_train: use only the first ``num_train`` training images (``None``: all of them).
        batch_size: training batch size.
        eval_batch_size: batch size for val/test/predict (``None``: ``batch_size``).
        num_workers: DataLoader worker processes.
        pixel_normalization: ``"per_channel"``, ``"mean_image"`` (CS231n) or ``"none"`` (values in [0, 1]).
        augment: random crop (``crop_padding`` pixels of zero padding) and horizontal flip in training.
        crop_padding: padding of the random crop.
        seed: seed of the training shuffle (``None``: the run's ``seed_everything`` value, else a random
            one). Each epoch's order is a function of (seed, epoch) (:class:`~lightning_modules.seeding.
            EpochShuffle`), and the seed is saved in checkpoints, so a resumed run shuffles as the
            uninterrupted one. Augmentation draws from the global RNG, which the CLI's
            :class:`~lightning_modules.seeding.EpochSeeding` reseeds per epoch.
        predict_images: image files or glob patterns (a list, or one string) to run ``predict`` on instead
            of the test or validation split (module doc); not saved as a hyper-parameter of the run.
        normalization: deprecated old name of ``pixel_normalization`` (one release): a ``FutureWarning``
            naming ``--data.init_args.pixel_normalization``; a ``TypeError`` with a non-default
            ``pixel_normalization`` too.
    """

    num_classes = len(CLASSES)
    classes = CLASSES

    def __init__(
        self,
        data_dir: str = "data/cifar10",
        npz_path: str | None = None,
        download: bool = False,
        val_size: int = 1000,
        holdout: int = 0,
        num_train: int | None = None,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pixel_normalization: PixelNormalization = "per_channel",
        augment: bool = False,
        crop_padding: int = 4,
        seed: int | None = None,
        predict_images: list[str] | str | None = None,
        normalization: PixelNormalization | None = None,
    ):
        super().__init__()
        pixel_normalization = renamed_keyword(
            "CIFAR10DataModule",
            "normalization",
            normalization,
            "pixel_normalization",
            pixel_normalization,
            "per_channel",
            new_key="--data.init_args.pixel_normalization",
        )
        if pixel_normalization not in PIXEL_NORMALIZATIONS:
            raise ValueError(
                f"pixel_normalization must be one of {PIXEL_NORMALIZATIONS}, got {pixel_normalization!r}"
            )
        non_negative = {
            "val_size": val_size,
            "holdout": holdout,
            "num_workers": num_workers,
            "crop_padding": crop_padding,
        }
        for name, value in non_negative.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        positive = {"batch_size": batch_size, "eval_batch_size": eval_batch_size, "num_train": num_train}
        for name, value in positive.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(predict_images, (str, Path)):
            predict_images = [predict_images]
        if predict_images is not None and (
            not isinstance(predict_images, Sequence)
            or not predict_images
            or not all(isinstance(p, (str, Path)) and str(p) for p in predict_images)
        ):
            raise ValueError(
                "predict_images (--data.init_args.predict_images) must be an image file or glob pattern, or "
                f"a non-empty list of them, e.g. '[photo.jpg, photos/*.png]', got {predict_images!r}"
            )
        # `predict_images` belongs to one `predict` call, not to the trained run; `normalization` is the
        # deprecated name of `pixel_normalization` (resolved above: the hyper-parameters record the new name).
        self.save_hyperparameters(ignore=["normalization", "predict_images"])
        self.data_dir = Path(data_dir)
        self.npz_path = Path(npz_path) if npz_path is not None else None
        self.download = download
        self.val_size = val_size
        self.holdout = holdout
        self.num_train = num_train
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pixel_normalization = pixel_normalization
        self.augment = augment
        self.crop_padding = crop_padding
        self.seed = seed
        self._shuffle_seed = seed
        self.predict_images = None if predict_images is None else [str(p) for p in predict_images]
        self.stats: dict[str, torch.Tensor] = {}
        self._splits: dict[str, _ArrayDataset] = {}
        self._split_rows: dict[str, torch.Tensor] = {}  # split -> its images' rows in the source's arrays
        self._predict_files: _ArrayDataset | None = None
        self.predict_source: PredictSource | None = None  # set by predict_dataloader
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
                f"npz_path '{self.npz_path}' does not exist; looked for {looked_for(self.npz_path)}. Point "
                "npz_path (--data.init_args.npz_path) at an .npz with x_train, y_train [, x_test, y_test], "
                "or set npz_path null and download true to use the official dataset in data_dir."
            )
        warnings.warn(
            f"npz_path '{self.npz_path}' does not exist (looked for {looked_for(self.npz_path)}); using the "
            f"official CIFAR-10 in '{self.batches_dir.resolve()}' (download=True)",
            stacklevel=2,
        )
        return False

    def _predicting_images(self) -> bool:
        """``predict`` with ``predict_images``: the data set itself is not needed."""
        return self.predict_images is not None and self.trainer is not None and self.trainer.predicting

    def prepare_data(self) -> None:
        """Download the official dataset when it is the source, ``download=True`` and it is not there yet.

        Raises:
            CIFAR10UnavailableError: (a ``RuntimeError``) the download failed; the message gives the cause
                and the options to use instead. The files and folders the attempt created are removed first
                (files that were there before stay).
        """
        if self._predicting_images() or self._use_npz() or not self.download or self._has_official_train():
            return
        from torchvision.datasets import CIFAR10

        created = [p for p in (self.data_dir, *self.data_dir.parents) if not p.exists()]
        existing = set(self.data_dir.rglob("*")) if self.data_dir.is_dir() else set()
        try:
            CIFAR10(str(self.data_dir), train=True, download=True)  # verifies the archive's md5
        except BaseException as err:
            _remove_new_paths(self.data_dir, existing, created)
            if not isinstance(err, Exception):  # Ctrl-C: cleaned up, and stays an interrupt
                raise
            missing_npz = (
                f" (npz_path '{self.npz_path}' does not exist, so the official dataset was to be downloaded; "
                f"looked for {looked_for(self.npz_path)})"
                if self.npz_path is not None
                else ""
            )
            raise CIFAR10UnavailableError(
                f"Could not download CIFAR-10 into {looked_for(self.data_dir)}{missing_npz}: "
                f"{type(err).__name__}: {err}. The files and folders this attempt created were removed. "
                "Instead, use an .npz with x_train, y_train (--data.init_args.npz_path FILE, e.g. "
                "../shared/data/cifar10_train.npz), or the official python batches already on disk "
                "(--data.init_args.download false --data.init_args.data_dir FOLDER, where FOLDER holds "
                f"'{BATCHES_FOLDER}' extracted from cifar-10-python.tar.gz)."
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
                f"in {looked_for(self.batches_dir)}. Set download=True (--data.init_args.download true) to "
                "download them, data_dir (--data.init_args.data_dir) to the folder holding "
                f"'{BATCHES_FOLDER}', or npz_path (--data.init_args.npz_path) to an .npz with x_train, "
                "y_train, e.g. ../shared/data/cifar10_train.npz."
            )
        self._source_description = f"the official batches in '{self.batches_dir}'"
        return load_official_batches(self.batches_dir)

    # ------------------------------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        """Load the data once, carve the validation split and compute the normalisation statistics; for
        ``predict`` with ``predict_images``, read those images instead (the statistics then come from the
        checkpoint)."""
        if stage == "predict" and self.predict_images is not None:
            if self._predict_files is None:
                paths = [path.resolve() for path in expand_image_paths(self.predict_images)]
                images = torch.stack([load_image(path) for path in paths])
                self._predict_files = _ArrayDataset(images, [str(path) for path in paths])
            return
        self._load_splits()
        if stage == "test":
            self._require_test()

    def _load_splits(self) -> None:
        if self._splits:
            return
        arrays = self._load_arrays()
        x = torch.from_numpy(arrays["x_train"]).permute(0, 3, 1, 2).contiguous()  # HWC -> CHW
        y = torch.from_numpy(arrays["y_train"])
        if self.val_size + self.holdout >= x.shape[0]:
            raise CIFAR10DataError(
                f"val_size={self.val_size} plus holdout={self.holdout} must be smaller than the "
                f"{x.shape[0]} training images of {self._source_description}"
            )
        x, y = x[: x.shape[0] - self.holdout], y[: y.shape[0] - self.holdout]
        n_train = x.shape[0] - self.val_size
        if self.num_train is not None:
            if self.num_train > n_train:
                raise CIFAR10DataError(
                    f"num_train={self.num_train} exceeds the {n_train} training images left after val_size"
                )
            n_train = self.num_train
        val_start = x.shape[0] - self.val_size
        self._splits["train"] = _ArrayDataset(x[:n_train], y[:n_train])
        self._splits["val"] = _ArrayDataset(x[val_start:], y[val_start:])
        self._split_rows = {"train": torch.arange(n_train), "val": torch.arange(val_start, x.shape[0])}
        if "x_test" in arrays:
            x_test = torch.from_numpy(arrays["x_test"]).permute(0, 3, 1, 2).contiguous()
            self._splits["test"] = _ArrayDataset(x_test, torch.from_numpy(arrays["y_test"]))
            self._split_rows["test"] = torch.arange(x_test.shape[0])
        if not self.stats:
            self.stats = compute_stats(self._splits["train"].images, self.pixel_normalization)

    def _require_test(self) -> None:
        if "test" not in self._splits:
            raise CIFAR10UnavailableError(
                f"No test split: {self._source_description} has no test images (x_test/y_test in an .npz, "
                "test_batch in the official folder). Use `validate` for the validation split, or point "
                "npz_path/data_dir at data that includes the test set."
            )

    def split_sizes(self) -> dict[str, int]:
        """Number of images per loaded split, e.g. ``{"train": 49000, "val": 1000}`` (after ``setup``)."""
        return {name: len(dataset) for name, dataset in self._splits.items()}

    # ------------------------------------------------------------------------------- dataloaders
    def _transform(self, train: bool) -> BatchTransform:
        scale = 255.0 if self.pixel_normalization == "mean_image" else 1.0
        return BatchTransform(
            self.stats.get("mean"), self.stats.get("std"), self.augment and train, self.crop_padding, scale
        )

    def _loader(self, split: str | _ArrayDataset, train: bool) -> DataLoader:
        if isinstance(split, str) and not self._splits:
            raise RuntimeError("call setup() before requesting a dataloader")
        dataset = self._splits[split] if isinstance(split, str) else split
        sampler = None
        if train:  # a resumed run starts at the checkpoint's epoch (restored before the loaders are made)
            epoch = self.trainer.current_epoch if self.trainer is not None else 0
            sampler = EpochShuffle(dataset, self.shuffle_seed, epoch)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            generator=None if sampler is None else sampler.loader_generator,
            num_workers=self.num_workers,
            collate_fn=self._transform(train),
            # Training workers start anew each epoch, seeded from that epoch's loader generator: persistent
            # ones would carry their RNG state across epochs, which a resumed run cannot reproduce.
            persistent_workers=self.num_workers > 0 and not train,
        )

    @property
    def shuffle_seed(self) -> int:
        """The training shuffle's seed: ``seed``, else ``seed_everything``'s (``PL_GLOBAL_SEED``), else a
        random one; fixed at first use and restored from checkpoints."""
        if self._shuffle_seed is None:
            env = os.environ.get("PL_GLOBAL_SEED")
            self._shuffle_seed = int(env) if env is not None else random.SystemRandom().randrange(2**32)
        return self._shuffle_seed

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        self._require_test()
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        """Batches ``(images, ids)`` of ``predict_images`` (ids: file paths), else of the test split when
        there is one, else of the validation split (ids: the images' rows in the source's ``x_test`` /
        ``x_train``); sets :attr:`predict_source`."""
        if self.predict_images is not None:
            if self._predict_files is None:
                raise RuntimeError("call setup('predict') before requesting the predict dataloader")
            if self.pixel_normalization != "none" and not self.stats:  # no checkpoint restored them
                self._load_splits()
            dataset, source = self._predict_files, f"{len(self._predict_files)} file(s) of predict_images"
            self.predict_source = PredictSource("files")
        elif not self._splits:
            raise RuntimeError("call setup() before requesting a dataloader")
        else:
            split = "test" if "test" in self._splits else "val"
            images, labels = self._splits[split].images, self._splits[split].targets
            rows = self._split_rows[split]
            dataset = _ArrayDataset(images, rows)
            self.predict_source = PredictSource(split, dict(zip(rows.tolist(), labels.tolist())))
            reason = "" if split == "test" else " (no test split in the data and no predict_images)"
            source = f"the {split} split of {self._source_description}, {images.shape[0]} images{reason}"
        rank_zero_info(f"Predicting on {source}")
        return self._loader(dataset, train=False)

    # ------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The normalisation mode and statistics, and the shuffle seed, saved in Lightning checkpoints."""
        return {
            "pixel_normalization": self.pixel_normalization,
            "shuffle_seed": self.shuffle_seed,
            **{k: v.clone() for k, v in self.stats.items()},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore statistics saved by :meth:`state_dict` (they replace any computed in ``setup``)."""
        saved = state_dict.get("pixel_normalization", state_dict.get("normalization"))  # older checkpoints
        if saved != self.pixel_normalization:
            raise ValueError(
                f"the checkpoint's data statistics are for pixel_normalization={saved!r}, but this data "
                f"module uses pixel_normalization={self.pixel_normalization!r}"
            )
        if self.seed is None and "shuffle_seed" in state_dict:  # an explicit `seed` argument wins
            self._shuffle_seed = int(state_dict["shuffle_seed"])
        meta = ("pixel_normalization", "normalization", "shuffle_seed")
        self.stats = {k: v for k, v in state_dict.items() if k not in meta}


def _remove_new_paths(folder: Path, existing: set[Path], created: list[Path]) -> None:
    """Remove what appeared in ``folder`` since ``existing`` was listed, then the folders of ``created``
    (``folder`` and those of its parents that did not exist), deepest first, when they are empty."""
    if folder.is_dir():
        new = set(folder.rglob("*")) - existing
        for path in [p for p in new if p.parent not in new]:  # the topmost new entries
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    for path in created:  # deepest first
        try:
            path.rmdir()
        except OSError:  # not empty (someone else wrote there) or already gone
            break


def compute_stats(images: torch.Tensor, pixel_normalization: PixelNormalization) -> dict[str, torch.Tensor]:
    """Normalisation statistics of uint8 images ``(N, 3, 32, 32)``.

    ``per_channel``: ``mean``, ``std`` of shape ``(3, 1, 1)`` on the [0, 1] scale; ``mean_image``: ``mean``
    ``(3, 32, 32)`` on the 0..255 scale (CS231n);
    ``none``: empty. Accumulated in float64 in chunks (no float copy of the whole set).
    """
    if pixel_normalization == "none":
        return {}
    n = images.shape[0]
    total = torch.zeros(images.shape[1:], dtype=torch.float64)
    total_sq = torch.zeros(images.shape[1:], dtype=torch.float64)
    for chunk in images.split(4096):
        chunk = chunk.to(torch.float64) / 255.0
        total += chunk.sum(0)
        total_sq += chunk.square().sum(0)
    if pixel_normalization == "mean_image":
        return {"mean": (total * (255.0 / n)).to(torch.float32)}
    pixels = n * images.shape[2] * images.shape[3]
    mean = total.sum((1, 2)) / pixels
    var = total_sq.sum((1, 2)) / pixels - mean.square()  # E[x^2] - E[x]^2 per channel
    std = var.clamp_min(1e-12).sqrt()
    return {"mean": mean.to(torch.float32).view(3, 1, 1), "std": std.to(torch.float32).view(3, 1, 1)}
