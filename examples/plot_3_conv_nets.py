"""
Convolutional nets: conv and pool by hand, memory, spatial norms, a short training
==================================================================================

``ConvolutionalNetworks.ipynb`` on the manual operators: the convolution and max-pool layers against the
assignment's expected numbers and against finite differences, the memory of a small conv net layer by
layer (the midterm's table), spatial batch norm and group norm, and a three-layer conv net trained for a
few epochs.

The training here is short (2,000 images, 3 epochs; about a minute on a 2-core CPU). **The full
version** trains on all 49,000 images with the Lightning command line::

    cs231n fit --config configs/conv_net.yaml            # the course's ThreeLayerConvNet, 1 epoch
    cs231n fit --config configs/convnet_challenge.yaml   # the challenge net: 85% in 10 epochs

It reads CIFAR-10 from ``../shared/data/cifar10_train.npz`` when that file exists, else it trains on
random stand-in images (and the accuracies mean nothing).
"""

from pathlib import Path

import matplotlib.pyplot as plt
import torch

import custom_ops.functional as MF
import custom_ops.nn as MN
from torch_cs231n.tools.gradcheck import numeric_gradient, rel_error
from torch_cs231n.tools.summary import format_table, layer_table

torch.manual_seed(0)
dtype = torch.float64

# %%
# Convolution: forward with the assignment's numbers
# --------------------------------------------------
x = torch.linspace(-0.1, 0.5, 2 * 3 * 4 * 4, dtype=dtype).reshape(2, 3, 4, 4)
w = torch.linspace(-0.2, 0.3, 3 * 3 * 4 * 4, dtype=dtype).reshape(3, 3, 4, 4)
b = torch.linspace(-0.1, 0.2, 3, dtype=dtype)
out = MF.conv2d(x, w, b, stride=2, padding=1)
correct_out = torch.tensor(
    [
        [
            [[-0.08759809, -0.10987781], [-0.18387192, -0.2109216]],
            [[0.21027089, 0.21661097], [0.22847626, 0.23004637]],
            [[0.50813986, 0.54309974], [0.64082444, 0.67101435]],
        ],
        [
            [[-0.98053589, -1.03143541], [-1.19128892, -1.24695841]],
            [[0.69108355, 0.66880383], [0.59480972, 0.56776003]],
            [[2.36270298, 2.36904306], [2.38090835, 2.38247847]],
        ],
    ],
    dtype=dtype,
)
print("conv forward relative error (the assignment: about 2e-8 or less):", rel_error(out, correct_out))

# %%
# Convolution: backward against finite differences
# ------------------------------------------------
# The hand-written backward computes ``dx`` as a transposed convolution of ``dout`` with the weights and
# ``dw`` as a correlation of the input with ``dout`` (see :doc:`the conv2d page </ops/generated/conv2d>`).
x = torch.randn(4, 3, 5, 5, dtype=dtype, requires_grad=True)
w = torch.randn(2, 3, 3, 3, dtype=dtype, requires_grad=True)
b = torch.randn(2, dtype=dtype, requires_grad=True)
dout = torch.randn(4, 2, 5, 5, dtype=dtype)
MF.conv2d(x, w, b, stride=1, padding=1).backward(dout)
for name, tensor in (("dx", x), ("dw", w), ("db", b)):
    with torch.no_grad():
        numeric = numeric_gradient(
            lambda: float((MF.conv2d(x, w, b, stride=1, padding=1) * dout).sum()), tensor
        )
    print(f"conv {name} relative error: {rel_error(tensor.grad, numeric):.2e}")

# %%
# Max pooling: forward and backward
# ---------------------------------
x = torch.linspace(-0.3, 0.4, 2 * 3 * 4 * 4, dtype=dtype).reshape(2, 3, 4, 4)
out = MF.max_pool2d(x, kernel_size=2, stride=2)
correct_out = torch.tensor(
    [
        [
            [[-0.26315789, -0.24842105], [-0.20421053, -0.18947368]],
            [[-0.14526316, -0.13052632], [-0.08631579, -0.07157895]],
            [[-0.02736842, -0.01263158], [0.03157895, 0.04631579]],
        ],
        [
            [[0.09052632, 0.10526316], [0.14947368, 0.16421053]],
            [[0.20842105, 0.22315789], [0.26736842, 0.28210526]],
            [[0.32631579, 0.34105263], [0.38526316, 0.4]],
        ],
    ],
    dtype=dtype,
)
print("max pool forward relative error (the assignment: about 4e-8 or less):", rel_error(out, correct_out))

x = torch.randn(3, 2, 8, 8, dtype=dtype, requires_grad=True)
dout = torch.randn(3, 2, 4, 4, dtype=dtype)
MF.max_pool2d(x, kernel_size=2, stride=2).backward(dout)
with torch.no_grad():
    numeric = numeric_gradient(lambda: float((MF.max_pool2d(x, kernel_size=2, stride=2) * dout).sum()), x)
print(f"max pool dx relative error: {rel_error(x.grad, numeric):.2e}")

# %%
# Memory, layer by layer: the midterm's table
# -------------------------------------------
# The course's midterm asks for the activations and parameters of each layer of
# ``CONV5-10 - POOL2 - CONV5-10 - POOL2 - FC-10`` on a ``32x32x1`` input (5x5 convolutions with padding 2,
# stride 1). :func:`torch_cs231n.tools.summary.layer_table` measures them (and the bytes each layer saves for
# its backward) on a real forward pass:
midterm = torch.nn.Sequential(
    MN.Conv2d(1, 10, 5, padding=2),
    MN.MaxPool2d(2),
    MN.Conv2d(10, 10, 5, padding=2),
    MN.MaxPool2d(2),
    torch.nn.Flatten(),
    MN.Linear(8 * 8 * 10, 10),
)
print(format_table(layer_table(midterm, (1, 32, 32))))

# %%
# Spatial batch norm and group norm
# ---------------------------------
# Spatial batch norm normalises each channel over the batch and both spatial dimensions; group norm
# normalises each sample over groups of channels (and needs no batch statistics at all).
x = 4 * torch.randn(8, 6, 5, 5) + 10
out = MF.batch_norm(x, None, None, training=True)
print(
    "spatial batch norm: per-channel mean",
    out.mean((0, 2, 3)).abs().max().item(),
    "std",
    out.std((0, 2, 3), unbiased=False),
)
out = MF.group_norm(x, 2)
groups = out.reshape(8, 2, -1)
print(
    "group norm: per-sample, per-group mean",
    groups.mean(-1).abs().max().item(),
    "std",
    groups.std(-1, unbiased=False).flatten()[:4],
    "...",
)

# %%
# A three-layer conv net, trained briefly
# ---------------------------------------
# ``conv 7x7 - relu - 2x2 max pool - affine - relu - affine`` from the manual layers
# (:func:`torch_cs231n.nets.models.build_three_layer_convnet`), trained with the course's Adam
# (:class:`torch_cs231n.nets.optim.Adam`) and the softmax loss. First the assignment's sanity check,
# overfitting 100 images, then a short run on 2,000.
from torch_cs231n.experiments._training import load_cifar10, random_splits  # noqa: E402
from torch_cs231n.nets.models import build_three_layer_convnet  # noqa: E402
from torch_cs231n.nets.optim import Adam  # noqa: E402


def shared_file(name: str) -> Path:
    """``shared/data/NAME`` beside the repository (``../shared/data`` from its root), found from here."""
    here = Path(globals().get("__file__", Path.cwd() / "notebook")).resolve().parent
    for base in (here, *here.parents):
        if (base / "shared" / "data" / name).is_file():
            return base / "shared" / "data" / name
    return Path("../shared/data") / name


cifar = shared_file("cifar10_train.npz")
if cifar.is_file():
    data = load_cifar10(cifar, num_train=2000, num_val=500)
else:
    print(f"{cifar} not found: random stand-in images, the accuracies below mean nothing")
    data = random_splits(2000, 500)
scale = data.x_train.std()  # the course feeds mean-subtracted pixels; scaled to unit std here


def train(x, y, epochs, lr=1e-3, batch_size=50, seed=0):
    torch.manual_seed(seed)
    net = build_three_layer_convnet(num_filters=16, hidden_dim=100, weight_scale=1e-2, ops="manual")
    optimizer = Adam(net.parameters(), lr=lr)
    history = []
    for epoch in range(epochs):
        net.train()
        for batch in torch.randperm(len(x)).split(batch_size):
            loss = MF.softmax_loss(net(x[batch] / scale), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            train_acc = (net(x / scale).argmax(1) == y).float().mean().item()
            val_acc = (net(data.x_val / scale).argmax(1) == data.y_val).float().mean().item()
        history.append((loss.item(), train_acc, val_acc))
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, train acc {train_acc:.3f}, val acc {val_acc:.3f}")
    return history


print("overfitting 100 images:")
train(data.x_train[:100], data.y_train[:100], epochs=15, lr=3e-3)
print("2,000 images:")
history = train(data.x_train, data.y_train, epochs=3)

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot([h[1] for h in history], "o-", label="train")
ax.plot([h[2] for h in history], "o-", label="val")
ax.set_xlabel("epoch")
ax.set_ylabel("accuracy")
ax.legend()
plt.show()
