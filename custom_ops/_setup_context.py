"""Two helpers for the ``autograd.Function``s in the ``forward`` + ``setup_context`` form.

- :func:`cached_signature`: with ``setup_context`` defined, ``Function.apply`` binds its arguments to
  ``forward``'s signature on every call (torch's ``_bind_default_args``, through ``inspect.signature``).
  Stored on ``forward`` as ``__signature__``, the signature is read instead of built anew: about half of
  that per-call cost goes.
- :func:`without_jvp`: Dynamo cannot trace a Function that defines ``jvp`` (a graph break, an error under
  ``fullgraph=True``). The twin it makes has the same forward, setup_context, backward and vmap rule and no
  ``jvp``; the functional wrappers apply it while ``torch.compile`` traces
  (``torch.compiler.is_compiling()``): forward-mode AD of a compiled function is not traced, it runs
  eagerly. The twin is a module-level name beside its Function: Dynamo traces ``.apply`` of a Function it
  finds there, not of one it looks up in a dict keyed by class or in a class attribute.
"""

from __future__ import annotations

import inspect
from typing import TypeVar

import torch

F = TypeVar("F", bound=type[torch.autograd.Function])


def cached_signature(function: F) -> F:
    """Class decorator: store ``function.forward``'s signature on it (``__signature__``)."""
    forward = function.forward
    forward.__signature__ = inspect.signature(forward)  # type: ignore[attr-defined]
    return function


def without_jvp(function: F) -> F:
    """A subclass of ``function`` whose ``jvp`` is ``torch.autograd.Function``'s (none)."""
    body = {"jvp": staticmethod(torch.autograd.Function.jvp), "__doc__": function.__doc__}
    return type(function.__name__, (function,), body)  # type: ignore[return-value]
