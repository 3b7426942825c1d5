"""Fused kernels: an op's own hand-written formulas, compiled into one pass over memory.

The eager formulas of an op (its forward and backward math, plain torch calls in the op's file) launch
one kernel per step, each reading and writing the whole tensor: batch norm's backward is five passes
where PyTorch's built-in kernel makes one. :func:`kernel` wraps such a pure function so that, with fusion
on, the *same* function is traced once per input signature (shapes, strides, dtypes, device and the
non-tensor arguments) and compiled by TorchInductor into one loop nest: a C++/OpenMP loop on CPU, Triton
kernels on CUDA. With fusion off (the default), or where compiling is impossible, the function runs as
written: the readable eager *reference path*, which gradcheck and the parity tests also run.

The traced graph is handed straight to Inductor (``torch._inductor.compile``) rather than going through
``torch.compile``: the calls then skip TorchDynamo's frame evaluation and guards, about 10 microseconds a
call, which is most of the time of a small op (128 x 100 batch norm). Even so a compiled call costs several
microseconds, more than a tiny tensor's eager passes: so on first use of a signature the compiled variant
is timed against the eager formulas on the same arguments and kept only where it is faster
(:data:`select_fastest`). Shapes are static: a new batch size compiles once more (about one to three
seconds each on a CPU; Inductor caches the generated code on disk, so later runs reuse it).

Switch: ``CS231N_FUSED=1`` in the environment, :func:`set_enabled`, or the :func:`enabled` context
manager. Compiling costs seconds per kernel and signature, so fusion is off by default: keep it off for
tests and short runs, turn it on for long trainings and benchmarks. When a kernel cannot be compiled (no
C++ compiler, no Triton for a GPU, an unsupported op), the eager path runs instead for every kernel on
that device type, after one warning that says it is slower.

Kernels are never compiled where the eager formulas must run: under :func:`custom_ops.reference_path`, under
``torch.compile`` (Dynamo traces the eager formulas itself), under a dispatch mode (a FLOP counter sees the
eager formulas' ops), under a ``torch.func`` transform (``vmap``, ``grad``, ``jvp``: the transforms see the
eager formulas' ops), and when autograd records the call (a double backward differentiates the eager
formulas).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from . import _reference
from ._timing import best_times
from ._transforms import functorch_active

ENV_VAR = "CS231N_FUSED"
MAX_SIGNATURES = 64
"""Compiled variants kept per kernel; beyond that (shapes changing on every call) the eager path runs."""

select_fastest = True
"""On first use of a signature, time the compiled variant against the eager formulas on the same arguments
and keep the faster: on small tensors (a 64 x 100 dropout) one compiled call's ~10 µs of overhead costs more
than the passes it saves. The tests turn this off so that they always run the compiled variant. With
deterministic algorithms on (``torch.use_deterministic_algorithms``) the compiled variant always runs: the
same path in every run, not the one a timing picked."""
_TIMED_CALLS = 5
_UNTIMED_CALLS = 3  # a compiled variant's first calls on 8 MiB took 3 ms each, then 0.35 ms (measured)

_state = threading.local()
_default = os.environ.get(ENV_VAR, "0").strip().lower() in ("1", "true", "yes", "on")
_broken: dict[str, str] = {}  # device type -> why compiling failed there (the eager path runs there)
_KERNELS: list[Kernel] = []

F = TypeVar("F", bound=Callable[..., Any])


def is_enabled() -> bool:
    """Whether the fused kernels run (this thread): ``CS231N_FUSED``, or the last :func:`set_enabled`."""
    return getattr(_state, "enabled", _default)


def set_enabled(flag: bool) -> None:
    """Turn the fused kernels on or off (this thread)."""
    _state.enabled = bool(flag)


@contextlib.contextmanager
def enabled(flag: bool = True) -> Iterator[None]:
    """Run the block with the fused kernels on (or off), then restore the previous setting.

    Examples::

        >>> import torch, custom_ops.functional as MF
        >>> from custom_ops import fused
        >>> x = torch.randn(8, 4)
        >>> with fused.enabled(False):  # the eager reference path
        ...     out = MF.batch_norm(x, None, None, training=True)
        >>> out.shape
        torch.Size([8, 4])
    """
    previous = is_enabled()
    set_enabled(flag)
    try:
        yield
    finally:
        set_enabled(previous)


def unavailable() -> dict[str, str]:
    """Device type -> why kernels could not be compiled there (the eager path runs there instead)."""
    return dict(_broken)


def kernels(module: str | None = None) -> list[Kernel]:
    """Every kernel defined so far, or those of one module (e.g. ``"custom_ops.batchnorm"``)."""
    return [k for k in _KERNELS if module is None or k.fn.__module__ == module]


class Kernel:
    """A pure function of tensors (and constant non-tensor arguments), run as written or compiled.

    ``fn`` returns a tensor or a tuple of tensors (or None entries); it must not modify its inputs.
    Calling the kernel calls ``fn`` itself unless fusion is on (:func:`is_enabled`), no autograd recording
    or Dynamo tracing is under way, and the arguments' device type can compile; then the compiled
    variant for the arguments' signature runs: compiled on first use, and kept only where it is measured
    faster than the eager formulas on those arguments (:data:`select_fastest`).

    ``one_loop``, when given, is what is compiled instead of ``fn``: the same math written for one fused
    loop, where the fastest eager formulation is not (a select, which a compiled loop vectorises, is many
    times slower than a float-only ``sign`` in eager CPU kernels). It takes ``fn``'s arguments and must
    agree with it; the registry's tests run every op with fusion on as with it off.
    """

    def __init__(self, fn: Callable[..., Any], one_loop: Callable[..., Any] | None = None) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.one_loop = fn if one_loop is None else one_loop
        self.compiled: dict[tuple[Any, ...], Callable[..., Any]] = {}  # signature -> its compiled variant
        self.eager_faster: set[tuple[Any, ...]] = set()  # signatures where the eager formulas measured faster
        self.fused_calls = 0  # calls that ran a compiled variant (tests check the fused path really ran)
        _KERNELS.append(self)

    def __call__(self, *args: Any) -> Any:
        if (
            not is_enabled()
            or _reference.is_active()
            or torch.compiler.is_compiling()
            or is_in_torch_dispatch_mode()
            or functorch_active()
        ):
            return self.fn(*args)  # a dispatch mode (a FLOP counter, a trace) sees the eager formulas' ops
        # One pass over the arguments: the signature, the tensors, and whether autograd records.
        recording = torch.is_grad_enabled()
        key: list[Any] = []
        tensors: list[torch.Tensor] = []
        for a in args:
            if isinstance(a, torch.Tensor):
                if recording and a.requires_grad:
                    return self.fn(*args)
                key.append((a.shape, a.stride(), a.dtype, a.device))
                tensors.append(a)
            else:
                key.append((type(a), a))
        if not tensors or tensors[0].device.type in _broken:
            return self.fn(*args)
        signature = tuple(key)
        variant = self.compiled.get(signature)
        if variant is None:
            if len(self.compiled) >= MAX_SIGNATURES:
                return self.fn(*args)
            variant = self._compile(args, tensors[0].device.type)
            if variant is None:
                return self.fn(*args)
            self.compiled[signature] = variant
            if select_fastest and not _faster(variant, self.fn, args):
                self.eager_faster.add(signature)
        if (
            select_fastest
            and signature in self.eager_faster
            and not torch.are_deterministic_algorithms_enabled()
        ):
            return self.fn(*args)
        self.fused_calls += 1
        return variant(*tensors)

    def _compile(self, args: tuple[Any, ...], device: str) -> Callable[..., Any] | None:
        """Trace ``one_loop`` on ``args`` (tensor positions as graph inputs, the rest baked in) and compile
        it; None (and one warning, then the eager path on ``device`` for every kernel) when that fails. The
        compiled variant returns what ``fn`` returns, in the memory layouts ``fn`` gives (``fn`` runs once
        here to tell)."""
        from torch._inductor import compile as inductor_compile
        from torch.fx.experimental.proxy_tensor import make_fx

        positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]

        def graph(*tensors: torch.Tensor) -> list[torch.Tensor]:
            full = list(args)
            for i, t in zip(positions, tensors):
                full[i] = t
            out = self.one_loop(*full)
            return [t for t in (out if isinstance(out, tuple) else [out]) if t is not None]

        tensors = [args[i] for i in positions]
        try:
            with torch.no_grad():
                traced = make_fx(graph, tracing_mode="fake")(*tensors)
                compiled = inductor_compile(traced, tensors)
        except Exception as error:  # any compiler failure means: run the eager formulas
            reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"
            _broken[device] = reason
            warnings.warn(
                f"custom_ops.fused: could not compile the fused kernels on {device} ({reason}); the manual "
                f"ops run their eager reference path there, which is slower (set {ENV_VAR}=0 to silence)",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        with torch.no_grad():
            out = self.fn(*args)
        items = list(out) if isinstance(out, tuple) else [out]
        none_at = [i for i, t in enumerate(items) if t is None]
        return _restructure(
            compiled, not isinstance(out, tuple), none_at, [t.stride() for t in items if t is not None]
        )


def _faster(compiled: Callable[..., Any], fn: Callable[..., Any], args: tuple[Any, ...]) -> bool:
    """Whether ``compiled`` (on the tensor arguments) beats ``fn`` (on all of them): the best of
    :data:`_TIMED_CALLS` calls each, taken in turns after :data:`_UNTIMED_CALLS` untimed calls each
    (:func:`custom_ops._timing.best_times`)."""
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    calls = {"compiled": lambda: compiled(*tensors), "eager": lambda: fn(*args)}
    times = best_times(calls, any(t.is_cuda for t in tensors), timed=_TIMED_CALLS, untimed=_UNTIMED_CALLS)
    return times["compiled"] < times["eager"]


def _same_layout(t: torch.Tensor, stride: tuple[int, ...]) -> bool:
    """Whether ``t`` has ``stride`` in every dim that has more than one element."""
    return all(size <= 1 or a == b for size, a, b in zip(t.shape, t.stride(), stride))


def _restructure(
    compiled: Callable[..., Any], single: bool, none_at: list[int], strides: list[tuple[int, ...]]
) -> Callable[..., Any]:
    """The compiled graph (which returns a list of tensors) returning what the traced function returned:
    one tensor, or a tuple with None where the function gave None (e.g. a gradient not needed), each
    tensor in the memory layout the eager formulas give (e.g. channels_last kept), which Inductor may
    not choose for a non-contiguous input."""

    restride: list[int] | None = None  # outputs whose layout differs from eager's: found on the first call

    def call(*tensors: torch.Tensor) -> Any:
        nonlocal restride
        out = list(compiled(*tensors))
        if restride is None:
            restride = [i for i, (t, stride) in enumerate(zip(out, strides)) if not _same_layout(t, stride)]
        for i in restride:
            t = out[i]
            out[i] = torch.empty_strided(t.shape, strides[i], dtype=t.dtype, device=t.device).copy_(t)
        if single:
            return out[0]
        for i in none_at:
            out.insert(i, None)
        return tuple(out)

    return call


def kernel(fn: F | None = None, *, one_loop: Callable[..., Any] | None = None) -> Any:
    """Decorator: ``fn`` becomes a :class:`Kernel`, compiled when fusion is on (see the module docstring);
    ``@kernel(one_loop=g)``: ``g`` is compiled instead (see :class:`Kernel`).

    Examples::

        >>> import torch
        >>> from custom_ops import fused
        >>> @fused.kernel
        ... def scaled_square(x, scale: float):
        ...     return (x * x).mul_(scale)
        >>> scaled_square(torch.tensor([1.0, 2.0]), 0.5)  # fusion off: runs as written
        tensor([0.5000, 2.0000])
    """
    if fn is None:
        return lambda f: Kernel(f, one_loop)
    return Kernel(fn)
