"""The CS231n update rules against their ``torch.optim`` twins, a literal NumPy transcription of CS231n's
``optim.py``, and themselves across a ``state_dict`` save/load."""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from torch_cs231n.nets.optim import SGD, Adagrad, Adam, LRDecay, RMSProp, SGDMomentum

# ---------------------------------------------------------------------------------------------------------
# CS231n assignment 2 optim.py, transcribed literally (Adagrad from the lecture 7 slide, in the same style).
# ---------------------------------------------------------------------------------------------------------


def np_sgd(w: np.ndarray, dw: np.ndarray, config: dict | None = None) -> tuple[np.ndarray, dict]:
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    w -= config["learning_rate"] * dw
    return w, config


def np_sgd_momentum(w: np.ndarray, dw: np.ndarray, config: dict | None = None) -> tuple[np.ndarray, dict]:
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    v = config.get("velocity", np.zeros_like(w))
    v = config["momentum"] * v - config["learning_rate"] * dw
    next_w = w + v
    config["velocity"] = v
    return next_w, config


def np_rmsprop(w: np.ndarray, dw: np.ndarray, config: dict | None = None) -> tuple[np.ndarray, dict]:
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("cache", np.zeros_like(w))
    config["cache"] = config["decay_rate"] * config["cache"] + (1 - config["decay_rate"]) * dw**2
    next_w = w - config["learning_rate"] * dw / (np.sqrt(config["cache"]) + config["epsilon"])
    return next_w, config


def np_adagrad(w: np.ndarray, dw: np.ndarray, config: dict | None = None) -> tuple[np.ndarray, dict]:
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("cache", np.zeros_like(w))
    config["cache"] += dw * dw
    next_w = w - config["learning_rate"] * dw / (np.sqrt(config["cache"]) + config["epsilon"])
    return next_w, config


def np_adam(w: np.ndarray, dw: np.ndarray, config: dict | None = None) -> tuple[np.ndarray, dict]:
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("m", np.zeros_like(w))
    config.setdefault("v", np.zeros_like(w))
    config.setdefault("t", 0)
    config["t"] += 1
    config["m"] = config["beta1"] * config["m"] + (1 - config["beta1"]) * dw
    mt = config["m"] / (1 - config["beta1"] ** config["t"])
    config["v"] = config["beta2"] * config["v"] + (1 - config["beta2"]) * (dw**2)
    vt = config["v"] / (1 - config["beta2"] ** config["t"])
    next_w = w - config["learning_rate"] * mt / (np.sqrt(vt) + config["epsilon"])
    return next_w, config


# ---------------------------------------------------------------------------------------------------------
# The rules under test: ours with non-default hyper-parameters, and the torch.optim twin with the same ones.
# ---------------------------------------------------------------------------------------------------------

OptFactory = Callable[[list[Tensor]], torch.optim.Optimizer]

RULES: dict[str, tuple[OptFactory, OptFactory]] = {
    "sgd": (lambda p: SGD(p, lr=0.05), lambda p: torch.optim.SGD(p, lr=0.05)),
    "sgd_momentum": (
        lambda p: SGDMomentum(p, lr=0.05, momentum=0.8),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, dampening=0, nesterov=False),
    ),
    "rmsprop": (
        lambda p: RMSProp(p, lr=0.01, decay_rate=0.9, eps=1e-6),
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-6),
    ),
    "adagrad": (
        lambda p: Adagrad(p, lr=0.1, eps=1e-6),
        lambda p: torch.optim.Adagrad(p, lr=0.1, eps=1e-6, lr_decay=0, initial_accumulator_value=0),
    ),
    "adam": (
        lambda p: Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6),
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    ),
}

NUMPY_RULES: dict[str, tuple[type[torch.optim.Optimizer], Callable]] = {
    "sgd": (SGD, np_sgd),
    "sgd_momentum": (SGDMomentum, np_sgd_momentum),
    "rmsprop": (RMSProp, np_rmsprop),
    "adagrad": (Adagrad, np_adagrad),
    "adam": (Adam, np_adam),
}

# Our state key -> the CS231n config key holding the same quantity.
STATE_KEYS = {"velocity": "velocity", "cache": "cache", "m": "m", "v": "v", "t": "t"}

_X = torch.linspace(-1.0, 1.0, 24, dtype=torch.float64).reshape(6, 4)


def _init_params() -> list[Tensor]:
    """A weight (4, 3) and a bias (3,), float64, the same on every call."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, 3, dtype=torch.float64, generator=gen)
    b = torch.randn(3, dtype=torch.float64, generator=gen)
    return [w.requires_grad_(), b.requires_grad_()]


def _loss(params: list[Tensor]) -> Tensor:
    """A small smooth non-quadratic problem: sum(tanh(X W + b)^2) + 0.1 * sum(W^4)."""
    w, b = params
    return (torch.tanh(_X @ w + b) ** 2).sum() + 0.1 * (w**4).sum()


def _train(
    opt: torch.optim.Optimizer,
    params: list[Tensor],
    steps: int,
    sched: torch.optim.lr_scheduler.LRScheduler | None = None,
    steps_per_epoch: int = 5,
) -> list[Tensor]:
    """Run ``steps`` steps (stepping ``sched`` every ``steps_per_epoch``); return the flat params per step."""
    trajectory = []
    for i in range(steps):
        opt.zero_grad()
        _loss(params).backward()
        opt.step()
        trajectory.append(torch.cat([p.detach().flatten() for p in params]))
        if sched is not None and (i + 1) % steps_per_epoch == 0:
            sched.step()
    return trajectory


@pytest.mark.parametrize("rule", list(RULES))
def test_same_trajectory_as_torch_twin(rule: str) -> None:
    ours_factory, torch_factory = RULES[rule]
    ours_params, torch_params = _init_params(), _init_params()
    ours = _train(ours_factory(ours_params), ours_params, 50)
    twin = _train(torch_factory(torch_params), torch_params, 50)
    moved = (ours[-1] - ours[0]).abs().max().item()
    assert moved > 0.1, f"{rule}: parameters barely moved ({moved:.3g}); the comparison would be vacuous"
    for step, (a, b) in enumerate(zip(ours, twin)):
        torch.testing.assert_close(
            a, b, rtol=1e-12, atol=1e-12, msg=lambda m, s=step: f"{rule} vs torch.optim at step {s}: {m}"
        )


@pytest.mark.parametrize("rule", list(NUMPY_RULES))
def test_matches_cs231n_numpy_with_defaults(rule: str) -> None:
    """Default hyper-parameters and the state after each of 3 steps equal the CS231n functions'."""
    cls, np_rule = NUMPY_RULES[rule]
    rng = np.random.default_rng(1)
    w_np = rng.standard_normal((3, 5))
    grads = [rng.standard_normal((3, 5)) for _ in range(3)]
    w = torch.tensor(w_np, requires_grad=True)
    opt = cls([w])
    config = None
    for step, dw in enumerate(grads):
        w_np, config = np_rule(w_np.copy(), dw, config)
        w.grad = torch.tensor(dw)
        opt.step()
        np.testing.assert_allclose(
            w.detach().numpy(), w_np, rtol=1e-13, atol=1e-15, err_msg=f"{rule}: weights at step {step}"
        )
        state = opt.state[w]
        assert set(state) <= set(STATE_KEYS), f"{rule}: unexpected state keys {sorted(state)}"
        for key, value in state.items():
            expected = config[STATE_KEYS[key]]
            got = value.numpy() if isinstance(value, Tensor) else value
            np.testing.assert_allclose(
                got, expected, rtol=1e-13, err_msg=f"{rule}: state {key!r} at step {step}"
            )


def test_sgd_momentum_differs_from_torch_when_lr_changes() -> None:
    """With a decaying lr, CS231n's velocity keeps old-rate steps; torch rescales its buffer by the new lr."""
    ours_params, torch_params = _init_params(), _init_params()
    ours_opt = SGDMomentum(ours_params, lr=0.05, momentum=0.8)
    torch_opt = torch.optim.SGD(torch_params, lr=0.05, momentum=0.8)
    ours = _train(ours_opt, ours_params, 10, LRDecay(ours_opt, lr_decay=0.5))
    twin = _train(torch_opt, torch_params, 10, LRDecay(torch_opt, lr_decay=0.5))
    torch.testing.assert_close(
        ours[4], twin[4], rtol=1e-12, atol=1e-12, msg="must agree while lr is constant"
    )
    assert not torch.allclose(ours[5], twin[5], rtol=1e-6, atol=0), "expected a difference after lr decays"

    # Ours follows the CS231n function with learning_rate decayed like the Solver does.
    w_np = [p.detach().numpy().copy() for p in _init_params()]
    configs: list[dict[str, Any]] = [{"learning_rate": 0.05, "momentum": 0.8} for _ in w_np]
    for i in range(10):
        params = [torch.tensor(w, requires_grad=True) for w in w_np]
        _loss(params).backward()
        w_np = [np_sgd_momentum(w, p.grad.numpy(), c)[0] for w, p, c in zip(w_np, params, configs)]
        np.testing.assert_allclose(np.concatenate([w.ravel() for w in w_np]), ours[i].numpy(), rtol=1e-12)
        if (i + 1) % 5 == 0:
            for c in configs:
                c["learning_rate"] *= 0.5


@pytest.mark.parametrize("rule", list(RULES))
def test_state_dict_resume_is_bit_for_bit(rule: str, tmp_path: Path) -> None:
    factory = RULES[rule][0]
    params = _init_params()
    opt = factory(params)
    full = _train(opt, params, 20, LRDecay(opt, lr_decay=0.7))

    params = _init_params()
    opt = factory(params)
    sched = LRDecay(opt, lr_decay=0.7)
    _train(opt, params, 12, sched)  # stop mid-epoch: 2 full epochs + 2 steps
    checkpoint = tmp_path / "ckpt.pt"
    torch.save(
        {
            "params": [p.detach() for p in params],
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
        },
        checkpoint,
    )

    saved = torch.load(checkpoint, weights_only=True)
    params = [p.clone().requires_grad_() for p in saved["params"]]
    opt = factory(params)
    sched = LRDecay(opt, lr_decay=0.7)
    opt.load_state_dict(saved["optimizer"])
    sched.load_state_dict(saved["scheduler"])
    # Steps 12..19 of the resumed run; the epoch boundary is at absolute step 15.
    resumed = []
    for i in range(12, 20):
        opt.zero_grad()
        _loss(params).backward()
        opt.step()
        resumed.append(torch.cat([p.detach().flatten() for p in params]))
        if (i + 1) % 5 == 0:
            sched.step()
    for i, (a, b) in enumerate(zip(full[12:], resumed), start=12):
        assert torch.equal(a, b), f"{rule}: resumed run differs from the uninterrupted one at step {i}"


def test_lr_decay_matches_exponential_lr_and_solver() -> None:
    lr0, decay, epochs = 0.1, 0.95, 6
    ours_opt = SGD([torch.zeros(1, requires_grad=True)], lr=lr0)
    ref_opt = SGD([torch.zeros(1, requires_grad=True)], lr=lr0)
    ours, ref = (
        LRDecay(ours_opt, lr_decay=decay),
        torch.optim.lr_scheduler.ExponentialLR(ref_opt, gamma=decay),
    )
    solver_lr = lr0  # CS231n Solver: after each epoch, config["learning_rate"] *= lr_decay
    for epoch in range(epochs):
        assert ours_opt.param_groups[0]["lr"] == ref_opt.param_groups[0]["lr"] == solver_lr, f"epoch {epoch}"
        ours_opt.step()  # an epoch of training (no gradients: parameters stay put)
        ref_opt.step()
        ours.step()
        ref.step()
        solver_lr *= decay
    assert ours.get_last_lr() == ref.get_last_lr()
    assert ours.lr_decay == decay
    assert LRDecay(SGD([torch.zeros(1, requires_grad=True)])).lr_decay == 0.95, "documented default"


def test_closure_loss_is_returned_and_frozen_params_are_skipped() -> None:
    params = _init_params()
    frozen = torch.ones(2, dtype=torch.float64, requires_grad=True)
    opt = Adam([*params, frozen], lr=0.01)
    evaluated = []

    def closure() -> Tensor:
        opt.zero_grad()
        loss = _loss(params)
        loss.backward()
        evaluated.append(loss)
        return loss

    returned = opt.step(closure)
    assert len(evaluated) == 1 and returned is evaluated[0], "step(closure) must return the closure's loss"
    assert opt.state[params[0]]["t"] == 1, "the closure's gradients must have been used for one update"
    assert frozen.grad is None and torch.equal(frozen, torch.ones(2, dtype=torch.float64))
    assert frozen not in opt.state, "a parameter without grad must not get optimizer state"


def test_param_groups_use_their_own_lr() -> None:
    a = torch.zeros(2, requires_grad=True)
    b = torch.zeros(2, requires_grad=True)
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    a.grad = torch.ones(2)
    b.grad = torch.ones(2)
    opt.step()
    assert torch.equal(a.detach(), torch.full((2,), -0.1)), a
    assert torch.equal(b.detach(), torch.full((2,), -1.0)), b


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda p: SGD(p, lr=-0.1), ValueError, r"SGD: lr must be in \[0"),
        (lambda p: SGD(p, lr="0.1"), TypeError, r"SGD: lr must be a float, got str"),
        (lambda p: SGD(p, lr=float("nan")), ValueError, r"SGD: lr must be in"),
        (
            lambda p: SGDMomentum(p, momentum=1.0),
            ValueError,
            r"SGDMomentum: momentum must be in \[0.0, 1.0\)",
        ),
        (lambda p: RMSProp(p, decay_rate=-0.5), ValueError, r"RMSProp: decay_rate must be in \[0.0, 1.0\)"),
        (lambda p: RMSProp(p, eps=0.0), ValueError, r"RMSProp: eps must be in \(0.0"),
        (lambda p: Adagrad(p, eps=-1e-8), ValueError, r"Adagrad: eps must be in \(0.0"),
        (lambda p: Adam(p, betas=(0.9, 1.0)), ValueError, r"Adam: beta2 must be in \[0.0, 1.0\)"),
        (lambda p: Adam(p, betas=(0.9,)), ValueError, r"Adam: betas must be a pair"),
        (lambda p: SGD([{"params": p, "lr": -1.0}]), ValueError, r"SGD: lr must be in"),
        (lambda p: LRDecay(SGD(p), lr_decay=0.0), ValueError, r"LRDecay: lr_decay must be in \(0.0, 1.0\]"),
        (lambda p: LRDecay(SGD(p), lr_decay=1.5), ValueError, r"LRDecay: lr_decay must be in \(0.0, 1.0\]"),
    ],
)
def test_bad_hyper_parameters_raise(make: Callable, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make([torch.zeros(2, requires_grad=True)])


def test_sparse_and_complex_gradients_are_rejected() -> None:
    emb = torch.nn.Embedding(4, 2, sparse=True)
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match="RMSProp does not support sparse gradients"):
        RMSProp(emb.parameters()).step()
    z = torch.zeros(2, dtype=torch.complex64, requires_grad=True)
    z.grad = torch.ones_like(z)
    with pytest.raises(RuntimeError, match="Adam supports real parameters only"):
        Adam([z]).step()


@pytest.mark.slow
def test_lightning_cli_yaml_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The classes work as LightningCLI ``optimizer`` / ``lr_scheduler`` class_paths in a YAML config."""
    from lightning.pytorch import LightningModule
    from lightning.pytorch.cli import LightningCLI
    from torch.utils.data import DataLoader, TensorDataset

    class Tiny(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
            x, y = batch
            return torch.nn.functional.mse_loss(self.layer(x), y)

        def train_dataloader(self) -> DataLoader:
            return DataLoader(TensorDataset(torch.randn(8, 2), torch.randn(8, 1)), batch_size=4)

    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
seed_everything: 0
trainer:
  max_epochs: 3
  accelerator: cpu
  logger: false
  enable_checkpointing: false
  enable_progress_bar: false
  enable_model_summary: false
  default_root_dir: {tmp_path}
optimizer:
  class_path: torch_cs231n.nets.optim.Adam
  init_args: {{lr: 0.01, betas: [0.8, 0.99]}}
lr_scheduler:
  class_path: torch_cs231n.nets.optim.LRDecay
  init_args: {{lr_decay: 0.5}}
"""
    )
    monkeypatch.setattr(sys, "argv", ["cs231n"])  # pytest's own arguments are not for the CLI
    cli = LightningCLI(Tiny, run=False, save_config_callback=None, args=["--config", str(config)])
    cli.trainer.fit(cli.model)
    opt = cli.trainer.optimizers[0]
    assert type(opt) is Adam and opt.param_groups[0]["betas"] == (0.8, 0.99), opt
    (sched_config,) = cli.trainer.lr_scheduler_configs
    assert type(sched_config.scheduler) is LRDecay and sched_config.interval == "epoch"
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**3), "LRDecay must step once per epoch"
