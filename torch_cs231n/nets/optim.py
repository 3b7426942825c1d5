"""The CS231n update rules as :class:`torch.optim.Optimizer` subclasses, and the per-epoch lr decay.

Each ``step`` is a literal, in-place transcription of the matching function of CS231n's ``optim.py``
(assignment 2), or of the lecture's Adagrad, with the CS231n defaults. The per-parameter ``config`` dict of
CS231n becomes ``self.state[p]``, so ``state_dict()`` / ``load_state_dict()`` save and resume a run.

Hyper-parameter names (CS231n ``config`` key -> argument here -> ``torch.optim`` twin):

========================  ==================  =====================================================
CS231n                    here                torch.optim
========================  ==================  =====================================================
``learning_rate``         ``lr``              ``lr``
``momentum``              ``momentum``        ``SGD(momentum=..., dampening=0, nesterov=False)``
``decay_rate``            ``decay_rate``      ``RMSprop(alpha=...)``
``beta1``, ``beta2``      ``betas``           ``Adam(betas=...)``
``epsilon``               ``eps``             ``eps``
``velocity``              state ``velocity``  ``momentum_buffer`` (constant lr: ``-velocity/lr``)
``cache``                 state ``cache``     state ``square_avg`` (RMSprop), ``sum`` (Adagrad)
``m``, ``v``, ``t``       state ``m, v, t``   state ``exp_avg, exp_avg_sq, step``
``lr_decay`` (Solver)     :class:`LRDecay`    ``ExponentialLR(gamma=...)``
========================  ==================  =====================================================

Weight decay is deliberately absent: the CS231n models add the L2 penalty to the loss.
All rules treat a parameter whose ``grad`` is ``None`` as frozen for that step (its state is not advanced).
"""

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import ExponentialLR
from torch.optim.optimizer import ParamsT

__all__ = ["SGD", "Adagrad", "Adam", "LRDecay", "RMSProp", "SGDMomentum"]


def _check_range(
    owner: str, name: str, value: Any, low: float, high: float, *, low_open: bool, high_open: bool
) -> None:
    """Raise ``TypeError`` unless ``value`` is a real number, ``ValueError`` unless it is in range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {name} must be a float, got {type(value).__name__} {value!r}")
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below and math.isfinite(value)):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{owner}: {name} must be in {interval}, got {value!r}")


def _check_lr(owner: str, lr: Any) -> None:
    _check_range(owner, "lr", lr, 0.0, math.inf, low_open=False, high_open=True)


def _check_eps(owner: str, eps: Any) -> None:
    # eps > 0: a coordinate whose gradient has been zero so far has cache == 0, and 0 / (0 + 0) is NaN.
    _check_range(owner, "eps", eps, 0.0, math.inf, low_open=True, high_open=True)


def _check_decay(owner: str, name: str, value: Any) -> None:
    _check_range(owner, name, value, 0.0, 1.0, low_open=False, high_open=True)


class _CS231nOptimizer(Optimizer):
    """Shared ``step`` loop: every subclass implements ``_update`` for one parameter, CS231n style.

    Hyper-parameters of every param group (the defaults included) are validated by ``_check_group``
    before the group is added.
    """

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        merged = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        self._check_group(merged)
        super().add_param_group(param_group)

    def _check_group(self, group: dict[str, Any]) -> None:
        """Raise a clear error if a hyper-parameter of ``group`` is invalid (implemented by every rule)."""
        raise NotImplementedError

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Apply the rule in place to ``param`` given its ``grad`` (same shape) and its ``state`` dict."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Update every parameter that has a ``grad``; ``closure`` re-evaluates and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                if param.is_complex():
                    raise RuntimeError(
                        f"{type(self).__name__} supports real parameters only, got {param.dtype}"
                    )
                self._update(param, param.grad, self.state[param], group)
        return loss


class SGD(_CS231nOptimizer):
    """Vanilla stochastic gradient descent: ``w -= lr * dw``.

    Equals ``torch.optim.SGD(params, lr)``.

    Args:
        params: parameters (or param-group dicts) to optimise.
        lr: learning rate (CS231n ``learning_rate``), default ``1e-2``.

    Examples::

        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> w.grad = torch.tensor([0.5, 0.5])
        >>> SGD([w], lr=0.1).step()
        >>> w.data
        tensor([ 0.9500, -2.0500])
    """

    def __init__(self, params: ParamsT, lr: float = 1e-2) -> None:
        super().__init__(params, {"lr": lr})

    def _check_group(self, group: dict[str, Any]) -> None:
        _check_lr(type(self).__name__, group["lr"])

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        param.add_(grad, alpha=-group["lr"])


class SGDMomentum(_CS231nOptimizer):
    """SGD with momentum in CS231n's velocity form.

    ``v = momentum * v - lr * dw;  w += v``  (``v`` starts at zero; state key ``"velocity"``).

    ``torch.optim.SGD(momentum=mu, dampening=0, nesterov=False)`` keeps ``b = mu * b + dw; w -= lr * b``
    instead. The two agree step for step while ``lr`` is constant (then ``v == -lr * b``). When ``lr``
    changes (e.g. under :class:`LRDecay`) they differ: here the velocity accumulated at the old rates is
    kept as is and only new gradients use the new rate, whereas torch rescales the whole buffer by the new
    rate on every step.

    Args:
        params: parameters (or param-group dicts) to optimise.
        lr: learning rate (CS231n ``learning_rate``), default ``1e-2``.
        momentum: velocity decay ``mu`` in ``[0, 1)``, default ``0.9``.

    Examples::

        >>> w = torch.nn.Parameter(torch.tensor([0.0]))
        >>> optimizer = SGDMomentum([w], lr=0.1, momentum=0.9)
        >>> for _ in range(2):  # the same gradient twice: the second step is 1.9x the first
        ...     w.grad = torch.tensor([1.0])
        ...     optimizer.step()
        >>> optimizer.state[w]["velocity"], w.data
        (tensor([-0.1900]), tensor([-0.2900]))
    """

    def __init__(self, params: ParamsT, lr: float = 1e-2, momentum: float = 0.9) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum})

    def _check_group(self, group: dict[str, Any]) -> None:
        _check_lr(type(self).__name__, group["lr"])
        _check_decay(type(self).__name__, "momentum", group["momentum"])

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        if not state:
            state["velocity"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        velocity = state["velocity"]
        # v = mu * v - lr * dw;  w += v
        velocity.mul_(group["momentum"]).add_(grad, alpha=-group["lr"])
        param.add_(velocity)


class RMSProp(_CS231nOptimizer):
    """RMSProp: a leaky running mean of squared gradients scales each coordinate's step.

    ``cache = decay_rate * cache + (1 - decay_rate) * dw**2;  w -= lr * dw / (sqrt(cache) + eps)``
    (``cache`` starts at zero; state key ``"cache"``).

    Equals ``torch.optim.RMSprop(params, lr, alpha=decay_rate, eps=eps)``: torch's ``alpha`` is CS231n's
    ``decay_rate``, and both add ``eps`` outside the square root.

    Args:
        params: parameters (or param-group dicts) to optimise.
        lr: learning rate (CS231n ``learning_rate``), default ``1e-2``.
        decay_rate: decay of the squared-gradient cache in ``[0, 1)``, default ``0.99``.
        eps: added to ``sqrt(cache)``, ``> 0``, default ``1e-8`` (CS231n ``epsilon``).

    Examples::

        >>> w = torch.nn.Parameter(torch.tensor([0.0, 0.0]))
        >>> w.grad = torch.tensor([100.0, 0.01])  # gradients of very different sizes...
        >>> RMSProp([w], lr=0.01).step()
        >>> w.data  # ...give steps of the same size: lr / sqrt(1 - decay_rate)
        tensor([-0.1000, -0.1000])
    """

    def __init__(
        self, params: ParamsT, lr: float = 1e-2, decay_rate: float = 0.99, eps: float = 1e-8
    ) -> None:
        super().__init__(params, {"lr": lr, "decay_rate": decay_rate, "eps": eps})

    def _check_group(self, group: dict[str, Any]) -> None:
        _check_lr(type(self).__name__, group["lr"])
        _check_decay(type(self).__name__, "decay_rate", group["decay_rate"])
        _check_eps(type(self).__name__, group["eps"])

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        if not state:
            state["cache"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        cache = state["cache"]
        decay_rate = group["decay_rate"]
        # cache = decay_rate * cache + (1 - decay_rate) * dw**2
        cache.mul_(decay_rate).addcmul_(grad, grad, value=1 - decay_rate)
        # w -= lr * dw / (sqrt(cache) + eps)
        param.addcdiv_(grad, cache.sqrt().add_(group["eps"]), value=-group["lr"])


class Adagrad(_CS231nOptimizer):
    """Adagrad (lecture 7): the sum of all squared gradients so far scales each coordinate's step.

    ``cache += dw**2;  w -= lr * dw / (sqrt(cache) + eps)``
    (``cache`` starts at zero; state key ``"cache"``).

    Equals ``torch.optim.Adagrad(params, lr, eps=eps, lr_decay=0, initial_accumulator_value=0)``; both add
    ``eps`` outside the square root. The defaults follow the other CS231n rules (``lr=1e-2``, ``eps=1e-8``);
    the lecture slide writes ``eps=1e-7`` and torch defaults to ``eps=1e-10``.

    Args:
        params: parameters (or param-group dicts) to optimise.
        lr: learning rate, default ``1e-2``.
        eps: added to ``sqrt(cache)``, ``> 0``, default ``1e-8``.

    Examples::

        >>> w = torch.nn.Parameter(torch.tensor([0.0]))
        >>> optimizer = Adagrad([w], lr=1.0)
        >>> steps = []
        >>> for _ in range(4):  # a constant gradient: step t is lr / sqrt(t), shrinking as the cache grows
        ...     before = w.item()
        ...     w.grad = torch.tensor([3.0])
        ...     optimizer.step()
        ...     steps.append(round(before - w.item(), 4))
        >>> steps
        [1.0, 0.7071, 0.5774, 0.5]
    """

    def __init__(self, params: ParamsT, lr: float = 1e-2, eps: float = 1e-8) -> None:
        super().__init__(params, {"lr": lr, "eps": eps})

    def _check_group(self, group: dict[str, Any]) -> None:
        _check_lr(type(self).__name__, group["lr"])
        _check_eps(type(self).__name__, group["eps"])

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        if not state:
            state["cache"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        cache = state["cache"]
        # cache += dw**2;  w -= lr * dw / (sqrt(cache) + eps)
        cache.addcmul_(grad, grad)
        param.addcdiv_(grad, cache.sqrt().add_(group["eps"]), value=-group["lr"])


class Adam(_CS231nOptimizer):
    """Adam with bias correction, as in CS231n (``t`` is incremented before it is used).

    ``t += 1;  m = b1 * m + (1 - b1) * dw;  v = b2 * v + (1 - b2) * dw**2;``
    ``mt = m / (1 - b1**t);  vt = v / (1 - b2**t);  w -= lr * mt / (sqrt(vt) + eps)``
    (``m``, ``v`` start at zero and ``t`` at 0; state keys ``"m"``, ``"v"``, ``"t"``).

    Equals ``torch.optim.Adam(params, lr, betas, eps)`` up to floating-point rounding (torch folds the bias
    corrections into the step size and the denominator).

    Args:
        params: parameters (or param-group dicts) to optimise.
        lr: learning rate (CS231n ``learning_rate``), default ``1e-3``.
        betas: ``(beta1, beta2)``, decays of the first and second moment estimates, each in ``[0, 1)``,
            default ``(0.9, 0.999)``.
        eps: added to ``sqrt(vt)``, ``> 0``, default ``1e-8`` (CS231n ``epsilon``).

    Examples::

        >>> w = torch.nn.Parameter(torch.tensor([0.0, 0.0]))
        >>> w.grad = torch.tensor([100.0, -0.01])
        >>> Adam([w], lr=1e-3).step()
        >>> w.data  # bias correction: the first step is lr * sign(dw), whatever the gradient's size
        tensor([-0.0010,  0.0010])
    """

    def __init__(
        self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    def _check_group(self, group: dict[str, Any]) -> None:
        owner = type(self).__name__
        _check_lr(owner, group["lr"])
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}")
        _check_decay(owner, "beta1", betas[0])
        _check_decay(owner, "beta2", betas[1])
        _check_eps(owner, group["eps"])

    def _update(self, param: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        if not state:
            state["t"] = 0
            state["m"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["v"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        beta1, beta2 = group["betas"]
        state["t"] += 1
        t, m, v = state["t"], state["m"], state["v"]
        # m = b1 * m + (1 - b1) * dw;  v = b2 * v + (1 - b2) * dw**2
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        # mt = m / (1 - b1**t);  vt = v / (1 - b2**t);  w -= lr * mt / (sqrt(vt) + eps)
        mt = m / (1 - beta1**t)
        vt = v / (1 - beta2**t)
        param.addcdiv_(mt, vt.sqrt_().add_(group["eps"]), value=-group["lr"])


class LRDecay(ExponentialLR):
    """CS231n Solver's per-epoch learning-rate decay: after each epoch, ``lr *= lr_decay``.

    This is :class:`torch.optim.lr_scheduler.ExponentialLR` with ``gamma = lr_decay``: call ``step()`` once
    at the end of every epoch (Lightning's default ``interval: epoch``), so epoch ``e`` (counting from 0)
    trains with ``lr_0 * lr_decay**e``. ``state_dict()`` / ``load_state_dict()`` are ExponentialLR's.

    Args:
        optimizer: the wrapped optimizer.
        lr_decay: multiplicative factor per epoch in ``(0, 1]``. Default ``0.95``, the value used in the
            Solver's docstring example (the Solver's own default, ``1.0``, means no decay).
        last_epoch: index of the last finished epoch, ``-1`` for a fresh run (as in torch schedulers).
    """

    def __init__(self, optimizer: Optimizer, lr_decay: float = 0.95, last_epoch: int = -1) -> None:
        _check_range(type(self).__name__, "lr_decay", lr_decay, 0.0, 1.0, low_open=True, high_open=False)
        super().__init__(optimizer, gamma=lr_decay, last_epoch=last_epoch)

    @property
    def lr_decay(self) -> float:
        """The per-epoch factor (ExponentialLR's ``gamma``)."""
        return self.gamma
