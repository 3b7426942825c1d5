"""What the op files ask about transforms, in one place: is a ``torch.func`` transform or gradcheck's legacy
vmap running, is this tensor batched, do the reference formulas run, and the vmap and forward-mode helpers
the ops' Functions share.

Two transforms can run an op: ``torch.func`` (``vmap``, ``grad``, ``jvp``, ``jacrev``, ...) and the legacy
``torch._vmap_internals.vmap`` that gradcheck's ``check_batched_grad`` / ``check_batched_forward_grad`` run.
Dynamo cannot trace the legacy vmap's queries (the dispatch-key query, ``is_legacy_batchedtensor``); a
compiled graph never runs under the legacy vmap, so those queries answer False while Dynamo traces.
"""

from __future__ import annotations

from typing import Any

import torch
from torch._C._functorch import TransformType
from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters
from torch.autograd import forward_ad

from . import _reference

# The dispatch key of the legacy ``torch._vmap_internals.vmap`` (what gradcheck's batched checks run): in
# the thread's dispatch keys while it runs; a key with no name in torch._C.DispatchKey.
_LEGACY_VMAP = torch._C._parse_dispatch_key("VmapMode")


# ------------------------------------------------------------------------------ which transform runs
def functorch_active() -> bool:
    """Whether a ``torch.func`` transform (``vmap``, ``grad``, ``jvp``, ``jacrev``, ...) is running in this
    thread. Not gradcheck's legacy vmap (:func:`legacy_vmap_active`). Dynamo traces it."""
    return torch._C._are_functorch_transforms_active()


def legacy_vmap_active() -> bool:
    """Whether the legacy ``torch._vmap_internals.vmap`` (gradcheck's ``check_batched_grad`` /
    ``check_batched_forward_grad``) is running in this thread. False while Dynamo traces."""
    return not torch.compiler.is_compiling() and torch._C._dispatch_tls_is_dispatch_key_included(_LEGACY_VMAP)


def transforms_active() -> bool:
    """Whether either transform runs: a ``torch.func`` one (:func:`functorch_active`) or the legacy vmap
    (:func:`legacy_vmap_active`)."""
    return functorch_active() or legacy_vmap_active()


# ------------------------------------------------------------------------------ is this tensor batched
def is_legacy_batched(t: torch.Tensor) -> bool:
    """Whether ``t`` is batched by the legacy vmap of gradcheck's batched checks. False while Dynamo
    traces."""
    return not torch.compiler.is_compiling() and torch._C._functorch.is_legacy_batchedtensor(t)


def is_batched(t: torch.Tensor) -> bool:
    """Whether ``t`` is batched by either vmap: ``torch.func``'s, or the legacy one of gradcheck's batched
    checks. False while Dynamo traces."""
    if torch.compiler.is_compiling():
        return False
    return torch._C._functorch.is_batchedtensor(t) or torch._C._functorch.is_legacy_batchedtensor(t)


def is_batched_dim(in_dim: Any) -> bool:
    """Whether a vmap rule's ``in_dims`` entry says its argument is batched (an int; None, or a tuple of
    Nones for a non-tensor argument such as a conv's ``conf``, when not)."""
    return isinstance(in_dim, int)


def only_first_batched(in_dims: tuple[Any, ...]) -> bool:
    """Whether, of a vmap rule's arguments (``in_dims``), the first (the input x) is batched and no other
    is."""
    return is_batched_dim(in_dims[0]) and not any(is_batched_dim(d) for d in in_dims[1:])


# ------------------------------------------------------------------------------ do the reference formulas run
def reference_formulas(t: torch.Tensor) -> bool:
    """The norms' and sandwiches' choice: whether they compute with their reference formulas rather than the
    tuned ones. True on the reference path (:func:`custom_ops.reference_path`), under a ``torch.func``
    transform, and when ``t`` is batched by the legacy vmap (the tuned formulas write with ``out=``, which
    has no batching rule). False while Dynamo traces, off the reference path (it traces the tuned
    formulas: no transform inside its graph)."""
    if _reference.is_active():
        return True
    if torch.compiler.is_compiling():
        return False
    return functorch_active() or is_legacy_batched(t)


def pointwise_reference() -> bool:
    """The pointwise activations' choice (relu6, hardsigmoid, hardswish, sigmoid, silu, gelu): whether they
    compute with their reference formulas rather than the tuned ones. True on the reference path, under a
    ``torch.func`` transform, and also whenever autograd records the call (the derivative is itself being
    differentiated, a double backward). It does not ask about the legacy vmap (:func:`reference_formulas`
    does)."""
    return _reference.is_active() or torch.is_grad_enabled() or functorch_active()


# ------------------------------------------------------------------------------ vmap and forward mode
def vmap_loop(function: Any, info: Any, in_dims: tuple[int | None, ...], *args: Any) -> tuple[Any, Any]:
    """The vmap rule of last resort: ``function`` applied to each slice, the results stacked (dim 0). A
    batched running statistic's slices are views: each slice's update lands in it. A non-tensor output (sync
    batch norm's count) is the same for every slice: returned unbatched."""
    outs = []
    for i in range(info.batch_size):
        outs.append(
            function.apply(*(a.select(d, i) if is_batched_dim(d) else a for a, d in zip(args, in_dims)))
        )
    if not isinstance(outs[0], tuple):
        return torch.stack(outs), 0
    stacked = [torch.stack(o) if isinstance(o[0], torch.Tensor) else o[0] for o in zip(*outs)]
    return tuple(stacked), tuple(0 if isinstance(o, torch.Tensor) else None for o in stacked)


_FORWARD_OVER_REVERSE = (
    "{}: forward-mode differentiation of its backward (forward-over-reverse: torch.func.hessian, jacfwd of "
    "jacrev, jvp of grad) is not supported, as its double backward is not (the backward is "
    "once_differentiable); differentiate in reverse mode over forward mode instead (jacrev of jacfwd)"
)


def refuse_forward_over_reverse(ctx: Any, name: str) -> None:
    """Raise a ``RuntimeError`` where a once-differentiable backward runs under forward-mode AD: under a
    ``torch.func`` jvp transform, or inside a ``torch.autograd.forward_ad`` dual level for a call whose
    inputs had tangents (``ctx.had_tangents``, set by the jvp). Its saved tensors carry no tangent, so the
    gradient's tangent would be silently wrong."""
    if functorch_active() and any(
        interpreter.key() == TransformType.Jvp for interpreter in retrieve_all_functorch_interpreters()
    ):
        raise RuntimeError(_FORWARD_OVER_REVERSE.format(name))
    if getattr(ctx, "had_tangents", False) and forward_ad._current_level >= 0:
        raise RuntimeError(_FORWARD_OVER_REVERSE.format(name))
