"""Manual CS231n operators: autograd Functions with hand-written backward passes.

:func:`reference_path` makes every op compute with the reference formulas at the top of its file;
:func:`fast_apply` is the class decorator every op's ``autograd.Function`` wears (cheap argument binding
for the ``forward`` + ``setup_context`` form), for Functions written in the same style.
"""

from ._function import fast_apply
from ._reference import is_active as reference_path_active
from ._reference import reference_path

__all__ = ["fast_apply", "reference_path", "reference_path_active"]
