"""SwapReport accuracy: attention blocks listed with what they compute, no containers or reshapes listed as
kept layers, and the reason given for subclasses."""

from __future__ import annotations

from collections import Counter

import torch
import torchvision
from torch import nn
from torchvision.ops.misc import Permute

from torch_cs231n.interop.swap import to_builtin, to_manual


class QuantizableLinear(nn.Linear):
    """A subclass that does not override forward (like nn.MultiheadAttention's out_proj type)."""


class TinyAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(4, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return (q @ k.transpose(-2, -1)).softmax(-1) @ v


def test_attention_blocks_are_listed_with_what_they_compute() -> None:
    model = nn.Sequential(nn.MultiheadAttention(4, 2), TinyAttention(), nn.Linear(4, 4))
    _, report = to_manual(model, report=True)
    kept = {name: (type_name, detail) for name, type_name, detail in report.kept}
    assert set(kept) == {"1"}, f"kept: {report.kept} (MHA is swapped, its out_proj belongs to the block)"
    assert kept["1"][0] == "TinyAttention" and kept["1"][1].startswith("attention"), kept
    assert {name for name, _, _ in report.swapped} == {"0", "1.qkv", "2"}, f"swapped: {report.swapped}"
    _, back = to_builtin(model, report=True)
    assert not back.kept, f"to_builtin has nothing to keep: {back.kept}"
    assert type(model[0]) is nn.MultiheadAttention, "to_builtin should give the built-in attention back"


def test_containers_and_reshapes_are_not_kept_layers() -> None:
    model = nn.Sequential(
        nn.Sequential(),
        nn.ModuleList(),
        Permute([0, 2, 3, 1]),
        nn.Flatten(),
        QuantizableLinear(4, 4),
    )
    _, report = to_manual(model, report=True)
    assert [(n, t) for n, t, _ in report.kept] == [("4", "QuantizableLinear")], f"kept: {report.kept}"
    assert report.kept[0][2] == "subclass of Linear (only exact built-in types are swapped)", report.kept
    no_math = {name: detail for name, _, detail in report.no_math}
    assert no_math == {
        "0": "container without layers",
        "1": "container without layers",
        "2": "no arithmetic",
        "3": "no arithmetic",
    }, f"no_math: {report.no_math}"
    assert "Sequential x1 (container without layers)" in str(report), str(report)


def test_torchvision_transformers_report() -> None:
    model = torchvision.models.vit_b_32(num_classes=10)
    _, report = to_manual(model, report=True)
    kept = Counter(type_name for _, type_name, _ in report.kept)
    assert not kept, f"vit kept: {kept} (its MultiheadAttention layers have a twin)"
    swapped = Counter(type_name for _, type_name, _ in report.swapped)
    assert swapped["MultiheadAttention"] == 12, f"vit swapped: {swapped}"
    swin = torchvision.models.swin_t(num_classes=10)
    _, report = to_manual(swin, report=True)
    kept = Counter(type_name for _, type_name, _ in report.kept)
    assert kept == {"ShiftedWindowAttention": 12, "StochasticDepth": 12}, f"swin kept: {kept}"
    assert "Permute" in {t for _, t, _ in report.no_math}, f"Permute is a reshape: {report.no_math}"
    assert "attach_manual_functions routes them" in str(report), str(report)
