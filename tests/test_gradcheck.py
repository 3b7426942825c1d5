"""``cs231n gradcheck``: the CS231n relative error between hand-written backward passes and centred finite
differences, one row per op and differentiable input, and the lecture's two hand-worked circuits."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from custom_ops.registry import OP_CASES, OP_NAMES, SPECS
from custom_ops.spec import OpCase
from lightning_modules.cli import main
from torch_cs231n.tools.gradcheck import (
    THRESHOLD,
    add_multiply_circuit,
    check_case,
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


def test_every_registry_row_is_below_the_threshold() -> None:
    """Every (case, differentiable input) has a row, and every row is below 1e-7 (so `cs231n gradcheck`
    exits 0): the registry's inputs keep gradients O(1) (no saturated softmax, no normalisation over two
    values), where the numeric gradient would be rounding noise rather than a check of the backward."""
    rows = gradcheck_table()
    assert len(rows) == sum(len(case.grad_inputs) for case in OP_CASES), "one row per differentiable input"
    failed = [r for r in rows if not r.passed]
    assert not failed, f"rows at or above {THRESHOLD:.0e}: {failed}"


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
    bad = OpCase(replace(relu, manual=DoubledBackward.apply), relu.samples[0])
    (row,) = check_case(bad)
    assert not row.passed and row.rel_error > 0.1, f"a doubled gradient gives rel error {row.rel_error:.2e}"


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
