"""``cs231n gradcheck``: the CS231n relative error between hand-written backward passes and centred finite
differences, one row per op and differentiable input, and the lecture's two hand-worked circuits."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from custom_ops.registry import OP_NAMES
from custom_ops.testing import OP_CASES, SPECS, OpCase
from lightning_modules.dispatcher import main
from torch_cs231n.tools.gradcheck import (
    THRESHOLD,
    add_multiply_circuit,
    check_case,
    format_table,
    gradcheck_table,
    numeric_gradient,
    reciprocal_circuit,
    rel_error,
)


def test_add_multiply_circuit() -> None:
    c = add_multiply_circuit()
    assert c.inputs == {"x": -2.0, "y": 5.0, "z": -4.0} and c.value == -12.0, f"f = (x + y) z: {c}"
    expected = {"x": -4.0, "y": -4.0, "z": 3.0}
    assert c.backward == expected, f"hand-written backward {c.backward}, expected {expected}"
    assert c.autograd == expected, f"autograd {c.autograd}, expected {expected}"
    assert c.numeric == pytest.approx(expected, abs=1e-8), f"numeric {c.numeric}, expected {expected}"


def test_reciprocal_circuit() -> None:
    c = reciprocal_circuit()
    assert c.inputs == {"w0": 1.0, "x0": 3.0, "w1": 2.0, "x1": -2.0, "w2": -1.0}, f"inputs {c.inputs}"
    assert c.value == -1.0, f"f = 1 / ((3 - 4 - 1) + 1) = -1, got {c.value}"
    expected = {"w0": -3.0, "x0": -1.0, "w1": 2.0, "x1": -2.0, "w2": -1.0}
    assert c.backward == expected, f"hand-written backward {c.backward}, expected {expected}"
    assert c.autograd == expected, f"autograd {c.autograd}, expected {expected}"
    assert c.numeric == pytest.approx(expected, abs=1e-8), f"numeric {c.numeric}, expected {expected}"


def test_rel_error_is_max_abs_difference_over_max_sum() -> None:
    a = torch.tensor([1.0, -4.0, 0.0], dtype=torch.float64)
    n = torch.tensor([1.5, -4.0, 0.25], dtype=torch.float64)
    assert rel_error(a, n) == 0.5 / 8.0, "max|a - n| = 0.5 over max(|a| + |n|) = 8"
    assert rel_error(torch.zeros(3), torch.zeros(3)) == 0.0, "two zero gradients agree"


def test_numeric_gradient_of_a_quadratic() -> None:
    x = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    grad = numeric_gradient(lambda: float((x**3).sum()), x)
    assert torch.allclose(grad, 3 * x**2, atol=1e-8), f"d(x^3)/dx = 3x^2, got {grad}"
    assert x.tolist() == [[1.0, -2.0], [0.5, 3.0]], "x must be restored after the perturbations"


@pytest.mark.parametrize("op", OP_NAMES)
def test_first_case_of_every_op_passes(op: str) -> None:
    case = SPECS[op].cases[0]
    rows = check_case(case)
    assert len(rows) == len(case.grad_inputs), f"{case.id}: one row per differentiable input"
    for row in rows:
        assert row.rel_error < THRESHOLD, f"{case.id} {row.input}: rel error {row.rel_error:.2e}"
    if "weight" in {row.input for row in rows}:
        assert [row.input for row in rows][:2] == ["input", "weight"], f"{case.id}: names {rows}"


@pytest.fixture(scope="module")
def manual_rows() -> list:
    return gradcheck_table()


def test_every_registry_row_is_below_the_threshold(manual_rows: list) -> None:
    """Every (case, differentiable input) has a row, and every row is below 1e-7: the registry's inputs
    keep gradients O(1) (no saturated softmax, no normalisation over two values), where the numeric
    gradient would be rounding noise rather than a check of the backward."""
    rows = manual_rows
    assert len(rows) == sum(len(case.grad_inputs) for case in OP_CASES), "one row per differentiable input"
    failed = [r for r in rows if not r.passed]
    assert not failed, f"rows at or above {THRESHOLD:.0e}: {failed}"


def test_every_registry_row_passes_the_forward_mode_check(manual_rows: list) -> None:
    """Every op has a forward-mode derivative that agrees with finite differences (so, with the rows
    below the threshold, `cs231n gradcheck` exits 0)."""
    failed = [r for r in manual_rows if not r.forward_passed]
    assert not failed, "forward-mode check failed:\n" + format_table(failed)


# torch has no forward-mode derivative of multi_margin_loss, the built-in SVM loss's formulation.
BUILTIN_WITHOUT_FORWARD_AD = {"svm_loss": "multi_margin_loss"}


@pytest.mark.parametrize("op", OP_NAMES)
def test_the_forward_mode_check_passes_the_builtin_twins(op: str) -> None:
    """The forward-mode column checks the derivative, not the tool: torch's own ops pass it (and the one
    without a forward-mode derivative is reported as such)."""
    case = SPECS[op].cases[0]
    errors = [row.forward_error for row in check_case(case, ops="builtin")]
    if op in BUILTIN_WITHOUT_FORWARD_AD:
        assert all(BUILTIN_WITHOUT_FORWARD_AD[op] in e and "forward AD" in e for e in errors), errors
    else:
        assert not any(errors), f"{case.id} built-in: {errors}"


class DoubledBackward(torch.autograd.Function):
    """ReLU with a backward that is off by a factor of 2: the check must catch it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, dout: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return 2 * dout * (x > 0)


def test_a_wrong_backward_fails() -> None:
    relu = SPECS["relu"]
    bad = OpCase(replace(relu, facts=replace(relu.facts, manual=DoubledBackward.apply)), relu.samples[0])
    (row,) = check_case(bad)
    assert not row.passed and row.rel_error > 0.1, f"a doubled gradient gives rel error {row.rel_error:.2e}"


class DoubledJvp(torch.autograd.Function):
    """ReLU with a right backward and a forward-mode derivative off by a factor of 2."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.clamp_min(0)

    @staticmethod
    def setup_context(ctx, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        (x,) = inputs
        ctx.save_for_backward(x)
        ctx.mask = x > 0

    @staticmethod
    def backward(ctx, dout: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return dout * (x > 0)

    @staticmethod
    def jvp(ctx, dx: torch.Tensor) -> torch.Tensor:
        return 2 * dx * ctx.mask


@pytest.mark.parametrize(
    ("manual", "reason"), [(DoubledJvp.apply, "GradcheckError"), (DoubledBackward.apply, "jvp")]
)
def test_a_wrong_or_missing_forward_mode_derivative_fails(manual, reason: str) -> None:
    relu = SPECS["relu"]
    bad = OpCase(replace(relu, facts=replace(relu.facts, manual=manual)), relu.samples[0])
    (row,) = check_case(bad)
    assert not row.forward_passed and reason in row.forward_error, (
        f"forward-mode check: {row.forward_error!r}"
    )
    assert "FAIL" in format_table([row]).splitlines()[1], "the table must show the failure"


def test_cli_gradcheck_table_json_figure_and_exit_status(tmp_path: Path, capsys) -> None:
    status = main(
        ["gradcheck", "--op", "linear", "dropout", "--out", str(tmp_path), "--json", str(tmp_path / "g.json")]
    )
    assert status == 0, f"cs231n gradcheck returned {status} although linear and dropout pass"
    out = capsys.readouterr().out
    assert "linear" in out and "f = (x + y) z" in out and "f = 1 / ((w0 x0" in out, (
        f"table and circuits:\n{out}"
    )
    payload = json.loads((tmp_path / "g.json").read_text())
    assert payload == json.loads((tmp_path / "gradcheck.json").read_text()), "--json and --out must agree"
    assert {r["op"] for r in payload["rows"]} == {"linear", "dropout"}, "only the ops asked for"
    assert payload["passed"] and payload["max_rel_error"] < THRESHOLD, f"max {payload['max_rel_error']}"
    assert [c["name"] for c in payload["circuits"]] == ["add-multiply", "reciprocal"], "both circuits"
    assert (tmp_path / "gradcheck.png").stat().st_size > 0, "gradcheck.png not written"
