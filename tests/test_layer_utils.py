"""The CS231n sandwich layers (``custom_ops.layer_utils``) against the chains they fuse, and
``SandwichSequential`` against the ``nn.Sequential`` it replaces.

The op tests iterate over ``custom_ops.testing.SANDWICHES``: every sample is checked against finite
differences, against the chain of built-ins (the spec's ``builtin``) and against the chain of manual ops
(``SANDWICH_MANUAL_CHAINS``), for running statistics, memory saved for backward, autocast and bad input.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck, gradgradcheck
from torch.overrides import TorchFunctionMode

import custom_ops
import custom_ops.layer_utils as layer_utils
import custom_ops.nn as mnn
from custom_ops.registry import SANDWICH_MANUAL_CHAINS
from custom_ops.testing import SANDWICHES, OpCase
from torch_cs231n.nets.models import build_convnet, build_fc_net, build_three_layer_convnet
from torch_cs231n.nets.sandwich import SandwichSequential, sandwich
from torch_cs231n.tools.memory import saved_memory

# torch's own warning for the built-in chain of conv_relu[same-even-kernel] (the manual ops pad the same way)
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")

CASES = [case for spec in SANDWICHES.values() for case in spec.cases]
PARITY = CASES + [case for spec in SANDWICHES.values() for case in spec.kink_cases]  # kinks: no gradcheck
DOUBLE = [case for case in CASES if case.double_backward]
ERRORS = [(spec, error) for spec in SANDWICHES.values() for error in spec.errors]
# The sandwiches that save less than their chain (no ReLU output, or the pooled one instead of the full one).
SAVE_LESS = {"affine_bn_relu", "affine_ln_relu", "conv_bn_relu", "conv_relu_pool"}


def ids(cases: list[OpCase]) -> list[str]:
    return [case.id for case in cases]


def manual_chain(case: OpCase) -> Callable[..., torch.Tensor]:
    """The chain of manual ops of ``case``'s sandwich, with the sample's hyper-parameters bound."""
    return functools.partial(SANDWICH_MANUAL_CHAINS[case.op], **case.sample.kwargs)


def differentiable(
    case: OpCase, args: list[Any]
) -> tuple[Callable[..., torch.Tensor], tuple[torch.Tensor, ...]]:
    """``fn(*grad_tensors)`` calling the sandwich with the other arguments fixed, and the grad tensors."""

    def fn(*grad_tensors: torch.Tensor) -> torch.Tensor:
        full = list(args)
        for i, t in zip(case.grad_inputs, grad_tensors):
            full[i] = t
        return case.manual(*full)

    return fn, tuple(args[i] for i in case.grad_inputs)


def run_and_grad(
    case: OpCase, fn: Callable[..., torch.Tensor], args: list[Any], context: Any = None
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Output of ``fn`` (forward in ``context``) and the gradients of a fixed projection of it."""
    with context or contextlib.nullcontext():
        out = fn(*args)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(7)).to(out.dtype)
    grads = torch.autograd.grad((out * weight).sum(), [args[i] for i in case.grad_inputs])
    return out, list(grads)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str, **tol: float) -> None:
    torch.testing.assert_close(actual, expected, msg=lambda m: f"{what}: {m}", **tol)


def assert_same_state(case: OpCase, args: list[Any], ref_args: list[Any], what: str) -> None:
    """The non-differentiable tensor arguments (running statistics) ended the same."""
    for i, (a, b) in enumerate(zip(args, ref_args)):
        if isinstance(a, torch.Tensor) and i not in case.grad_inputs:
            assert_close(a, b, f"{case.id} argument #{i} after the call vs {what}")


# ------------------------------------------------------------------------------------------ sandwiches
@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_gradcheck_float64(case: OpCase) -> None:
    fn, inputs = differentiable(case, case.inputs(torch.float64))
    assert gradcheck(fn, inputs), f"{case.id}: analytic gradient differs from finite differences"


@pytest.mark.parametrize("case", DOUBLE, ids=ids(DOUBLE))
def test_gradgradcheck_float64(case: OpCase) -> None:
    fn, inputs = differentiable(case, case.inputs(torch.float64))
    assert gradgradcheck(fn, inputs), f"{case.id}: the backward's own gradient is wrong"


@pytest.mark.parametrize("case", PARITY, ids=ids(PARITY))
@pytest.mark.parametrize("chain", ["builtin", "manual"])
def test_equals_chain_float32(case: OpCase, chain: str) -> None:
    reference = case.builtin if chain == "builtin" else manual_chain(case)
    args, ref_args = case.inputs(torch.float32), case.inputs(torch.float32)
    out, grads = run_and_grad(case, case.manual, args)
    ref, ref_grads = run_and_grad(case, reference, ref_args)
    assert out.shape == ref.shape, f"{case.id}: output shape {out.shape}, the {chain} chain gives {ref.shape}"
    assert_close(out, ref, f"{case.id} output vs the {chain} chain")
    for i, g, r in zip(case.grad_inputs, grads, ref_grads):
        assert_close(g, r, f"{case.id} gradient of input #{i} vs the {chain} chain")
    assert_same_state(case, args, ref_args, f"the {chain} chain")


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_saves_no_more_than_the_manual_chain(case: OpCase) -> None:
    measured = {}
    for name, fn in (("sandwich", case.manual), ("chain", manual_chain(case))):
        args = case.inputs(torch.float32)
        state = [a for a in args[1:] if isinstance(a, torch.Tensor)]  # parameters and running statistics
        measured[name] = saved_memory(fn, args, exclude=state, activations=args[:1]).bytes
    assert measured["sandwich"] <= measured["chain"], f"{case.id}: saves more than the chain: {measured}"
    if case.op in SAVE_LESS:
        assert measured["sandwich"] < measured["chain"], (
            f"{case.id}: saves no less than the chain: {measured}"
        )


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_autocast_bfloat16_matches_chains(case: OpCase) -> None:
    autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    args = case.inputs(torch.float32)
    out, grads = run_and_grad(case, case.manual, args, autocast)
    for chain, reference in (("builtin", case.builtin), ("manual", manual_chain(case))):
        ref_args = case.inputs(torch.float32)
        ref, ref_grads = run_and_grad(case, reference, ref_args, torch.autocast("cpu", dtype=torch.bfloat16))
        assert out.dtype == ref.dtype, (
            f"{case.id}: autocast output {out.dtype}, the {chain} chain {ref.dtype}"
        )
        assert_close(out.float(), ref.float(), f"{case.id} autocast output vs {chain}", rtol=2e-2, atol=2e-2)
        for i, g, r in zip(case.grad_inputs, grads, ref_grads):
            assert g.dtype == args[i].dtype, (
                f"{case.id}: gradient #{i} is {g.dtype}, its input {args[i].dtype}"
            )
            assert_close(
                g.float(), r.float(), f"{case.id} autocast gradient #{i} vs {chain}", rtol=5e-2, atol=5e-2
            )
        assert_same_state(case, args, ref_args, f"the {chain} chain under autocast")


@pytest.mark.parametrize("path_name", ["default", "reference"])
@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_gradcheck_forward_ad_and_batched(case: OpCase, path_name: str) -> None:
    """The hand-written jvp against finite differences, and the backward and jvp under (gradcheck's) vmap,
    on the default path and the reference path."""
    fn, inputs = differentiable(case, case.inputs(torch.float64))
    path = custom_ops.reference_path() if path_name == "reference" else contextlib.nullcontext()
    with path:
        passed = gradcheck(
            fn, inputs, check_forward_ad=True, check_batched_grad=True, check_batched_forward_grad=True
        )
    assert passed, f"{case.id}: jvp, or the derivatives under vmap, differ from finite differences"


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_default_path_equals_reference(case: OpCase) -> None:
    """The tuned formulations (fused kernels, in-place masks) agree with the reference formulas, float64."""
    args, ref_args = case.inputs(torch.float64), case.inputs(torch.float64)
    out, grads = run_and_grad(case, case.manual, args)
    with custom_ops.reference_path():  # the forward and the backward
        ref, ref_grads = run_and_grad(case, case.manual, ref_args)
    assert_close(out, ref, f"{case.id}: default path's output vs the reference path")
    for i, g, r in zip(case.grad_inputs, grads, ref_grads):
        assert_close(g, r, f"{case.id}: gradient of input #{i}, default vs reference path")
    assert_same_state(case, args, ref_args, "the reference path")


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_vmap_and_jvp_match_loop_and_chain(case: OpCase) -> None:
    """``torch.func.vmap`` over a batch of inputs against a Python loop and against the built-in chain
    under vmap (which refuses training batch norm with unbatched running statistics: so must the
    sandwich); ``torch.func.jvp`` against the chain's, the running statistics updated once as by a call."""
    args, ref_args = (
        case.inputs(torch.float64, requires_grad=False),
        case.inputs(torch.float64, requires_grad=False),
    )
    xs = torch.stack([args[0] * scale for scale in (0.5, 1.0, 1.5)])

    def on(fn: Callable[..., torch.Tensor], full: list[Any]) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x: fn(x, *full[1:])

    try:
        ref = torch.func.vmap(on(case.builtin, ref_args))(xs)
    except RuntimeError:
        with pytest.raises(RuntimeError, match="running_mean or running_var"):
            torch.func.vmap(on(case.manual, args))(xs)
    else:
        out = torch.func.vmap(on(case.manual, args))(xs)
        loop = torch.stack([on(case.manual, args)(x) for x in xs])
        assert_close(out, loop, f"{case.id}: vmap vs a Python loop")
        assert_close(out, ref, f"{case.id}: vmap vs the built-in chain under vmap")
    args, ref_args = (
        case.inputs(torch.float64, requires_grad=False),
        case.inputs(torch.float64, requires_grad=False),
    )
    fn, primals = differentiable(case, args)
    ref_fn = functools.partial(_call_chain, case, ref_args)
    tangents = tuple(torch.randn_like(t) for t in primals)
    out, out_t = torch.func.jvp(fn, primals, tangents)
    ref, ref_t = torch.func.jvp(ref_fn, tuple(ref_args[i] for i in case.grad_inputs), tangents)
    assert_close(out, ref, f"{case.id}: output under torch.func.jvp vs the chain")
    assert_close(out_t, ref_t, f"{case.id}: jvp vs the built-in chain's")
    assert_same_state(case, args, ref_args, "the chain under torch.func.jvp")


NORM_SANDWICHES = ["affine_bn_relu[train]", "affine_ln_relu[2d]", "conv_bn_relu[eval]"]


@pytest.mark.parametrize("case_id", NORM_SANDWICHES)
def test_norm_sandwich_second_derivatives(case_id: str) -> None:
    """Reverse over the hand-written jvp gives the chain's Hessian in x; forward over the once-differentiable
    backward (``torch.func.hessian``) raises, as double backward."""
    case = next(c for c in CASES if c.id == case_id)
    args, ref_args = (
        case.inputs(torch.float64, requires_grad=False),
        case.inputs(torch.float64, requires_grad=False),
    )

    def loss(fn: Callable[..., torch.Tensor], full: list[Any]) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x: fn(x, *full[1:]).pow(3).sum()

    hessian = torch.func.jacrev(torch.func.jacfwd(loss(case.manual, args)))(args[0])
    ref = torch.func.hessian(loss(case.builtin, ref_args))(ref_args[0])
    assert_close(hessian, ref, f"{case.id}: jacrev(jacfwd) Hessian vs the chain's")
    with pytest.raises(RuntimeError, match="forward-over-reverse"):
        torch.func.hessian(loss(case.manual, args))(args[0])


def _call_chain(case: OpCase, args: list[Any], *grad_tensors: torch.Tensor) -> torch.Tensor:
    """The built-in chain of ``case`` with its grad inputs replaced by ``grad_tensors``."""
    full = list(args)
    for i, t in zip(case.grad_inputs, grad_tensors):
        full[i] = t
    return case.builtin(*full)


SPATIAL = [case for case in CASES if case.spatial]


@pytest.mark.parametrize("case", SPATIAL, ids=ids(SPATIAL))
def test_channels_last_kept(case: OpCase) -> None:
    """A channels_last input gives the same values, and a channels_last output and dx, as the chain's."""
    args, ref_args = case.inputs(torch.float64), case.inputs(torch.float64)
    args[0] = args[0].detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    ref_args[0] = ref_args[0].detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    out, grads = run_and_grad(case, case.manual, args)
    ref, ref_grads = run_and_grad(case, manual_chain(case), ref_args)
    assert_close(out, ref, f"{case.id} channels_last output")
    assert_close(grads[0], ref_grads[0], f"{case.id} channels_last dx")
    for name, t, r in (("output", out, ref), ("dx", grads[0], ref_grads[0])):
        layout = t.is_contiguous(memory_format=torch.channels_last)
        assert layout == r.is_contiguous(memory_format=torch.channels_last), (
            f"{case.id}: {name} layout differs"
        )


def test_compile_matches_eager() -> None:
    """torch.compile (graph breaks allowed) of one sandwich, in training (running statistics updated)."""
    case = next(c for c in SANDWICHES["conv_bn_relu"].cases if c.label == "train")
    torch._dynamo.reset()
    compiled = torch.compile(case.manual, fullgraph=False, backend="aot_eager")
    args, ref_args = case.inputs(torch.float32), case.inputs(torch.float32)
    out, grads = run_and_grad(case, compiled, args)
    ref, ref_grads = run_and_grad(case, case.manual, ref_args)
    assert_close(out, ref, f"{case.id} compiled output")
    for i, g, r in zip(case.grad_inputs, grads, ref_grads):
        assert_close(g, r, f"{case.id} compiled gradient of input #{i}")
    assert_same_state(case, args, ref_args, "eager")


@pytest.mark.parametrize(("spec", "error"), ERRORS, ids=[f"{s.name}[{e.label}]" for s, e in ERRORS])
def test_bad_input_raises(spec, error) -> None:
    with pytest.raises(error.error, match=error.match):
        error.call(spec.manual)


def test_bad_input_raises_before_touching_running_stats() -> None:
    mean, var = torch.zeros(4), torch.ones(4)
    with pytest.raises(ValueError, match=r"more than 1 value per channel"):
        layer_utils.affine_bn_relu(torch.randn(1, 5), torch.randn(4, 5), None, mean, var, training=True)
    assert mean.eq(0).all() and var.eq(1).all(), "a refused call changed the running statistics"


@pytest.mark.parametrize("name", ["affine_bn_relu", "conv_bn_relu"])
def test_empty_batch_is_the_chain(name: str) -> None:
    """No element: the manual chain runs (empty output, zero parameter gradients, statistics untouched)."""
    x = torch.randn(0, 5) if name == "affine_bn_relu" else torch.randn(0, 3, 6, 6)
    weight = torch.randn(4, 5) if name == "affine_bn_relu" else torch.randn(4, 3, 3, 3)
    gamma = torch.randn(4, requires_grad=True)
    mean, var = torch.zeros(4), torch.ones(4)
    out = getattr(layer_utils, name)(x, weight, None, mean, var, gamma, None, True)
    (dgamma,) = torch.autograd.grad(out.sum(), gamma)
    assert out.numel() == 0 and out.shape[1] == 4, f"{name}: empty batch gave shape {tuple(out.shape)}"
    assert dgamma.eq(0).all(), f"{name}: empty batch gave gamma gradient {dgamma}"
    assert mean.eq(0).all() and var.eq(1).all(), f"{name}: empty batch changed the running statistics"


# -------------------------------------------------------------------------------- SandwichSequential
@pytest.fixture
def sandwich_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts of the calls of each sandwich (``SandwichSequential`` looks them up at call time)."""
    calls: Counter[str] = Counter()
    for name in SANDWICHES:
        original = getattr(layer_utils, name)

        def spy(
            *args: Any, _name: str = name, _original: Callable[..., Any] = original, **kwargs: Any
        ) -> Any:
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(layer_utils, name, spy)
    return calls


def _plain(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every SandwichSequential made a plain nn.Sequential."""
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if type(module) is SandwichSequential:
            module.__class__ = nn.Sequential
    return plain


def _assert_same_as_plain(model: nn.Module, x: torch.Tensor, what: str) -> None:
    """``model`` and its plain copy give the same outputs, gradients and buffers, in train then eval."""
    plain = _plain(model)
    for training in (True, False):
        model.train(training)
        plain.train(training)
        mode = "train" if training else "eval"
        xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
        with torch.random.fork_rng():
            torch.manual_seed(0)  # the same dropout masks in both
            out = model(xs[0])
            torch.manual_seed(0)
            ref = plain(xs[1])
        assert_close(out, ref, f"{what} ({mode}) output")
        out.pow(2).sum().backward()
        ref.pow(2).sum().backward()
        assert_close(xs[0].grad, xs[1].grad, f"{what} ({mode}) input gradient")
        for (name, p), q in zip(model.named_parameters(), plain.parameters()):
            assert_close(p.grad, q.grad, f"{what} ({mode}) gradient of {name}")
        for (name, b), c in zip(model.named_buffers(), plain.buffers()):
            assert_close(b, c, f"{what} ({mode}) buffer {name}")
        model.zero_grad()
        plain.zero_grad()


FC_INPUT = (12,)
CONV_INPUT = (3, 8, 8)
MODELS = {
    "fc": (lambda ops: build_fc_net([8, 6], input_dim=12, ops=ops), FC_INPUT, {"affine_relu": 2}),
    "fc-batchnorm": (
        lambda ops: build_fc_net([8, 6], input_dim=12, normalization="batchnorm", ops=ops),
        FC_INPUT,
        {"affine_bn_relu": 2},
    ),
    "fc-layernorm-dropout": (
        lambda ops: build_fc_net(
            [8], input_dim=12, normalization="layernorm", dropout_keep_ratio=0.5, ops=ops
        ),
        FC_INPUT,
        {"affine_ln_relu": 1},
    ),
    "three-layer-convnet": (
        lambda ops: build_three_layer_convnet(
            CONV_INPUT, num_filters=4, filter_size=3, hidden_dim=10, ops=ops
        ),
        CONV_INPUT,
        {"conv_relu_pool": 1, "affine_relu": 1},
    ),
    "convnet-batchnorm": (
        lambda ops: build_convnet(channels=(4, 6), hidden_dims=(5,), input_dim=CONV_INPUT, ops=ops),
        CONV_INPUT,
        {"conv_bn_relu": 4, "affine_relu": 1},
    ),
    "convnet-plain": (
        lambda ops: build_convnet(channels=(4,), normalization=None, input_dim=CONV_INPUT, ops=ops),
        CONV_INPUT,
        {"conv_relu": 1, "conv_relu_pool": 1},
    ),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_builders_fuse_and_match_plain_sequential(name: str, sandwich_calls: Counter[str]) -> None:
    build, input_shape, expected = MODELS[name]
    torch.manual_seed(0)
    model = build("manual")
    assert type(model) is SandwichSequential, f"{name}: ops='manual' built {type(model).__name__}"
    assert type(build("builtin")) is nn.Sequential, f"{name}: ops='builtin' is not a plain nn.Sequential"
    x = torch.randn(4, *input_shape, generator=torch.Generator().manual_seed(1))
    model(x)
    assert dict(sandwich_calls) == expected, (
        f"{name}: sandwich calls {dict(sandwich_calls)}, expected {expected}"
    )
    _assert_same_as_plain(model, x, name)


def test_batch_norm_momentum_none_and_no_running_stats(sandwich_calls: Counter[str]) -> None:
    """Cumulative averages (momentum=None, num_batches_tracked); batch statistics in eval without buffers."""
    torch.manual_seed(0)
    model = build_convnet(channels=(4,), convs_per_stage=2, input_dim=CONV_INPUT)
    model.norm1_1.momentum = None
    model.norm1_2 = mnn.BatchNorm2d(4, track_running_stats=False, affine=False)
    x = torch.randn(4, *CONV_INPUT, generator=torch.Generator().manual_seed(1))
    for _ in range(2):  # two steps: the cumulative average differs from the first batch's statistics
        _assert_same_as_plain(model, x, "momentum=None")
    assert sandwich_calls["conv_bn_relu"] == 8, (
        f"expected 2 fused conv_bn_relu per call: {dict(sandwich_calls)}"
    )
    assert int(model.norm1_1.num_batches_tracked) == 2, "num_batches_tracked counts the training calls"


def test_state_dict_and_checkpoints_unchanged() -> None:
    torch.manual_seed(0)
    manual = build_convnet(channels=(4,), hidden_dims=(5,), input_dim=CONV_INPUT)
    builtin = build_convnet(channels=(4,), hidden_dims=(5,), input_dim=CONV_INPUT, ops="builtin")
    assert list(manual.state_dict()) == list(builtin.state_dict()), (
        "state_dict keys differ from nn.Sequential's"
    )
    manual.load_state_dict(builtin.state_dict())
    builtin.load_state_dict(manual.state_dict())
    for (key, a), b in zip(manual.state_dict().items(), builtin.state_dict().values()):
        assert torch.equal(a, b), f"{key} did not load across SandwichSequential and nn.Sequential"
    assert repr(manual).replace("SandwichSequential(", "Sequential(", 1) == repr(_plain(manual)), (
        "the repr is not nn.Sequential's with the class name changed"
    )


def _hooked(model: nn.Module) -> nn.Module:
    model[1].register_forward_hook(lambda *_: None)
    return model


class _PassThroughMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        return func(*args, **(kwargs or {}))


# name: (layers, input shape, what is fused instead per forward: a shorter run, or nothing)
FALLBACKS = {
    "reflect padding": (
        lambda: [mnn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), mnn.ReLU()],
        (2, 3, 6, 6),
        {},
    ),
    "im2col conv": (lambda: [mnn.Conv2d(3, 4, 3, algorithm="im2col"), mnn.ReLU()], (2, 3, 6, 6), {}),
    "pool padding": (
        lambda: [mnn.Conv2d(3, 4, 1), mnn.ReLU(), mnn.MaxPool2d(3, 2, padding=1)],
        (2, 3, 6, 6),
        {"conv_relu": 1},
    ),
    "pool ceil_mode": (
        lambda: [mnn.Conv2d(3, 4, 1), mnn.ReLU(), mnn.MaxPool2d(2, ceil_mode=True)],
        (2, 3, 5, 5),
        {"conv_relu": 1},
    ),
    "pool dilation": (
        lambda: [mnn.Conv2d(3, 4, 1), mnn.ReLU(), mnn.MaxPool2d(2, dilation=2)],
        (2, 3, 6, 6),
        {"conv_relu": 1},
    ),
    "layer norm over 2 dims": (lambda: [mnn.Linear(5, 4), mnn.LayerNorm((3, 4)), mnn.ReLU()], (2, 3, 5), {}),
    "batch norm 1d on 3-D": (lambda: [mnn.Linear(5, 4), mnn.BatchNorm1d(4), mnn.ReLU()], (2, 4, 5), {}),
    "built-in relu": (lambda: [mnn.Linear(5, 4), nn.ReLU()], (2, 5), {}),
    "built-in linear": (lambda: [nn.Linear(5, 4), mnn.ReLU()], (2, 5), {}),
    "sync batch norm": (
        lambda: [mnn.Conv2d(3, 4, 3), mnn.SyncBatchNorm(4), mnn.ReLU()],
        (2, 3, 6, 6),
        {},
    ),
    "hooked child": (lambda: list(_hooked(nn.Sequential(mnn.Linear(5, 4), mnn.ReLU()))), (2, 5), {}),
}


@pytest.mark.parametrize("name", list(FALLBACKS))
def test_unsupported_runs_fall_back_to_the_children(name: str, sandwich_calls: Counter[str]) -> None:
    layers, input_shape, instead = FALLBACKS[name]
    torch.manual_seed(0)
    model = SandwichSequential(*layers())
    x = torch.randn(*input_shape, generator=torch.Generator().manual_seed(1))
    _assert_same_as_plain(model, x, name)  # one forward in train, one in eval
    expected = {op: 2 * count for op, count in instead.items()}
    assert dict(sandwich_calls) == expected, f"{name}: fused {dict(sandwich_calls)}, expected {expected}"


@contextlib.contextmanager
def _global_hook() -> Iterator[None]:
    handle = nn.modules.module.register_module_forward_hook(lambda *_: None)
    try:
        yield
    finally:
        handle.remove()


@pytest.mark.parametrize("observer", [_global_hook, _PassThroughMode], ids=["global hook", "function mode"])
def test_observed_calls_fall_back(observer: Callable[[], Any], sandwich_calls: Counter[str]) -> None:
    """Module hooks and function modes see every layer's call, so nothing is fused under them."""
    model = SandwichSequential(mnn.Linear(5, 4), mnn.ReLU())
    x = torch.randn(2, 5)
    with observer():
        out = model(x)
    assert not sandwich_calls, f"fused under an observer: {dict(sandwich_calls)}"
    model(x)
    assert sandwich_calls["affine_relu"] == 1, "not fused once the observer is gone"
    assert_close(out, _plain(model)(x), "output under an observer")


def test_hooks_of_fused_children_still_fire() -> None:
    model = build_fc_net([6], input_dim=5, normalization="batchnorm")
    seen = []
    model.norm1.register_forward_hook(lambda module, inputs, out: seen.append(tuple(out.shape)))
    model(torch.randn(3, 5))
    assert seen == [(3, 6)], f"the batch norm's hook saw {seen}: its run must not be fused"


def test_sandwich_converts_plain_sequentials_in_place() -> None:
    class Custom(nn.Sequential):
        pass

    inner, custom = nn.Sequential(mnn.Conv2d(3, 4, 3), mnn.ReLU()), Custom(mnn.Linear(4, 4), mnn.ReLU())
    model = nn.Sequential(inner, nn.Flatten(), nn.ModuleDict({"head": custom}))
    keys = list(model.state_dict())
    assert sandwich(model) is model, "sandwich() must return the model it converted"
    assert type(model) is SandwichSequential and type(inner) is SandwichSequential, (
        "a plain Sequential was kept"
    )
    assert type(custom) is Custom, "a Sequential subclass (its own forward) must be left alone"
    assert list(model.state_dict()) == keys, "converting changed the state_dict keys"
