"""The manual operators, with the argument names and defaults of :mod:`torch.nn.functional`."""

from .activations import hardsigmoid, hardswish, relu6, sigmoid, silu
from .adaptive_pool import adaptive_avg_pool2d, adaptive_max_pool2d
from .attention import scaled_dot_product_attention
from .avg_pool import avg_pool2d
from .batchnorm import batch_norm
from .conv import conv2d
from .dropout import dropout
from .gelu import gelu
from .group_norm import group_norm
from .layernorm import layer_norm
from .linear import linear
from .losses import softmax_loss, svm_loss
from .multihead_attention import multi_head_attention_forward
from .pool import max_pool2d
from .relu import relu
from .softmax import log_softmax, softmax
from .tanh import tanh

__all__ = [
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "avg_pool2d",
    "batch_norm",
    "conv2d",
    "dropout",
    "gelu",
    "group_norm",
    "hardsigmoid",
    "hardswish",
    "layer_norm",
    "linear",
    "log_softmax",
    "max_pool2d",
    "multi_head_attention_forward",
    "relu",
    "relu6",
    "scaled_dot_product_attention",
    "sigmoid",
    "silu",
    "softmax",
    "softmax_loss",
    "svm_loss",
    "tanh",
]
