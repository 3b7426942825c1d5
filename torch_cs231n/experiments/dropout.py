"""Dropout as a regulariser: a two-layer net on 500 images with and without dropout.

CS231n's regularisation experiment (assignment 2, ``Dropout``): a two-layer net (hidden 500, weight scale
1e-2) trained on the first 500 training images for 25 epochs with Adam (lr 5e-4, batch 100), once with keep
ratio 1 (no dropout) and once with keep ratio 0.25 (each hidden unit kept with probability 0.25, inverted
dropout), from the same initial weights; training and validation accuracy per epoch. What it shows: without
dropout the net memorises the 500 images and the gap between training and validation accuracy is wide;
dropout slows the memorising and narrows the gap, at a better validation accuracy.

Data, training and the common options: :mod:`torch_cs231n.experiments._training`.

``cs231n experiment dropout [--keep-ratios 1 0.25] [--hidden 500] [--num-train 500] [--epochs 25]
[--batch-size 100] [--data NPZ] [--ops builtin] [--out DIR] [--json PATH] [--seed 0]``

JSON (``dropout.json``)::

    {"data": path, "num_train", "num_val", "epochs", "batch_size", "lr", "weight_scale", "hidden_dims",
     "ops", "seed",
     "runs": [{"keep_ratio", "loss": [per update], "train_acc": [per epoch], "val_acc": [per epoch],
               "diverged"}],
     "seconds": run time of the study}
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

from torch_cs231n.nets.models import Ops
from torch_cs231n.nets.optim import Adam
from torch_cs231n.tools.command import positive_int

from ._training import (
    Splits,
    add_common_arguments,
    add_list_argument,
    plot_accuracies,
    run_experiment,
    study_result,
    train_fc_net,
)

KEEP_RATIOS: tuple[float, ...] = (1.0, 0.25)
LR = 5e-4
WEIGHT_SCALE = 1e-2


def _keep_ratio(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"a keep ratio must be in (0, 1], got {text}")
    return value


def dropout_study(
    data: Splits,
    keep_ratios: Sequence[float] = KEEP_RATIOS,
    hidden: int = 500,
    epochs: int = 25,
    batch_size: int = 100,
    ops: Ops = "manual",
    seed: int = 0,
) -> dict[str, Any]:
    """Train the two-layer net once per keep ratio; see the module docstring.

    Args:
        data: the splits (:func:`~torch_cs231n.experiments._training.load_cifar10`, 500 training images).
        keep_ratios: probabilities of keeping a hidden unit; 1 is no dropout.
        hidden: hidden units.
        epochs: passes over the training images.
        batch_size: images per update.
        ops: ``"manual"`` or ``"builtin"``.
        seed: seed of every run (the same initial weights for every keep ratio).

    Returns:
        The JSON of the module docstring, without ``data`` and ``seconds``.

    Examples::

        >>> from torch_cs231n.experiments._training import random_splits
        >>> study = dropout_study(random_splits(20, 4), hidden=50, epochs=3, batch_size=10)
        >>> [(run["keep_ratio"], len(run["val_acc"])) for run in study["runs"]]
        [(1.0, 3), (0.25, 3)]
    """
    runs = []
    for keep in keep_ratios:
        history = train_fc_net(
            data,
            [hidden],
            optimizer=Adam,
            lr=LR,
            weight_scale=WEIGHT_SCALE,
            epochs=epochs,
            batch_size=batch_size,
            dropout_keep_ratio=keep,
            seed=seed,
            ops=ops,
        )
        runs.append({"keep_ratio": keep, **history})
    return study_result(
        data,
        epochs=epochs,
        batch_size=batch_size,
        lr=LR,
        weight_scale=WEIGHT_SCALE,
        hidden_dims=[hidden],
        ops=ops,
        seed=seed,
        runs=runs,
    )


def format_table(study: dict[str, Any]) -> str:
    """One line per keep ratio: final training and validation accuracy, their gap, the best validation."""
    lines = [f"{'keep ratio':>10} {'train':>7} {'val':>7} {'gap':>7} {'best val':>8}"]
    for run in study["runs"]:
        train, val, best = run["train_acc"][-1], run["val_acc"][-1], max(run["val_acc"])
        lines.append(f"{run['keep_ratio']:>10g} {train:>7.3f} {val:>7.3f} {train - val:>7.3f} {best:>8.3f}")
    return "\n".join(lines)


def _label(run: dict[str, Any]) -> str:
    return "no dropout" if run["keep_ratio"] == 1 else f"keep ratio {run['keep_ratio']:g}"


def figure(study: dict[str, Any]) -> Figure:
    """Training and validation accuracy per epoch, one line per keep ratio."""
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    axes = fig.subplots(1, 2)
    plot_accuracies(axes, study["runs"], _label)
    axes[0].legend()
    fig.suptitle(
        f"Two-layer net (hidden {study['hidden_dims'][0]}) on {study['num_train']} images: Adam lr "
        f"{study['lr']:g}, batch {study['batch_size']} ({study['ops']} ops)"
    )
    return fig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cs231n experiment dropout``."""
    add_common_arguments(parser, "dropout", num_train=500, epochs=25)
    parser.add_argument("--batch-size", type=positive_int, default=100, help="default 100")
    parser.add_argument("--hidden", type=positive_int, default=500, help="hidden units (default 500)")
    add_list_argument(
        parser,
        "--keep-ratios",
        _keep_ratio,
        KEEP_RATIOS,
        "probabilities of keeping a unit; 1 is no dropout (default 1 0.25)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the study with ``args`` (:func:`add_arguments`), print the table, write the files."""
    return run_experiment(
        args,
        "dropout",
        dropout_study,
        format_table,
        {"dropout.png": figure},
        keep_ratios=args.keep_ratios,
        hidden=args.hidden,
    )
