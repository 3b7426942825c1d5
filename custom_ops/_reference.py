"""The reference path: every op computes with the formulas at the top of its file, and nothing else.

Each op file starts with its *reference*: the forward, the backward and the forward-mode derivative written
as the CS231n notes write them (named intermediates, one formula a line, no buffer reuse, no in-place
tricks). Beside it sit the faster formulations: fused kernels, conv's timed gradient routes, tuned eager
formulas. They are the default where faster, and the tests check them equal to the reference.

Inside :func:`reference_path` (or with ``CS231N_REFERENCE=1`` in the environment) every op runs its
reference formulas: no fused kernel, no timed route, no tuned formulation. Use it to read what runs, to
step through an op in a debugger, or to compare a tuned path against the textbook one.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

ENV_VAR = "CS231N_REFERENCE"

_state = threading.local()
_default = os.environ.get(ENV_VAR, "0").strip().lower() in ("1", "true", "yes", "on")


def is_active() -> bool:
    """Whether the ops compute with their reference formulas only (this thread): ``CS231N_REFERENCE``, or
    the innermost :func:`reference_path` block."""
    return getattr(_state, "active", _default)


@contextlib.contextmanager
def reference_path(flag: bool = True) -> Iterator[None]:
    """Run the block on the reference formulas (or, with ``flag=False``, on the default tuned paths), then
    restore the previous setting. Applies to this thread.

    Examples::

        >>> import torch, custom_ops, custom_ops.functional as MF
        >>> x = torch.randn(8, 4)
        >>> with custom_ops.reference_path():
        ...     out = MF.batch_norm(x, None, None, training=True)
        >>> out.shape
        torch.Size([8, 4])
    """
    previous = is_active()
    _state.active = bool(flag)
    try:
        yield
    finally:
        _state.active = previous
