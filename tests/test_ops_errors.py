"""Bad input gets a clear error that names the argument and what was expected — never a wrong result."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import custom_ops.functional as F


def t(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape).to(dtype)


BAD_INPUTS: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    # linear
    (
        "linear in_features",
        lambda: F.linear(t(4, 5), t(3, 6)),
        ValueError,
        r"input must have shape \(\*, in_features=6\)",
    ),
    (
        "linear weight dims",
        lambda: F.linear(t(4, 5), t(3, 5, 1)),
        RuntimeError,
        r"weight must have shape \(out_features, in_features\) or \(in_features,\), got \(3, 5, 1\)",
    ),
    (
        "linear 1-D weight with a vector bias",
        lambda: F.linear(t(4, 5), t(5), t(3)),
        RuntimeError,
        r"with a 1-D weight, bias must be None or a 0-d tensor, got shape \(3,\)",
    ),
    (
        "linear bias shape",
        lambda: F.linear(t(4, 5), t(3, 5), t(4)),
        ValueError,
        r"bias must have shape \(3,\)",
    ),
    (
        "linear integer input",
        lambda: F.linear(torch.ones(4, 5, dtype=torch.long), t(3, 5)),
        TypeError,
        r"input must be a floating-point tensor, got dtype torch.int64",
    ),
    (
        "linear mixed dtypes",
        lambda: F.linear(t(4, 5), t(3, 5, dtype=torch.float64)),
        TypeError,
        r"weight has dtype torch.float64 but input has dtype torch.float32",
    ),
    ("linear not a tensor", lambda: F.linear([[1.0]], t(1, 1)), TypeError, r"input must be a torch.Tensor"),
    # relu
    ("relu integer input", lambda: F.relu(torch.arange(4)), TypeError, r"input must be a floating-point"),
    # batch_norm
    (
        "batch_norm channels",
        lambda: F.batch_norm(t(4, 3), t(5), t(5).abs()),
        ValueError,
        r"running_mean must have shape \(3,\).*C=3",
    ),
    (
        "batch_norm weight channels",
        lambda: F.batch_norm(t(4, 3, 2, 2), None, None, t(2), None, True),
        ValueError,
        r"weight must have shape \(3,\)",
    ),
    (
        "batch_norm dims",
        lambda: F.batch_norm(t(4), None, None, training=True),
        ValueError,
        r"input must have shape \(N, C, \*\) \(at least 2-D\), got 1-D",
    ),
    (
        "batch_norm one value per channel",
        lambda: F.batch_norm(t(1, 3), None, None, training=True),
        ValueError,
        r"more than 1 value per channel",
    ),
    (
        "batch_norm eps 0 in training",
        lambda: F.batch_norm(t(4, 3), None, None, training=True, eps=0.0),
        ValueError,
        r"eps must be positive in training \(it is added to the variance\), got 0.0",
    ),
    (
        "batch_norm negative eps",
        lambda: F.batch_norm(t(4, 3), t(3), t(3).abs(), eps=-1e-5),
        ValueError,
        r"eps must be non-negative, got -1e-05",
    ),
    (
        "batch_norm eval without stats",
        lambda: F.batch_norm(t(4, 3), None, None),
        RuntimeError,
        r"running_mean and running_var are required when training=False",
    ),
    (
        "batch_norm convention",
        lambda: F.batch_norm(t(4, 3), None, None, training=True, convention="keras"),
        ValueError,
        r"convention must be 'torch' or 'cs231n'",
    ),
    (
        "batch_norm mixed dtypes",
        lambda: F.batch_norm(t(4, 3), None, None, t(3, dtype=torch.float64), None, True),
        TypeError,
        r"weight has dtype torch.float64",
    ),
    # layer_norm
    (
        "layer_norm shape",
        lambda: F.layer_norm(t(4, 5), (4,)),
        ValueError,
        r"input must have shape \(\*, 4\) to match normalized_shape=\(4,\), got \(4, 5\)",
    ),
    (
        "layer_norm weight shape",
        lambda: F.layer_norm(t(4, 5), 5, t(4)),
        ValueError,
        r"weight must have shape \(5,\)",
    ),
    (
        "layer_norm integer input",
        lambda: F.layer_norm(torch.ones(2, 5, dtype=torch.int32), 5),
        TypeError,
        r"input must be a floating-point",
    ),
    # dropout
    (
        "dropout p>1",
        lambda: F.dropout(t(4, 5), 1.5),
        ValueError,
        r"p \(the drop probability\) must be in \[0, 1\], got 1.5",
    ),
    ("dropout p<0", lambda: F.dropout(t(4, 5), -0.1), ValueError, r"must be in \[0, 1\], got -0.1"),
    (
        "dropout integer input",
        lambda: F.dropout(torch.ones(4, dtype=torch.long)),
        TypeError,
        r"floating-point",
    ),
    # conv2d
    (
        "conv2d channels",
        lambda: F.conv2d(t(2, 3, 8, 8), t(4, 2, 3, 3)),
        ValueError,
        r"input has 3 channels but weight \(4, 2, 3, 3\) with groups=1 expects C_in = 2 \* 1 = 2",
    ),
    (
        "conv2d groups divide C_out",
        lambda: F.conv2d(t(2, 4, 8, 8), t(3, 2, 3, 3), groups=2),
        RuntimeError,
        r"groups=2 must divide the weight's C_out=3",
    ),
    (
        "conv2d groups larger than C_out",  # torch's error input: the groups are at fault, not the channels
        lambda: F.conv2d(t(2, 2, 4, 3), t(2, 2, 1, 3), groups=3),
        RuntimeError,
        r"groups=3 must divide the weight's C_out=2",
    ),
    (
        "conv2d groups 0",
        lambda: F.conv2d(t(2, 2, 4, 3), t(2, 2, 1, 3), groups=0),
        RuntimeError,
        r"groups must be a positive int, got 0",
    ),
    (
        "conv2d negative padding",
        lambda: F.conv2d(t(1, 1, 4, 4), t(1, 1, 2, 2), padding=(-1,)),
        RuntimeError,
        r"padding must be non-negative, got \(-1,\)",
    ),
    (
        "conv2d input dims",
        lambda: F.conv2d(t(3, 8), t(4, 3, 3, 3)),
        ValueError,
        r"input must have shape \(N, C_in, H, W\) or \(C_in, H, W\)",
    ),
    (
        "conv2d weight dims",
        lambda: F.conv2d(t(2, 3, 8, 8), t(4, 3, 3)),
        ValueError,
        r"weight must have shape \(C_out, C_in / groups, kh, kw\)",
    ),
    (
        "conv2d kernel too large",
        lambda: F.conv2d(t(1, 1, 4, 4), t(1, 1, 7, 7), padding=1),
        ValueError,
        r"kernel extent 7 along H .* larger than the padded input \(4 \+ 2\*1 = 6\)",
    ),
    (
        "conv2d dilated kernel too large",
        lambda: F.conv2d(t(1, 1, 6, 6), t(1, 1, 3, 3), dilation=3),
        ValueError,
        r"kernel extent 7 along H \(kernel 3, dilation 3\)",
    ),
    (
        "conv2d bias",
        lambda: F.conv2d(t(1, 3, 8, 8), t(4, 3, 3, 3), t(3)),
        ValueError,
        r"bias must have shape \(4,\)",
    ),
    (
        "conv2d stride 0",
        lambda: F.conv2d(t(1, 3, 8, 8), t(4, 3, 3, 3), stride=0),
        RuntimeError,
        r"stride must be positive, got 0",
    ),
    (
        "conv2d dilation -1",
        lambda: F.conv2d(t(1, 3, 8, 8), t(4, 3, 3, 3), dilation=(-1,)),
        RuntimeError,
        r"dilation must be positive, got \(-1,\)",
    ),
    (
        "conv2d padding string",
        lambda: F.conv2d(t(1, 3, 8, 8), t(4, 3, 3, 3), padding="full"),
        ValueError,
        r"padding must be an int, a pair, 'valid' or 'same'",
    ),
    (
        "conv2d same with stride",
        lambda: F.conv2d(t(1, 3, 8, 8), t(4, 3, 3, 3), stride=2, padding="same"),
        ValueError,
        r"padding='same' needs stride=1",
    ),
    (
        "conv2d strategy",
        lambda: F.conv2d(t(1, 3, 8, 8), t(4, 3, 3, 3), strategy="winograd"),
        ValueError,
        r"strategy must be one of \['fast', 'im2col'\]",
    ),
    (
        "conv2d integer input",
        lambda: F.conv2d(torch.ones(1, 3, 8, 8, dtype=torch.uint8), t(4, 3, 3, 3)),
        TypeError,
        r"input must be a floating-point tensor, got dtype torch.uint8",
    ),
    (
        "conv2d mixed dtypes",
        lambda: F.conv2d(t(1, 3, 8, 8, dtype=torch.float16), t(4, 3, 3, 3)),
        RuntimeError,
        r"weight has dtype torch.float32 but input has dtype torch.float16",
    ),
    # max_pool2d
    (
        "max_pool2d kernel too large",
        lambda: F.max_pool2d(t(1, 1, 3, 3), 5, padding=0),
        RuntimeError,
        r"kernel_size 5 along H is larger than the padded input \(3 \+ 2\*0 = 3\)",
    ),
    (
        "max_pool2d dilated kernel too large",
        lambda: F.max_pool2d(t(1, 1, 4, 4), 2, 1, 0, 4),
        RuntimeError,
        r"kernel_size 2 with dilation 4 \(extent 5\) along H is larger than the padded input",
    ),
    (
        "max_pool2d padding",
        lambda: F.max_pool2d(t(1, 1, 8, 8), 2, padding=2),
        RuntimeError,
        r"padding must be between 0 and half the kernel size",
    ),
    (
        "max_pool2d dilation 0",
        lambda: F.max_pool2d(t(1, 1, 8, 8), 2, dilation=0),
        RuntimeError,
        r"dilation must be positive, got 0",
    ),
    (
        "max_pool2d empty plane",
        lambda: F.max_pool2d(t(2, 1, 10, 0), 1),
        RuntimeError,
        r"input must have shape .* with non-zero C, H and W \(only N may be 0\), got \(2, 1, 10, 0\)",
    ),
    (
        "max_pool2d dims",
        lambda: F.max_pool2d(t(8, 8), 2),
        ValueError,
        r"input must have shape \(N, C, H, W\)",
    ),
    (
        "max_pool2d kernel pair",
        lambda: F.max_pool2d(t(1, 1, 8, 8), (2, 2, 2)),
        ValueError,
        r"kernel_size must be an int or a pair of ints",
    ),
    (
        "max_pool2d integer input",
        lambda: F.max_pool2d(torch.ones(1, 1, 4, 4, dtype=torch.long), 2),
        TypeError,
        r"input must be a floating-point",
    ),
    # activations and global average pooling
    *[
        (
            f"{name} integer input",
            lambda name=name: getattr(F, name)(torch.arange(4)),
            TypeError,
            r"input must be a floating-point tensor, got dtype torch.int64",
        )
        for name in ("relu6", "hardsigmoid", "hardswish", "sigmoid", "silu")
    ],
    (
        "adaptive_avg_pool2d output_size",
        lambda: F.adaptive_avg_pool2d(t(1, 2, 4, 4), -1),
        RuntimeError,
        r"adaptive_avg_pool2d: output_size must be >= 0, got -1",
    ),
    (
        "adaptive_avg_pool2d dims",
        lambda: F.adaptive_avg_pool2d(t(4, 4), 1),
        ValueError,
        r"input must have shape \(N, C, H, W\) or \(C, H, W\)",
    ),
    # group_norm, gelu, tanh, softmax, log_softmax, avg_pool2d, adaptive_max_pool2d (issue 13): shape and
    # value errors are RuntimeErrors (as torch's) and ValueErrors, dtype errors NotImplementedErrors (as
    # torch's) and TypeErrors, a dim out of range an IndexError
    (
        "group_norm groups divide C",
        lambda: F.group_norm(t(2, 6, 4), 4),
        RuntimeError,
        r"num_groups must be a positive divisor of the number of channels C=6 .* got num_groups=4",
    ),
    (
        "group_norm weight shape",
        lambda: F.group_norm(t(2, 6, 4), 3, t(3)),
        ValueError,
        r"weight must have shape \(6,\) \(one value per channel of input\), got \(3,\)",
    ),
    (
        "group_norm dims",
        lambda: F.group_norm(t(6), 3),
        RuntimeError,
        r"input must have shape \(N, C, \*\) \(at least 2-D\), got 1-D",
    ),
    (
        "group_norm integer input",
        lambda: F.group_norm(torch.ones(2, 4, dtype=torch.long), 2),
        NotImplementedError,
        r"input must be a floating-point tensor, got dtype torch.int64",
    ),
    (
        "gelu approximate",
        lambda: F.gelu(t(3), approximate="erf"),
        RuntimeError,
        r"approximate must be 'none' or 'tanh', got 'erf'",
    ),
    ("gelu integer input", lambda: F.gelu(torch.arange(4)), TypeError, r"input must be a floating-point"),
    ("tanh complex input", lambda: F.tanh(torch.ones(2, dtype=torch.cfloat)), TypeError, r"must be a real"),
    ("softmax dim", lambda: F.softmax(t(2, 3), 2), IndexError, r"dim out of range: .*\[-2, 1\].* got 2"),
    (
        "softmax integer input",
        lambda: F.softmax(torch.arange(4), 0),
        NotImplementedError,
        r"input must be a floating-point tensor, got dtype torch.int64",
    ),
    (
        "log_softmax dtype",
        lambda: F.log_softmax(t(2, 3), 1, dtype=torch.long),
        TypeError,
        r"dtype must be a floating-point torch.dtype, got torch.int64",
    ),
    ("log_softmax dim", lambda: F.log_softmax(t(4), -2), IndexError, r"dim out of range"),
    (
        "avg_pool2d padding",
        lambda: F.avg_pool2d(t(1, 1, 8, 8), 2, padding=2),
        RuntimeError,
        r"padding must be between 0 and half the kernel size \(2, 2\), got 2",
    ),
    (
        "avg_pool2d kernel too large",
        lambda: F.avg_pool2d(t(1, 1, 3, 3), 5, stride=1),
        ValueError,
        r"kernel_size \(5, 5\) is larger than the padded input \(3, 3\) \+ 2\*\(0, 0\)",
    ),
    (
        "avg_pool2d divisor_override",
        lambda: F.avg_pool2d(t(1, 1, 4, 4), 2, divisor_override=0),
        RuntimeError,
        r"divisor_override must not be zero",
    ),
    (
        "avg_pool2d kernel triple",
        lambda: F.avg_pool2d(t(1, 1, 4, 4), (2, 2, 2)),
        RuntimeError,
        r"kernel_size must be an int or a pair of ints",
    ),
    (
        "avg_pool2d dims",
        lambda: F.avg_pool2d(t(4, 4), 2),
        RuntimeError,
        r"input must have shape \(N, C, H, W\) or \(C, H, W\)",
    ),
    (
        "avg_pool2d bool input",
        lambda: F.avg_pool2d(torch.ones(1, 1, 4, 4, dtype=torch.bool), 2),
        NotImplementedError,
        r"input must be a floating-point \(or int64\) tensor, got dtype torch.bool",
    ),
    (
        "adaptive_max_pool2d output_size",
        lambda: F.adaptive_max_pool2d(t(1, 2, 4, 4), (1, 2, 3)),
        RuntimeError,
        r"adaptive_max_pool2d: output_size must be an int or a pair",
    ),
    (
        "adaptive_max_pool2d empty plane",
        lambda: F.adaptive_max_pool2d(t(1, 2, 0, 4), 2),
        RuntimeError,
        r"input must have non-zero H and W, got shape \(1, 2, 0, 4\)",
    ),
    (
        "adaptive_max_pool2d integer input",
        lambda: F.adaptive_max_pool2d(torch.ones(1, 1, 4, 4, dtype=torch.long), 2),
        NotImplementedError,
        r"input must be a floating-point",
    ),
    # losses
    (
        "softmax_loss float labels",
        lambda: F.softmax_loss(t(4, 3), t(4)),
        TypeError,
        r"y must be an integer tensor of class indices, got torch.float32",
    ),
    (
        "softmax_loss label count",
        lambda: F.softmax_loss(t(4, 3), torch.zeros(5, dtype=torch.long)),
        ValueError,
        r"y must have shape \(N,\) = \(4,\) to match scores, got \(5,\)",
    ),
    (
        "softmax_loss label range",
        lambda: F.softmax_loss(t(4, 3), torch.tensor([0, 1, 2, 3])),
        ValueError,
        r"y must hold class indices in \[0, C=3\), got values in \[0, 3\]",
    ),
    (
        "softmax_loss scores dims",
        lambda: F.softmax_loss(t(4), torch.zeros(4, dtype=torch.long)),
        ValueError,
        r"scores must have shape \(N, C\)",
    ),
    (
        "svm_loss negative label",
        lambda: F.svm_loss(t(2, 3), torch.tensor([0, -1])),
        ValueError,
        r"class indices in \[0, C=3\)",
    ),
    (
        "svm_loss integer scores",
        lambda: F.svm_loss(torch.ones(2, 3, dtype=torch.long), torch.tensor([0, 1])),
        TypeError,
        r"scores must be a floating-point",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "message"), [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS]
)
def test_bad_input_is_rejected_with_a_clear_message(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("call", [case[1] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_errors_are_also_the_exception_types_torch_raises(call: Callable[[], object]) -> None:
    """Code written for the built-ins catches the manual ops' errors: a bad value or shape (``ValueError``)
    is also a ``RuntimeError``, as torch raises; a bad dtype (``TypeError``) also a ``NotImplementedError``
    (a ``RuntimeError``), as torch raises; only a non-tensor argument is a plain ``TypeError``, as torch's."""
    with pytest.raises(Exception) as info:
        call()
    err = info.value
    if isinstance(err, ValueError):
        assert isinstance(err, RuntimeError), f"{type(err).__name__} is not a RuntimeError: {err}"
    if isinstance(err, TypeError) and "must be a torch.Tensor" not in str(err):
        assert isinstance(err, NotImplementedError), f"{type(err).__name__} is not torch's type: {err}"


def test_every_functional_op_has_a_bad_input_case() -> None:
    covered = {name.split()[0] for name, *_ in BAD_INPUTS}
    missing = set(F.__all__) - covered
    assert not missing, f"no bad-input test for {sorted(missing)}"
