"""What an operator shares with its built-in twin: the :class:`OpSpec`, and the examples it is checked on.

One :class:`OpSpec` per operator (:data:`custom_ops.registry.SPECS`) is the single record of those facts:
the manual and built-in callables, the module twins, whether the backward is itself differentiable,
whether the op is random, the example inputs (:class:`Sample`), the inputs it must refuse
(:class:`ErrorInput`), the module configurations the manual twin does not support, the name of torch's
OpInfo and the README's summary. The tests, :mod:`torch_cs231n.interop.swap`, the benchmark, the gradient
check
and the README table read it instead of repeating it.

An :class:`OpCase` is one sample of one op as the tests use it: ``case.manual(*args)`` and
``case.builtin(*args)`` on the same ``args = case.inputs(dtype, device)`` must agree.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

InputFactory = Callable[[torch.dtype, torch.device], tuple[Any, ...]]


@dataclass(frozen=True)
class Sample:
    """One example of an operator: its positional inputs and its hyper-parameters.

    Attributes:
        label: what this example exercises, e.g. ``"stride2-pad1"``.
        make_inputs: ``(dtype, device) -> args``, the positional arguments of both twins, floating tensors
            in ``dtype``; the same values on every call.
        grad_inputs: positions in ``args`` that are differentiable (inputs and parameters).
        kwargs: keyword arguments of both twins (the hyper-parameters).
        extras: keyword arguments of the manual twin only (its keyword-only extras, e.g. conv2d's
            ``algorithm``).
        wrap: applied to both twins' calls, e.g. to keep the output of ``(output, indices)``.
    """

    label: str
    make_inputs: InputFactory
    grad_inputs: tuple[int, ...] = (0,)
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    extras: Mapping[str, Any] = field(default_factory=dict)
    wrap: Callable[[Callable[..., Any]], Callable[..., torch.Tensor]] | None = None


@dataclass(frozen=True)
class ErrorInput:
    """A call the manual op must refuse: ``call(op)`` raises ``error`` with a message matching ``match``."""

    label: str
    call: Callable[[Callable[..., Any]], object]
    error: type[Exception]
    match: str


@dataclass(frozen=True)
class ModuleCase:
    """A manual module class, its built-in twin, constructor arguments and an input shape."""

    manual: type[nn.Module]
    builtin: type[nn.Module]
    args: tuple[Any, ...]
    input_shape: tuple[int, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.builtin.__name__}{self.args}"


def module_cases(
    manual: type[nn.Module], builtin: type[nn.Module], *examples: tuple[Any, ...]
) -> tuple[ModuleCase, ...]:
    """The :class:`ModuleCase` of each example ``(args, input_shape)`` or ``(args, input_shape, kwargs)``
    of one module twin."""
    return tuple(ModuleCase(manual, builtin, *example) for example in examples)


@dataclass(frozen=True)
class OpSpec:
    """Everything an operator shares with its built-in twin.

    Attributes:
        name: the function's name in :mod:`custom_ops.functional` (and, but for the losses, in torch).
        manual: that function.
        builtin: its built-in twin, with the same call signature.
        samples: the examples the tests, the gradient check and ``bench --tiny`` run.
        modules: the module twins (manual class, built-in class) with example constructor arguments;
            :func:`torch_cs231n.interop.swap.to_manual` swaps exactly these built-in classes.
        double_backward: whether the manual backward is itself differentiable (else
            ``once_differentiable``).
        random: the op draws from the global RNG (dropout): seed it before each call; masks then match
            the built-in's on CPU (same Bernoulli stream), and are only statistically alike on CUDA.
        errors: inputs the manual op must refuse, with the exception type and message.
        unsupported: ``built-in module -> reason`` for a configuration of one of ``modules`` that the
            manual twin does not support (``to_manual`` keeps such a layer built-in), None when it
            supports it; None: every configuration is supported.
        opinfo: the name of the built-in's ``OpInfo`` in torch's ``op_db``, whose sample and error inputs
            ``tests/test_conformance.py`` runs through the manual op; None when there is none.
        features: the configurations worth naming in the README's op column, e.g. ``"grouped, depthwise"``.
        backward: what the hand-written backward computes (README).
    """

    name: str
    manual: Callable[..., Any]
    builtin: Callable[..., Any]
    samples: tuple[Sample, ...]
    backward: str
    modules: tuple[ModuleCase, ...] = ()
    double_backward: bool = True
    random: bool = False
    errors: tuple[ErrorInput, ...] = ()
    unsupported: Callable[[nn.Module], str | None] | None = None
    opinfo: str | None = None
    features: str = ""

    @property
    def cases(self) -> tuple[OpCase, ...]:
        """One :class:`OpCase` per sample."""
        return tuple(OpCase(self, sample) for sample in self.samples)

    @property
    def module_twins(self) -> dict[type[nn.Module], type[nn.Module]]:
        """Built-in module class -> its manual twin."""
        return {case.builtin: case.manual for case in self.modules}

    def refusal(self, module: nn.Module) -> str | None:
        """Why the manual twin does not support this configuration of ``module``; None when it does."""
        return None if self.unsupported is None else self.unsupported(module)


@dataclass(frozen=True)
class OpCase:
    """One sample of one op, with the op's spec: what the tests and the benchmark iterate over."""

    spec: OpSpec
    sample: Sample

    @property
    def op(self) -> str:
        return self.spec.name

    @property
    def label(self) -> str:
        return self.sample.label

    @property
    def id(self) -> str:
        return f"{self.op}[{self.label}]"

    @property
    def grad_inputs(self) -> tuple[int, ...]:
        return self.sample.grad_inputs

    @property
    def random(self) -> bool:
        return self.spec.random

    @property
    def double_backward(self) -> bool:
        return self.spec.double_backward

    @property
    def manual(self) -> Callable[..., torch.Tensor]:
        """The manual op with this sample's hyper-parameters and extras bound."""
        return self._bind(self.spec.manual, {**self.sample.kwargs, **self.sample.extras})

    @property
    def builtin(self) -> Callable[..., torch.Tensor]:
        """The built-in twin with this sample's hyper-parameters bound."""
        return self._bind(self.spec.builtin, self.sample.kwargs)

    def _bind(self, fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> Callable[..., torch.Tensor]:
        call = functools.partial(fn, **kwargs)
        return call if self.sample.wrap is None else self.sample.wrap(call)

    @property
    def spatial(self) -> bool:
        """The first input is ``(N, C, H, W)``, so a ``channels_last`` variant makes sense."""
        return self.sample.make_inputs(torch.float64, torch.device("cpu"))[0].dim() == 4

    def inputs(
        self,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        requires_grad: bool = True,
    ) -> list[Any]:
        """Fresh example inputs; the ``grad_inputs`` require grad when ``requires_grad``."""
        args = list(self.sample.make_inputs(dtype, torch.device(device)))
        if requires_grad:
            for i in self.grad_inputs:
                args[i].requires_grad_(True)
        return args


# ----------------------------------------------------------------------------------------- inputs
def randn(shape: Sequence[int], dtype: torch.dtype, device: torch.device, seed: int) -> torch.Tensor:
    """Standard normal values drawn in float64 from a generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)


def normal(*shapes: Sequence[int]) -> InputFactory:
    """Inputs of these shapes, standard normal, the i-th drawn with seed i."""
    return lambda dtype, device: tuple(randn(s, dtype, device, i) for i, s in enumerate(shapes))


def labels(n: int, classes: int, device: torch.device, seed: int) -> torch.Tensor:
    """``n`` class indices in ``[0, classes)``."""
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed)).to(device)
