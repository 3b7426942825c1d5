"""The matrix products (custom_ops.matmul) beyond the automatic suites: broadcasting and 1-D backward,
einsum's equation forms, the attention patterns of Swin and MaxViT routed and counted as manual calls by
ManualFunctions / manual_share, and the coverage tool's timm rows and float64 parity check."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

import custom_ops.functional as MF
from torch_cs231n.interop.function_mode import (
    ManualFunctions,
    attach_manual_functions,
    manual_functions_of,
    manual_share,
)
from torch_cs231n.interop.swap import to_manual
from torch_cs231n.tools import manual_coverage

D = torch.float64


def _leaves(*shapes: tuple[int, ...]) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(s, generator=gen, dtype=D).requires_grad_(True) for s in shapes]


def _grads(fn: Any, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    out = fn(*inputs)
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=D)
    return out, torch.autograd.grad(out, inputs, cotangent)


def _same_as_torch(manual: Any, builtin: Any, *shapes: tuple[int, ...]) -> None:
    inputs = _leaves(*shapes)
    out, grads = _grads(manual, inputs)
    ref, ref_grads = _grads(builtin, inputs)
    torch.testing.assert_close(out, ref, msg=lambda m: f"output for shapes {shapes}: {m}")
    for i, (g, r) in enumerate(zip(grads, ref_grads)):
        assert g.shape == inputs[i].shape, f"gradient {i} has shape {g.shape}, its input {inputs[i].shape}"
        torch.testing.assert_close(g, r, msg=lambda m, i=i: f"gradient {i} for shapes {shapes}: {m}")


# ------------------------------------------------------------------------------------------- matmul
@pytest.mark.parametrize(
    "shapes",
    [((2, 1, 3, 4), (5, 4, 2)), ((3, 4), (2, 4, 5)), ((2, 3, 4), (4,)), ((4,), (2, 4, 3)), ((4,), (4,))],
    ids=["both-broadcast", "matrix-times-batch", "batch-times-vector", "vector-times-batch", "dot"],
)
def test_matmul_broadcasting_and_vector_gradients_equal_torch(shapes: tuple[tuple[int, ...], ...]) -> None:
    _same_as_torch(MF.matmul, torch.matmul, *shapes)


def test_matmul_backward_is_the_course_formula_summed_over_broadcast_dims() -> None:
    a, b = _leaves((2, 1, 3, 4), (5, 4, 2))
    dout = torch.randn(2, 5, 3, 2, dtype=D)
    da, db = torch.autograd.grad(MF.matmul(a, b), (a, b), dout)
    expected_da = (dout @ b.detach().mT).sum(1, keepdim=True)  # dC Bᵀ, summed over A's broadcast dim
    expected_db = (a.detach().mT @ dout).sum(0)  # Aᵀ dC, summed over B's missing leading dim
    torch.testing.assert_close(da, expected_da, msg="dA = dC Bᵀ summed over the broadcast dim")
    torch.testing.assert_close(db, expected_db, msg="dB = Aᵀ dC summed over the broadcast dim")


def test_matmul_vector_output_can_be_modified_in_place() -> None:
    a, b = _leaves((3, 4), (4,))
    out = MF.matmul(a, b)
    out.relu_()  # a view of the product would be refused here by autograd
    out.sum().backward()
    assert a.grad is not None and a.grad.shape == (3, 4), "gradient through the in-place ReLU"


# ------------------------------------------------------------------------------------------- einsum
@pytest.mark.parametrize(
    ("equation", "shapes"),
    [
        ("...ji,...jk->...ik", ((2, 3, 4), (3, 5))),  # transposed left factor, broadcast ellipsis
        ("b i d , b j d -> b j i", ((2, 3, 4), (2, 5, 4))),  # spaces, transposed output
        ("ba...", ((2, 3, 4, 5),)),  # implicit output: the ellipsis, then the letters alphabetically
        ("ij,jk,kl", ((2, 3), (3, 4), (4, 2))),  # three operands, implicit output
        ("ij,kj->ik", ((2, 3), (1, 3))),  # a size-1 dim broadcast: its gradient summed
        ("ii->i", ((3, 3),)),  # the diagonal: its gradient on the diagonal only
        ("iij,j->i", ((3, 3, 2), (2,))),  # a repeated index in one operand, another operand beside it
        ("ijk->", ((2, 3, 4),)),  # everything summed: the gradient expanded
    ],
)
def test_einsum_equations_and_gradients_equal_torch(
    equation: str, shapes: tuple[tuple[int, ...], ...]
) -> None:
    _same_as_torch(lambda *ops: MF.einsum(equation, *ops), lambda *ops: torch.einsum(equation, *ops), *shapes)


def test_einsum_takes_a_list_of_operands_and_the_sublist_form() -> None:
    a, b = _leaves((2, 3), (3, 4))
    expected = a @ b
    torch.testing.assert_close(MF.einsum("ij,jk->ik", [a, b]), expected, msg="a list of operands")
    torch.testing.assert_close(MF.einsum(a, [0, 1], b, [1, 2], [0, 2]), expected, msg="the sublist form")
    torch.testing.assert_close(MF.einsum(a, [0, 1], b, [1, 2]), expected, msg="sublist, implicit output")


def test_einsum_diagonal_gradient_is_zero_off_the_diagonal() -> None:
    (x,) = _leaves((3, 3))
    (grad,) = torch.autograd.grad(MF.einsum("ii->", x), (x,))
    torch.testing.assert_close(grad, torch.eye(3, dtype=D), msg="d trace / dx is the identity")


# ------------------------------------------------------------------------------- routing and counting
class _SwinAttention(nn.Module):
    """Swin's window attention products (torchvision's shifted_window_attention) and Swin V2's ``@``."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).reshape(x.shape[0], x.shape[1], 3, 2, 4).permute(2, 0, 3, 1, 4)
        attn = q.matmul(k.transpose(-2, -1))  # Swin
        attn = attn + q @ k.transpose(-2, -1)  # Swin V2 (Tensor.__matmul__)
        attn = torch.softmax(attn, dim=-1)
        return attn.matmul(v).transpose(1, 2).reshape(x.shape[0], x.shape[1], 8)


class _MaxVitAttention(nn.Module):
    """MaxViT's relative attention products (torchvision's RelativePositionalMultiHeadAttention)."""

    def __init__(self) -> None:
        super().__init__()
        self.to_qkv = nn.Linear(8, 24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, G, P, D = x.shape
        q, k, v = torch.chunk(self.to_qkv(x).reshape(B, G, P, 2, 12).transpose(2, 3), 3, dim=-1)
        dot_prod = torch.einsum("B G H I D, B G H J D -> B G H I J", q, k)
        dot_prod = torch.nn.functional.softmax(dot_prod, dim=-1)
        out = torch.einsum("B G H I J, B G H J D -> B G H I D", dot_prod, v)
        return out.permute(0, 1, 3, 2, 4).reshape(B, G, P, D)


@pytest.mark.parametrize(
    ("module", "shape", "products"),
    [(_SwinAttention, (2, 5, 8), {"matmul": 3}), (_MaxVitAttention, (1, 2, 5, 8), {"einsum": 2})],
    ids=["swin", "maxvit"],
)
def test_attention_products_are_routed_counted_and_equal(
    module: type[nn.Module], shape: tuple[int, ...], products: dict[str, int]
) -> None:
    torch.manual_seed(0)
    builtin = module().to(D)
    x = torch.randn(shape, dtype=D, requires_grad=True)
    manual = attach_manual_functions(to_manual(module().to(D)))
    manual.load_state_dict(builtin.state_dict())
    share = manual_share(manual, x)
    assert share.layer_calls == 1.0 and share.flops == 1.0, f"a product ran built-in: {share}"
    for op, count in products.items():
        assert share.manual_calls.get(op) == count, f"{op} calls not counted as manual: {share.manual_calls}"
    assert manual_functions_of(manual).fallbacks == {}, "no call may fall back"
    out, (grad,) = _grads(manual, [x])
    ref, (ref_grad,) = _grads(builtin, [x])
    torch.testing.assert_close(out, ref, msg="outputs differ from the built-in module in float64")
    torch.testing.assert_close(grad, ref_grad, msg="input gradients differ from the built-in in float64")


def test_products_outside_manual_functions_count_as_builtin_calls() -> None:
    share = manual_share(to_manual(_SwinAttention()), torch.randn(2, 5, 8))
    assert share.builtin_calls.get("matmul") == 3, f"the model's own products are layer calls: {share}"
    assert share.why_builtin["matmul"] == "called outside ManualFunctions", share.why_builtin


def test_manual_ops_internal_products_are_not_counted() -> None:
    """The manual linear and matmul compute with built-in matmuls in forward and backward: part of them."""
    model = to_manual(nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)))
    share = manual_share(model, torch.randn(5, 4, requires_grad=True))
    assert share.builtin_calls == {} and share.layer_calls == 1.0, f"inner products counted: {share}"


def test_mm_and_bmm_route_within_their_domain_only() -> None:
    a, b = _leaves((2, 3, 4), (2, 4, 5))
    with ManualFunctions() as mode:
        routed = [torch.bmm(a, b), a[0].mm(b[0]), torch.mm(a[0], b[0]), b.__rmatmul__(a)]  # last: a @ b
        with pytest.raises(RuntimeError):
            torch.bmm(a, b[:1])  # bmm does not broadcast: torch's own error, not a broadcast product
    for out in routed:
        assert type(out.grad_fn).__name__ == "MatmulFunctionBackward", f"not routed: {out.grad_fn}"
    torch.testing.assert_close(routed[-1], a @ b, msg="Tensor.__rmatmul__(b, a) is a @ b")
    ((op, reason),) = mode.fallbacks
    assert op == "matmul" and "torch.bmm takes" in reason, mode.fallbacks


def test_swin_t_runs_every_call_and_flop_on_manual_ops() -> None:
    torch.manual_seed(0)
    model = attach_manual_functions(to_manual(torchvision.models.swin_t(num_classes=10)))
    share = manual_share(model, torch.randn(1, 3, 64, 64))
    assert share.layer_calls == 1.0 and share.flops >= 0.99, f"swin_t: {share}"


# ------------------------------------------------------------------------------------------ the tool
def test_parity_check_finds_equal_models_equal_and_a_wrong_twin_wrong(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(_SwinAttention(), nn.Flatten(), nn.Linear(40, 3))
    x = torch.randn(2, 5, 8)
    logits, grad = manual_coverage.parity(model, x)
    assert logits < 1e-12 and grad < 1e-12, f"float64 parity: logits {logits:.1e}, input grad {grad:.1e}"
    monkeypatch.setattr(MF, "matmul", lambda input, other: 1.01 * torch.matmul(input, other))
    logits, grad = manual_coverage.parity(model, x)
    assert logits > 1e-4 and grad > 1e-4, "a wrong product must show in the parity check"


def test_timm_is_needed_only_for_the_timm_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = importlib.import_module

    def without_timm(name: str, *args: Any) -> Any:
        if name == "timm":
            raise ModuleNotFoundError("No module named 'timm'")
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_timm)
    with pytest.raises(ImportError, match="the timm rows need the timm package"):
        manual_coverage.main(["--source", "timm", "--all"])


def test_coverage_command_measures_a_timm_row(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    out_json = tmp_path / "timm.json"
    argv = ["--source", "timm", "--models", "test_convnext", "--json", str(out_json)]
    argv += ["--markdown", str(tmp_path / "timm.md")]
    assert manual_coverage.main(argv) == 0
    payload = json.loads(out_json.read_text())
    assert payload["timm"], "the timm version is recorded"
    (row,) = payload["models"]
    assert row["source"] == "timm" and row["error"] is None, row
    assert row["layer_calls"] == 1.0 and row["flops"] == 1.0, row
    assert row["logits_rel_diff"] < 1e-12 and row["input_grad_rel_diff"] < 1e-12, row
    assert "| test_convnext |" in (tmp_path / "timm.md").read_text()
