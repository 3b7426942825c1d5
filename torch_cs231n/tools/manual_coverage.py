"""How much of every torchvision classification model runs on the manual operators.

For each model (random weights, train mode, batch 1, or 2 where training-mode BatchNorm meets a 1x1 map,
the smallest of ``--sizes`` its built-in forward accepts), :func:`torch_cs231n.interop.swap.manual_share`
after :func:`~torch_cs231n.interop.swap.to_manual` alone and after ``to_manual`` +
:func:`~torch_cs231n.interop.function_mode.attach_manual_functions`: the share of
layer-level calls made by manual ops, the share of the flops (forward + backward) done inside them, and
what stays built-in. Results go to JSON (rewritten after every model, so a long run keeps what it has)
and to a markdown table::

    OMP_NUM_THREADS=1 python -m torch_cs231n.tools.manual_coverage --all \
        --json coverage.json --markdown coverage.md
    python -m torch_cs231n.tools.manual_coverage --models resnet18,vit_b_16
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from torch_cs231n.interop.function_mode import ManualShare, attach_manual_functions, manual_functions_of
from torch_cs231n.interop.swap import manual_share, to_manual
from torch_cs231n.tools.command import run_record

SIZES = (64, 224, 299)
"""Input sizes tried, smallest first (64 suits most CNNs, ViT and MaxViT need 224, Inception-v3 299)."""

_BUILD_ARGS: dict[str, dict[str, object]] = {
    "googlenet": {"init_weights": True},  # random init without the "will change" warning
    "inception_v3": {"init_weights": True},
}


@dataclass
class Coverage:
    """One model's figures.

    Attributes:
        model: torchvision name.
        input_size: side of the square input used (None when no size in ``--sizes`` ran).
        batch: batch size used.
        params_millions: parameters, in millions.
        layer_calls_swap: layer-call share after ``to_manual`` alone.
        layer_calls: layer-call share after ``to_manual`` + ``attach_manual_functions``.
        flops: flop share after ``to_manual`` + ``attach_manual_functions`` (forward + backward).
        gflops: all counted flops of that pass, in GFLOP.
        builtin: what stays built-in with the mode (layer calls, and flops outside manual ops).
        fallbacks: calls whose twin refused them, with the reason.
        error: the error that stopped the measurement, if any.
        seconds: wall time of this model's measurement.
    """

    model: str
    input_size: int | None = None
    batch: int = 1
    params_millions: float = math.nan
    layer_calls_swap: float = math.nan
    layer_calls: float = math.nan
    flops: float = math.nan
    gflops: float = math.nan
    builtin: str = ""
    fallbacks: str = ""
    error: str | None = None
    seconds: float = 0.0


def _smallest_input(model: nn.Module, sizes: Sequence[int]) -> tuple[int, int] | None:
    """``(batch, size)``: the smallest batch (1, else 2: training-mode BatchNorm refuses one value per
    channel) and size whose ``(batch, 3, size, size)`` input the built-in model's forward accepts."""
    for batch in (1, 2):
        for size in sizes:
            try:
                with torch.no_grad():
                    model(torch.zeros(batch, 3, size, size))
            except (RuntimeError, ValueError, AssertionError, IndexError):
                continue
            return batch, size
    return None


def _builtin_text(share: ManualShare) -> str:
    """The built-in layer calls, and the flops outside manual ops by kind (aten's sdpa kernels are
    "attention", its convolutions "conv", the rest (mm, addmm, bmm, baddbmm) "matmul")."""
    parts = [share.builtin_summary()] if share.builtin_calls else []
    kinds: dict[str, int] = {}
    for op, count in share.builtin_flops.items():
        kind = "attention" if "attention" in op else "conv" if "conv" in op else "matmul"
        kinds[kind] = kinds.get(kind, 0) + count
    if kinds:
        flops = ", ".join(f"{kind} {n / share.total_flops:.1%}" for kind, n in sorted(kinds.items()))
        parts.append(f"flops outside manual ops: {flops}")
    return "; ".join(parts)


def measure(name: str, sizes: Sequence[int] = SIZES) -> Coverage:
    """Measure one torchvision model (see the module docstring); errors are recorded, not raised.

    Args:
        name: a name from ``torchvision.models.list_models(module=torchvision.models)``.
        sizes: input sizes to try, smallest first.

    Returns:
        The model's :class:`Coverage`.
    """
    start = time.perf_counter()
    row = Coverage(name)
    try:
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torchvision.models.get_model(name, weights=None, **_BUILD_ARGS.get(name, {}))
        row.params_millions = sum(p.numel() for p in model.parameters()) / 1e6
        shape = _smallest_input(model, sizes)
        if shape is None:
            raise ValueError(f"no input size in {list(sizes)} is accepted by the built-in model")
        row.batch, row.input_size = shape
        x = torch.randn(row.batch, 3, row.input_size, row.input_size)
        row.layer_calls_swap = manual_share(to_manual(model), x).layer_calls
        share = manual_share(attach_manual_functions(model), x)
        row.layer_calls, row.flops, row.gflops = share.layer_calls, share.flops, share.total_flops / 1e9
        row.builtin = _builtin_text(share)
        mode = manual_functions_of(model)
        if mode is not None and mode.fallbacks:
            row.fallbacks = "; ".join(f"{op} x{n}: {why}" for (op, why), n in sorted(mode.fallbacks.items()))
    except Exception as error:  # a model that fails is a row of the report, not the end of the run
        lines = str(error).strip().splitlines()
        row.error = f"{type(error).__name__}: {lines[0][:200] if lines else ''}"
    row.seconds = time.perf_counter() - start
    return row


def _percent(value: float) -> str:
    if math.isnan(value):
        return "–"
    return "100%" if value == 1.0 else f"{math.floor(value * 1000) / 10:.1f}%"


def _gflop(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def markdown(rows: Sequence[Coverage]) -> str:
    """The rows as a markdown table (percentages rounded down, so 100% means every call / flop)."""
    lines = [
        "| model | input | params (M) | layer calls, to_manual | layer calls, + ManualFunctions "
        "| flops, + ManualFunctions | GFLOP (fwd+bwd) | stays built-in (+ ManualFunctions) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        size = f"{row.batch}x{row.input_size}²" if row.input_size else "–"
        if row.error is not None:
            lines.append(f"| {row.model} | {size} | {row.params_millions:.1f} | fails: {row.error} | | | | |")
            continue
        stays = "; ".join(filter(None, (row.builtin, row.fallbacks and f"refused: {row.fallbacks}"))) or "–"
        lines.append(
            f"| {row.model} | {size} | {row.params_millions:.1f} | {_percent(row.layer_calls_swap)} "
            f"| {_percent(row.layer_calls)} | {_percent(row.flops)} | {_gflop(row.gflops)} | {stays} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: measure the models and write the JSON and markdown files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every torchvision classification model")
    which.add_argument("--models", help="comma-separated torchvision model names")
    parser.add_argument(
        "--sizes", default=",".join(map(str, SIZES)), help="input sizes to try, smallest first"
    )
    parser.add_argument("--json", type=Path, help="write the results here (after every model)")
    parser.add_argument("--markdown", type=Path, help="write the markdown table here")
    args = parser.parse_args(argv)
    names = torchvision.models.list_models(module=torchvision.models) if args.all else args.models.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: list[Coverage] = []
    record = {**run_record(), "argv": sys.argv[1:] if argv is None else list(argv)}
    for name in names:
        rows.append(measure(name, sizes))
        row = rows[-1]
        outcome = row.error or f"{_percent(row.layer_calls_swap)} -> {_percent(row.layer_calls)} calls"
        print(f"{name}: {outcome}, {_percent(row.flops)} flops ({row.seconds:.0f} s)", flush=True)
        if args.json:
            versions = {"torch": torch.__version__, "torchvision": torchvision.__version__, **record}
            records = [{k: None if v != v else v for k, v in asdict(r).items()} for r in rows]  # NaN: null
            args.json.write_text(json.dumps({**versions, "models": records}, indent=1))
        gc.collect()
    if args.markdown:
        args.markdown.write_text(markdown(rows))
    else:
        sys.stdout.write(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
