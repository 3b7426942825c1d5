"""The exceptions the manual operators raise for bad input, public so that callers can catch them.

Each is both the natural Python exception and the one torch raises for the same mistake, so code written
for either catches it.
"""

from __future__ import annotations


class OpArgumentError(ValueError, RuntimeError):
    """A bad shape or argument value (torch raises ``RuntimeError`` for it; catch either)."""


class OpDtypeError(TypeError, NotImplementedError):
    """A tensor of a dtype the operator does not compute in, or dtypes that do not match (torch raises
    ``RuntimeError`` or ``NotImplementedError``; catch either, or ``TypeError``)."""
