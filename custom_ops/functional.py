"""The manual operators, with the argument names and defaults of :mod:`torch.nn.functional`."""

from .activations import hardsigmoid, hardswish, relu6, sigmoid, silu
from .adaptive_pool import adaptive_avg_pool2d, adaptive_max_pool2d
from .attention import scaled_dot_product_attention
from .avg_pool import avg_pool2d
from .batchnorm import batch_norm
from .conv import conv2d
from .dropout import dropout
from .elu import celu, elu, selu
from .gelu import gelu
from .group_norm import group_norm
from .hardtanh import hardtanh
from .layernorm import layer_norm
from .leaky_relu import leaky_relu, prelu
from .linear import linear
from .losses import softmax_loss, svm_loss
from .matmul import einsum, matmul
from .multihead_attention import multi_head_attention_forward
from .normalize import normalize
from .pool import max_pool2d
from .relu import relu
from .softmax import log_softmax, softmax
from .softplus import mish, softplus
from .tanh import tanh

__all__ = [
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "avg_pool2d",
    "batch_norm",
    "celu",
    "conv2d",
    "dropout",
    "einsum",
    "elu",
    "gelu",
    "group_norm",
    "hardsigmoid",
    "hardswish",
    "hardtanh",
    "layer_norm",
    "leaky_relu",
    "linear",
    "log_softmax",
    "matmul",
    "max_pool2d",
    "mish",
    "multi_head_attention_forward",
    "normalize",
    "prelu",
    "relu",
    "relu6",
    "scaled_dot_product_attention",
    "selu",
    "sigmoid",
    "silu",
    "softmax",
    "softmax_loss",
    "softplus",
    "svm_loss",
    "tanh",
]
