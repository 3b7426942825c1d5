"""
Fully connected nets: initialisation, update rules, batch/layer norm, dropout
=============================================================================

The rest of ``FullyConnectedNets.ipynb``, ``BatchNormalization.ipynb`` and ``Dropout.ipynb`` on the manual
operators: what the weight scale does to a deep net, the course's update rules side by side, why batch
norm makes the weight scale matter less (and fails at tiny batches, where layer norm does not), and
dropout against overfitting.

Each study is a function of :mod:`torch_cs231n.experiments` that returns its numbers, with a figure
function beside it; the ``cs231n experiment NAME`` commands run them at full size. Here they run with
small settings, about a minute in all on a 2-core CPU. **The full versions**::

    cs231n experiment init-scale --out figures     # and: optimizers, batchnorm, dropout

(their results are on the :doc:`course tools page </tools>`).

The data are CIFAR-10 images from ``../shared/data/cifar10_train.npz`` when that file exists (the
training images are the file's first N, the validation images its last 1,000, the mean image
subtracted); without it, the studies run on random stand-in images and the accuracies mean nothing.
"""

from pathlib import Path

import torch

import custom_ops.functional as MF
from torch_cs231n.experiments import batchnorm, dropout, init_scale, optimizers
from torch_cs231n.experiments._training import load_cifar10, random_splits

torch.manual_seed(0)


def shared_file(name: str) -> Path:
    """``shared/data/NAME`` beside the repository (``../shared/data`` from its root), found from here."""
    here = Path(globals().get("__file__", Path.cwd() / "notebook")).resolve().parent
    for base in (here, *here.parents):
        if (base / "shared" / "data" / name).is_file():
            return base / "shared" / "data" / name
    return Path("../shared/data") / name


CIFAR = shared_file("cifar10_train.npz")


def data(num_train: int, num_val: int = 1000):
    """CIFAR-10 splits, or random stand-in images when the file is not there."""
    if CIFAR.is_file():
        return load_cifar10(CIFAR, num_train, num_val)
    print(f"{CIFAR} not found: random stand-in images, the accuracies below mean nothing")
    return random_splits(num_train, num_val)


# %%
# Batch normalisation and dropout, one call each
# -----------------------------------------------
# Batch norm in training mode normalises each feature over the batch, then scales by ``gamma`` and shifts
# by ``beta``: whatever the input's scale, the output has the mean ``beta`` and the std ``gamma``.
x = 5 * torch.randn(200, 3) + 12
gamma, beta = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, -1.0, 4.0])
running_mean, running_var = torch.zeros(3), torch.ones(3)
out = MF.batch_norm(x, running_mean, running_var, gamma, beta, training=True, momentum=0.1, eps=1e-5)
print("input  mean", x.mean(0), "std", x.std(0, unbiased=False))
print("output mean", out.mean(0), "std", out.std(0, unbiased=False))
print("running mean after one batch (momentum 0.1, torch's convention):", running_mean)

# %%
# Dropout ``p`` is the probability of *dropping* a unit, as in torch (the assignment's ``p`` is the keep
# probability). Kept units are scaled by ``1 / (1 - p)``, so the expected output equals the input and
# nothing changes at test time:
x = torch.ones(100_000)
for p in (0.25, 0.5, 0.75):
    train = MF.dropout(x, p=p, training=True)
    print(
        f"p={p}: mean in training {train.mean():.3f}, kept {(train != 0).float().mean():.3f}, "
        f"eval unchanged: {torch.equal(MF.dropout(x, p=p, training=False), x)}"
    )

# %%
# Weight scale and learning rate
# ------------------------------
# Overfit 50 images with SGD: a 3-layer and a 5-layer net, each over a grid of weight scales and learning
# rates. The deeper net is far more sensitive to the weight scale.
study = init_scale.init_scale_study(
    data(50),
    weight_scales=(1e-3, 1e-2, 3e-2, 1e-1),
    learning_rates=(1e-3, 1e-2, 3e-2),
    epochs=10,
)
print(init_scale.format_table(study))
init_scale_figure = init_scale.figure(study)  # a matplotlib Figure: a notebook shows it at a cell's end
init_scale_figure

# %%
# Update rules
# ------------
# SGD, SGD with momentum, RMSProp, Adagrad and Adam (``torch_cs231n.nets.optim``: the course's formulas, each
# tested against its ``torch.optim`` twin) on a 5-layer net; then the relative size of each update to the
# first layer's weights, for Adagrad and Adam over more steps.
study = optimizers.optimizer_study(data(1000), epochs=2, update_steps=200)
print(optimizers.format_table(study))
optimizers_figure = optimizers.figure(study)
optimizers_figure

# %%
update_size_figure = optimizers.update_size_figure(study, window=10)
update_size_figure

# %%
# Batch norm: weight scale and batch size
# ---------------------------------------
# A 6-layer net with and without batch norm over a sweep of weight scales, then batch norm and layer norm
# at small and larger batch sizes.
study = batchnorm.batchnorm_study(
    data(500), weight_scales=(1e-4, 1e-3, 1e-2, 1e-1, 1.0), batch_sizes=(5, 50), epochs=3
)
print(batchnorm.format_table(study))
weight_scale_figure = batchnorm.weight_scale_figure(study)
weight_scale_figure

# %%
batch_size_figure = batchnorm.batch_size_figure(study)
batch_size_figure

# %%
layernorm_figure = batchnorm.layernorm_figure(study)
layernorm_figure

# %%
# Dropout
# -------
# A two-layer net on 500 images, without dropout and with keep ratio 0.25.
study = dropout.dropout_study(data(500), epochs=10)
print(dropout.format_table(study))
dropout_figure = dropout.figure(study)
dropout_figure
