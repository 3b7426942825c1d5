"""The saved-for-backward measurement of :mod:`torch_cs231n.tools.memory`: exact byte counts of known
cases."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import custom_ops.functional as MF
from torch_cs231n.tools.memory import SavedMemory, saved_memory

FLOAT32 = 4


def _x(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=dtype).requires_grad_()


def test_relu_saves_one_activation_of_the_input_size() -> None:
    """Manual and built-in relu save one tensor of the input's size (the output or the input), which is
    counted in ``bytes`` and not in ``extra_bytes`` (it is the op's input/output)."""
    x = _x(4, 5)
    for fn in (MF.relu, F.relu):
        measured = saved_memory(fn, (x,), activations=(x,))
        assert measured == SavedMemory(bytes=20 * FLOAT32, extra_bytes=0), f"{fn.__module__}: {measured}"


def test_linear_saves_input_and_weight_but_parameters_are_excluded() -> None:
    x, w, b = _x(4, 5), _x(3, 5), _x(3)
    # all counted: input (4*5) and weight (3*5); the bias is not needed for backward
    assert saved_memory(MF.linear, (x, w, b)) == SavedMemory(35 * FLOAT32, 35 * FLOAT32)
    # the parameters excluded, as the benchmark does: only the input is left, and it is the activation
    assert saved_memory(MF.linear, (x, w, b), exclude=(w, b), activations=(x,)) == SavedMemory(80, 0)
    # the built-in saves the same (its saved weight is a view w.t(): same storage, same bytes)
    assert saved_memory(F.linear, (x, w, b), exclude=(w, b), activations=(x,)) == SavedMemory(80, 0)


def test_parameters_and_buffers_are_not_counted_when_excluded() -> None:
    """Built-in batch norm saves the input, weight, running statistics and (training) the batch mean and
    inverse std: excluding the parameters and buffers leaves the input and the batch statistics."""
    layer, x = torch.nn.BatchNorm1d(5), _x(4, 5)
    state = [*layer.parameters(), *layer.buffers()]
    channel = 5 * FLOAT32
    # training: x, weight, running_mean, running_var, save_mean, save_invstd
    assert saved_memory(layer, (x,)).bytes == 80 + 5 * channel
    assert saved_memory(layer, (x,), exclude=state).bytes == 80 + 2 * channel
    layer.eval()  # x, weight, running_mean, running_var
    assert saved_memory(layer, (x,)).bytes == 80 + 3 * channel
    assert saved_memory(layer, (x,), exclude=state) == SavedMemory(80, 80)
    assert saved_memory(layer, (x,), exclude=state, activations=(x,)) == SavedMemory(80, 0)


def test_a_storage_saved_twice_or_as_views_is_counted_once() -> None:
    x = _x(4, 5)
    # x * x saves x twice (as self and as other): one storage
    assert saved_memory(lambda t: t * t, (x,), activations=(x,)) == SavedMemory(80, 0)

    class SavesViews(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(t, t.t(), t[0], t.view(-1))
            return t.clone()

        @staticmethod
        def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
            return grad

    assert saved_memory(SavesViews.apply, (x,)) == SavedMemory(80, 80)


def test_a_saved_view_costs_its_whole_storage() -> None:
    """``x[:1].sin()`` saves a 5-element view of ``x``: it keeps all of ``x``'s 20 elements alive."""
    x = _x(4, 5)
    assert saved_memory(lambda t: t[:1].sin(), (x,)) == SavedMemory(80, 80)


def test_intermediate_tensors_are_extra_and_dtypes_scale() -> None:
    """``sin(sin(x))`` saves ``x`` and the intermediate ``sin(x)``: only the intermediate is extra."""
    x = _x(4, 5)
    assert saved_memory(lambda t: t.sin().sin(), (x,), activations=(x,)) == SavedMemory(160, 80)
    x64 = _x(4, 5, dtype=torch.float64)
    assert saved_memory(lambda t: t.sin().sin(), (x64,), activations=(x64,)) == SavedMemory(320, 160)


def test_nothing_is_saved_without_grad() -> None:
    x = _x(4, 5).detach()
    assert saved_memory(torch.sin, (x,)) == SavedMemory(0, 0)
    # the op records even under an outer no_grad: saved_memory enables grad itself
    with torch.no_grad():
        assert saved_memory(torch.sin, (x.requires_grad_(),)).bytes == 80
