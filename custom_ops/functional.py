"""The manual operators, with the argument names and defaults of :mod:`torch.nn.functional`."""

from .activations import hardsigmoid, hardswish, relu6, sigmoid, silu
from .adaptive_pool import adaptive_avg_pool2d
from .batchnorm import batch_norm
from .conv import conv2d
from .dropout import dropout
from .layernorm import layer_norm
from .linear import linear
from .losses import softmax_loss, svm_loss
from .pool import max_pool2d
from .relu import relu

__all__ = [
    "adaptive_avg_pool2d",
    "batch_norm",
    "conv2d",
    "dropout",
    "hardsigmoid",
    "hardswish",
    "layer_norm",
    "linear",
    "max_pool2d",
    "relu",
    "relu6",
    "sigmoid",
    "silu",
    "softmax_loss",
    "svm_loss",
]
