"""The CS231n Solver figures from a Lightning CSV log, and a grid of the first layer's weights.

``cs231n plot LOG_DIR`` (or :func:`plot_run`) writes into ``LOG_DIR`` (or ``--out``):
    loss.png      training loss per iteration (``train/loss_step``)
    accuracy.png  train and validation accuracy per epoch (``train/acc``, ``val/acc``)
    weights.png   the first affine/conv layer's weights as images (from the newest checkpoint, if any)
Figures are drawn with matplotlib's object API (``Figure``, rendered by Agg): no pyplot state, no display.
``LOG_DIR`` is a run's version folder (``metrics.csv``, ``checkpoints/``) or any folder above it, in
which case the newest ``metrics.csv`` below it is used.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torchvision.utils import make_grid


def find_metrics_csv(log_dir: str | Path) -> Path:
    """``log_dir/metrics.csv``, else the most recently modified ``metrics.csv`` below ``log_dir``."""
    log_dir = Path(log_dir)
    if (log_dir / "metrics.csv").is_file():
        return log_dir / "metrics.csv"
    found = sorted(log_dir.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime) if log_dir.is_dir() else []
    if not found:
        raise FileNotFoundError(f"no metrics.csv in or below '{log_dir}' (a Lightning CSVLogger run folder)")
    return found[-1]


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
    """Write ``loss.png``, ``accuracy.png`` and (with a checkpoint) ``weights.png``; returns their paths."""
    metrics_csv = find_metrics_csv(log_dir)
    run_dir = metrics_csv.parent
    out = Path(out_dir) if out_dir is not None else run_dir
    out.mkdir(parents=True, exist_ok=True)
    series = read_metrics(metrics_csv)
    written = []

    loss = series.get("train/loss_step") or series.get("train/loss")
    if not loss:
        raise ValueError(f"{metrics_csv}: no 'train/loss_step' column; was the model logging train/loss?")
    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    ax.plot([s for _, s, _ in loss], [v for _, _, v in loss], "o", markersize=2)
    ax.set(title="Training loss", xlabel="Iteration", ylabel="Loss")
    written.append(_save(fig, out / "loss.png"))

    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    for name, label in (("train/acc", "train"), ("val/acc", "val")):
        points = series.get(name) or series.get(f"{name}_epoch")
        if points:
            ax.plot([e for e, _, _ in points], [v for _, _, v in points], "-o", label=label)
    ax.set(title="Classification accuracy", xlabel="Epoch", ylabel="Accuracy")
    ax.legend(loc="lower right")
    written.append(_save(fig, out / "accuracy.png"))

    checkpoint = _newest_checkpoint(run_dir)
    if checkpoint is not None:
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
        paths = plot_run(args.log_dir, args.out)
    except (FileNotFoundError, ValueError) as err:
        print(f"cs231n plot: error: {err}", flush=True)
        return 2
    for path in paths:
        print(path)
    return 0
