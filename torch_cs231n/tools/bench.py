"""Benchmark of the manual operators against their built-in twins (``cs231n bench``).

For every operator of the registry (:data:`custom_ops.testing.SPECS`), on the shapes of
:data:`BENCH_CASES` (CS231n- and ResNet-18-sized), or on the first small sample of each op (and of each
conv backward algorithm) with ``--tiny``, it measures, manual and built-in interleaved in one process with
:class:`torch.utils.benchmark.Timer`:

* ``fwd``: the forward with autograd recording (inputs require grad), as in training;
* ``fwd+bwd``: that forward, then ``torch.autograd.grad`` of the output against a fixed random
  cotangent w.r.t. every differentiable input (no ``.grad`` accumulation is timed);
* ``saved``: bytes saved for backward (rule in :mod:`torch_cs231n.tools.memory`: distinct storages, activation
  input and output counted, parameters and buffers not).

Times are medians over every timed run; ``ratio`` is manual / built-in. ``floor`` is the ratio the manual
side could not go below even with free math: the built-in time plus, for each Python ``autograd.Function``
the manual forward puts in the graph, the fixed cost of one (:func:`function_overhead`, measured in the same
run: a Python Function against a C++ autograd node doing the same one-element copy).

End-to-end rows time one SGD training step (forward, loss, backward, update) of the fully connected
net, the three-layer conv net and a torchvision ResNet-18 on 32x32 inputs, built with manual or built-in
layers, optionally under ``torch.compile``. Targets of the issue (forward+backward ratios) are printed
next to each row.

Usage::

    python -m torch_cs231n.tools.bench --sizes cs231n,resnet --compile --json bench.json
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch.utils import benchmark

from custom_ops import fast_apply, fused
from custom_ops.conv import CONV_ALGORITHMS
from custom_ops.registry import OP_NAMES, SANDWICH_MANUAL_CHAINS
from custom_ops.testing import SANDWICHES, SPECS, InputFactory, OpCase, Sample, labels, normal, randn

from .command import add_json_argument, report_stream, run_record, write_json
from .memory import saved_memory

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}
E2E_MODELS = ("fc_net", "three_layer_convnet", "resnet18")

# Issue targets: manual / built-in, forward+backward (end-to-end rows: a training step), and saved memory.
TIME_TARGETS = {
    "linear": 1.1,
    "relu": 1.1,
    "dropout": 1.1,
    "batch_norm": 1.1,
    "max_pool2d": 1.1,
    "layer_norm": 1.2,
    "conv2d[fast]": 1.25,
    "e2e[fc_net]": 1.05,
    "e2e[three_layer_convnet]": 1.15,
    "e2e[resnet18]": 1.1,
}
MEMORY_TARGET = 1.0


@dataclass
class Row:
    """One benchmark row. Times in seconds (medians), memory in bytes, ratios manual / built-in."""

    kind: str  # "op" or "e2e"
    name: str  # op name or model name
    label: str
    device: str
    dtype: str
    fwd_manual: float | None = None
    fwd_builtin: float | None = None
    fwdbwd_manual: float | None = None
    fwdbwd_builtin: float | None = None
    train_step_manual: float | None = None  # "e2e" rows: a whole step (forward, loss, backward, update)
    train_step_builtin: float | None = None
    # With fused kernels on (``fused``), the ``*_manual`` times are the fused path's and the ``*_eager``
    # ones the eager reference path's, measured in the same interleaved turns.
    fused: bool = False
    fwd_eager: float | None = None
    fwdbwd_eager: float | None = None
    train_step_eager: float | None = None
    # Sandwich rows (``custom_ops.layer_utils``): the manual sandwich against the chain of built-ins, and
    # here the chain of the three manual ops it replaces.
    fwd_chain: float | None = None
    fwdbwd_chain: float | None = None
    saved_chain: int | None = None
    saved_manual: int | None = None
    saved_builtin: int | None = None
    saved_extra_manual: int | None = None
    saved_extra_builtin: int | None = None
    compiled: bool = False
    target: float | None = None
    functions: int | None = None  # Python autograd.Functions in the manual forward's graph
    function_overhead: float | None = None  # seconds one adds to a forward+backward (function_overhead)
    ratios: dict[str, float | None] = field(default_factory=dict)

    def finish(self) -> Row:
        """Fill ``ratios`` from the measured values (``floor``: see the module docstring)."""
        step = "train_step" if self.kind == "e2e" else "fwdbwd"
        builtin = getattr(self, f"{step}_builtin")
        if builtin and self.functions is not None and self.function_overhead is not None:
            self.ratios["floor"] = 1 + self.functions * self.function_overhead / builtin
        for key in ("fwd", "fwdbwd", "train_step", "saved", "saved_extra"):
            builtin = getattr(self, f"{key}_builtin")
            variants = [(key, getattr(self, f"{key}_manual"))]
            variants += [(f"{key}_{v}", getattr(self, f"{key}_{v}", None)) for v in ("eager", "chain")]
            for name, manual in variants:
                if manual is None or builtin is None:
                    continue
                self.ratios[name] = manual / builtin if builtin else (1.0 if manual == builtin else None)
        return self


def _variant(case: OpCase) -> str:
    """The conv backward algorithm of a conv case, ``""`` for other ops."""
    return case.sample.extras.get("algorithm", "")


def _target_key(case: OpCase) -> str:
    return f"{case.op}[{_variant(case)}]" if _variant(case) else case.op


# ------------------------------------------------------------------------------------------- shapes
def _shape(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def _case(
    op: str, label: str, make_inputs: InputFactory, grad_inputs: tuple[int, ...] = (0,), **kw: Any
) -> OpCase:
    return OpCase(SPECS[op], Sample(label, make_inputs, grad_inputs, **kw))


def _linear(n: int, d: int, o: int) -> OpCase:
    return _case("linear", f"{n}x{d}-{o}", normal((n, d), (o, d), (o,)), (0, 1, 2))


def _relu(shape: tuple[int, ...]) -> OpCase:
    return _case("relu", _shape(shape), normal(shape))


def _batch_norm(shape: tuple[int, ...]) -> OpCase:
    c = shape[1]

    def inputs(dt: torch.dtype, dev: torch.device) -> tuple[torch.Tensor, ...]:
        stats = (torch.zeros(c, dtype=dt, device=dev), torch.ones(c, dtype=dt, device=dev))
        return (randn(shape, dt, dev, 0), *stats, randn((c,), dt, dev, 1), randn((c,), dt, dev, 2))

    return _case("batch_norm", f"train-{_shape(shape)}", inputs, (0, 3, 4), kwargs={"training": True})


def _normalized_by(shape: tuple[int, ...], argument: Any, params: tuple[int, ...]) -> InputFactory:
    """``(x, argument, weight, bias)``: the inputs of layer_norm and group_norm."""
    return lambda dt, dev: (
        randn(shape, dt, dev, 0),
        argument,
        randn(params, dt, dev, 1),
        randn(params, dt, dev, 2),
    )


def _layer_norm(shape: tuple[int, ...], normalized: tuple[int, ...]) -> OpCase:
    label = f"{_shape(shape)}-over-{_shape(normalized)}"
    return _case("layer_norm", label, _normalized_by(shape, normalized, normalized), (0, 2, 3))


def _group_norm(shape: tuple[int, ...], groups: int) -> OpCase:
    inputs = _normalized_by(shape, groups, shape[1:2])
    return _case("group_norm", f"groups{groups}-{_shape(shape)}", inputs, (0, 2, 3))


def _dropout(shape: tuple[int, ...]) -> OpCase:
    return _case("dropout", f"p0.5-{_shape(shape)}", normal(shape), kwargs={"p": 0.5, "training": True})


def _conv(n: int, c: int, hw: int, o: int, k: int, stride: int, padding: int) -> list[OpCase]:
    """One case per backward algorithm."""
    return [
        _case(
            "conv2d",
            f"{algorithm}-{c}to{o}-k{k}s{stride}-{n}x{hw}x{hw}",
            normal((n, c, hw, hw), (o, c, k, k), (o,)),
            (0, 1, 2),
            kwargs={"stride": stride, "padding": padding},
            extras={"algorithm": algorithm},
        )
        for algorithm in CONV_ALGORITHMS
    ]


def _max_pool(shape: tuple[int, ...], k: int, stride: int, padding: int) -> OpCase:
    kwargs = {"kernel_size": k, "stride": stride, "padding": padding}
    return _case("max_pool2d", f"k{k}s{stride}-{_shape(shape)}", normal(shape), kwargs=kwargs)


def _attention_products(b: int, h: int, n: int, d: int) -> list[OpCase]:
    """The attention scores ``Q Kᵀ`` of ``b`` windows or images, ``h`` heads, ``n`` tokens of ``d`` dims, as
    Swin computes them (``matmul``) and as MaxViT does (``einsum``)."""
    qk = normal((b, h, n, d), (b, h, d, n))
    scores = next(s for s in SPECS["einsum"].samples if s.label == "attention-scores")  # bhid,bhjd->bhij
    label = f"{b}x{h}x{n}x{d}-scores"
    return [
        _case("matmul", label, qk, (0, 1)),
        OpCase(SPECS["einsum"], replace(scores, label=label, make_inputs=normal((b, h, n, d), (b, h, n, d)))),
    ]


def _losses(n: int, c: int) -> list[OpCase]:
    def inputs(dt: torch.dtype, dev: torch.device) -> tuple[torch.Tensor, ...]:
        return (randn((n, c), dt, dev, 0), labels(n, c, dev, 1))

    return [_case(op, f"{n}x{c}", inputs) for op in ("softmax_loss", "svm_loss")]


def _sandwich(
    name: str, label: str, shapes: Sequence[tuple[int, ...]], grad_inputs: tuple[int, ...], **kw: Any
):
    """A sandwich-layer case on inputs of ``shapes`` (standard normal; the 5th, a running variance, in
    ``[0.5, 1.5)``)."""

    def inputs(dt: torch.dtype, dev: torch.device) -> tuple[torch.Tensor, ...]:
        return tuple(
            randn(shape, dt, dev, i).abs_().add_(0.5) if i == 4 else randn(shape, dt, dev, i)
            for i, shape in enumerate(shapes)
        )

    return OpCase(SANDWICHES[name], Sample(label, inputs, grad_inputs, **kw))


def _sandwiches(n: int, d: int, o: int, conv: Sequence[tuple[int, int, int, int]]) -> list[OpCase]:
    """Every sandwich layer: the affine ones on ``(n, d) -> o``, the conv ones (3x3, padding 1, 2x2 pool) on
    each ``(n, c, hw, o)``."""
    c1 = (o,)
    bn = {"training": True, "momentum": 0.1, "eps": 1e-5}
    cases = [
        _sandwich("affine_relu", f"{n}x{d}-{o}", [(n, d), (o, d), c1], (0, 1, 2)),
        _sandwich(
            "affine_bn_relu",
            f"train-{n}x{d}-{o}",
            [(n, d), (o, d), c1, c1, c1, c1, c1],
            (0, 1, 2, 5, 6),
            kwargs=bn,
        ),
        _sandwich("affine_ln_relu", f"{n}x{d}-{o}", [(n, d), (o, d), c1, c1, c1], (0, 1, 2, 3, 4)),
    ]
    for n, c, hw, o in conv:
        x, w, c1 = (n, c, hw, hw), (o, c, 3, 3), (o,)
        label = f"{c}to{o}-{n}x{hw}x{hw}"
        p1 = {"stride": 1, "padding": 1}
        cases += [
            _sandwich("conv_relu", label, [x, w, c1], (0, 1, 2), kwargs=p1),
            _sandwich(
                "conv_bn_relu",
                f"train-{label}",
                [x, w, c1, c1, c1, c1, c1],
                (0, 1, 2, 5, 6),
                kwargs={**p1, **bn},
            ),
            _sandwich("conv_relu_pool", label, [x, w, c1], (0, 1, 2), kwargs={**p1, "pool_kernel": 2}),
        ]
    return cases


def _prelu(shape: tuple[int, ...]) -> OpCase:
    """PReLU on an ``(N, C, H, W)`` feature map with one learned slope per channel (inputs and slopes
    differentiated)."""
    return _case("prelu", f"per-channel-{_shape(shape)}", normal(shape, (shape[1],)), (0, 1))


def _attention(n: int, heads: int, length: int, head_dim: int) -> OpCase:
    """Self-attention on ``(n, heads, length, head_dim)`` queries, keys and values (ViT-tiny: 8, 3, 197,
    64): the manual attention saves the ``(n, heads, length, length)`` probabilities, the built-in's fused
    CPU kernel one log-sum-exp per query row."""
    shape = (n, heads, length, head_dim)
    return _case("scaled_dot_product_attention", _shape(shape), normal(shape, shape, shape), (0, 1, 2))


def _multi_head_attention(length: int, n: int, embed_dim: int, heads: int) -> OpCase:
    """``nn.MultiheadAttention``'s functional form on ``(length, n, embed_dim)`` self-attention inputs,
    packed projections with biases, no weights returned (what torchvision's ViT asks for)."""

    def inputs(dt: torch.dtype, dev: torch.device) -> tuple[Any, ...]:
        x = (length, n, embed_dim)
        w, b = randn((3 * embed_dim, embed_dim), dt, dev, 3), randn((3 * embed_dim,), dt, dev, 4)
        out_w, out_b = randn((embed_dim, embed_dim), dt, dev, 5), randn((embed_dim,), dt, dev, 6)
        q, k, v = (randn(x, dt, dev, i).mul_(0.1) for i in range(3))
        return (q, k, v, embed_dim, heads, w.mul_(0.1), b, None, None, False, 0.0, out_w.mul_(0.1), out_b)

    return _case(
        "multi_head_attention_forward",
        f"{heads}heads-{_shape((length, n, embed_dim))}",
        inputs,
        (0, 1, 2, 5, 6, 11, 12),
        kwargs={"need_weights": False},
        wrap=_first,
    )


def _first(fn: Callable[..., Any]) -> Callable[..., torch.Tensor]:
    """``fn`` returning ``(output, weights)``, keeping the output."""
    return lambda *args: fn(*args)[0]


def _sized(size: str, explicit: list[OpCase], feature_map: tuple[int, ...]) -> tuple[OpCase, ...]:
    """The ``explicit`` cases and, for every other op whose spec has a sample of one ``(N, C, H, W)`` input
    (activations, pooling), that sample on a ``feature_map``; labels prefixed with ``size``."""
    cases = list(explicit)
    for spec in SPECS.values():
        if spec.name in {case.op for case in explicit}:
            continue
        example = next((c for c in spec.cases if c.spatial and len(c.inputs(requires_grad=False)) == 1), None)
        if example is not None:
            label = f"{example.label}-{_shape(feature_map)}"
            cases.append(OpCase(spec, replace(example.sample, label=label, make_inputs=normal(feature_map))))
    return tuple(OpCase(c.spec, replace(c.sample, label=f"{size}-{c.label}")) for c in cases)


BENCH_CASES: dict[str, tuple[OpCase, ...]] = {
    "cs231n": _sized(
        "cs231n",
        [
            _linear(128, 3072, 100),
            _relu((128, 3072)),
            _relu((64, 32, 32, 32)),
            _batch_norm((128, 100)),
            _batch_norm((64, 32, 16, 16)),
            _layer_norm((128, 100), (100,)),
            _layer_norm((64, 32, 16, 16), (32, 16, 16)),
            _dropout((128, 3072)),
            *_conv(64, 3, 32, 32, 3, 1, 1),
            *_conv(64, 32, 16, 64, 3, 1, 1),
            _max_pool((64, 32, 32, 32), 2, 2, 0),
            _group_norm((64, 32, 16, 16), 4),
            *_losses(128, 10),
            *_sandwiches(128, 3072, 100, [(64, 3, 32, 32), (64, 32, 16, 64)]),
            *_attention_products(64, 4, 16, 32),
            _prelu((64, 32, 16, 16)),
            _attention(64, 2, 16, 32),
            _multi_head_attention(16, 64, 64, 2),
        ],
        (64, 32, 16, 16),
    ),
    "resnet": _sized(
        "resnet",
        [
            _linear(8, 512, 1000),
            _relu((8, 64, 56, 56)),
            _batch_norm((8, 64, 56, 56)),
            _layer_norm((8, 3136, 64), (64,)),
            _dropout((8, 64, 56, 56)),
            *_conv(8, 3, 224, 64, 7, 2, 3),
            *_conv(8, 64, 56, 64, 3, 1, 1),
            *_conv(8, 256, 14, 256, 3, 1, 1),
            *_conv(8, 64, 56, 128, 1, 2, 0),
            _max_pool((8, 64, 112, 112), 3, 2, 1),
            _group_norm((8, 64, 56, 56), 32),
            *_losses(8, 1000),
            *_attention_products(512, 3, 49, 32),  # Swin-T's first stage: 8 images of 64 windows
            _prelu((8, 64, 56, 56)),
            _attention(8, 3, 197, 64),
            _multi_head_attention(197, 8, 192, 3),
        ],
        (8, 64, 56, 56),
    ),
}
"""Benchmark shapes by size: CS231n-sized, and ResNet-18-sized (224x224 images, batch 8), built from the
ops' specs. Only forward/backward speed and memory are measured on these, so the inputs are plain normal
samples (kept apart from the specs' small samples, which the correctness tests run)."""
SIZES = tuple(BENCH_CASES)
BENCH_OPS = (*OP_NAMES, *SANDWICHES)
"""What ``--op`` selects from: the registry's ops and the sandwich layers."""


def time_interleaved(
    fns: dict[str, Callable[[], Any]],
    repeats: int,
    min_run_time: float,
    device: torch.device,
    warmup: int = 1,
) -> dict[str, float]:
    """Median seconds per call of each function; the functions take turns, ``repeats`` times each
    (order reversed every other round), each turn a ``blocked_autorange(min_run_time)``, after
    ``warmup`` untimed calls of each."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # first-call allocations, lazy init, compilation (and recompilation)
        for _ in range(warmup):
            fn()
    for r in range(repeats):
        order = list(fns) if r % 2 == 0 else list(reversed(fns))
        for name in order:
            timer = benchmark.Timer(
                stmt="fn()",
                globals={"fn": fns[name]},
                num_threads=torch.get_num_threads(),
                label=name,
            )
            measurement = timer.blocked_autorange(min_run_time=min_run_time)
            samples[name].extend(measurement.times)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {name: statistics.median(times) for name, times in samples.items()}


def _fwd_bwd(fn: Callable[..., torch.Tensor], args: list[Any], grad_positions: Sequence[int]):
    """(forward, forward+backward) closures of ``fn`` on ``args``."""
    grad_inputs = [args[i] for i in grad_positions]
    with torch.no_grad():
        out = fn(*args)
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out.device, out.dtype)

    def forward() -> torch.Tensor:
        return fn(*args)

    def forward_backward() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(fn(*args), grad_inputs, cotangent)

    return forward, forward_backward


@fast_apply
class _PythonCopy(torch.autograd.Function):
    """The cheapest Python autograd.Function in the form the ops use (``forward`` + ``setup_context``,
    which ``torch.func`` needs, with :func:`custom_ops._function.fast_apply`): a copy, whose gradient is
    the incoming one."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


def function_overhead(device: torch.device, dtype: torch.dtype, repeats: int, min_run_time: float) -> float:
    """Seconds one Python ``autograd.Function`` adds to a forward+backward: a one-element copy through
    :class:`_PythonCopy` against the same copy through the built-in's C++ node (``clone``), interleaved.
    Every manual op pays it at least once (the Python forward and backward calls, the context object), so
    a manual op can go no lower than ``(built-in time + overhead) / built-in time``."""
    x = torch.zeros(1, device=device, dtype=dtype, requires_grad=True)
    fns = {
        "python": _fwd_bwd(_PythonCopy.apply, [x], (0,))[1],
        "builtin": _fwd_bwd(torch.clone, [x], (0,))[1],
    }
    times = time_interleaved(fns, repeats, min_run_time, device, warmup=10)
    return max(0.0, times["python"] - times["builtin"])


def python_functions(out: torch.Tensor) -> int:
    """The number of Python ``autograd.Function`` nodes in the graph that produced ``out``."""
    seen, stack, count = set(), [out.grad_fn], 0
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        count += isinstance(node, torch.autograd.function.BackwardCFunction)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return count


def _with_fusion(fn: Callable[[], Any], flag: bool) -> Callable[[], Any]:
    """``fn`` run with the fused kernels on or off (:mod:`custom_ops.fused`)."""

    def call() -> Any:
        with fused.enabled(flag):
            return fn()

    return call


def _manual_variants(fn: Callable[[], Any], with_fused: bool) -> dict[str, Callable[[], Any]]:
    """``{"manual": fn}`` on the eager reference path, or with ``with_fused`` ``{"manual": fused,
    "eager": reference}``."""
    if not with_fused:
        return {"manual": _with_fusion(fn, False)}
    return {"manual": _with_fusion(fn, True), "eager": _with_fusion(fn, False)}


def bench_case(
    case: OpCase,
    device: torch.device,
    dtype: torch.dtype,
    repeats: int,
    min_run_time: float,
    with_fused: bool = False,
    overhead: float | None = None,
) -> Row:
    """Time and measure one registry case, manual (fused and eager reference with ``with_fused``, else the
    eager reference) vs built-in; ``overhead`` (:func:`function_overhead`) gives the row its floor."""
    args = case.inputs(dtype, device, requires_grad=True)
    impls = {"manual": case.manual, "builtin": case.builtin}
    if case.op in SANDWICH_MANUAL_CHAINS:
        impls["chain"] = functools.partial(SANDWICH_MANUAL_CHAINS[case.op], **case.sample.kwargs)
    fwd_fns, fb_fns = {}, {}
    for name, fn in impls.items():
        fwd_fn, fb_fn = _fwd_bwd(fn, args, case.grad_inputs)
        variants = (
            _manual_variants(fwd_fn, with_fused)
            if name == "manual"
            else {name: _with_fusion(fwd_fn, with_fused)}
        )
        fwd_fns.update(variants)
        variants = (
            _manual_variants(fb_fn, with_fused)
            if name == "manual"
            else {name: _with_fusion(fb_fn, with_fused)}
        )
        fb_fns.update(variants)
    fwd = time_interleaved(fwd_fns, repeats, min_run_time, device)
    fb = time_interleaved(fb_fns, repeats, min_run_time, device)
    params = [a for a in args[1:] if isinstance(a, torch.Tensor)]
    mem = {name: saved_memory(fn, args, exclude=params, activations=[args[0]]) for name, fn in impls.items()}
    functions = python_functions(fwd_fns["manual"]())
    return Row(
        kind="op",
        name=case.op,
        label=case.label,
        device=str(device),
        dtype=str(dtype).removeprefix("torch."),
        fwd_manual=fwd["manual"],
        fwd_builtin=fwd["builtin"],
        fwdbwd_manual=fb["manual"],
        fwdbwd_builtin=fb["builtin"],
        fused=with_fused,
        fwd_eager=fwd.get("eager"),
        fwdbwd_eager=fb.get("eager"),
        fwd_chain=fwd.get("chain"),
        fwdbwd_chain=fb.get("chain"),
        saved_chain=mem["chain"].bytes if "chain" in mem else None,
        saved_manual=mem["manual"].bytes,
        saved_builtin=mem["builtin"].bytes,
        saved_extra_manual=mem["manual"].extra_bytes,
        saved_extra_builtin=mem["builtin"].extra_bytes,
        target=TIME_TARGETS.get(_target_key(case)),
        functions=functions,
        function_overhead=overhead,
    ).finish()


# ------------------------------------------------------------------------------------------ end to end
def _build_model(name: str, ops: str, tiny: bool) -> torch.nn.Module:
    from ..nets import models

    if name == "fc_net":
        hidden = [20] if tiny else [100, 100]
        return models.build_fc_net(hidden, dropout_keep_ratio=0.5, normalization="batchnorm", ops=ops)
    if name == "three_layer_convnet":
        if tiny:
            return models.build_three_layer_convnet(num_filters=4, filter_size=3, hidden_dim=10, ops=ops)
        return models.build_three_layer_convnet(ops=ops)
    if name == "resnet18":
        from torchvision.models import resnet18

        model = resnet18(num_classes=10)
        if ops == "manual":
            from ..interop.swap import to_manual

            model = to_manual(model)
        return model
    raise ValueError(f"unknown end-to-end model {name!r}; expected one of {E2E_MODELS}")


def _train_step(model: torch.nn.Module, ops: str, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """A closure running one SGD step: forward, softmax loss, backward, update."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        _loss(model, ops, x, y).backward()
        optimizer.step()

    return step


def _loss(model: torch.nn.Module, ops: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The softmax loss of ``model`` on ``(x, y)``, the manual one for ``ops="manual"``."""
    from custom_ops.functional import softmax_loss

    loss_fn = softmax_loss if ops == "manual" else torch.nn.functional.cross_entropy
    return loss_fn(model(x), y)


def bench_e2e(
    name: str,
    device: torch.device,
    dtype: torch.dtype,
    repeats: int,
    min_run_time: float,
    compiled: bool,
    tiny: bool,
    with_fused: bool = False,
    overhead: float | None = None,
) -> Row:
    """Time one training step of model ``name`` built with manual (fused and eager reference with
    ``with_fused``) vs built-in layers; ``overhead`` (:func:`function_overhead`) gives the row its floor."""
    batch = 4 if tiny else (32 if name == "resnet18" else 64)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=gen).to(device, dtype)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    steps, functions = {}, None
    for ops in ("manual", "builtin"):
        torch.manual_seed(0)
        model = _build_model(name, ops, tiny).to(device, dtype).train()
        if ops == "manual" and not compiled:
            functions = python_functions(_loss(model, ops, x, y))
        if compiled:
            model = torch.compile(model)
        steps[ops] = _train_step(model, ops, x, y)
    steps = {**_manual_variants(steps["manual"], with_fused and not compiled), "builtin": steps["builtin"]}
    times = time_interleaved(steps, repeats, min_run_time, device, warmup=3)
    return Row(
        kind="e2e",
        name=name,
        label=f"train-step-batch{batch}",
        device=str(device),
        dtype=str(dtype).removeprefix("torch."),
        train_step_manual=times["manual"],
        train_step_builtin=times["builtin"],
        fused=with_fused and not compiled,
        train_step_eager=times.get("eager"),
        compiled=compiled,
        target=TIME_TARGETS.get(f"e2e[{name}]"),
        functions=functions,
        function_overhead=overhead,
    ).finish()


# ---------------------------------------------------------------------------------------------- output
def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1e3:.3f}"


def _mib(n: int | None) -> str:
    return "" if n is None else f"{n / 2**20:.2f}"


def _ratio(value: float | None, target: float | None = None) -> str:
    if value is None:
        return ""
    mark = "" if target is None else (" ok" if value <= target else " MISS")
    return f"{value:.2f}x{mark}"


def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned plain-text table (ms, MiB, manual/built-in ratios; ``MISS`` marks a ratio
    above its target; ``floor``: the lowest ratio the Python autograd.Functions of the manual side allow
    (see the module docstring); ``eager ratio``: the eager reference path's forward+backward or
    training-step ratio when the manual times are the fused kernels')."""
    header = (
        "case",
        "fwd man ms",
        "fwd blt ms",
        "fwd ratio",
        "f+b man ms",
        "f+b blt ms",
        "f+b ratio",
        "target",
        "floor",
        "eager ratio",
        "chain ratio",
        "saved man MiB",
        "saved blt MiB",
        "saved ratio",
        "chain saved",
    )
    lines = [header]
    for row in rows:
        name = f"{row.name}[{row.label}]" + (" compiled" if row.compiled else "")
        step = "fwdbwd"  # an op's forward + backward; an e2e row's whole training step in the same columns
        if row.kind == "e2e":
            name = f"e2e {name}"
            step = "train_step"
        lines.append(
            (
                name,
                _ms(row.fwd_manual),
                _ms(row.fwd_builtin),
                _ratio(row.ratios.get("fwd")),
                _ms(getattr(row, f"{step}_manual")),
                _ms(getattr(row, f"{step}_builtin")),
                _ratio(row.ratios.get(step), row.target),
                "" if row.target is None else f"<={row.target}x",
                _ratio(row.ratios.get("floor")),
                _ratio(row.ratios.get(f"{step}_eager")),
                _ratio(row.ratios.get(f"{step}_chain")),
                _mib(row.saved_manual),
                _mib(row.saved_builtin),
                _ratio(row.ratios.get("saved"), MEMORY_TARGET if row.kind == "op" else None),
                _ratio(row.ratios.get("saved_chain")),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for k, line in enumerate(lines):
        cells = [cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------- CLI
def _csv(choices: Sequence[str], what: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(unknown) or repr(text)}; choose from {', '.join(choices)}"
            )
        return items

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``cs231n bench``."""
    parser = argparse.ArgumentParser(
        prog="cs231n bench",
        description="Manual vs built-in operators: forward and forward+backward time, saved memory, "
        "end-to-end training steps.",
    )
    parser.add_argument(
        "--op", type=_csv(BENCH_OPS, "op"), default=None, help="comma-separated op names (default: all)"
    )
    parser.add_argument(  # deprecated old name of --op (one release): `--ops` is the manual/builtin switch
        "--ops", dest="deprecated_ops", type=_csv(BENCH_OPS, "op"), default=None, help=argparse.SUPPRESS
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument(
        "--sizes", type=_csv(SIZES, "size"), default=list(SIZES), help="comma-separated: cs231n,resnet"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="interleaved turns per implementation (default 3)"
    )
    parser.add_argument(
        "--min-run-time", type=float, default=0.2, help="seconds of timing per turn (default 0.2)"
    )
    parser.add_argument(
        "--e2e", action=argparse.BooleanOptionalAction, default=True, help="end-to-end training-step rows"
    )
    parser.add_argument(
        "--e2e-models",
        type=_csv(E2E_MODELS, "model"),
        default=list(E2E_MODELS),
        help="comma-separated end-to-end models",
    )
    parser.add_argument(
        "--compile", action="store_true", help="also time the end-to-end steps under torch.compile"
    )
    parser.add_argument(
        "--fused",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the manual ops with fused kernels (custom_ops.fused) and, beside them, the eager "
        "reference path (default: on; --no-fused: the eager path only)",
    )
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's own choice)")
    add_json_argument(parser, "the rows as JSON")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="the small test cases and tiny models, for smoke tests (timings meaningless)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table (and JSON if asked). Returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.deprecated_ops is not None:
        if args.op is not None:
            parser.error("--ops is the deprecated old name of --op; give only --op")
        warnings.warn(
            "cs231n bench: the option '--ops' (op names) is deprecated and will be removed in the next "
            "release; use '--op' instead ('--ops' is the manual/builtin switch of the other tools)",
            FutureWarning,
            stacklevel=2,
        )
        args.op = args.deprecated_ops
    if args.op is None:
        args.op = list(BENCH_OPS)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.min_run_time <= 0:
        parser.error(f"--min-run-time must be positive, got {args.min_run_time}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    min_run_time = 1e-3 if args.tiny else args.min_run_time
    if args.tiny:  # the first small case of each op, and of each conv algorithm
        firsts: dict[tuple[str, str], OpCase] = {}
        for op in args.op:
            for case in {**SPECS, **SANDWICHES}[op].cases:
                firsts.setdefault((op, _variant(case)), case)
        cases = list(firsts.values())
    else:
        cases = [case for size in args.sizes for case in BENCH_CASES[size] if case.op in args.op]
    log = report_stream(args)
    overhead = function_overhead(device, dtype, args.repeats, min_run_time)
    rows = []
    for case in cases:
        print(f"bench {case.id} ...", file=sys.stderr, flush=True)
        rows.append(bench_case(case, device, dtype, args.repeats, min_run_time, args.fused, overhead))
    if args.e2e:
        for compiled in (False, True) if args.compile else (False,):
            for name in args.e2e_models:
                print(f"bench e2e {name} compiled={compiled} ...", file=sys.stderr, flush=True)
                rows.append(
                    bench_e2e(
                        name,
                        device,
                        dtype,
                        args.repeats,
                        min_run_time,
                        compiled,
                        args.tiny,
                        args.fused,
                        overhead,
                    )
                )
    broken = fused.unavailable().get(device.type)
    path = "fused kernels" if args.fused and not broken else "eager reference path"
    print(
        f"torch {torch.__version__}, {args.device}, {args.dtype}, {torch.get_num_threads()} threads, manual "
        f"ops: {path}"
        + (f" (fused kernels unavailable: {broken})" if args.fused and broken else "")
        + f"; one Python autograd.Function costs {overhead * 1e6:.1f} us per forward+backward (floor)",
        file=log,
    )
    print(format_table(rows), file=log)
    if args.json:
        payload = {
            "torch": torch.__version__,
            "device": args.device,
            "dtype": args.dtype,
            "threads": torch.get_num_threads(),
            "fused": args.fused and not broken,
            "function_overhead": overhead,
            "argv": sys.argv[1:] if argv is None else list(argv),
            **run_record(),
            "rows": [asdict(row) for row in rows],
        }
        write_json(args.json, payload, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
