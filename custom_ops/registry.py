"""What runtime code knows of each manual operator: one :class:`OpFacts` per op (:data:`OPS`).

A fact here is something the package acts on or promises: the manual function and its built-in twin, the
module twins (:func:`torch_cs231n.interop.swap.to_manual` swaps exactly these built-in classes), whether the
backward is itself differentiable, whether forward-mode AD and ``torch.func.vmap`` work, whether the op
draws random numbers, and the one-line formula of its backward. The README's operator table is rendered
from these facts (:func:`ops_table`).

The examples the ops are tested on (samples, inputs they must refuse, module configurations, torch's
OpInfo names) are test data and live in :mod:`custom_ops.testing`, as torch keeps its OpInfos in
``torch.testing._internal``; nothing that runs at training time imports it.

A new operator is its own file in :mod:`custom_ops` (exported by :mod:`custom_ops.functional`), its module
twin in :mod:`custom_ops.nn`, one entry here and one spec in :mod:`custom_ops.testing`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import functional as MF
from . import layer_utils
from . import nn as mnn
from .losses import builtin_svm_loss


@dataclass(frozen=True)
class OpFacts:
    """What runtime code reads of one operator.

    Attributes:
        name: the function's name in :mod:`custom_ops.functional` (and, but for the losses, in torch).
        manual: that function.
        builtin: its built-in twin, with the same call signature.
        modules: the module twins, ``(manual class, built-in class)`` pairs.
        double_backward: whether the manual backward is itself differentiable (else
            ``once_differentiable``).
        forward_ad: whether forward-mode AD works (``torch.autograd.forward_ad``, ``torch.func.jvp``).
        vmap: whether ``torch.func.vmap`` (and so ``grad``, ``jacrev``, ``jacfwd``) works.
        random: the op draws from the global RNG (dropout); under ``vmap`` it follows torch's
            ``randomness=`` argument.
        features: the configurations worth naming beside the op's name, e.g. ``"grouped, depthwise"``.
        backward: what the hand-written backward computes, as a formula.

    Examples::

        >>> OPS["relu"].module_twins
        {<class 'torch.nn.modules.activation.ReLU'>: <class 'custom_ops.nn.ReLU'>}
    """

    name: str
    manual: Callable[..., Any]
    builtin: Callable[..., Any]
    backward: str
    modules: tuple[tuple[type[nn.Module], type[nn.Module]], ...] = ()
    double_backward: bool = True
    forward_ad: bool = True
    vmap: bool = True
    random: bool = False
    features: str = ""

    @property
    def module_twins(self) -> dict[type[nn.Module], type[nn.Module]]:
        """Built-in module class -> its manual twin."""
        return {builtin: manual for manual, builtin in self.modules}


_OPS = (
    OpFacts(
        "linear",
        MF.linear,
        F.linear,
        "`dx = dout W`, `dW = doutᵀ x`, `db = Σ dout` (matmuls)",
        ((mnn.Linear, nn.Linear),),
    ),
    OpFacts("relu", MF.relu, F.relu, "`dout * [out > 0]`, output saved", ((mnn.ReLU, nn.ReLU),)),
    OpFacts(
        "batch_norm",
        MF.batch_norm,
        F.batch_norm,
        "simplified closed form `γ s (dout − mean(dout) − x̂ mean(dout x̂))`",
        ((mnn.BatchNorm1d, nn.BatchNorm1d), (mnn.BatchNorm2d, nn.BatchNorm2d)),
        double_backward=False,
        features="1-D and spatial",
    ),
    OpFacts(
        "layer_norm",
        MF.layer_norm,
        F.layer_norm,
        "same closed form over the normalised dims",
        ((mnn.LayerNorm, nn.LayerNorm),),
        double_backward=False,
    ),
    OpFacts(
        "dropout",
        MF.dropout,
        F.dropout,
        "`dout * mask / (1 − p)`, boolean mask saved",
        ((mnn.Dropout, nn.Dropout),),
        random=True,
        features="`p` in `[0, 1]`, `inplace`",
    ),
    OpFacts(
        "conv2d",
        MF.conv2d,
        F.conv2d,
        '`"fast"`: dx = transposed conv or col2im, dw = correlation of x with dout or the im2col '
        "product (db with it), the fastest timed on each shape's first call; "
        '`"im2col"`: unfold + matmul, fold',
        ((mnn.Conv2d, nn.Conv2d),),
        features="grouped, depthwise",
    ),
    OpFacts(
        "max_pool2d",
        MF.max_pool2d,
        F.max_pool2d,
        "scatter-add of dout to each window's argmax, indices saved",
        ((mnn.MaxPool2d, nn.MaxPool2d),),
        features="padding, `dilation`, `ceil_mode`, `return_indices`",
    ),
    OpFacts("softmax_loss", MF.softmax_loss, F.cross_entropy, "`(softmax(s) − onehot(y)) / N`"),
    OpFacts("svm_loss", MF.svm_loss, builtin_svm_loss, "`[margin > 0] / N`, minus the count at `y`"),
    OpFacts("relu6", MF.relu6, F.relu6, "`dout * [0 < x < 6]`", ((mnn.ReLU6, nn.ReLU6),)),
    OpFacts(
        "hardsigmoid",
        MF.hardsigmoid,
        F.hardsigmoid,
        "`dout / 6 * [−3 < x < 3]`",
        ((mnn.Hardsigmoid, nn.Hardsigmoid),),
    ),
    OpFacts(
        "hardswish",
        MF.hardswish,
        F.hardswish,
        "piecewise `0`, `x/3 + 1/2`, `1`",
        ((mnn.Hardswish, nn.Hardswish),),
    ),
    OpFacts("sigmoid", MF.sigmoid, torch.sigmoid, "`dout * s (1 − s)`", ((mnn.Sigmoid, nn.Sigmoid),)),
    OpFacts("silu", MF.silu, F.silu, "`dout * s (1 + x (1 − s))`", ((mnn.SiLU, nn.SiLU),)),
    OpFacts(
        "adaptive_avg_pool2d",
        MF.adaptive_avg_pool2d,
        F.adaptive_avg_pool2d,
        "global: `dout / (H W)` broadcast; sizes that divide the input: as `avg_pool2d`; else "
        "`P_hᵀ dout P_w` (the window-averaging matrices, windows `[⌊i H/Ho⌋, ⌈(i+1) H/Ho⌉)`)",
        ((mnn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool2d),),
        features="any output size, `None` entries; global fast path",
    ),
    OpFacts(
        "adaptive_max_pool2d",
        MF.adaptive_max_pool2d,
        F.adaptive_max_pool2d,
        "scatter-add of dout to each window's argmax, indices saved",
        ((mnn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool2d),),
        features="any output size, `return_indices`",
    ),
    OpFacts(
        "avg_pool2d",
        MF.avg_pool2d,
        F.avg_pool2d,
        "each window's `dout / divisor` added to its positions (kh·kw strided slices)",
        ((mnn.AvgPool2d, nn.AvgPool2d),),
        features="padding, `ceil_mode`, `count_include_pad`, `divisor_override`",
    ),
    OpFacts(
        "group_norm",
        MF.group_norm,
        F.group_norm,
        "layer-norm closed form per sample and group, `s (g − mean(g) − x̂ mean(g x̂))`, `g = γ dout`",
        ((mnn.GroupNorm, nn.GroupNorm),),
        double_backward=False,
    ),
    OpFacts(
        "gelu",
        MF.gelu,
        F.gelu,
        "`dout * (Φ(x) + x φ(x))`; tanh form `0.5 (1 + t) + 0.5 x (1 − t²) u′`",
        ((mnn.GELU, nn.GELU),),
        features='exact and `approximate="tanh"`',
    ),
    OpFacts("tanh", MF.tanh, torch.tanh, "`dout * (1 − out²)`, output saved", ((mnn.Tanh, nn.Tanh),)),
    OpFacts(
        "softmax",
        MF.softmax,
        F.softmax,
        "`s * (dout − Σ dout s)`, output saved",
        ((mnn.Softmax, nn.Softmax),),
        features="`dim`, implicit dim, `dtype`",
    ),
    OpFacts(
        "log_softmax",
        MF.log_softmax,
        F.log_softmax,
        "`dout − exp(out) Σ dout`, output saved",
        ((mnn.LogSoftmax, nn.LogSoftmax),),
        features="`dim`, implicit dim, `dtype`",
    ),
    OpFacts(
        "leaky_relu",
        MF.leaky_relu,
        F.leaky_relu,
        "`dout * (1 if x > 0 else a)`, output saved (input if `a < 0`)",
        ((mnn.LeakyReLU, nn.LeakyReLU),),
        features="`negative_slope`, `inplace`",
    ),
    OpFacts(
        "prelu",
        MF.prelu,
        F.prelu,
        "`dx = dout * (1 if x > 0 else w_c)`, `dw_c = Σ dout x [x ≤ 0]` over all but the channel dim",
        ((mnn.PReLU, nn.PReLU),),
        features="one weight or one per channel",
    ),
    OpFacts(
        "hardtanh",
        MF.hardtanh,
        F.hardtanh,
        "`dout * [lo < x < hi]`, output saved",
        ((mnn.Hardtanh, nn.Hardtanh),),
        features="`min_val`, `max_val`, `inplace`",
    ),
    OpFacts(
        "elu",
        MF.elu,
        F.elu,
        "`dout * (1 if x > 0 else out + α)`, output saved (`α eˣ` from the input if `α < 0`)",
        ((mnn.ELU, nn.ELU),),
        features="`alpha`, `inplace`",
    ),
    OpFacts(
        "celu",
        MF.celu,
        F.celu,
        "`dout * (1 if x > 0 else out / α + 1)`, output saved",
        ((mnn.CELU, nn.CELU),),
        features="`alpha`, `inplace`",
    ),
    OpFacts(
        "selu",
        MF.selu,
        F.selu,
        "`dout * (s if x > 0 else out + s α)`, output saved",
        ((mnn.SELU, nn.SELU),),
        features="`inplace`",
    ),
    OpFacts(
        "matmul",
        MF.matmul,
        torch.matmul,
        "`dA = dC Bᵀ`, `dB = Aᵀ dC`, each summed over the dims it was broadcast along",
        features="1-D, 2-D, batched with broadcasting",
    ),
    OpFacts(
        "einsum",
        MF.einsum,
        torch.einsum,
        "`dA_k = einsum(dOut, A_j (j ≠ k) → s_k)`, expanded along indices only `A_k` has, repeated "
        "indices on the diagonal",
        features="ellipsis, implicit output, broadcasting, diagonals",
    ),
    OpFacts(
        "softplus",
        MF.softplus,
        F.softplus,
        "`dout * sigmoid(β x)`, `dout` where `β x > threshold`",
        ((mnn.Softplus, nn.Softplus),),
        features="`beta`, `threshold`",
    ),
    OpFacts(
        "mish",
        MF.mish,
        F.mish,
        "`dout * (t + x sigmoid(x) (1 − t²))`, `t = tanh(softplus(x))`",
        ((mnn.Mish, nn.Mish),),
    ),
    OpFacts(
        "normalize",
        MF.normalize,
        F.normalize,
        "`dout / d − [n > ε] (Σ dout x / d²) ∂n/∂x`, `d = max(n, ε)`; p = 2: `(dout − y Σ dout y) / d`",
        features="any `p`, `dim` (int or tuple), `eps`",
    ),
    OpFacts(
        "scaled_dot_product_attention",
        MF.scaled_dot_product_attention,
        F.scaled_dot_product_attention,
        "`dV = P_dropᵀ dO`, `dS = P ⊙ (dP − rowsum(dP ⊙ P))`, `dQ = scale dS K`, `dK = scale dSᵀ Q`; "
        "Q, K, V and the probabilities P saved (O(B·H·L·S), the built-in's flash kernels O(B·H·L))",
        random=True,
        features="bool and float `attn_mask`, `is_causal`, `dropout_p`, `scale`, `enable_gqa`",
    ),
    OpFacts(
        "multi_head_attention_forward",
        MF.multi_head_attention_forward,
        F.multi_head_attention_forward,
        "the manual `linear` and attention backwards (projections, per-head attention, output projection)",
        ((mnn.MultiheadAttention, nn.MultiheadAttention),),
        random=True,
        features="packed and separate projections, masks, `need_weights`, `bias_k`/`bias_v`",
    ),
)

OPS: dict[str, OpFacts] = {facts.name: facts for facts in _OPS}
"""Every manual operator's facts, by name, in the order of the README table."""

OP_NAMES: tuple[str, ...] = tuple(OPS)
"""Names of the registered operators, in registry order."""


# ------------------------------------------------------------------------------------ sandwich layers
def _sandwich_chains(ops: ModuleType) -> dict[str, Callable[..., torch.Tensor]]:
    """The sandwich layers of :mod:`custom_ops.layer_utils` as chains of ``ops``' functions
    (:mod:`torch.nn.functional` or :mod:`custom_ops.functional`), with the sandwiches' signatures."""
    Tensor = torch.Tensor
    Ints = int | Sequence[int]

    def affine_relu(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        return ops.relu(ops.linear(x, weight, bias))

    def affine_bn_relu(
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        running_mean: Tensor | None,
        running_var: Tensor | None,
        bn_weight: Tensor | None = None,
        bn_bias: Tensor | None = None,
        training: bool = False,
        momentum: float = 0.1,
        eps: float = 1e-5,
    ) -> Tensor:
        pre = ops.linear(x, weight, bias)
        return ops.relu(
            ops.batch_norm(pre, running_mean, running_var, bn_weight, bn_bias, training, momentum, eps)
        )

    def affine_ln_relu(
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        ln_weight: Tensor | None = None,
        ln_bias: Tensor | None = None,
        eps: float = 1e-5,
    ) -> Tensor:
        return ops.relu(
            ops.layer_norm(ops.linear(x, weight, bias), (weight.shape[0],), ln_weight, ln_bias, eps)
        )

    def conv_relu(
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None = None,
        stride: Ints = 1,
        padding: str | Ints = 0,
        *,
        dilation: Ints = 1,
        groups: int = 1,
    ) -> Tensor:
        return ops.relu(ops.conv2d(x, weight, bias, stride, padding, dilation, groups))

    def conv_bn_relu(
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        running_mean: Tensor | None,
        running_var: Tensor | None,
        bn_weight: Tensor | None = None,
        bn_bias: Tensor | None = None,
        training: bool = False,
        momentum: float = 0.1,
        eps: float = 1e-5,
        stride: Ints = 1,
        padding: str | Ints = 0,
        *,
        dilation: Ints = 1,
        groups: int = 1,
    ) -> Tensor:
        pre = ops.conv2d(x, weight, bias, stride, padding, dilation, groups)
        return ops.relu(
            ops.batch_norm(pre, running_mean, running_var, bn_weight, bn_bias, training, momentum, eps)
        )

    def conv_relu_pool(
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None = None,
        stride: Ints = 1,
        padding: str | Ints = 0,
        pool_kernel: Ints = 2,
        pool_stride: Ints | None = None,
        *,
        dilation: Ints = 1,
        groups: int = 1,
    ) -> Tensor:
        out = ops.relu(ops.conv2d(x, weight, bias, stride, padding, dilation, groups))
        return ops.max_pool2d(out, pool_kernel, pool_stride)

    return {
        fn.__name__: fn
        for fn in (affine_relu, affine_bn_relu, affine_ln_relu, conv_relu, conv_bn_relu, conv_relu_pool)
    }


SANDWICH_BUILTIN_CHAINS: dict[str, Callable[..., torch.Tensor]] = _sandwich_chains(F)
"""Each sandwich layer as the chain of its :mod:`torch.nn.functional` built-ins (its ``builtin`` twin)."""

SANDWICH_MANUAL_CHAINS: dict[str, Callable[..., torch.Tensor]] = _sandwich_chains(MF)
"""Each sandwich layer as the chain of the manual ops of :mod:`custom_ops.functional` (three Functions where
the sandwich is one): what the sandwich must equal, and beat in time and memory."""


def _sandwich(name: str, backward: str, double_backward: bool = True, features: str = "") -> OpFacts:
    return OpFacts(
        name,
        getattr(layer_utils, name),
        SANDWICH_BUILTIN_CHAINS[name],
        backward,
        double_backward=double_backward,
        features=features,
    )


SANDWICH_OPS: dict[str, OpFacts] = {
    facts.name: facts
    for facts in (
        _sandwich(
            "affine_relu",
            "`da = dout * [out > 0]`, then `dx = da W`, `dW = daᵀ x`, `db = Σ da`; x and the output saved",
        ),
        _sandwich(
            "affine_bn_relu",
            "ReLU mask from `y` recomputed from the saved `xc`, batch-norm closed form, affine backward",
            double_backward=False,
        ),
        _sandwich(
            "affine_ln_relu",
            "ReLU mask from `y` recomputed from the saved `x̂`, layer-norm closed form, affine backward",
            double_backward=False,
        ),
        _sandwich(
            "conv_relu",
            "`da = dout * [out > 0]`, then the conv's fast backward; x and the output saved",
            features="grouped, dilated, `padding='same'`",
        ),
        _sandwich(
            "conv_bn_relu",
            "ReLU mask from `y` recomputed from the saved `xc`, batch-norm closed form, conv fast backward",
            double_backward=False,
            features="strided, grouped",
        ),
        _sandwich(
            "conv_relu_pool",
            "`dp = dout * [out > 0]` on the pooled output (ReLU and max pool commute), scattered to the "
            "maxima, then the conv's fast backward; indices saved, not the full-size ReLU output",
        ),
    )
}
"""The sandwich layers of :mod:`custom_ops.layer_utils` by name, each paired with the chain of built-ins it
fuses (``builtin``; the chain of manual ops in :data:`SANDWICH_MANUAL_CHAINS`). Kept out of :data:`OPS`:
they are not twins of one torch function."""


# ------------------------------------------------------------------------------------ the README table
OPS_TABLE_COLUMNS = (
    "op (`custom_ops.functional`)",
    "module (`custom_ops.nn`)",
    "built-in twin",
    "backward",
    "double backward",
    "forward mode",
    "vmap",
)
"""The header of :func:`ops_table`."""


def twin_name(fn: Callable[..., Any]) -> str:
    """How the table names a built-in twin: ``F.conv2d``, ``torch.sigmoid``, else ``module.name``.

    Examples::

        >>> twin_name(F.conv2d), twin_name(torch.tanh), twin_name(builtin_svm_loss)
        ('F.conv2d', 'torch.tanh', 'custom_ops.losses.builtin_svm_loss')
    """
    for prefix, namespace in (("F", F), ("torch", torch)):
        if getattr(namespace, fn.__name__, None) is fn:
            return f"{prefix}.{fn.__name__}"
    return f"{fn.__module__}.{fn.__name__}"


def ops_table_row(facts: OpFacts) -> tuple[str, ...]:
    """The cells of one op's row of :func:`ops_table`, in the order of :data:`OPS_TABLE_COLUMNS`.

    Examples::

        >>> ops_table_row(OPS["batch_norm"])[:2]
        ('`batch_norm` (1-D and spatial)', '`BatchNorm1d`, `BatchNorm2d`')
        >>> ops_table_row(OPS["batch_norm"])[4:]
        ('no (`once_differentiable`)', 'yes', 'yes')
    """
    modules = ", ".join(f"`{manual.__name__}`" for manual, _ in facts.modules)
    vmap = "yes" if facts.vmap else "no"
    if facts.vmap and facts.random:
        vmap += ' (`randomness="different"` or `"same"`)'
    return (
        f"`{facts.name}`" + (f" ({facts.features})" if facts.features else ""),
        modules or "—",
        f"`{twin_name(facts.builtin)}`",
        facts.backward,
        "yes" if facts.double_backward else "no (`once_differentiable`)",
        "yes" if facts.forward_ad else "no",
        vmap,
    )


def ops_table(ops: Sequence[OpFacts] | None = None) -> str:
    """The README's operator table, as markdown: a header, a rule and one row per op of ``ops`` (default:
    :data:`OPS`, in its order). ``tests/test_readme.py`` checks the README holds exactly this table.

    Examples::

        >>> print(ops_table([OPS["relu"]]))  # doctest: +NORMALIZE_WHITESPACE
        | op (`custom_ops.functional`) | module (`custom_ops.nn`) | built-in twin | backward | double backward | forward mode | vmap |
        | --- | --- | --- | --- | --- | --- | --- |
        | `relu` | `ReLU` | `F.relu` | `dout * [out > 0]`, output saved | yes | yes | yes |
    """  # noqa: E501
    rows = [OPS_TABLE_COLUMNS, tuple("---" for _ in OPS_TABLE_COLUMNS)]
    rows += [ops_table_row(facts) for facts in (OPS.values() if ops is None else ops)]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)
