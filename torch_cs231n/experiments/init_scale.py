"""Weight scale and learning rate: overfitting 50 images with a 3-layer and a 5-layer fully connected net.

CS231n's sanity check (assignment 2, ``FullyConnectedNets``): a net that cannot reach 100% training accuracy
on 50 images within 20 epochs is set up wrong. Here every (weight scale, learning rate) pair of a log grid
trains a 3-layer net (hidden ``[100, 100]``) and a 5-layer net (hidden ``[100] * 4``) on the first 50
training images with plain SGD, batch 25, 20 epochs, from the same seed. What it shows: the 3-layer net
overfits over a broad band of the grid, the 5-layer net only in a much narrower one; its activations (and
gradients) vanish when the weights are too small and explode when they are too large, each layer
multiplying the effect.

Data, training and the common options: :mod:`torch_cs231n.experiments._training`.

``cs231n experiment init-scale [--weight-scales W ...] [--learning-rates LR ...] [--num-train 50]
[--epochs 20] [--batch-size 25] [--data NPZ] [--ops builtin] [--out DIR] [--json PATH] [--seed 0]``

JSON (``init_scale.json``)::

    {"data": path, "num_train", "num_val", "epochs", "batch_size", "ops", "seed",
     "weight_scales": [W], "learning_rates": [L],
     "nets": [{"num_layers": 3 | 5, "hidden_dims": [100, ...],
               "train_acc": W x L (final training accuracy, rows weight scales, columns learning rates),
               "val_acc": W x L (final validation accuracy),
               "diverged": W x L (bool: the loss became NaN/inf)}],
     "seconds": run time of the study}
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from torch_cs231n.nets.models import Ops
from torch_cs231n.nets.optim import SGD
from torch_cs231n.tools.command import positive_float, positive_int

from ._training import (
    Splits,
    add_common_arguments,
    add_list_argument,
    run_experiment,
    study_result,
    train_fc_net,
)

WEIGHT_SCALES: tuple[float, ...] = tuple(float(v) for v in np.logspace(-4, -1, 10))
LEARNING_RATES: tuple[float, ...] = tuple(float(v) for v in np.logspace(-4, -1, 10))
NUM_LAYERS: tuple[int, ...] = (3, 5)
HIDDEN = 100


def init_scale_study(
    data: Splits,
    weight_scales: Sequence[float] = WEIGHT_SCALES,
    learning_rates: Sequence[float] = LEARNING_RATES,
    num_layers: Sequence[int] = NUM_LAYERS,
    epochs: int = 20,
    batch_size: int = 25,
    ops: Ops = "manual",
    seed: int = 0,
) -> dict[str, Any]:
    """Train every net on ``data`` over the grid; see the module docstring.

    Args:
        data: the splits (:func:`~torch_cs231n.experiments._training.load_cifar10`, 50 training images).
        weight_scales: initial weight stds (rows of the grid).
        learning_rates: SGD learning rates (columns).
        num_layers: depths; a net of depth L has L - 1 hidden layers of 100 units.
        epochs: passes over the training images.
        batch_size: images per update.
        ops: ``"manual"`` or ``"builtin"``.
        seed: seed of every run.

    Returns:
        The JSON of the module docstring, without ``data`` and ``seconds``.

    Examples::

        >>> from torch_cs231n.experiments._training import random_splits
        >>> study = init_scale_study(random_splits(10, 4), [1e-2], [1e-3, 1e-1], [3], epochs=2, batch_size=5)
        >>> np.shape(study["nets"][0]["train_acc"])
        (1, 2)
    """
    nets = []
    for depth in num_layers:
        hidden_dims = [HIDDEN] * (depth - 1)
        runs = [
            [
                train_fc_net(
                    data,
                    hidden_dims,
                    optimizer=SGD,
                    lr=lr,
                    weight_scale=scale,
                    epochs=epochs,
                    batch_size=batch_size,
                    seed=seed,
                    ops=ops,
                )
                for lr in learning_rates
            ]
            for scale in weight_scales
        ]
        nets.append(
            {
                "num_layers": depth,
                "hidden_dims": hidden_dims,
                "train_acc": [[run["train_acc"][-1] for run in row] for row in runs],
                "val_acc": [[run["val_acc"][-1] for run in row] for row in runs],
                "diverged": [[run["diverged"] for run in row] for row in runs],
            }
        )
    return study_result(
        data,
        epochs=epochs,
        batch_size=batch_size,
        ops=ops,
        seed=seed,
        weight_scales=list(weight_scales),
        learning_rates=list(learning_rates),
        nets=nets,
    )


def format_table(study: dict[str, Any]) -> str:
    """Per depth, the final training accuracy over the grid (rows weight scales, columns learning rates)."""
    lines = []
    for net in study["nets"]:
        lines.append(
            f"{net['num_layers']}-layer net: final training accuracy (rows weight scale, columns lr)"
        )
        lines.append(f"{'':>9} " + " ".join(f"{lr:>7.1e}" for lr in study["learning_rates"]))
        for scale, row in zip(study["weight_scales"], net["train_acc"]):
            lines.append(f"{scale:>9.1e} " + " ".join(f"{acc:>7.2f}" for acc in row))
        cells = [acc for row in net["train_acc"] for acc in row]
        lines.append(f"100% training accuracy in {cells.count(1.0)} of {len(cells)} cells\n")
    return "\n".join(lines)


def figure(study: dict[str, Any]) -> Figure:
    """Heat maps of the final training accuracy, one per depth side by side; diverged runs marked ``x``."""
    nets, scales, lrs = study["nets"], study["weight_scales"], study["learning_rates"]
    fig = Figure(figsize=(5.2 * len(nets) + 1, 4.6), layout="constrained")
    axes = fig.subplots(1, len(nets), squeeze=False)[0]
    for ax, net in zip(axes, nets):
        image = ax.imshow(net["train_acc"], origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for i, row in enumerate(net["train_acc"]):
            for j, acc in enumerate(row):
                text = "x" if net["diverged"][i][j] else f"{acc:.2f}"[1:] if acc < 1 else "1"
                ax.text(
                    j, i, text, ha="center", va="center", fontsize=6, color="white" if acc < 0.6 else "black"
                )
        ax.set_xticks(range(len(lrs)), [f"{v:.2g}" for v in lrs], rotation=60, fontsize=7)
        ax.set_yticks(range(len(scales)), [f"{v:.2g}" for v in scales], fontsize=7)
        solved = sum(acc == 1.0 for row in net["train_acc"] for acc in row)
        ax.set(
            xlabel="learning rate (SGD)",
            ylabel="weight scale",
            title=f"{net['num_layers']}-layer net: 100% in {solved} of {len(scales) * len(lrs)} cells",
        )
    fig.colorbar(image, ax=axes.tolist(), label="training accuracy after the last epoch")
    fig.suptitle(
        f"Overfitting {study['num_train']} images: {study['epochs']} epochs, batch {study['batch_size']} "
        f"({study['ops']} ops; x: diverged)"
    )
    return fig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cs231n experiment init-scale``."""
    add_common_arguments(parser, "init_scale", num_train=50, epochs=20)
    parser.add_argument("--batch-size", type=positive_int, default=25, help="default 25")
    grid = "10 on a log grid from 1e-4 to 1e-1"
    add_list_argument(
        parser, "--weight-scales", positive_float, WEIGHT_SCALES, f"initial weight stds (default: {grid})"
    )
    add_list_argument(
        parser, "--learning-rates", positive_float, LEARNING_RATES, f"SGD learning rates (default: {grid})"
    )


def run(args: argparse.Namespace) -> int:
    """Run the study with ``args`` (:func:`add_arguments`), print the grids, write the files."""
    return run_experiment(
        args,
        "init_scale",
        init_scale_study,
        format_table,
        {"init_scale.png": figure},
        weight_scales=args.weight_scales,
        learning_rates=args.learning_rates,
    )
