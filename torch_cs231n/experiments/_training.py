"""What the training experiments (``init-scale``, ``optimizers``, ``batchnorm``, ``dropout``) share: CIFAR-10
prepared as CS231n prepares it, one training loop for the fully connected net, the accuracy curves of their
figures, and the command-line plumbing.

Data (:func:`load_cifar10`): the validation images are the LAST ``num_val`` images of the file (1,000 of
50,000, the CS231n split) and are never trained on; the training images are the FIRST ``num_train``. As in
CS231n's ``get_CIFAR10_data``, the mean image of the training pool (every image before the validation ones)
is subtracted from both, on the 0..255 scale that the course's weight scales and learning rates assume.

Training (:func:`train_fc_net`): :func:`torch_cs231n.nets.models.build_fc_net` trained with one of the CS231n
update rules of :mod:`torch_cs231n.nets.optim` on the softmax loss (``custom_ops.functional.softmax_loss``, or
``torch.nn.functional.cross_entropy`` for the built-in ops), minibatches drawn without replacement from a
fresh permutation every epoch, ``max(N // batch_size, 1)`` of them per epoch (as CS231n's ``Solver``). After
every epoch: the accuracy on the first 1,000 training images and on the validation images (in eval mode).
Every run is seeded (weights, shuffles, dropout masks) without touching the caller's random state, so runs
that differ in one setting start from the same weights. A run whose loss becomes NaN or infinite stops there
(``"diverged": true``) with the accuracy of its last weights as its last epoch's.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn
from torch.optim import Optimizer

from torch_cs231n.data import load_npz, looked_for
from torch_cs231n.nets.models import Normalization, Ops, build_fc_net, data_loss_fn
from torch_cs231n.tools.command import add_output_arguments, positive_int, report_stream, write_outputs

DEFAULT_DATA = Path("../shared/data/cifar10_train.npz")
"""``--data`` by default: the CIFAR-10 training set, relative to the repository root."""


class Splits(NamedTuple):
    """Preprocessed images ``(N, 3, 32, 32)`` float32 and labels ``(N,)`` int64 of the two splits."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


def load_cifar10(path: str | Path, num_train: int, num_val: int = 1000) -> Splits:
    """The first ``num_train`` and the last ``num_val`` images of a CIFAR-10 ``.npz``, mean image subtracted.

    Args:
        path: an ``.npz`` with ``x_train`` ``(N, 32, 32, 3)`` uint8 and ``y_train`` ``(N,)``
            (:func:`torch_cs231n.data.load_npz`).
        num_train: training images, taken from the start.
        num_val: validation images, taken from the end.

    Returns:
        The splits; pixel values on the 0..255 scale minus the mean image of the first ``N - num_val``
        images.

    Raises:
        FileNotFoundError: no such file.
        CIFAR10DataError: the file is not an ``.npz`` with the expected arrays (a ``ValueError``).
        ValueError: ``num_train`` or ``num_val`` below 1, or more images asked for than the file holds.
    """
    arrays = load_npz(path)
    x, y = arrays["x_train"], arrays["y_train"]
    pool = x.shape[0] - num_val
    if num_train < 1 or num_val < 1 or num_train > pool:
        raise ValueError(
            f"{path} holds {x.shape[0]} images: num_train={num_train} (--num-train) and num_val={num_val} "
            "(--num-val) must be >= 1 and num_train + num_val at most that"
        )
    mean = x[:pool].mean(axis=0, dtype=np.float64)

    def prepare(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((images - mean).astype(np.float32)).permute(0, 3, 1, 2).contiguous()

    return Splits(
        prepare(x[:num_train]), torch.from_numpy(y[:num_train]), prepare(x[pool:]), torch.from_numpy(y[pool:])
    )


def random_splits(num_train: int, num_val: int, seed: int = 0) -> Splits:
    """Standard-normal images labelled ``0, 1, ..., 9, 0, 1, ...``: stand-in data for examples.

    Args:
        num_train: training images.
        num_val: validation images.
        seed: seed of the images, the training ones drawn first.

    Returns:
        The splits.
    """
    generator = torch.Generator().manual_seed(seed)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(n, 3, 32, 32, generator=generator), torch.arange(n) % 10

    return Splits(*split(num_train), *split(num_val))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``x`` that ``model`` (in eval mode, restored afterwards) classifies as ``y``."""
    was_training = model.training
    model.eval()
    correct = sum(
        int((model(xb).argmax(1) == yb).sum()) for xb, yb in zip(x.split(batch_size), y.split(batch_size))
    )
    model.train(was_training)
    return correct / y.shape[0]


def train_fc_net(
    data: Splits,
    hidden_dims: Sequence[int],
    *,
    optimizer: Callable[..., Optimizer],
    lr: float,
    weight_scale: float,
    epochs: int,
    batch_size: int,
    normalization: Normalization = None,
    dropout_keep_ratio: float = 1.0,
    seed: int = 0,
    ops: Ops = "manual",
    evaluate: bool = True,
    track: str | None = None,
) -> dict[str, Any]:
    """Train a fresh ``build_fc_net(hidden_dims, ...)`` on ``data``; see the module docstring.

    Args:
        data: the splits (:func:`load_cifar10`).
        hidden_dims: widths of the hidden layers.
        optimizer: an update rule of :mod:`torch_cs231n.nets.optim` (e.g. ``Adam``), called as
            ``optimizer(params, lr=lr)``.
        lr: the learning rate.
        weight_scale: std of the initial weights.
        epochs: passes over the training images.
        batch_size: images per update.
        normalization: ``None``, ``"batchnorm"`` or ``"layernorm"``.
        dropout_keep_ratio: probability of keeping a unit; 1 disables dropout.
        seed: seed of the weights, the shuffles and the dropout masks.
        ops: ``"manual"`` or ``"builtin"`` layers and loss.
        evaluate: measure the accuracies after every epoch (``False``: the accuracy lists stay empty).
        track: the name of a parameter (e.g. ``"fc1.weight"``) whose relative update size to record.

    Returns:
        ``{"loss": [per update], "train_acc": [per epoch], "val_acc": [per epoch], "diverged": bool}``, plus
        ``"update_ratio": [||w_new - w|| / ||w|| per update]`` with ``track``.

    Examples::

        >>> from torch_cs231n.nets.optim import SGD
        >>> history = train_fc_net(random_splits(20, 5), [50], optimizer=SGD, lr=0.1, weight_scale=1e-2,
        ...                        epochs=15, batch_size=10)
        >>> len(history["loss"]), history["train_acc"][-1], history["diverged"]
        (30, 1.0, False)
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_fc_net(
            hidden_dims,
            normalization=normalization,
            dropout_keep_ratio=dropout_keep_ratio,
            weight_scale=weight_scale,
            ops=ops,
        )
        update = optimizer(model.parameters(), lr=lr)
        loss_fn = data_loss_fn("softmax", ops)
        tracked = model.get_parameter(track) if track else None
        n = data.x_train.shape[0]
        history: dict[str, Any] = {"loss": [], "train_acc": [], "val_acc": [], "diverged": False}
        if tracked is not None:
            history["update_ratio"] = []
        for _ in range(epochs):
            order = torch.randperm(n)
            for start in range(0, max(n // batch_size, 1) * batch_size, batch_size):
                batch = order[start : start + batch_size]
                loss = loss_fn(model(data.x_train[batch]), data.y_train[batch])
                if not torch.isfinite(loss):
                    history["diverged"] = True
                    break
                update.zero_grad()
                loss.backward()
                before = None if tracked is None else tracked.detach().clone()
                update.step()
                history["loss"].append(loss.item())
                if before is not None:
                    history["update_ratio"].append(
                        ((tracked.detach() - before).norm() / before.norm()).item()
                    )
            if evaluate:
                history["train_acc"].append(accuracy(model, data.x_train[:1000], data.y_train[:1000]))
                history["val_acc"].append(accuracy(model, data.x_val, data.y_val))
            if history["diverged"]:
                break
    return history


def epoch_mean(losses: Sequence[float], epochs: int) -> list[float]:
    """Per-update ``losses`` of ``epochs`` equal epochs -> the mean loss of each epoch.

    Examples::

        >>> epoch_mean([4.0, 2.0, 1.0, 1.0], 2)
        [3.0, 1.0]
    """
    per_epoch = len(losses) // epochs
    return [float(np.mean(losses[k * per_epoch : (k + 1) * per_epoch])) for k in range(epochs)]


def study_result(data: Splits, **fields: Any) -> dict[str, Any]:
    """A study's JSON, without ``data`` and ``seconds``: the sizes of the splits, then ``fields`` in order.

    Args:
        data: the splits the study trained on.
        **fields: the study's settings and numbers, JSON-able.

    Returns:
        ``{"num_train": ..., "num_val": ..., **fields}``.

    Examples::

        >>> study_result(random_splits(3, 2), epochs=5)
        {'num_train': 3, 'num_val': 2, 'epochs': 5}
    """
    return {"num_train": data.x_train.shape[0], "num_val": data.x_val.shape[0], **fields}


# --------------------------------------------------------------------------------------------- figures
def plot_accuracies(
    axes: Sequence[Axes],
    runs: Sequence[dict[str, Any]],
    label: Callable[[dict[str, Any]], str],
    style: Callable[[dict[str, Any]], str] | None = None,
    title_suffix: str = "",
) -> None:
    """Training accuracy per epoch on ``axes[0]`` and validation accuracy on ``axes[1]``, a line per run.

    Args:
        axes: the two panels.
        runs: histories with ``"train_acc"`` and ``"val_acc"`` lists (:func:`train_fc_net`).
        label: a run -> its legend entry.
        style: a run -> its matplotlib format string; ``None``: ``"-o"`` for every run.
        title_suffix: appended to the panel titles, "Training accuracy" and "Validation accuracy".
    """
    for ax, key, title in zip(axes, ("train_acc", "val_acc"), ("Training accuracy", "Validation accuracy")):
        for run in runs:
            fmt = "-o" if style is None else style(run)
            ax.plot(range(1, len(run[key]) + 1), run[key], fmt, label=label(run))
        ax.set(xlabel="epoch", ylabel="accuracy", title=title + title_suffix)


# ------------------------------------------------------------------------------------------------- CLI
def add_common_arguments(parser: argparse.ArgumentParser, name: str, *, num_train: int, epochs: int) -> None:
    """The options every training experiment has: data, sizes, ops, seed, output.

    Args:
        parser: the experiment's parser.
        name: the experiment's file stem (``--out`` writes ``NAME.json``).
        num_train: default of ``--num-train``.
        epochs: default of ``--epochs``.
    """
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help=f"CIFAR-10 .npz with x_train, y_train (default {DEFAULT_DATA})",
    )
    parser.add_argument(
        "--num-train",
        type=positive_int,
        default=num_train,
        help=f"training images, the first of the file (default {num_train})",
    )
    parser.add_argument(
        "--num-val",
        type=positive_int,
        default=1000,
        help="validation images, the last of the file (default 1000)",
    )
    parser.add_argument("--epochs", type=positive_int, default=epochs, help=f"default {epochs}")
    parser.add_argument("--ops", choices=("manual", "builtin"), default="manual", help="default: manual")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the weights and the shuffles (default 0)"
    )
    add_output_arguments(parser, name)


def add_list_argument(
    parser: argparse.ArgumentParser,
    flag: str,
    value_type: Callable[[str], Any],
    default: Sequence[Any],
    help_text: str,
) -> None:
    """Add ``flag V [V ...]``: one or more values, a list of ``default`` when not given.

    Args:
        parser: the experiment's parser.
        flag: the option, e.g. ``"--weight-scales"``.
        value_type: the ``argparse`` type of each value.
        default: the values when the option is not given.
        help_text: the option's help.

    Examples::

        >>> parser = argparse.ArgumentParser()
        >>> add_list_argument(parser, "--sizes", int, (5, 10), "batch sizes")
        >>> parser.parse_args([]).sizes, parser.parse_args(["--sizes", "1", "2", "3"]).sizes
        ([5, 10], [1, 2, 3])
    """
    parser.add_argument(flag, type=value_type, nargs="+", default=list(default), help=help_text)


def run_experiment(
    args: argparse.Namespace,
    name: str,
    study: Callable[..., dict[str, Any]],
    table: Callable[[dict[str, Any]], str],
    figures: dict[str, Callable[[dict[str, Any]], Figure]],
    **options: Any,
) -> int:
    """Load ``--data``, run ``study`` on it, print ``table``, write the JSON and (with ``--out``) the figures.

    Args:
        args: parsed options: :func:`add_common_arguments`, the experiment's ``--batch-size`` and its own.
        name: the file stem: ``--out DIR`` writes ``DIR/NAME.json``.
        study: the experiment, called as ``study(data, epochs=..., batch_size=..., ops=..., seed=...,
            **options)`` with the loaded data and those values of ``args``; returns its JSON-able numbers.
        table: the numbers -> the text to print.
        figures: file name -> function drawing the numbers.
        **options: the study's own arguments.

    Returns:
        The exit status: 0, or 2 (with a message on stderr) when the data cannot be read.
    """
    prog = f"cs231n experiment {name.replace('_', '-')}"
    if not args.data.is_file():
        print(
            f"{prog}: error: --data {args.data}: no such file; looked for {looked_for(args.data)}. Point "
            f"--data at a CIFAR-10 .npz with x_train, y_train (default {DEFAULT_DATA}).",
            file=sys.stderr,
        )
        return 2
    try:
        data = load_cifar10(args.data, args.num_train, args.num_val)
    except ValueError as err:  # CIFAR10DataError included
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    numbers = study(
        data, epochs=args.epochs, batch_size=args.batch_size, ops=args.ops, seed=args.seed, **options
    )
    result = {"data": str(args.data), **numbers}
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(table(result), file=report_stream(args))
    print(f"{prog}: {result['seconds']} s", file=sys.stderr)
    write_outputs(args, name, result, {file_name: partial(f, result) for file_name, f in figures.items()})
    return 0
