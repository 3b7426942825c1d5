"""The test data of an operator: its :class:`OpSpec` (facts, samples, kink samples, bad inputs, module
configurations, torch's OpInfo name), and the :class:`OpCase` the tests iterate over.

An :class:`OpCase` is one sample of one op: ``case.manual(*args)`` and ``case.builtin(*args)`` on the same
``args = case.inputs(dtype, device)`` must agree.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from custom_ops.registry import OpFacts

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
    """A manual module class, its built-in twin, constructor arguments and an input shape; ``forward``, when
    given, is how the tests call a module on that one input (``forward(module, x)``, a tensor: e.g.
    attention's ``module(x, x, x)[0]``), else ``module(x)``."""

    manual: type[nn.Module]
    builtin: type[nn.Module]
    args: tuple[Any, ...]
    input_shape: tuple[int, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    forward: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None

    def call(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The module's output on ``x``, as :attr:`forward` says."""
        return module(x) if self.forward is None else self.forward(module, x)

    @property
    def id(self) -> str:
        return f"{self.builtin.__name__}{self.args}"


def module_cases(
    manual: type[nn.Module], builtin: type[nn.Module], *examples: tuple[Any, ...]
) -> tuple[ModuleCase, ...]:
    """The :class:`ModuleCase` of each example ``(args, input_shape)``, ``(args, input_shape, kwargs)`` or
    ``(args, input_shape, kwargs, forward)`` of one module twin."""
    return tuple(ModuleCase(manual, builtin, *example) for example in examples)


@dataclass(frozen=True)
class OpSpec:
    """An operator's runtime facts and the examples it is tested on.

    Attributes:
        facts: what :mod:`custom_ops.registry` records of the op (callables, module twins, supported
            transforms, randomness); ``name``, ``manual``, ``builtin``, ``double_backward``,
            ``forward_ad``, ``vmap`` and ``random`` read it.
        samples: examples where the op is differentiable, so finite differences are valid: the tests,
            the gradient check and ``bench --tiny`` run them.
        kinks: examples on the points where the op is not differentiable (ReLU's 0, hardswish's ±3,
            max-pool ties, zero SVM margins): the manual op must still give the built-in's outputs and
            gradients there, but finite-difference checks skip them.
        modules: module configurations of the module twins (manual class, built-in class, constructor
            arguments, input shape).
        errors: inputs the manual op must refuse, with the exception type and message.
        opinfo: the name of the built-in's ``OpInfo`` in torch's ``op_db``, whose sample and error inputs
            ``tests/test_conformance.py`` runs through the manual op; None when there is none.
        images: a 4-D first input is an image batch ``(N, C, H, W)``, so its ``channels_last`` layout
            makes sense (False for attention, whose 4-D inputs are ``(N, heads, L, E)``).
    """

    facts: OpFacts
    samples: tuple[Sample, ...]
    kinks: tuple[Sample, ...] = ()
    modules: tuple[ModuleCase, ...] = ()
    errors: tuple[ErrorInput, ...] = ()
    opinfo: str | None = None
    images: bool = True

    @property
    def name(self) -> str:
        return self.facts.name

    @property
    def manual(self) -> Callable[..., Any]:
        return self.facts.manual

    @property
    def builtin(self) -> Callable[..., Any]:
        return self.facts.builtin

    @property
    def double_backward(self) -> bool:
        return self.facts.double_backward

    @property
    def forward_ad(self) -> bool:
        return self.facts.forward_ad

    @property
    def vmap(self) -> bool:
        return self.facts.vmap

    @property
    def random(self) -> bool:
        return self.facts.random

    @property
    def cases(self) -> tuple[OpCase, ...]:
        """One :class:`OpCase` per sample (the differentiable ones; :attr:`kink_cases` for the others)."""
        return tuple(OpCase(self, sample) for sample in self.samples)

    @property
    def kink_cases(self) -> tuple[OpCase, ...]:
        """One :class:`OpCase` per kink sample, with ``kink`` set."""
        return tuple(OpCase(self, sample, kink=True) for sample in self.kinks)


@dataclass(frozen=True)
class OpCase:
    """One sample of one op, with the op's spec: what the tests and the benchmark iterate over.

    Attributes:
        spec: the op's spec.
        sample: the example.
        kink: the sample sits where the op is not differentiable: compare with the built-in, never with
            finite differences.
    """

    spec: OpSpec
    sample: Sample
    kink: bool = False

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
        return self.spec.images and self.sample.make_inputs(torch.float64, torch.device("cpu"))[0].dim() == 4

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


def positive(shape: Sequence[int], dtype: torch.dtype, device: torch.device, seed: int) -> torch.Tensor:
    """Uniform values in ``[0.5, 1.5)`` (running variances), drawn in float64 with seed ``seed``."""
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x.add(0.5).to(device=device, dtype=dtype)


def arbitrary(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A random tensor for a bad-input call."""
    return torch.randn(*shape).to(dtype)
