"""The one registry pairing each manual operator and module with its built-in twin.

Tests and benchmarks iterate over :data:`OP_CASES` and :data:`MODULE_CASES` instead of repeating
themselves. An :class:`OpCase` holds a manual and a built-in callable with the *same* call signature and a
factory of example inputs; ``manual(*case.make_inputs(dtype, device))`` and ``builtin(...)`` on the same
inputs must agree. Inputs are built deterministically (same values on every call) and chosen away from
the ReLU kink and from max-pool ties, so finite differences are valid.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as TF
from torch import nn

from . import functional as F
from . import nn as mnn
from .losses import builtin_svm_loss

InputFactory = Callable[[torch.dtype, torch.device], tuple[Any, ...]]


@dataclass(frozen=True)
class OpCase:
    """One example of an operator.

    Attributes:
        op: operator name (a function of :mod:`custom_ops.functional`).
        label: what this example exercises, e.g. ``"stride2-pad1"``.
        manual, builtin: callables taking the tensors of ``make_inputs`` positionally.
        make_inputs: ``(dtype, device) -> args``; floating args are cast to ``dtype``.
        grad_inputs: positions in ``args`` that are differentiable (inputs and parameters).
        double_backward: whether the manual backward is itself differentiable.
        random: the op draws from the global RNG (dropout): seed it before each call; masks then match
            the built-in's on CPU (same Bernoulli stream), and are only statistically alike on CUDA.
        spatial: the first input is ``(N, C, H, W)``, so a ``channels_last`` variant makes sense.
        tags: free-form markers, e.g. ``"bench"`` for benchmark shapes.
    """

    op: str
    label: str
    manual: Callable[..., torch.Tensor]
    builtin: Callable[..., torch.Tensor]
    make_inputs: InputFactory
    grad_inputs: tuple[int, ...] = (0,)
    double_backward: bool = True
    random: bool = False
    spatial: bool = False
    tags: frozenset[str] = field(default_factory=frozenset)

    @property
    def id(self) -> str:
        return f"{self.op}[{self.label}]"

    def inputs(
        self,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        requires_grad: bool = True,
    ) -> list[Any]:
        """Fresh example inputs; the ``grad_inputs`` require grad when ``requires_grad``."""
        args = list(self.make_inputs(dtype, torch.device(device)))
        if requires_grad:
            for i in self.grad_inputs:
                args[i].requires_grad_(True)
        return args


@dataclass(frozen=True)
class ModuleCase:
    """A manual module class, its built-in twin, constructor arguments and an input shape."""

    manual: type[nn.Module]
    builtin: type[nn.Module]
    args: tuple[Any, ...]
    input_shape: tuple[int, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.builtin.__name__}{self.args}"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(shape: Sequence[int], dtype: torch.dtype, device: torch.device, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=torch.float64).to(device=device, dtype=dtype)


def _away_from_zero(
    shape: Sequence[int], dtype: torch.dtype, device: torch.device, seed: int
) -> torch.Tensor:
    """Normal values pushed at least 0.1 away from 0 (no ReLU kink within finite-difference reach)."""
    x = torch.randn(*shape, generator=_gen(seed), dtype=torch.float64)
    return (x + 0.1 * torch.sign(x)).to(device=device, dtype=dtype)


def _distinct(shape: Sequence[int], dtype: torch.dtype, device: torch.device, seed: int) -> torch.Tensor:
    """A random permutation of a 0.05-spaced grid: no two values tie (no max-pool ties)."""
    n = 1
    for s in shape:
        n *= s
    x = torch.randperm(n, generator=_gen(seed)).to(torch.float64).mul(0.05).sub(0.025 * n)
    return x.view(*shape).to(device=device, dtype=dtype)


def _positive(shape: Sequence[int], dtype: torch.dtype, device: torch.device, seed: int) -> torch.Tensor:
    return (
        torch.rand(*shape, generator=_gen(seed), dtype=torch.float64).add(0.5).to(device=device, dtype=dtype)
    )


def _labels(n: int, classes: int, device: torch.device, seed: int) -> torch.Tensor:
    return torch.randint(0, classes, (n,), generator=_gen(seed)).to(device)


# ----------------------------------------------------------------------------------------------- cases
def _linear_cases() -> list[OpCase]:
    def make(x_shape, out, bias=True):
        def inputs(dtype, device):
            w = _randn((out, x_shape[-1]), dtype, device, 1)
            b = _randn((out,), dtype, device, 2) if bias else None
            return (_randn(x_shape, dtype, device, 0), w, b)

        return inputs

    return [
        OpCase("linear", "2d", F.linear, TF.linear, make((4, 5), 3), (0, 1, 2)),
        OpCase("linear", "3d-leading", F.linear, TF.linear, make((2, 3, 5), 4), (0, 1, 2)),
        OpCase(
            "linear",
            "no-bias",
            lambda x, w, b: F.linear(x, w),
            lambda x, w, b: TF.linear(x, w),
            make((4, 5), 3, bias=False),
            (0, 1),
        ),
    ]


def _relu_cases() -> list[OpCase]:
    return [
        OpCase("relu", "2d", F.relu, TF.relu, lambda dt, dev: (_away_from_zero((6, 7), dt, dev, 0),)),
        OpCase(
            "relu",
            "4d",
            F.relu,
            TF.relu,
            lambda dt, dev: (_away_from_zero((2, 3, 4, 5), dt, dev, 0),),
            spatial=True,
        ),
    ]


def _batch_norm_cases() -> list[OpCase]:
    def make(shape, affine=True):
        c = shape[1]

        def inputs(dtype, device):
            w = _randn((c,), dtype, device, 1) if affine else None
            b = _randn((c,), dtype, device, 2) if affine else None
            return (
                _randn(shape, dtype, device, 0),
                _randn((c,), dtype, device, 3),
                _positive((c,), dtype, device, 4),
                w,
                b,
            )

        return inputs

    def fns(training):
        def manual(x, rm, rv, w, b):
            return F.batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5)

        def builtin(x, rm, rv, w, b):
            return TF.batch_norm(x, rm, rv, w, b, training, 0.1, 1e-5)

        return manual, builtin

    cases = []
    for training in (True, False):
        mode = "train" if training else "eval"
        manual, builtin = fns(training)
        for label, shape, spatial in (
            ("1d", (6, 4), False),
            ("1d-seq", (4, 3, 5), False),
            ("spatial", (3, 4, 5, 6), True),
        ):
            cases.append(
                OpCase(
                    "batch_norm",
                    f"{mode}-{label}",
                    manual,
                    builtin,
                    make(shape),
                    (0, 3, 4),
                    double_backward=False,
                    spatial=spatial,
                )
            )
        cases.append(
            OpCase(
                "batch_norm",
                f"{mode}-no-affine",
                manual,
                builtin,
                make((3, 4, 5, 6), False),
                (0,),
                double_backward=False,
                spatial=True,
            )
        )
    return cases


def _layer_norm_cases() -> list[OpCase]:
    def make(shape, normalized, affine=True):
        def inputs(dtype, device):
            w = _randn(normalized, dtype, device, 1) if affine else None
            b = _randn(normalized, dtype, device, 2) if affine else None
            return (_randn(shape, dtype, device, 0), w, b)

        def manual(x, w, b):
            return F.layer_norm(x, normalized, w, b, 1e-5)

        def builtin(x, w, b):
            return TF.layer_norm(x, normalized, w, b, 1e-5)

        return manual, builtin, inputs

    cases = []
    for label, shape, normalized, affine in (
        ("last-dim", (6, 5), (5,), True),
        ("3-dims", (2, 3, 4, 5), (3, 4, 5), True),
        ("no-affine", (4, 6), (6,), False),
    ):
        manual, builtin, inputs = make(shape, normalized, affine)
        cases.append(
            OpCase(
                "layer_norm",
                label,
                manual,
                builtin,
                inputs,
                (0, 1, 2) if affine else (0,),
                double_backward=False,
                spatial=len(shape) == 4,
            )
        )
    return cases


def _dropout_cases() -> list[OpCase]:
    def fns(p):
        return (lambda x: F.dropout(x, p, True)), (lambda x: TF.dropout(x, p, True))

    cases = []
    for label, shape, p in (("p0.5", (8, 10), 0.5), ("p0.2-4d", (2, 3, 4, 5), 0.2)):
        manual, builtin = fns(p)
        cases.append(
            OpCase(
                "dropout",
                label,
                manual,
                builtin,
                lambda dt, dev, shape=shape: (_randn(shape, dt, dev, 0),),
                random=True,
                spatial=len(shape) == 4,
            )
        )
    return cases


def _conv_cases() -> list[OpCase]:
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
    cases = []
    for strategy in ("fast", "im2col"):
        for label, xs, ws, stride, padding, dilation, groups in grid:

            def manual(x, w, b, s=stride, p=padding, d=dilation, g=groups, st=strategy):
                return F.conv2d(x, w, b, s, p, d, g, strategy=st)

            def builtin(x, w, b, s=stride, p=padding, d=dilation, g=groups):
                return TF.conv2d(x, w, b, s, p, d, g)

            def inputs(dtype, device, xs=xs, ws=ws):
                return (
                    _randn(xs, dtype, device, 0),
                    _randn(ws, dtype, device, 1),
                    _randn(ws[:1], dtype, device, 2),
                )

            cases.append(
                OpCase("conv2d", f"{strategy}-{label}", manual, builtin, inputs, (0, 1, 2), spatial=True)
            )
    return cases


def _max_pool_cases() -> list[OpCase]:
    # (label, x shape, kernel, stride, padding, ceil_mode)
    grid = [
        ("2x2", (2, 3, 8, 8), 2, 2, 0, False),
        ("3x3-s2-p1-overlap", (2, 3, 9, 9), 3, 2, 1, False),
        ("odd-size", (1, 2, 7, 5), 2, 2, 0, False),
        ("ceil-mode", (1, 2, 7, 5), 2, 2, 0, True),
        ("nonsquare", (1, 2, 9, 8), (3, 2), (2, 1), (1, 0), False),
        ("stride1-overlap", (1, 2, 5, 5), 3, 1, 1, False),
    ]
    cases = []
    for label, xs, k, s, p, ceil in grid:

        def manual(x, k=k, s=s, p=p, ceil=ceil):
            return F.max_pool2d(x, k, s, p, ceil_mode=ceil)

        def builtin(x, k=k, s=s, p=p, ceil=ceil):
            return TF.max_pool2d(x, k, s, p, ceil_mode=ceil)

        cases.append(
            OpCase(
                "max_pool2d",
                label,
                manual,
                builtin,
                lambda dt, dev, xs=xs: (_distinct(xs, dt, dev, 0),),
                spatial=True,
            )
        )
    # dilation as torch's 5th positional parameter; return_indices: the output is the tensor the tests
    # differentiate (the indices against torch's: tests/test_ops_semantics.py)
    for label, manual, builtin in (
        ("dilation2-p1", lambda x: F.max_pool2d(x, 3, 2, 1, 2), lambda x: TF.max_pool2d(x, 3, 2, 1, 2)),
        (
            "return-indices-ceil",
            lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)[0],
            lambda x: TF.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)[0],
        ),
    ):
        cases.append(
            OpCase(
                "max_pool2d",
                label,
                manual,
                builtin,
                lambda dt, dev: (_distinct((2, 3, 10, 9), dt, dev, 0),),
                spatial=True,
            )
        )
    return cases


def _loss_cases() -> list[OpCase]:
    def inputs(n, c):
        return lambda dt, dev: (_randn((n, c), dt, dev, 0), _labels(n, c, dev, 1))

    return [
        OpCase("softmax_loss", "10-classes", F.softmax_loss, TF.cross_entropy, inputs(8, 10)),
        OpCase(
            "softmax_loss",
            "large-scores",
            F.softmax_loss,
            TF.cross_entropy,
            lambda dt, dev: (_randn((5, 4), dt, dev, 0) * 50, _labels(5, 4, dev, 1)),
        ),
        OpCase("svm_loss", "10-classes", F.svm_loss, builtin_svm_loss, inputs(8, 10)),
        OpCase("svm_loss", "3-classes", F.svm_loss, builtin_svm_loss, inputs(6, 3)),
    ]


def _activation_cases() -> list[OpCase]:
    def away_from_kinks(shape, kinks):
        """Normal values scaled by 4, pushed at least 0.1 away from every kink in ``kinks``."""

        def inputs(dtype, device):
            x = torch.randn(*shape, generator=_gen(0), dtype=torch.float64) * 4
            for k in kinks:
                near = (x - k).abs() < 0.1
                x = torch.where(near, k + 0.1 * torch.sign(x - k + 1e-12), x)
            return (x.to(device=device, dtype=dtype),)

        return inputs

    cases = []
    for op, manual, builtin, kinks in (
        ("relu6", F.relu6, TF.relu6, (0.0, 6.0)),
        ("hardsigmoid", F.hardsigmoid, TF.hardsigmoid, (-3.0, 3.0)),
        ("hardswish", F.hardswish, TF.hardswish, (-3.0, 3.0)),
        ("sigmoid", F.sigmoid, torch.sigmoid, ()),
        ("silu", F.silu, TF.silu, ()),
    ):
        cases.append(OpCase(op, "2d", manual, builtin, away_from_kinks((6, 7), kinks)))
        cases.append(OpCase(op, "4d", manual, builtin, away_from_kinks((2, 3, 4, 5), kinks), spatial=True))
    return cases


def _adaptive_pool_cases() -> list[OpCase]:
    def inputs(shape):
        return lambda dt, dev: (_randn(shape, dt, dev, 0),)

    return [
        OpCase(
            "adaptive_avg_pool2d",
            label,
            lambda x, size=size: F.adaptive_avg_pool2d(x, size),
            lambda x, size=size: TF.adaptive_avg_pool2d(x, size),
            inputs(shape),
            spatial=len(shape) == 4,
        )
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
    ]


def _adaptive_max_pool_cases() -> list[OpCase]:
    def fns(size, indices=False):
        if indices:  # the output (the tensor the tests differentiate); the indices: test_new_ops.py
            return (
                lambda x: F.adaptive_max_pool2d(x, size, return_indices=True)[0],
                lambda x: TF.adaptive_max_pool2d(x, size, return_indices=True)[0],
            )
        return (lambda x: F.adaptive_max_pool2d(x, size)), (lambda x: TF.adaptive_max_pool2d(x, size))

    cases = []
    for label, shape, size, indices in (
        ("overlapping-3x2-of-7x5", (2, 3, 7, 5), (3, 2), False),
        ("divides-4", (2, 3, 8, 8), 4, False),
        ("none-keeps-w", (2, 3, 5, 6), (4, None), False),
        ("global", (2, 3, 5, 4), 1, False),
        ("larger-than-input", (1, 2, 3, 4), (5, 6), False),
        ("return-indices", (2, 3, 7, 6), (3, 4), True),
        ("unbatched", (3, 6, 7), (2, 3), False),
    ):
        manual, builtin = fns(size, indices)
        cases.append(
            OpCase(
                "adaptive_max_pool2d",
                label,
                manual,
                builtin,
                lambda dt, dev, shape=shape: (_distinct(shape, dt, dev, 0),),
                spatial=len(shape) == 4,
            )
        )
    return cases


def _avg_pool_cases() -> list[OpCase]:
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
    cases = []
    for label, xs, k, s, p, ceil, include, divisor in grid:

        def manual(x, k=k, s=s, p=p, ceil=ceil, include=include, divisor=divisor):
            return F.avg_pool2d(x, k, s, p, ceil, include, divisor)

        def builtin(x, k=k, s=s, p=p, ceil=ceil, include=include, divisor=divisor):
            return TF.avg_pool2d(x, k, s, p, ceil, include, divisor)

        cases.append(
            OpCase(
                "avg_pool2d",
                label,
                manual,
                builtin,
                lambda dt, dev, xs=xs: (_randn(xs, dt, dev, 0),),
                spatial=len(xs) == 4,
            )
        )
    return cases


def _group_norm_cases() -> list[OpCase]:
    cases = []
    # (label, x shape, num_groups, weight, bias, eps)
    for label, shape, groups, weight, bias, eps in (
        ("spatial-groups2", (2, 6, 3, 4), 2, True, True, 1e-5),
        ("groups1-layer-norm", (2, 4, 3, 3), 1, True, True, 1e-5),
        ("groups=C-instance-norm", (2, 4, 3, 3), 4, True, True, 1e-5),
        ("no-affine", (3, 6, 5), 3, False, False, 1e-5),
        ("2d-input", (4, 6), 2, True, True, 1e-5),
        ("weight-only-eps0.1", (2, 4, 5), 2, True, False, 0.1),
        ("bias-only", (2, 4, 5), 2, False, True, 1e-5),
        ("5d", (2, 4, 2, 3, 2), 2, True, True, 1e-5),
    ):
        c = shape[1]

        def inputs(dtype, device, shape=shape, c=c, weight=weight, bias=bias):
            return (
                _randn(shape, dtype, device, 0),
                _randn((c,), dtype, device, 1) if weight else None,
                _randn((c,), dtype, device, 2) if bias else None,
            )

        def manual(x, w, b, groups=groups, eps=eps):
            return F.group_norm(x, groups, w, b, eps)

        def builtin(x, w, b, groups=groups, eps=eps):
            return TF.group_norm(x, groups, w, b, eps)

        grads = (0,) + ((1,) if weight else ()) + ((2,) if bias else ())
        cases.append(
            OpCase(
                "group_norm",
                label,
                manual,
                builtin,
                inputs,
                grads,
                double_backward=False,
                spatial=len(shape) == 4,
            )
        )
    return cases


def _gelu_tanh_cases() -> list[OpCase]:
    def inputs(shape):
        return lambda dt, dev: (_randn(shape, dt, dev, 0).mul(2),)

    cases = []
    for approximate in ("none", "tanh"):
        for label, shape in (("2d", (6, 7)), ("4d", (2, 3, 4, 5))):
            cases.append(
                OpCase(
                    "gelu",
                    f"{approximate}-{label}",
                    lambda x, a=approximate: F.gelu(x, approximate=a),
                    lambda x, a=approximate: TF.gelu(x, approximate=a),
                    inputs(shape),
                    spatial=len(shape) == 4,
                )
            )
    cases.append(OpCase("tanh", "2d", F.tanh, torch.tanh, inputs((6, 7))))
    cases.append(OpCase("tanh", "4d", F.tanh, torch.tanh, inputs((2, 3, 4, 5)), spatial=True))
    return cases


def _softmax_cases() -> list[OpCase]:
    def quiet(fn):
        """``fn`` with the implicit-dim deprecation warning silenced (it is the behaviour under test)."""

        def call(x):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return fn(x)

        return call

    cases = []
    for op, manual, builtin in (
        ("softmax", F.softmax, TF.softmax),
        ("log_softmax", F.log_softmax, TF.log_softmax),
    ):
        # (label, x shape, dim, dtype, scale)
        for label, shape, dim, dtype, scale in (
            ("dim1", (4, 7), 1, None, 1.0),
            ("dim0", (5, 3), 0, None, 1.0),
            ("dim-1-3d", (2, 3, 5), -1, None, 1.0),
            ("channels-4d", (2, 5, 3, 4), 1, None, 1.0),
            ("large-scores", (4, 6), 1, None, 50.0),
            ("dtype-float64", (3, 4), 1, torch.float64, 1.0),
            ("implicit-dim-3d", (3, 4, 5), None, None, 1.0),
            ("implicit-dim-4d", (2, 3, 2, 2), None, None, 1.0),
        ):
            wrap = quiet if dim is None else (lambda fn: fn)
            cases.append(
                OpCase(
                    op,
                    label,
                    wrap(lambda x, m=manual, d=dim, t=dtype: m(x, d, dtype=t)),
                    wrap(lambda x, b=builtin, d=dim, t=dtype: b(x, d, dtype=t)),
                    lambda dt, dev, shape=shape, scale=scale: (_randn(shape, dt, dev, 0).mul(scale),),
                    spatial=len(shape) == 4,
                )
            )
    return cases


OP_CASES: tuple[OpCase, ...] = (
    *_linear_cases(),
    *_relu_cases(),
    *_batch_norm_cases(),
    *_layer_norm_cases(),
    *_dropout_cases(),
    *_conv_cases(),
    *_max_pool_cases(),
    *_loss_cases(),
    *_activation_cases(),
    *_adaptive_pool_cases(),
    *_adaptive_max_pool_cases(),
    *_avg_pool_cases(),
    *_group_norm_cases(),
    *_gelu_tanh_cases(),
    *_softmax_cases(),
)
"""Every example of every manual operator, paired with its built-in twin."""

OPS: tuple[str, ...] = tuple(dict.fromkeys(case.op for case in OP_CASES))
"""Names of the registered operators, in registry order."""


def _bench_cases() -> list[OpCase]:
    """Benchmark shapes: CS231n-sized (tag ``"cs231n"``) and ResNet-18-sized at 224x224, batch 8
    (tag ``"resnet"``). Built-in twins as in the test cases; only forward/backward speed and memory
    are measured on these, so the inputs are plain normal samples."""

    def tensors(*shapes: Sequence[int]) -> InputFactory:
        return lambda dt, dev: tuple(_randn(s, dt, dev, i) for i, s in enumerate(shapes))

    def case(op, size, label, manual, builtin, make, grad=(0,), spatial=False, double=True, random=False):
        return OpCase(
            op,
            f"{size}-{label}",
            manual,
            builtin,
            make,
            grad,
            double_backward=double,
            random=random,
            spatial=spatial,
            tags=frozenset({"bench", size}),
        )

    def linear(size, n, d, o):
        return case(
            "linear", size, f"{n}x{d}-{o}", F.linear, TF.linear, tensors((n, d), (o, d), (o,)), (0, 1, 2)
        )

    def relu(size, shape):
        label = "x".join(map(str, shape))
        return case("relu", size, label, F.relu, TF.relu, tensors(shape), spatial=len(shape) == 4)

    def batch_norm(size, shape):
        c = shape[1]

        def make(dt, dev):
            return (
                _randn(shape, dt, dev, 0),
                torch.zeros(c, dtype=dt, device=dev),
                torch.ones(c, dtype=dt, device=dev),
                _randn((c,), dt, dev, 1),
                _randn((c,), dt, dev, 2),
            )

        return case(
            "batch_norm",
            size,
            "train-" + "x".join(map(str, shape)),
            lambda x, rm, rv, w, b: F.batch_norm(x, rm, rv, w, b, True),
            lambda x, rm, rv, w, b: TF.batch_norm(x, rm, rv, w, b, True),
            make,
            (0, 3, 4),
            spatial=len(shape) == 4,
            double=False,
        )

    def layer_norm(size, shape, normalized):
        return case(
            "layer_norm",
            size,
            "x".join(map(str, shape)) + "-over-" + "x".join(map(str, normalized)),
            lambda x, w, b: F.layer_norm(x, normalized, w, b),
            lambda x, w, b: TF.layer_norm(x, normalized, w, b),
            tensors(shape, normalized, normalized),
            (0, 1, 2),
            spatial=len(shape) == 4,
            double=False,
        )

    def dropout(size, shape):
        return case(
            "dropout",
            size,
            "p0.5-" + "x".join(map(str, shape)),
            lambda x: F.dropout(x, 0.5, True),
            lambda x: TF.dropout(x, 0.5, True),
            tensors(shape),
            spatial=len(shape) == 4,
            random=True,
        )

    def conv(size, n, c, hw, o, k, stride, padding):
        cases = []
        for strategy in ("fast", "im2col"):
            cases.append(
                case(
                    "conv2d",
                    size,
                    f"{strategy}-{c}to{o}-k{k}s{stride}-{n}x{hw}x{hw}",
                    lambda x, w, b, st=strategy: F.conv2d(x, w, b, stride, padding, strategy=st),
                    lambda x, w, b: TF.conv2d(x, w, b, stride, padding),
                    tensors((n, c, hw, hw), (o, c, k, k), (o,)),
                    (0, 1, 2),
                    spatial=True,
                )
            )
        return cases

    def max_pool(size, shape, k, stride, padding):
        return case(
            "max_pool2d",
            size,
            f"k{k}s{stride}-" + "x".join(map(str, shape)),
            lambda x: F.max_pool2d(x, k, stride, padding),
            lambda x: TF.max_pool2d(x, k, stride, padding),
            tensors(shape),
            spatial=True,
        )

    def group_norm(size, shape, groups):
        c = shape[1]
        return case(
            "group_norm",
            size,
            f"groups{groups}-" + "x".join(map(str, shape)),
            lambda x, w, b: F.group_norm(x, groups, w, b),
            lambda x, w, b: TF.group_norm(x, groups, w, b),
            tensors(shape, (c,), (c,)),
            (0, 1, 2),
            spatial=len(shape) == 4,
            double=False,
        )

    def losses(size, n, c):
        def make(dt, dev):
            return (_randn((n, c), dt, dev, 0), _labels(n, c, dev, 1))

        return [
            case("softmax_loss", size, f"{n}x{c}", F.softmax_loss, TF.cross_entropy, make),
            case(
                "svm_loss",
                size,
                f"{n}x{c}",
                F.svm_loss,
                builtin_svm_loss,
                make,
            ),
        ]

    def unary_spatial(size, example, shape):
        return case(
            example.op,
            size,
            f"{example.label}-" + "x".join(map(str, shape)),
            example.manual,
            example.builtin,
            tensors(shape),
            spatial=True,
            double=example.double_backward,
            random=example.random,
        )

    explicit = [
        linear("cs231n", 128, 3072, 100),
        relu("cs231n", (128, 3072)),
        relu("cs231n", (64, 32, 32, 32)),
        batch_norm("cs231n", (128, 100)),
        batch_norm("cs231n", (64, 32, 16, 16)),
        layer_norm("cs231n", (128, 100), (100,)),
        layer_norm("cs231n", (64, 32, 16, 16), (32, 16, 16)),
        dropout("cs231n", (128, 3072)),
        *conv("cs231n", 64, 3, 32, 32, 3, 1, 1),
        *conv("cs231n", 64, 32, 16, 64, 3, 1, 1),
        max_pool("cs231n", (64, 32, 32, 32), 2, 2, 0),
        group_norm("cs231n", (64, 32, 16, 16), 4),
        *losses("cs231n", 128, 10),
        linear("resnet", 8, 512, 1000),
        relu("resnet", (8, 64, 56, 56)),
        batch_norm("resnet", (8, 64, 56, 56)),
        layer_norm("resnet", (8, 3136, 64), (64,)),
        dropout("resnet", (8, 64, 56, 56)),
        *conv("resnet", 8, 3, 224, 64, 7, 2, 3),
        *conv("resnet", 8, 64, 56, 64, 3, 1, 1),
        *conv("resnet", 8, 256, 14, 256, 3, 1, 1),
        *conv("resnet", 8, 64, 56, 128, 1, 2, 0),
        max_pool("resnet", (8, 64, 112, 112), 3, 2, 1),
        group_norm("resnet", (8, 64, 56, 56), 32),
        *losses("resnet", 8, 1000),
    ]
    # Any other operator with a one-tensor spatial example (activations, pooling): its callables on
    # CS231n- and ResNet-sized feature maps.
    covered = {c.op for c in explicit}
    cpu = torch.device("cpu")
    for op in OPS:
        example = next(
            (c for c in OP_CASES if c.op == op and c.spatial and len(c.make_inputs(torch.float32, cpu)) == 1),
            None,
        )
        if op not in covered and example is not None:
            explicit.append(unary_spatial("cs231n", example, (64, 32, 16, 16)))
            explicit.append(unary_spatial("resnet", example, (8, 64, 56, 56)))
    return explicit


BENCH_CASES: tuple[OpCase, ...] = tuple(_bench_cases())
"""Benchmark-sized examples of every operator (tags ``"bench"`` and ``"cs231n"`` or ``"resnet"``).
Kept apart from :data:`OP_CASES`, whose small inputs the correctness tests iterate over."""

MODULE_CASES: tuple[ModuleCase, ...] = (
    ModuleCase(mnn.Linear, nn.Linear, (5, 3), (4, 5)),
    ModuleCase(mnn.Linear, nn.Linear, (5, 3), (4, 5), {"bias": False}),
    ModuleCase(mnn.ReLU, nn.ReLU, (), (4, 5)),
    ModuleCase(mnn.BatchNorm1d, nn.BatchNorm1d, (5,), (8, 5)),
    ModuleCase(mnn.BatchNorm1d, nn.BatchNorm1d, (5,), (8, 5), {"momentum": None}),
    ModuleCase(mnn.BatchNorm2d, nn.BatchNorm2d, (3,), (4, 3, 5, 5)),
    ModuleCase(mnn.BatchNorm2d, nn.BatchNorm2d, (3,), (4, 3, 5, 5), {"affine": False}),
    ModuleCase(mnn.BatchNorm2d, nn.BatchNorm2d, (3,), (4, 3, 5, 5), {"track_running_stats": False}),
    ModuleCase(mnn.LayerNorm, nn.LayerNorm, ((4, 5),), (3, 4, 5)),
    ModuleCase(mnn.LayerNorm, nn.LayerNorm, (5,), (3, 5), {"elementwise_affine": False}),
    ModuleCase(mnn.Dropout, nn.Dropout, (0.3,), (6, 7)),
    ModuleCase(mnn.Conv2d, nn.Conv2d, (3, 4, 3), (2, 3, 8, 8), {"stride": 2, "padding": 1}),
    ModuleCase(mnn.Conv2d, nn.Conv2d, (4, 4, 3), (2, 4, 6, 6), {"groups": 4, "bias": False}),
    ModuleCase(mnn.Conv2d, nn.Conv2d, (3, 4, 3), (2, 3, 6, 6), {"padding": "same"}),
    ModuleCase(mnn.Conv2d, nn.Conv2d, (3, 4, 3), (2, 3, 6, 6), {"padding": 1, "padding_mode": "reflect"}),
    ModuleCase(mnn.MaxPool2d, nn.MaxPool2d, (3, 2, 1), (2, 3, 9, 9)),
    ModuleCase(mnn.MaxPool2d, nn.MaxPool2d, (2,), (2, 3, 7, 7), {"ceil_mode": True}),
    ModuleCase(mnn.MaxPool2d, nn.MaxPool2d, (3, 2, 1), (2, 3, 10, 9), {"dilation": 2}),
    ModuleCase(mnn.ReLU6, nn.ReLU6, (), (4, 5)),
    ModuleCase(mnn.Hardsigmoid, nn.Hardsigmoid, (), (2, 3, 4, 4)),
    ModuleCase(mnn.Hardswish, nn.Hardswish, (), (2, 3, 4, 4)),
    ModuleCase(mnn.Sigmoid, nn.Sigmoid, (), (4, 5)),
    ModuleCase(mnn.SiLU, nn.SiLU, (), (2, 3, 4, 4)),
    ModuleCase(mnn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool2d, (1,), (2, 3, 5, 5)),
    ModuleCase(mnn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool2d, ((1, 1),), (2, 3, 4, 6)),
    ModuleCase(mnn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool2d, ((3, None),), (2, 3, 7, 5)),
    ModuleCase(mnn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool2d, (3,), (2, 3, 7, 8)),
    ModuleCase(mnn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool2d, ((None, 2),), (2, 3, 5, 5)),
    ModuleCase(mnn.AvgPool2d, nn.AvgPool2d, (3, 2, 1), (2, 3, 9, 9)),
    ModuleCase(
        mnn.AvgPool2d, nn.AvgPool2d, (2,), (2, 3, 7, 7), {"ceil_mode": True, "count_include_pad": False}
    ),
    ModuleCase(mnn.AvgPool2d, nn.AvgPool2d, (3,), (2, 3, 6, 6), {"stride": 1, "divisor_override": 4}),
    ModuleCase(mnn.GroupNorm, nn.GroupNorm, (2, 4), (2, 4, 3, 3)),
    ModuleCase(mnn.GroupNorm, nn.GroupNorm, (3, 6), (2, 6, 5), {"affine": False, "eps": 1e-3}),
    ModuleCase(mnn.GroupNorm, nn.GroupNorm, (1, 4), (3, 4)),
    ModuleCase(mnn.GELU, nn.GELU, (), (4, 5)),
    ModuleCase(mnn.GELU, nn.GELU, (), (2, 3, 4, 4), {"approximate": "tanh"}),
    ModuleCase(mnn.Tanh, nn.Tanh, (), (4, 5)),
    ModuleCase(mnn.Softmax, nn.Softmax, (1,), (4, 5)),
    ModuleCase(mnn.Softmax, nn.Softmax, (-1,), (2, 3, 4)),
    ModuleCase(mnn.LogSoftmax, nn.LogSoftmax, (1,), (4, 5)),
    ModuleCase(mnn.LogSoftmax, nn.LogSoftmax, (0,), (3, 4, 2)),
)
"""Every manual module with its built-in twin and example constructor arguments."""


def cases_for(op: str) -> list[OpCase]:
    """All registered cases of one operator."""
    found = [case for case in OP_CASES if case.op == op]
    if not found:
        raise KeyError(f"unknown op {op!r}; registered: {', '.join(OPS)}")
    return found


OPINFO_NAMES: dict[str, str] = {
    "linear": "nn.functional.linear",
    "relu": "nn.functional.relu",
    "batch_norm": "nn.functional.batch_norm",
    "layer_norm": "nn.functional.layer_norm",
    "dropout": "nn.functional.dropout",
    "conv2d": "nn.functional.conv2d",
    "max_pool2d": "nn.functional.max_pool2d",
    "relu6": "nn.functional.relu6",
    "hardsigmoid": "nn.functional.hardsigmoid",
    "hardswish": "nn.functional.hardswish",
    "sigmoid": "sigmoid",
    "silu": "nn.functional.silu",
    "adaptive_avg_pool2d": "nn.functional.adaptive_avg_pool2d",
    "adaptive_max_pool2d": "nn.functional.adaptive_max_pool2d",
    "avg_pool2d": "nn.functional.avg_pool2d",
    "group_norm": "nn.functional.group_norm",
    "gelu": "nn.functional.gelu",
    "tanh": "tanh",
    "softmax": "softmax",
    "log_softmax": "log_softmax",
}
"""Operator (a function of :mod:`custom_ops.functional`) -> the name of its built-in twin's ``OpInfo`` in
PyTorch's ``op_db`` (``torch.testing._internal.common_methods_invocations``): ``tests/test_conformance.py``
runs torch's own sample and error inputs through the manual op. The losses have no OpInfo of the same
signature. The module twins' built-in classes come from :data:`MODULE_CASES`."""
