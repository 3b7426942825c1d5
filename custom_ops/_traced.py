"""The ``torch.compile`` twin of an ``autograd.Function`` with a hand-written ``jvp``.

Dynamo cannot trace a Function that defines ``jvp`` (a graph break, an error under ``fullgraph=True``).
A Function decorated with :func:`compile_twin` gets a twin without it (the same forward, setup_context,
backward and vmap rule), which :func:`pick` returns while ``torch.compile`` traces: forward-mode AD of a
compiled function is not traced, it runs eagerly."""

from __future__ import annotations

from typing import TypeVar

import torch

F = TypeVar("F", bound=type[torch.autograd.Function])

_TWINS: dict[type, type] = {}


def compile_twin(function: F) -> F:
    """Class decorator: record ``function``'s twin, a subclass whose ``jvp`` is the base class's (none)."""
    body = {"jvp": staticmethod(torch.autograd.Function.jvp), "__doc__": function.__doc__}
    _TWINS[function] = type(function.__name__, (function,), body)
    return function


def pick(function: F) -> F:
    """``function``'s twin without ``jvp`` while ``torch.compile`` traces, else ``function``."""
    return _TWINS[function] if torch.compiler.is_compiling() else function  # type: ignore[return-value]
