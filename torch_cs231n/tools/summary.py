"""A model, layer by layer, the way CS231n counts it: output shape, activations and parameters per layer,
and the memory the activations take.

:func:`layer_table` runs one small training-mode forward pass with a hook on every leaf module (a module
without children; the hooks make a ``SandwichSequential`` call its layers one by one, so each has its row)
and records, in call order, one row per call:

* ``output_shape``: the output's shape for one sample (the batch dimension dropped);
* ``activations``: the number of values in that output, per sample (``prod(output_shape)``);
* ``params``: the parameters the module holds (on its first call; a module called again gets 0).

Totals: the model's parameters, the forward activation memory per sample (the layers' outputs, a view of an
earlier tensor, as ``Flatten`` or an in-place ReLU returns, counted once) and the memory saved for backward
per sample: the tensors autograd keeps for the backward pass, measured with
:func:`torch_cs231n.tools.memory.saved_memory` (parameters and buffers excluded) at two batch sizes, the
growth per sample being the per-sample figure and the rest what a batch saves whatever its size. Both
measurements run without hooks, the model as training runs it (sandwiches fused).

Lightning's ``ModelSummary`` lists modules in definition order, with the batch dimension, and needs a
``LightningModule``; this table follows the calls and works for any ``nn.Module``. It does use a
``LightningModule``'s ``example_input_array`` for the input size when none is given.

``cs231n summary --config CONFIG`` prints the table of the model a config describes.
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from matplotlib.figure import Figure
from torch import nn

from .command import add_output_arguments, report_stream, write_outputs
from .memory import flat_tensors, saved_memory

DEFAULT_INPUT_SIZE: tuple[int, ...] = (3, 32, 32)
"""Input size of a CIFAR-10 image, used when neither the caller nor the model gives one."""


@dataclass(frozen=True)
class LayerRow:
    """One call of a leaf module.

    Attributes:
        name: qualified module name (``model.named_modules()``).
        type: class name, e.g. ``"Conv2d"``.
        output_shape: output shape of one sample (no batch dimension).
        activations: values in the output per sample.
        params: parameters of the module (0 on its second and later calls).
    """

    name: str
    type: str
    output_shape: tuple[int, ...]
    activations: int
    params: int


@dataclass(frozen=True)
class LayerTable:
    """The rows and the totals of :func:`layer_table`.

    Attributes:
        rows: one per leaf-module call, in call order.
        input_size: the input of one sample.
        dtype: the dtype the model computed in (its parameters').
        params: all parameters of the model (each counted once).
        trainable_params: those that require grad.
        forward_bytes: bytes of the layers' outputs per sample, each distinct tensor once.
        saved_bytes: bytes saved for backward per sample.
        saved_fixed_bytes: bytes saved for backward per batch whatever its size (e.g. batch-norm statistics).
    """

    rows: tuple[LayerRow, ...]
    input_size: tuple[int, ...]
    dtype: str
    params: int
    trainable_params: int
    forward_bytes: int
    saved_bytes: int
    saved_fixed_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"input_size", "dtype", "rows": [...], "totals": {...}}``."""
        totals = asdict(self)
        rows = [{**row, "output_shape": list(row["output_shape"])} for row in totals.pop("rows")]
        input_size, dtype = list(totals.pop("input_size")), totals.pop("dtype")
        return {"input_size": input_size, "dtype": dtype, "rows": rows, "totals": totals}


def default_input_size(model: nn.Module) -> tuple[int, ...]:
    """The input of one sample for ``model``: the shape of its ``example_input_array`` (a Lightning
    convention) without the batch dimension, else its ``hparams.input_dim`` when that is a shape (the
    ``ThreeLayerConvNet`` argument), else :data:`DEFAULT_INPUT_SIZE`."""
    example = getattr(model, "example_input_array", None)
    if isinstance(example, torch.Tensor):
        return tuple(example.shape[1:])
    hparams = getattr(model, "hparams", None)
    input_dim = hparams.get("input_dim") if isinstance(hparams, Mapping) else None
    if isinstance(input_dim, Sequence):
        return tuple(int(d) for d in input_dim)
    return DEFAULT_INPUT_SIZE


def layer_table(
    model: nn.Module, input_size: Sequence[int] | None = None, batch_sizes: tuple[int, int] = (2, 4)
) -> LayerTable:
    """Summarise ``model`` on random inputs of ``input_size`` (one sample's shape).

    ``model`` is left untouched: a copy runs in training mode (the memory that training needs), on
    ``batch_sizes`` samples (two sizes, to separate the per-sample from the fixed memory saved for
    backward; batch norm needs more than one sample), under a forked RNG.

    Args:
        model: any ``nn.Module`` taking one tensor ``(N, *input_size)``.
        input_size: e.g. ``(3, 32, 32)``; default :func:`default_input_size`.
        batch_sizes: the two batch sizes, the first one also giving the rows.

    Returns:
        The :class:`LayerTable`.

    Examples::

        >>> net = nn.Sequential(nn.Conv2d(1, 10, 5, padding=2), nn.MaxPool2d(2), nn.Flatten(),
        ...                     nn.Linear(2560, 10))
        >>> table = layer_table(net, (1, 32, 32))
        >>> for r in table.rows:
        ...     print(r.type, r.output_shape, r.activations, r.params)
        Conv2d (10, 32, 32) 10240 260
        MaxPool2d (10, 16, 16) 2560 0
        Flatten (2560,) 2560 0
        Linear (10,) 10 25610
        >>> table.forward_bytes == (10240 + 2560 + 10) * 4  # Flatten's output is a view of the pool's
        True
    """
    size = tuple(input_size) if input_size is not None else default_input_size(model)
    small, large = batch_sizes
    if not 0 < small < large:
        raise ValueError(f"batch_sizes must be two increasing positive ints, got {batch_sizes!r}")
    net = copy.deepcopy(model).train()  # the caller's running statistics and mode stay as they are
    first = next(net.parameters(), None)
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.get_default_dtype()
    device = first.device if first is not None else torch.device("cpu")
    names = {module: name for name, module in net.named_modules()}
    keep = [*net.parameters(), *net.buffers()]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        x = torch.randn(small, *size, dtype=dtype, device=device)
        # Both memory measurements run the model as training does, without hooks: a hook on a layer makes a
        # SandwichSequential run its children one by one, which saves other tensors than the sandwich.
        saved_small = saved_memory(net, (x,), exclude=keep)
        saved_large = saved_memory(
            net, (torch.randn(large, *size, dtype=dtype, device=device),), exclude=keep
        )
        calls = _leaf_calls(net, x)

    rows, seen_modules = [], set()
    seen_storages = {x.untyped_storage().data_ptr()}
    forward_bytes = 0
    for module, outputs in calls:
        values = sum(t.numel() for t in outputs) // small
        params = 0 if module in seen_modules else sum(p.numel() for p in module.parameters())
        seen_modules.add(module)
        shape = tuple(outputs[0].shape[1:]) if outputs else ()
        name = names[module] or "(model)"  # the model itself when it has no children
        rows.append(LayerRow(name, type(module).__name__, shape, values, params))
        for t in outputs:
            if t.untyped_storage().data_ptr() not in seen_storages:
                seen_storages.add(t.untyped_storage().data_ptr())
                forward_bytes += t.numel() // small * t.element_size()
    per_sample = (saved_large.bytes - saved_small.bytes) // (large - small)
    parameters = list(net.parameters())
    return LayerTable(
        rows=tuple(rows),
        input_size=size,
        dtype=str(dtype).removeprefix("torch."),
        params=sum(p.numel() for p in parameters),
        trainable_params=sum(p.numel() for p in parameters if p.requires_grad),
        forward_bytes=forward_bytes,
        saved_bytes=per_sample,
        saved_fixed_bytes=saved_small.bytes - small * per_sample,
    )


def _leaf_calls(net: nn.Module, x: torch.Tensor) -> list[tuple[nn.Module, list[torch.Tensor]]]:
    """Every call of a leaf module of ``net`` in ``net(x)``, in call order, with the tensors it returned.

    The pass runs with a forward hook on every leaf module and without autograd recording (the rows need the
    outputs alone; hooks also make a ``SandwichSequential`` call each layer, so every layer gets its row).
    """
    calls: list[tuple[nn.Module, list[torch.Tensor]]] = []
    handles = [
        module.register_forward_hook(lambda m, _, out: calls.append((m, flat_tensors(out))))
        for module in net.modules()
        if next(module.children(), None) is None
    ]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def format_table(table: LayerTable) -> str:
    """The table as aligned text, then the totals."""
    header = ("name", "type", "output shape", "activations", "params")
    body = [
        (r.name, r.type, "x".join(map(str, r.output_shape)), f"{r.activations:,}", f"{r.params:,}")
        for r in table.rows
    ]
    widths = [max(len(line[k]) for line in [header, *body]) for k in range(len(header))]
    lines = [
        "  ".join(cell.rjust(w) if k >= 3 else cell.ljust(w) for k, (cell, w) in enumerate(zip(line, widths)))
        for line in [header, *body]
    ]
    input_size = "x".join(map(str, table.input_size))
    activations = sum(r.activations for r in table.rows)
    frozen = table.params - table.trainable_params
    lines += [
        "",
        f"input {input_size} ({table.dtype}); {len(table.rows)} leaf-module calls",
        f"parameters: {table.params:,}" + (f" ({frozen:,} frozen)" if frozen else ""),
        f"activations per sample: {activations:,} values; forward memory {_bytes(table.forward_bytes)} "
        "(views counted once)",
        f"saved for backward: {_bytes(table.saved_bytes)} per sample "
        f"+ {_bytes(table.saved_fixed_bytes)} per batch",
    ]
    return "\n".join(line.rstrip() for line in lines)


def summary_figure(table: LayerTable, title: str) -> Figure:
    """Activations per sample and parameters of every row, as two horizontal bar charts (log scale, each
    bar labelled with its number), layers top to bottom in call order."""
    fig = Figure(figsize=(10, 0.35 * len(table.rows) + 1.5), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    ys = range(len(table.rows))
    for ax, field, color in zip(axes, ("activations", "params"), ("tab:blue", "tab:orange")):
        values = [getattr(r, field) for r in table.rows]
        bars = ax.barh(ys, values, color=color)
        ax.bar_label(bars, [f"{v:,}" if v else "" for v in values], padding=2, fontsize=8)
        ax.set(xscale="log", xlim=(1, 30 * max(max(values), 1)))
    axes[0].set_yticks(ys, [f"{r.name} ({r.type})" for r in table.rows])
    axes[0].invert_yaxis()
    axes[0].set_title("activations per sample")
    axes[1].set_title("parameters")
    fig.suptitle(title)
    return fig


def build_model_from_config(
    config: str | Path, ops: str | None = None, overrides: Sequence[str] = ()
) -> nn.Module:
    """Instantiate the ``model`` section of a ``cs231n fit`` config, without data or trainer.

    Args:
        config: a YAML config with ``model: {class_path: ..., init_args: ...}``.
        ops: ``"manual"`` or ``"builtin"`` to override ``init_args.ops``; ``None`` keeps the config's.
        overrides: more command-line overrides of the model, e.g. ``["--model.init_args.weights", "null"]``.

    Returns:
        The model (a ``LightningModule``).
    """
    from lightning.pytorch import LightningModule
    from lightning.pytorch.cli import LightningArgumentParser

    section = (yaml.safe_load(Path(config).read_text()) or {}).get("model")
    if not isinstance(section, dict):
        raise ValueError(f"{config}: no `model:` section with a class_path")
    parser = LightningArgumentParser(prog="cs231n summary")
    parser.add_subclass_arguments(LightningModule, "model")
    args = ["--model", json.dumps(section), *overrides]
    if ops is not None:
        args += ["--model.init_args.ops", ops]
    return parser.instantiate_classes(parser.parse_args(args)).model


def main(argv: Sequence[str] | None = None) -> int:
    """``cs231n summary --config CONFIG``: print the layer table; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="cs231n summary",
        description="Layer table of a config's model: output shape, activations and parameters per leaf "
        "module in call order, activation memory (forward, and saved for backward) per sample. Further "
        "--model.init_args.NAME VALUE arguments override the config's model.",
    )
    parser.add_argument("--config", required=True, type=Path, help="a `cs231n fit` YAML config")
    parser.add_argument(
        "--ops",
        choices=("manual", "builtin"),
        default=None,
        help="override the config's ops (the CS231n configs use manual)",
    )
    parser.add_argument(
        "--input-size",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="one sample's input, e.g. 3 32 32 (default: the model's example_input_array, its input_dim, "
        "or 3 32 32)",
    )
    add_output_arguments(parser, "summary", "summary.png")
    args, overrides = parser.parse_known_args(argv)
    unknown = [a for a in overrides if a.startswith("-") and not a.startswith("--model.")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        model = build_model_from_config(args.config, args.ops, overrides)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    table = layer_table(model, args.input_size)
    ops = model.hparams.get("ops", "?")  # the model's manual/builtin switch, as saved in its hyper-parameters
    out = report_stream(args)
    print(f"{args.config}: {type(model).__name__}, ops {ops}", file=out)
    print(format_table(table), file=out)
    payload = {"config": str(args.config), "model": type(model).__name__, **table.to_dict()}
    title = f"{args.config.name}: {type(model).__name__}, {ops} ops"
    write_outputs(args, "summary", payload, {"summary.png": lambda: summary_figure(table, title)}, indent=1)
    return 0
