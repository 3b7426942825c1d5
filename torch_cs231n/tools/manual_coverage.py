"""How much of every torchvision classification model (and of a set of timm models) runs on the manual
operators, and whether it still computes the same.

For each model (random weights, train mode, batch 1, or 2 where training-mode BatchNorm meets a 1x1 map,
the smallest of ``--sizes`` its built-in forward accepts), :func:`torch_cs231n.interop.swap.manual_share`
after :func:`~torch_cs231n.interop.swap.to_manual` alone and after ``to_manual`` +
:func:`~torch_cs231n.interop.function_mode.attach_manual_functions`: the share of
layer-level calls made by manual ops, the share of the flops (forward + backward) done inside them, and
what stays built-in. Then the parity check (:func:`parity`): the built-in model and a copy with the same
weights after ``to_manual`` + ``attach_manual_functions``, both in float64, on the same input and random
state; the largest difference of the logits and of the input gradient, relative to the built-in's largest
value. Results go to JSON (rewritten after every model, so a long run keeps what it has) and to a markdown
table::

    OMP_NUM_THREADS=1 python -m torch_cs231n.tools.manual_coverage --all \
        --json coverage.json --markdown coverage.md
    python -m torch_cs231n.tools.manual_coverage --models resnet18,vit_b_16
    python -m torch_cs231n.tools.manual_coverage --source timm --all --json timm.json

``--source timm`` measures models of timm (``timm.create_model(name, pretrained=False)``; ``--all``: the
models of :data:`TIMM_MODELS`); timm is needed only then (it is in the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib
import json
import math
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torch.utils._pytree import tree_flatten

from torch_cs231n.interop.function_mode import ManualShare, attach_manual_functions, manual_functions_of
from torch_cs231n.interop.swap import manual_share, to_manual
from torch_cs231n.tools.command import run_record

SIZES = (64, 224, 299)
"""Input sizes tried, smallest first (64 suits most CNNs, ViT and MaxViT need 224, Inception-v3 299)."""

TIMM_MODELS = (
    "cspdarknet53",
    "vit_tiny_patch16_224",
    "deit_tiny_patch16_224",
    "convnext_atto",
    "efficientnet_b0",
)
"""The timm models of ``--source timm --all``: a CSPNet (LeakyReLU), two ViTs (fused attention), a ConvNeXt
and an EfficientNet, written by others than torchvision's authors."""

SOURCES = ("torchvision", "timm")
"""Where the models come from (``--source``)."""

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
        logits_rel_diff: parity in float64: ``max |manual - built-in| / max |built-in|`` of the logits (None
            when not checked).
        input_grad_rel_diff: the same of the gradient with respect to the input.
        error: the error that stopped the measurement, if any.
        seconds: wall time of this model's measurement.
        source: where the model comes from (``"torchvision"`` or ``"timm"``).
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
    logits_rel_diff: float | None = None
    input_grad_rel_diff: float | None = None
    error: str | None = None
    seconds: float = 0.0
    source: str = "torchvision"


def import_timm() -> Any:
    """The ``timm`` module; an ``ImportError`` saying how to get it when it is not installed."""
    try:
        return importlib.import_module("timm")
    except ImportError as error:
        raise ImportError(
            "the timm rows need the timm package (pip install timm, or the project's dev extra: "
            "pip install -e '.[dev]')"
        ) from error


def build(name: str, source: str = "torchvision") -> nn.Module:
    """A model with random weights: torchvision's ``get_model(name, weights=None)`` or timm's
    ``create_model(name, pretrained=False)``."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if source == "timm":
            return import_timm().create_model(name, pretrained=False)
        return torchvision.models.get_model(name, weights=None, **_BUILD_ARGS.get(name, {}))


def _logits(output: Any) -> torch.Tensor:
    """The first tensor of a model's output (GoogLeNet's and Inception's training outputs are tuples)."""
    return next(t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor))


def _run_float64(model: nn.Module, x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, input gradient)`` of ``model`` in float64 on ``x``, for a fixed random cotangent, from the
    random state ``seed`` (dropout and stochastic depth draw the same masks in both runs)."""
    x = x.detach().to(torch.float64).requires_grad_(True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        logits = _logits(model(x))
    cotangent = torch.randn(logits.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    (grad,) = torch.autograd.grad(logits, x, cotangent)
    return logits.detach(), grad


def _relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max |actual - expected| / max |expected|`` (the absolute difference where ``expected`` is 0)."""
    scale = expected.abs().max().item() if expected.numel() else 0.0
    difference = (actual - expected).abs().max().item() if expected.numel() else 0.0
    return difference / scale if scale > 0 else difference


def parity(model: nn.Module, x: torch.Tensor, seed: int = 0) -> tuple[float, float]:
    """The built-in ``model`` and a copy with the same weights on the manual ops (``to_manual`` +
    ``attach_manual_functions``), both in float64 and in ``model``'s mode, on ``x`` from the same random
    state: the largest difference of their logits and of their input gradients, each relative to the
    built-in's largest absolute value. ``model`` itself is left as it was (copies are run).

    Examples::

        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
        >>> _ = model(torch.zeros(1, 3, 6, 6))
        >>> logits, grad = parity(model, torch.randn(1, 3, 6, 6))
        >>> logits < 1e-12 and grad < 1e-12
        True
    """
    reference = copy.deepcopy(model).to(torch.float64)
    ref_logits, ref_grad = _run_float64(reference, x, seed)
    del reference
    manual = attach_manual_functions(to_manual(copy.deepcopy(model).to(torch.float64)))
    logits, grad = _run_float64(manual, x, seed)
    return _relative(logits, ref_logits), _relative(grad, ref_grad)


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


def measure(
    name: str, sizes: Sequence[int] = SIZES, source: str = "torchvision", check_parity: bool = True
) -> Coverage:
    """Measure one model (see the module docstring); errors are recorded, not raised.

    Args:
        name: a name from ``torchvision.models.list_models(module=torchvision.models)``, or of timm's
            models with ``source="timm"``.
        sizes: input sizes to try, smallest first.
        source: ``"torchvision"`` or ``"timm"``.
        check_parity: also run the float64 parity check (:func:`parity`).

    Returns:
        The model's :class:`Coverage`.
    """
    start = time.perf_counter()
    row = Coverage(name, source=source)
    try:
        torch.manual_seed(0)
        model = build(name, source)
        row.params_millions = sum(p.numel() for p in model.parameters()) / 1e6
        shape = _smallest_input(model, sizes)
        if shape is None:
            raise ValueError(f"no input size in {list(sizes)} is accepted by the built-in model")
        row.batch, row.input_size = shape
        x = torch.randn(row.batch, 3, row.input_size, row.input_size)
        if check_parity:  # first, on copies of the built-in model
            row.logits_rel_diff, row.input_grad_rel_diff = parity(model, x)
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


def _difference(value: float | None) -> str:
    return "–" if value is None else f"{value:.1e}"


def markdown(rows: Sequence[Coverage]) -> str:
    """The rows as a markdown table (percentages rounded down, so 100% means every call / flop)."""
    lines = [
        "| model | input | params (M) | layer calls, to_manual | layer calls, + ManualFunctions "
        "| flops, + ManualFunctions | GFLOP (fwd+bwd) | float64 max rel. diff (logits / input grad) "
        "| stays built-in (+ ManualFunctions) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        size = f"{row.batch}x{row.input_size}²" if row.input_size else "–"
        if row.error is not None:
            lines.append(
                f"| {row.model} | {size} | {row.params_millions:.1f} | fails: {row.error} | | | | | |"
            )
            continue
        stays = "; ".join(filter(None, (row.builtin, row.fallbacks and f"refused: {row.fallbacks}"))) or "–"
        diffs = f"{_difference(row.logits_rel_diff)} / {_difference(row.input_grad_rel_diff)}"
        lines.append(
            f"| {row.model} | {size} | {row.params_millions:.1f} | {_percent(row.layer_calls_swap)} "
            f"| {_percent(row.layer_calls)} | {_percent(row.flops)} | {_gflop(row.gflops)} | {diffs} "
            f"| {stays} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: measure the models and write the JSON and markdown files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--all", action="store_true", help="every torchvision classification model (timm: TIMM_MODELS)"
    )
    which.add_argument("--models", help="comma-separated model names (of --source)")
    parser.add_argument("--source", choices=SOURCES, default="torchvision", help="where the models come from")
    parser.add_argument(
        "--no-parity", action="store_true", help="skip the float64 parity check with the built-in model"
    )
    parser.add_argument(
        "--sizes", default=",".join(map(str, SIZES)), help="input sizes to try, smallest first"
    )
    parser.add_argument("--json", type=Path, help="write the results here (after every model)")
    parser.add_argument("--markdown", type=Path, help="write the markdown table here")
    args = parser.parse_args(argv)
    versions = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    if args.source == "timm":
        versions["timm"] = import_timm().__version__  # before any model: a clear error without timm
        names = list(TIMM_MODELS) if args.all else args.models.split(",")
    elif args.all:
        names = torchvision.models.list_models(module=torchvision.models)
    else:
        names = args.models.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: list[Coverage] = []
    record = {**run_record(), "argv": sys.argv[1:] if argv is None else list(argv)}
    for name in names:
        rows.append(measure(name, sizes, args.source, check_parity=not args.no_parity))
        row = rows[-1]
        outcome = row.error or f"{_percent(row.layer_calls_swap)} -> {_percent(row.layer_calls)} calls"
        diffs = f"{_difference(row.logits_rel_diff)} / {_difference(row.input_grad_rel_diff)}"
        print(
            f"{name}: {outcome}, {_percent(row.flops)} flops, float64 max rel. diff logits / input grad "
            f"{diffs} ({row.seconds:.0f} s)",
            flush=True,
        )
        if args.json:
            records = [{k: None if v != v else v for k, v in asdict(r).items()} for r in rows]  # NaN: null
            args.json.write_text(json.dumps({**versions, **record, "models": records}, indent=1))
        gc.collect()
    if args.markdown:
        args.markdown.write_text(markdown(rows))
    else:
        sys.stdout.write(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
