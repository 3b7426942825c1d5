"""Softplus, Mish and F.normalize beyond what the registry-driven tests check: torch's conventions where the
formulas have a seam (softplus at its threshold, normalize at its floor ``eps`` and at ties of the max norm),
overflow at large inputs, the tuned kernels against the reference formulas (on the registry's samples, the
threshold's among them, and on infinities, NaN and overflowing inputs), the written-out p = 2 backward, and
routing of ``F.softplus``, ``F.mish`` and ``F.normalize`` calls inside a model (Swin V2 normalises its queries
and keys with ``F.normalize``).

(Mish's in-place variant is checked with the other activations in tests/test_activations.py.)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import custom_ops.functional as MF
from custom_ops import softplus as sp
from custom_ops.normalize import normalize_backward, normalize_forward, normalize_jvp
from custom_ops.testing import KINK_CASES, OP_CASES, OpCase
from torch_cs231n.interop.function_mode import ManualFunctions, attach_manual_functions
from torch_cs231n.interop.swap import manual_share, to_manual


def _derivatives(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The output, gradient (of the sum), second derivative and forward-mode derivative of ``fn`` at ``x``."""
    leaf = x.clone().requires_grad_()
    out = fn(leaf)
    (grad,) = torch.autograd.grad(out.sum(), leaf, create_graph=True)
    (second,) = torch.autograd.grad(grad.sum(), leaf)
    _, tangent = torch.func.jvp(fn, (x,), (torch.ones_like(x),))
    return {"output": out.detach(), "gradient": grad.detach(), "second derivative": second, "jvp": tangent}


def _assert_same(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], what: str) -> None:
    for key, value in got.items():
        torch.testing.assert_close(
            value,
            expected[key],
            equal_nan=True,
            msg=lambda m, key=key: f"{what}: {key} differs from torch's: {m}",
        )


# ----------------------------------------------------------------------------------------------- softplus
@pytest.mark.parametrize(("beta", "threshold"), [(1.0, 20.0), (2.0, 3.0), (3.0, 0.2), (0.5, 1.0)])
def test_softplus_at_its_threshold_is_torchs(beta: float, threshold: float) -> None:
    """On both sides of ``beta x = threshold`` and on it: the value, the slope (the smooth one on the
    threshold), the second derivative (torch's: 0 from the threshold on) and the jvp are torch's."""
    at = threshold / beta
    x = torch.tensor([at - 1e-3, at, at + 1e-3, at - 1.0, at + 1.0, -at], dtype=torch.float64)
    assert (x[1] * beta).item() == threshold, "the sample must sit exactly on the threshold"
    _assert_same(
        _derivatives(lambda t: MF.softplus(t, beta, threshold), x),
        _derivatives(lambda t: F.softplus(t, beta, threshold), x),
        f"softplus(beta={beta}, threshold={threshold}) at {x.tolist()}",
    )


def test_softplus_and_mish_stay_finite_where_exp_overflows() -> None:
    """float32 ``exp(x)`` overflows above ~88: the outputs, slopes and second derivatives stay finite and
    are torch's, but for mish's second derivative above the overflow, where torch's is NaN and the manual
    one its limit 0. A softplus threshold above the overflow gives torch's inf output and NaN slope."""
    x = torch.tensor([-1000.0, -100.0, -5.0, 0.5, 30.0, 100.0, 1000.0])
    for name, manual, builtin in (("softplus", MF.softplus, F.softplus), ("mish", MF.mish, F.mish)):
        got, expected = _derivatives(manual, x), _derivatives(builtin, x)
        for key, value in got.items():
            assert torch.isfinite(value).all(), (
                f"{name} {key} at {x.tolist()} is not finite: {value.tolist()}"
            )
        torch_nan = expected["second derivative"].isnan()
        assert name == "mish" or not torch_nan.any(), f"torch's softplus second derivative: {expected}"
        expected["second derivative"] = expected["second derivative"].masked_fill(torch_nan, 0.0)
        _assert_same(got, expected, f"{name} at {x.tolist()}")
    big = torch.tensor([100.0, 20.0], requires_grad=True)
    out = MF.softplus(big, threshold=1000.0)
    (grad,) = torch.autograd.grad(out.sum(), big)
    assert out[0].isinf() and grad[0].isnan(), f"softplus(100, threshold=1000): {out}, slope {grad}"
    assert out[1].item() == pytest.approx(20.0) and grad[1].item() == pytest.approx(1.0)


def _tuned_and_reference(
    op: str, x: torch.Tensor, dout: torch.Tensor, **kwargs: float
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """``(forward, backward, jvp)`` of ``op``'s tuned kernels and of its reference formulas at ``x``, with the
    cotangent (and tangent) ``dout``."""
    params = (kwargs.get("beta", 1.0), kwargs.get("threshold", 20.0)) if op == "softplus" else ()
    tuned_forward, tuned_backward = (getattr(sp, f"tuned_{op}_{kind}") for kind in ("forward", "backward"))
    tuned = (tuned_forward(x, *params), tuned_backward(dout, x, *params), tuned_backward(dout, x, *params))
    formulas = (getattr(sp, f"{op}_{kind}") for kind in ("forward", "backward", "jvp"))
    reference = tuple(f(x, *params) if i == 0 else f(dout, x, *params) for i, f in enumerate(formulas))
    return tuned, reference


SMOOTH_CASES = [c for c in (*OP_CASES, *KINK_CASES) if c.op in ("softplus", "mish")]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", SMOOTH_CASES, ids=[c.id for c in SMOOTH_CASES])
def test_tuned_kernels_equal_the_reference(case: OpCase, dtype: torch.dtype) -> None:
    """The tuned forward, backward and jvp (the backward kernel with the tangent) give the reference's values
    on the registry's samples, those on both sides of softplus's threshold and on it included."""
    (x,) = case.inputs(dtype, requires_grad=False)
    dout = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(dtype)
    tuned, reference = _tuned_and_reference(case.op, x, dout, **case.sample.kwargs)
    for what, got, expected in zip(("forward", "backward", "jvp"), tuned, reference):
        torch.testing.assert_close(
            got, expected, msg=lambda m, what=what: f"{case.id} {dtype}: tuned {what} vs reference: {m}"
        )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tuned_kernels_at_extreme_inputs_equal_the_reference(dtype: torch.dtype) -> None:
    """At infinities, NaN, the largest floats, where ``exp`` overflows, exactly on and one float either side
    of the threshold, for negative and fractional ``beta`` and thresholds above ``exp``'s overflow or
    infinite: no inf or NaN of a discarded branch leaks into the tuned results, which are the reference's
    (up to the last bits of the smooth values; subnormal slopes may flush to 0)."""
    big = torch.finfo(dtype).max
    values = [-math.inf, math.inf, math.nan, -big, big, -1e30, -1000.0, -100.0, -5.0, -0.0, 0.5, 19.99]
    values += [20.0, 20.01, 30.0, 89.0, 100.0, 710.0, 1000.0, 1e30]
    settings = [(1.0, 20.0), (2.0, 3.0), (3.0, 0.2), (0.5, -1.0), (-2.0, 3.0), (1.0, 1000.0), (1.0, math.inf)]
    settings += [(2.0, -math.inf)]
    tolerance = {"rtol": 1e-6 if dtype == torch.float32 else 1e-13, "atol": torch.finfo(dtype).tiny}
    for beta, threshold in settings:
        at = torch.tensor(threshold, dtype=dtype) / beta  # beta x == threshold exactly (where finite)
        seam = [at, at.nextafter(torch.tensor(math.inf, dtype=dtype)), at.nextafter(-at.abs() - 1)]
        x = torch.cat([torch.tensor(values, dtype=dtype), torch.stack(seam)])
        dout = torch.linspace(0.5, 1.5, x.numel(), dtype=dtype)
        tuned, reference = _tuned_and_reference("softplus", x, dout, beta=beta, threshold=threshold)
        for what, got, expected in zip(("forward", "backward", "jvp"), tuned, reference):
            torch.testing.assert_close(
                got,
                expected,
                equal_nan=True,
                **tolerance,
                msg=lambda m, what=f"softplus(beta={beta}, threshold={threshold}) {dtype} {what}": (
                    f"{what}: {m}"
                ),
            )
    x = torch.cat([torch.tensor(values, dtype=dtype), torch.linspace(-30, 30, 601, dtype=dtype)])
    tuned, reference = _tuned_and_reference("mish", x, torch.ones_like(x))
    for what, got, expected in zip(("forward", "backward", "jvp"), tuned, reference):
        torch.testing.assert_close(
            got, expected, equal_nan=True, msg=lambda m, what=what: f"mish {dtype} {what}: {m}"
        )


def test_softplus_refuses_beta_zero() -> None:
    """torch returns inf for beta = 0 (a division by it): the manual op refuses it."""
    with pytest.raises(ValueError, match=r"beta must be non-zero"):
        MF.softplus(torch.ones(3), beta=0)


# ---------------------------------------------------------------------------------------------- normalize
def test_normalize_p2_backward_and_jvp_are_the_closed_form() -> None:
    """For p = 2 the written-out backward is ``(dout - y sum(dout y)) / d`` and the jvp
    ``(x_dot - y sum(x_dot y)) / d`` (the Jacobian is symmetric), with ``d = ||x||``."""
    gen = torch.Generator().manual_seed(0)
    x, dout = (torch.randn(3, 5, 4, dtype=torch.float64, generator=gen) for _ in range(2))
    y = normalize_forward(x, 2.0, (1,))
    d = x.norm(dim=1, keepdim=True)
    closed = (dout - y * (dout * y).sum(1, keepdim=True)) / d
    torch.testing.assert_close(normalize_backward(dout, x, 2.0, (1,)), closed, msg="p=2 backward")
    torch.testing.assert_close(normalize_jvp(dout, x, 2.0, (1,)), closed, msg="p=2 jvp")


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, math.inf, 0.5])
def test_normalize_at_its_floor_and_zero_entries_is_torchs(p: float) -> None:
    """A row whose norm is exactly ``eps`` (torch's clamp_min passes no gradient to the norm there), rows
    below and above it, an all-zero row and zero entries (p = 1: sign(0) = 0; p < 1: torch's 0)."""
    x = torch.tensor(
        [[3.0, 4.0, 0.0], [0.3, 0.4, 0.0], [30.0, -40.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64
    )
    eps = torch.linalg.vector_norm(x[0], p).item()  # row 0 sits exactly on the floor
    cotangent = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    results = []
    for fn in (MF.normalize, F.normalize):
        leaf = x.clone().requires_grad_()
        out = fn(leaf, p, 1, eps)
        (grad,) = torch.autograd.grad(out, leaf, cotangent)
        _, tangent = torch.func.jvp(lambda t, fn=fn: fn(t, p, 1, eps), (x,), (cotangent,))
        results.append((out.detach(), grad, tangent))
    for what, mine, theirs in zip(("output", "gradient", "jvp"), *results):
        torch.testing.assert_close(mine, theirs, msg=lambda m, what=what: f"normalize p={p} {what}: {m}")


@pytest.mark.parametrize("p", [math.inf, -math.inf])
def test_normalize_max_norm_ties_share_the_gradient_as_torch(p: float) -> None:
    """p = ±inf: the norm is the largest (smallest) |x|; tied entries share its gradient, as torch's."""
    x = torch.tensor([[2.0, -2.0, 1.0, 0.5], [-3.0, 1.0, 3.0, 3.0]], dtype=torch.float64)
    cotangent = torch.tensor([[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 2.0, 1.0]], dtype=torch.float64)
    grads = []
    for fn in (MF.normalize, F.normalize):
        leaf = x.clone().requires_grad_()
        grads.append(torch.autograd.grad(fn(leaf, p, 1), leaf, cotangent)[0])
    torch.testing.assert_close(*grads, msg=lambda m: f"normalize p={p}: gradient at ties: {m}")


# ---------------------------------------------------------------------------------------------- routing
class _SmoothNet(nn.Module):
    """A model calling the three functions itself, as timm's CSPDarknet (mish) and Swin V2 (normalize) do."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.softplus(self.fc(x), beta=2.0, threshold=5.0)
        x = F.mish(x, inplace=True)
        return F.normalize(x, dim=-1)


def test_functional_calls_are_routed_to_the_twins() -> None:
    torch.manual_seed(0)
    model = _SmoothNet()
    x = torch.randn(4, 6)
    expected = model(x)
    with ManualFunctions() as mode:
        out = model(x)
    assert type(out.grad_fn).__name__.startswith("NormalizeFunction"), f"normalize not routed: {out.grad_fn}"
    assert not mode.fallbacks, f"unexpected fallbacks to the built-ins: {mode.fallbacks}"
    share = manual_share(attach_manual_functions(model), x)
    assert share.builtin_calls == {}, f"calls left built-in: {share.builtin_calls}"
    assert share.manual_calls.keys() >= {"softplus", "mish", "normalize"}, (
        f"manual calls: {share.manual_calls}"
    )
    torch.testing.assert_close(out, expected, msg=lambda m: f"routed output differs: {m}")


def test_swin_v2_runs_fully_manual_with_the_builtin_logits() -> None:
    """Swin V2's cosine attention calls ``F.normalize(q, dim=-1)``: after to_manual and the mode no layer call
    stays built-in, and the logits equal the built-in model's in float64."""
    torch.manual_seed(0)
    builtin = torchvision.models.swin_v2_t(num_classes=10).double().eval()
    manual = attach_manual_functions(to_manual(copy.deepcopy(builtin)))
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    share = manual_share(manual, x)
    assert "normalize" not in share.builtin_calls and share.layer_calls == 1.0, f"swin_v2_t: {share}"
    assert share.manual_calls.get("normalize", 0) > 0, f"no manual normalize call: {share.manual_calls}"
    with torch.no_grad():
        torch.testing.assert_close(
            manual(x), builtin(x), rtol=1e-10, atol=1e-12, msg=lambda m: f"swin_v2_t logits differ: {m}"
        )
