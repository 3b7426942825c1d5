"""Renamed keywords: the old name kept for one release, with a ``FutureWarning`` naming the new one."""

from __future__ import annotations

import warnings
from typing import TypeVar

T = TypeVar("T")


def renamed_keyword(
    where: str,
    old: str,
    old_value: T | None,
    new: str,
    new_value: T,
    default: T,
    new_key: str | None = None,
    stacklevel: int = 3,
) -> T:
    """The value of a keyword renamed from ``old`` to ``new``, the old name kept for one release.

    ``old_value`` is ``None`` when the old keyword is not given: then ``new_value``. Otherwise a
    ``FutureWarning`` (shown by default) names the new keyword (``new_key``, e.g. the command-line key, when
    given) and ``old_value`` is used; a ``TypeError`` (Python's error for conflicting keywords) when ``new``
    is given too, i.e. differs from its ``default`` (a caller such as the CLI passes every default).
    ``stacklevel``: as :func:`warnings.warn`'s, counted from this function (3: the caller's caller).
    """
    if old_value is None:
        return new_value
    if new_value != default:
        raise TypeError(
            f"{where} got both {old}={old_value!r} (deprecated) and {new}={new_value!r}; give only {new}"
        )
    warnings.warn(
        f"{where}: the keyword '{old}' is deprecated and will be removed in the next release; use "
        f"'{new_key or new}' instead",
        FutureWarning,
        stacklevel=stacklevel,
    )
    return old_value
