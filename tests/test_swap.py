"""to_manual / to_builtin: parity on torchvision models, what is kept, and that only the class changes."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from custom_ops import nn as mnn
from custom_ops.registry import OPS
from torch_cs231n.interop.function_mode import attach_manual_functions, manual_functions_of
from torch_cs231n.interop.swap import BUILTINS, TWINS, count_layers, to_builtin, to_manual

MODELS = ["resnet18", "mobilenet_v3_small"]


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None, num_classes=10)


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)


@pytest.mark.parametrize("name", MODELS)
def test_eval_logits_match(name: str) -> None:
    builtin = _model(name).eval()
    manual = to_manual(copy.deepcopy(builtin))
    assert count_layers(manual)["builtin"] == 0, f"{name}: built-in layers with a twin left after to_manual"
    x, _ = _batch()
    with torch.no_grad():
        torch.testing.assert_close(manual(x), builtin(x), rtol=1e-4, atol=1e-5, msg=f"{name}: eval logits")


@pytest.mark.parametrize("name", MODELS)
def test_training_step_matches(name: str) -> None:
    """Same loss, same parameter gradients and same BatchNorm running-stat updates after a step."""
    builtin = _model(name).train()
    manual = to_manual(copy.deepcopy(builtin))
    x, y = _batch()
    losses = {}
    for label, model in (("builtin", builtin), ("manual", manual)):
        torch.manual_seed(1)  # same dropout masks
        losses[label] = nn.functional.cross_entropy(model(x), y)
        losses[label].backward()
    torch.testing.assert_close(losses["manual"], losses["builtin"], rtol=1e-4, atol=1e-5)
    for (pname, p_manual), p_builtin in zip(manual.named_parameters(), builtin.parameters()):
        # float32 through ~20 layers (BatchNorm over 4 values at the last stage): compare against the
        # gradient's own scale, elementwise tolerances would flag harmless rounding in tiny entries
        error = (p_manual.grad - p_builtin.grad).abs().max().item()
        scale = p_builtin.grad.abs().max().item()
        assert error <= 1e-3 * scale + 1e-6, (
            f"{name}: gradient of {pname}: max error {error:.2e}, scale {scale:.2e}"
        )
    for (bname, b_manual), b_builtin in zip(manual.named_buffers(), builtin.buffers()):
        torch.testing.assert_close(b_manual, b_builtin, rtol=1e-4, atol=1e-6, msg=f"{name}: buffer {bname}")


def test_swap_keeps_tensors_mode_device_dtype_and_hooks() -> None:
    model = _model("resnet18").double()
    model.layer1.eval()
    params = {n: p for n, p in model.named_parameters()}
    buffers = {n: b for n, b in model.named_buffers()}
    calls = []
    model.fc.register_forward_hook(lambda module, args, out: calls.append(type(module)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    same = to_manual(model)

    assert same is model, "to_manual must convert in place and return the same model"
    assert type(model.fc) is mnn.Linear and type(model.layer1[0].bn1) is mnn.BatchNorm2d
    assert all(p is params[n] for n, p in model.named_parameters()), "parameters were replaced"
    assert all(b is buffers[n] for n, b in model.named_buffers()), "buffers were replaced"
    assert not model.layer1[0].bn1.training and model.layer2[0].bn1.training, "train/eval mode changed"
    assert model.conv1.algorithm == "fast"
    x, y = _batch()
    loss = nn.functional.cross_entropy(model(x.double()), y)
    assert loss.dtype == torch.float64
    loss.backward()
    optimizer.step()  # the optimizer built before the swap still owns the parameters
    assert calls == [mnn.Linear], "forward hook lost or not called once"

    to_builtin(model)
    assert all(type(m) not in BUILTINS for m in model.modules()), "manual layers left after to_builtin"
    assert not hasattr(model.conv1, "algorithm"), "to_builtin left the manual-only attribute 'algorithm'"
    assert type(model.fc) is nn.Linear and all(p is params[n] for n, p in model.named_parameters())


def test_conv_algorithm_and_root_layer() -> None:
    conv = nn.Conv2d(3, 4, 3, groups=1)
    assert to_manual(conv, algorithm="im2col") is conv and type(conv) is mnn.Conv2d
    assert conv.algorithm == "im2col"
    with pytest.raises(ValueError, match="algorithm must be"):
        to_manual(nn.Conv2d(3, 4, 3), algorithm="winograd")
    with pytest.warns(
        FutureWarning, match=r"to_manual\(\): the keyword 'strategy' is deprecated.*'algorithm'"
    ):
        old = to_manual(nn.Conv2d(3, 4, 3), strategy="im2col")
    assert old.algorithm == "im2col", "the deprecated strategy= keyword must still choose the algorithm"
    with pytest.raises(TypeError, match="give only algorithm"):
        to_manual(nn.Conv2d(3, 4, 3), algorithm="im2col", strategy="fast")
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        to_manual("resnet18")  # type: ignore[call-overload]


def test_report_lists_swapped_and_kept_layers() -> None:
    class SamePadConv(nn.Conv2d):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(nn.functional.pad(x, (0, 1, 0, 1)))

    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.Softsign(),
        SamePadConv(4, 4, 2),
        nn.MaxPool2d(2, dilation=2),
        nn.AdaptiveAvgPool2d(2),
        nn.Hardswish(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    _, report = to_manual(model, report=True)
    swapped = {name for name, _, _ in report.swapped}
    kept = {name: (type_name, reason) for name, type_name, reason in report.kept}
    assert swapped == {"0", "3", "4", "5", "6", "8"}, f"swapped: {report.swapped} (dilated max pool included)"
    assert kept == {
        "1": ("Softsign", "no twin"),
        "2": ("SamePadConv", "subclass of Conv2d with its own forward"),
    }, f"kept: {report.kept}"
    assert [name for name, _, _ in report.no_math] == ["7"]
    text = str(report)
    assert "swapped 6 layers" in text and "Softsign: 1 (no twin)" in text, text
    _, back = to_builtin(model, report=True)
    assert {name for name, _, _ in back.swapped} == swapped


def test_twin_table_is_consistent() -> None:
    for builtin, manual in TWINS.items():
        assert issubclass(manual, builtin) and manual.__module__ == "custom_ops.nn", f"{manual} vs {builtin}"
    from_registry = {b for facts in OPS.values() for b in facts.module_twins}
    assert set(TWINS) == from_registry, "swap.TWINS and the module twins of custom_ops.registry.OPS differ"


def test_max_pool_dilation_and_return_indices_are_swapped() -> None:
    torch.manual_seed(0)
    pool = nn.MaxPool2d(3, 2, 1, dilation=2, return_indices=True, ceil_mode=True)
    x = torch.randn(2, 3, 11, 10)
    ref, ref_index = pool(x)
    assert to_manual(pool) is pool and type(pool) is mnn.MaxPool2d, "the dilated max pool stayed built-in"
    out, index = pool(x)
    torch.testing.assert_close(out, ref)
    assert torch.equal(index, ref_index)


def test_to_builtin_detaches_the_manual_functions() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.relu(self.fc(x))

    model = nn.Sequential(Functional())
    attach_manual_functions(to_manual(model[0]))
    x = torch.randn(2, 4, requires_grad=True)
    assert type(model(x).grad_fn).__name__.startswith("ReLUFunction"), "F.relu not routed to the twin"
    to_builtin(model)
    assert manual_functions_of(model[0]) is None, "to_builtin left the ManualFunctions hooks"
    assert type(model(x).grad_fn).__name__ == "ReluBackward0", "F.relu still routed after to_builtin"


def test_to_manual_runs_sandwich_layers_in_sequentials_and_to_builtin_undoes_it() -> None:
    """A VGG-like ``nn.Sequential`` (Conv2d - ReLU - MaxPool2d, Linear - ReLU) becomes a SandwichSequential
    that calls the sandwiches and computes what the built-in model computes; to_builtin restores the class."""
    from unittest import mock

    import custom_ops.layer_utils as layer_utils
    from torch_cs231n.nets.sandwich import SandwichSequential

    torch.manual_seed(0)
    builtin = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Flatten(),
        nn.Sequential(nn.Linear(4 * 4 * 4, 6), nn.ReLU(), nn.Linear(6, 3)),
    )
    manual = to_manual(copy.deepcopy(builtin))
    assert all(type(m) is SandwichSequential for m in manual.modules() if isinstance(m, nn.Sequential)), (
        "to_manual left a plain nn.Sequential"
    )
    assert manual.state_dict().keys() == builtin.state_dict().keys(), "to_manual changed the state_dict keys"
    x = torch.randn(2, 3, 8, 8)
    with mock.patch.object(layer_utils, "conv_relu_pool", wraps=layer_utils.conv_relu_pool) as spy:
        torch.testing.assert_close(manual(x), builtin(x), msg="the sandwiched model computes another result")
    assert spy.call_count == 1, f"conv_relu_pool ran {spy.call_count} times, expected once"
    back = to_builtin(manual)
    assert all(type(m) is nn.Sequential for m in back.modules() if isinstance(m, nn.Sequential)), (
        "to_builtin left a SandwichSequential"
    )
    plain = to_manual(copy.deepcopy(builtin), sandwiches=False)
    assert type(plain) is nn.Sequential, "sandwiches=False still changed the Sequential's class"
