"""ManualFunctions: routing torch.nn.functional calls inside forward to the manual twins, and the hooks
that apply it to a model."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import custom_ops.functional as MF
from custom_ops.testing import SPECS
from torch_cs231n.interop.function_mode import (
    ManualFunctions,
    attach_manual_functions,
    detach_manual_functions,
    layer_functions,
    manual_functions_of,
)
from torch_cs231n.interop.swap import manual_share, to_manual


class FunctionalNet(nn.Module):
    """A small CNN whose forward calls torch.nn.functional (and aliases) itself, as GoogLeNet does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.batch_norm(self.conv(x), None, None, training=True), inplace=True)
        x = F.max_pool2d(x, 2)
        x = torch.sigmoid(F.adaptive_avg_pool2d(x, 4)).flatten(1)
        return F.log_softmax(F.dropout(self.fc(x), 0.2, self.training), dim=1)


def _input(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def _grad_fn_name(t: torch.Tensor) -> str:
    return type(t.grad_fn).__name__


def test_functional_calls_are_routed_to_the_twins_with_the_same_result() -> None:
    torch.manual_seed(0)
    model = FunctionalNet()
    x = _input()
    torch.manual_seed(1)
    expected = model(x)
    expected.sum().backward()
    expected_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    torch.manual_seed(1)  # the same dropout mask: the manual dropout draws it like the built-in
    with ManualFunctions() as mode:
        out = model(x)
    assert _grad_fn_name(out).startswith("LogSoftmaxFunction"), f"log_softmax not routed: {out.grad_fn}"
    assert not mode.fallbacks, f"unexpected fallbacks: {mode.fallbacks}"
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6, msg="routed forward differs")
    out.sum().backward()
    for p, g in zip(model.parameters(), expected_grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-6, msg="routed gradient differs")
    plain = F.relu(torch.randn(3, requires_grad=True))
    assert _grad_fn_name(plain) == "ReluBackward0", "the mode must not outlive its context"


def test_aliases_and_tensor_methods_are_routed() -> None:
    x = torch.randn(2, 5, requires_grad=True)
    with ManualFunctions():
        calls = {
            "torch.relu": torch.relu(x),
            "Tensor.relu": x.relu(),
            "torch.sigmoid": torch.sigmoid(x),
            "Tensor.tanh": x.tanh(),
            "Tensor.softmax": x.softmax(-1),
            "torch.log_softmax": torch.log_softmax(x, 1),
        }
    for label, out in calls.items():
        assert "Function" in _grad_fn_name(out), f"{label} ran built-in: {out.grad_fn}"


def test_layer_function_table_covers_functional_and_reads_every_twin_signature() -> None:
    table = layer_functions()
    assert table[F.conv2d].op == "conv2d" and table[torch.Tensor.relu].op == "relu"
    assert dict(table[F.max_pool2d_with_indices].implied) == {"return_indices": True}
    assert dict(table[F.relu_].implied) == {"inplace": True}
    routable = {entry.op for entry in table.values() if entry.signature is not None}
    twins = {name for name in MF.__all__ if getattr(F, name, None) in table}
    assert twins <= routable, f"twins whose F signature could not be read: {twins - routable}"


def test_routing_by_name_reaches_the_twin_of_each_spec() -> None:
    """ManualFunctions looks a twin up by the name of the torch function called (so that twins added later
    are routed with no edit): for every op spec with a layer-level built-in twin, that name leads to the
    spec's manual op."""
    table = layer_functions()
    routed = {spec.name: table[spec.builtin].op for spec in SPECS.values() if spec.builtin in table}
    assert set(routed) == set(SPECS) - {"softmax_loss", "svm_loss"}, f"not routed: {set(SPECS) - set(routed)}"
    for name, op in routed.items():
        assert getattr(MF, op) is SPECS[name].manual, f"the twin of {name} is routed to MF.{op}"


def test_twin_refusals_and_missing_arguments_fall_back_and_are_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refusing_relu(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        raise ValueError("refused for the test")

    def relu_without_inplace(input: torch.Tensor) -> torch.Tensor:
        return input.clamp_min(0) * 1.0

    x = torch.randn(4, requires_grad=True)
    monkeypatch.setattr(MF, "relu", refusing_relu)
    with ManualFunctions() as mode:
        out = F.relu(x)
    assert _grad_fn_name(out) == "ReluBackward0", "a refused call must run built-in"
    ((op, reason),) = mode.fallbacks
    assert op == "relu" and "refused for the test" in reason, f"fallback not recorded: {mode.fallbacks}"
    share = manual_share(attach_manual_functions(nn.ReLU()), x)
    assert share.builtin_calls == {"relu": 1}, f"a refused call is a built-in call: {share}"
    assert "refused for the test" in share.why_builtin["relu"], f"reason not reported: {share.why_builtin}"

    monkeypatch.setattr(MF, "relu", relu_without_inplace)
    y = x * 1.0
    with ManualFunctions() as mode:
        routed = F.relu(x)
        in_place = F.relu(y, inplace=True)
    assert _grad_fn_name(routed) == "MulBackward0", "a call the twin can take must go to the twin"
    assert in_place is y, "inplace=True with a twin lacking it must stay in place (built-in)"
    assert any("inplace=True" in why for _, why in mode.fallbacks), f"reason missing: {mode.fallbacks}"


def test_twins_added_later_are_used_without_edit(monkeypatch: pytest.MonkeyPatch) -> None:
    class Softsign(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.softsign(x)

    model = attach_manual_functions(Softsign())
    x = torch.randn(3, 4)
    before = manual_share(model, x)
    assert before.builtin_calls == {"softsign": 1}, str(before)
    assert before.why_builtin["softsign"] == "no manual twin", str(before)

    def softsign(input: torch.Tensor) -> torch.Tensor:
        return input / (input.abs() + 1)

    monkeypatch.setattr(MF, "softsign", softsign, raising=False)
    after = manual_share(model, x)
    assert after.manual_calls == {"softsign": 1} and after.layer_calls == 1.0, str(after)


def test_attach_is_idempotent_survives_copies_and_errors_and_detaches() -> None:
    torch.manual_seed(0)
    model = attach_manual_functions(attach_manual_functions(FunctionalNet()))
    assert len(model._forward_pre_hooks) == 1 and len(model._forward_hooks) == 1, "hooks added twice"
    assert manual_functions_of(model) is not None
    x = _input()
    assert _grad_fn_name(model(x)).startswith("LogSoftmaxFunction"), "attached model not routed"

    for copied in (copy.deepcopy(model), _pickled(model)):
        assert _grad_fn_name(copied(x)).startswith("LogSoftmaxFunction"), "copy lost the routing"

    with pytest.raises(RuntimeError):
        model(torch.randn(2, 5, 8, 8))  # wrong channel count: forward raises inside the mode
    assert _grad_fn_name(F.relu(torch.randn(2, requires_grad=True))) == "ReluBackward0", (
        "a failing forward left the mode active"
    )

    detach_manual_functions(model)
    assert manual_functions_of(model) is None and not model._forward_hooks, "hooks left after detach"
    assert _grad_fn_name(model(x)) == "LogSoftmaxBackward0", "detached model still routed"


def _pickled(model: nn.Module) -> nn.Module:
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def test_nested_contexts_route_once() -> None:
    outer, inner = ManualFunctions(), ManualFunctions()
    with outer, inner, outer:
        out = F.max_pool2d(torch.randn(1, 1, 4, 4, requires_grad=True), 2)
    assert _grad_fn_name(out).startswith("MaxPool2dFunction"), f"not routed: {out.grad_fn}"
    assert _grad_fn_name(F.relu(torch.randn(2, requires_grad=True))) == "ReluBackward0", "mode left active"


def test_unswapped_torchvision_model_runs_manual_under_the_mode_alone() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        with ManualFunctions() as mode:
            out = model(x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5, msg="resnet18 under ManualFunctions")
    assert not mode.fallbacks, f"fallbacks: {mode.fallbacks}"
    share = manual_share(attach_manual_functions(model), x)
    assert share.layer_calls == 1.0 and share.flops == 1.0, str(share)


def test_to_manual_then_mode_on_a_swapped_model_matches_builtin_in_training() -> None:
    torch.manual_seed(0)
    builtin = FunctionalNet()
    manual = attach_manual_functions(to_manual(copy.deepcopy(builtin)))
    x = _input(1)
    for model in (builtin, manual):
        torch.manual_seed(3)
        model(x).sum().backward()
    for (name, p_manual), p_builtin in zip(manual.named_parameters(), builtin.parameters()):
        torch.testing.assert_close(p_manual.grad, p_builtin.grad, rtol=1e-4, atol=1e-6, msg=name)
