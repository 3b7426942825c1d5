"""The op Functions under ``torch.compile``: the same Function, less its hand-written ``jvp``.

Dynamo traces a custom ``autograd.Function``'s forward and backward into its graph, but not one that defines a
``jvp`` staticmethod: it breaks the graph there ("Unsupported custom jvp"), and ``fullgraph=True`` fails.
Forward-mode AD does not run through a compiled graph either, so nothing is lost by tracing a twin without
it: :func:`without_jvp` makes that twin (a subclass of the same name whose ``jvp`` is
``torch.autograd.Function``'s), which an op applies while ``torch.compiler.is_compiling()``. The twin is a
module-level name of the op's file: Dynamo reads globals, but cannot look a Function class up in a table.
"""

from __future__ import annotations

import torch


def without_jvp(function: type[torch.autograd.Function]) -> type[torch.autograd.Function]:
    """``function``'s twin without its ``jvp`` staticmethod, for Dynamo to trace (see the module doc)."""
    return type(
        function.__name__,
        (function,),
        {
            "jvp": staticmethod(torch.autograd.Function.jvp),
            "__module__": function.__module__,
            "__qualname__": function.__qualname__,
            "__doc__": f"{function.__name__} without its jvp, for Dynamo to trace.",
        },
    )
