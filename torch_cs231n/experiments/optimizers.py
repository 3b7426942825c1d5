"""Update rules: SGD, SGD+momentum, RMSProp, Adagrad and Adam on the same 5-layer net.

CS231n's comparison (assignment 2, ``FullyConnectedNets``): a 5-layer fully connected net (hidden
``[100] * 4``, weight scale 5e-2) trained on the first 4,000 training images for 5 epochs with batch 100 by
each update rule of :mod:`torch_cs231n.nets.optim`, from the same initial weights, at the course's learning
rates
(:data:`LEARNING_RATES`: 5e-3 for SGD and momentum, 1e-4 for RMSProp, 1e-3 for Adam; Adagrad, which the
course only shows on a slide, at Adam's 1e-3, so that both start with steps of the same size). Recorded: the
training loss of every update and the training and validation accuracy of every epoch. What it shows: plain
SGD is the slowest; momentum, RMSProp and Adam train faster.

Then a long run of Adagrad against Adam (by default 3,000 updates, i.e. 75 epochs, on the same images and
batch size, at the same learning rates) records the relative size of each update of the first layer's
weights, ``||w_new - w|| / ||w||``. What it shows: Adagrad's cache sums every squared gradient, so its steps
keep shrinking (roughly as ``1 / sqrt(t)``) and it slows to a crawl; Adam's leaky averages keep its steps at
about the same size. (On a few hundred images the net soon memorises them, the gradients vanish, and both
rules' steps shrink with them: that run would not tell the two apart.)

Data, training and the common options: :mod:`torch_cs231n.experiments._training`.

``cs231n experiment optimizers [--rules NAME ...] [--lr NAME=LR ...] [--num-train 4000] [--epochs 5]
[--batch-size 100] [--weight-scale 5e-2] [--update-steps 3000] [--data NPZ] [--ops builtin] [--out DIR]
[--json PATH] [--seed 0]``

JSON (``optimizers.json``)::

    {"data": path, "num_train", "num_val", "epochs", "batch_size", "weight_scale", "hidden_dims", "ops",
     "seed",
     "runs": [{"rule", "lr", "loss": [per update], "train_acc": [per epoch], "val_acc": [per epoch],
               "diverged": bool}],
     "update_size": {"param": "fc1.weight", "steps",
                     "runs": [{"rule", "lr", "update_ratio": [||w_new - w|| / ||w|| per update]}]},
     "seconds": run time of the study}
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from torch.optim import Optimizer

from torch_cs231n.nets.models import Ops
from torch_cs231n.nets.optim import SGD, Adagrad, Adam, RMSProp, SGDMomentum
from torch_cs231n.tools.command import positive_float, positive_int

from ._training import (
    Splits,
    add_common_arguments,
    epoch_mean,
    plot_accuracies,
    run_experiment,
    study_result,
    train_fc_net,
)

RULES: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "sgd_momentum": SGDMomentum,
    "rmsprop": RMSProp,
    "adagrad": Adagrad,
    "adam": Adam,
}
"""Name -> update rule of :mod:`torch_cs231n.nets.optim`."""

LEARNING_RATES: dict[str, float] = {
    "sgd": 5e-3,
    "sgd_momentum": 5e-3,
    "rmsprop": 1e-4,
    "adagrad": 1e-3,
    "adam": 1e-3,
}
"""The default learning rate of each rule."""

HIDDEN_DIMS: tuple[int, ...] = (100, 100, 100, 100)
TRACKED = "fc1.weight"
"""The parameter whose update sizes the long run records: the first layer's weights."""


def optimizer_study(
    data: Splits,
    rules: Sequence[str] = tuple(RULES),
    learning_rates: Mapping[str, float] = LEARNING_RATES,
    epochs: int = 5,
    batch_size: int = 100,
    weight_scale: float = 5e-2,
    update_rules: Sequence[str] = ("adagrad", "adam"),
    update_steps: int = 3000,
    ops: Ops = "manual",
    seed: int = 0,
) -> dict[str, Any]:
    """Train the net with every rule, then the long runs of ``update_rules``; see the module docstring.

    Args:
        data: the splits (:func:`~torch_cs231n.experiments._training.load_cifar10`).
        rules: names of :data:`RULES` to compare.
        learning_rates: the learning rate of each rule.
        epochs: passes over the training images.
        batch_size: images per update.
        weight_scale: std of the initial weights.
        update_rules: the rules of the long runs (none: no long run).
        update_steps: updates in each long run.
        ops: ``"manual"`` or ``"builtin"``.
        seed: seed of every run.

    Returns:
        The JSON of the module docstring, without ``data`` and ``seconds``.

    Examples::

        >>> from torch_cs231n.experiments._training import random_splits
        >>> study = optimizer_study(random_splits(20, 4), ["sgd", "adam"], epochs=2, batch_size=10,
        ...                         update_steps=7)
        >>> [len(run["loss"]) for run in study["runs"]], len(study["update_size"]["runs"][0]["update_ratio"])
        ([4, 4], 7)
    """
    common = {"weight_scale": weight_scale, "batch_size": batch_size, "seed": seed, "ops": ops}
    runs = []
    for rule in rules:
        history = train_fc_net(
            data, HIDDEN_DIMS, optimizer=RULES[rule], lr=learning_rates[rule], epochs=epochs, **common
        )
        runs.append({"rule": rule, "lr": learning_rates[rule], **history})

    per_epoch = max(data.x_train.shape[0] // batch_size, 1)
    long_runs = []
    for rule in update_rules:
        history = train_fc_net(
            data,
            HIDDEN_DIMS,
            optimizer=RULES[rule],
            lr=learning_rates[rule],
            epochs=math.ceil(update_steps / per_epoch),
            evaluate=False,
            track=TRACKED,
            **common,
        )
        ratios = history["update_ratio"][:update_steps]
        long_runs.append({"rule": rule, "lr": learning_rates[rule], "update_ratio": ratios})
    return study_result(
        data,
        epochs=epochs,
        batch_size=batch_size,
        weight_scale=weight_scale,
        hidden_dims=list(HIDDEN_DIMS),
        ops=ops,
        seed=seed,
        runs=runs,
        update_size={"param": TRACKED, "steps": update_steps, "runs": long_runs},
    )


def format_table(study: dict[str, Any]) -> str:
    """One line per rule (final loss, accuracies), then the update sizes of the long runs at a few steps."""
    lines = [
        f"{'rule':<13} {'lr':>7} {'loss, last epoch':>16} {'train acc':>9} {'val acc':>8} {'best val':>8}"
    ]
    for run in study["runs"]:
        last = "diverged" if run["diverged"] else f"{epoch_mean(run['loss'], study['epochs'])[-1]:.3f}"
        lines.append(
            f"{run['rule']:<13} {run['lr']:>7.0e} {last:>16} {run['train_acc'][-1]:>9.3f} "
            f"{run['val_acc'][-1]:>8.3f} {max(run['val_acc']):>8.3f}"
        )
    long_runs = study["update_size"]["runs"]
    if long_runs:
        steps = len(long_runs[0]["update_ratio"])
        marks = sorted({min(s, steps) for s in (10, 100, 1000, steps)})
        lines.append(
            f"\n||dw|| / ||w|| of {study['update_size']['param']}, mean of the 10 updates up to step:"
        )
        lines.append(f"{'rule':<13} " + " ".join(f"{m:>9}" for m in marks))
        for run in long_runs:
            ratio = run["update_ratio"]
            lines.append(
                f"{run['rule']:<13} " + " ".join(f"{np.mean(ratio[max(m - 10, 0) : m]):>9.2e}" for m in marks)
            )
    return "\n".join(lines)


def running_mean(values: Sequence[float], window: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, mean)``: the mean of each ``window`` consecutive values, at the 1-based index of the last one.

    Examples::

        >>> running_mean([1.0, 3.0, 5.0, 7.0], 2)
        (array([2, 3, 4]), array([2., 4., 6.]))
    """
    values = np.asarray(values, dtype=float)
    window = max(min(window, values.size), 1)
    return np.arange(window, values.size + 1), np.convolve(values, np.ones(window) / window, mode="valid")


def _label(run: dict[str, Any]) -> str:
    return f"{run['rule']} (lr {run['lr']:g})"


def figure(study: dict[str, Any], window: int = 10) -> Figure:
    """Training loss per update (faint; solid: running mean of ``window``), training and validation accuracy
    per epoch, one colour per rule."""
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    loss_ax, *accuracy_axes = fig.subplots(1, 3)
    for run in study["runs"]:
        (line,) = loss_ax.plot(np.arange(1, len(run["loss"]) + 1), run["loss"], lw=0.5, alpha=0.3)
        loss_ax.plot(*running_mean(run["loss"], window), color=line.get_color(), lw=1.5, label=_label(run))
    loss_ax.set(xlabel="update", ylabel="training loss", title=f"Training loss (solid: mean of {window})")
    plot_accuracies(accuracy_axes, study["runs"], _label)
    loss_ax.legend()
    fig.suptitle(
        f"{len(study['hidden_dims']) + 1}-layer net, hidden {study['hidden_dims'][0]}, weight scale "
        f"{study['weight_scale']:g}, on {study['num_train']} images, batch {study['batch_size']} "
        f"({study['ops']} ops)"
    )
    return fig


def update_size_figure(study: dict[str, Any], window: int = 50) -> Figure:
    """``||dw|| / ||w||`` per update of the long runs (log y): every update faint, a running mean solid."""
    long = study["update_size"]
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    for run in long["runs"]:
        ratio = run["update_ratio"]
        (line,) = ax.plot(np.arange(1, len(ratio) + 1), ratio, lw=0.5, alpha=0.3)
        label = f"{run['rule']} (lr {run['lr']:g}), mean of {window}"
        ax.plot(*running_mean(ratio, window), color=line.get_color(), lw=2, label=label)
    ax.set(
        yscale="log",
        xlabel="update",
        ylabel=f"||dw|| / ||w||  ({long['param']})",
        title=f"Update size: {study['num_train']} images, batch {study['batch_size']}, "
        f"{long['steps']} updates ({study['ops']} ops)",
    )
    ax.legend()
    return fig


def _rule_lr(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    if name not in RULES or not value:
        raise argparse.ArgumentTypeError(
            f"expected RULE=LR with RULE one of {', '.join(RULES)}, got {text!r}"
        )
    return name, positive_float(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cs231n experiment optimizers``."""
    add_common_arguments(parser, "optimizers", num_train=4000, epochs=5)
    parser.add_argument("--batch-size", type=positive_int, default=100, help="default 100")
    parser.add_argument("--weight-scale", type=positive_float, default=5e-2, help="default 5e-2")
    parser.add_argument(
        "--rules",
        nargs="+",
        choices=tuple(RULES),
        default=list(RULES),
        help="rules to compare (default: all)",
    )
    parser.add_argument(
        "--lr",
        type=_rule_lr,
        action="append",
        default=[],
        metavar="RULE=LR",
        help="a learning rate other than the default "
        + ", ".join(f"{k}={v:g}" for k, v in LEARNING_RATES.items()),
    )
    parser.add_argument(
        "--update-steps",
        type=positive_int,
        default=3000,
        help="updates of the Adagrad/Adam long runs (default 3000)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the study with ``args`` (:func:`add_arguments`), print the table, write the files."""
    return run_experiment(
        args,
        "optimizers",
        optimizer_study,
        format_table,
        {"optimizers.png": figure, "optimizers_update_size.png": update_size_figure},
        rules=args.rules,
        learning_rates={**LEARNING_RATES, **dict(args.lr)},
        weight_scale=args.weight_scale,
        update_steps=args.update_steps,
    )
