"""The test data of every operator: its :class:`~custom_ops.testing.spec.OpSpec` (:data:`SPECS`), the
samples it is checked on, at its kinks too, the inputs it must refuse, its module configurations and
torch's OpInfo name.

The samples are built deterministically (same values on every call). The ``samples`` of a spec are chosen
away from the ReLU kinks, max-pool ties and zero SVM margins, so finite differences are valid; the
``kinks`` sit exactly on them, where only the parity with the built-in is checked.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from custom_ops import nn as mnn
from custom_ops.conv import CONV_ALGORITHMS
from custom_ops.registry import OPS

from .spec import (
    ErrorInput,
    InputFactory,
    ModuleCase,
    OpCase,
    OpSpec,
    Sample,
    arbitrary,
    labels,
    module_cases,
    normal,
    positive,
    randn,
)


# ----------------------------------------------------------------------------------------------- inputs
def _distinct(shape: Sequence[int]) -> InputFactory:
    """A random permutation of a 0.05-spaced grid: no two values tie (no max-pool ties)."""

    def inputs(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor]:
        n = 1
        for s in shape:
            n *= s
        x = torch.randperm(n, generator=torch.Generator().manual_seed(0))
        x = x.to(torch.float64).mul(0.05).sub(0.025 * n)
        return (x.view(*shape).to(device=device, dtype=dtype),)

    return inputs


def _ties(shape: Sequence[int]) -> InputFactory:
    """Values in ``{-1, 0, 1}``: every pooling window of a few elements holds equal maxima."""

    def inputs(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor]:
        x = torch.randint(-1, 2, tuple(shape), generator=torch.Generator().manual_seed(0))
        return (x.to(device=device, dtype=dtype),)

    return inputs


def _first_output(fn: Callable[..., Any]) -> Callable[..., torch.Tensor]:
    """``fn`` returning ``(output, indices)``, keeping the output: the tensor the tests differentiate (the
    indices are compared with torch's in tests/test_ops_semantics.py and tests/test_new_ops.py)."""

    @functools.wraps(fn)
    def call(*args: Any) -> torch.Tensor:
        return fn(*args)[0]

    return call


def _quiet(fn: Callable[..., Any]) -> Callable[..., torch.Tensor]:
    """``fn`` with the implicit-dim deprecation warning silenced (it is the behaviour under test)."""

    @functools.wraps(fn)
    def call(*args: Any) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return fn(*args)

    return call


def _integer_input() -> ErrorInput:
    """The bad input of the elementwise ops: an integer tensor."""
    return ErrorInput(
        "integer input",
        lambda f: f(torch.arange(4)),
        TypeError,
        r"input must be a floating-point tensor, got dtype torch.int64",
    )


# ----------------------------------------------------------------------------------------------- linear
def _linear_inputs(x_shape: tuple[int, ...], out: int, bias: bool = True) -> InputFactory:
    def inputs(dtype: torch.dtype, device: torch.device) -> tuple[Any, ...]:
        w = randn((out, x_shape[-1]), dtype, device, 1)
        b = randn((out,), dtype, device, 2) if bias else None
        return (randn(x_shape, dtype, device, 0), w, b)

    return inputs


LINEAR = OpSpec(
    OPS["linear"],
    samples=(
        Sample("2d", _linear_inputs((4, 5), 3), (0, 1, 2)),
        Sample("3d-leading", _linear_inputs((2, 3, 5), 4), (0, 1, 2)),
        Sample("no-bias", _linear_inputs((4, 5), 3, bias=False), (0, 1)),
    ),
    modules=module_cases(mnn.Linear, nn.Linear, ((5, 3), (4, 5)), ((5, 3), (4, 5), {"bias": False})),
    errors=(
        ErrorInput(
            "in_features",
            lambda f: f(arbitrary(4, 5), arbitrary(3, 6)),
            ValueError,
            r"input must have shape \(\*, in_features=6\)",
        ),
        ErrorInput(
            "weight dims",
            lambda f: f(arbitrary(4, 5), arbitrary(3, 5, 1)),
            RuntimeError,
            r"weight must have shape \(out_features, in_features\) or \(in_features,\), got \(3, 5, 1\)",
        ),
        ErrorInput(
            "1-D weight with a vector bias",
            lambda f: f(arbitrary(4, 5), arbitrary(5), arbitrary(3)),
            RuntimeError,
            r"with a 1-D weight, bias must be None or a 0-d tensor, got shape \(3,\)",
        ),
        ErrorInput(
            "bias shape",
            lambda f: f(arbitrary(4, 5), arbitrary(3, 5), arbitrary(4)),
            ValueError,
            r"bias must have shape \(3,\)",
        ),
        ErrorInput(
            "integer input",
            lambda f: f(torch.ones(4, 5, dtype=torch.long), arbitrary(3, 5)),
            TypeError,
            r"input must be a floating-point tensor, got dtype torch.int64",
        ),
        ErrorInput(
            "mixed dtypes",
            lambda f: f(arbitrary(4, 5), arbitrary(3, 5, dtype=torch.float64)),
            TypeError,
            r"weight has dtype torch.float64 but input has dtype torch.float32",
        ),
        ErrorInput(
            "not a tensor", lambda f: f([[1.0]], arbitrary(1, 1)), TypeError, r"input must be a torch.Tensor"
        ),
    ),
    opinfo="nn.functional.linear",
)


# ---------------------------------------------------------------------------------- relu, activations
def _away_from_kinks(shape: tuple[int, ...], kinks: tuple[float, ...]) -> InputFactory:
    """Normal values scaled by 4, pushed at least 0.1 away from every kink in ``kinks``."""

    def inputs(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor]:
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 4
        for k in kinks:
            near = (x - k).abs() < 0.1
            x = torch.where(near, k + 0.1 * torch.sign(x - k + 1e-12), x)
        return (x.to(device=device, dtype=dtype),)

    return inputs


def _at_kinks(shape: tuple[int, ...], kinks: tuple[float, ...]) -> InputFactory:
    """Normal values scaled by 4 with every third element exactly on a kink (in turn each of ``kinks``)."""

    def inputs(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor]:
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 4
        on_kinks = x.view(-1)[::3]
        values = torch.tensor(kinks, dtype=torch.float64).repeat(on_kinks.numel() // len(kinks) + 1)
        on_kinks.copy_(values[: on_kinks.numel()])
        return (x.to(device=device, dtype=dtype),)

    return inputs


def _activation(
    name: str,
    module_shape: tuple[int, ...],
    kinks: tuple[float, ...] = (),
    opinfo: str = "",
    *,
    settings: tuple[tuple[dict[str, Any], tuple[float, ...]], ...] = (),
    modules: tuple[tuple[Any, ...], ...] = (),
    errors: tuple[ErrorInput, ...] = (),
) -> OpSpec:
    """The spec of an elementwise activation ``MF.<name>(input)``: samples away from its ``kinks`` and one
    on them, its module twin on an input of ``module_shape``, an integer input as its bad input. Each of
    ``settings``, ``(kwargs, kinks)``, adds the same samples with those hyper-parameters (labelled by
    them); ``modules`` adds module examples ``(args, input_shape[, kwargs])``, ``errors`` bad inputs."""
    facts = OPS[name]
    ((manual_cls, builtin_cls),) = facts.modules
    samples: list[Sample] = []
    kink_samples: list[Sample] = []
    for kwargs, at in (({}, kinks), *settings):
        suffix = "".join(f"-{key}={value:g}" for key, value in kwargs.items())
        samples.append(Sample("2d" + suffix, _away_from_kinks((6, 7), at), kwargs=kwargs))
        samples.append(Sample("4d" + suffix, _away_from_kinks((2, 3, 4, 5), at), kwargs=kwargs))
        if at:
            label = "at-" + ",".join(f"{k:g}" for k in at) + suffix
            kink_samples.append(Sample(label, _at_kinks((2, 3, 4, 5), at), kwargs=kwargs))
    return OpSpec(
        facts,
        samples=tuple(samples),
        kinks=tuple(kink_samples),
        modules=module_cases(manual_cls, builtin_cls, ((), module_shape), *modules),
        errors=(_integer_input(), *errors),
        opinfo=opinfo or f"nn.functional.{name}",
    )


RELU = _activation("relu", (4, 5), (0.0,))
RELU6 = _activation("relu6", (4, 5), (0.0, 6.0))
HARDSIGMOID = _activation("hardsigmoid", (2, 3, 4, 4), (-3.0, 3.0))
HARDSWISH = _activation("hardswish", (2, 3, 4, 4), (-3.0, 3.0))
SIGMOID = _activation("sigmoid", (4, 5), opinfo="sigmoid")
SILU = _activation("silu", (2, 3, 4, 4))


# ------------------------------------------------------------------------------------------- batch norm
def _batch_norm_samples() -> tuple[Sample, ...]:
    def make(shape: tuple[int, ...], affine: bool = True) -> InputFactory:
        c = shape[1]

        def inputs(dtype: torch.dtype, device: torch.device) -> tuple[Any, ...]:
            w = randn((c,), dtype, device, 1) if affine else None
            b = randn((c,), dtype, device, 2) if affine else None
            x = randn(shape, dtype, device, 0)
            return (x, randn((c,), dtype, device, 3), positive((c,), dtype, device, 4), w, b)

        return inputs

    samples = []
    for training in (True, False):
        mode = "train" if training else "eval"
        kwargs = {"training": training, "momentum": 0.1, "eps": 1e-5}
        for label, shape in (("1d", (6, 4)), ("1d-seq", (4, 3, 5)), ("spatial", (3, 4, 5, 6))):
            samples.append(Sample(f"{mode}-{label}", make(shape), (0, 3, 4), kwargs))
        samples.append(Sample(f"{mode}-no-affine", make((3, 4, 5, 6), affine=False), (0,), kwargs))
    return tuple(samples)


BATCH_NORM = OpSpec(
    OPS["batch_norm"],
    samples=_batch_norm_samples(),
    modules=(
        *module_cases(mnn.BatchNorm1d, nn.BatchNorm1d, ((5,), (8, 5)), ((5,), (8, 5), {"momentum": None})),
        *module_cases(
            mnn.BatchNorm2d,
            nn.BatchNorm2d,
            ((3,), (4, 3, 5, 5)),
            ((3,), (4, 3, 5, 5), {"affine": False}),
            ((3,), (4, 3, 5, 5), {"track_running_stats": False}),
        ),
    ),
    errors=(
        ErrorInput(
            "channels",
            lambda f: f(arbitrary(4, 3), arbitrary(5), arbitrary(5).abs()),
            ValueError,
            r"running_mean must have shape \(3,\).*C=3",
        ),
        ErrorInput(
            "weight channels",
            lambda f: f(arbitrary(4, 3, 2, 2), None, None, arbitrary(2), None, True),
            ValueError,
            r"weight must have shape \(3,\)",
        ),
        ErrorInput(
            "dims",
            lambda f: f(arbitrary(4), None, None, training=True),
            ValueError,
            r"input must have shape \(N, C, \*\) \(at least 2-D\), got 1-D",
        ),
        ErrorInput(
            "one value per channel",
            lambda f: f(arbitrary(1, 3), None, None, training=True),
            ValueError,
            r"more than 1 value per channel",
        ),
        ErrorInput(
            "eps 0 in training",
            lambda f: f(arbitrary(4, 3), None, None, training=True, eps=0.0),
            ValueError,
            r"eps must be positive in training \(it is added to the variance\), got 0.0",
        ),
        ErrorInput(
            "negative eps",
            lambda f: f(arbitrary(4, 3), arbitrary(3), arbitrary(3).abs(), eps=-1e-5),
            ValueError,
            r"eps must be non-negative, got -1e-05",
        ),
        ErrorInput(
            "eval without stats",
            lambda f: f(arbitrary(4, 3), None, None),
            RuntimeError,
            r"running_mean and running_var are required when training=False",
        ),
        ErrorInput(
            "convention",
            lambda f: f(arbitrary(4, 3), None, None, training=True, convention="keras"),
            ValueError,
            r"convention must be 'torch' or 'cs231n'",
        ),
        ErrorInput(
            "mixed dtypes",
            lambda f: f(arbitrary(4, 3), None, None, arbitrary(3, dtype=torch.float64), None, True),
            TypeError,
            r"weight has dtype torch.float64",
        ),
    ),
    opinfo="nn.functional.batch_norm",
)


# ------------------------------------------------------------------------------------------- layer norm
def _layer_norm_inputs(shape: tuple[int, ...], normalized: tuple[int, ...], affine: bool) -> InputFactory:
    def inputs(dtype: torch.dtype, device: torch.device) -> tuple[Any, ...]:
        w = randn(normalized, dtype, device, 1) if affine else None
        b = randn(normalized, dtype, device, 2) if affine else None
        return (randn(shape, dtype, device, 0), normalized, w, b)

    return inputs


LAYER_NORM = OpSpec(
    OPS["layer_norm"],
    samples=tuple(
        Sample(
            label,
            _layer_norm_inputs(shape, normalized, affine),
            (0, 2, 3) if affine else (0,),
            {"eps": 1e-5},
        )
        for label, shape, normalized, affine in (
            ("last-dim", (6, 5), (5,), True),
            ("3-dims", (2, 3, 4, 5), (3, 4, 5), True),
            ("no-affine", (4, 6), (6,), False),
        )
    ),
    modules=module_cases(
        mnn.LayerNorm, nn.LayerNorm, (((4, 5),), (3, 4, 5)), ((5,), (3, 5), {"elementwise_affine": False})
    ),
    errors=(
        ErrorInput(
            "shape",
            lambda f: f(arbitrary(4, 5), (4,)),
            ValueError,
            r"input must have shape \(\*, 4\) to match normalized_shape=\(4,\), got \(4, 5\)",
        ),
        ErrorInput(
            "weight shape",
            lambda f: f(arbitrary(4, 5), 5, arbitrary(4)),
            ValueError,
            r"weight must have shape \(5,\)",
        ),
        ErrorInput(
            "integer input",
            lambda f: f(torch.ones(2, 5, dtype=torch.int32), 5),
            TypeError,
            r"input must be a floating-point",
        ),
    ),
    opinfo="nn.functional.layer_norm",
)

# ---------------------------------------------------------------------------------------------- dropout
DROPOUT = OpSpec(
    OPS["dropout"],
    samples=(
        Sample("p0.5", normal((8, 10)), kwargs={"p": 0.5, "training": True}),
        Sample("p0.2-4d", normal((2, 3, 4, 5)), kwargs={"p": 0.2, "training": True}),
    ),
    modules=module_cases(mnn.Dropout, nn.Dropout, ((0.3,), (6, 7))),
    errors=(
        ErrorInput(
            "p>1",
            lambda f: f(arbitrary(4, 5), 1.5),
            ValueError,
            r"p \(the drop probability\) must be in \[0, 1\], got 1.5",
        ),
        ErrorInput("p<0", lambda f: f(arbitrary(4, 5), -0.1), ValueError, r"must be in \[0, 1\], got -0.1"),
        ErrorInput(
            "integer input", lambda f: f(torch.ones(4, dtype=torch.long)), TypeError, r"floating-point"
        ),
    ),
    opinfo="nn.functional.dropout",
)


# ----------------------------------------------------------------------------------------- convolution
def _conv_samples() -> tuple[Sample, ...]:
    # (label, x shape, weight shape, stride, padding, dilation, groups)
    grid = [
        ("3x3", (2, 3, 7, 7), (4, 3, 3, 3), 1, 1, 1, 1),
        ("stride2-pad1", (2, 3, 8, 8), (4, 3, 3, 3), 2, 1, 1, 1),
        ("nonsquare", (2, 2, 7, 9), (3, 2, 3, 2), (2, 1), (1, 0), 1, 1),
        ("dilation2", (1, 2, 9, 8), (3, 2, 3, 3), 1, 2, 2, 1),
        ("stride3-leftover", (2, 2, 10, 8), (3, 2, 3, 3), 3, 0, 1, 1),
        ("1x1", (2, 4, 5, 5), (6, 4, 1, 1), 1, 0, 1, 1),
        ("1x1-stride2", (2, 4, 5, 5), (6, 4, 1, 1), 2, 0, 1, 1),
        ("groups2", (2, 4, 6, 6), (6, 2, 3, 3), 1, 1, 1, 2),
        ("depthwise", (2, 4, 7, 7), (4, 1, 3, 3), 2, 1, 1, 4),
        ("depthwise-mult2", (1, 3, 6, 5), (6, 1, 3, 3), 1, 1, 1, 3),
        ("7x7-stride2", (1, 3, 16, 16), (4, 3, 7, 7), 2, 3, 1, 1),
        ("same-even-kernel", (2, 3, 7, 6), (4, 3, 2, 4), 1, "same", 1, 1),  # extra padding bottom/right
    ]
    return tuple(
        Sample(
            f"{algorithm}-{label}",
            normal(xs, ws, ws[:1]),
            (0, 1, 2),
            {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups},
            {"algorithm": algorithm},
        )
        for algorithm in CONV_ALGORITHMS
        for label, xs, ws, stride, padding, dilation, groups in grid
    )


CONV2D = OpSpec(
    OPS["conv2d"],
    samples=_conv_samples(),
    modules=module_cases(
        mnn.Conv2d,
        nn.Conv2d,
        ((3, 4, 3), (2, 3, 8, 8), {"stride": 2, "padding": 1}),
        ((4, 4, 3), (2, 4, 6, 6), {"groups": 4, "bias": False}),
        ((3, 4, 3), (2, 3, 6, 6), {"padding": "same"}),
        ((3, 4, 3), (2, 3, 6, 6), {"padding": 1, "padding_mode": "reflect"}),
    ),
    errors=(
        ErrorInput(
            "channels",
            lambda f: f(arbitrary(2, 3, 8, 8), arbitrary(4, 2, 3, 3)),
            ValueError,
            r"input has 3 channels but weight \(4, 2, 3, 3\) with groups=1 expects C_in = 2 \* 1 = 2",
        ),
        ErrorInput(
            "groups divide C_out",
            lambda f: f(arbitrary(2, 4, 8, 8), arbitrary(3, 2, 3, 3), groups=2),
            RuntimeError,
            r"groups=2 must divide the weight's C_out=3",
        ),
        ErrorInput(
            "groups larger than C_out",  # torch's error input: the groups are at fault, not the channels
            lambda f: f(arbitrary(2, 2, 4, 3), arbitrary(2, 2, 1, 3), groups=3),
            RuntimeError,
            r"groups=3 must divide the weight's C_out=2",
        ),
        ErrorInput(
            "groups 0",
            lambda f: f(arbitrary(2, 2, 4, 3), arbitrary(2, 2, 1, 3), groups=0),
            RuntimeError,
            r"groups must be a positive int, got 0",
        ),
        ErrorInput(
            "negative padding",
            lambda f: f(arbitrary(1, 1, 4, 4), arbitrary(1, 1, 2, 2), padding=(-1,)),
            RuntimeError,
            r"padding must be non-negative, got \(-1,\)",
        ),
        ErrorInput(
            "input dims",
            lambda f: f(arbitrary(3, 8), arbitrary(4, 3, 3, 3)),
            ValueError,
            r"input must have shape \(N, C_in, H, W\) or \(C_in, H, W\)",
        ),
        ErrorInput(
            "weight dims",
            lambda f: f(arbitrary(2, 3, 8, 8), arbitrary(4, 3, 3)),
            ValueError,
            r"weight must have shape \(C_out, C_in / groups, kh, kw\)",
        ),
        ErrorInput(
            "kernel too large",
            lambda f: f(arbitrary(1, 1, 4, 4), arbitrary(1, 1, 7, 7), padding=1),
            ValueError,
            r"kernel extent 7 along H .* larger than the padded input \(4 \+ 2\*1 = 6\)",
        ),
        ErrorInput(
            "dilated kernel too large",
            lambda f: f(arbitrary(1, 1, 6, 6), arbitrary(1, 1, 3, 3), dilation=3),
            ValueError,
            r"kernel extent 7 along H \(kernel 3, dilation 3\)",
        ),
        ErrorInput(
            "bias",
            lambda f: f(arbitrary(1, 3, 8, 8), arbitrary(4, 3, 3, 3), arbitrary(3)),
            ValueError,
            r"bias must have shape \(4,\)",
        ),
        ErrorInput(
            "stride 0",
            lambda f: f(arbitrary(1, 3, 8, 8), arbitrary(4, 3, 3, 3), stride=0),
            RuntimeError,
            r"stride must be positive, got 0",
        ),
        ErrorInput(
            "dilation -1",
            lambda f: f(arbitrary(1, 3, 8, 8), arbitrary(4, 3, 3, 3), dilation=(-1,)),
            RuntimeError,
            r"dilation must be positive, got \(-1,\)",
        ),
        ErrorInput(
            "padding string",
            lambda f: f(arbitrary(1, 3, 8, 8), arbitrary(4, 3, 3, 3), padding="full"),
            ValueError,
            r"padding must be an int, a pair, 'valid' or 'same'",
        ),
        ErrorInput(
            "same with stride",
            lambda f: f(arbitrary(1, 3, 8, 8), arbitrary(4, 3, 3, 3), stride=2, padding="same"),
            ValueError,
            r"padding='same' needs stride=1",
        ),
        ErrorInput(
            "algorithm",
            lambda f: f(arbitrary(1, 3, 8, 8), arbitrary(4, 3, 3, 3), algorithm="winograd"),
            ValueError,
            r"algorithm must be 'fast' or 'im2col', got 'winograd'",
        ),
        ErrorInput(
            "integer input",
            lambda f: f(torch.ones(1, 3, 8, 8, dtype=torch.uint8), arbitrary(4, 3, 3, 3)),
            TypeError,
            r"input must be a floating-point tensor, got dtype torch.uint8",
        ),
        ErrorInput(
            "mixed dtypes",
            lambda f: f(arbitrary(1, 3, 8, 8, dtype=torch.float16), arbitrary(4, 3, 3, 3)),
            RuntimeError,
            r"weight has dtype torch.float32 but input has dtype torch.float16",
        ),
    ),
    opinfo="nn.functional.conv2d",
)


# -------------------------------------------------------------------------------------------- max pool
def _max_pool_samples() -> tuple[Sample, ...]:
    # (label, x shape, kernel, stride, padding, ceil_mode)
    grid = [
        ("2x2", (2, 3, 8, 8), 2, 2, 0, False),
        ("3x3-s2-p1-overlap", (2, 3, 9, 9), 3, 2, 1, False),
        ("odd-size", (1, 2, 7, 5), 2, 2, 0, False),
        ("ceil-mode", (1, 2, 7, 5), 2, 2, 0, True),
        ("nonsquare", (1, 2, 9, 8), (3, 2), (2, 1), (1, 0), False),
        ("stride1-overlap", (1, 2, 5, 5), 3, 1, 1, False),
    ]
    samples = [
        Sample(label, _distinct(xs), kwargs={"kernel_size": k, "stride": s, "padding": p, "ceil_mode": ceil})
        for label, xs, k, s, p, ceil in grid
    ]
    window = {"kernel_size": 3, "stride": 2, "padding": 1}
    samples.append(Sample("dilation2-p1", _distinct((2, 3, 10, 9)), kwargs={**window, "dilation": 2}))
    samples.append(
        Sample(
            "return-indices-ceil",
            _distinct((2, 3, 10, 9)),
            kwargs={**window, "ceil_mode": True, "return_indices": True},
            wrap=_first_output,
        )
    )
    return tuple(samples)


MAX_POOL2D = OpSpec(
    OPS["max_pool2d"],
    samples=_max_pool_samples(),
    kinks=(
        Sample("ties-2x2", _ties((2, 3, 6, 6)), kwargs={"kernel_size": 2}),
        Sample(
            "ties-3x3-s2-p1-overlap",
            _ties((2, 3, 7, 7)),
            kwargs={"kernel_size": 3, "stride": 2, "padding": 1},
        ),
    ),
    modules=module_cases(
        mnn.MaxPool2d,
        nn.MaxPool2d,
        ((3, 2, 1), (2, 3, 9, 9)),
        ((2,), (2, 3, 7, 7), {"ceil_mode": True}),
        ((3, 2, 1), (2, 3, 10, 9), {"dilation": 2}),
    ),
    errors=(
        ErrorInput(
            "kernel too large",
            lambda f: f(arbitrary(1, 1, 3, 3), 5, padding=0),
            RuntimeError,
            r"kernel_size 5 along H is larger than the padded input \(3 \+ 2\*0 = 3\)",
        ),
        ErrorInput(
            "dilated kernel too large",
            lambda f: f(arbitrary(1, 1, 4, 4), 2, 1, 0, 4),
            RuntimeError,
            r"kernel_size 2 with dilation 4 \(extent 5\) along H is larger than the padded input",
        ),
        ErrorInput(
            "padding",
            lambda f: f(arbitrary(1, 1, 8, 8), 2, padding=2),
            RuntimeError,
            r"padding must be between 0 and half the kernel size",
        ),
        ErrorInput(
            "dilation 0",
            lambda f: f(arbitrary(1, 1, 8, 8), 2, dilation=0),
            RuntimeError,
            r"dilation must be positive, got 0",
        ),
        ErrorInput(
            "empty plane",
            lambda f: f(arbitrary(2, 1, 10, 0), 1),
            RuntimeError,
            r"input must have shape .* with non-zero C, H and W \(only N may be 0\), got \(2, 1, 10, 0\)",
        ),
        ErrorInput(
            "dims", lambda f: f(arbitrary(8, 8), 2), ValueError, r"input must have shape \(N, C, H, W\)"
        ),
        ErrorInput(
            "kernel pair",
            lambda f: f(arbitrary(1, 1, 8, 8), (2, 2, 2)),
            ValueError,
            r"kernel_size must be an int or a pair of ints",
        ),
        ErrorInput(
            "integer input",
            lambda f: f(torch.ones(1, 1, 4, 4, dtype=torch.long), 2),
            TypeError,
            r"input must be a floating-point",
        ),
    ),
    opinfo="nn.functional.max_pool2d",
)


# ----------------------------------------------------------------------------------------------- losses
def _scores_labels(n: int, c: int, scale: float = 1.0) -> InputFactory:
    return lambda dt, dev: (randn((n, c), dt, dev, 0) * scale, labels(n, c, dev, 1))


def _integer_scores_labels(n: int, c: int) -> InputFactory:
    """Scores in ``{0, 1, 2}``: many margins ``s_j - s_y + 1`` are exactly 0, the SVM loss's kink."""

    def inputs(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        scores = torch.randint(0, 3, (n, c), generator=torch.Generator().manual_seed(0))
        return scores.to(device=device, dtype=dtype), labels(n, c, device, 1)

    return inputs


_LOSS_ERRORS = (
    ErrorInput(
        "float labels",
        lambda f: f(arbitrary(4, 3), arbitrary(4)),
        TypeError,
        r"y must be an integer tensor of class indices, got torch.float32",
    ),
    ErrorInput(
        "label count",
        lambda f: f(arbitrary(4, 3), torch.zeros(5, dtype=torch.long)),
        ValueError,
        r"y must have shape \(N,\) = \(4,\) to match scores, got \(5,\)",
    ),
    ErrorInput(
        "label range",
        lambda f: f(arbitrary(4, 3), torch.tensor([0, 1, 2, 3])),
        ValueError,
        r"y must hold class indices in \[0, C=3\), got values in \[0, 3\]",
    ),
    ErrorInput(
        "scores dims",
        lambda f: f(arbitrary(4), torch.zeros(4, dtype=torch.long)),
        ValueError,
        r"scores must have shape \(N, C\)",
    ),
    ErrorInput(
        "negative label",
        lambda f: f(arbitrary(2, 3), torch.tensor([0, -1])),
        ValueError,
        r"class indices in \[0, C=3\)",
    ),
    ErrorInput(
        "integer scores",
        lambda f: f(torch.ones(2, 3, dtype=torch.long), torch.tensor([0, 1])),
        TypeError,
        r"scores must be a floating-point",
    ),
)

SOFTMAX_LOSS = OpSpec(
    OPS["softmax_loss"],
    samples=(Sample("10-classes", _scores_labels(8, 10)), Sample("large-scores", _scores_labels(5, 4, 50.0))),
    errors=_LOSS_ERRORS,
)

SVM_LOSS = OpSpec(
    OPS["svm_loss"],
    samples=(Sample("10-classes", _scores_labels(8, 10)), Sample("3-classes", _scores_labels(6, 3))),
    kinks=(Sample("zero-margins", _integer_scores_labels(8, 5)),),
    errors=_LOSS_ERRORS,
)


# ---------------------------------------------------------------------------------------- adaptive pools
def _output_size_error(size: object, message: str) -> ErrorInput:
    return ErrorInput(
        f"output_size {size!r}", lambda f: f(arbitrary(1, 2, 4, 4), size), RuntimeError, message
    )


ADAPTIVE_AVG_POOL2D = OpSpec(
    OPS["adaptive_avg_pool2d"],
    samples=tuple(
        Sample(label, normal(shape), kwargs={"output_size": size})
        for label, shape, size in (
            ("global", (2, 3, 5, 4), 1),
            ("global-pair", (2, 3, 7, 7), (1, 1)),
            ("unbatched", (3, 4, 6), 1),
            ("divides-2x3", (2, 3, 6, 9), (2, 3)),
            ("overlapping-3x2-of-7x5", (2, 3, 7, 5), (3, 2)),
            ("none-keeps-h", (2, 3, 5, 6), (None, 4)),
            ("larger-than-input", (1, 2, 3, 4), (5, 7)),
            ("unbatched-2x3", (3, 5, 7), (2, 3)),
        )
    ),
    modules=module_cases(
        mnn.AdaptiveAvgPool2d,
        nn.AdaptiveAvgPool2d,
        ((1,), (2, 3, 5, 5)),
        (((1, 1),), (2, 3, 4, 6)),
        (((3, None),), (2, 3, 7, 5)),
    ),
    errors=(
        _output_size_error(-1, r"adaptive_avg_pool2d: output_size must be >= 0, got -1"),
        _output_size_error((2,), r"adaptive_avg_pool2d: output_size must be an int or a pair"),
        ErrorInput(
            "output_size 2.0",
            lambda f: f(arbitrary(1, 2, 4, 4), 2.0),
            TypeError,
            r"output_size must be an int, got float 2.0",
        ),
        ErrorInput(
            "dims",
            lambda f: f(arbitrary(4, 4), 1),
            ValueError,
            r"input must have shape \(N, C, H, W\) or \(C, H, W\)",
        ),
        ErrorInput(
            "5-D input",
            lambda f: f(arbitrary(1, 1, 2, 4, 4), 2),
            RuntimeError,
            r"input must have shape \(N, C, H, W\) or \(C, H, W\) \(3 or 4-D\), got 5-D",
        ),
        ErrorInput(
            "empty plane",
            lambda f: f(arbitrary(1, 2, 0, 4), 2),
            RuntimeError,
            r"adaptive_avg_pool2d: input must have non-zero H and W, got shape \(1, 2, 0, 4\)",
        ),
    ),
    opinfo="nn.functional.adaptive_avg_pool2d",
)


def _adaptive_max_pool_samples() -> tuple[Sample, ...]:
    samples = [
        Sample(label, _distinct(shape), kwargs={"output_size": size})
        for label, shape, size in (
            ("overlapping-3x2-of-7x5", (2, 3, 7, 5), (3, 2)),
            ("divides-4", (2, 3, 8, 8), 4),
            ("none-keeps-w", (2, 3, 5, 6), (4, None)),
            ("global", (2, 3, 5, 4), 1),
            ("larger-than-input", (1, 2, 3, 4), (5, 6)),
        )
    ]
    samples.append(
        Sample(
            "return-indices",
            _distinct((2, 3, 7, 6)),
            kwargs={"output_size": (3, 4), "return_indices": True},
            wrap=_first_output,
        )
    )
    samples.append(Sample("unbatched", _distinct((3, 6, 7)), kwargs={"output_size": (2, 3)}))
    return tuple(samples)


ADAPTIVE_MAX_POOL2D = OpSpec(
    OPS["adaptive_max_pool2d"],
    samples=_adaptive_max_pool_samples(),
    kinks=(
        Sample("ties-overlapping-3x2-of-7x5", _ties((2, 3, 7, 5)), kwargs={"output_size": (3, 2)}),
        Sample("ties-global", _ties((2, 3, 4, 4)), kwargs={"output_size": 1}),
    ),
    modules=module_cases(
        mnn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool2d, ((3,), (2, 3, 7, 8)), (((None, 2),), (2, 3, 5, 5))
    ),
    errors=(
        _output_size_error((1, 2, 3), r"adaptive_max_pool2d: output_size must be an int or a pair"),
        _output_size_error(-1, r"adaptive_max_pool2d: output_size must be >= 0, got -1"),
        ErrorInput(
            "empty plane",
            lambda f: f(arbitrary(1, 2, 0, 4), 2),
            RuntimeError,
            r"input must have non-zero H and W, got shape \(1, 2, 0, 4\)",
        ),
        ErrorInput(
            "integer input",
            lambda f: f(torch.ones(1, 1, 4, 4, dtype=torch.long), 2),
            NotImplementedError,
            r"input must be a floating-point",
        ),
    ),
    opinfo="nn.functional.adaptive_max_pool2d",
)


# -------------------------------------------------------------------------------------------- avg pool
def _avg_pool_samples() -> tuple[Sample, ...]:
    # (label, x shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    grid = [
        ("2x2", (2, 3, 8, 8), 2, None, 0, False, True, None),
        ("3x3-s2-p1", (2, 3, 9, 9), 3, 2, 1, False, True, None),
        ("3x3-s2-p1-exclude-pad", (2, 3, 9, 9), 3, 2, 1, False, False, None),
        ("ceil-mode", (1, 2, 7, 5), 2, 2, 0, True, True, None),
        ("ceil-mode-p1-include-pad", (1, 2, 8, 7), 3, 2, 1, True, True, None),
        ("ceil-mode-p1-exclude-pad", (1, 2, 8, 7), 3, 2, 1, True, False, None),
        ("nonsquare", (1, 2, 9, 8), (3, 2), (2, 1), (1, 0), False, True, None),
        ("divisor-override", (2, 3, 7, 7), 3, 2, 1, False, True, 5),
        ("stride1-overlap", (1, 2, 5, 5), 3, 1, 1, False, False, None),
        ("stride-gt-kernel", (1, 2, 9, 9), 2, 3, 0, False, True, None),
        ("unbatched", (3, 6, 6), 2, None, 0, False, True, None),
    ]
    names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
    return tuple(Sample(label, normal(xs), kwargs=dict(zip(names, values))) for label, xs, *values in grid)


AVG_POOL2D = OpSpec(
    OPS["avg_pool2d"],
    samples=_avg_pool_samples(),
    modules=module_cases(
        mnn.AvgPool2d,
        nn.AvgPool2d,
        ((3, 2, 1), (2, 3, 9, 9)),
        ((2,), (2, 3, 7, 7), {"ceil_mode": True, "count_include_pad": False}),
        ((3,), (2, 3, 6, 6), {"stride": 1, "divisor_override": 4}),
    ),
    errors=(
        ErrorInput(
            "padding",
            lambda f: f(arbitrary(1, 1, 8, 8), 2, padding=2),
            RuntimeError,
            r"padding must be between 0 and half the kernel size \(2, 2\), got 2",
        ),
        ErrorInput(
            "negative padding",
            lambda f: f(arbitrary(1, 1, 4, 4), 2, padding=-1),
            RuntimeError,
            r"padding must be between 0 and half the kernel size \(2, 2\), got -1",
        ),
        ErrorInput(
            "kernel too large",
            lambda f: f(arbitrary(1, 1, 3, 3), 5, stride=1),
            ValueError,
            r"kernel_size \(5, 5\) is larger than the padded input \(3, 3\) \+ 2\*\(0, 0\)",
        ),
        ErrorInput(
            "kernel 0",
            lambda f: f(arbitrary(1, 1, 4, 4), 0),
            RuntimeError,
            r"kernel_size and stride must be positive, got 0 and None",
        ),
        ErrorInput(
            "kernel 2.0",
            lambda f: f(arbitrary(1, 1, 4, 4), 2.0),
            TypeError,
            r"kernel_size must be an int, got float 2.0",
        ),
        ErrorInput(
            "divisor_override",
            lambda f: f(arbitrary(1, 1, 4, 4), 2, divisor_override=0),
            RuntimeError,
            r"divisor_override must not be zero",
        ),
        ErrorInput(
            "kernel triple",
            lambda f: f(arbitrary(1, 1, 4, 4), (2, 2, 2)),
            RuntimeError,
            r"kernel_size must be an int or a pair of ints",
        ),
        ErrorInput(
            "dims",
            lambda f: f(arbitrary(4, 4), 2),
            RuntimeError,
            r"input must have shape \(N, C, H, W\) or \(C, H, W\)",
        ),
        ErrorInput(
            "5-D input",
            lambda f: f(arbitrary(1, 1, 1, 4, 4), 2),
            RuntimeError,
            r"input must have shape \(N, C, H, W\) or \(C, H, W\) \(3 or 4-D\), got 5-D",
        ),
        ErrorInput(
            "bool input",
            lambda f: f(torch.ones(1, 1, 4, 4, dtype=torch.bool), 2),
            NotImplementedError,
            r"input must be a floating-point \(or int64\) tensor, got dtype torch.bool",
        ),
        ErrorInput(
            "uint8 input",
            lambda f: f(torch.ones(1, 1, 4, 4, dtype=torch.uint8), 2),
            NotImplementedError,
            r"input must be a floating-point \(or int64\) tensor, got dtype torch.uint8",
        ),
    ),
    opinfo="nn.functional.avg_pool2d",
)


# ------------------------------------------------------------------------------------------- group norm
def _group_norm_samples() -> tuple[Sample, ...]:
    def make(shape: tuple[int, ...], groups: int, weight: bool, bias: bool) -> InputFactory:
        c = shape[1]

        def inputs(dtype: torch.dtype, device: torch.device) -> tuple[Any, ...]:
            w = randn((c,), dtype, device, 1) if weight else None
            b = randn((c,), dtype, device, 2) if bias else None
            return (randn(shape, dtype, device, 0), groups, w, b)

        return inputs

    # (label, x shape, num_groups, weight, bias, eps)
    grid = [
        ("spatial-groups2", (2, 6, 3, 4), 2, True, True, 1e-5),
        ("groups1-layer-norm", (2, 4, 3, 3), 1, True, True, 1e-5),
        ("groups=C-instance-norm", (2, 4, 3, 3), 4, True, True, 1e-5),
        ("no-affine", (3, 6, 5), 3, False, False, 1e-5),
        ("2d-input", (4, 6), 2, True, True, 1e-5),
        ("weight-only-eps0.1", (2, 4, 5), 2, True, False, 0.1),
        ("bias-only", (2, 4, 5), 2, False, True, 1e-5),
        ("5d", (2, 4, 2, 3, 2), 2, True, True, 1e-5),
    ]
    return tuple(
        Sample(
            label,
            make(shape, groups, weight, bias),
            (0,) + ((2,) if weight else ()) + ((3,) if bias else ()),
            {"eps": eps},
        )
        for label, shape, groups, weight, bias, eps in grid
    )


GROUP_NORM = OpSpec(
    OPS["group_norm"],
    samples=_group_norm_samples(),
    modules=module_cases(
        mnn.GroupNorm,
        nn.GroupNorm,
        ((2, 4), (2, 4, 3, 3)),
        ((3, 6), (2, 6, 5), {"affine": False, "eps": 1e-3}),
        ((1, 4), (3, 4)),
    ),
    errors=(
        ErrorInput(
            "groups divide C",
            lambda f: f(arbitrary(2, 6, 4), 4),
            RuntimeError,
            r"num_groups must be a positive divisor of the number of channels C=6 .* got num_groups=4",
        ),
        ErrorInput(
            "groups 0",
            lambda f: f(arbitrary(2, 6), 0),
            ValueError,
            r"num_groups must be a positive divisor of the number of channels C=6 .* got num_groups=0",
        ),
        ErrorInput(
            "groups 2.0",
            lambda f: f(arbitrary(2, 6), 2.0),
            TypeError,
            r"num_groups must be an int, got float 2.0",
        ),
        ErrorInput(
            "weight shape",
            lambda f: f(arbitrary(2, 6, 4), 3, arbitrary(3)),
            ValueError,
            r"weight must have shape \(6,\) \(one value per channel of input\), got \(3,\)",
        ),
        ErrorInput(
            "dims",
            lambda f: f(arbitrary(6), 3),
            RuntimeError,
            r"input must have shape \(N, C, \*\) \(at least 2-D\), got 1-D",
        ),
        ErrorInput(
            "no channels",
            lambda f: f(arbitrary(1, 0, 2), 1),
            RuntimeError,
            r"input must have shape \(N, C, \*\) with C > 0 and non-empty spatial dims, got \(1, 0, 2\)",
        ),
        ErrorInput(
            "empty spatial dim",
            lambda f: f(arbitrary(1, 2, 0), 1),
            RuntimeError,
            r"input must have shape \(N, C, \*\) with C > 0 and non-empty spatial dims, got \(1, 2, 0\)",
        ),
        ErrorInput(
            "integer input",
            lambda f: f(torch.ones(2, 4, dtype=torch.long), 2),
            NotImplementedError,
            r"input must be a floating-point tensor, got dtype torch.int64",
        ),
        ErrorInput(
            "mixed dtypes",
            lambda f: f(arbitrary(2, 6), 2, arbitrary(6, dtype=torch.float64)),
            TypeError,
            r"weight has dtype torch.float64 but input has dtype torch.float32",
        ),
    ),
    opinfo="nn.functional.group_norm",
)

# ------------------------------------------------------------------------------------------- gelu, tanh
GELU = OpSpec(
    OPS["gelu"],
    samples=tuple(
        Sample(
            f"{approximate}-{label}",
            lambda dt, dev, s=shape: (randn(s, dt, dev, 0).mul(2),),
            kwargs={"approximate": approximate},
        )
        for approximate in ("none", "tanh")
        for label, shape in (("2d", (6, 7)), ("4d", (2, 3, 4, 5)))
    ),
    modules=module_cases(mnn.GELU, nn.GELU, ((), (4, 5)), ((), (2, 3, 4, 4), {"approximate": "tanh"})),
    errors=(
        ErrorInput(
            "approximate",
            lambda f: f(arbitrary(3), approximate="erf"),
            RuntimeError,
            r"approximate must be 'none' or 'tanh', got 'erf'",
        ),
        _integer_input(),
    ),
    opinfo="nn.functional.gelu",
)

TANH = OpSpec(
    OPS["tanh"],
    samples=(
        Sample("2d", lambda dt, dev: (randn((6, 7), dt, dev, 0).mul(2),)),
        Sample("4d", lambda dt, dev: (randn((2, 3, 4, 5), dt, dev, 0).mul(2),)),
    ),
    modules=module_cases(mnn.Tanh, nn.Tanh, ((), (4, 5))),
    errors=(
        ErrorInput(
            "complex input", lambda f: f(torch.ones(2, dtype=torch.cfloat)), TypeError, r"must be a real"
        ),
    ),
    opinfo="tanh",
)


# ------------------------------------------------------------------------------- softmax, log_softmax
def _softmax_samples() -> tuple[Sample, ...]:
    # (label, x shape, dim, dtype, offset); 'large-offset': exp(100) overflows float32 without the max
    # subtraction, while the gradients stay O(1) (large *spread* scores would saturate them to ~0, below
    # what finite differences resolve)
    grid = [
        ("dim1", (4, 7), 1, None, 0.0),
        ("dim0", (5, 3), 0, None, 0.0),
        ("dim-1-3d", (2, 3, 5), -1, None, 0.0),
        ("channels-4d", (2, 5, 3, 4), 1, None, 0.0),
        ("large-offset", (4, 6), 1, None, 100.0),
        ("dtype-float64", (3, 4), 1, torch.float64, 0.0),
        ("implicit-dim-3d", (3, 4, 5), None, None, 0.0),
        ("implicit-dim-4d", (2, 3, 2, 2), None, None, 0.0),
    ]
    return tuple(
        Sample(
            label,
            lambda dt, dev, shape=shape, offset=offset: (randn(shape, dt, dev, 0).add(offset),),
            kwargs={"dim": dim, "dtype": dtype},
            wrap=_quiet if dim is None else None,
        )
        for label, shape, dim, dtype, offset in grid
    )


SOFTMAX = OpSpec(
    OPS["softmax"],
    samples=_softmax_samples(),
    modules=module_cases(mnn.Softmax, nn.Softmax, ((1,), (4, 5)), ((-1,), (2, 3, 4))),
    errors=(
        ErrorInput(
            "dim", lambda f: f(arbitrary(2, 3), 2), IndexError, r"dim out of range: .*\[-2, 1\].* got 2"
        ),
        ErrorInput(
            "negative dim",
            lambda f: f(arbitrary(2, 3), -3),
            IndexError,
            r"dim out of range: .*\[-2, 1\].* got -3",
        ),
        ErrorInput(
            "dim 1.5", lambda f: f(arbitrary(2, 3), 1.5), TypeError, r"dim must be an int, got float 1.5"
        ),
        ErrorInput(
            "not a tensor", lambda f: f([1.0, 2.0], 0), TypeError, r"input must be a torch.Tensor, got list"
        ),
        ErrorInput(
            "integer input",
            lambda f: f(torch.arange(4), 0),
            NotImplementedError,
            r"input must be a floating-point tensor, got dtype torch.int64",
        ),
    ),
    opinfo="softmax",
)

LOG_SOFTMAX = OpSpec(
    OPS["log_softmax"],
    samples=_softmax_samples(),
    modules=module_cases(mnn.LogSoftmax, nn.LogSoftmax, ((1,), (4, 5)), ((0,), (3, 4, 2))),
    errors=(
        ErrorInput(
            "dtype",
            lambda f: f(arbitrary(2, 3), 1, dtype=torch.long),
            TypeError,
            r"dtype must be a floating-point torch.dtype, got torch.int64",
        ),
        ErrorInput("dim", lambda f: f(arbitrary(4), -2), IndexError, r"dim out of range"),
    ),
    opinfo="log_softmax",
)


# ------------------------------------------------------- leaky_relu, prelu, hardtanh, elu, celu, selu
LEAKY_RELU = _activation(
    "leaky_relu",
    (4, 5),
    (0.0,),
    settings=(({"negative_slope": 0.2}, (0.0,)), ({"negative_slope": -0.3}, (0.0,))),
    modules=(((0.2,), (2, 3, 4, 4)),),
)


def _prelu_inputs(shape: tuple[int, ...], weight_shape: tuple[int, ...], kinks: bool = False) -> InputFactory:
    """``x`` of ``shape`` (away from 0, or with every third element on it) and a weight of
    ``weight_shape``, slopes in ``[0.1, 0.4)``."""
    make_x = (_at_kinks if kinks else _away_from_kinks)(shape, (0.0,))

    def inputs(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        weight = torch.rand(weight_shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        return (make_x(dtype, device)[0], weight.mul(0.3).add(0.1).to(device=device, dtype=dtype))

    return inputs


PRELU = OpSpec(
    OPS["prelu"],
    samples=(
        Sample("4d-per-channel", _prelu_inputs((2, 3, 4, 5), (3,)), grad_inputs=(0, 1)),
        Sample("4d-shared", _prelu_inputs((2, 3, 4, 5), (1,)), grad_inputs=(0, 1)),
        Sample("2d-per-channel", _prelu_inputs((6, 7), (7,)), grad_inputs=(0, 1)),
        Sample("1d-scalar-weight", _prelu_inputs((7,), ()), grad_inputs=(0, 1)),
    ),
    kinks=(Sample("at-0", _prelu_inputs((2, 3, 4, 5), (3,), kinks=True), grad_inputs=(0, 1)),),
    modules=module_cases(mnn.PReLU, nn.PReLU, ((), (4, 5)), ((3,), (2, 3, 4, 4)), ((), (2, 3, 4))),
    errors=(
        ErrorInput(
            "weight channels",
            lambda f: f(arbitrary(2, 8, 3), arbitrary(9)),
            RuntimeError,
            r"weight must have 1 or C = 8 elements .* got shape \(9,\)",
        ),
        ErrorInput(
            "weight 2-D",
            lambda f: f(arbitrary(2, 8, 3), arbitrary(2, 4)),
            RuntimeError,
            r"weight must be a scalar or a 1-D tensor \(num_parameters,\), got 2-D",
        ),
        ErrorInput(
            "0-D input, 2 weights",
            lambda f: f(torch.tensor(1.0), arbitrary(2)),
            RuntimeError,
            r"weight must have 1 or C = 1 elements",
        ),
        ErrorInput(
            "weight dtype",
            lambda f: f(arbitrary(2, 3), arbitrary(3, dtype=torch.float64)),
            RuntimeError,
            r"weight has dtype torch.float64 but input has dtype torch.float32",
        ),
        ErrorInput(
            "integer input",
            lambda f: f(torch.arange(4), arbitrary(1)),
            TypeError,
            r"input must be a floating-point tensor, got dtype torch.int64",
        ),
    ),
    opinfo="nn.functional.prelu",
)

HARDTANH = _activation(
    "hardtanh",
    (4, 5),
    (-1.0, 1.0),
    settings=(({"min_val": -0.5, "max_val": 2.0}, (-0.5, 2.0)),),
    modules=(((-0.5, 2.0), (2, 3, 4, 4)),),
    errors=(
        ErrorInput(
            "min_val > max_val",
            lambda f: f(arbitrary(3), 0.5, -0.5),
            ValueError,
            r"min_val cannot be greater than max_val",
        ),
    ),
)
# ELU is C^1 at 0 for alpha = 1 (slope 1 on both sides), CELU for every alpha: no kink there.
ELU = _activation(
    "elu",
    (4, 5),
    settings=(({"alpha": 0.5}, (0.0,)), ({"alpha": -0.5}, (0.0,))),
    modules=(((0.5,), (2, 3, 4, 4)),),
)
CELU = _activation(
    "celu",
    (4, 5),
    settings=(({"alpha": 0.5}, ()), ({"alpha": -2.0}, ())),
    modules=(((0.5,), (2, 3, 4, 4)),),
    errors=(ErrorInput("alpha 0", lambda f: f(arbitrary(3), 0.0), RuntimeError, r"alpha cannot be 0"),),
)
SELU = _activation("selu", (2, 3, 4, 4), (0.0,))


# ------------------------------------------------------------------------------------- matmul, einsum
def _matmul_inputs(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> InputFactory:
    return lambda dtype, device: (randn(a_shape, dtype, device, 0), randn(b_shape, dtype, device, 1))


MATMUL = OpSpec(
    OPS["matmul"],
    samples=(
        Sample("2d", _matmul_inputs((4, 5), (5, 3)), (0, 1)),
        Sample("vector-vector", _matmul_inputs((5,), (5,)), (0, 1)),
        Sample("matrix-vector", _matmul_inputs((4, 5), (5,)), (0, 1)),
        Sample("vector-batched", _matmul_inputs((5,), (2, 5, 3)), (0, 1)),
        Sample("batched-broadcast", _matmul_inputs((2, 1, 3, 4), (3, 4, 2)), (0, 1)),
    ),
    errors=(
        ErrorInput(
            "inner dims",
            lambda f: f(arbitrary(2, 3), arbitrary(2, 3)),
            RuntimeError,
            r"input \(2, 3\) and other \(2, 3\) cannot be multiplied",
        ),
        ErrorInput(
            "batch dims",
            lambda f: f(arbitrary(2, 2, 3), arbitrary(3, 3, 2)),
            RuntimeError,
            r"batch dims of input \(2, 2, 3\) and other \(3, 3, 2\) do not broadcast",
        ),
        ErrorInput(
            "0-d",
            lambda f: f(torch.tensor(1.0), arbitrary(3)),
            RuntimeError,
            r"both arguments to matmul must be at least 1-D",
        ),
        ErrorInput(
            "integer input",
            lambda f: f(torch.ones(2, 2, dtype=torch.long), arbitrary(2, 2)),
            TypeError,
            r"input must be a floating-point tensor, got dtype torch.int64",
        ),
        ErrorInput(
            "mixed dtypes",
            lambda f: f(arbitrary(2, 2), arbitrary(2, 2, dtype=torch.float64)),
            TypeError,
            r"other has dtype torch.float64 but input has dtype torch.float32",
        ),
    ),
    opinfo="matmul",
)


def _equation(equation: str) -> Callable[[Callable[..., Any]], Callable[..., torch.Tensor]]:
    """Both twins called as ``fn(equation, *operands)``: the samples' inputs are the operands."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., torch.Tensor]:
        @functools.wraps(fn)
        def call(*operands: torch.Tensor) -> torch.Tensor:
            return fn(equation, *operands)

        return call

    return wrap


EINSUM = OpSpec(
    OPS["einsum"],
    samples=tuple(
        Sample(label, normal(*shapes), tuple(range(len(shapes))), wrap=_equation(equation))
        for label, equation, shapes in (
            ("matmul", "ij,jk->ik", ((3, 4), (4, 2))),
            ("attention-scores", "bhid,bhjd->bhij", ((2, 2, 3, 4), (2, 2, 5, 4))),
            ("ellipsis-implicit", "...ij,jk", ((2, 3, 4), (4, 2))),
            ("outer-broadcast", "ij,kj->ikj", ((2, 3), (4, 1))),
            ("sum-only-in-one", "ijk,j->i", ((2, 3, 4), (3,))),
            ("trace", "ii", ((3, 3),)),
            ("diagonal", "iji->ij", ((3, 2, 3),)),
        )
    ),
    errors=(
        ErrorInput(
            "operand count",
            lambda f: f("ij,jk->ik", arbitrary(2, 3)),
            RuntimeError,
            r"fewer operands were given \(1\) than the equation 'ij,jk->ik' has subscripts \(2\)",
        ),
        ErrorInput(
            "sizes",
            lambda f: f("ij,jk->ik", arbitrary(2, 3), arbitrary(4, 2)),
            RuntimeError,
            r"subscript 'j' has size 4 in operand 1 \(shape \(4, 2\)\), which does not broadcast",
        ),
        ErrorInput(
            "dims",
            lambda f: f("ijk->i", arbitrary(2, 3)),
            RuntimeError,
            r"subscripts 'ijk' of operand 0 do not match its 2 dims",
        ),
        ErrorInput(
            "output letter",
            lambda f: f("ij->k", arbitrary(2, 3)),
            RuntimeError,
            r"output subscript 'k' is not a subscript of any operand",
        ),
        ErrorInput(
            "integer operand",
            lambda f: f("i->", torch.arange(3)),
            TypeError,
            r"operand 0 must be a floating-point tensor, got dtype torch.int64",
        ),
    ),
    opinfo="einsum",
)


# ------------------------------------------------------------------------------ softplus, mish, normalize
def _softplus_inputs(shape: tuple[int, ...], scale: float, threshold_at: float | None = None) -> InputFactory:
    """Normal values times ``scale``; with ``threshold_at`` (``threshold / beta``), every third element is
    moved to ``threshold_at`` and its neighbours to ``threshold_at`` ± 0.01: both sides of the threshold,
    where softplus switches to the identity (``kinks`` only: it is discontinuous there)."""

    def inputs(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor]:
        x = randn(shape, torch.float64, torch.device("cpu"), 0).mul(scale)
        if threshold_at is not None:
            flat = x.view(-1)
            flat[::3] = threshold_at
            flat[1::3] = threshold_at - 0.01
            flat[2::3] = threshold_at + 0.01
        return (x.to(device=device, dtype=dtype),)

    return inputs


SOFTPLUS = OpSpec(
    OPS["softplus"],
    samples=(
        Sample("2d", _softplus_inputs((6, 7), 4.0)),
        Sample("4d-above-threshold", _softplus_inputs((2, 3, 4, 5), 12.0)),  # |x| up to ~30 > threshold 20
        Sample("beta2-threshold3", _softplus_inputs((6, 7), 3.0), kwargs={"beta": 2.0, "threshold": 3.0}),
        Sample("beta0.5", _softplus_inputs((2, 3, 4, 5), 4.0), kwargs={"beta": 0.5}),
    ),
    kinks=(
        Sample(
            "at-threshold-beta2-threshold3",
            _softplus_inputs((4, 6), 1.0, threshold_at=1.5),
            kwargs={"beta": 2.0, "threshold": 3.0},
        ),
        Sample("at-threshold-default", _softplus_inputs((4, 6), 1.0, threshold_at=20.0)),
    ),
    modules=module_cases(mnn.Softplus, nn.Softplus, ((), (4, 5)), ((2.0, 3.0), (2, 3, 4, 4))),
    errors=(
        _integer_input(),
        ErrorInput(
            "beta 0", lambda f: f(arbitrary(3), beta=0.0), RuntimeError, r"beta must be non-zero.*got 0"
        ),
        ErrorInput(
            "beta str", lambda f: f(arbitrary(3), beta="2"), TypeError, r"beta must be a real number, got str"
        ),
    ),
    opinfo="nn.functional.softplus",
)

MISH = _activation("mish", (2, 3, 4, 4))


def _rows_scaled(shape: tuple[int, ...], row_scales: tuple[float, ...]) -> InputFactory:
    """Normal values, row ``i`` (dim 0) times ``row_scales[i]`` (1 past the end)."""

    def inputs(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor]:
        x = randn(shape, torch.float64, torch.device("cpu"), 0)
        for i, scale in enumerate(row_scales):
            x[i] *= scale
        return (x.to(device=device, dtype=dtype),)

    return inputs


NORMALIZE = OpSpec(
    OPS["normalize"],
    samples=(
        Sample("p2-dim1", normal((4, 5, 3))),
        Sample("p2-dim-1", normal((4, 5, 3)), kwargs={"dim": -1}),
        Sample("p1-dim1", normal((4, 5, 3)), kwargs={"p": 1.0}),
        Sample("p3-dim-1", normal((2, 3, 4, 5)), kwargs={"p": 3.0, "dim": -1}),
        Sample("p0.5-dim0", normal((5, 4)), kwargs={"p": 0.5, "dim": 0}),
        Sample("pinf-dim1", normal((4, 6)), kwargs={"p": math.inf}),
        Sample("p2-dims12", normal((2, 3, 4, 5)), kwargs={"dim": (1, 2)}),
        # rows 0 and 1 have norms ~0.02, below the floor eps = 0.5: divided by eps, no gradient through n
        Sample("below-eps-rows", _rows_scaled((4, 6), (0.01, 0.01)), kwargs={"eps": 0.5}),
    ),
    kinks=(
        # the floor's kink: a norm below the default eps (1e-12), and an all-zero row (p = 1: sign(0) = 0)
        Sample("near-zero-row", _rows_scaled((3, 5), (1e-14,))),
        Sample("zero-row-p1", _rows_scaled((3, 5), (0.0,)), kwargs={"p": 1.0}),
    ),
    errors=(
        _integer_input(),
        ErrorInput("dim", lambda f: f(arbitrary(2, 3), dim=2), IndexError, r"dim out of range.*got 2"),
        ErrorInput(
            "repeated dim",
            lambda f: f(arbitrary(2, 3), dim=(1, -1)),
            RuntimeError,
            r"dim must not repeat a dimension, got \(1, -1\)",
        ),
        ErrorInput("p str", lambda f: f(arbitrary(2, 3), p="fro"), RuntimeError, r"p must be a real number"),
        ErrorInput(
            "out",
            lambda f: f(arbitrary(2, 3), out=torch.empty(2, 3)),
            RuntimeError,
            r"out is not supported by the manual normalize",
        ),
    ),
    opinfo="nn.functional.normalize",
)


# ------------------------------------------------------------------------ attention, multi-head attention
def _attention_inputs(
    q: tuple[int, ...], k: tuple[int, ...], v: tuple[int, ...], mask: str | None = None
) -> InputFactory:
    """Standard normal q, k, v of these shapes, then the mask of ``(L, S)``: ``"bool"`` (a third of the keys
    masked out, none of the rows fully), ``"row"`` (bool, row 1 fully masked), ``"float"`` (normal values)."""
    L, S = q[-2], k[-2]

    def inputs(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
        tensors = tuple(randn(shape, dtype, device, i) for i, shape in enumerate((q, k, v)))
        if mask is None:
            return tensors
        if mask == "float":
            return (*tensors, randn((L, S), dtype, device, 3))
        allowed = (torch.arange(L * S).view(L, S) % 3 != 1).to(device)
        allowed[:, 0] = True
        if mask == "row":
            allowed[1] = False
        return (*tensors, allowed)

    return inputs


SCALED_DOT_PRODUCT_ATTENTION = OpSpec(
    OPS["scaled_dot_product_attention"],
    samples=(
        Sample("4d-heads", _attention_inputs((2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 3)), (0, 1, 2)),
        Sample("3d", _attention_inputs((2, 3, 4), (2, 4, 4), (2, 4, 2)), (0, 1, 2)),
        Sample("bool-mask", _attention_inputs((2, 3, 4), (2, 5, 4), (2, 5, 2), "bool"), (0, 1, 2)),
        Sample("fully-masked-row", _attention_inputs((2, 3, 4), (2, 5, 4), (2, 5, 2), "row"), (0, 1, 2)),
        Sample("float-mask", _attention_inputs((2, 3, 4), (2, 5, 4), (2, 5, 2), "float"), (0, 1, 2, 3)),
        Sample("causal", _attention_inputs((2, 4, 3), (2, 4, 3), (2, 4, 2)), (0, 1, 2), {"is_causal": True}),
        Sample(
            "causal-L>S", _attention_inputs((2, 5, 3), (2, 3, 3), (2, 3, 2)), (0, 1, 2), {"is_causal": True}
        ),
        Sample("scale", _attention_inputs((2, 3, 4), (2, 4, 4), (2, 4, 2)), (0, 1, 2), {"scale": 0.7}),
        Sample(
            "gqa",
            _attention_inputs((1, 4, 3, 2), (1, 2, 4, 2), (1, 2, 4, 3)),
            (0, 1, 2),
            {"enable_gqa": True},
        ),
        Sample("dropout", _attention_inputs((2, 3, 4), (2, 4, 4), (2, 4, 2)), (0, 1, 2), {"dropout_p": 0.3}),
    ),
    errors=(
        ErrorInput(
            "dtype mismatch",
            lambda f: f(arbitrary(2, 3, 4), arbitrary(2, 3, 4), arbitrary(2, 3, 4, dtype=torch.float64)),
            RuntimeError,
            r"Expected query, key, and value to have the same dtype",
        ),
        ErrorInput(
            "feature size",
            lambda f: f(arbitrary(2, 3, 4), arbitrary(2, 5, 3), arbitrary(2, 5, 2)),
            RuntimeError,
            r"key must have shape \(\.\.\., S, E=4\)",
        ),
        ErrorInput(
            "key and value lengths",
            lambda f: f(arbitrary(2, 3, 4), arbitrary(2, 5, 4), arbitrary(2, 6, 2)),
            RuntimeError,
            r"value must have shape \(\.\.\., S=5, Ev\)",
        ),
        ErrorInput(
            "dropout_p > 1",
            lambda f: f(arbitrary(2, 3, 4), arbitrary(2, 3, 4), arbitrary(2, 3, 4), dropout_p=1.5),
            RuntimeError,
            r"dropout probability has to be between 0 and 1, but got 1.5",
        ),
        ErrorInput(
            "is_causal with attn_mask",
            lambda f: f(
                arbitrary(2, 3, 4),
                arbitrary(2, 3, 4),
                arbitrary(2, 3, 4),
                torch.ones(3, 3, dtype=torch.bool),
                0.0,
                True,
            ),
            RuntimeError,
            r"Explicit attn_mask should not be set when is_causal=True",
        ),
        ErrorInput(
            "integer mask",
            lambda f: f(
                arbitrary(2, 3, 4), arbitrary(2, 3, 4), arbitrary(2, 3, 4), torch.ones(3, 3, dtype=torch.long)
            ),
            RuntimeError,
            r"Expected attn_mask dtype to be bool or float",
        ),
        ErrorInput(
            "mask shape",
            lambda f: f(
                arbitrary(2, 3, 4), arbitrary(2, 5, 4), arbitrary(2, 5, 4), torch.ones(4, 5, dtype=torch.bool)
            ),
            RuntimeError,
            r"attn_mask must be broadcastable to the scores' shape \(2, 3, 5\)",
        ),
        ErrorInput(
            "gqa heads",
            lambda f: f(arbitrary(1, 3, 2, 4), arbitrary(1, 2, 2, 4), arbitrary(1, 2, 2, 4), enable_gqa=True),
            RuntimeError,
            r"Number of heads in key and value must divide the number of heads in query",
        ),
        ErrorInput(
            "integer query",
            lambda f: f(torch.ones(2, 3, 4, dtype=torch.long), arbitrary(2, 3, 4), arbitrary(2, 3, 4)),
            RuntimeError,
            r"query must be a floating-point tensor, got dtype torch.int64",
        ),
    ),
    opinfo="nn.functional.scaled_dot_product_attention",
    images=False,
)


def _mha_inputs(
    L: int,
    S: int,
    N: int | None,
    E: int,
    heads: int,
    kdim: int | None = None,
    vdim: int | None = None,
    bias: bool = True,
    bias_kv: bool = False,
    zero_attn: bool = False,
    p: float = 0.0,
    kpm: str | None = None,
    mask: str | None = None,
    need_weights: bool = True,
) -> InputFactory:
    """The positional arguments of ``multi_head_attention_forward``: query ``(L, N, E)``, key
    ``(S, N, kdim)``, value ``(S, N, vdim)`` (no ``N`` when None: unbatched), the projections (separate
    when kdim or vdim is given), ``training=True``, a key padding mask (``"bool"``: the last key of the
    first sequence padded; ``"float"``), ``need_weights`` and an ``(L, S)`` attention mask (``"bool"``:
    causal; ``"float"``)."""
    separate = kdim is not None or vdim is not None
    kdim, vdim = kdim or E, vdim or E
    lead = () if N is None else (N,)

    def inputs(dtype: torch.dtype, device: torch.device) -> tuple[Any, ...]:
        def r(shape: tuple[int, ...], seed: int) -> torch.Tensor:
            return randn(shape, dtype, device, seed).mul(0.5)

        q, k, v = r((L, *lead, E), 0), r((S, *lead, kdim), 1), r((S, *lead, vdim), 2)
        in_w = None if separate else r((3 * E, E), 3)
        in_b = r((3 * E,), 4) if bias else None
        bk, bv = (r((1, 1, E), 5), r((1, 1, E), 6)) if bias_kv else (None, None)
        out_w, out_b = r((E, E), 7), (r((E,), 8) if bias else None)
        padding = None
        if kpm == "bool":
            padding = torch.zeros(*lead, S, dtype=torch.bool, device=device)
            padding[..., -1] = N is None  # unbatched: the last key; batched: the first sequence's last key
            if N is not None:
                padding[0, -1] = True
        elif kpm == "float":
            padding = r((*lead, S), 9)
        attn = None
        if mask == "bool":
            attn = torch.ones(L, S, dtype=torch.bool, device=device).triu(1)  # True: not allowed
        elif mask == "float":
            attn = r((L, S), 10)
        args = [
            q,
            k,
            v,
            E,
            heads,
            in_w,
            in_b,
            bk,
            bv,
            zero_attn,
            p,
            out_w,
            out_b,
            True,
            padding,
            need_weights,
        ]
        args += [attn]
        if separate:
            args += [True, r((E, E), 11), r((E, kdim), 12), r((E, vdim), 13)]
        return tuple(args)

    return inputs


def _mha_grad_inputs(separate: bool = False, bias: bool = True, bias_kv: bool = False) -> tuple[int, ...]:
    """Positions of the differentiable arguments of :func:`_mha_inputs`' tuple."""
    positions = [0, 1, 2, 11]
    positions += [] if separate else [5]
    positions += [6, 12] if bias else []
    positions += [7, 8] if bias_kv else []
    positions += [18, 19, 20] if separate else []
    return tuple(sorted(positions))


def _attention_weights(fn: Callable[..., Any]) -> Callable[..., torch.Tensor]:
    """``fn`` returning ``(output, weights)``, keeping the attention weights."""

    @functools.wraps(fn)
    def call(*args: Any) -> torch.Tensor:
        return fn(*args)[1]

    return call


def _mha_sample(label: str, *, wrap: Callable[..., Any] = _first_output, **kw: Any) -> Sample:
    shape = {"L": 3, "S": 4, "N": 2, "E": 4, "heads": 2}
    average = kw.pop("average_attn_weights", True)
    for name in ("L", "S", "N", "E", "heads"):
        shape[name] = kw.pop(name, shape[name])
    grads = _mha_grad_inputs(
        kw.get("kdim") is not None or kw.get("vdim") is not None,
        kw.get("bias", True),
        kw.get("bias_kv", False),
    )
    if wrap is _attention_weights:  # the output projection plays no part in the weights
        grads = tuple(i for i in grads if i not in (2, 11, 12))  # nor the value
    kwargs = {} if average else {"average_attn_weights": False}
    return Sample(label, _mha_inputs(**shape, **kw), grads, kwargs, wrap=wrap)


def _mha_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Self-attention: ``module(x, x, x)``, the output."""
    return module(x, x, x)[0]


def _mha_forward_kv_dims(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Key of 3 features and value of 5, cut and padded from ``x`` (4 features)."""
    return module(x, x[..., :3], torch.cat([x, x[..., :1]], -1))[0]


MULTI_HEAD_ATTENTION_FORWARD = OpSpec(
    OPS["multi_head_attention_forward"],
    samples=(
        _mha_sample("packed"),
        _mha_sample("unbatched", N=None),
        _mha_sample("separate-kdim-vdim", kdim=3, vdim=5),
        _mha_sample("no-bias", bias=False),
        _mha_sample("bias-kv-zero-attn", bias_kv=True, zero_attn=True),
        _mha_sample("key-padding-bool", kpm="bool"),
        _mha_sample("float-masks", kpm="float", mask="float"),
        _mha_sample("causal-mask", mask="bool", need_weights=False),
        _mha_sample("weights-averaged", wrap=_attention_weights, kpm="bool"),
        _mha_sample("weights-per-head", wrap=_attention_weights, average_attn_weights=False),
        _mha_sample("dropout", p=0.3),
    ),
    modules=module_cases(
        mnn.MultiheadAttention,
        nn.MultiheadAttention,
        ((4, 2), (3, 2, 4), {}, _mha_forward),
        ((4, 2), (2, 3, 4), {"batch_first": True}, _mha_forward),
        ((4, 2), (3, 2, 4), {"kdim": 3, "vdim": 5}, _mha_forward_kv_dims),
        ((4, 2), (3, 2, 4), {"bias": False}, _mha_forward),
        ((4, 2), (3, 2, 4), {"add_bias_kv": True, "add_zero_attn": True}, _mha_forward),
        ((4, 2), (3, 2, 4), {"dropout": 0.5}, _mha_forward),
    ),
    errors=(
        ErrorInput(
            "embed_dim_to_check",
            lambda f: f(
                *_mha_inputs(3, 4, 2, 4, 2)(torch.float32, torch.device("cpu"))[:3],
                6,
                2,
                None,
                None,
                None,
                None,
                False,
                0.0,
                arbitrary(4, 4),
                None,
            ),
            AssertionError,
            r"was expecting embedding dimension of 6, but got 4",
        ),
        ErrorInput(
            "heads",
            lambda f: f(
                arbitrary(3, 2, 4),
                arbitrary(4, 2, 4),
                arbitrary(4, 2, 4),
                4,
                3,
                arbitrary(12, 4),
                None,
                None,
                None,
                False,
                0.0,
                arbitrary(4, 4),
                None,
            ),
            AssertionError,
            r"embed_dim 4 not divisible by num_heads 3",
        ),
        ErrorInput(
            "key and value shapes",
            lambda f: f(
                arbitrary(3, 2, 4),
                arbitrary(4, 2, 4),
                arbitrary(5, 2, 4),
                4,
                2,
                arbitrary(12, 4),
                None,
                None,
                None,
                False,
                0.0,
                arbitrary(4, 4),
                None,
            ),
            AssertionError,
            r"key shape .* does not match value shape",
        ),
        ErrorInput(
            "4-D query",
            lambda f: f(
                arbitrary(1, 3, 2, 4),
                arbitrary(1, 4, 2, 4),
                arbitrary(1, 4, 2, 4),
                4,
                2,
                arbitrary(12, 4),
                None,
                None,
                None,
                False,
                0.0,
                arbitrary(4, 4),
                None,
            ),
            AssertionError,
            r"query should be unbatched 2D or batched 3D tensor but received 4-D query tensor",
        ),
    ),
    opinfo="nn.functional.multi_head_attention_forward",
)


SPECS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        LINEAR,
        RELU,
        BATCH_NORM,
        LAYER_NORM,
        DROPOUT,
        CONV2D,
        MAX_POOL2D,
        SOFTMAX_LOSS,
        SVM_LOSS,
        RELU6,
        HARDSIGMOID,
        HARDSWISH,
        SIGMOID,
        SILU,
        ADAPTIVE_AVG_POOL2D,
        ADAPTIVE_MAX_POOL2D,
        AVG_POOL2D,
        GROUP_NORM,
        GELU,
        TANH,
        SOFTMAX,
        LOG_SOFTMAX,
        LEAKY_RELU,
        PRELU,
        HARDTANH,
        ELU,
        CELU,
        SELU,
        MATMUL,
        EINSUM,
        SOFTPLUS,
        MISH,
        NORMALIZE,
        SCALED_DOT_PRODUCT_ATTENTION,
        MULTI_HEAD_ATTENTION_FORWARD,
    )
}
"""Every manual operator's spec, by name, in the order of :data:`custom_ops.registry.OPS`."""

OP_CASES: tuple[OpCase, ...] = tuple(case for spec in SPECS.values() for case in spec.cases)
"""Every sample of every operator where it is differentiable: what gradchecks (finite differences, forward
mode, batched) and the parity tests iterate over."""

KINK_CASES: tuple[OpCase, ...] = tuple(case for spec in SPECS.values() for case in spec.kink_cases)
"""Every sample on a kink of its operator (``case.kink`` is set): parity with the built-in only."""

PARITY_CASES: tuple[OpCase, ...] = OP_CASES + KINK_CASES
"""What the parity with the built-in (outputs and gradients) runs on: every sample, kinks included."""

MODULE_CASES: tuple[ModuleCase, ...] = tuple(case for spec in SPECS.values() for case in spec.modules)
"""Every module twin with example constructor arguments."""

OPINFO_NAMES: dict[str, str] = {spec.name: spec.opinfo for spec in SPECS.values() if spec.opinfo}
"""Operator -> the name of its built-in twin's ``OpInfo`` in torch's ``op_db``
(``tests/test_conformance.py``). The losses have no OpInfo of the same signature."""
