"""Leaky ReLU, PReLU, Hardtanh, ELU, CELU and SELU beyond the registry-driven suites: the derivatives at
their kinks are torch's (out of place and in place), in place under forward-mode AD, ``torch.func`` and
``torch.compile``, in place with a negative slope (torch refuses its backward; the manual ops compute it),
PReLU's weight shapes, and the routing of ``F.<name>`` calls and the swap of the modules.

The kinks: x = 0 for leaky_relu, prelu, elu (alpha != 1) and selu (the slope is the negative side's: torch's
kernels test ``x > 0`` / ``x <= 0``), ``min_val`` and ``max_val`` for hardtanh (slope 0 there). CELU and ELU
with alpha = 1 are C^1 at 0; their values there are checked too.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
import test_activations
import test_modules
import torch
import torch.nn.functional as F
from torch import nn

import custom_ops.functional as MF
from custom_ops import elu as elu_ops
from custom_ops import hardtanh as hardtanh_ops
from custom_ops import leaky_relu as leaky_relu_ops
from custom_ops import nn as mnn
from custom_ops.elu import CELUFunction, ELUFunction, SELUFunction
from custom_ops.hardtanh import HardtanhFunction
from custom_ops.leaky_relu import (
    LeakyReLUFunction,
    PReLUFunction,
    prelu_backward,
    prelu_forward,
    tuned_prelu_backward,
    tuned_prelu_forward,
)
from torch_cs231n.interop.function_mode import ManualFunctions
from torch_cs231n.interop.swap import to_manual

# (op, hyper-parameters, kinks); every op here has an inplace argument.
_SETTINGS: list[tuple[str, dict[str, float], tuple[float, ...]]] = [
    ("leaky_relu", {}, (0.0,)),
    ("leaky_relu", {"negative_slope": 0.2}, (0.0,)),
    ("leaky_relu", {"negative_slope": 0.0}, (0.0,)),
    ("hardtanh", {}, (-1.0, 1.0)),
    ("hardtanh", {"min_val": 0.0, "max_val": 6.0}, (0.0, 6.0)),
    ("hardtanh", {"min_val": 0.0, "max_val": 0.0}, (0.0,)),
    ("elu", {}, (0.0,)),
    ("elu", {"alpha": 0.5}, (0.0,)),
    ("celu", {"alpha": 0.5}, (0.0,)),
    ("selu", {}, (0.0,)),
]
# (label, manual, built-in, kinks), the hyper-parameters bound.
CONFIGS = [
    (
        op + "".join(f"-{value:g}" for value in kwargs.values()),
        partial(getattr(MF, op), **kwargs),
        partial(getattr(F, op), **kwargs),
        kinks,
    )
    for op, kwargs, kinks in _SETTINGS
]
IDS = [label for label, *_ in CONFIGS]


def _points(kinks: tuple[float, ...]) -> torch.Tensor:
    """Each kink, points just either side of it, and points far on both sides."""
    points = [p for k in kinks for p in (k, k - 1e-3, k + 1e-3)] + [-7.0, -1.5, 0.5, 7.5]
    return torch.tensor(points, dtype=torch.float64)


@pytest.mark.parametrize("path_name", test_activations.PATHS)
@pytest.mark.parametrize("inplace", [False, True], ids=["out-of-place", "inplace"])
@pytest.mark.parametrize(("label", "manual", "builtin", "kinks"), CONFIGS, ids=IDS)
def test_derivatives_at_the_kinks_are_torchs(
    label: str,
    manual: Callable[..., torch.Tensor],
    builtin: Callable[..., torch.Tensor],
    kinks: tuple,
    inplace: bool,
    path_name: str,
) -> None:
    """On the default path (the tuned kernels, but for torch.func.jvp) and on the reference path."""
    x = _points(kinks)
    expected = test_activations._derivatives(builtin, inplace, x)
    with test_activations._path(path_name):
        got = test_activations._derivatives(manual, inplace, x)
    for what, value in got.items():
        torch.testing.assert_close(
            value,
            expected[what],
            msg=lambda m, what=what: (
                f"{label} (inplace={inplace}, {path_name} path) {what} at {x.tolist()}: {m}"
            ),
        )


# (kernel, reference formula, hyper-parameters): every branch of the tuned kernels, slopes outside [0, 1]
# and negative alphas included; the backwards get what the Function saves (the output, or the input).
_SAVES_INPUT = {"leaky_relu": lambda a: a < 0, "elu": lambda a: a < 0}  # else the output
_TUNED = [
    ("leaky_relu", (0.01,), (0.0,)),
    ("leaky_relu", (0.0,), (0.0,)),
    ("leaky_relu", (1.5,), (0.0,)),
    ("leaky_relu", (-0.3,), (0.0,)),
    ("hardtanh", (-1.0, 1.0), (-1.0, 1.0)),
    ("hardtanh", (0.0, 0.0), (0.0,)),
    ("hardtanh", (0.0, 1e-30), (0.0, 1e-30)),
    ("elu", (1.0,), (0.0,)),
    ("elu", (0.5,), (0.0,)),
    ("elu", (0.0,), (0.0,)),
    ("elu", (1.7,), (0.0,)),
    ("elu", (-0.5,), (0.0,)),
    ("celu", (0.5,), (0.0,)),
    ("celu", (-2.0,), (0.0,)),
    ("selu", (), (0.0,)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize(("op", "params", "kinks"), _TUNED, ids=[f"{o}{p}" for o, p, _ in _TUNED])
def test_tuned_kernels_equal_the_reference_exactly(
    op: str, params: tuple[float, ...], kinks: tuple[float, ...], dtype: torch.dtype
) -> None:
    """Bit for bit (but the sign of a zero, and NaN where both give it), the kinks, their neighbours and
    +-inf included: each tuned selection multiplies by 0 or 1 and adds a 0."""
    module = {"leaky_relu": leaky_relu_ops, "hardtanh": hardtanh_ops}.get(op, elu_ops)
    reference = [getattr(module, f"{op}_{part}") for part in ("forward", "backward")]
    tuned = [getattr(module, f"tuned_{op}_{part}", None) for part in ("forward", "backward")]
    x = torch.cat([_points(kinks), torch.tensor([0.3, -1e-30, 1e-30, float("inf"), -float("inf")])])
    x = x.to(dtype)
    dout = torch.linspace(-2, 3, x.numel(), dtype=dtype)
    out = reference[0](x, *params)
    saved = x if op in _SAVES_INPUT and _SAVES_INPUT[op](*params) else out
    pairs = [("backward", tuned[1](dout, saved, *params), reference[1](dout, saved, *params))]
    if tuned[0] is not None:
        pairs.append(("forward", tuned[0](x, *params), out))
    for what, mine, theirs in pairs:
        torch.testing.assert_close(
            mine,
            theirs,
            rtol=0,
            atol=0,
            equal_nan=True,  # 0 * -inf, as in the reference and torch
            msg=lambda m, what=what: f"tuned {op}{params} {what} at {x.tolist()}: {m}",
        )


def test_tuned_prelu_equals_the_reference_exactly() -> None:
    """The tuned forward and input gradient bit for bit, the weight gradient (a sum in another order)
    closely; per channel, shared and 0-D weights, every third input on the kink."""
    for x_shape, weight in (((2, 3, 4), torch.tensor([0.25, -0.5, 1.5])), ((5,), torch.tensor(0.3))):
        x = torch.randn(x_shape, generator=torch.Generator().manual_seed(0))
        x.view(-1)[::3] = 0
        dout = torch.randn(x_shape, generator=torch.Generator().manual_seed(1))
        dx, dweight = prelu_backward(dout, x, weight)
        tuned_dx, tuned_dweight = tuned_prelu_backward(dout, x, weight)
        exact = (("output", tuned_prelu_forward(x, weight), prelu_forward(x, weight)), ("dx", tuned_dx, dx))
        for what, mine, theirs in exact:
            torch.testing.assert_close(mine, theirs, rtol=0, atol=0, msg=f"tuned prelu {what} on {x_shape}")
        torch.testing.assert_close(tuned_dweight, dweight, msg=f"tuned prelu weight gradient on {x_shape}")
        assert tuned_prelu_backward(dout, x, weight, True, False)[1] is None, "dweight computed unasked"


@pytest.mark.parametrize("inplace", [False, True], ids=["out-of-place", "inplace"])
@pytest.mark.parametrize(("label", "manual", "builtin", "kinks"), CONFIGS, ids=IDS)
def test_second_derivative_at_the_kinks_is_torchs(
    label: str,
    manual: Callable[..., torch.Tensor],
    builtin: Callable[..., torch.Tensor],
    kinks: tuple,
    inplace: bool,
) -> None:
    """Except the exponential family's at 0: there the manual second derivative is the negative side's
    (its backward differentiates the slope ``y + a`` it uses at ``x <= 0``), torch's double backward 0 (it
    masks with ``x < 0``, its backward with ``x <= 0``)."""
    x = _points(kinks)
    if label.split("-")[0] in ("elu", "celu", "selu"):
        x = x[x != 0]
    results = [test_activations._second_derivative(fn, inplace, x) for fn in (builtin, manual)]
    torch.testing.assert_close(
        *results, msg=lambda m: f"{label} (inplace={inplace}) second derivative at {x.tolist()}: {m}"
    )


def test_prelu_derivatives_at_the_kink_are_torchs() -> None:
    """The slope at x = 0 is the weight's (torch tests x > 0), and x = 0 adds nothing to the weight's
    gradient; per channel and shared, gradients and forward-mode derivatives in x and in the weight."""
    x = torch.tensor([[0.0, -1.0, 2.0], [-0.5, 0.0, 0.0]], dtype=torch.float64)
    for weight in (
        torch.tensor([0.25, -0.5, 0.1], dtype=torch.float64),
        torch.tensor([0.3], dtype=torch.float64),
    ):
        results = []
        for fn in (F.prelu, MF.prelu):
            leaf, w = x.clone().requires_grad_(), weight.clone().requires_grad_()
            grads = torch.autograd.grad(fn(leaf, w).sum(), (leaf, w))
            _, tangent = torch.func.jvp(fn, (x, weight), (torch.ones_like(x), torch.ones_like(weight)))
            results.append((*grads, tangent))
        for what, mine, theirs in zip(("input gradient", "weight gradient", "jvp"), results[1], results[0]):
            torch.testing.assert_close(mine, theirs, msg=lambda m, what=what: f"prelu {what} at 0: {m}")


@pytest.mark.parametrize(("label", "manual", "builtin", "kinks"), CONFIGS, ids=IDS)
def test_inplace_under_forward_ad_and_torch_func(
    label: str,
    manual: Callable[..., torch.Tensor],
    builtin: Callable[..., torch.Tensor],
    kinks: tuple,
) -> None:
    test_activations.check_inplace_under_forward_ad_and_torch_func(label, manual, builtin)


@pytest.mark.parametrize("op", ["leaky_relu", "hardtanh", "elu", "celu", "selu"])
def test_inplace_under_torch_compile_fullgraph(op: str) -> None:
    test_activations.check_inplace_under_torch_compile_fullgraph(op, getattr(MF, op), getattr(F, op))


@pytest.mark.parametrize(
    ("op", "kwargs"),
    [("leaky_relu", {"negative_slope": -0.3}), ("elu", {"alpha": -0.5})],
    ids=["leaky", "elu"],
)
def test_inplace_with_a_negative_slope_computes_the_gradient(op: str, kwargs: dict) -> None:
    """torch refuses the backward of its in-place kernel with a negative slope (it saves the output, which
    then does not determine the slope); the manual op keeps the input and gives the out-of-place gradient."""
    x = _points((0.0,))
    leaf = x.clone().requires_grad_()
    with pytest.raises(RuntimeError, match="negative slope"):
        getattr(F, op)(leaf * 1.0, inplace=True, **kwargs).sum().backward()
    results = []
    for fn, inplace in ((getattr(MF, op), True), (getattr(F, op), False)):
        leaf = x.clone().requires_grad_()
        out = fn(leaf * 1.0, inplace=inplace, **kwargs)
        (grad,) = torch.autograd.grad(out.sum(), leaf)
        results.append((out.detach(), grad))
    for what, mine, theirs in zip(("output", "gradient"), *results):
        torch.testing.assert_close(
            mine, theirs, msg=lambda m, what=what: f"{op}(inplace=True, {kwargs}) {what}: {m}"
        )


@pytest.mark.parametrize("name", ["LeakyReLU", "Hardtanh", "ELU", "CELU", "SELU"])
def test_inplace_modules_modify_their_input_like_builtin(name: str) -> None:
    test_modules.test_inplace_modules_modify_their_input_like_builtin(name)


@pytest.mark.parametrize(
    ("x_shape", "num_parameters"), [((), 1), ((5,), 1), ((2, 3), 3), ((2, 3, 4), 1), ((2, 3, 4, 5), 3)]
)
def test_prelu_weight_broadcast_is_torchs(x_shape: tuple[int, ...], num_parameters: int) -> None:
    """One weight for any input (0-D and 1-D included), one per channel of dim 1; the weight gradient has
    the weight's shape."""
    results = []
    for cls in (nn.PReLU, mnn.PReLU):
        torch.manual_seed(0)
        module = cls(num_parameters).double()
        x = torch.randn(
            x_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True
        )
        out = module(x)
        out.backward(torch.ones_like(out))
        results.append((out.detach(), x.grad, module.weight.grad))
    for what, mine, theirs in zip(("output", "input gradient", "weight gradient"), results[1], results[0]):
        torch.testing.assert_close(mine, theirs, msg=f"PReLU({num_parameters}) on {x_shape}: {what} differs")


class _Functional(nn.Module):
    """A model calling the functional activations directly, as timm's cspdarknet calls F.leaky_relu."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((3,), 0.25))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [
            F.leaky_relu(x, 0.2),
            F.prelu(x, self.weight),
            F.hardtanh(x, -0.5, 0.5),
            F.elu(x, alpha=0.5),
            F.celu(x),
            F.selu(x),
            F.leaky_relu_(x * 1.0, 0.1),
        ]


def test_manual_functions_route_the_functional_calls() -> None:
    model = _Functional()
    x = torch.randn(2, 3, 4, requires_grad=True)
    expected_functions = [
        LeakyReLUFunction,
        PReLUFunction,
        HardtanhFunction,
        ELUFunction,
        CELUFunction,
        SELUFunction,
        LeakyReLUFunction,
    ]
    mode = ManualFunctions()
    with mode:
        outs = model(x)
    reference = model(x)
    assert not mode.fallbacks, f"calls ran built-in: {dict(mode.fallbacks)}"
    for out, ref, function in zip(outs, reference, expected_functions):
        name = type(out.grad_fn).__name__
        assert name == f"{function.__name__}Backward", f"expected {function.__name__}'s grad_fn, got {name}"
        torch.testing.assert_close(out, ref, msg=f"{function.__name__} routed: values differ")


def test_builtin_relu6_module_routes_to_the_manual_hardtanh() -> None:
    """torch's nn.ReLU6 is a Hardtanh(0, 6): its forward calls F.hardtanh, which ManualFunctions routes."""
    with ManualFunctions():
        out = nn.ReLU6()(torch.randn(4, requires_grad=True))
    assert type(out.grad_fn).__name__ == "HardtanhFunctionBackward", type(out.grad_fn).__name__


def test_to_manual_swaps_the_modules_with_identical_state() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 1),
        nn.LeakyReLU(0.2),
        nn.PReLU(4),
        nn.Hardtanh(-2.0, 2.0),
        nn.ELU(0.5),
        nn.CELU(0.7),
        nn.SELU(),
        nn.ReLU6(),
        nn.PReLU(),
    ).double()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    expected = model(x)
    manual = to_manual(model)
    types = [type(m) for m in manual]
    assert types[1:] == [
        mnn.LeakyReLU,
        mnn.PReLU,
        mnn.Hardtanh,
        mnn.ELU,
        mnn.CELU,
        mnn.SELU,
        mnn.ReLU6,
        mnn.PReLU,
    ], f"to_manual swapped to {types}"
    assert manual.state_dict().keys() == state.keys(), "state_dict keys changed"
    for key, value in manual.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=f"state_dict[{key}] changed")
    torch.testing.assert_close(manual(x), expected, msg="the swapped model computes otherwise")
    assert isinstance(manual[7], nn.Hardtanh) and manual[7].max_val == 6.0, "mnn.ReLU6 is no Hardtanh(0, 6)"
