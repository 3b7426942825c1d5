"""``predictions.csv``: what ``cs231n predict`` writes into its run folder.

:class:`PredictionWriter` is a Lightning ``BasePredictionWriter`` (``write_interval="epoch"``). It reads the
identifiers from the predict batches ``(images, ids)`` of :class:`lightning_modules.data.CIFAR10DataModule`
(rows of the data's arrays, or the paths of ``predict_images``), the split they come from and its labels
from the data module's ``predict_source``, and the model's output from ``predict_step``, which may be
either

- class probabilities ``(B, C)`` (non-negative rows summing to 1): used as they are;
- class scores ``(B, C)``: the probabilities are their softmax;
- predicted class indices ``(B,)``: the writer runs the model once more on the batch's images for the
  scores (the same forward pass, under the trainer's precision), and reports the probability of the
  predicted class.

One CSV row per image, in the data's order, with the columns :data:`COLUMNS`, then ``label`` when the
split has labels:

    image        the image's row in the data's arrays (``x_test`` for the test split, ``x_train`` for the
                 validation split: ``y_train[image]`` is its label), or the image file's absolute path
    split        ``test``, ``val`` or ``files`` (empty for a data module without ``predict_source``)
    class_id     the predicted class
    class_name   its name (the data module's ``classes``; the id again without them)
    probability  softmax probability of the predicted class
    label        the true class of a test or validation image

The file goes to ``trainer.log_dir`` (the logger's run folder, ``default_root_dir`` without a logger), and
its path is printed. Distributed (DDP): Lightning's predict sampler gives rank ``r`` of ``W`` the images
``r, r + W, r + 2W, ...``; every rank's rows are gathered (``torch.distributed.all_gather_object``) and
rank 0 interleaves them back into the data's order and writes the one file.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from itertools import zip_longest
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

COLUMNS: tuple[str, ...] = ("image", "split", "class_id", "class_name", "probability")
LABEL_COLUMN = "label"
FILENAME = "predictions.csv"

# A row of the CSV: (image, split, class_id, class_name, probability, label); label None when unknown.
_Row = tuple[int | str, str, int, str, float, int | None]


def class_probabilities(output: torch.Tensor, scores: torch.Tensor | None = None) -> torch.Tensor:
    """The class probabilities ``(B, C)`` behind a ``predict_step`` output.

    Args:
        output: probabilities ``(B, C)``, scores ``(B, C)`` or predicted class indices ``(B,)``.
        scores: the model's scores ``(B, C)`` for the batch; needed only when ``output`` holds indices.

    Returns:
        float32 ``(B, C)``, each row non-negative and summing to 1.
    """
    if output.ndim == 2 and output.is_floating_point():
        # rows of probabilities rounded to the output's dtype sum to 1 within its epsilon (bf16: 0.008)
        atol = max(1e-4, torch.finfo(output.dtype).eps)
        output = output.float()
        is_distribution = bool((output >= 0).all()) and torch.allclose(
            output.sum(1), torch.ones(output.shape[0], device=output.device), atol=atol
        )
        return output if is_distribution else output.softmax(1)
    if output.ndim == 1 and not output.is_floating_point():
        if scores is None:
            raise ValueError("predict_step returned class indices (B,): pass the model's scores as `scores`")
        return scores.float().softmax(1)
    raise ValueError(
        "predict_step must return class probabilities or scores (B, num_classes), or class indices (B,); "
        f"got {output.dtype} {tuple(output.shape)}"
    )


def interleave_ranks(per_rank: Sequence[Sequence[_Row]]) -> list[_Row]:
    """Rows of every rank -> the data's order, given that rank ``r`` of ``W`` predicted the images
    ``r, r + W, ...`` (Lightning's predict sampler); an image seen twice is kept once.

    Args:
        per_rank: each rank's rows, in the order that rank predicted them.

    Returns:
        The rows, rank-interleaved, without repeated images.
    """
    rows: dict[int | str, _Row] = {}
    for group in zip_longest(*per_rank):
        for row in group:
            if row is not None:
                rows.setdefault(row[0], row)
    return list(rows.values())


class PredictionWriter(BasePredictionWriter):
    """Writes ``predictions.csv`` (module doc) into the run folder at the end of ``predict``.

    Args:
        filename: name of the file inside ``trainer.log_dir``.
    """

    def __init__(self, filename: str = FILENAME) -> None:
        super().__init__(write_interval="epoch")
        self.filename = filename
        self.rows: list[_Row] = []
        self.path: Path | None = None

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.rows = []

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Turn one batch's ``(images, ids)`` and ``predict_step`` output into rows."""
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ValueError(
                "PredictionWriter needs predict batches (images, ids), as CIFAR10DataModule's "
                f"predict_dataloader gives; got a {type(batch).__name__}"
            )
        if not isinstance(outputs, torch.Tensor):
            raise ValueError(
                "PredictionWriter needs predict_step to return a tensor: class probabilities or scores "
                f"(B, num_classes), or class indices (B,); got a {type(outputs).__name__}"
            )
        images, ids = batch
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        scores = None
        if outputs.ndim == 1:  # class indices: score the batch again
            with trainer.precision_plugin.forward_context():
                scores = pl_module(images)
        probabilities = class_probabilities(outputs, scores)
        class_ids = outputs if outputs.ndim == 1 else probabilities.argmax(1)
        chosen = probabilities.gather(1, class_ids.long().view(-1, 1)).squeeze(1)
        names = getattr(trainer.datamodule, "classes", None)
        source = getattr(trainer.datamodule, "predict_source", None)
        split = getattr(source, "split", "")
        labels = getattr(source, "labels", None) or {}
        for image, class_id, probability in zip(ids, class_ids.tolist(), chosen.tolist()):
            name = names[class_id] if names is not None and 0 <= class_id < len(names) else str(class_id)
            self.rows.append((image, split, class_id, name, probability, labels.get(image)))

    def write_on_epoch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:
        """Gather the rows of every rank, write the CSV on rank 0 and print its path."""
        rows = self.rows
        if trainer.world_size > 1:
            per_rank: list[list[_Row] | None] = [None] * trainer.world_size
            torch.distributed.all_gather_object(per_rank, rows)
            rows = interleave_ranks(per_rank)
        # `log_dir` broadcasts rank 0's folder: every rank must ask
        self.path = (Path(trainer.log_dir or trainer.default_root_dir) / self.filename).resolve()
        if not trainer.is_global_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        labelled = bool(rows) and all(row[5] is not None for row in rows)
        with open(self.path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*COLUMNS, *([LABEL_COLUMN] if labelled else [])])
            writer.writerows(
                (image, split, class_id, name, f"{p:.6f}", *([label] if labelled else []))
                for image, split, class_id, name, p, label in rows
            )
        message = f"cs231n predict: wrote {len(rows)} predictions to {self.path}"
        bar = trainer.progress_bar_callback
        if bar is not None and bar.is_enabled:
            bar.print(message)  # on a line of its own, not inside the progress bar's
        else:
            print(message, flush=True)
