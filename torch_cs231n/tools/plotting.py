"""The CS231n Solver figures from a Lightning CSV log, and a grid of the first layer's weights.

``cs231n plot LOG_DIR`` (or :func:`plot_run`) writes into the run folder (or ``--out``):
    loss.png      training loss per iteration (``train/loss_step``) and validation loss per epoch
                  (``val/loss``, drawn at the step it was computed: the epoch's last); a run shorter than
                  ``log_every_n_steps`` logged no per-step loss, so its training loss per epoch
                  (``train/loss_epoch``) is drawn instead
    accuracy.png  train and validation accuracy per epoch (``train/acc``, ``val/acc``), integer epoch ticks
    weights.png   the first affine/conv layer's weights as images (from the newest checkpoint, if any)
Figures are drawn with matplotlib's object API (``Figure``, rendered by Agg): no pyplot state, no display.
``LOG_DIR`` is a run's version folder (``metrics.csv``, ``checkpoints/``) or any folder above it, such as an
experiment folder, in which case the newest run with training metrics below it is used (``validate``,
``test`` and ``predict`` runs log no training loss and are skipped); ``cs231n plot`` prints which.
torch, torchvision and matplotlib are imported when a figure is drawn, so ``cs231n plot --help`` is quick.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

Series = Mapping[str, Sequence[tuple[int, int, float]]]


def find_metrics_csv(log_dir: str | Path) -> Path:
    """The ``metrics.csv`` of the training run to plot: ``log_dir/metrics.csv``, else the most recently
    modified ``metrics.csv`` below ``log_dir`` that holds a training loss (``train/loss_step``, or
    ``train/loss_epoch`` alone when the run logged fewer steps than ``log_every_n_steps``).

    Args:
        log_dir: a run folder, or a folder above run folders (e.g. ``lightning_logs/NAME``).

    Returns:
        The path of the chosen ``metrics.csv``.

    Raises:
        FileNotFoundError: no ``metrics.csv`` in or below ``log_dir``.
        ValueError: none of them holds training metrics (only ``validate``/``test``/``predict`` runs).
    """
    log_dir = Path(log_dir)
    if (log_dir / "metrics.csv").is_file():
        candidates = [log_dir / "metrics.csv"]
    elif log_dir.is_dir():
        candidates = sorted(log_dir.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime, reverse=True)
    else:
        candidates = []
    if not candidates:
        raise FileNotFoundError(
            f"no metrics.csv in or below '{log_dir}' (a Lightning CSVLogger run folder); looked in "
            f"'{log_dir.resolve()}' (working directory: {Path.cwd()})"
        )
    for path in candidates:
        series = read_metrics(path)
        if training_loss(series) or series.get("train/loss_epoch"):
            return path
    if candidates == [log_dir / "metrics.csv"]:
        raise ValueError(
            f"{candidates[0]}: no training loss (train/loss_step or train/loss_epoch), so not a `fit` run "
            "(validate, test and predict runs log none); give the folder of a fit run, or the experiment "
            "folder above it to use its newest fit run"
        )
    raise ValueError(
        f"none of the {len(candidates)} metrics.csv below '{log_dir}' holds a training loss "
        "(train/loss_step or train/loss_epoch): they are validate/test/predict runs; give the folder of "
        "a fit run"
    )


def read_metrics(path: str | Path) -> dict[str, list[tuple[int, int, float]]]:
    """Columns of a Lightning ``metrics.csv``: name -> ``[(epoch, step, value), ...]`` for non-empty cells."""
    series: dict[str, list[tuple[int, int, float]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            epoch = int(float(row["epoch"])) if row.get("epoch") else -1
            step = int(float(row["step"])) if row.get("step") else -1
            for name, value in row.items():
                if name not in ("epoch", "step") and value not in (None, ""):
                    series.setdefault(name, []).append((epoch, step, float(value)))
    return series


def training_loss(series: Series) -> Sequence[tuple[int, int, float]]:
    """The training loss per step.

    Args:
        series: :func:`read_metrics` of a run.

    Returns:
        ``[(epoch, step, value), ...]`` of ``train/loss_step`` (or ``train/loss`` when it was logged per step
        only); empty when the run logged no training loss.
    """
    return series.get("train/loss_step") or series.get("train/loss") or []


def loss_figure(series: Series) -> Figure:
    """Training loss per iteration (points) and validation loss per epoch (line with markers, at the step
    each validation ran) on one axis, with a legend. A run that logged no per-step loss (fewer steps than
    ``log_every_n_steps``) shows its training loss per epoch (``train/loss_epoch``) as a line instead.

    Args:
        series: :func:`read_metrics` of a fit run.

    Returns:
        The figure; its axis holds the train series first, then ``val/loss`` when logged.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    loss = training_loss(series)
    if loss:
        steps, values = [s for _, s, _ in loss], [v for _, _, v in loss]
        ax.plot(steps, values, "o", markersize=2, label="train, per iteration")
    else:
        loss = series.get("train/loss_epoch") or []
        steps, values = [s for _, s, _ in loss], [v for _, _, v in loss]
        ax.plot(steps, values, "-o", label="train, mean per epoch (no per-iteration log)")
    val = series.get("val/loss")
    if val:
        ax.plot([s for _, s, _ in val], [v for _, _, v in val], "-o", label="val, per epoch (data loss)")
    ax.set(title="Loss", xlabel="Iteration", ylabel="Loss")
    ax.legend(loc="upper right")
    return fig


def accuracy_figure(series: Series) -> Figure:
    """Train and validation accuracy per epoch: lines with markers (a one-epoch run shows its points),
    integer epoch ticks.

    Args:
        series: :func:`read_metrics` of a fit run.

    Returns:
        The figure; its axis holds one line per logged series, ``train`` then ``val``.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    epochs = []
    for name, label in (("train/acc", "train"), ("val/acc", "val")):
        points = series.get(name) or series.get(f"{name}_epoch")
        if points:
            epochs += [e for e, _, _ in points]
            ax.plot([e for e, _, _ in points], [v for _, _, v in points], "-o", label=label)
    ax.set(title="Classification accuracy", xlabel="Epoch", ylabel="Accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # one epoch: a single tick
    if epochs:
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.legend(loc="lower right")
    return fig


def first_layer_weights(state_dict: Mapping[str, torch.Tensor]) -> tuple[str, torch.Tensor]:
    """The first 2-D (affine) or 4-D (conv) ``*.weight`` as images ``(K, C, h, w)``.

    An affine weight ``(H, 3 * s * s)`` is shown as ``H`` RGB images of ``s x s`` (as in the CS231n
    two-layer net notebook); other widths as ``(H, 1, 1, D)`` rows.
    """
    for name, tensor in state_dict.items():
        if not name.endswith("weight") or tensor.ndim not in (2, 4):
            continue
        weight = tensor.detach().float().cpu()
        if weight.ndim == 4:
            return name, weight
        side = math.isqrt(weight.shape[1] // 3)
        if 3 * side * side == weight.shape[1]:
            return name, weight.view(-1, 3, side, side)
        return name, weight.view(weight.shape[0], 1, 1, -1)
    raise ValueError("the state dict holds no 2-D or 4-D '*.weight' tensor")


def weight_grid(weights: torch.Tensor) -> torch.Tensor:
    """Images ``(K, C, h, w)`` -> a grid ``(3, H, W)`` in [0, 1], each image min-max scaled on its own."""
    from torchvision.utils import make_grid

    low = weights.amin((1, 2, 3), keepdim=True)
    high = weights.amax((1, 2, 3), keepdim=True)
    scaled = (weights - low) / (high - low).clamp_min(1e-12)
    if scaled.shape[1] not in (1, 3):
        scaled = scaled.mean(1, keepdim=True)
    return make_grid(scaled, nrow=math.ceil(math.sqrt(scaled.shape[0])), padding=1, pad_value=1.0)


def _newest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted(run_dir.rglob("*.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def plot_run(log_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write ``loss.png``, ``accuracy.png`` and (with a checkpoint) ``weights.png`` for the run that
    :func:`find_metrics_csv` picks in ``log_dir``, into ``out_dir`` (default: that run's folder).

    Returns:
        The paths written.
    """
    metrics_csv = find_metrics_csv(log_dir)
    run_dir = metrics_csv.parent
    out = Path(out_dir) if out_dir is not None else run_dir
    out.mkdir(parents=True, exist_ok=True)
    series = read_metrics(metrics_csv)
    written = [
        _save(loss_figure(series), out / "loss.png"),
        _save(accuracy_figure(series), out / "accuracy.png"),
    ]

    checkpoint = _newest_checkpoint(run_dir)
    if checkpoint is not None:
        import torch
        from matplotlib.figure import Figure

        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        name, weights = first_layer_weights(state.get("state_dict", state))
        fig = Figure(figsize=(6, 6))
        ax = fig.subplots()
        ax.imshow(weight_grid(weights).permute(1, 2, 0).numpy())
        ax.set(title=f"First-layer weights ({name})")
        ax.axis("off")
        written.append(_save(fig, out / "weights.png"))
    return written


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``cs231n plot LOG_DIR [--out DIR]``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="cs231n plot", description=__doc__.split("\n")[0])
    parser.add_argument("log_dir", help="a Lightning CSVLogger run folder (or a folder above one)")
    parser.add_argument("--out", default=None, help="output folder (default: the run folder)")
    args = parser.parse_args(argv)
    try:
        metrics_csv = find_metrics_csv(args.log_dir)
        print(f"cs231n plot: using {metrics_csv}", flush=True)
        paths = plot_run(metrics_csv.parent, args.out)
    except (FileNotFoundError, ValueError) as err:
        print(f"cs231n plot: error: {err}", flush=True)
        return 2
    for path in paths:
        print(path)
    return 0
