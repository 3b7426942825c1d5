"""Classification losses with CS231n semantics (``softmax_loss`` and ``svm_loss`` in ``layers.py``):
the mean over the batch of a per-example loss of the scores ``(N, C)`` and integer labels ``y`` ``(N,)``.

The references, as the course writes them (``[j == y_i]`` the one-hot labels; a dot marks the
forward-mode tangent of the scores, and the loss's tangent is the gradient's dot product with it):

Softmax (cross-entropy), ``== F.cross_entropy(scores, y)``:

    shifted     = s - max_j s_ij                      (per row: the shift avoids overflow in exp)
    log_probs   = shifted - log sum_j exp(shifted_ij)
    L           = -1/N sum_i log_probs[i, y_i]
    dL/ds_ij    = (probs_ij - [j == y_i]) / N         probs = exp(log_probs), the softmax
    L̇           = sum_ij (probs_ij - [j == y_i]) ṡ_ij / N

Multiclass SVM (hinge, margin 1, summed over the wrong classes), ``== F.multi_margin_loss(scores, y) * C``:

    margins_ij  = max(0, s_ij - s_{i,y_i} + 1) for j != y_i,  0 at j == y_i
    L           = 1/N sum_ij margins_ij
    dL/ds_ij    = ([margins_ij > 0] - [j == y_i] * sum_k [margins_ik > 0]) / N
    L̇           = sum_ij dL/ds_ij ṡ_ij                  (the same coefficients times the tangent)

Both backwards are differentiable (the softmax one recomputes the probabilities from the saved scores, the
SVM one scales a constant 0/1 pattern), so double backward (and forward-over-reverse) works. The SVM loss
saves only that pattern's boolean ``[margin > 0]``, a second (non-differentiable) output of its Function.

The tuned formulations, the default, are fused kernels (:func:`custom_ops.fused.kernel`): the one-hot
labels never made (the label's score gathered, its -1 added at the label with a scatter), the probabilities
normalised in the gradient's buffer; with fusion on, each runs as one compiled pass instead of about ten
small eager ops (the built-in runs two kernels each way).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from . import _autocast, _reference, fused
from ._checks import OpArgumentError, OpDtypeError, check_floating, check_ndim
from ._function import fast_apply, without_jvp
from ._transforms import functorch_active


def _one_hot(y: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """``[j == y_i]``, ``(N, C)`` in the scores' dtype."""
    classes = torch.arange(scores.shape[1], device=scores.device)
    return (classes == y[:, None]).to(scores.dtype)


# ------------------------------------------------------------------------------------------- reference
def softmax_loss_forward_reference(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``L = -1/N sum_i log softmax(s)[i, y_i]``."""
    shifted = scores - scores.amax(1, keepdim=True)
    log_probs = shifted - shifted.exp().sum(1, keepdim=True).log()
    correct = log_probs.gather(1, y[:, None])  # log_probs[i, y_i], (N, 1)
    loss = -correct.mean()
    return loss


def softmax_loss_backward_reference(
    scores: torch.Tensor, y: torch.Tensor, dloss: torch.Tensor
) -> torch.Tensor:
    """``dscores = (softmax(s) - onehot(y)) / N * dloss``."""
    shifted = scores - scores.amax(1, keepdim=True).detach()  # the shift's own gradient is zero
    exp_shifted = shifted.exp()
    probs = exp_shifted / exp_shifted.sum(1, keepdim=True)
    dscores = (probs - _one_hot(y, scores)) / scores.shape[0] * dloss
    return dscores


def softmax_loss_jvp_reference(
    scores: torch.Tensor, y: torch.Tensor, scores_dot: torch.Tensor
) -> torch.Tensor:
    """``L̇ = sum((softmax(s) - onehot(y)) * ṡ) / N``."""
    shifted = scores - scores.amax(1, keepdim=True)
    exp_shifted = shifted.exp()
    probs = exp_shifted / exp_shifted.sum(1, keepdim=True)
    loss_dot = ((probs - _one_hot(y, scores)) * scores_dot).sum() / scores.shape[0]
    return loss_dot


def svm_loss_forward_reference(scores: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L, [margins > 0])``: ``L = 1/N sum_i sum_{j != y_i} max(0, s_ij - s_{i,y_i} + 1)``."""
    correct = scores.gather(1, y[:, None])  # s_{i,y_i}, (N, 1)
    margins = (scores - correct + 1.0).clamp_min(0.0)
    margins = margins * (1 - _one_hot(y, scores))  # no margin at the label itself
    loss = margins.sum() / scores.shape[0]
    return loss, margins > 0


def svm_coefficients_reference(positive: torch.Tensor, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``dL/ds`` for ``dL = 1``: ``([margin > 0] - onehot(y) * (number of positive margins)) / N``."""
    positive = positive.to(dtype)
    num_positive = positive.sum(1, keepdim=True)
    coeff = (positive - _one_hot(y, positive) * num_positive) / positive.shape[0]
    return coeff


def svm_loss_backward_reference(positive: torch.Tensor, y: torch.Tensor, dloss: torch.Tensor) -> torch.Tensor:
    """``dscores = ([margin > 0] - onehot(y) * sum_k [margin_k > 0]) / N * dloss``."""
    dscores = svm_coefficients_reference(positive, y, dloss.dtype) * dloss
    return dscores


def svm_loss_jvp_reference(positive: torch.Tensor, y: torch.Tensor, scores_dot: torch.Tensor) -> torch.Tensor:
    """``L̇ = sum(dL/ds * ṡ)``, the coefficients of the backward."""
    loss_dot = (svm_coefficients_reference(positive, y, scores_dot.dtype) * scores_dot).sum()
    return loss_dot


# ------------------------------------------------------------------------------------------------ tuned
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
    # (softmax - onehot(y)) * dloss / N: the -1 of the one-hot added at the labels only (scatter_add, out of
    # place: the labels may be batched under vmap where the scores are not)
    dscores = probs * (scale / probs.sum(1, keepdim=True))
    return dscores.scatter_add(1, y[:, None], (-scale).expand(y.shape[0], 1))


@fused.kernel
def svm_loss_forward(scores: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L, [margin > 0])``: ``L = 1/N sum_i sum_{j != y_i} max(0, s_ij - s_{i,y_i} + 1)``."""
    margins = (scores - scores.gather(1, y[:, None]) + 1.0).clamp_min(0.0)
    margins = margins.scatter(1, y[:, None], 0.0)  # out of place: y may be batched where the scores are not
    return margins.sum() / scores.shape[0], margins > 0


@fused.kernel
def svm_loss_backward(positive: torch.Tensor, y: torch.Tensor, dloss: torch.Tensor) -> torch.Tensor:
    """``dscores``: ``[margin > 0] * dloss / N``, minus the count of positive margins at ``y``."""
    coeff = positive.to(dloss.dtype)
    coeff = coeff.scatter(1, y[:, None], -coeff.sum(1, keepdim=True))
    return coeff * (dloss / positive.shape[0])


@fast_apply
class SoftmaxLossFunction(torch.autograd.Function):
    """scores ``(N, C)``, y ``(N,)`` int64 -> scalar.

    Forward-mode derivative (``jvp``): ``L̇ = Σ (softmax(s) − onehot(y)) ⊙ ṡ / N``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if _reference.is_active():
            return softmax_loss_forward_reference(scores, y)
        return softmax_loss_forward(scores, y)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, torch.Tensor], output: torch.Tensor) -> None:
        ctx.reference = _reference.is_active()
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)

    @staticmethod
    def backward(ctx: Any, dloss: torch.Tensor) -> tuple[torch.Tensor, None]:
        scores, y = ctx.saved_tensors
        if ctx.reference:
            return softmax_loss_backward_reference(scores, y, dloss), None
        return softmax_loss_backward(scores, y, dloss), None

    @staticmethod
    def jvp(ctx: Any, scores_dot: torch.Tensor, _y_dot: None) -> torch.Tensor:
        scores, y = ctx.saved_tensors
        return softmax_loss_jvp_reference(scores, y, scores_dot)


_SoftmaxLossFunctionTraced = without_jvp(SoftmaxLossFunction)  # what torch.compile traces


@fast_apply
class SVMLossFunction(torch.autograd.Function):
    """scores ``(N, C)``, y ``(N,)`` int64 -> (scalar loss, ``[margin > 0]`` ``(N, C)`` bool, not
    differentiable).

    Forward-mode derivative (``jvp``): ``L̇ = Σ ([m > 0] − onehot(y) Σ_k [m_k > 0]) ⊙ ṡ / N``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(scores: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if _reference.is_active():
            return svm_loss_forward_reference(scores, y)
        return svm_loss_forward(scores, y)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, torch.Tensor], output: Any) -> None:
        _, y = inputs
        _, positive = output
        ctx.mark_non_differentiable(positive)
        ctx.reference = _reference.is_active()
        ctx.save_for_backward(positive, y)
        ctx.save_for_forward(positive, y)

    @staticmethod
    def backward(ctx: Any, dloss: torch.Tensor, _dpositive: None) -> tuple[torch.Tensor, None]:
        positive, y = ctx.saved_tensors
        if ctx.reference:
            return svm_loss_backward_reference(positive, y, dloss), None
        return svm_loss_backward(positive, y, dloss), None

    @staticmethod
    def jvp(ctx: Any, scores_dot: torch.Tensor, _y_dot: None) -> tuple[torch.Tensor, None]:
        positive, y = ctx.saved_tensors
        return svm_loss_jvp_reference(positive, y, scores_dot), None


_SVMLossFunctionTraced = without_jvp(SVMLossFunction)  # what torch.compile traces


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
    # where an out-of-range label trips the gather's device-side assert), and not while tracing nor under a
    # torch.func transform (y may be batched: its values are not readable; the gather refuses a bad label).
    if y.device.type != "cpu" or torch.compiler.is_compiling() or functorch_active():
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
    function = _SoftmaxLossFunctionTraced if torch.compiler.is_compiling() else SoftmaxLossFunction
    return _autocast.apply(function, "fp32", scores, y.long())


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
    function = _SVMLossFunctionTraced if torch.compiler.is_compiling() else SVMLossFunction
    loss, _ = _autocast.apply(function, "fp32", scores, y.long())
    return loss


def builtin_svm_loss(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The built-in twin of :func:`svm_loss`: ``F.multi_margin_loss`` also averages over the C classes,
    CS231n sums over the wrong ones, hence the factor C."""
    return F.multi_margin_loss(scores, y) * scores.shape[1]
