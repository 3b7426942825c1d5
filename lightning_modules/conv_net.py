"""The CS231n conv nets as ``LightningModule``s: the ``ThreeLayerConvNet`` and the challenge ``ConvNet``."""

from __future__ import annotations

from torch_cs231n.nets.models import build_convnet, build_three_layer_convnet

from .classifier import BuiltNetClassifier


class ThreeLayerConvNet(BuiltNetClassifier):
    """``conv - relu - 2x2 max pool - affine - relu - affine - softmax/svm``.

    Input ``(N, *input_dim)``, scores ``(N, num_classes)``. The model arguments (``net_args``) and their
    defaults are those of :func:`torch_cs231n.nets.models.build_three_layer_convnet`; the training arguments
    are
    :class:`ImageClassifier`'s.
    """

    build_net = staticmethod(build_three_layer_convnet)


class ConvNet(BuiltNetClassifier):
    """The CS231n challenge net, ``{[conv - [norm] - relu] x K - pool} x stages - {affine - relu} x M -
    affine - softmax/svm``, for reaching high CIFAR-10 accuracy in a few epochs.

    Input ``(N, *input_dim)``, scores ``(N, num_classes)``. The model arguments (``net_args``) and their
    defaults are those of :func:`torch_cs231n.nets.models.build_convnet`; the training arguments are
    :class:`ImageClassifier`'s.
    """

    build_net = staticmethod(build_convnet)
