"""``torch.func`` on whole models of manual ops, as DP-SGD, influence-function and meta-learning code uses it.

- Per-sample gradients, ``vmap(grad(loss), in_dims=(None, 0, 0))`` over ``torch.func.functional_call``, of
  the project's FC net (as a chain of manual layers and with its sandwich layers), its conv nets and a
  torchvision ResNet-18 swapped to manual ops, against a Python loop of per-sample gradients. Batch norm as
  torch requires under ``vmap``: eval mode, or ``torch.func.replace_all_batch_norm_modules_``.
- Hessian-vector products (forward-over-reverse, ``jvp(grad(f))``) of every registry op with a double
  backward, against the built-in twin's.
- Dropout's ``randomness=`` modes under ``vmap`` against ``F.dropout``'s, and the in-place ops (ReLU,
  dropout) under the transforms against torch's in-place ops.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision
from test_func import builtin_fn, tangents
from test_ops import differentiable, ids
from torch import nn

import custom_ops.functional as MF
from custom_ops.testing import OP_CASES, OpCase
from torch_cs231n.interop.swap import to_manual
from torch_cs231n.nets.models import build_convnet, build_fc_net, build_three_layer_convnet

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------- per-sample gradients
def per_sample_grads(model: nn.Module, loss_fn: Loss, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """``vmap(grad(loss))`` over the examples, each a batch of one, the parameters shared."""
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def loss(params: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        scores = torch.func.functional_call(model, (params, buffers), (xi.unsqueeze(0),))
        return loss_fn(scores, yi.unsqueeze(0))

    return torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(params, x, y)


def looped_grads(model: nn.Module, loss_fn: Loss, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """The same per-sample gradients by plain autograd, one example at a time."""
    names, params = zip(*model.named_parameters())
    per_example = [
        torch.autograd.grad(loss_fn(model(xi.unsqueeze(0)), yi.unsqueeze(0)), params) for xi, yi in zip(x, y)
    ]
    return {name: torch.stack([g[i] for g in per_example]) for i, name in enumerate(names)}


def assert_per_sample_grads_match(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Loss = MF.softmax_loss, **tol: float
) -> None:
    vmapped = per_sample_grads(model, loss_fn, x, y)
    looped = looped_grads(model, loss_fn, x, y)
    assert vmapped.keys() == looped.keys(), "vmap(grad) returned other parameters than the model has"
    for name, g in vmapped.items():
        torch.testing.assert_close(
            g,
            looped[name],
            msg=lambda m, name=name: f"per-sample gradient of {name}, vmap vs loop: {m}",
            **tol,
        )


def chain(model: nn.Sequential) -> nn.Sequential:
    """The same layers (shared) in a plain ``nn.Sequential``: each manual op on its own, no sandwich layer."""
    return nn.Sequential(OrderedDict(model.named_children()))


def _data(
    n: int, shape: tuple[int, ...], classes: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, *shape, generator=generator, dtype=dtype)
    return x, torch.randint(0, classes, (n,), generator=generator)


@pytest.mark.parametrize("normalization", [None, "batchnorm", "layernorm"])
@pytest.mark.parametrize("layers", ["chain", "sandwiches"])
def test_fc_net_per_sample_grads(normalization: str | None, layers: str) -> None:
    torch.manual_seed(0)
    net = build_fc_net(
        [12, 8], input_dim=3 * 4 * 4, num_classes=5, normalization=normalization, init="kaiming"
    )
    model = (chain(net) if layers == "chain" else net).double().eval()  # batch norm: running statistics
    x, y = _data(3, (3, 4, 4), 5, torch.float64)
    assert_per_sample_grads_match(model, x, y)
    assert_per_sample_grads_match(model, x, y, MF.svm_loss)


def test_three_layer_convnet_per_sample_grads() -> None:
    torch.manual_seed(0)
    model = build_three_layer_convnet(input_dim=(3, 8, 8), num_filters=4, filter_size=3, hidden_dim=10)
    x, y = _data(3, (3, 8, 8), 10, torch.float64)
    assert_per_sample_grads_match(model.double(), x, y)


@pytest.mark.parametrize("normalization", ["batchnorm-eval", "batchnorm-replaced", "groupnorm"])
def test_convnet_per_sample_grads(normalization: str) -> None:
    torch.manual_seed(0)
    model = build_convnet(
        channels=(4, 8),
        hidden_dims=(12,),
        normalization=normalization.split("-")[0],
        groups=2,
        input_dim=(3, 8, 8),
    ).double()
    if normalization == "batchnorm-eval":
        model.eval()
    elif normalization == "batchnorm-replaced":  # training mode, no running statistics: each example alone
        torch.func.replace_all_batch_norm_modules_(model)
    x, y = _data(3, (3, 8, 8), 10, torch.float64)
    assert_per_sample_grads_match(model, x, y)


def test_resnet18_on_manual_ops_per_sample_grads() -> None:
    torch.manual_seed(0)
    model = to_manual(torchvision.models.resnet18(num_classes=10)).eval()  # 1x1 maps in layer4: eval mode
    x, y = _data(2, (3, 32, 32), 10, torch.float32)
    assert_per_sample_grads_match(model, x, y, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------- forward-over-reverse
DOUBLE_BACKWARD = [case for case in OP_CASES if case.double_backward and not case.random]


@pytest.mark.parametrize("case", DOUBLE_BACKWARD, ids=ids(DOUBLE_BACKWARD))
def test_hessian_vector_product_matches_builtin(case: OpCase) -> None:
    """``jvp(grad(f))`` (forward-mode through the hand-written backward) equals the built-in twin's, for
    ``f = sum(op(inputs) * w)`` with a fixed random ``w``."""
    args = case.inputs(torch.float64, requires_grad=False)
    fn, primals = differentiable(case, args)
    ref_fn = builtin_fn(case, args)
    weight = tangents((fn(*primals),), 3)[0]

    def scalar(f: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        return lambda *inputs: (f(*inputs) * weight).sum()

    argnums = tuple(range(len(primals)))
    dirs = tangents(primals, 4)
    _, hvp = torch.func.jvp(torch.func.grad(scalar(fn), argnums), primals, dirs)
    ref_grad = torch.func.grad(scalar(ref_fn), argnums)
    try:
        _, ref_hvp = torch.func.jvp(ref_grad, primals, dirs)
    except NotImplementedError:  # torch has no forward-mode nor double backward here (multi_margin_loss):
        eps = 1e-6  # central differences of the built-in's gradient along the tangents
        plus = ref_grad(*(p + eps * d for p, d in zip(primals, dirs)))
        minus = ref_grad(*(p - eps * d for p, d in zip(primals, dirs)))
        ref_hvp = tuple((a - b) / (2 * eps) for a, b in zip(plus, minus))
    for i, h, r in zip(case.grad_inputs, hvp, ref_hvp):
        torch.testing.assert_close(
            h, r, msg=lambda m, i=i: f"{case.id}: Hessian-vector product, input #{i}: {m}"
        )


# ------------------------------------------------------------------------------ dropout's randomness modes
def _under_vmap(dropout: Callable[..., torch.Tensor], randomness: str, inplace: bool = False) -> torch.Tensor:
    x = torch.randn(4, 5, 6, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    return torch.func.vmap(lambda t: dropout(t * 1, 0.5, True, inplace), randomness=randomness)(x)


@pytest.mark.parametrize("inplace", [False, True])
def test_dropout_randomness_error_raises_like_torch(inplace: bool) -> None:
    with pytest.raises(RuntimeError, match="randomness") as builtin:
        _under_vmap(F.dropout, "error", inplace)
    with pytest.raises(type(builtin.value), match="called random operation while in randomness error mode"):
        _under_vmap(MF.dropout, "error", inplace)


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("randomness", ["same", "different"])
def test_dropout_randomness_modes_match_torch(randomness: str, inplace: bool) -> None:
    """The masks ``F.dropout`` draws under ``vmap(randomness=...)``, for the same seed: one for the whole
    batch ("same"), one per element ("different")."""
    out = _under_vmap(MF.dropout, randomness, inplace)
    ref = _under_vmap(F.dropout, randomness, inplace)
    torch.testing.assert_close(out, ref, msg=lambda m: f"dropout under vmap(randomness={randomness!r}): {m}")
    masks = out != 0
    same = all(torch.equal(masks[0], m) for m in masks[1:])
    assert same == (randomness == "same"), f"randomness={randomness!r}: masks equal across the batch: {same}"


def test_dropout_generator_under_vmap() -> None:
    """A generator is used as torch's random ops use one under vmap: "same" draws one reproducible mask for
    the batch, "error" still refuses."""
    x = torch.ones(3, 40)

    def run(randomness: str) -> torch.Tensor:
        generator = torch.Generator().manual_seed(5)
        return torch.func.vmap(lambda t: MF.dropout(t, 0.5, generator=generator), randomness=randomness)(x)

    out = run("same")
    assert all(torch.equal(out[0], row) for row in out[1:]), "randomness='same' drew different masks"
    torch.testing.assert_close(out, run("same"), msg="the same generator seed gave another mask")
    with pytest.raises(RuntimeError, match="randomness error mode"):
        run("error")


def test_dropout_per_sample_grads_follow_the_masks() -> None:
    """vmap(grad) through dropout with randomness="different": each example's gradient is its own mask,
    scaled by 1 / (1 - p)."""
    x = torch.randn(4, 30, dtype=torch.float64)
    grads = torch.func.vmap(torch.func.grad(lambda t: MF.dropout(t, 0.25).sum()), randomness="different")(x)
    kept = grads != 0
    torch.testing.assert_close(
        grads[kept], torch.full_like(grads[kept], 1 / 0.75), msg="kept units' gradient"
    )
    assert not all(torch.equal(kept[0], k) for k in kept[1:]), "randomness='different' drew one mask"


# ----------------------------------------------------------------------------------------- in-place ops
def _relu_(manual: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    relu = MF.relu if manual else F.relu
    return lambda t: relu(t, inplace=True)


@pytest.mark.parametrize(
    "transform", ["vmap", "vmap-of-copy", "jvp", "jvp-of-copy", "vmap-grad", "jacfwd", "hessian"]
)
def test_inplace_relu_under_transforms_as_torch(transform: str) -> None:
    """``relu(x, inplace=True)`` under the transforms gives torch's ``relu_`` results, on the transformed
    input itself and on a tensor made inside the function."""
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    v = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def run(manual: bool) -> Any:
        relu_ = _relu_(manual)
        copied = lambda t: relu_(t * 1)  # noqa: E731
        if transform == "vmap":
            return torch.func.vmap(relu_)(x.clone())
        if transform == "vmap-of-copy":
            return torch.func.vmap(copied)(x)
        if transform == "jvp":
            return torch.func.jvp(relu_, (x.clone(),), (v.clone(),))
        if transform == "jvp-of-copy":
            return torch.func.jvp(copied, (x,), (v,))
        if transform == "vmap-grad":
            return torch.func.vmap(torch.func.grad(lambda t: copied(t).pow(2).sum()))(x)
        if transform == "jacfwd":
            return torch.func.jacfwd(copied)(x)
        return torch.func.hessian(lambda t: copied(t).pow(3).sum())(x[0])

    torch.testing.assert_close(run(True), run(False), msg=lambda m: f"in-place relu under {transform}: {m}")


def test_inplace_ops_forward_ad_and_batched_gradcheck() -> None:
    """Forward-mode AD of the in-place ops (the tangent updated in place, as autograd requires), with the
    batched checks the built-ins pass (not the batched forward check for dropout: it reruns the op under
    gradcheck's vmap, where torch refuses random ops, F.dropout's included)."""
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)

    def dropout_(t: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(0)
        return MF.dropout(t * 1, 0.3, True, True, generator=generator)

    for name, fn, batched_forward in (
        ("relu", lambda t: MF.relu(t * 1, inplace=True), True),
        ("dropout", dropout_, False),
    ):
        assert torch.autograd.gradcheck(
            fn,
            (x,),
            check_forward_ad=True,
            check_batched_grad=True,
            check_batched_forward_grad=batched_forward,
        ), f"in-place {name}: a derivative differs from finite differences"
