"""The CS231n models: manual vs built-in equivalence, initialisation, regularisation, course sanity checks."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import nn

import custom_ops.nn as manual_nn
from lightning_modules.conv_net import ConvNet, ThreeLayerConvNet
from lightning_modules.fc_net import FullyConnectedNet
from torch_cs231n.nets.init import init_weights_
from torch_cs231n.nets.models import build_convnet, build_fc_net, build_three_layer_convnet
from torch_cs231n.nets.optim import Adam

FC_VARIANTS = [
    {"hidden_dims": [20]},
    {"hidden_dims": [20, 16], "normalization": "batchnorm", "init": "kaiming"},
    {"hidden_dims": [20, 16], "normalization": "layernorm", "init": "xavier"},
]


def _pair(builder, seed: int = 0, **kwargs) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    manual = builder(ops="manual", **kwargs)
    torch.manual_seed(seed)
    builtin = builder(ops="builtin", **kwargs)
    return manual, builtin


def _batch(n: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("kwargs", [*FC_VARIANTS, {"hidden_dims": [8], "dropout_keep_ratio": 0.5}], ids=str)
def test_fc_net_same_seed_same_parameters_and_layer_kinds(kwargs):
    manual, builtin = _pair(build_fc_net, **kwargs)
    assert manual.state_dict().keys() == builtin.state_dict().keys()
    for (name, a), b in zip(manual.state_dict().items(), builtin.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs between ops='manual' and ops='builtin' for one seed"
    kinds = {type(m).__module__ for m in manual.modules() if isinstance(m, (nn.Linear, nn.ReLU, nn.Dropout))}
    assert kinds == {manual_nn.__name__}, f"manual model uses {kinds}"
    assert all(type(m).__module__.startswith("torch.nn") for m in builtin.modules())


def test_dropout_keep_ratio_is_the_keep_probability():
    model = build_fc_net([8, 8], dropout_keep_ratio=0.8)
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == pytest.approx([0.2, 0.2])


@pytest.mark.parametrize(
    ("module_cls", "kwargs"),
    [
        *((FullyConnectedNet, kw) for kw in FC_VARIANTS),
        (ThreeLayerConvNet, {"num_filters": 4, "filter_size": 3, "hidden_dim": 12, "reg": 0.1}),
        (FullyConnectedNet, {"hidden_dims": [20], "loss": "svm", "reg": 0.05}),
        (ConvNet, {"channels": [4, 8], "hidden_dims": [12], "reg": 0.1}),
        (ConvNet, {"channels": [4], "convs_per_stage": 1, "normalization": "groupnorm", "groups": 2}),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v),
)
def test_manual_and_builtin_give_same_loss_and_gradients(module_cls, kwargs):
    torch.manual_seed(0)
    manual = module_cls(ops="manual", **kwargs).double()
    torch.manual_seed(0)
    builtin = module_cls(ops="builtin", **kwargs).double()
    x, y = _batch()
    losses = []
    for model in (manual, builtin):
        loss = model.loss(model(x.double()), y)
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1], msg="manual and builtin losses differ")
    for (name, a), b in zip(manual.named_parameters(), builtin.parameters()):
        torch.testing.assert_close(
            a.grad, b.grad, msg=f"gradient of {name} differs between manual and builtin"
        )


@pytest.mark.parametrize(
    ("init", "expected_std"),
    [("gaussian", 0.05), ("xavier", 1 / math.sqrt(3072)), ("kaiming", math.sqrt(2 / 3072))],
)
def test_init_schemes(init, expected_std):
    torch.manual_seed(0)
    model = build_fc_net([400], normalization="batchnorm", weight_scale=0.05, init=init)
    std = model.fc1.weight.std().item()
    assert std == pytest.approx(expected_std, rel=0.02), f"{init}: fc1 std {std}, expected {expected_std}"
    assert not model.fc1.bias.any() and not model.fc2.bias.any(), "biases must start at 0"
    assert torch.equal(model.norm1.weight, torch.ones(400)) and not model.norm1.bias.any()


def test_conv_init_uses_conv_fan_in():
    torch.manual_seed(0)
    model = build_three_layer_convnet(num_filters=64, filter_size=5, init="kaiming")
    assert model.conv1.weight.std().item() == pytest.approx(math.sqrt(2 / (3 * 5 * 5)), rel=0.05)


def test_convnet_shapes_and_layers():
    model = build_three_layer_convnet(num_filters=6, filter_size=7, hidden_dim=11, num_classes=4)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    assert model.fc1.in_features == 6 * 16 * 16, "7x7 conv with pad 3 keeps 32x32; the 2x2 pool halves it"
    m = manual_nn
    kinds = [type(layer) for layer in model if not isinstance(layer, nn.Flatten)]
    assert kinds == [m.Conv2d, m.ReLU, m.MaxPool2d, m.Linear, m.ReLU, m.Linear], kinds


def test_challenge_convnet_shapes_and_layers():
    model = build_convnet(channels=(4, 8), convs_per_stage=2, hidden_dims=(12,), dropout_keep_ratio=0.5)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model.fc1.in_features == 8 * 8 * 8, "two stages halve 32x32 twice; 8 channels remain"
    m = manual_nn
    stage = [m.Conv2d, m.BatchNorm2d, m.ReLU] * 2 + [m.MaxPool2d]
    kinds = [type(layer) for layer in model if not isinstance(layer, nn.Flatten)]
    assert kinds == stage * 2 + [m.Linear, m.ReLU, m.Dropout, m.Linear], kinds
    assert model.conv1_1.bias is None, "a conv followed by batch norm needs no bias"
    assert build_convnet(channels=(4,), normalization=None).conv1_1.bias is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": []}, "channels must be a non-empty sequence"),
        ({"channels": [4, 0]}, r"channels\[1\] must be a positive int"),
        ({"filter_size": 4}, "filter_size must be odd"),
        ({"normalization": "layernorm"}, "normalization must be one of"),
        ({"channels": [6], "normalization": "groupnorm", "groups": 4}, "groups=4 must divide"),
        ({"dropout_keep_ratio": 0.5}, "dropout_keep_ratio < 1 needs hidden_dims"),
        ({"channels": [4] * 6}, "6 stages halve input_dim"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_challenge_convnet_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_convnet(**kwargs)


def test_fc_net_accepts_flat_input():
    model = build_fc_net([10], input_dim=12, num_classes=3)
    assert model(torch.randn(5, 12)).shape == (5, 3)


def test_reg_is_half_l2_on_weights_only():
    torch.manual_seed(0)
    model = FullyConnectedNet([20, 16], normalization="batchnorm", reg=0.3)
    with torch.no_grad():
        for norm in (model.net.norm1, model.net.norm2):
            norm.weight.fill_(2.0)  # a penalty on gamma/beta would now show up
            norm.bias.fill_(1.0)
        model.net.fc1.bias.fill_(1.0)
    expected = 0.5 * 0.3 * sum(m.weight.square().sum() for m in model.net if isinstance(m, nn.Linear))
    torch.testing.assert_close(model.reg_loss(), expected)
    model.reg_loss().backward()
    assert model.net.fc1.bias.grad is None and model.net.norm1.weight.grad is None
    torch.testing.assert_close(model.net.fc2.weight.grad, 0.3 * model.net.fc2.weight.detach())


@pytest.mark.parametrize("ops", ["manual", "builtin"])
def test_initial_softmax_loss_is_log_num_classes(ops):
    """CS231n sanity check: with small weights all scores are ~0, so the loss is -log(1/10) = ln 10."""
    torch.manual_seed(0)
    model = FullyConnectedNet([100, 50], weight_scale=1e-3, ops=ops)
    x, y = _batch(n=200)
    loss = model.loss(model(x), y).item()
    assert loss == pytest.approx(math.log(10), abs=0.01), f"initial loss {loss}, expected ln 10 = 2.3026"


@pytest.mark.parametrize("ops", ["manual", "builtin"])
def test_overfits_50_examples(ops):
    """CS231n sanity check: a two-layer net drives 50 training examples to 100% accuracy."""
    torch.manual_seed(0)
    model = FullyConnectedNet([100], init="kaiming", ops=ops, optimizer=lambda p: Adam(p, lr=1e-3))
    x, y = _batch(n=50, seed=3)
    optimizer = model.configure_optimizers()
    for _ in range(60):
        optimizer.zero_grad()
        model.loss(model(x), y).backward()
        optimizer.step()
    accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy == 1.0, f"train accuracy on 50 examples after 60 Adam steps: {accuracy:.2f}"


def test_init_weights_is_reproducible_and_validates():
    a, b = build_fc_net([5]), build_fc_net([5])
    torch.manual_seed(3)
    init_weights_(a, "xavier")
    torch.manual_seed(3)
    init_weights_(b, "xavier")
    assert torch.equal(a.fc1.weight, b.fc1.weight)
    with pytest.raises(
        ValueError, match=r"init must be one of \('gaussian', 'xavier', 'kaiming'\), got 'he'"
    ):
        init_weights_(a, "he")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_dims": [10], "ops": "numpy"}, r"ops must be one of \('manual', 'builtin'\), got 'numpy'"),
        ({"hidden_dims": [10], "normalization": "groupnorm"}, "normalization must be one of"),
        ({"hidden_dims": [10], "dropout_keep_ratio": 0.0}, r"dropout_keep_ratio \(a keep probability\)"),
        ({"hidden_dims": [10, 0]}, r"hidden_dims\[1\] must be a positive int, got 0"),
        ({"hidden_dims": 10}, "hidden_dims must be a sequence"),
    ],
)
def test_fc_net_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_fc_net(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"normalization": "batchnorm"},
            r"hidden_dims=\[\] is a linear classifier.*normalization='batchnorm'",
        ),
        (
            {"normalization": "layernorm"},
            r"hidden_dims=\[\] is a linear classifier.*normalization='layernorm'",
        ),
        ({"dropout_keep_ratio": 0.5}, r"hidden_dims=\[\] is a linear classifier.*dropout_keep_ratio=0\.5"),
    ],
)
def test_linear_classifier_refuses_normalization_and_dropout(kwargs, message):
    """``hidden_dims=[]`` has no hidden layer: a norm or dropout setting would be silently ignored."""
    with pytest.raises(ValueError, match=message):
        build_fc_net([], **kwargs)
    model = build_fc_net([])
    assert [name for name, _ in model.named_children()] == ["flatten", "fc1"], "expected a linear classifier"


@pytest.mark.parametrize("weight_scale", [0.0, -1e-3, math.nan, math.inf, True, "1e-3"])
@pytest.mark.parametrize("init", ["gaussian", "kaiming"])
def test_weight_scale_must_be_finite_and_positive(weight_scale, init):
    message = r"weight_scale must be a finite float > 0, got "
    with pytest.raises(ValueError, match=message):
        build_fc_net([8], weight_scale=weight_scale, init=init)
    with pytest.raises(ValueError, match=message):
        build_three_layer_convnet(num_filters=2, hidden_dim=4, weight_scale=weight_scale, init=init)
    with pytest.raises(ValueError, match=message):
        init_weights_(nn.Linear(2, 2), init, weight_scale)
    with pytest.raises(ValueError, match=message):
        FullyConnectedNet([8], weight_scale=weight_scale, init=init)


def test_classifier_bad_arguments():
    with pytest.raises(ValueError, match=r"loss must be one of \('softmax', 'svm'\), got 'hinge'"):
        FullyConnectedNet([10], loss="hinge")
    with pytest.raises(ValueError, match="reg must be >= 0"):
        FullyConnectedNet([10], reg=-1.0)
    with pytest.raises(ValueError, match=r"input_dim must be \(C, H, W\)"):
        build_three_layer_convnet(input_dim=(32, 32))


@pytest.mark.parametrize(
    ("module_cls", "builder", "args"),
    [
        (FullyConnectedNet, build_fc_net, ([20],)),
        (ThreeLayerConvNet, build_three_layer_convnet, ()),
        (ConvNet, build_convnet, ()),
    ],
    ids=lambda v: getattr(v, "__name__", "args"),
)
def test_module_defaults_are_the_builders(module_cls, builder, args):
    """A LightningModule given no model arguments builds the builder's default net: the defaults live in
    the builder alone, and the saved hyper-parameters name every builder argument with its default."""
    torch.manual_seed(0)
    module = module_cls(*args)
    torch.manual_seed(0)
    net = builder(*args)
    assert str(module.net) == str(net), "the module's net is not the builder's default net"
    for (name, a), b in zip(module.net.state_dict().items(), net.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs from the builder's for the same seed"
    defaults = {
        name: p.default
        for name, p in inspect.signature(builder).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    saved = {name: module.hparams[name] for name in defaults}
    assert saved == defaults, f"saved hyper-parameters {saved} != the builder's defaults {defaults}"
    assert module.val_acc.num_classes == defaults["num_classes"]
    assert {"reg", "loss"} <= set(module.hparams) and not {"optimizer", "lr_scheduler"} & set(module.hparams)


def test_module_passes_model_arguments_to_the_builder():
    torch.manual_seed(0)
    module = FullyConnectedNet([12], input_dim=6, num_classes=3, weight_scale=0.5, ops="builtin")
    torch.manual_seed(0)
    net = build_fc_net([12], input_dim=6, num_classes=3, weight_scale=0.5, ops="builtin")
    assert all(torch.equal(a, b) for a, b in zip(module.net.parameters(), net.parameters()))
    assert module.val_acc.num_classes == 3 and module.hparams.ops == "builtin"
    with pytest.raises(TypeError, match="unexpected keyword argument 'not_an_arg'"):
        FullyConnectedNet([12], not_an_arg=1)
