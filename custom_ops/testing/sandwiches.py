"""The test data of the sandwich layers of :mod:`custom_ops.layer_utils` (:data:`SANDWICHES`): each one's
samples, its samples on the ReLU's kink (and on pooling ties) where no norm comes before the ReLU, and its
bad inputs; its twin is the chain of built-ins it fuses."""

from __future__ import annotations

from typing import Any

import torch

from custom_ops.registry import SANDWICH_OPS

from .spec import ErrorInput, InputFactory, OpSpec, Sample, arbitrary, positive, randn


def _tensors(*shapes: tuple[int, ...] | None, positive_at: tuple[int, ...] = ()) -> InputFactory:
    """Inputs of these shapes (None: a None argument), the i-th standard normal drawn with seed i, or
    uniform in ``[0.5, 1.5)`` at the ``positive_at`` positions (running variances)."""

    def inputs(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor | None, ...]:
        return tuple(
            None if shape is None else (positive if i in positive_at else randn)(shape, dtype, device, i)
            for i, shape in enumerate(shapes)
        )

    return inputs


def _bn_sandwich_samples(
    x: tuple[int, ...], weight: tuple[int, ...], conv: dict[str, Any] | None = None
) -> tuple[Sample, ...]:
    """Train and eval samples of a batch-norm sandwich: x, weight, bias, running mean and var, gamma, beta
    (``conv``: the convolution's hyper-parameters, and a sample with no bias and no affine)."""
    c = (weight[0],)
    samples = []
    for training in (True, False):
        mode = "train" if training else "eval"
        kwargs = {"training": training, "momentum": 0.1, "eps": 1e-5, **(conv or {})}
        affine = _tensors(x, weight, c, c, c, c, c, positive_at=(4,))
        samples.append(Sample(f"{mode}", affine, (0, 1, 2, 5, 6), kwargs))
        plain = _tensors(x, weight, None, c, c, None, None, positive_at=(4,))
        samples.append(Sample(f"{mode}-no-bias-no-affine", plain, (0, 1), kwargs))
    return tuple(samples)


def _zero_pre_activations(x: tuple[int, ...], weight: tuple[int, ...]) -> InputFactory:
    """x, weight and bias where the first sample of x is zero and every other bias is zero: those
    pre-activations are exactly 0 (the ReLU's kink), and a pooling window over them holds ties."""

    def inputs(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
        x_values = randn(x, dtype, device, 0)
        x_values[0] = 0
        bias = randn(weight[:1], dtype, device, 2)
        bias[::2] = 0
        return x_values, randn(weight, dtype, device, 1), bias

    return inputs


_CONV_BN_HYPER = {"stride": 1, "padding": 1}

AFFINE_RELU = OpSpec(
    SANDWICH_OPS["affine_relu"],
    samples=(
        Sample("2d", _tensors((6, 5), (4, 5), (4,)), (0, 1, 2)),
        Sample("3d-leading", _tensors((2, 3, 5), (4, 5), (4,)), (0, 1, 2)),
        Sample("no-bias", _tensors((6, 5), (4, 5), None), (0, 1)),
    ),
    kinks=(Sample("pre-activation-0", _zero_pre_activations((6, 5), (4, 5)), (0, 1, 2)),),
    errors=(
        ErrorInput(
            "in_features",
            lambda f: f(arbitrary(4, 5), arbitrary(3, 6)),
            ValueError,
            r"input must have shape \(\*, in_features=6\)",
        ),
        ErrorInput(
            "1-D weight",
            lambda f: f(arbitrary(4, 5), arbitrary(5)),
            ValueError,
            r"weight must have shape \(out_features, in_features\) \(a sandwich layer takes no 1-D weight\)",
        ),
    ),
)

AFFINE_BN_RELU = OpSpec(
    SANDWICH_OPS["affine_bn_relu"],
    samples=_bn_sandwich_samples((6, 5), (4, 5)),
    errors=(
        ErrorInput(
            "3-D input",
            lambda f: f(arbitrary(2, 3, 5), arbitrary(4, 5), None, None, None, training=True),
            ValueError,
            r"input must have shape \(N, in_features\) \(2-D\), got 3-D",
        ),
        ErrorInput(
            "running_mean channels",
            lambda f: f(arbitrary(6, 5), arbitrary(4, 5), None, arbitrary(3), arbitrary(3).abs()),
            ValueError,
            r"running_mean must have shape \(4,\) \(one value per channel, input has C=4\)",
        ),
        ErrorInput(
            "one value per channel",
            lambda f: f(arbitrary(1, 5), arbitrary(4, 5), None, None, None, training=True),
            ValueError,
            r"more than 1 value per channel",
        ),
    ),
)

AFFINE_LN_RELU = OpSpec(
    SANDWICH_OPS["affine_ln_relu"],
    samples=(
        Sample("2d", _tensors((6, 5), (4, 5), (4,), (4,), (4,)), (0, 1, 2, 3, 4), {"eps": 1e-5}),
        Sample("3d-leading", _tensors((2, 3, 5), (4, 5), (4,), (4,), (4,)), (0, 1, 2, 3, 4), {"eps": 1e-5}),
        Sample("no-affine", _tensors((6, 5), (4, 5), (4,), None, None), (0, 1, 2), {"eps": 1e-5}),
    ),
    errors=(
        ErrorInput(
            "ln_weight shape",
            lambda f: f(arbitrary(6, 5), arbitrary(4, 5), None, arbitrary(5)),
            ValueError,
            r"weight must have shape \(4,\) \(normalized_shape\), got \(5,\)",
        ),
        ErrorInput(
            "integer input",
            lambda f: f(torch.ones(6, 5, dtype=torch.long), arbitrary(4, 5), None),
            TypeError,
            r"input must be a floating-point tensor, got dtype torch.int64",
        ),
    ),
)

CONV_RELU = OpSpec(
    SANDWICH_OPS["conv_relu"],
    samples=(
        Sample(
            "3x3-pad1", _tensors((2, 3, 7, 7), (4, 3, 3, 3), (4,)), (0, 1, 2), {"stride": 1, "padding": 1}
        ),
        Sample(
            "stride2-no-bias", _tensors((2, 3, 8, 8), (4, 3, 3, 3), None), (0, 1), {"stride": 2, "padding": 1}
        ),
        Sample(
            "same-even-kernel",
            _tensors((2, 3, 7, 6), (4, 3, 2, 4), (4,)),
            (0, 1, 2),
            {"padding": "same"},
        ),
        Sample(
            "groups2-dilation2",
            _tensors((2, 4, 9, 8), (6, 2, 3, 3), (6,)),
            (0, 1, 2),
            {"padding": 2, "dilation": 2, "groups": 2},
        ),
        Sample("unbatched", _tensors((3, 6, 6), (4, 3, 3, 3), (4,)), (0, 1, 2), {"padding": 1}),
    ),
    kinks=(
        Sample(
            "pre-activation-0", _zero_pre_activations((2, 3, 7, 7), (4, 3, 3, 3)), (0, 1, 2), {"padding": 1}
        ),
    ),
    errors=(
        ErrorInput(
            "channels",
            lambda f: f(arbitrary(2, 3, 8, 8), arbitrary(4, 2, 3, 3)),
            ValueError,
            r"input has 3 channels but weight \(4, 2, 3, 3\) with groups=1 expects C_in = 2 \* 1 = 2",
        ),
        ErrorInput(
            "kernel too large",
            lambda f: f(arbitrary(1, 1, 4, 4), arbitrary(1, 1, 7, 7), None, 1, 1),
            ValueError,
            r"kernel extent 7 along H .* larger than the padded input \(4 \+ 2\*1 = 6\)",
        ),
    ),
)

CONV_BN_RELU = OpSpec(
    SANDWICH_OPS["conv_bn_relu"],
    samples=(
        *_bn_sandwich_samples((2, 3, 6, 5), (4, 3, 3, 3), _CONV_BN_HYPER),
        Sample(
            "train-stride2-groups",
            _tensors((3, 4, 7, 7), (6, 2, 3, 3), None, (6,), (6,), (6,), (6,), positive_at=(4,)),
            (0, 1, 5, 6),
            {"training": True, "momentum": 0.1, "eps": 1e-5, "stride": 2, "padding": 1, "groups": 2},
        ),
    ),
    errors=(
        ErrorInput(
            "unbatched input",
            lambda f: f(arbitrary(3, 8, 8), arbitrary(4, 3, 3, 3), None, None, None, training=True),
            ValueError,
            r"input must have shape \(N, C_in, H, W\) \(4-D\), got 3-D",
        ),
        ErrorInput(
            "bn_weight channels",
            lambda f: f(
                arbitrary(2, 3, 8, 8), arbitrary(4, 3, 3, 3), None, None, None, arbitrary(3), training=True
            ),
            ValueError,
            r"weight must have shape \(4,\) \(one value per channel, input has C=4\)",
        ),
        ErrorInput(
            "eval without stats",
            lambda f: f(arbitrary(2, 3, 8, 8), arbitrary(4, 3, 3, 3), None, None, None),
            RuntimeError,
            r"running_mean and running_var are required when training=False",
        ),
    ),
)

CONV_RELU_POOL = OpSpec(
    SANDWICH_OPS["conv_relu_pool"],
    samples=(
        Sample(
            "3x3-pad1-pool2",
            _tensors((2, 3, 8, 8), (4, 3, 3, 3), (4,)),
            (0, 1, 2),
            {"stride": 1, "padding": 1, "pool_kernel": 2},
        ),
        Sample(
            "pool3-stride2-leftover",
            _tensors((2, 3, 9, 8), (4, 3, 3, 3), None),
            (0, 1),
            {"padding": 1, "pool_kernel": 3, "pool_stride": 2},
        ),
        Sample(
            "nonsquare-unbatched",
            _tensors((2, 7, 9), (3, 2, 2, 3), (3,)),
            (0, 1, 2),
            {"stride": (1, 2), "pool_kernel": (2, 1), "pool_stride": (2, 1)},
        ),
    ),
    kinks=(
        Sample(
            "pre-activation-0-pool-ties",
            _zero_pre_activations((2, 3, 8, 8), (4, 3, 3, 3)),
            (0, 1, 2),
            {"padding": 1, "pool_kernel": 2},
        ),
    ),
    errors=(
        ErrorInput(
            "pool kernel too large",
            lambda f: f(arbitrary(1, 2, 4, 4), arbitrary(3, 2, 3, 3), None, 1, 0, 3),
            ValueError,
            r"kernel_size 3 along H is larger than the padded input \(2 \+ 2\*0 = 2\)",
        ),
        ErrorInput(
            "pool_kernel 0",
            lambda f: f(arbitrary(1, 2, 4, 4), arbitrary(3, 2, 3, 3), None, 1, 1, 0),
            ValueError,
            r"kernel_size must be positive, got 0",
        ),
    ),
)


SANDWICHES: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (AFFINE_RELU, AFFINE_BN_RELU, AFFINE_LN_RELU, CONV_RELU, CONV_BN_RELU, CONV_RELU_POOL)
}
"""The sandwich layers' specs by name, in the order of :data:`custom_ops.registry.SANDWICH_OPS` (their
twins are chains: :data:`custom_ops.registry.SANDWICH_BUILTIN_CHAINS`). Kept out of
:data:`custom_ops.testing.SPECS`: they are not twins of one torch function."""
