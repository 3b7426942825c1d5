"""Conformance of the manual twins on PyTorch's own test inputs.

PyTorch tests its operators on inputs made by ``torch.testing._internal``: the OpInfo database
(``common_methods_invocations.op_db``: sample inputs and error inputs of each functional op), the ModuleInfo
database (``common_modules.module_db``: constructor and forward inputs, and error inputs, of each module)
and ``common_nn``'s module tests. This suite runs those inputs through the manual twins and their built-ins,
on CPU in float64 and float32:

- every sample of every OpInfo named in ``custom_ops.testing.OPINFO_NAMES``: the outputs, the gradients
  (for a fixed random cotangent) w.r.t. every tensor argument that requires grad — input, weight, bias —
  and every tensor argument after the call (running statistics updated in place) must agree;
- every error input of those OpInfos: the manual op raises an instance of the exception type torch raises
  (the message may differ);
- torch's forward-AD check (``supports_forward_ad``, with batched forward gradients where the OpInfo sets
  ``check_batched_forward_grad``) and batched-gradient check (``check_batched_grad``) on the first few
  float64 samples of the OpInfos that declare them, as ``test_ops_fwd_gradients`` and
  ``test_ops_gradients`` run them;
- every module input of every ModuleInfo whose module has a twin in ``custom_ops.testing.MODULE_CASES``,
  train and eval: identical manual and built-in modules run two steps of forward, backward and SGD;
  outputs, input and parameter gradients, parameters and buffers must agree at each step; and the
  module error inputs raise the exception type torch raises;
- ``common_nn``'s module tests of the same modules, likewise.

Randomness: dropout's OpInfo seeds the global RNG (42) before each call; the manual twin gets the same seed,
and on CPU its mask is bit-identical to torch's. Module steps seed the RNG identically for both twins.
Arguments are never dropped: each sample's args and kwargs go to the manual twin as they are, so an
argument it does not take fails the test. Samples a twin refuses are listed in :data:`REFUSALS` with the
reason; the test asserts the refusal is a clear error (an obsolete entry fails).

CUDA (marker ``cuda``, skipped without a GPU): the same checks per (op, dtype) and (module, dtype, mode).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

import custom_ops.functional as MF
from custom_ops.errors import OpArgumentError, OpDtypeError
from custom_ops.testing import MODULE_CASES, OPINFO_NAMES

# Importing torch's test utilities freezes the global backend flags (torch.backends.disable_global_flags(),
# for its own test harness): afterwards `torch.backends.cudnn.benchmark = ...` raises, and Lightning's
# Trainer sets it. Restore the flag for the rest of the test session.
_FLAGS_FROZEN = torch.backends.flags_frozen()
from torch.testing._internal import common_nn  # noqa: E402
from torch.testing._internal.common_methods_invocations import op_db  # noqa: E402
from torch.testing._internal.common_modules import (  # noqa: E402
    FunctionInput,
    ModuleErrorEnum,
    ModuleInfo,
    module_db,
)
from torch.testing._internal.opinfo.core import OpInfo, SampleInput  # noqa: E402

if not _FLAGS_FROZEN:
    vars(torch.backends)["__allow_nonbracketed_mutation_flag"] = True

DTYPES = (torch.float64, torch.float32)
CUDA_AVAILABLE = torch.cuda.is_available()
# Built-in twin -> manual module class, from the registry.
MODULE_TWINS: dict[type[nn.Module], type[nn.Module]] = {case.builtin: case.manual for case in MODULE_CASES}
# OpInfo name -> manual op name.
OPINFO_TWINS: dict[str, str] = {opinfo: op for op, opinfo in OPINFO_NAMES.items()}


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    """float64: torch's defaults. float32: the manual forwards and backwards sum in another order than the
    built-ins, on values up to ~10 (make_tensor's range) and, in the norms, scaled by 1/sqrt(var + eps) (up
    to ~300): allow a few float32 ulps of such terms (e.g. a layer norm of one element, whose exact input
    gradient 0 torch computes as 1e-5)."""
    if dtype == torch.float64:
        return {"rtol": 1e-7, "atol": 1e-7}
    return {"rtol": 1e-5, "atol": 1e-4}


# ------------------------------------------------------------------------------------------ refusals
@dataclasses.dataclass(frozen=True)
class Refusal:
    """Samples of ``opinfo`` matching ``applies`` are refused by the manual twin (with a clear error)."""

    opinfo: str
    applies: Callable[[SampleInput], bool]
    reason: str


REFUSALS: tuple[Refusal, ...] = ()
"""The documented refusals: samples torch accepts that a manual twin rejects with a clear error."""


def refusal_for(opinfo: str, sample: SampleInput) -> Refusal | None:
    return next((r for r in REFUSALS if r.opinfo == opinfo and r.applies(sample)), None)


# ------------------------------------------------------------------------------------------- helpers
def tree_map(fn: Callable[[Any], Any], obj: Any) -> Any:
    """``fn`` applied to every leaf of nested lists, tuples and dicts."""
    if isinstance(obj, (list, tuple)):
        mapped = [tree_map(fn, o) for o in obj]
        return type(obj)(mapped) if not isinstance(obj, torch.Size) else obj
    if isinstance(obj, dict):
        return {k: tree_map(fn, v) for k, v in obj.items()}
    return fn(obj)


def tensors_in(obj: Any) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    tree_map(lambda o: found.append(o) if isinstance(o, torch.Tensor) else None, obj)
    return found


def fresh(obj: Any) -> Any:
    """A copy of ``obj`` whose tensors are new leaves with the same values, strides and requires_grad."""

    def copy_tensor(o: Any) -> Any:
        if not isinstance(o, torch.Tensor):
            return o
        t = o.detach().clone()
        return t.requires_grad_(o.requires_grad) if t.is_floating_point() else t

    return tree_map(copy_tensor, obj)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str) -> Iterator[None]:
    """The global RNG (CPU, and the device's) seeded with ``seed`` inside, restored after."""
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def describe(t: Any) -> str:
    if isinstance(t, torch.Tensor):
        return f"tensor{tuple(t.shape)}"
    if isinstance(t, (list, tuple)):
        return "(" + ", ".join(describe(o) for o in t) + ")"
    return repr(t)


def sample_text(sample: SampleInput) -> str:
    kwargs = ", ".join(f"{k}={describe(v)}" for k, v in sample.kwargs.items())
    return f"input {describe(sample.input)}, args {describe(sample.args)}, kwargs {{{kwargs}}}"


def assert_same(
    actual: Any, expected: Any, what: str, dtype: torch.dtype, tol: dict[str, float] | None = None
) -> None:
    """``actual`` (manual) equals ``expected`` (built-in): same type, tensors close (integer tensors and
    NaNs equal), with the shapes and largest difference in the message; ``tol`` overrides
    :func:`tolerance`."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), (
            f"{what}: manual gave {type(actual).__name__}, torch a tensor"
        )
        close = (tol or tolerance(dtype)) if expected.is_floating_point() else {"rtol": 0, "atol": 0}
        torch.testing.assert_close(
            actual,
            expected,
            equal_nan=True,
            **close,
            msg=lambda m: f"{what} (manual {tuple(actual.shape)} vs torch {tuple(expected.shape)}): {m}",
        )
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected), (
            f"{what}: manual gave {describe(actual)}, torch {describe(expected)}"
        )
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{what}[{i}]", dtype, tol)
    else:
        assert actual == expected, f"{what}: manual {actual!r}, torch {expected!r}"


def cotangents(outputs: list[torch.Tensor], seed: int = 7) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.device, o.dtype) for o in outputs]


@dataclasses.dataclass
class Run:
    """What one call did: its output, the gradients of the leaves, the tensor arguments after the call."""

    output: Any
    grads: list[torch.Tensor | None]
    output_requires_grad: list[bool]
    arguments_after: list[torch.Tensor]
    param_grads: list[torch.Tensor | None] = dataclasses.field(default_factory=list)


def run_op(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    params: list[torch.Tensor] | None = None,
) -> Run:
    """Call ``fn`` on fresh copies of the tensors of ``args`` and ``kwargs``; differentiate the floating
    outputs (for fixed cotangents) w.r.t. every argument tensor that requires grad, then w.r.t. ``params``
    (a module's)."""
    args, kwargs = fresh((args, kwargs))
    leaves = [t for t in tensors_in((args, kwargs)) if t.requires_grad] + list(params or [])
    out = fn(*args, **kwargs)
    outputs = [o for o in tensors_in(out) if o.is_floating_point()]
    differentiable = [o for o in outputs if o.requires_grad]
    grads: list[torch.Tensor | None] = [None] * len(leaves)
    if differentiable and leaves:
        grads = list(
            torch.autograd.grad(differentiable, leaves, cotangents(differentiable), allow_unused=True)
        )
    after = [t.detach() for t in tensors_in((args, kwargs))]
    return Run(out, grads, [o.requires_grad for o in outputs], after)


def compare_runs(
    manual: Run, builtin: Run, what: str, dtype: torch.dtype, tol: dict[str, float] | None = None
) -> None:
    assert_same(manual.output, builtin.output, f"{what}: output", dtype, tol)
    assert manual.output_requires_grad == builtin.output_requires_grad, (
        f"{what}: outputs requiring grad: manual {manual.output_requires_grad}, "
        f"torch {builtin.output_requires_grad}"
    )
    for i, (m, b) in enumerate(zip(manual.grads, builtin.grads)):
        assert (m is None) == (b is None), (
            f"{what}: gradient of argument tensor {i}: manual {describe(m)}, torch {describe(b)}"
        )
        if b is not None:
            assert_same(m, b, f"{what}: gradient of argument tensor {i}", dtype, tol)
    assert_same(
        manual.arguments_after,
        builtin.arguments_after,
        f"{what}: argument tensors after the call",
        dtype,
        tol,
    )


# ---------------------------------------------------------------------------------- OpInfo samples
OPINFOS: list[OpInfo] = [info for info in op_db if info.name in OPINFO_TWINS]


def opinfo_id(info: OpInfo) -> str:
    return info.name + (f".{info.variant_test_name}" if info.variant_test_name else "")


def is_random(info: OpInfo) -> bool:
    """Whether the OpInfo seeds the RNG before calling its op (dropout)."""
    code = getattr(info.op, "__code__", None)
    return code is not None and "wrapper_set_seed" in code.co_names


def _einsum_as_opinfo(tensors: list[torch.Tensor], equation: str) -> torch.Tensor:
    """The manual einsum called as torch's einsum OpInfo calls its op: ``(operands, equation)``."""
    return MF.einsum(equation, tensors)


# OpInfos whose op takes its arguments in another order than torch's function: the manual twin, called the
# same way.
OPINFO_CALLS: dict[str, Callable[..., Any]] = {"einsum": _einsum_as_opinfo}


def manual_op(info: OpInfo) -> Callable[..., Any] | None:
    """The manual twin of ``info``'s op (called as the OpInfo calls its op), seeded like torch's when the
    OpInfo seeds its op (dropout)."""
    fn = getattr(MF, OPINFO_TWINS[info.name], None)
    if fn is None:
        return None
    fn = OPINFO_CALLS.get(info.name, fn)
    if is_random(info):
        from torch.testing._utils import wrapper_set_seed

        return functools.partial(wrapper_set_seed, fn)
    return fn


def skip_reason(info: OpInfo, dtype: torch.dtype, device: str = "cpu") -> str | None:
    if manual_op(info) is None:
        return "no manual twin yet"
    if dtype not in info.supported_dtypes(device):
        return f"torch's OpInfo {opinfo_id(info)} does not cover {dtype} on {device}"
    return None


@functools.cache
def samples(info_id: str, device: str, dtype: torch.dtype) -> tuple[SampleInput, ...]:
    info = next(i for i in OPINFOS if opinfo_id(i) == info_id)
    with seeded(0, device):
        return tuple(info.sample_inputs(device, dtype, requires_grad=True))


@functools.cache
def error_inputs(info_id: str, device: str) -> tuple[Any, ...]:
    info = next(i for i in OPINFOS if opinfo_id(i) == info_id)
    if info.error_inputs_func is None:
        return ()
    with seeded(0, device):
        return tuple(info.error_inputs(device))


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _sample_params() -> list[Any]:
    params = []
    for info in OPINFOS:
        for dtype in DTYPES:
            reason = skip_reason(info, dtype)
            base = f"{opinfo_id(info)}-{dtype_name(dtype)}"
            if reason:
                params.append(pytest.param(info, dtype, -1, id=base, marks=pytest.mark.skip(reason=reason)))
                continue
            for index in range(len(samples(opinfo_id(info), "cpu", dtype))):
                params.append(
                    pytest.param(info, dtype, index, id=f"{opinfo_id(info)}-{index}-{dtype_name(dtype)}")
                )
    return params


def check_sample(info: OpInfo, sample: SampleInput, dtype: torch.dtype, what: str) -> str | None:
    """Compare the manual twin with torch on one sample; the refusal reason if it is a documented one."""
    manual = manual_op(info)
    assert manual is not None
    refusal = refusal_for(info.name, sample)
    if refusal is not None:
        with pytest.raises((OpArgumentError, OpDtypeError)):
            manual(sample.input, *sample.args, **sample.kwargs)
        return refusal.reason
    args = (sample.input, *sample.args)
    builtin = run_op(info.op, args, sample.kwargs)
    try:
        mine = run_op(manual, args, sample.kwargs)
    except Exception as err:
        raise AssertionError(f"{what}: manual raised {type(err).__name__}: {err}") from err
    p, training = sample.kwargs.get("p", 0.5), sample.kwargs.get("training", True)
    if is_random(info) and sample.input.device.type != "cpu" and 0 < p < 1 and training:
        check_dropout_structure(mine, sample, p, what, dtype)  # not the mask stream of torch's fused kernel
    else:
        compare_runs(mine, builtin, what, dtype)
    return None


def check_dropout_structure(run: Run, sample: SampleInput, p: float, what: str, dtype: torch.dtype) -> None:
    """A dropout whose mask cannot match torch's (CUDA's fused kernel draws another stream): each element is
    dropped (0) or kept and scaled by 1 / (1 - p), and the input gradient is the cotangent through the same
    mask."""
    x, out = sample.input.detach(), run.output.detach()
    kept = out != 0
    assert_same(out[kept], (x / (1 - p))[kept], f"{what}: kept elements", dtype)
    (cotangent,) = cotangents([out])
    assert_same(run.grads[0], cotangent * kept / (1 - p), f"{what}: input gradient through the mask", dtype)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")  # torch's, not ours
@pytest.mark.parametrize(("info", "dtype", "index"), _sample_params())
def test_opinfo_sample(info: OpInfo, dtype: torch.dtype, index: int) -> None:
    sample = samples(opinfo_id(info), "cpu", dtype)[index]
    what = f"{opinfo_id(info)} sample {index} ({sample_text(sample)}) {dtype_name(dtype)}"
    reason = check_sample(info, sample, dtype, what)
    if reason:
        pytest.skip(f"documented refusal: {reason}")


def _error_params() -> list[Any]:
    params = []
    for info in OPINFOS:
        base = opinfo_id(info)
        if manual_op(info) is None:
            params.append(
                pytest.param(info, -1, id=f"{base}-errors", marks=pytest.mark.skip("no manual twin yet"))
            )
            continue
        for index in range(len(error_inputs(base, "cpu"))):
            params.append(pytest.param(info, index, id=f"{base}-error{index}"))
    return params


def check_error_input(manual: Callable[..., Any], builtin: Callable[..., Any], error: Any, what: str) -> None:
    sample = error.sample_input
    try:
        builtin(sample.input, *sample.args, **sample.kwargs)
    except error.error_type:
        pass
    else:
        pytest.skip(f"{what}: torch itself does not raise {error.error_type.__name__} here (torch version)")
    try:
        manual(sample.input, *sample.args, **sample.kwargs)
    except Exception as err:
        assert isinstance(err, error.error_type), (
            f"{what} ({sample_text(sample)}): manual raised {type(err).__name__} ({err}), "
            f"torch raises {error.error_type.__name__} ({error.error_regex!r})"
        )
    else:
        raise AssertionError(f"{what} ({sample_text(sample)}): manual accepted what torch refuses")


@pytest.mark.parametrize(("info", "index"), _error_params())
def test_opinfo_error_input(info: OpInfo, index: int) -> None:
    error = error_inputs(opinfo_id(info), "cpu")[index]
    manual = manual_op(info)
    assert manual is not None
    check_error_input(manual, info.op, error, f"{opinfo_id(info)} error input {index}")


# ------------------------------------------------------------------- forward AD and batched gradients
GRADCHECK_SAMPLES = 3
"""Samples per OpInfo run through torch's forward-AD and batched-gradient checks (the first ones with a
tensor that requires grad): a lean pass over what torch's test_ops_gradients and test_ops_fwd_gradients
run on every sample."""


def gradcheck_inputs(sample: SampleInput) -> tuple[Callable[..., Any], tuple[torch.Tensor, ...]]:
    """``(fn, tensors)`` as torch's ``_check_helper`` builds them: ``fn(*tensors)`` is the call with the
    sample's tensors that require grad (fresh copies) put back in their places. A list of tensors as the
    input (einsum's operands) is spread into its tensors, as torch's helper does."""
    args, kwargs = fresh(((sample.input, *sample.args), sample.kwargs))
    listed = isinstance(args[0], (list, tuple))
    if listed:
        args = (*args[0], *args[1:])
    positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.requires_grad]
    keys = [k for k, v in kwargs.items() if isinstance(v, torch.Tensor) and v.requires_grad]
    n_listed = len(sample.input) if listed else 0

    def bind(op: Callable[..., Any], info: OpInfo) -> Callable[..., Any]:
        def fn(*tensors: torch.Tensor) -> Any:
            full, named = list(args), dict(kwargs)
            for i, t in zip(positions, tensors):
                full[i] = t
            if listed:
                full = [full[:n_listed], *full[n_listed:]]
            for k, t in zip(keys, tensors[len(positions) :]):
                named[k] = t
            output = info.gradcheck_wrapper(op, *full, **named)
            process = sample.output_process_fn_grad
            return output if process is None else process(output)

        return fn

    return bind, (*[args[i] for i in positions], *[kwargs[k] for k in keys])


def _gradcheck_params(flag: str) -> list[Any]:
    """``(info, index)`` of the first :data:`GRADCHECK_SAMPLES` float64 samples of every OpInfo that
    declares ``flag``; a skipped parameter for an OpInfo that does not."""
    params = []
    for info in OPINFOS:
        reason = skip_reason(info, torch.float64)
        if reason is None and not getattr(info, flag):
            reason = f"torch's OpInfo {opinfo_id(info)} does not declare {flag}"
        if reason:
            params.append(pytest.param(info, -1, id=opinfo_id(info), marks=pytest.mark.skip(reason=reason)))
            continue
        chosen = [
            index
            for index, sample in enumerate(samples(opinfo_id(info), "cpu", torch.float64))
            if any(t.requires_grad for t in tensors_in((sample.input, sample.args, sample.kwargs)))
        ][:GRADCHECK_SAMPLES]
        params += [pytest.param(info, index, id=f"{opinfo_id(info)}-{index}") for index in chosen]
    return params


def torch_gradcheck(info: OpInfo, index: int, **checks: bool) -> None:
    """torch's gradcheck of the manual twin on one float64 sample of ``info``, with ``checks``; the
    failure names the sample."""
    sample = samples(opinfo_id(info), "cpu", torch.float64)[index]
    bind, tensors = gradcheck_inputs(sample)
    fn = bind(manual_op(info), info)
    fast = info.gradcheck_fast_mode
    try:
        torch.autograd.gradcheck(
            fn,
            tensors,
            nondet_tol=info.gradcheck_nondet_tol,
            fast_mode=True if fast is None else fast,
            check_grad_dtypes=True,
            **checks,
        )
    except Exception as err:
        first = str(err).strip().splitlines()[0]
        raise AssertionError(
            f"{opinfo_id(info)} sample {index} ({sample_text(sample)}) float64: {type(err).__name__}: {first}"
        ) from err


@pytest.mark.parametrize(("info", "index"), _gradcheck_params("supports_forward_ad"))
def test_opinfo_forward_ad(info: OpInfo, index: int) -> None:
    """torch's test_forward_mode_AD: forward-mode derivatives against finite differences, and batched
    forward-mode derivatives where the OpInfo checks them."""
    torch_gradcheck(
        info,
        index,
        check_forward_ad=True,
        check_backward_ad=False,
        check_batched_grad=False,
        check_undefined_grad=False,
        # a random op (the OpInfo seeds it) cannot run under gradcheck's vmap, torch's own included
        check_batched_forward_grad=info.check_batched_forward_grad and not is_random(info),
    )


@pytest.mark.parametrize(("info", "index"), _gradcheck_params("check_batched_grad"))
def test_opinfo_batched_grad(info: OpInfo, index: int) -> None:
    """torch's test_fn_grad: gradients against finite differences, batched gradients (the backward under
    vmap) and undefined output gradients."""
    torch_gradcheck(info, index, check_batched_grad=True, check_undefined_grad=True)


# ---------------------------------------------------------------------------------- module inputs
MODULEINFOS: list[ModuleInfo] = [info for info in module_db if info.module_cls in MODULE_TWINS]
LR = 0.1
FLOAT32_MODULE_TOLERANCE: dict[type[nn.Module], dict[str, float]] = {
    nn.MultiheadAttention: {"rtol": 1e-3, "atol": 1e-3},
}
"""float32 tolerances of the module steps where the default is below torch's own float32 error: after an SGD
step on the ModuleInfo's 3-feature inputs, multi-head attention's in-projection gradients reach ~50-130 and
torch's float32 result is up to ~1.5e-4 (relative) from its float64 one (the manual one as close or closer),
so the two float32 results can differ by a few 1e-4 relative (float64 is checked at the default
tolerance)."""


def build(cls: type[nn.Module], args: Any, kwargs: Any, device: str, dtype: torch.dtype) -> nn.Module:
    return cls(*copy.deepcopy(args), **copy.deepcopy(kwargs)).to(device=device, dtype=dtype)


def step_twice(
    builtin_cls: type[nn.Module],
    constructor: Any,
    forward: Any,
    device: str,
    dtype: torch.dtype,
    training: bool,
    what: str,
) -> None:
    """Identical built-in and manual modules, two steps of forward / backward / SGD, compared at each."""
    manual_cls = MODULE_TWINS[builtin_cls]
    tol = FLOAT32_MODULE_TOLERANCE.get(builtin_cls) if dtype == torch.float32 else None
    with seeded(0, device):  # the same initial weights whatever ran before (and under pytest-xdist)
        builtin = build(builtin_cls, constructor.args, constructor.kwargs, device, dtype)
    manual = build(manual_cls, constructor.args, constructor.kwargs, device, dtype)
    manual.load_state_dict(builtin.state_dict())
    builtin.train(training)
    manual.train(training)
    for step in range(2):
        names = [n for n, p in builtin.named_parameters() if p.requires_grad]
        runs = []
        for module in (manual, builtin):
            with seeded(step, device):
                params = [p for p in module.parameters() if p.requires_grad]
                runs.append(run_op(module, forward.args, forward.kwargs, params))
        mine, theirs = runs
        here = f"{what} step {step + 1}"
        n_inputs = len(mine.grads) - len(names)
        for run in runs:  # name the parameter gradients in messages: compare them first
            run.param_grads = run.grads[n_inputs:]
        for name, m, b in zip(names, mine.param_grads, theirs.param_grads):
            assert (m is None) == (b is None), (
                f"{here}: gradient of {name}: manual {describe(m)}, torch {describe(b)}"
            )
            if b is not None:
                assert_same(m, b, f"{here}: gradient of {name}", dtype, tol)
        compare_runs(mine, theirs, here, dtype, tol)
        with torch.no_grad():
            for module, run in ((manual, mine), (builtin, theirs)):
                for p, g in zip([p for p in module.parameters() if p.requires_grad], run.param_grads):
                    if g is not None:
                        p.sub_(LR * g)
        for (name, m), (_, b) in zip(manual.state_dict().items(), builtin.state_dict().items()):
            assert_same(m, b, f"{here}: {name} after the SGD step", dtype, tol)


@functools.cache
def module_inputs(cls: type[nn.Module], device: str, dtype: torch.dtype, training: bool) -> tuple[Any, ...]:
    info = next(i for i in MODULEINFOS if i.module_cls is cls)
    with seeded(0, device):
        return tuple(
            info.module_inputs_func(info, device=device, dtype=dtype, requires_grad=True, training=training)
        )


def module_skip_reason(info: ModuleInfo, dtype: torch.dtype) -> str | None:
    if dtype not in info.dtypes:
        return f"torch's ModuleInfo {info.name} does not cover {dtype}"
    return None


def _module_params() -> list[Any]:
    params = []
    for info in MODULEINFOS:
        for dtype in DTYPES:
            for training in (True, False):
                mode = "train" if training else "eval"
                base = f"{info.name}-{dtype_name(dtype)}-{mode}"
                reason = module_skip_reason(info, dtype)
                if reason:
                    params.append(
                        pytest.param(
                            info, dtype, training, -1, id=base, marks=pytest.mark.skip(reason=reason)
                        )
                    )
                    continue
                for index, mi in enumerate(module_inputs(info.module_cls, "cpu", dtype, training)):
                    desc = f"-{mi.desc}" if mi.desc else ""
                    params.append(
                        pytest.param(
                            info,
                            dtype,
                            training,
                            index,
                            id=f"{info.name}-{index}{desc}-{dtype_name(dtype)}-{mode}",
                        )
                    )
    return params


@pytest.mark.parametrize(("info", "dtype", "training", "index"), _module_params())
def test_module_input(info: ModuleInfo, dtype: torch.dtype, training: bool, index: int) -> None:
    mi = module_inputs(info.module_cls, "cpu", dtype, training)[index]
    what = (
        f"{info.name} input {index} ({mi.desc or 'no desc'}: "
        f"constructor {describe(mi.constructor_input.args)} {mi.constructor_input.kwargs}, "
        f"forward {describe(mi.forward_input.args)}) {dtype_name(dtype)} {'train' if training else 'eval'}"
    )
    step_twice(info.module_cls, mi.constructor_input, mi.forward_input, "cpu", dtype, training, what)


@functools.cache
def module_error_inputs(cls: type[nn.Module], device: str) -> tuple[Any, ...]:
    info = next(i for i in MODULEINFOS if i.module_cls is cls)
    if info.module_error_inputs_func is None:
        return ()
    with seeded(0, device):
        return tuple(
            info.module_error_inputs_func(
                info, device=device, dtype=torch.float32, requires_grad=False, training=True
            )
        )


def _module_error_params() -> list[Any]:
    return [
        pytest.param(info, index, id=f"{info.name}-error{index}")
        for info in MODULEINFOS
        for index in range(len(module_error_inputs(info.module_cls, "cpu")))
    ]


def check_module_error(builtin_cls: type[nn.Module], error: Any, device: str, what: str) -> None:
    mi = error.module_error_input
    ci, fi = mi.constructor_input, mi.forward_input

    def attempt(cls: type[nn.Module]) -> None:
        module = build(cls, ci.args, ci.kwargs, device, torch.float32)
        if error.error_on == ModuleErrorEnum.FORWARD_ERROR:
            module(*fresh(fi.args), **fresh(fi.kwargs))

    try:
        attempt(builtin_cls)
    except error.error_type:
        pass
    else:
        pytest.skip(f"{what}: torch itself does not raise {error.error_type.__name__} here (torch version)")
    try:
        attempt(MODULE_TWINS[builtin_cls])
    except Exception as err:
        assert isinstance(err, error.error_type), (
            f"{what}: manual raised {type(err).__name__} ({err}), torch raises {error.error_type.__name__} "
            f"({error.error_regex!r})"
        )
    else:
        raise AssertionError(f"{what}: manual accepted what torch refuses ({error.error_regex!r})")


@pytest.mark.parametrize(("info", "index"), _module_error_params())
def test_module_error_input(info: ModuleInfo, index: int) -> None:
    error = module_error_inputs(info.module_cls, "cpu")[index]
    check_module_error(info.module_cls, error, "cpu", f"{info.name} error input {index}")


# ------------------------------------------------------------------------------ common_nn module tests
NN_TESTS: list[dict[str, Any]] = [
    test
    for test in common_nn.module_tests + common_nn.get_new_module_tests()
    if "constructor" not in test and getattr(nn, test.get("module_name", ""), None) in MODULE_TWINS
]


def nn_test_name(test: dict[str, Any]) -> str:
    return test.get("fullname") or test["module_name"] + (f"_{test['desc']}" if test.get("desc") else "")


def nn_test_input(test: dict[str, Any], dtype: torch.dtype, device: str) -> torch.Tensor:
    with seeded(0, device):
        x = test["input_fn"]() if "input_fn" in test else torch.randn(test["input_size"], dtype=torch.float64)
    return x.to(device=device, dtype=dtype).requires_grad_()


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_name)
@pytest.mark.parametrize("test", NN_TESTS, ids=nn_test_name)
def test_common_nn_module(test: dict[str, Any], dtype: torch.dtype) -> None:
    cls = getattr(nn, test["module_name"])
    constructor = FunctionInput(*test.get("constructor_args", ()))
    forward = FunctionInput(nn_test_input(test, dtype, "cpu"))
    for training in (True, False):
        what = f"common_nn {nn_test_name(test)} {dtype_name(dtype)} {'train' if training else 'eval'}"
        step_twice(cls, constructor, forward, "cpu", dtype, training, what)


# ------------------------------------------------------------------------------------------- CUDA
@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """Full float32 matmuls and convolutions on both sides (TF32 would differ between kernels)."""
    old = torch.backends.cuda.matmul.allow_tf32
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old


def all_samples_agree(info: OpInfo, dtype: torch.dtype, device: str) -> list[str]:
    """Every sample and error input of ``info`` on ``device``; the first line of each failure."""
    failures = []
    with no_tf32():
        for index, sample in enumerate(samples(opinfo_id(info), device, dtype)):
            what = f"{opinfo_id(info)} sample {index} ({sample_text(sample)}) {dtype_name(dtype)} {device}"
            try:
                check_sample(info, sample, dtype, what)
            except AssertionError as err:
                failures.append(str(err).splitlines()[0])
        manual = manual_op(info)
        assert manual is not None
        for index, error in enumerate(error_inputs(opinfo_id(info), device)):
            try:
                check_error_input(manual, info.op, error, f"{opinfo_id(info)} error input {index} {device}")
            except AssertionError as err:
                failures.append(str(err).splitlines()[0])
            except pytest.skip.Exception:
                pass
    return failures


def all_module_inputs_agree(info: ModuleInfo, dtype: torch.dtype, training: bool, device: str) -> list[str]:
    """Two steps on every module input of ``info`` on ``device``; the first line of each failure."""
    failures = []
    with no_tf32():
        for index, mi in enumerate(module_inputs(info.module_cls, device, dtype, training)):
            what = f"{info.name} input {index} ({mi.desc}) {dtype_name(dtype)} {training=} {device}"
            try:
                step_twice(
                    info.module_cls, mi.constructor_input, mi.forward_input, device, dtype, training, what
                )
            except AssertionError as err:
                failures.append(str(err).splitlines()[0])
    return failures


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_name)
@pytest.mark.parametrize("info", OPINFOS, ids=opinfo_id)
def test_opinfo_samples_cuda(info: OpInfo, dtype: torch.dtype) -> None:
    reason = skip_reason(info, dtype, "cuda")
    if reason:
        pytest.skip(reason)
    failures = all_samples_agree(info, dtype, "cuda")
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)


@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_name)
@pytest.mark.parametrize("info", MODULEINFOS, ids=lambda info: info.name)
def test_module_inputs_cuda(info: ModuleInfo, dtype: torch.dtype, mode: str) -> None:
    reason = module_skip_reason(info, dtype)
    if reason:
        pytest.skip(reason)
    failures = all_module_inputs_agree(info, dtype, mode == "train", "cuda")
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)


# ------------------------------------------------------------------------------------- the mapping
def test_every_twin_is_driven_by_torch_inputs() -> None:
    """Every functional twin (but the CS231n losses, whose built-in formulations have other signatures) has
    an OpInfo in this torch's op_db, and every module twin but those listed here a ModuleInfo or a
    common_nn test."""
    missing_ops = sorted(set(OPINFO_TWINS) - {info.name for info in OPINFOS})
    assert not missing_ops, f"OpInfo names not in torch's op_db: {missing_ops}"
    unmapped = sorted(set(MF.__all__) - set(OPINFO_NAMES) - {"softmax_loss", "svm_loss"})
    assert not unmapped, f"functional twins missing from custom_ops.testing.OPINFO_NAMES: {unmapped}"
    covered = {info.module_cls for info in MODULEINFOS} | {getattr(nn, t["module_name"]) for t in NN_TESTS}
    uncovered = sorted(cls.__name__ for cls in MODULE_TWINS if cls not in covered)
    # torch has no ModuleInfo nor common_nn test for these; their functional twins are covered above.
    assert set(uncovered) <= {"Dropout", "SyncBatchNorm"}, f"module twins without torch inputs: {uncovered}"
