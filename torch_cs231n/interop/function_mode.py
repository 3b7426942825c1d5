"""Run the ``torch.nn.functional`` calls inside a model's ``forward`` on the manual operators, and measure
how much of a model actually runs on them.

:func:`torch_cs231n.interop.swap.to_manual` swaps layers (modules); models that call ``torch.nn.functional``
in
their own ``forward`` (DenseNet's final ``F.relu``, GoogLeNet's and Inception's ``F.relu``/pooling,
ConvNeXt's ``LayerNorm2d``, Swin's ``F.linear``/``F.softmax``) keep that arithmetic built-in.
:class:`ManualFunctions` is a :class:`torch.overrides.TorchFunctionMode` that sends every such call with a
manual twin in :mod:`custom_ops.functional` (looked up by name at call time, so twins added later are
used with no edit here) to that twin. A call the twin cannot take (an argument it lacks, e.g.
``dilation=2``, or a configuration it refuses) runs built-in and is recorded in
:attr:`ManualFunctions.fallbacks`. :func:`attach_manual_functions` makes a model's ``forward`` always run
under the mode (a forward pre-hook and an always-called forward hook).

:func:`manual_share` runs one forward and backward pass and returns a :class:`ManualShare`: the share of
layer-level calls (what ``torch.nn.functional`` provides: linear, convolutions, norms, activations,
softmax, pooling, dropout, attention; and the matrix products a model's ``forward`` makes itself,
``torch.matmul``, ``@``, ``torch.mm``, ``torch.bmm``, ``torch.einsum``: Swin's and MaxViT's attention; each
call counts once) made by manual operators, and the share of the floating-point work
(``torch.utils.flop_counter``'s formulas: matmuls, convolutions, attention) done inside them, forward and
backward. A built-in matrix product in a model's ``forward`` is arithmetic outside the manual ops, so it is
a built-in layer call; :class:`ManualFunctions` routes it to :func:`custom_ops.functional.matmul` or
:func:`~custom_ops.functional.einsum`.

How it counts. A manual call is a call of a :mod:`custom_ops.functional` twin (the manual layer modules
call those too), seen by a profile function restricted to the twins' code objects; calls made inside a
manual op (e.g. ``F.max_pool2d`` inside the manual max-pool's forward, which uses the built-in kernel
for the arg-max) are part of it and are not counted, nor are the matrix products of a manual op's Python
backward. A built-in call is a layer-level ``torch.nn.functional`` function, or its ``torch.``/``Tensor``
alias (``torch.sigmoid``, ``x.relu()``, ``x @ y``), seen by a function mode; the functional composites
count once (``F.multi_head_attention_forward`` is one attention call, its inner projections and matrix
products are not seen). A floating-point operation is manual when the
Python stack at the moment it runs holds a frame of a ``custom_ops`` file: the manual forwards and the
manual ``autograd.Function`` backwards are Python, the built-in backwards run in C++ with no such frame.

Examples::

    >>> import torchvision
    >>> from torch_cs231n.interop.swap import to_manual
    >>> model = attach_manual_functions(to_manual(torchvision.models.densenet121(num_classes=10)))
    >>> share = manual_share(model, torch.randn(1, 3, 64, 64))
    >>> share.layer_calls
    1.0
"""

from __future__ import annotations

import ast
import functools
import inspect
import logging
import math
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import CodeType, FrameType
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

import custom_ops
import custom_ops.functional as MF

_log = logging.getLogger(__name__)

LAYER_OPS: dict[str, tuple[str, ...]] = {
    kind: tuple(names.split())
    for kind, names in {
        "linear": "linear bilinear",
        "convolution": "conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d",
        "normalization": "batch_norm instance_norm layer_norm group_norm rms_norm local_response_norm "
        "normalize",
        "activation": "threshold relu hardtanh hardswish relu6 elu selu celu leaky_relu prelu rrelu glu gelu "
        "logsigmoid hardshrink tanhshrink softsign softplus softshrink tanh sigmoid hardsigmoid silu mish",
        "softmax": "softmin softmax log_softmax gumbel_softmax",
        "pooling": "avg_pool1d avg_pool2d avg_pool3d max_pool1d max_pool2d max_pool3d lp_pool1d lp_pool2d "
        "lp_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d "
        "adaptive_max_pool2d adaptive_max_pool3d fractional_max_pool2d fractional_max_pool3d max_unpool1d "
        "max_unpool2d max_unpool3d",
        "dropout": "dropout alpha_dropout feature_alpha_dropout dropout1d dropout2d dropout3d",
        "attention": "scaled_dot_product_attention multi_head_attention_forward",
        "matrix product": "matmul einsum",
    }.items()
}
"""The layer-level operations, by kind: those of ``torch.nn.functional`` (its documentation's sections,
without losses, distances, sparse lookups and reshaping "vision" functions), and the matrix products a
model's ``forward`` makes itself (``q @ k.transpose(-2, -1)``, ``torch.einsum``: attention without an
attention layer), which are arithmetic outside the layers unless a manual op does them."""

# Aliases whose arguments are not F's (torch.softmax has no _stacklevel; Tensor methods take self first):
# the signatures to read their arguments with. Other torch./Tensor aliases are counted but not routed.
_ALIAS_SIGNATURES = {
    "relu": "(input)",
    "sigmoid": "(input)",
    "tanh": "(input)",
    "softmax": "(input, dim, dtype=None)",
    "log_softmax": "(input, dim, dtype=None)",
    "matmul": "(input, other)",
    "einsum": "(*args)",  # (equation, *operands), a list of operands, or the sublist form
}


def _two_matrices(call: Mapping[str, Any]) -> str | None:
    """torch.mm's domain: two 2-D tensors (elsewhere torch.mm raises where matmul would compute)."""
    if all(isinstance(t, torch.Tensor) and t.dim() == 2 for t in (call["input"], call["other"])):
        return None
    return "torch.mm takes two 2-D matrices (torch raises)"


def _two_batches(call: Mapping[str, Any]) -> str | None:
    """torch.bmm's domain: two 3-D tensors with the same batch size (no broadcasting)."""
    a, b = call["input"], call["other"]
    tensors = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
    if tensors and a.dim() == b.dim() == 3 and a.shape[0] == b.shape[0]:
        return None
    return "torch.bmm takes two 3-D batches of one size (torch raises)"


# The other spellings of a matrix product, routed to the manual matmul: (owner, name, signature, the
# twin's names of its arguments, the check that the call is in the alias's domain, where matmul agrees).
_MATRIX_PRODUCT_ALIASES: tuple[tuple[Any, str, str, dict[str, str], Any], ...] = (
    (torch.Tensor, "__matmul__", "(input, other)", {}, None),
    (torch.Tensor, "__rmatmul__", "(other, input)", {}, None),  # other @ self
    (torch, "mm", "(input, mat2)", {"mat2": "other"}, _two_matrices),
    (torch.Tensor, "mm", "(input, mat2)", {"mat2": "other"}, _two_matrices),
    (torch, "bmm", "(input, mat2)", {"mat2": "other"}, _two_batches),
    (torch.Tensor, "bmm", "(input, mat2)", {"mat2": "other"}, _two_batches),
)

# Arguments that steer warnings, not arithmetic: dropped when the twin lacks them.
_HINT_ARGUMENTS = frozenset({"_stacklevel"})

_aten = torch.ops.aten
_CONV_BACKWARD = _aten.convolution_backward

# torch.utils.flop_counter has no formulas for the CPU flash-attention kernels that the built-in
# F.scaled_dot_product_attention runs on CPU (without them its attention would count zero flops); their
# arguments begin like the CUDA flash kernels', whose formulas count them.
_FORMULA_OF = {
    _aten._scaled_dot_product_flash_attention_for_cpu: _aten._scaled_dot_product_flash_attention,
    _aten._scaled_dot_product_flash_attention_for_cpu_backward: (
        _aten._scaled_dot_product_flash_attention_backward
    ),
}

_CUSTOM_OPS_DIR = os.path.dirname(os.path.abspath(custom_ops.__file__)) + os.sep
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep


class _Entry(NamedTuple):
    """How to read one intercepted callable: the layer op it is, the signature of its arguments (None: not
    routed), the arguments it implies (the in-place variants' ``inplace=True``), how it was called
    (``"F.relu_"``, ``"Tensor.softmax"``), the twin's names of arguments named otherwise (``torch.mm``'s
    ``mat2`` is matmul's ``other``) and a check that the call is one the twin computes alike (None: every
    call; else the reason it is not)."""

    op: str
    signature: inspect.Signature | None
    implied: Mapping[str, Any]
    label: str
    renamed: Mapping[str, str] = {}
    domain: Callable[[Mapping[str, Any]], str | None] | None = None


def _parse_signature(text: str) -> inspect.Signature | None:
    """A signature from its text, e.g. ``"(input, weight, bias=None)"``; None when a default is not a
    literal."""
    try:
        arguments = ast.parse(f"def _{text}: pass").body[0].args  # type: ignore[attr-defined]
    except SyntaxError:
        return None
    positional = [*arguments.posonlyargs, *arguments.args]
    defaults: list[Any] = [inspect.Parameter.empty] * (len(positional) - len(arguments.defaults))
    try:
        defaults += [ast.literal_eval(d) for d in arguments.defaults]
        kw_defaults = [
            inspect.Parameter.empty if d is None else ast.literal_eval(d) for d in arguments.kw_defaults
        ]
    except ValueError:
        return None
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter(a.arg, kind, default=d) for a, d in zip(positional, defaults)]
    if arguments.vararg is not None:
        parameters.append(inspect.Parameter(arguments.vararg.arg, inspect.Parameter.VAR_POSITIONAL))
    parameters += [
        inspect.Parameter(a.arg, inspect.Parameter.KEYWORD_ONLY, default=d)
        for a, d in zip(arguments.kwonlyargs, kw_defaults)
    ]
    return inspect.Signature(parameters)


def _functional_signature(func: Callable[..., Any]) -> inspect.Signature | None:
    """The signature of a ``torch.nn.functional`` function: introspected, or read from the first line of
    its docstring for the C builtins (``conv2d(input, weight, bias=None, ...) -> Tensor``) and the
    ``return_indices`` dispatchers (whose introspected signature is ``(*args, **kwargs)``)."""
    try:
        signature = inspect.signature(func)
        if not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values()):
            return signature
    except (TypeError, ValueError):
        pass
    name = func.__name__.removesuffix("_with_indices")  # its docstring is the plain function's
    doc = (func.__doc__ or "").lstrip()
    if not doc.startswith(f"{name}("):
        return None
    depth = 0
    for end, char in enumerate(doc):
        depth += (char == "(") - (char == ")")
        if char == ")" and depth == 0:
            return _parse_signature(" ".join(doc[len(name) : end + 1].split()))
    return None


@functools.cache
def layer_functions() -> dict[Callable[..., Any], _Entry]:
    """Every callable that runs a layer-level operation: the ``torch.nn.functional`` functions of
    :data:`LAYER_OPS`, their in-place (``F.relu_``) and ``*_with_indices`` variants, and the ``torch.``
    and ``Tensor`` functions of the same names (``torch.sigmoid``, ``Tensor.relu``), mapped to how to read
    their arguments."""
    table: dict[Callable[..., Any], _Entry] = {}
    for op in (op for op_names in LAYER_OPS.values() for op in op_names):
        variants: list[tuple[str, dict[str, Any]]] = [(op, {}), (f"{op}_", {"inplace": True})]
        if op.startswith(("max_pool", "adaptive_max_pool", "fractional_max_pool")):
            variants.append((f"{op}_with_indices", {"return_indices": True}))
        for name, implied in variants:
            function = getattr(F, name, None)
            if callable(function):
                table.setdefault(function, _Entry(op, _functional_signature(function), implied, f"F.{name}"))
            alias = _ALIAS_SIGNATURES.get(op)
            if alias is not None and implied.get("inplace"):
                alias = "(input)" if alias == "(input)" else None  # the in-place softmax does not exist
            for owner, prefix in ((torch, "torch"), (torch.Tensor, "Tensor")):
                function = getattr(owner, name, None)
                if callable(function) and function not in table:
                    signature = None if alias is None else _parse_signature(alias)
                    table[function] = _Entry(op, signature, implied, f"{prefix}.{name}")
    for owner, name, text, renamed, domain in _MATRIX_PRODUCT_ALIASES:
        prefix = "torch" if owner is torch else "Tensor"
        table[getattr(owner, name)] = _Entry(
            "matmul", _parse_signature(text), {}, f"{prefix}.{name}", renamed, domain
        )
    return table


@functools.cache
def _twin_parameters(twin: Callable[..., Any]) -> frozenset[str]:
    """The keyword-passable parameter names of a manual twin."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(n for n, p in inspect.signature(twin).parameters.items() if p.kind in kinds)


def _is_default(value: Any, default: Any) -> bool:
    """Whether ``value`` is the parameter's default, a pair of it included (``dilation=(1, 1)``)."""
    if value is default:
        return True
    scalars = (bool, int, float, str, type(None))
    if not isinstance(default, scalars):
        return False
    values = tuple(value) if isinstance(value, (tuple, list)) and value else (value,)
    return all(isinstance(v, scalars) and v == default for v in values)


def _twin_call(entry: _Entry, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[[], Any] | str:
    """The call of the manual twin that computes ``entry``'s op on these arguments, or why there is none."""
    twin = getattr(MF, entry.op, None)
    if twin is None:
        return "no manual twin"
    if entry.signature is None:
        return f"called as {entry.label}, whose arguments are not mapped to the twin's"
    try:
        bound = entry.signature.bind(*args, **kwargs)
    except TypeError as error:
        return f"arguments not understood: {error}"
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in entry.signature.parameters.values()):
        return functools.partial(twin, *args, **kwargs)  # the twin has the same variadic signature
    bound.apply_defaults()
    parameters = _twin_parameters(twin)
    call = dict(entry.implied)
    for name, value in bound.arguments.items():
        if name in call:
            continue
        name = entry.renamed.get(name, name)
        if name in parameters:
            call[name] = value
        elif name not in _HINT_ARGUMENTS and not _is_default(value, entry.signature.parameters[name].default):
            return f"{name}={value!r}: the manual {entry.op} has no {name} argument"
    missing = [name for name in entry.implied if name not in parameters]
    if missing:
        return f"{entry.label}: the manual {entry.op} has no {missing[0]} argument"
    outside = entry.domain(call) if entry.domain is not None else None
    if outside is not None:
        return outside
    return functools.partial(twin, **call)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


@functools.cache
def _in_custom_ops(code: CodeType) -> bool:
    return os.path.abspath(code.co_filename).startswith(_CUSTOM_OPS_DIR)


@functools.cache
def _in_torch(code: CodeType) -> bool:
    return os.path.abspath(code.co_filename).startswith(_TORCH_DIR)


def _called_from_manual_op(frame: FrameType | None) -> bool:
    """Whether the first frame outside torch's own files, from ``frame`` outwards, is in ``custom_ops``:
    the call is part of a manual operator (e.g. the built-in kernel its forward uses)."""
    while frame is not None and _in_torch(frame.f_code):
        frame = frame.f_back
    return frame is not None and _in_custom_ops(frame.f_code)


def _inside_manual_op(frame: FrameType | None) -> bool:
    """Whether any frame from ``frame`` outwards is in a ``custom_ops`` file."""
    while frame is not None:
        if _in_custom_ops(frame.f_code):
            return True
        frame = frame.f_back
    return False


class _ThreadState(threading.local):
    """Per-thread state of the modes and hooks."""

    def __init__(self) -> None:
        self.depth = 0  # ManualFunctions contexts entered in this thread (the outermost is on torch's stack)
        self.hooks: list[_EnterManualFunctions] = []  # the pre-hooks that entered them, innermost last
        self.refusals: list[tuple[str, str]] | None = None  # fallbacks (op, reason) while manual_share runs


_state = _ThreadState()


class ManualFunctions(TorchFunctionMode):
    """A function mode that runs layer-level ``torch.nn.functional`` calls on their manual twins.

    Every call of a function of :data:`LAYER_OPS` (or of ``torch.relu``, ``torch.sigmoid``,
    ``torch.tanh``, ``torch.softmax``, ``torch.log_softmax`` and their ``Tensor`` methods) whose name has a
    twin in :mod:`custom_ops.functional` goes to that twin with the same arguments; so do the matrix
    products (``torch.matmul``, ``Tensor.matmul``, ``@``, ``torch.einsum``, and ``torch.mm`` / ``torch.bmm``
    / their methods on the inputs they accept, to the manual ``matmul``). The call runs
    built-in, and is counted in :attr:`fallbacks` with the reason, when the twin lacks one of its
    arguments (a non-default value; ``inplace=True`` included, so in-place calls stay in place), or
    refuses the configuration (raises ``ValueError``/``TypeError`` before computing). Calls made inside a
    manual operator are left alone, as are calls of functions without a twin. Nested contexts (of any
    instance) add nothing: only the outermost one routes and records.

    Attributes:
        fallbacks: ``(op, reason) -> count`` of the calls with a twin that ran built-in.

    Examples::

        >>> mode = ManualFunctions()
        >>> with mode:
        ...     y = torch.nn.functional.relu(torch.randn(3, requires_grad=True))
        >>> type(y.grad_fn).__name__
        'ReLUFunctionBackward'
    """

    def __init__(self) -> None:
        super().__init__()
        self.fallbacks: Counter[tuple[str, str]] = Counter()

    def __enter__(self) -> ManualFunctions:
        if _state.depth == 0:
            super().__enter__()
        _state.depth += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        _state.depth -= 1
        if _state.depth == 0:
            super().__exit__(*exc_info)

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: tuple[type, ...],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        entry = layer_functions().get(func)
        if entry is None or _called_from_manual_op(sys._getframe(1)):
            return func(*args, **kwargs)
        call = _twin_call(entry, args, kwargs)
        if not isinstance(call, str):
            try:
                return call()
            except (ValueError, TypeError) as error:  # the twin's argument checks refused the call
                call = f"the manual {entry.op} refused it: {_first_line(error)}"
        if call != "no manual twin":
            self._fall_back(entry.op, call)
        return func(*args, **kwargs)

    def _fall_back(self, op: str, reason: str) -> None:
        if (op, reason) not in self.fallbacks:
            _log.info("ManualFunctions: %s runs built-in (%s)", op, reason)
        self.fallbacks[op, reason] += 1
        if _state.refusals is not None:
            _state.refusals.append((op, reason))


class _EnterManualFunctions:
    """Forward pre-hook entering a model's :class:`ManualFunctions`."""

    def __init__(self, mode: ManualFunctions) -> None:
        self.mode = mode

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self.mode.__enter__()
        _state.hooks.append(self)


class _ExitManualFunctions:
    """Forward hook (called even when ``forward`` raises) leaving what :class:`_EnterManualFunctions`
    entered."""

    def __init__(self, enter: _EnterManualFunctions) -> None:
        self.enter = enter

    def __call__(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if _state.hooks and _state.hooks[-1] is self.enter:  # not when a pre-hook raised before ours ran
            _state.hooks.pop()
            self.enter.mode.__exit__(None, None, None)


def manual_functions_of(model: nn.Module) -> ManualFunctions | None:
    """The :class:`ManualFunctions` that :func:`attach_manual_functions` gave ``model``, or None."""
    for hook in model._forward_pre_hooks.values():
        if isinstance(hook, _EnterManualFunctions):
            return hook.mode
    return None


def attach_manual_functions(model: nn.Module) -> nn.Module:
    """Make every call of ``model`` run under a :class:`ManualFunctions` mode, in place (once: a second
    call does nothing). The hooks go with the model through ``copy.deepcopy`` and pickling.

    Args:
        model: any module, usually after :func:`torch_cs231n.interop.swap.to_manual`.

    Returns:
        ``model``; :func:`manual_functions_of` gives its mode (and the fallbacks it recorded).

    Examples::

        >>> import torchvision
        >>> model = attach_manual_functions(torchvision.models.googlenet(init_weights=True))
        >>> manual_functions_of(model).fallbacks
        Counter()
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if manual_functions_of(model) is None:
        enter = _EnterManualFunctions(ManualFunctions())
        model.register_forward_pre_hook(enter, prepend=True)
        model.register_forward_hook(_ExitManualFunctions(enter), always_call=True)
    return model


def detach_manual_functions(model: nn.Module) -> nn.Module:
    """Remove what :func:`attach_manual_functions` added to ``model`` (nothing if it has none); returns
    ``model``."""
    for key, hook in list(model._forward_pre_hooks.items()):
        if isinstance(hook, _EnterManualFunctions):
            del model._forward_pre_hooks[key]
    for key, hook in list(model._forward_hooks.items()):
        if isinstance(hook, _ExitManualFunctions):
            del model._forward_hooks[key]
            model._forward_hooks_always_called.pop(key, None)
    return model


@dataclass
class ManualShare:
    """How much of one forward and backward pass of a model ran on manual operators.

    Attributes:
        layer_calls: share of the layer-level calls made by manual ops (nan when there were none).
        flops: share of the floating-point operations done inside manual ops (nan when none were counted).
        manual_calls: manual calls per op name (``"conv2d"``, ``"relu"``).
        builtin_calls: built-in layer-level calls per op name.
        why_builtin: per built-in op, why it ran built-in (no manual twin, the twin's refusal, or the call
            was made outside :class:`ManualFunctions`).
        manual_flops: floating-point operations inside manual ops.
        total_flops: all counted floating-point operations.
        builtin_flops: floating-point operations outside manual ops per aten op (``"aten.bmm"``: e.g. the
            attention matmuls a transformer's forward does itself when they run built-in).
        backward: whether a backward pass ran (not when nothing in the output requires grad).
    """

    layer_calls: float
    flops: float
    manual_calls: dict[str, int] = field(default_factory=dict)
    builtin_calls: dict[str, int] = field(default_factory=dict)
    why_builtin: dict[str, str] = field(default_factory=dict)
    manual_flops: int = 0
    total_flops: int = 0
    builtin_flops: dict[str, int] = field(default_factory=dict)
    backward: bool = True

    def builtin_summary(self) -> str:
        """The built-in calls, e.g. ``"multi_head_attention_forward x12 (no manual twin)"``; ``""``
        when there are none."""
        return "; ".join(
            f"{op} x{count} ({self.why_builtin.get(op, '')})"
            for op, count in sorted(self.builtin_calls.items())
        )

    def __str__(self) -> str:
        manual, builtin = sum(self.manual_calls.values()), sum(self.builtin_calls.values())
        passes = "forward + backward" if self.backward else "forward only"
        lines = [
            f"layer calls on manual ops: {self.layer_calls:.1%} ({manual} of {manual + builtin})",
            f"flops in manual ops: {self.flops:.1%} ({self.manual_flops / 1e9:.3g} of "
            f"{self.total_flops / 1e9:.3g} GFLOP, {passes})",
            "  manual: " + (", ".join(f"{op} x{n}" for op, n in sorted(self.manual_calls.items())) or "none"),
            "  built-in: " + (self.builtin_summary() or "none"),
        ]
        if self.builtin_flops:
            shares = (f"{op} {n / self.total_flops:.1%}" for op, n in sorted(self.builtin_flops.items()))
            lines.append("  flops outside manual ops: " + ", ".join(shares))
        return "\n".join(lines)


class _TwinCalls:
    """Profile function counting the calls of the manual twins (outermost ones, completed)."""

    def __init__(self, codes: Mapping[CodeType, str]) -> None:
        self.codes = codes
        self.stack: list[FrameType] = []
        self.calls: Counter[str] = Counter()
        self.total = 0

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code in self.codes:
            self.stack.append(frame)
        elif event == "return" and self.stack and self.stack[-1] is frame:
            self.stack.pop()
            if not self.stack and arg is not None:  # None: left by an exception (a refusal)
                self.calls[self.codes[frame.f_code]] += 1
                self.total += 1


class _BuiltinCalls(TorchFunctionMode):
    """Function mode counting the layer-level calls that do not reach a manual twin."""

    def __init__(self, twins: _TwinCalls) -> None:
        super().__init__()
        self.twins = twins
        self.calls: Counter[str] = Counter()
        self.reasons: dict[str, Counter[str]] = {}

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: tuple[type, ...],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        entry = layer_functions().get(func)
        if entry is None or self.twins.stack:  # not a layer op, or part of a manual one (its forward)
            return func(*args, **kwargs)
        if _called_from_manual_op(sys._getframe(1)):  # a manual backward's matmuls, run by autograd
            return func(*args, **kwargs)
        manual_before = self.twins.total
        out = func(*args, **kwargs)
        if self.twins.total == manual_before:  # no twin ran it (a ManualFunctions above routes it)
            self.calls[entry.op] += 1
            self.reasons.setdefault(entry.op, Counter())[self._reason(entry.op)] += 1
        return out

    @staticmethod
    def _reason(op: str) -> str:
        refusals = _state.refusals or []
        for index in range(len(refusals) - 1, -1, -1):
            if refusals[index][0] == op:
                return refusals.pop(index)[1]
        return "no manual twin" if getattr(MF, op, None) is None else "called outside ManualFunctions"


@functools.cache
def _weight_grad_flops_ignore_groups() -> bool:
    """Whether torch's ``convolution_backward`` formula counts a grouped convolution's weight gradient
    ``groups`` times over (it did until pytorch/pytorch#183405): checked on a 1x1 conv with 2 groups,
    whose weight gradient takes 4 flops."""
    x, w = torch.empty(1, 2, 1, 1, device="meta"), torch.empty(2, 1, 1, 1, device="meta")
    mask = [False, True, False]
    count = flop_registry[_CONV_BACKWARD](
        x, x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 2, mask, out_val=(None, w, None)
    )
    return count == 2 * 4


def _flop_count(packet: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    """``torch.utils.flop_counter``'s count for one op; the weight-gradient term of a grouped
    convolution's backward divided by ``groups`` where torch's formula forgets to."""
    formula = flop_registry[packet]
    grouped_weight_grad = packet is _CONV_BACKWARD and len(args) >= 11 and args[9] != 1 and args[10][1]
    if grouped_weight_grad and _weight_grad_flops_ignore_groups():
        head, mask, tail = args[:10], args[10], args[11:]
        data = formula(*head, [mask[0], False, False], *tail, out_val=out, **kwargs)
        weight = formula(*head, [False, True, False], *tail, out_val=out, **kwargs)
        return data + weight // args[9]
    return formula(*args, **kwargs, out_val=out)


class _FlopSplit(TorchDispatchMode):
    """Dispatch mode adding up ``torch.utils.flop_counter``'s formulas (see :func:`_flop_count`), in total
    and inside manual ops; an op without a formula is decomposed when it can be, as ``FlopCounterMode``
    does."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0
        self.manual = 0
        self.builtin: Counter[str] = Counter()

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: tuple[type, ...],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        packet = _FORMULA_OF.get(func._overloadpacket, func._overloadpacket)
        if packet not in flop_registry:
            with self:
                out = func.decompose(*args, **kwargs)
            return func(*args, **kwargs) if out is NotImplemented else out
        out = func(*args, **kwargs)
        count = _flop_count(packet, args, kwargs, out)
        self.total += count
        if _inside_manual_op(sys._getframe(1)):
            self.manual += count
        elif count:
            self.builtin[str(func._overloadpacket)] += count
        return out


@contextmanager
def _model_state_kept(model: nn.Module) -> Iterator[None]:
    """Restore ``model``'s buffers (BatchNorm statistics) and the random number generators afterwards."""
    saved = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    cuda = sorted({t.device.index or 0 for t in (*model.parameters(), *model.buffers()) if t.is_cuda})
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(saved[name])


def _twin_codes() -> dict[CodeType, str]:
    """The code object of each manual twin, mapped to its op name."""
    codes = {}
    for op in (op for op_names in LAYER_OPS.values() for op in op_names):
        twin = getattr(MF, op, None)
        code = getattr(inspect.unwrap(twin), "__code__", None) if twin is not None else None
        if code is not None:
            codes[code] = op
    return codes


def manual_share(model: nn.Module, *example_inputs: Any) -> ManualShare:
    """Run ``model(*example_inputs)`` and a backward pass from the sum of its output tensors, and measure
    the share of layer-level calls made by manual ops and of the floating-point work done inside them.

    The model runs as it is (train or eval mode, with or without :func:`attach_manual_functions`); its
    parameters' ``.grad``, its buffers and the random number generators are left as they were. The
    backward pass computes the gradients of the parameters and inputs that require grad (it is skipped
    when the output requires none). The manual calls are counted by a ``sys.setprofile`` function during
    the forward pass (a profiler of the same thread is paused meanwhile).

    Args:
        model: the model, e.g. after ``to_manual`` and ``attach_manual_functions``.
        *example_inputs: the arguments of one forward call (batch 1 is enough).

    Returns:
        A :class:`ManualShare` (``layer_calls``, ``flops`` and the counts behind them).

    Examples::

        >>> model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
        >>> manual_share(model, torch.randn(2, 4)).layer_calls
        0.0
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    twins = _TwinCalls(_twin_codes())
    builtin = _BuiltinCalls(twins)
    flops = _FlopSplit()
    previous_profile = sys.getprofile()
    _state.refusals = []
    try:
        with _model_state_kept(model), flops, builtin:
            sys.setprofile(twins)
            try:
                outputs = model(*example_inputs)
            finally:
                sys.setprofile(previous_profile)
            leaves = [t for t in tree_flatten(outputs)[0] if isinstance(t, torch.Tensor) and t.requires_grad]
            wrt = [p for p in model.parameters() if p.requires_grad]
            wrt += [
                t for t in tree_flatten(example_inputs)[0] if isinstance(t, torch.Tensor) and t.requires_grad
            ]
            if leaves and wrt:
                torch.autograd.grad(sum(t.sum() for t in leaves), wrt, allow_unused=True)
    finally:
        _state.refusals = None
    manual, total = twins.total, twins.total + sum(builtin.calls.values())
    return ManualShare(
        layer_calls=manual / total if total else math.nan,
        flops=flops.manual / flops.total if flops.total else math.nan,
        manual_calls=dict(twins.calls),
        builtin_calls=dict(builtin.calls),
        why_builtin={op: "; ".join(sorted(reasons)) for op, reasons in builtin.reasons.items()},
        manual_flops=flops.manual,
        total_flops=flops.total,
        builtin_flops=dict(flops.builtin),
        backward=bool(leaves and wrt),
    )
