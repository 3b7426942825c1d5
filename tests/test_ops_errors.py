"""Bad input gets a clear error that names the argument and what was expected — never a wrong result.

The bad inputs are data of each op's spec (``OpSpec.errors`` in ``custom_ops.testing``)."""

from __future__ import annotations

import re

import pytest

import custom_ops.functional as MF
from custom_ops.testing import SPECS, ErrorInput, OpSpec

ERRORS = [(spec, error) for spec in SPECS.values() for error in spec.errors]
IDS = [f"{spec.name} {error.label}" for spec, error in ERRORS]


@pytest.mark.parametrize(("spec", "error"), ERRORS, ids=IDS)
def test_bad_input_is_rejected_with_a_clear_message(spec: OpSpec, error: ErrorInput) -> None:
    with pytest.raises(error.error, match=error.match):
        error.call(spec.manual)


@pytest.mark.parametrize(("spec", "error"), ERRORS, ids=IDS)
def test_errors_are_also_the_exception_types_torch_raises(spec: OpSpec, error: ErrorInput) -> None:
    """Code written for the built-ins catches the manual ops' errors: a bad value or shape (``ValueError``)
    is also a ``RuntimeError``, as torch raises; a bad dtype (``TypeError``) also a ``NotImplementedError``
    (a ``RuntimeError``), as torch raises; only an argument of the wrong Python type (a non-tensor, a
    non-int where torch wants an int, a non-number where it wants a number) is a plain ``TypeError``, as
    torch's argument parser raises."""
    with pytest.raises(Exception) as info:
        error.call(spec.manual)
    err = info.value
    if isinstance(err, ValueError):
        assert isinstance(err, RuntimeError), f"{type(err).__name__} is not a RuntimeError: {err}"
    python_type = re.search(r"must be (a torch\.Tensor|an int|a real number)\b", str(err))
    if isinstance(err, TypeError) and not python_type:
        assert isinstance(err, NotImplementedError), f"{type(err).__name__} is not torch's type: {err}"


def test_every_functional_op_has_a_spec_with_bad_inputs() -> None:
    assert sorted(SPECS) == sorted(MF.__all__), "custom_ops.functional and custom_ops.testing.SPECS differ"
    missing = [name for name, spec in SPECS.items() if not spec.errors]
    assert not missing, f"no bad-input case in the spec of {missing}"
