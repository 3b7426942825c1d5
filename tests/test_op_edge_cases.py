"""group_norm, gelu, tanh, softmax/log_softmax, avg_pool2d and the adaptive pools: what the
registry-driven tests (gradcheck, parity, layouts, compile, autocast, bad inputs) cannot express —
indices, implicit dims and their warning, dtype arguments, empty and integer inputs, the exception classes,
module twins and swapping, and the docstring examples."""

from __future__ import annotations

import doctest
import importlib
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import custom_ops.functional as MF
from custom_ops import nn as mnn
from custom_ops.errors import OpArgumentError, OpDtypeError
from torch_cs231n.interop.swap import to_builtin, to_manual

# ----------------------------------------------------------------------------------- adaptive max pool
SIZES = [1, 2, (3, 2), (None, 4), (4, None), (5, 9), (7, 5)]


@pytest.mark.parametrize("size", SIZES, ids=str)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "unbatched"])
def test_adaptive_max_pool_indices_match_builtin(size, layout: str) -> None:
    x = torch.randn(2, 3, 7, 5, dtype=torch.float64)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "unbatched":
        x = x[0]
    out, index = MF.adaptive_max_pool2d(x, size, return_indices=True)
    ref, ref_index = F.adaptive_max_pool2d(x, size, return_indices=True)
    torch.testing.assert_close(out, ref)
    assert index.dtype == torch.int64 and torch.equal(index, ref_index), "indices differ from torch's"
    if layout == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)
        assert index.is_contiguous(memory_format=torch.channels_last)


def test_adaptive_max_pool_ties_pick_the_first_maximum_like_torch() -> None:
    x = torch.randint(0, 3, (2, 3, 7, 6)).double()  # many ties
    out, index = MF.adaptive_max_pool2d(x, (3, 4), return_indices=True)
    ref, ref_index = F.adaptive_max_pool2d(x, (3, 4), return_indices=True)
    torch.testing.assert_close(out, ref)
    assert torch.equal(index, ref_index)


def test_adaptive_max_pool_indices_feed_max_unpool() -> None:
    x = torch.randn(1, 2, 6, 6)
    out, index = MF.adaptive_max_pool2d(x, 3, return_indices=True)
    restored = F.max_unpool2d(out, index, 2, output_size=x.shape[-2:])
    torch.testing.assert_close(
        restored, F.max_unpool2d(*F.adaptive_max_pool2d(x, 3, True), 2, output_size=(6, 6))
    )


def test_adaptive_max_pool_indices_are_not_differentiable() -> None:
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    out, index = MF.adaptive_max_pool2d(x, 2, return_indices=True)
    assert out.requires_grad and not index.requires_grad


@pytest.mark.parametrize("op", ["adaptive_avg_pool2d", "adaptive_max_pool2d"])
@pytest.mark.parametrize("size", [0, (0, 3), (2, 0)], ids=str)
def test_adaptive_pools_to_an_empty_output(op: str, size) -> None:
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    out = getattr(MF, op)(x, size)
    assert out.shape == getattr(F, op)(x, size).shape
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(grad, torch.zeros_like(x))


def test_adaptive_avg_pool_global_fast_path_is_kept() -> None:
    from custom_ops.adaptive_pool import GlobalAvgPool2dFunction
    from custom_ops.avg_pool import AvgPool2dFunction

    out = MF.adaptive_avg_pool2d(torch.randn(2, 3, 5, 5, requires_grad=True), (1, 1))
    assert out.grad_fn._forward_cls is GlobalAvgPool2dFunction, "global pooling lost its fast path"
    uniform = MF.adaptive_avg_pool2d(torch.randn(2, 3, 6, 8, requires_grad=True), (3, 2))
    assert uniform.grad_fn._forward_cls is AvgPool2dFunction, "dividing sizes: average pooling"
    none_out = MF.adaptive_avg_pool2d(torch.randn(2, 3, 1, 5, requires_grad=True), (None, 1))
    assert none_out.grad_fn._forward_cls is GlobalAvgPool2dFunction, (
        "(None, 1) of a 1-row input is global too"
    )


# ---------------------------------------------------------------------------------------- avg_pool2d
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"padding": 1, "stride": 2, "kernel_size": 3}, {"ceil_mode": True, "count_include_pad": False}],
    ids=["plain", "pad", "ceil-exclude"],
)
def test_avg_pool_int64_input_truncates_like_torch(kwargs: dict) -> None:
    x = torch.randint(-50, 50, (2, 3, 7, 6), generator=torch.Generator().manual_seed(0))
    kwargs = {"kernel_size": 2, **kwargs}
    out = MF.avg_pool2d(x, **kwargs)
    assert out.dtype == torch.int64 and torch.equal(out, F.avg_pool2d(x, **kwargs))


def test_avg_pool_empty_stride_means_kernel_size() -> None:
    x = torch.randn(1, 2, 6, 6)
    torch.testing.assert_close(MF.avg_pool2d(x, (2, 3), ()), F.avg_pool2d(x, (2, 3), ()))


def test_avg_pool_ceil_mode_window_past_the_input() -> None:
    """A ceil_mode window that reaches past the padded input: divisor clipped at the padded input."""
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    for kwargs in (
        {"ceil_mode": True},
        {"ceil_mode": True, "padding": 2, "stride": 3, "count_include_pad": False},
    ):
        torch.testing.assert_close(MF.avg_pool2d(x, 5, **kwargs), F.avg_pool2d(x, 5, **kwargs))
        assert torch.autograd.gradcheck(lambda t, kw=kwargs: MF.avg_pool2d(t, 5, **kw), (x,))


# ------------------------------------------------------------------------------- softmax / log_softmax
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("ndim", [0, 1, 2, 3, 4])
def test_implicit_dim_and_its_warning_follow_torch(op: str, ndim: int) -> None:
    x = torch.randn([3] * ndim)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = getattr(MF, op)(x)
        ref = getattr(F, op)(x)
    torch.testing.assert_close(out, ref)
    assert len(caught) == 2, [str(w.message) for w in caught]
    mine, theirs = caught
    assert str(mine.message) == str(theirs.message)
    assert mine.filename == __file__, f"the warning points at {mine.filename}, not at the caller"


@pytest.mark.parametrize("cls", [mnn.Softmax, mnn.LogSoftmax])
def test_softmax_modules_with_implicit_dim(cls) -> None:
    x = torch.randn(2, 3, 4)
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        out = cls()(x)
    with pytest.warns(UserWarning, match="Implicit dimension choice"):
        ref = cls.__mro__[1]()(x)
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_dtype_argument(op: str) -> None:
    manual, builtin = getattr(MF, op), getattr(F, op)
    x = torch.randn(3, 4, requires_grad=True)
    out = manual(x, 1, dtype=torch.float64)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, builtin(x, 1, dtype=torch.float64))
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.dtype == torch.float32
    ints = torch.arange(6).view(2, 3)
    torch.testing.assert_close(manual(ints, 1, dtype=torch.float32), builtin(ints, 1, dtype=torch.float32))
    half = torch.randn(3, 4).half()
    assert manual(half, 1).dtype == builtin(half, 1).dtype == torch.float16


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape", [(), (0, 3), (3, 0)], ids=str)
def test_softmax_scalar_and_empty(op: str, shape: tuple[int, ...]) -> None:
    x = torch.randn(shape)
    dim = -1 if shape else 0
    torch.testing.assert_close(getattr(MF, op)(x, dim), getattr(F, op)(x, dim))


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_extreme_values_like_torch(op: str) -> None:
    inf = float("inf")
    x = torch.tensor([[1000.0, 0.0, -1000.0], [-inf, 0.0, 1.0], [-inf, -inf, -inf], [1.0, inf, 0.0]])
    torch.testing.assert_close(getattr(MF, op)(x, 1), getattr(F, op)(x, 1), equal_nan=True)


def test_softmax_keeps_channels_last() -> None:
    x = torch.randn(2, 5, 3, 4).contiguous(memory_format=torch.channels_last)
    assert MF.softmax(x, 1).is_contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------------- group_norm, gelu
def test_group_norm_low_precision_input_with_float32_parameters() -> None:
    """bfloat16 activations with float32 gamma/beta (a conv's output under autocast), as the built-in."""
    x = torch.randn(4, 6, 5, 5).bfloat16().requires_grad_()
    w, b = torch.randn(6, requires_grad=True), torch.randn(6, requires_grad=True)
    out = MF.group_norm(x, 3, w, b)
    ref = F.group_norm(x, 3, w, b)
    assert out.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref, rtol=2e-2, atol=2e-2)
    grads = torch.autograd.grad(out.float().sum(), [x, w, b])
    assert [g.dtype for g in grads] == [torch.bfloat16, torch.float32, torch.float32]


def test_group_norm_equals_layer_norm_and_instance_norm() -> None:
    x = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(MF.group_norm(x, 1), F.layer_norm(x, x.shape[1:]))
    torch.testing.assert_close(MF.group_norm(x, 4), F.instance_norm(x))


def test_group_norm_empty_batch() -> None:
    x = torch.randn(0, 4, 3)
    assert MF.group_norm(x, 2).shape == F.group_norm(x, 2).shape


def test_gelu_known_values() -> None:
    x = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(MF.gelu(x), x * 0.5 * (1 + torch.erf(x / 2**0.5)))
    torch.testing.assert_close(MF.gelu(x, approximate="tanh"), F.gelu(x, approximate="tanh"))


def test_tanh_promotes_integers_like_torch() -> None:
    for x in (torch.arange(-2, 3), torch.tensor([True, False])):
        out = MF.tanh(x)
        assert out.dtype == torch.tanh(x).dtype == torch.get_default_dtype()
        torch.testing.assert_close(out, torch.tanh(x))


# ---------------------------------------------------------------------------------- exception classes
def test_error_classes_are_both_kinds() -> None:
    assert issubclass(OpArgumentError, ValueError) and issubclass(OpArgumentError, RuntimeError)
    assert issubclass(OpDtypeError, TypeError) and issubclass(OpDtypeError, NotImplementedError)


# ---------------------------------------------------------------------------------- modules, swapping
def test_module_twins_repr_and_return_indices() -> None:
    pool = mnn.AdaptiveMaxPool2d((2, None), return_indices=True)
    assert repr(pool) == repr(nn.AdaptiveMaxPool2d((2, None), return_indices=True))
    x = torch.randn(2, 3, 5, 4)
    (out, index), (ref, ref_index) = pool(x), nn.AdaptiveMaxPool2d((2, None), return_indices=True)(x)
    torch.testing.assert_close(out, ref)
    assert torch.equal(index, ref_index)
    assert repr(mnn.GroupNorm(2, 4, bias=False)) == repr(nn.GroupNorm(2, 4, bias=False))
    assert mnn.GroupNorm(2, 4, bias=False).bias is None
    assert repr(mnn.AvgPool2d(3, 2, 1, True, False, 4)) == repr(nn.AvgPool2d(3, 2, 1, True, False, 4))


def test_swap_covers_the_new_layers() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.GroupNorm(4, 8),
        nn.GELU(approximate="tanh"),
        nn.AvgPool2d(3, 2, 1, count_include_pad=False),
        nn.AdaptiveMaxPool2d((5, None)),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d((3, 2)),
        nn.Flatten(),
        nn.Linear(8 * 3 * 2, 10),
        nn.LogSoftmax(dim=1),
    )
    x = torch.randn(4, 3, 11, 9)
    ref = model(x)
    _, report = to_manual(model, report=True)
    assert not report.kept, f"kept: {report.kept}"
    assert len(report.swapped) == 9
    torch.testing.assert_close(model(x), ref)
    to_builtin(model)
    assert type(model[6]) is nn.AdaptiveAvgPool2d and type(model[9]) is nn.LogSoftmax


# ------------------------------------------------------------------------------------------ doctests
@pytest.mark.parametrize("module", ["gelu", "tanh", "softmax", "group_norm", "avg_pool", "adaptive_pool"])
def test_docstring_examples(module: str) -> None:
    mod = importlib.import_module(f"custom_ops.{module}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"custom_ops.{module} has no examples"
    assert result.failed == 0, f"custom_ops.{module}: {result.failed} failing example(s)"
