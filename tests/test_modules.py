"""The ``custom_ops.nn`` modules are drop-in twins of their ``torch.nn`` built-ins."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from custom_ops.testing import MODULE_CASES, ModuleCase

IDS = [case.id for case in MODULE_CASES]


def build(case: ModuleCase, manual: bool, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    cls = case.manual if manual else case.builtin
    return cls(*case.args, **case.kwargs)


def batch(case: ModuleCase, step: int) -> torch.Tensor:
    x = torch.randn(*case.input_shape, generator=torch.Generator().manual_seed(100 + step))
    return x.requires_grad_(True)


@pytest.mark.parametrize("case", MODULE_CASES, ids=IDS)
def test_same_constructor_parameters_buffers_and_repr(case: ModuleCase) -> None:
    manual, builtin = build(case, True), build(case, False)
    assert isinstance(manual, case.builtin), (
        f"{case.id}: manual module should subclass {case.builtin.__name__}"
    )
    manual_state, builtin_state = manual.state_dict(), builtin.state_dict()
    assert list(manual_state) == list(builtin_state), f"{case.id}: state_dict keys differ"
    for key, value in builtin_state.items():
        torch.testing.assert_close(
            manual_state[key], value, msg=f"{case.id}: {key} differs at initialisation"
        )
    assert manual.extra_repr() == builtin.extra_repr(), f"{case.id}: extra_repr differs"


@pytest.mark.parametrize("case", MODULE_CASES, ids=IDS)
def test_load_state_dict_both_directions(case: ModuleCase) -> None:
    source_builtin, target_manual = build(case, False, seed=1), build(case, True, seed=2)
    target_manual.load_state_dict(source_builtin.state_dict())
    source_manual, target_builtin = build(case, True, seed=3), build(case, False, seed=4)
    target_builtin.load_state_dict(source_manual.state_dict())
    for a, b in ((target_manual, source_builtin), (target_builtin, source_manual)):
        for (key, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(x, y, msg=f"{case.id}: {key} not loaded")


@pytest.mark.parametrize("case", MODULE_CASES, ids=IDS)
def test_training_steps_then_eval_match_builtin(case: ModuleCase) -> None:
    """Outputs, input and parameter gradients over several SGD steps, buffers (BN running statistics and
    num_batches_tracked) after them, then the eval-mode output."""
    modules = {"manual": build(case, True), "builtin": build(case, False)}
    optims = {
        k: torch.optim.SGD(m.parameters(), lr=0.1) if list(m.parameters()) else None
        for k, m in modules.items()
    }
    for step in range(3):
        results = {}
        for kind, module in modules.items():
            x = batch(case, step)
            torch.manual_seed(step)  # dropout: the manual mask is the built-in's on CPU
            out = case.call(module, x)
            (out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum().backward()
            results[kind] = (out, x.grad, {n: p.grad for n, p in module.named_parameters()})
            if optims[kind] is not None:
                optims[kind].step()
                optims[kind].zero_grad()
        (out, dx, grads), (ref, ref_dx, ref_grads) = results["manual"], results["builtin"]
        torch.testing.assert_close(out, ref, msg=f"{case.id}: output differs at step {step}")
        torch.testing.assert_close(dx, ref_dx, msg=f"{case.id}: input gradient differs at step {step}")
        for name, grad in ref_grads.items():
            torch.testing.assert_close(
                grads[name], grad, msg=f"{case.id}: grad of {name} differs at step {step}"
            )
    for (key, value), ref in zip(
        modules["manual"].state_dict().items(), modules["builtin"].state_dict().values()
    ):
        torch.testing.assert_close(value, ref, msg=f"{case.id}: {key} differs after 3 training steps")
    for module in modules.values():
        module.eval()
    with torch.no_grad():
        out, ref = (case.call(modules[k], batch(case, 9)) for k in ("manual", "builtin"))
    torch.testing.assert_close(out, ref, msg=f"{case.id}: eval-mode output differs")


def test_swapping_a_trained_builtin_network_keeps_its_function() -> None:
    """A small built-in CNN's state_dict loads into the manual twin network and gives the same logits."""
    from custom_ops import nn as mnn

    def net(lib) -> nn.Sequential:
        return nn.Sequential(
            lib.Conv2d(3, 8, 3, padding=1),
            lib.BatchNorm2d(8),
            lib.ReLU(),
            lib.MaxPool2d(2),
            nn.Flatten(),
            lib.Linear(8 * 4 * 4, 10),
            lib.Dropout(0.5),
        )

    torch.manual_seed(0)
    builtin = net(nn)
    builtin(torch.randn(16, 3, 8, 8))  # move the BN running statistics
    manual = net(mnn)
    manual.load_state_dict(builtin.state_dict())
    builtin.eval()
    manual.eval()
    x = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(manual(x), builtin(x), msg="manual twin network gives different logits")


def test_mixed_precision_training_step_matches_builtin() -> None:
    """Under CPU bf16 autocast a conv feeds bfloat16 into BatchNorm's float32 parameters, and the backward
    runs outside autocast (as in Lightning's ``bf16-mixed``): the manual network must follow the built-in."""
    from custom_ops import nn as mnn

    def net(lib) -> nn.Sequential:
        torch.manual_seed(0)
        return nn.Sequential(
            lib.Conv2d(3, 8, 3, padding=1),
            lib.BatchNorm2d(8),
            lib.ReLU(),
            nn.Flatten(),
            lib.LayerNorm(8 * 6 * 6),
            lib.Linear(8 * 6 * 6, 10),
        )

    x = torch.randn(4, 3, 6, 6)
    results = []
    for model in (net(mnn), net(nn)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        out.float().square().mean().backward()
        results.append((out, [p.grad for p in model.parameters()]))
    (out, grads), (ref, ref_grads) = results
    assert out.dtype == ref.dtype == torch.bfloat16, f"output dtypes {out.dtype} / {ref.dtype}"
    torch.testing.assert_close(out, ref, rtol=2e-2, atol=2e-2, msg="bf16 autocast logits differ")
    for i, (g, r) in enumerate(zip(grads, ref_grads)):
        assert g.dtype == torch.float32, f"parameter #{i} gradient has dtype {g.dtype}, expected float32"
        torch.testing.assert_close(g, r, rtol=5e-2, atol=5e-2, msg=f"parameter #{i} gradient differs")


def test_conv_algorithm_in_repr_and_rejected_when_unknown() -> None:
    from custom_ops import nn as mnn

    assert "algorithm='im2col'" in repr(mnn.Conv2d(3, 4, 3, algorithm="im2col"))
    assert "algorithm" not in repr(mnn.Conv2d(3, 4, 3))
    with pytest.raises(ValueError, match="algorithm must be 'fast' or 'im2col'"):
        mnn.Conv2d(3, 4, 3, algorithm="fft")


def test_conv_deprecated_strategy_keyword() -> None:
    """``strategy``, the old name of ``algorithm``, works for one release with a ``FutureWarning`` naming
    ``algorithm``; with ``algorithm`` too it is a ``TypeError``; a bad value stays a ``ValueError``."""
    from custom_ops import functional as MF
    from custom_ops import nn as mnn

    with pytest.warns(FutureWarning, match="'strategy' is deprecated.*use 'algorithm'"):
        conv = mnn.Conv2d(3, 4, 3, strategy="im2col")
    assert conv.algorithm == "im2col" and not hasattr(conv, "strategy")
    x, w = torch.randn(1, 3, 6, 6), torch.randn(4, 3, 3, 3)
    with pytest.warns(FutureWarning, match=r"conv2d\(\): the keyword 'strategy' is deprecated.*'algorithm'"):
        out = MF.conv2d(x, w, strategy="im2col")
    torch.testing.assert_close(out, MF.conv2d(x, w, algorithm="im2col"), rtol=0, atol=0)
    with pytest.raises(TypeError, match=r"both strategy='fast' .*and algorithm='im2col'"):
        mnn.Conv2d(3, 4, 3, algorithm="im2col", strategy="fast")
    with pytest.raises(TypeError, match="give only algorithm"):
        MF.conv2d(x, w, algorithm="im2col", strategy="im2col")
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="algorithm must be 'fast' or 'im2col'"):
        MF.conv2d(x, w, strategy="fft")


def test_max_pool_return_indices_and_dilation_match_builtin() -> None:
    """``MaxPool2d(..., dilation=2, return_indices=True)``: the output, torch's flat indices (usable by
    ``MaxUnpool2d``) and the input gradient."""
    from custom_ops import nn as mnn

    x = torch.randn(2, 3, 11, 10, dtype=torch.float64)
    results = []
    for cls in (mnn.MaxPool2d, nn.MaxPool2d):
        leaf = x.clone().requires_grad_()
        out, index = cls(3, 2, 1, dilation=2, return_indices=True, ceil_mode=True)(leaf)
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view(out.shape))
        results.append((out, index, leaf.grad))
    for what, mine, theirs in zip(("output", "indices", "input gradient"), *results):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0, msg=f"MaxPool2d {what} differs")


@pytest.mark.parametrize("name", ["ReLU", "ReLU6", "Hardsigmoid", "Hardswish", "SiLU", "Dropout"])
def test_inplace_modules_modify_their_input_like_builtin(name: str) -> None:
    """``inplace=True`` writes into the input and returns it, and autograd stays right (the input is an
    intermediate result, as after a conv; a leaf that requires grad is refused, as by torch)."""
    from custom_ops import nn as mnn

    x = torch.randn(4, 5, dtype=torch.float64) * 4
    results = []
    for lib in (mnn, nn):
        leaf = x.clone().requires_grad_()
        hidden = leaf * 1.5
        module = getattr(lib, name)(inplace=True)
        torch.manual_seed(0)
        out = module(hidden)
        assert out is hidden, f"{lib.__name__}.{name}(inplace=True) did not return its input"
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view(out.shape))
        results.append((out.detach(), leaf.grad))
        with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
            module(x.clone().requires_grad_())
    for what, mine, theirs in zip(("output", "input gradient"), *results):
        torch.testing.assert_close(mine, theirs, msg=f"{name}(inplace=True) {what} differs")
