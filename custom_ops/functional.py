"""The manual operators, with the argument names and defaults of :mod:`torch.nn.functional`."""

from .batchnorm import batch_norm
from .conv import conv2d
from .dropout import dropout
from .layernorm import layer_norm
from .linear import linear
from .losses import softmax_loss, svm_loss
from .pool import max_pool2d
from .relu import relu

__all__ = [
    "batch_norm",
    "conv2d",
    "dropout",
    "layer_norm",
    "linear",
    "max_pool2d",
    "relu",
    "softmax_loss",
    "svm_loss",
]
