"""What every op's ``autograd.Function`` shares besides its math: cheap argument binding, and a twin for
``torch.compile``.

- :func:`fast_apply`: a Function in the ``forward`` + ``setup_context`` form (the form ``torch.func``
  needs) has its arguments bound to ``forward``'s signature by ``Function.apply`` on every call
  (``inspect.signature(forward).bind(*args)``, then ``apply_defaults``): pure Python that costs several
  times a whole old-style call. The ops always pass every argument positionally, so the signature stored
  on ``forward`` binds such a call by returning the arguments as they are; any other call binds as usual.
- :func:`without_jvp`: Dynamo traces a custom Function's forward and backward into its graph, but not one
  that defines a ``jvp`` ("Unsupported custom jvp": a graph break, an error under ``fullgraph=True``).
  Forward-mode AD does not run through a compiled graph either, so the twin Dynamo traces is the same
  Function without its ``jvp``; an op applies it while ``torch.compiler.is_compiling()``. The twin is a
  module-level name of the op's file (or a value of a dict keyed by the op's *name*): Dynamo cannot look a
  Function class up in a dict keyed by class or in a class attribute.
- :func:`needed`: a reference backward computes every gradient; the Function returns those asked for.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=type[torch.autograd.Function])


class _Bound:
    """What ``Signature.bind`` returns, for a call that passes every parameter positionally."""

    __slots__ = ("args", "kwargs")

    def __init__(self, args: tuple[Any, ...]) -> None:
        self.args = args
        self.kwargs: dict[str, Any] = {}

    def apply_defaults(self) -> None:
        """Nothing to fill: every parameter was given."""


class _PositionalSignature(inspect.Signature):
    """``forward``'s signature, binding a call that gives every parameter positionally without checks."""

    __slots__ = ("_count",)

    def __init__(self, signature: inspect.Signature) -> None:
        super().__init__(list(signature.parameters.values()), return_annotation=signature.return_annotation)
        kinds = {parameter.kind for parameter in signature.parameters.values()}
        plain = kinds <= {inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD}
        self._count = len(signature.parameters) if plain else -1

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs and len(args) == self._count:
            return _Bound(args)
        return super().bind(*args, **kwargs)


def fast_apply(function: F) -> F:
    """Class decorator: store on ``function.forward`` a signature that binds a fully positional call for
    free (see the module docstring). The Function itself is unchanged.

    Examples::

        >>> import torch
        >>> @fast_apply
        ... class Double(torch.autograd.Function):
        ...     @staticmethod
        ...     def forward(x):
        ...         return 2 * x
        ...     @staticmethod
        ...     def setup_context(ctx, inputs, output):
        ...         pass
        ...     @staticmethod
        ...     def backward(ctx, dout):
        ...         return 2 * dout
        >>> Double.apply(torch.ones(2))
        tensor([2., 2.])
    """
    forward = function.forward
    forward.__signature__ = _PositionalSignature(inspect.signature(forward))  # type: ignore[attr-defined]
    return function


def without_jvp(function: F) -> F:
    """``function``'s twin without its ``jvp`` staticmethod, for Dynamo to trace (module docstring)."""
    return type(  # type: ignore[return-value]
        function.__name__,
        (function,),
        {
            "jvp": staticmethod(torch.autograd.Function.jvp),
            "__module__": function.__module__,
            "__qualname__": function.__qualname__,
            "__doc__": f"{function.__name__} without its jvp, for Dynamo to trace.",
        },
    )


def needed(grads: Iterable[torch.Tensor | None], needs: Iterable[bool]) -> tuple[torch.Tensor | None, ...]:
    """``grads`` with None wherever ``needs`` (a backward's ``ctx.needs_input_grad`` flags, one per
    gradient) is False: a reference backward computes every gradient, a Function returns the ones asked for.

    Examples::

        >>> import torch
        >>> needed((torch.ones(1), torch.zeros(1)), (True, False))
        (tensor([1.]), None)
    """
    return tuple(g if need else None for g, need in zip(grads, needs))
