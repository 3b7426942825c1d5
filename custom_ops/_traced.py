"""The ``torch.compile`` twin of an ``autograd.Function`` with a hand-written ``jvp``.

Dynamo cannot trace a Function that defines ``jvp`` (a graph break, an error under ``fullgraph=True``).
:func:`without_jvp` makes a twin without it (the same forward, setup_context, backward and vmap rule),
which the functional wrappers apply while ``torch.compile`` traces (``torch.compiler.is_compiling()``):
forward-mode AD of a compiled function is not traced, it runs eagerly. The twin is a module-level name
beside its Function: Dynamo traces ``.apply`` of a Function it finds there, not of one it looks up in a
dict keyed by class or in a class attribute."""

from __future__ import annotations

from typing import TypeVar

import torch

F = TypeVar("F", bound=type[torch.autograd.Function])


def without_jvp(function: F) -> F:
    """A subclass of ``function`` whose ``jvp`` is ``torch.autograd.Function``'s (none)."""
    body = {"jvp": staticmethod(torch.autograd.Function.jvp), "__doc__": function.__doc__}
    return type(function.__name__, (function,), body)  # type: ignore[return-value]
