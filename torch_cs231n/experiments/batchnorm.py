"""Batch normalisation: robustness to the weight scale, dependence on the batch size, and layer norm.

CS231n's study (assignment 2, ``BatchNormalization``), on a 6-layer fully connected net (hidden
``[100] * 5``) and the first 1,000 training images, trained with Adam for 10 epochs:

1. Weight scale: without and with batch norm, for each weight scale of a log grid (20 from 1e-4 to 1 by
   default), Adam at lr 1e-3, batch 50; the best training and validation accuracy over the epochs and the
   mean training loss of the last epoch. What it shows: without normalisation only a narrow band of scales
   trains (too small and the signal vanishes through the layers, too large and it explodes); with batch
   norm, which rescales every layer's pre-activations, the net trains over a far wider range of scales.
2. Batch size: no normalisation, batch norm and layer norm at batch sizes 5, 10 and 50 (weight scale 2e-2,
   lr ``10**-3.5``, as the course); training and validation accuracy per epoch (measured in eval mode, batch
   norm with its running averages). What it shows: batch norm suffers at small batches, whose means and
   variances are noisy estimates of the running averages used at test time, and falls behind the net
   without normalisation; layer norm, which normalises each example over its own features, keeps up with
   it.

Data, training and the common options: :mod:`torch_cs231n.experiments._training`.

``cs231n experiment batchnorm [--weight-scales W ...] [--batch-size 50] [--batch-sizes 5 10 50]
[--num-train 1000] [--epochs 10] [--data NPZ] [--ops builtin] [--out DIR] [--json PATH] [--seed 0]``

JSON (``batchnorm.json``)::

    {"data": path, "num_train", "num_val", "epochs", "hidden_dims", "ops", "seed",
     "weight_scale_sweep": {"lr", "batch_size", "weight_scales": [W],
         "runs": [{"normalization": null | "batchnorm", "best_train_acc": [W], "best_val_acc": [W],
                   "final_loss": [W] (mean loss of the last epoch; null where the run diverged),
                   "diverged": [W]}]},
     "batch_size_study": {"lr", "weight_scale", "batch_sizes": [B],
         "runs": [{"normalization": null | "batchnorm" | "layernorm", "batch_size",
                   "train_acc": [per epoch], "val_acc": [per epoch], "diverged"}]},
     "seconds": run time of the study}
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from torch_cs231n.nets.models import Ops
from torch_cs231n.nets.optim import Adam
from torch_cs231n.tools.command import positive_float, positive_int

from ._training import (
    Splits,
    add_common_arguments,
    add_list_argument,
    epoch_mean,
    plot_accuracies,
    run_experiment,
    study_result,
    train_fc_net,
)

HIDDEN_DIMS: tuple[int, ...] = (100, 100, 100, 100, 100)
WEIGHT_SCALES: tuple[float, ...] = tuple(float(v) for v in np.logspace(-4, 0, 20))
BATCH_SIZES: tuple[int, ...] = (5, 10, 50)
SWEEP_LR = 1e-3
BATCH_SIZE_LR = 10**-3.5
BATCH_SIZE_WEIGHT_SCALE = 2e-2


def _label(normalization: str | None) -> str:
    return normalization or "no norm"


def batchnorm_study(
    data: Splits,
    weight_scales: Sequence[float] = WEIGHT_SCALES,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    epochs: int = 10,
    batch_size: int = 50,
    ops: Ops = "manual",
    seed: int = 0,
) -> dict[str, Any]:
    """Run the weight-scale sweep and the batch-size study on ``data``; see the module docstring.

    Args:
        data: the splits (:func:`~torch_cs231n.experiments._training.load_cifar10`).
        weight_scales: initial weight stds of the sweep.
        batch_sizes: batch sizes of the batch-size study.
        epochs: passes over the training images, in both parts.
        batch_size: images per update in the sweep.
        ops: ``"manual"`` or ``"builtin"``.
        seed: seed of every run.

    Returns:
        The JSON of the module docstring, without ``data`` and ``seconds``.

    Examples::

        >>> from torch_cs231n.experiments._training import random_splits
        >>> study = batchnorm_study(random_splits(20, 4), [1e-2, 1e-1], [5], epochs=1, batch_size=10)
        >>> [len(run["best_val_acc"]) for run in study["weight_scale_sweep"]["runs"]]
        [2, 2]
        >>> [run["normalization"] for run in study["batch_size_study"]["runs"]]
        [None, 'batchnorm', 'layernorm']
    """
    common = {"epochs": epochs, "seed": seed, "ops": ops}
    sweep = []
    for normalization in (None, "batchnorm"):
        runs = [
            train_fc_net(
                data,
                HIDDEN_DIMS,
                optimizer=Adam,
                lr=SWEEP_LR,
                weight_scale=scale,
                batch_size=batch_size,
                normalization=normalization,
                **common,
            )
            for scale in weight_scales
        ]
        sweep.append(
            {
                "normalization": normalization,
                "best_train_acc": [max(run["train_acc"]) for run in runs],
                "best_val_acc": [max(run["val_acc"]) for run in runs],
                "final_loss": [
                    None if run["diverged"] else epoch_mean(run["loss"], epochs)[-1] for run in runs
                ],
                "diverged": [run["diverged"] for run in runs],
            }
        )

    by_batch = []
    for normalization in (None, "batchnorm", "layernorm"):
        for size in batch_sizes:
            history = train_fc_net(
                data,
                HIDDEN_DIMS,
                optimizer=Adam,
                lr=BATCH_SIZE_LR,
                weight_scale=BATCH_SIZE_WEIGHT_SCALE,
                batch_size=size,
                normalization=normalization,
                **common,
            )
            by_batch.append(
                {
                    "normalization": normalization,
                    "batch_size": size,
                    "train_acc": history["train_acc"],
                    "val_acc": history["val_acc"],
                    "diverged": history["diverged"],
                }
            )
    return study_result(
        data,
        epochs=epochs,
        hidden_dims=list(HIDDEN_DIMS),
        ops=ops,
        seed=seed,
        weight_scale_sweep={
            "lr": SWEEP_LR,
            "batch_size": batch_size,
            "weight_scales": list(weight_scales),
            "runs": sweep,
        },
        batch_size_study={
            "lr": BATCH_SIZE_LR,
            "weight_scale": BATCH_SIZE_WEIGHT_SCALE,
            "batch_sizes": list(batch_sizes),
            "runs": by_batch,
        },
    )


def format_table(study: dict[str, Any]) -> str:
    """The sweep (one line per weight scale) and the batch-size study (one line per run)."""
    sweep = study["weight_scale_sweep"]
    names = [_label(run["normalization"]) for run in sweep["runs"]]
    lines = [
        "weight scale sweep: best val accuracy / final training loss",
        f"{'scale':>9} " + " ".join(f"{name:>20}" for name in names),
    ]
    for k, scale in enumerate(sweep["weight_scales"]):
        cells = []
        for run in sweep["runs"]:
            loss = run["final_loss"][k]
            cells.append(
                f"{run['best_val_acc'][k]:>8.3f} / {'diverged' if loss is None else f'{loss:.3g}':>9}"
            )
        lines.append(f"{scale:>9.2e} " + " ".join(f"{cell:>20}" for cell in cells))
    lines.append("\nbatch size study: accuracy after the last epoch (best val)")
    lines.append(f"{'normalization':<13} {'batch':>5} {'train':>7} {'val':>7} {'best val':>8}")
    for run in study["batch_size_study"]["runs"]:
        lines.append(
            f"{_label(run['normalization']):<13} {run['batch_size']:>5} {run['train_acc'][-1]:>7.3f} "
            f"{run['val_acc'][-1]:>7.3f} {max(run['val_acc']):>8.3f}"
        )
    return "\n".join(lines)


def weight_scale_figure(study: dict[str, Any]) -> Figure:
    """Best validation and training accuracy and final training loss against the weight scale (log x)."""
    sweep = study["weight_scale_sweep"]
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    keys = (
        ("best_val_acc", "best validation accuracy"),
        ("best_train_acc", "best training accuracy"),
        ("final_loss", "training loss, last epoch"),
    )
    for ax, (key, title) in zip(axes, keys):
        for run in sweep["runs"]:
            values = [np.nan if v is None else v for v in run[key]]
            ax.plot(sweep["weight_scales"], values, "-o", label=_label(run["normalization"]))
        ax.set(xscale="log", xlabel="weight scale", title=title)
    axes[2].set_yscale("log")
    axes[0].legend()
    fig.suptitle(
        f"{len(study['hidden_dims']) + 1}-layer net on {study['num_train']} images: Adam lr {sweep['lr']:g}, "
        f"batch {sweep['batch_size']}, {study['epochs']} epochs ({study['ops']} ops)"
    )
    return fig


def _accuracy_curves(axes: Sequence[Axes], study: dict[str, Any], normalization: str) -> None:
    """Training and validation accuracy per epoch: ``normalization`` at every batch size, no norm at the
    smallest one."""
    runs = study["batch_size_study"]["runs"]
    smallest = min(run["batch_size"] for run in runs)
    shown = [run for run in runs if run["normalization"] == normalization] + [
        run for run in runs if run["normalization"] is None and run["batch_size"] == smallest
    ]
    plot_accuracies(
        axes,
        shown,
        lambda run: f"{_label(run['normalization'])}, batch {run['batch_size']}",
        lambda run: "--" if run["normalization"] is None else "-o",
        f": {normalization}",
    )
    axes[0].legend()


def _suptitle(study: dict[str, Any]) -> str:
    by_batch = study["batch_size_study"]
    return (
        f"{len(study['hidden_dims']) + 1}-layer net on {study['num_train']} images: weight scale "
        f"{by_batch['weight_scale']:g}, Adam lr {by_batch['lr']:.2g} ({study['ops']} ops)"
    )


def batch_size_figure(study: dict[str, Any]) -> Figure:
    """Batch norm at every batch size against no normalisation: accuracy per epoch."""
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    _accuracy_curves(fig.subplots(1, 2), study, "batchnorm")
    fig.suptitle(_suptitle(study))
    return fig


def layernorm_figure(study: dict[str, Any]) -> Figure:
    """Layer norm at every batch size (accuracy per epoch), and the final training accuracy of no norm, batch
    norm and layer norm against the batch size."""
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    _accuracy_curves(axes[:2], study, "layernorm")
    by_batch = study["batch_size_study"]
    for normalization in dict.fromkeys(run["normalization"] for run in by_batch["runs"]):
        mine = [run for run in by_batch["runs"] if run["normalization"] == normalization]
        sizes, accs = [run["batch_size"] for run in mine], [run["train_acc"][-1] for run in mine]
        axes[2].plot(sizes, accs, "--" if normalization is None else "-o", label=_label(normalization))
    axes[2].set(xscale="log", xlabel="batch size", ylabel="accuracy", title="Training accuracy, last epoch")
    axes[2].set_xticks(by_batch["batch_sizes"], [str(b) for b in by_batch["batch_sizes"]])
    axes[2].minorticks_off()
    axes[2].legend()
    fig.suptitle(_suptitle(study))
    return fig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cs231n experiment batchnorm``."""
    add_common_arguments(parser, "batchnorm", num_train=1000, epochs=10)
    add_list_argument(
        parser,
        "--weight-scales",
        positive_float,
        WEIGHT_SCALES,
        "initial weight stds of the sweep (default: 20 on a log grid from 1e-4 to 1)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=50, help="batch size of the sweep (default 50)"
    )
    add_list_argument(
        parser,
        "--batch-sizes",
        positive_int,
        BATCH_SIZES,
        "batch sizes of the batch-size study (default 5 10 50)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the study with ``args`` (:func:`add_arguments`), print the tables, write the files."""
    return run_experiment(
        args,
        "batchnorm",
        batchnorm_study,
        format_table,
        {
            "batchnorm_weight_scale.png": weight_scale_figure,
            "batchnorm_batch_size.png": batch_size_figure,
            "batchnorm_layernorm.png": layernorm_figure,
        },
        weight_scales=args.weight_scales,
        batch_sizes=args.batch_sizes,
    )
