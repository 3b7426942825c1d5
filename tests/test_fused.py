"""The fused kernels (:mod:`custom_ops.fused`) pass the reference path's own tests.

Every op whose file defines a kernel is run, on its registry samples, through the test functions of
``tests/test_ops.py`` and ``tests/test_ops_errors.py`` with fusion on: gradcheck in float64, parity with
the built-in twin in float32, layouts, autocast, torch.compile, bad inputs. Each test also checks that a
compiled kernel really ran (else it would only re-test the eager path). Compiling costs about a second per
kernel and input signature, so the first two samples of each op run by default and the rest with
``--runslow``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator

import pytest
import test_ops
import test_ops_errors
import torch

from custom_ops import fused
from custom_ops.testing import OP_CASES, SPECS, ErrorInput, OpCase, OpSpec

FUSED_OPS = [name for name, spec in SPECS.items() if fused.kernels(spec.manual.__module__)]


def _cases() -> list[pytest.param]:
    seen: dict[str, int] = {}
    params = []
    for case in OP_CASES:
        if case.op not in FUSED_OPS:
            continue
        seen[case.op] = seen.get(case.op, 0) + 1
        marks = [pytest.mark.slow] if seen[case.op] > 2 else []
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


CASES = _cases()
FIRST_CASES = [pytest.param(SPECS[op].cases[0], id=SPECS[op].cases[0].id) for op in FUSED_OPS]


def _fused_calls() -> int:
    return sum(k.fused_calls for k in fused.kernels())


@pytest.fixture(autouse=True)
def fusion_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fusion on for the test, always the compiled variant (never the eager formulas chosen for being faster
    on these tiny inputs); afterwards, a compiled kernel must have run."""
    assert not fused.unavailable(), f"the fused kernels cannot compile here: {fused.unavailable()}"
    monkeypatch.setattr(fused, "select_fastest", False)
    before = _fused_calls()
    with fused.enabled(True):
        yield
    assert _fused_calls() > before, "no compiled kernel ran: the test exercised only the eager path"


def test_the_memory_bound_ops_have_kernels() -> None:
    expected = {"relu", "dropout", "batch_norm", "layer_norm", "group_norm", "relu6", "hardsigmoid"}
    expected |= {"hardswish", "sigmoid", "silu", "gelu", "tanh", "softmax", "log_softmax"}
    assert expected <= set(FUSED_OPS), f"ops without a fused kernel: {sorted(expected - set(FUSED_OPS))}"
    with fused.enabled(True):  # the fixture's check needs one compiled call
        test_ops.test_parity_with_builtin_float32(SPECS["relu"].cases[0], "cpu")


@pytest.mark.parametrize("case", CASES)
def test_gradcheck_float64(case: OpCase) -> None:
    test_ops.test_gradcheck_float64(case)


@pytest.mark.parametrize("case", CASES)
def test_parity_with_builtin_float32(case: OpCase) -> None:
    test_ops.test_parity_with_builtin_float32(case, "cpu")


LAYOUTS = [
    pytest.param(p.values[0], layout, id=f"{p.id}-{layout}", marks=p.marks)
    for p in CASES
    for layout in ("noncontiguous", "channels_last")
    if layout == "noncontiguous" or p.values[0].spatial
]


@pytest.mark.parametrize(("case", "layout"), LAYOUTS)
def test_layouts_match_contiguous(case: OpCase, layout: str) -> None:
    test_ops.test_layouts_match_contiguous(case, layout)


@pytest.mark.parametrize("case", FIRST_CASES)
def test_autocast_close_to_builtin(case: OpCase) -> None:
    test_ops.test_autocast_close_to_builtin(case, "cpu", torch.bfloat16)


@pytest.mark.parametrize("case", FIRST_CASES)
def test_under_torch_compile_the_eager_formulas_are_traced(case: OpCase) -> None:
    """Under torch.compile the kernels step aside (Dynamo traces the eager formulas into its own graph);
    the result is the reference path's. The fixture's check is met by one uncompiled call first."""
    test_ops.run_and_grad(case, case.manual, case.inputs(torch.float32))
    test_ops.test_compile_fullgraph(case)


ERRORS = [(spec, error) for spec, error in test_ops_errors.ERRORS if spec.name in FUSED_OPS]


@pytest.mark.parametrize(("spec", "error"), ERRORS, ids=[f"{s.name}-{e.label}" for s, e in ERRORS])
def test_bad_inputs_refused(spec: OpSpec, error: ErrorInput) -> None:
    test_ops.test_parity_with_builtin_float32(spec.cases[0], "cpu")  # one compiled call for the fixture
    test_ops_errors.test_bad_input_is_rejected_with_a_clear_message(spec, error)


def test_without_a_compiler_the_eager_path_runs_after_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch._inductor

    def no_compiler(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("Failed to find a working C++ compiler")

    x = torch.randn(5)
    with monkeypatch.context() as patch:
        patch.setattr(torch._inductor, "compile", no_compiler)
        patch.setattr(fused, "_broken", {})
        kernel = fused.kernel(lambda x, y: x * y + 1)
        with pytest.warns(
            RuntimeWarning, match="could not compile the fused kernels on cpu.*C\\+\\+ compiler.*slower"
        ):
            out = kernel(x, x)
        torch.testing.assert_close(out, x * x + 1, msg="the eager fallback gave another result")
        assert "cpu" in fused.unavailable(), "the failure was not recorded"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # said once: later kernels on the device run eagerly in silence
            fused.kernel(lambda x: x - 1)(x)
    # the fixture needs one compiled call: compiling works again outside the patched block
    test_ops.test_parity_with_builtin_float32(SPECS["relu"].cases[0], "cpu")


def test_environment_variable_turns_fusion_on() -> None:
    code = "from custom_ops import fused; print(fused.is_enabled())"
    for value, expected in (("1", "True"), ("0", "False"), (None, "False")):
        env = {k: v for k, v in os.environ.items() if k != fused.ENV_VAR}
        if value is not None:
            env[fused.ENV_VAR] = value
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == expected, (
            f"{fused.ENV_VAR}={value}: is_enabled() printed {result.stdout!r}"
        )
    test_ops.test_parity_with_builtin_float32(SPECS["relu"].cases[0], "cpu")


@pytest.mark.parametrize("compiled_faster", [True, False])
def test_the_faster_variant_is_kept_per_signature(
    monkeypatch: pytest.MonkeyPatch, compiled_faster: bool
) -> None:
    """With ``select_fastest`` the first call of a signature times both variants and keeps the faster; the
    result is the same either way."""
    kernel = fused.kernel(lambda x, y: (x * y).add_(1))
    x = torch.randn(7, 3)
    with monkeypatch.context() as patch:
        patch.setattr(fused, "select_fastest", True)
        patch.setattr(fused, "_faster", lambda *_args: compiled_faster)
        for _ in range(3):
            torch.testing.assert_close(kernel(x, x), x * x + 1, msg="the kept variant gave another result")
    assert len(kernel.compiled) == 1, f"{len(kernel.compiled)} variants compiled for one signature"
    assert (not kernel.eager_faster) == compiled_faster, (
        f"compiled faster={compiled_faster}: {kernel.eager_faster}"
    )
    assert kernel.fused_calls == (3 if compiled_faster else 0), f"{kernel.fused_calls} compiled calls"
    test_ops.test_parity_with_builtin_float32(SPECS["relu"].cases[0], "cpu")  # the fixture's compiled call


def test_a_signature_measured_slower_still_compiles_when_selection_is_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A signature where the eager formulas won the timing (e.g. in an earlier benchmark) runs the compiled
    variant once ``select_fastest`` is off (the fixture turns it off)."""
    kernel = fused.kernel(lambda x: x * 2)
    x = torch.randn(3)
    with monkeypatch.context() as patch:
        patch.setattr(fused, "select_fastest", True)
        patch.setattr(fused, "_faster", lambda *_args: False)
        kernel(x)
    assert kernel.eager_faster and kernel.fused_calls == 0, "the eager formulas were not chosen"
    torch.testing.assert_close(kernel(x), x * 2, msg="the compiled variant gave another result")
    assert kernel.fused_calls == 1, "with selection off the compiled variant did not run"


def test_deterministic_algorithms_run_the_compiled_variant_whatever_the_timing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``torch.use_deterministic_algorithms(True)`` the path does not depend on a timing: a signature
    measured slower compiled still runs compiled."""
    kernel = fused.kernel(lambda x: x * 3)
    x = torch.randn(3)
    deterministic = torch.are_deterministic_algorithms_enabled()
    with monkeypatch.context() as patch:
        patch.setattr(fused, "select_fastest", True)
        patch.setattr(fused, "_faster", lambda *_args: False)
        torch.use_deterministic_algorithms(True)
        try:
            torch.testing.assert_close(kernel(x), x * 3, msg="the compiled variant gave another result")
        finally:
            torch.use_deterministic_algorithms(deterministic)
    assert kernel.eager_faster and kernel.fused_calls == 1, "the timing chose the path in deterministic mode"


def test_one_loop_is_compiled_in_the_eager_formulas_layout() -> None:
    """``kernel(one_loop=g)`` compiles g (here traced: it records its calls) and returns its result in the
    memory layout of the eager formulas (the first argument's, channels_last), not g's (the second's)."""
    traced = []

    def select(x, y):
        traced.append(True)
        return y.masked_fill(x <= 0, 0)

    kernel = fused.kernel(one_loop=select)(lambda x, y: x.sign().clamp_min_(0).mul_(y))
    x = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last)
    y = torch.randn(2, 3, 4, 5)
    out = kernel(x, y)
    assert traced and kernel.fused_calls == 1, "one_loop was not the compiled function"
    torch.testing.assert_close(out, kernel.fn(x, y), msg="one_loop and the eager formulas differ")
    assert out.is_contiguous(memory_format=torch.channels_last), "not the eager formulas' layout"


def test_timing_picks_a_variant_and_both_agree() -> None:
    """The real timing runs both variants on the arguments (they must not modify them) and returns a bool."""
    kernel = fused.kernel(lambda x: x.sign().mul_(x))
    x = torch.randn(64, 64)
    with fused.enabled(True):
        kernel(x)
    (variant,) = kernel.compiled.values()
    before = x.clone()
    assert fused._faster(variant, kernel.fn, (x,)) in (True, False)
    torch.testing.assert_close(x, before, msg="timing the variants modified the input")
    torch.testing.assert_close(variant(x), kernel.fn(x), msg="compiled and eager variants differ")
