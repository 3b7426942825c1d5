"""Every op's ``autograd.Function`` is in the ``forward`` + ``setup_context`` form that ``torch.func`` needs,
binds its positional arguments without ``inspect`` on every call (:func:`custom_ops._function.fast_apply`),
and has a hand-written ``jvp`` and a vmap rule."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import torch

import custom_ops
from custom_ops._function import _PositionalSignature


def is_twin_for_compile(function: type[torch.autograd.Function]) -> bool:
    """A twin made by :func:`custom_ops._function.without_jvp` (it inherits everything but the jvp)."""
    jvp = vars(function).get("jvp")
    return isinstance(jvp, staticmethod) and jvp.__func__ is torch.autograd.Function.jvp


def op_functions() -> list[type[torch.autograd.Function]]:
    found = {}
    for info in pkgutil.iter_modules(custom_ops.__path__):
        if info.name == "testing":
            continue
        module = importlib.import_module(f"custom_ops.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(obj, torch.autograd.Function)
                and obj.__module__ == module.__name__
                and not is_twin_for_compile(obj)
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[name] for name in sorted(found)]


FUNCTIONS = op_functions()


def test_functions_are_found() -> None:
    assert len(FUNCTIONS) >= 20, f"found only {len(FUNCTIONS)} op Functions: {FUNCTIONS}"


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__qualname__)
def test_function_form(function: type[torch.autograd.Function]) -> None:
    name = function.__qualname__
    assert "setup_context" in vars(function) or any(
        "setup_context" in vars(base) for base in function.__mro__[1:-3]
    ), f"{name}: no setup_context (torch.func needs the forward + setup_context form)"
    assert "ctx" not in inspect.signature(function.forward).parameters, f"{name}: forward takes ctx"
    assert function.jvp is not torch.autograd.Function.jvp, f"{name}: no jvp (forward-mode AD)"
    assert function.generate_vmap_rule or "vmap" in vars(function), f"{name}: no vmap rule"
    assert isinstance(getattr(function.forward, "__signature__", None), _PositionalSignature), (
        f"{name}: not decorated with custom_ops._function.fast_apply (Function.apply would bind every call's "
        "arguments with inspect)"
    )
