"""Behaviour the registry-driven parity tests cannot express: conventions, RNG, equalities, the rules."""

from __future__ import annotations

import ast
import functools
import inspect
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import custom_ops.functional as MF
from custom_ops.testing import OP_CASES, OpCase


# ------------------------------------------------------------------------------------------ batch norm
def test_batch_norm_cs231n_convention() -> None:
    """CS231n: running = momentum * running + (1 - momentum) * batch, with the biased variance."""
    x = torch.randn(16, 3, dtype=torch.float64)
    rm, rv = torch.randn(3, dtype=torch.float64), torch.rand(3, dtype=torch.float64) + 0.5
    expected_mean = 0.9 * rm + 0.1 * x.mean(0)
    expected_var = 0.9 * rv + 0.1 * x.var(0, unbiased=False)
    MF.batch_norm(x, rm, rv, training=True, momentum=0.9, convention="cs231n")
    torch.testing.assert_close(rm, expected_mean, msg="CS231n running mean")
    torch.testing.assert_close(rv, expected_var, msg="CS231n running var (biased)")


def test_batch_norm_torch_convention_is_the_default() -> None:
    """PyTorch: running = (1 - momentum) * running + momentum * batch, with the unbiased variance."""
    x = torch.randn(8, 3, 4, 4, dtype=torch.float64)
    rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    MF.batch_norm(x, rm, rv, training=True, momentum=0.25)
    torch.testing.assert_close(rm, 0.25 * x.mean((0, 2, 3)), msg="torch running mean")
    torch.testing.assert_close(rv, 0.75 + 0.25 * x.var((0, 2, 3), unbiased=True), msg="torch running var")


def test_batch_norm_training_output_is_normalised() -> None:
    out = MF.batch_norm(torch.randn(64, 5) * 3 + 7, None, None, training=True)
    torch.testing.assert_close(out.mean(0), torch.zeros(5), atol=1e-5, rtol=0, msg="per-feature mean")
    torch.testing.assert_close(
        out.var(0, unbiased=False), torch.ones(5), atol=1e-3, rtol=0, msg="per-feature var"
    )


def test_batch_norm_empty_input_as_torch() -> None:
    """An empty batch: an empty output, the running statistics untouched, zero weight and bias gradients."""
    for training in (True, False):
        results = []
        for bn in (MF.batch_norm, F.batch_norm):
            x = torch.randn(0, 3, 4, 4, requires_grad=True)
            w, b = torch.ones(3, requires_grad=True), torch.zeros(3, requires_grad=True)
            rm, rv = torch.full((3,), 0.5), torch.full((3,), 2.0)
            out = bn(x, rm, rv, w, b, training)
            out.sum().backward()
            results.append((out, x.grad, w.grad, b.grad, rm, rv))
        for what, mine, theirs in zip(("out", "dx", "dw", "db", "mean", "var"), *results):
            torch.testing.assert_close(mine, theirs, msg=f"empty batch ({training=}): {what}")


# --------------------------------------------------------------------------------------------- dropout
def test_dropout_generator_makes_the_mask_reproducible() -> None:
    x = torch.randn(100, 100)
    a = MF.dropout(x, 0.5, True, generator=torch.Generator().manual_seed(3))
    b = MF.dropout(x, 0.5, True, generator=torch.Generator().manual_seed(3))
    c = MF.dropout(x, 0.5, True, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b), "same generator seed must give the same mask"
    assert not torch.equal(a, c), "different seeds should give different masks"


def test_dropout_statistics_and_inverted_scaling() -> None:
    x = torch.ones(400, 500)
    out = MF.dropout(x, 0.3, True, generator=torch.Generator().manual_seed(0))
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01, "keep fraction should be 1 - p"
    torch.testing.assert_close(
        out[kept], torch.full_like(out[kept], 1 / 0.7), msg="kept units scaled by 1/(1-p)"
    )
    assert abs(out.mean().item() - 1.0) < 0.02, "inverted dropout keeps the expected activation"


@pytest.mark.parametrize(("p", "training"), [(0.5, False), (0.0, True)])
def test_dropout_identity_cases(p: float, training: bool) -> None:
    x = torch.randn(4, 5, requires_grad=True)
    assert MF.dropout(x, p, training) is x, "eval mode and p=0 return the input itself, like torch"


def test_dropout_p1_gives_zeros_like_torch() -> None:
    x = torch.tensor([1.0, -2.0, float("inf")], requires_grad=True)
    out = MF.dropout(x, 1.0)
    torch.testing.assert_close(out, F.dropout(x, 1.0), equal_nan=True, msg="p=1: x * 0 (NaN for inf)")
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, torch.zeros(3), msg="p=1: zero gradient")


def test_dropout_inplace_modifies_and_returns_the_input() -> None:
    x = torch.randn(30, 20, requires_grad=True)
    mine, theirs = x * 2, x * 2
    with torch.random.fork_rng():
        torch.manual_seed(5)
        out = MF.dropout(mine, 0.3, True, True)
        torch.manual_seed(5)
        ref = F.dropout(theirs, 0.3, True, True)
    assert out is mine, "inplace=True returns the input itself"
    torch.testing.assert_close(out, ref, msg="in-place dropout differs from torch's (same seed)")
    (grad,) = torch.autograd.grad(out.sum(), x)
    (ref_grad,) = torch.autograd.grad(ref.sum(), x)
    torch.testing.assert_close(grad, ref_grad, msg="gradient through in-place dropout")


def test_dropout_backward_uses_the_forward_mask() -> None:
    x = torch.randn(50, 40, requires_grad=True)
    out = MF.dropout(x, 0.4, True, generator=torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, (out != 0).float() / 0.6, msg="dx = mask / (1 - p)")


# ---------------------------------------------------------------------------------------------- losses
def test_losses_equal_their_builtin_formulations() -> None:
    scores, y = torch.randn(32, 10, dtype=torch.float64), torch.randint(0, 10, (32,))
    torch.testing.assert_close(MF.softmax_loss(scores, y), F.cross_entropy(scores, y))
    torch.testing.assert_close(MF.svm_loss(scores, y), F.multi_margin_loss(scores, y) * 10)


def test_loss_values_at_known_points() -> None:
    y = torch.tensor([0, 3, 7])
    uniform = torch.zeros(3, 10)
    assert math.isclose(MF.softmax_loss(uniform, y).item(), math.log(10), rel_tol=1e-6), (
        "uniform scores: ln(C)"
    )
    assert math.isclose(MF.svm_loss(uniform, y).item(), 9.0, rel_tol=1e-6), "equal scores: C - 1 margins of 1"
    confident = torch.full((3, 10), -5.0).scatter(1, y[:, None], 5.0)
    assert MF.svm_loss(confident, y).item() == 0.0, "all margins satisfied: zero SVM loss"


def test_softmax_loss_is_stable_for_huge_scores() -> None:
    scores = torch.tensor([[1000.0, 0.0], [0.0, -1000.0]], requires_grad=True)
    loss = MF.softmax_loss(scores, torch.tensor([1, 0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(scores.grad).all(), "overflow in the softmax loss"
    torch.testing.assert_close(loss, torch.tensor(500.0))


# ------------------------------------------------------------------------------------------------ conv
def test_conv_algorithms_agree_with_each_other() -> None:
    x, w, b = torch.randn(3, 4, 11, 9), torch.randn(6, 2, 3, 5), torch.randn(6)
    grads = {}
    for algorithm in ("fast", "im2col"):
        leaves = [t.clone().requires_grad_() for t in (x, w, b)]
        out = MF.conv2d(
            *leaves, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2, algorithm=algorithm
        )
        out.pow(2).sum().backward()
        grads[algorithm] = [out, *(leaf.grad for leaf in leaves)]
    for name, a, b_ in zip(("output", "dx", "dw", "db"), grads["fast"], grads["im2col"]):
        torch.testing.assert_close(a, b_, rtol=1e-4, atol=1e-4, msg=f"fast and im2col {name} differ")


def test_conv_unbatched_and_same_padding() -> None:
    x, w = torch.randn(3, 8, 7), torch.randn(5, 3, 3, 3)
    torch.testing.assert_close(MF.conv2d(x, w, padding="same"), F.conv2d(x, w, padding="same"))
    torch.testing.assert_close(MF.conv2d(x, w, padding="valid"), F.conv2d(x, w, padding="valid"))


def test_max_pool_unbatched() -> None:
    x = torch.randn(3, 9, 9)
    torch.testing.assert_close(MF.max_pool2d(x, 3, 2, 1), F.max_pool2d(x, 3, 2, 1))


def test_max_pool_positional_dilation_and_torchs_indices() -> None:
    """The 5th positional parameter is dilation, as torch's (it once was ceil_mode: 3x3 instead of 2x2);
    ``return_indices`` gives torch's flat H*W indices, unbatched included."""
    x = torch.randn(2, 3, 6, 6)
    assert MF.max_pool2d(x, 3, 2, 0, 1).shape == F.max_pool2d(x, 3, 2, 0, 1).shape == (2, 3, 2, 2)
    for inp in (x, x[0]):
        out, index = MF.max_pool2d(inp, 2, 1, 1, 2, True, True)
        ref, ref_index = F.max_pool2d(inp, 2, 1, 1, 2, True, True)
        torch.testing.assert_close(out, ref, msg="dilated max-pool output")
        assert torch.equal(index, ref_index), "return_indices differs from torch's"


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")  # torch's, not ours
def test_conv_zero_batch_and_even_same_padding() -> None:
    """An empty batch (forward and backward), and padding='same' with an even kernel (torch pads the
    extra row/column at the bottom/right)."""
    for algorithm in ("fast", "im2col"):
        for x_shape, w_shape, kwargs in (
            ((0, 3, 7, 5), (4, 3, 3, 2), {}),
            ((2, 3, 7, 6), (4, 3, 2, 4), {"padding": "same"}),
            ((2, 4, 7, 6), (4, 2, 2, 3), {"padding": "same", "dilation": (3, 2), "groups": 2}),
        ):
            results = []
            for conv in (functools.partial(MF.conv2d, algorithm=algorithm), F.conv2d):
                x = torch.randn(x_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
                w = torch.randn(w_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
                x.requires_grad_(), w.requires_grad_()
                out = conv(x, w, **kwargs)
                out.backward(torch.ones_like(out))
                results.append((out, x.grad, w.grad))
            for what, mine, theirs in zip(("out", "dx", "dw"), *results):
                torch.testing.assert_close(mine, theirs, msg=f"{algorithm} {x_shape} {kwargs}: {what}")


def test_linear_edge_shapes() -> None:
    """in_features = 0 (out = bias, dW empty), an empty batch, and a 1-D weight (the output dim dropped)."""
    for x_shape, w_shape, b_shape in (
        ((3, 4, 0), (5, 0), (5,)),
        ((0, 8), (8, 8), (8,)),
        ((2, 3, 4), (4,), None),
    ):
        results = []
        for linear in (MF.linear, F.linear):
            x = torch.randn(x_shape, dtype=torch.float64, requires_grad=True)
            w = torch.randn(w_shape, dtype=torch.float64, requires_grad=True)
            b = None if b_shape is None else torch.randn(b_shape, dtype=torch.float64, requires_grad=True)
            torch.manual_seed(0)
            out = linear(x, w, b)
            out.backward(torch.ones_like(out))
            results.append((out.shape, x.grad, w.grad))
        assert results[0][0] == results[1][0], f"linear {x_shape} x {w_shape}: shape {results[0][0]}"
        for what, mine, theirs in zip(("dx", "dw"), results[0][1:], results[1][1:]):
            torch.testing.assert_close(mine, theirs, msg=f"linear {x_shape} x {w_shape}: {what}")


def test_layer_norm_over_the_whole_input() -> None:
    """normalized_shape = the whole input shape: weight and bias gradients of the full shape."""
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    grads = [
        torch.autograd.grad(ln(x, (2, 3), w, b).pow(2).sum(), (x, w, b))
        for ln in (MF.layer_norm, F.layer_norm)
    ]
    for what, mine, theirs in zip(("dx", "dw", "db"), *grads):
        torch.testing.assert_close(mine, theirs, msg=f"layer_norm over the whole shape: {what}")


# ------------------------------------------------------------------------------------------- signatures
def _torch_parameters(name: str) -> list[inspect.Parameter]:
    """The parameters of ``torch.nn.functional.<name>``, from its signature or, for a C function, from the
    first line of its docstring (``conv2d(input, weight, bias=None, ...) -> Tensor``)."""
    fn = getattr(F, f"{name}_with_indices", None) or getattr(F, name)  # boolean dispatchers
    try:
        return list(inspect.signature(fn).parameters.values())
    except ValueError:
        head = " ".join(fn.__doc__.strip().split("->")[0].split())  # the signature may span lines
        args = ast.parse(f"def f{head[head.index('(') :]}: pass").body[0].args  # type: ignore[attr-defined]
        defaults = [None] * (len(args.args) - len(args.defaults)) + list(args.defaults)
        return [
            inspect.Parameter(
                a.arg,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=inspect.Parameter.empty if d is None else ast.literal_eval(d),
            )
            for a, d in zip(args.args, defaults)
        ]


TWINS_OF_TORCH_FUNCTIONS = [name for name in MF.__all__ if hasattr(F, name)]


@pytest.mark.parametrize("name", TWINS_OF_TORCH_FUNCTIONS)
def test_functional_twin_has_torchs_parameters_in_torchs_order(name: str) -> None:
    """A drop-in takes torch's arguments positionally too: the same positional parameters in the same order
    with the same defaults; its extras (``generator``, ``algorithm``, ``convention``) are keyword-only."""
    mine = list(inspect.signature(getattr(MF, name)).parameters.values())
    theirs = _torch_parameters(name)
    positional = [p for p in mine if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert [p.name for p in positional] == [p.name for p in theirs], (
        f"{name}: manual positional parameters {[p.name for p in positional]}, "
        f"torch's {[p.name for p in theirs]}"
    )
    for m, t in zip(positional, theirs):
        assert m.default == t.default, f"{name}: default of {m.name} is {m.default!r}, torch's {t.default!r}"
    extras = [
        p.name for p in mine if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    assert not extras, f"{name}: *args/**kwargs {extras} would swallow arguments silently"


# ------------------------------------------------------------------------------------ the rules of play
class _RecordOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        self.names.append(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("case", OP_CASES, ids=[c.id for c in OP_CASES])
def test_backward_uses_no_aten_backward_kernel(case: OpCase) -> None:
    """The hand-written backward is made of forward math only: no ``*_backward`` aten kernel runs."""
    args: list[Any] = case.inputs(torch.float32)
    torch.manual_seed(0)
    out = case.manual(*args)
    leaves = [args[i] for i in case.grad_inputs]
    with _RecordOps() as recorder:
        torch.autograd.grad(out.sum(), leaves)
    offending = sorted({name for name in recorder.names if "backward" in name})
    assert recorder.names, f"{case.id}: no op recorded in backward"
    assert not offending, f"{case.id}: backward called built-in gradient kernels {offending}"


def test_the_recorder_does_see_builtin_backward_kernels() -> None:
    """Guard for the test above: the same recorder catches the built-ins' gradient kernels."""
    x, w = torch.randn(2, 3, 6, 6, requires_grad=True), torch.randn(4, 3, 3, 3, requires_grad=True)
    out = F.max_pool2d(F.relu(F.conv2d(x, w)), 2)
    with _RecordOps() as recorder:
        torch.autograd.grad(out.sum(), [x, w])
    seen = {name for name in recorder.names if "backward" in name}
    assert {"convolution_backward.default", "threshold_backward.default"} <= seen, f"recorded only {seen}"
