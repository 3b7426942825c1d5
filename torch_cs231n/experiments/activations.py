"""Weight initialisation: what the activations of a deep net look like at the start of training.

The lecture's study: 16 random inputs ``x ~ N(0, 1)`` of 4096 features through 6 fully connected layers of
4096 units (no bias), ``h = f(h W^T)`` with ``W ~ N(0, std^2)``, for

    gaussian-0.01   std 0.01
    gaussian-0.05   std 0.05
    xavier          std 1 / sqrt(D_in)
    kaiming         std sqrt(2 / D_in)

crossed with ``f = tanh`` and ``f = relu``; per layer, the mean, the standard deviation and a histogram of
the 16 x 4096 values. What it shows: with tanh, std 0.01 shrinks the activations toward zero layer after
layer, 0.05 saturates them at +-1, Xavier keeps a steady spread; with ReLU, Xavier halves the variance at
every layer (the spread shrinks by sqrt(2)) and Kaiming keeps it.

The layers are the project's manual ops (``custom_ops.functional.linear``, ``relu``, ``tanh``) or, with
``ops="builtin"``, their ``torch`` twins. Every run sees the same input and, layer by layer, the same
standard-normal draw of ``W`` scaled by its init's std, so the runs differ by the initialisation alone.

``cs231n experiment activations [--ops builtin] [--out DIR] [--json PATH] [--seed 0]``
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

import custom_ops.functional as MF
from torch_cs231n.nets.init import weight_std
from torch_cs231n.tools.command import add_output_arguments, positive_int, report_stream, write_outputs

INITS: tuple[str, ...] = ("gaussian-0.01", "gaussian-0.05", "xavier", "kaiming")
"""The initialisations compared: ``gaussian-STD``, ``xavier``, ``kaiming``."""

NONLINEARITIES: tuple[str, ...] = ("tanh", "relu")


def init_std(init: str, fan_in: int) -> float:
    """The weight std of ``init`` for a layer with ``fan_in`` inputs.

    Args:
        init: ``"gaussian-STD"`` (e.g. ``"gaussian-0.01"``), ``"xavier"`` (``1/sqrt(fan_in)``) or
            ``"kaiming"`` (``sqrt(2/fan_in)``).
        fan_in: ``D_in``.

    Examples::

        >>> init_std("gaussian-0.05", 4096), init_std("xavier", 4096), init_std("kaiming", 4096)
        (0.05, 0.015625, 0.02209708691207961)
    """
    scheme, _, scale = init.partition("-")
    if scheme == "gaussian" and scale:
        return weight_std("gaussian", fan_in, float(scale))
    if scheme in ("xavier", "kaiming") and not scale:
        return weight_std(scheme, fan_in, 1.0)
    raise ValueError(f"init must be 'gaussian-STD', 'xavier' or 'kaiming', got {init!r}")


def layer_ops(
    ops: str,
) -> tuple[Callable[..., torch.Tensor], dict[str, Callable[[torch.Tensor], torch.Tensor]]]:
    """``(linear, {"tanh": ..., "relu": ...})`` of :mod:`custom_ops.functional` (``"manual"``) or of
    ``torch`` (``"builtin"``)."""
    if ops == "manual":
        return MF.linear, {"tanh": MF.tanh, "relu": MF.relu}
    if ops == "builtin":
        return F.linear, {"tanh": torch.tanh, "relu": F.relu}
    raise ValueError(f"ops must be 'manual' or 'builtin', got {ops!r}")


def _histogram(h: torch.Tensor, low: float, high: float, bins: int) -> dict[str, list[float]]:
    counts = torch.histc(h.double(), bins, low, high)
    return {"edges": torch.linspace(low, high, bins + 1).tolist(), "counts": [int(c) for c in counts]}


@torch.no_grad()
def activation_study(
    inits: Sequence[str] = INITS,
    nonlinearities: Sequence[str] = NONLINEARITIES,
    depth: int = 6,
    width: int = 4096,
    batch: int = 16,
    ops: str = "manual",
    seed: int = 0,
    bins: int = 40,
) -> dict[str, Any]:
    """Run the study; see the module docstring.

    Args:
        inits: initialisations (:func:`init_std`).
        nonlinearities: ``"tanh"`` and/or ``"relu"``.
        depth: number of layers.
        width: units per layer, and input features.
        batch: number of random inputs.
        ops: ``"manual"`` or ``"builtin"`` (:func:`layer_ops`).
        seed: seed of the input and the weights.
        bins: histogram bins per layer, over ``[-1, 1]`` for tanh and ``[0, max]`` of the run for ReLU.

    Returns:
        ``{"depth", "width", "batch", "ops", "seed", "runs": [{"init", "nonlinearity", "layers": [{"mean",
        "std", "histogram": {"edges", "counts"}}, ...]}, ...]}``, runs in ``nonlinearities`` x ``inits``
        order, one layer entry per layer.

    Examples::

        >>> study = activation_study(["xavier"], ["relu"], depth=2, width=64)
        >>> [round(layer["std"], 3) for layer in study["runs"][0]["layers"]]
        [0.58, 0.385]
    """
    linear, activation = layer_ops(ops)
    runs = [(init, f) for f in nonlinearities for init in inits]
    for f in nonlinearities:
        if f not in activation:
            raise ValueError(f"nonlinearity must be one of {tuple(activation)}, got {f!r}")
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, width, generator=generator)
    hs = {run: x for run in runs}
    outputs: dict[tuple[str, str], list[torch.Tensor]] = {run: [] for run in runs}
    for _ in range(depth):
        w = torch.randn(width, width, generator=generator)  # (D_out, D_in), shared by the runs
        for init, f in runs:
            hs[init, f] = activation[f](linear(hs[init, f], w * init_std(init, width)))
            outputs[init, f].append(hs[init, f])

    results = []
    for init, f in runs:
        layers = outputs[init, f]
        # one range for the whole run, so that a shrinking or growing spread shows across the row
        high = 1.0 if f == "tanh" else max(max(h.max().item() for h in layers), 1e-12)
        low = -high if f == "tanh" else 0.0
        stats = [
            {
                "mean": h.double().mean().item(),
                "std": h.double().std(correction=0).item(),
                "histogram": _histogram(h, low, high, bins),
            }
            for h in layers
        ]
        results.append({"init": init, "nonlinearity": f, "layers": stats})
    return {"depth": depth, "width": width, "batch": batch, "ops": ops, "seed": seed, "runs": results}


def format_table(study: dict[str, Any]) -> str:
    """One line per run: the std of every layer (and the mean of the last)."""
    depth = study["depth"]
    header = f"{'init':<14} {'f':<5} " + " ".join(f"{'std L' + str(k + 1):>9}" for k in range(depth))
    lines = [header + f" {'mean L' + str(depth):>10}"]
    for run in study["runs"]:
        stds = " ".join(f"{layer['std']:>9.3g}" for layer in run["layers"])
        lines.append(f"{run['init']:<14} {run['nonlinearity']:<5} {stds} {run['layers'][-1]['mean']:>10.3g}")
    return "\n".join(lines)


def std_figure(study: dict[str, Any]) -> Figure:
    """Std of the activations per layer (log scale), one panel per nonlinearity, one line per init."""
    nonlinearities = list(dict.fromkeys(run["nonlinearity"] for run in study["runs"]))
    fig = Figure(figsize=(5 * len(nonlinearities), 4), layout="constrained")
    axes = fig.subplots(1, len(nonlinearities), squeeze=False)[0]
    for ax, f in zip(axes, nonlinearities):
        for run in (r for r in study["runs"] if r["nonlinearity"] == f):
            stds = [layer["std"] for layer in run["layers"]]
            ax.plot(range(1, len(stds) + 1), stds, "-o", label=run["init"])
        ax.set(yscale="log", xlabel="layer", ylabel="std of the activations", title=f"{f}")
        ax.legend()
    fig.suptitle(
        f"{study['batch']} inputs through {study['depth']} layers of {study['width']} ({study['ops']} ops)"
    )
    return fig


def histogram_figure(study: dict[str, Any]) -> Figure:
    """The lecture's grid: a row per run, a histogram per layer (``mean``/``std`` in each title). ReLU's bar
    at 0 (half the values) is cut at the height of the tallest other bar, so the rest stays visible."""
    runs, depth = study["runs"], study["depth"]
    fig = Figure(figsize=(2.2 * depth, 1.6 * len(runs)), layout="constrained")
    axes = fig.subplots(len(runs), depth, squeeze=False)
    for row, run in zip(axes, runs):
        for k, (ax, layer) in enumerate(zip(row, run["layers"])):
            edges, counts = layer["histogram"]["edges"], layer["histogram"]["counts"]
            ax.stairs(counts, edges, fill=True)
            if run["nonlinearity"] == "relu":
                ax.set_ylim(0, 1.2 * max(max(counts[1:], default=0), 1))
            ax.set_title(f"mean {layer['mean']:.2f} std {layer['std']:.2g}", fontsize=7)
            ax.tick_params(labelsize=6)
            ax.set_yticks([])
            if k == 0:
                ax.set_ylabel(f"{run['init']}\n{run['nonlinearity']}", fontsize=8)
    for k, ax in enumerate(axes[-1]):
        ax.set_xlabel(f"layer {k + 1}", fontsize=8)
    return fig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cs231n experiment activations``."""
    parser.add_argument("--ops", choices=("manual", "builtin"), default="manual", help="default: manual")
    add_output_arguments(parser, "activations")
    parser.add_argument("--seed", type=int, default=0, help="seed of the inputs and weights (default 0)")
    parser.add_argument("--depth", type=positive_int, default=6, help="layers (default 6)")
    parser.add_argument("--width", type=positive_int, default=4096, help="units per layer (default 4096)")
    parser.add_argument("--batch", type=positive_int, default=16, help="random inputs (default 16)")


def run(args: argparse.Namespace) -> int:
    """Run the study with ``args`` (:func:`add_arguments`), print the table, write the files."""
    study = activation_study(
        depth=args.depth, width=args.width, batch=args.batch, ops=args.ops, seed=args.seed
    )
    print(format_table(study), file=report_stream(args))
    figures = {"activations_std.png": std_figure, "activations_hist.png": histogram_figure}
    write_outputs(args, "activations", study, {name: partial(f, study) for name, f in figures.items()})
    return 0
