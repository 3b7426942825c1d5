"""Classification losses with CS231n semantics (``softmax_loss`` and ``svm_loss`` in ``layers.py``):
the mean over the batch of a per-example loss of the scores ``(N, C)`` and integer labels ``y`` ``(N,)``.

Softmax (cross-entropy):
    L = 1/N sum_i [log sum_j exp(s_ij) - s_{i,y_i}]          (== F.cross_entropy(scores, y))
    dL/ds_ij = (softmax(s_i)_j - [j == y_i]) / N
Multiclass SVM (hinge, margin 1, summed over the wrong classes):
    L = 1/N sum_i sum_{j != y_i} max(0, s_ij - s_{i,y_i} + 1)   (== F.multi_margin_loss(scores, y) * C)
    dL/ds_ij = [margin_ij > 0] / N for j != y_i;  dL/ds_{i,y_i} = -(number of positive margins of i) / N
Both backwards are differentiable (the softmax one recomputes the probabilities from the saved scores,
the SVM one scales a constant 0/1 pattern), so double backward works.

The forward and backward formulas are fused kernels (:func:`custom_ops.fused.kernel`): with fusion on, each
runs as one compiled pass instead of about ten small eager ops (the built-in runs two kernels each way).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _autocast, fused
from ._checks import OpArgumentError, OpDtypeError, check_floating, check_ndim


@fused.kernel
def softmax_loss_forward(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``1/N sum_i [log sum_j exp(s_ij) - s_{i,y_i}]``."""
    shifted = scores - scores.amax(1, keepdim=True)  # softmax is shift-invariant; avoids overflow
    log_z = shifted.exp().sum(1).log()
    return (log_z - shifted.gather(1, y[:, None]).squeeze(1)).mean()


@fused.kernel
def softmax_loss_backward(scores: torch.Tensor, y: torch.Tensor, dloss: torch.Tensor) -> torch.Tensor:
    """``dscores = (softmax(s) - onehot(y)) * dloss / N``, the probabilities recomputed from the scores."""
    probs = (scores - scores.amax(1, keepdim=True).detach()).exp()
    scale = dloss / scores.shape[0]
    # (softmax - onehot(y)) * dloss / N: the -1 of the one-hot added at the labels only (scatter_add)
    dscores = probs * (scale / probs.sum(1, keepdim=True))
    return dscores.scatter_add_(1, y[:, None], (-scale).expand(y.shape[0], 1))


class SoftmaxLossFunction(torch.autograd.Function):
    """scores ``(N, C)``, y ``(N,)`` int64 -> scalar."""

    @staticmethod
    def forward(ctx, scores, y):
        ctx.save_for_backward(scores, y)
        return softmax_loss_forward(scores, y)

    @staticmethod
    def backward(ctx, dloss):
        scores, y = ctx.saved_tensors
        return softmax_loss_backward(scores, y, dloss), None


@fused.kernel
def svm_loss_forward(scores: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L, [margin > 0])``: ``L = 1/N sum_i sum_{j != y_i} max(0, s_ij - s_{i,y_i} + 1)``."""
    margins = (scores - scores.gather(1, y[:, None]) + 1.0).clamp_min(0.0)
    margins.scatter_(1, y[:, None], 0.0)
    return margins.sum() / scores.shape[0], margins > 0


@fused.kernel
def svm_loss_backward(positive: torch.Tensor, y: torch.Tensor, dloss: torch.Tensor) -> torch.Tensor:
    """``dscores``: ``[margin > 0] * dloss / N``, minus the count of positive margins at ``y``."""
    coeff = positive.to(dloss.dtype)
    coeff.scatter_(1, y[:, None], -coeff.sum(1, keepdim=True))
    return coeff * (dloss / positive.shape[0])


class SVMLossFunction(torch.autograd.Function):
    """scores ``(N, C)``, y ``(N,)`` int64 -> scalar."""

    @staticmethod
    def forward(ctx, scores, y):
        loss, positive = svm_loss_forward(scores, y)
        ctx.save_for_backward(positive, y)
        return loss

    @staticmethod
    def backward(ctx, dloss):
        positive, y = ctx.saved_tensors
        return svm_loss_backward(positive, y, dloss), None


def _check_scores_labels(scores: torch.Tensor, y: torch.Tensor) -> None:
    check_floating("scores", scores)
    check_ndim("scores", scores, (2,), "(N, C)")
    if not isinstance(y, torch.Tensor) or y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        got = y.dtype if isinstance(y, torch.Tensor) else type(y).__name__
        raise OpDtypeError(f"y must be an integer tensor of class indices, got {got}")
    if y.shape != scores.shape[:1]:
        raise OpArgumentError(
            f"y must have shape (N,) = ({scores.shape[0]},) to match scores, got {tuple(y.shape)}"
        )
    if scores.shape[0] == 0:
        raise OpArgumentError("scores must hold at least one example, got N=0")
    # The value check reads y on the host: done for CPU tensors only (no device sync per step on CUDA,
    # where an out-of-range label trips the gather's device-side assert), and not while tracing.
    if y.device.type != "cpu" or torch.compiler.is_compiling():
        return
    low, high = (int(v) for v in torch.aminmax(y))
    if low < 0 or high >= scores.shape[1]:
        raise OpArgumentError(
            f"y must hold class indices in [0, C={scores.shape[1]}), got values in [{low}, {high}]"
        )


def softmax_loss(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean softmax (cross-entropy) loss of scores ``(N, C)`` for labels ``y`` ``(N,)``; a scalar.

    The twin of :func:`torch.nn.functional.cross_entropy` (mean reduction, no weights or smoothing).

    Args:
        scores: floating tensor ``(N, C)``, ``scores[i, j]`` the score of class j for example i; N > 0.
        y: integer tensor ``(N,)`` of class indices in ``[0, C)``.

    Shape:
        - scores and its gradient ``dscores`` (``(softmax(scores) - onehot(y)) / N``): ``(N, C)``.
        - y: ``(N,)`` (no gradient). Output: ``()``.

    Returns:
        ``-mean_i log softmax(scores)[i, y[i]]`` as a 0-d tensor (float32 under autocast).

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> scores, y = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]]), torch.tensor([0, 2])
        >>> MF.softmax_loss(scores, y)
        tensor(0.7531)
    """
    _check_scores_labels(scores, y)
    return _autocast.apply(SoftmaxLossFunction, "fp32", scores, y.long())


def svm_loss(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean multiclass SVM loss (margin 1, sum over wrong classes) of scores ``(N, C)``; a scalar.

    ``F.multi_margin_loss`` times C is its built-in twin (torch also averages over the classes).

    Args:
        scores: floating tensor ``(N, C)``; N > 0.
        y: integer tensor ``(N,)`` of class indices in ``[0, C)``.

    Shape:
        - scores and its gradient ``dscores``: ``(N, C)``.
        - y: ``(N,)`` (no gradient). Output: ``()``.

    Returns:
        ``mean_i sum_{j != y[i]} max(0, scores[i, j] - scores[i, y[i]] + 1)`` as a 0-d tensor.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> scores, y = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]]), torch.tensor([0, 2])
        >>> MF.svm_loss(scores, y)  # example 0: no margin violated; example 1: two, by 1 each
        tensor(1.)
    """
    _check_scores_labels(scores, y)
    return _autocast.apply(SVMLossFunction, "fp32", scores, y.long())


def builtin_svm_loss(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The built-in twin of :func:`svm_loss`: ``F.multi_margin_loss`` also averages over the C classes,
    CS231n sums over the wrong ones, hence the factor C."""
    return F.multi_margin_loss(scores, y) * scores.shape[1]
