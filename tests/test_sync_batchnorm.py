"""Synchronised batch norm: ``custom_ops.nn.SyncBatchNorm`` / ``sync_batch_norm`` and the Lightning plugin
``ManualSyncBatchNorm`` that keeps manual layers manual under DDP.

The multi-process tests run 2 CPU processes on the gloo backend (each rank holds part of a batch) and
compare with ONE process running the whole batch through the manual ``BatchNorm1d``/``BatchNorm2d``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from custom_ops import nn as mnn
from custom_ops.sync_batchnorm import SyncBatchNormFunction, sync_batch_norm

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64


def _qualname(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


# ------------------------------------------------------------------------------ single process
def test_module_has_torch_sync_batchnorm_constructor_state_dict_and_repr() -> None:
    torch.manual_seed(0)
    manual = mnn.SyncBatchNorm(5, eps=1e-3, momentum=None)
    builtin = nn.SyncBatchNorm(5, eps=1e-3, momentum=None)
    # not a torch.nn.SyncBatchNorm, which DistributedDataParallel refuses on CPU: a sibling class
    assert not isinstance(manual, nn.SyncBatchNorm), "DDP would refuse the manual SyncBatchNorm on CPU"
    assert isinstance(manual, nn.modules.batchnorm._BatchNorm), "manual SyncBatchNorm should be a _BatchNorm"
    manual_state, builtin_state = manual.state_dict(), builtin.state_dict()
    assert list(manual_state) == list(builtin_state), f"state_dict keys {list(manual_state)} differ"
    for key, value in builtin_state.items():
        assert manual_state[key].shape == value.shape, f"{key}: shape differs from torch.nn.SyncBatchNorm"
        torch.testing.assert_close(manual_state[key], value, msg=f"{key} differs at initialisation")
    assert manual.extra_repr() == builtin.extra_repr(), "extra_repr differs from torch.nn.SyncBatchNorm"
    assert manual.process_group is None, "process_group should default to None (the whole world)"
    builtin.load_state_dict(mnn.SyncBatchNorm(5).state_dict())  # loads both ways
    manual.load_state_dict(nn.BatchNorm2d(5).state_dict())


def test_module_rejects_bad_input_like_torch() -> None:
    bn = mnn.SyncBatchNorm(3)
    with pytest.raises(ValueError, match="expected at least 2D input"):
        bn(torch.randn(4))
    with pytest.raises(ValueError, match="number of input channels should be non-zero"):
        mnn.SyncBatchNorm(0)(torch.randn(4, 0))
    with pytest.raises(ValueError, match="running_mean must have shape"):
        bn(torch.randn(4, 5))


def _model_with_every_kind_of_batch_norm() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        mnn.Linear(4, 6),
        mnn.BatchNorm1d(6),
        nn.Sequential(nn.Unflatten(1, (6, 1, 1)), mnn.BatchNorm2d(6, momentum=None), nn.BatchNorm2d(6)),
        nn.Unflatten(3, (1, 1)),
        nn.BatchNorm3d(6, affine=False),
    )
    model.get_submodule("2.2").eval()
    model.get_submodule("1").bias.requires_grad_(False)
    model(torch.randn(5, 4))  # move the running statistics away from their initial values
    return model


def _batch_norm_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def _assert_same_tensors(before: dict[str, nn.Module], after: dict[str, nn.Module], what: str) -> None:
    """The layers of ``after`` hold the very tensors of ``before`` (shared, not copied), same flags."""
    for name, old in before.items():
        new = after[name]
        for attr in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            assert getattr(new, attr) is getattr(old, attr), f"{what}: {name}.{attr} is not the same tensor"
        for attr in ("num_features", "eps", "momentum", "affine", "track_running_stats", "training"):
            assert getattr(new, attr) == getattr(old, attr), f"{what}: {name}.{attr} not kept"
        if old.affine:
            assert new.bias.requires_grad == old.bias.requires_grad, f"{what}: {name} requires_grad not kept"


def test_convert_keeps_manual_layers_manual_and_builtin_layers_builtin() -> None:
    model = _model_with_every_kind_of_batch_norm()
    before = _batch_norm_layers(model)
    converted = mnn.SyncBatchNorm.convert_sync_batchnorm(model)
    after = _batch_norm_layers(converted)
    kinds = {name: _qualname(layer) for name, layer in after.items()}
    assert kinds == {
        "1": "custom_ops.nn.SyncBatchNorm",
        "2.1": "custom_ops.nn.SyncBatchNorm",
        "2.2": "torch.nn.modules.batchnorm.SyncBatchNorm",
        "4": "torch.nn.modules.batchnorm.SyncBatchNorm",
    }, f"converted layer types: {kinds}"
    _assert_same_tensors(before, after, "convert_sync_batchnorm")
    single = mnn.SyncBatchNorm.convert_sync_batchnorm(mnn.BatchNorm2d(3))
    assert type(single) is mnn.SyncBatchNorm, f"a lone manual layer became {_qualname(single)}"
    again = mnn.SyncBatchNorm.convert_sync_batchnorm(single)
    assert type(again) is mnn.SyncBatchNorm, f"converting a manual SyncBatchNorm gave {_qualname(again)}"


def test_plugin_apply_and_revert_restore_the_original_layer_classes() -> None:
    from lightning_modules.layer_sync import ManualSyncBatchNorm

    model = _model_with_every_kind_of_batch_norm()
    model.append(mnn.SyncBatchNorm(6))  # already synchronised before apply: stays as it is
    classes = {name: type(layer) for name, layer in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = _batch_norm_layers(model)
    plugin = ManualSyncBatchNorm()
    applied = plugin.apply(model)
    assert type(applied.get_submodule("1")) is mnn.SyncBatchNorm, "apply: manual BatchNorm1d not manual sync"
    assert type(applied.get_submodule("2.2")) is nn.SyncBatchNorm, (
        "apply: built-in BatchNorm2d not torch sync"
    )
    with torch.no_grad():
        applied.get_submodule("1").weight.add_(1.0)  # "training" changes the shared parameters
    reverted = plugin.revert(applied)
    reverted_classes = {name: type(layer) for name, layer in reverted.named_modules()}
    assert reverted_classes == classes, f"revert gave {reverted_classes}, expected {classes}"
    _assert_same_tensors(before, _batch_norm_layers(reverted), "apply + revert")
    state["1.weight"] += 1.0
    for key, value in reverted.state_dict().items():
        torch.testing.assert_close(value, state[key], msg=f"apply + revert changed {key}")


def test_trainer_kwargs_with_manual_sync_rewrites_only_the_flag() -> None:
    from lightning.pytorch import Trainer
    from lightning.pytorch.plugins.layer_sync import TorchSyncBatchNorm

    from lightning_modules.layer_sync import ManualSyncBatchNorm, trainer_kwargs_with_manual_sync

    assert trainer_kwargs_with_manual_sync({"max_epochs": 2}) == {"max_epochs": 2}, "no flag: changed"
    off = {"sync_batchnorm": False, "plugins": None}
    assert trainer_kwargs_with_manual_sync(off) == off, "flag False: kwargs changed"
    for plugins, kept in ((None, 0), ("bf16-mixed", 1), (["bf16-mixed"], 1)):
        given = {"sync_batchnorm": True, "plugins": plugins, "max_epochs": 2}
        result = trainer_kwargs_with_manual_sync(given)
        assert given["sync_batchnorm"] is True and given["plugins"] == plugins, "the input dict was modified"
        assert result["sync_batchnorm"] is False and result["max_epochs"] == 2, f"plugins={plugins}: {result}"
        assert len(result["plugins"]) == kept + 1, f"plugins={plugins!r}: got {result['plugins']}"
        assert isinstance(result["plugins"][-1], ManualSyncBatchNorm), f"plugins={plugins!r}: no plugin added"
    mine = ManualSyncBatchNorm()
    result = trainer_kwargs_with_manual_sync({"sync_batchnorm": True, "plugins": mine})
    assert result["plugins"] == [mine], f"an existing ManualSyncBatchNorm was duplicated: {result['plugins']}"
    torch_sync = {"sync_batchnorm": True, "plugins": [TorchSyncBatchNorm()]}
    assert trainer_kwargs_with_manual_sync(torch_sync) == torch_sync, (
        "an explicit TorchSyncBatchNorm overridden"
    )
    trainer = Trainer(
        **trainer_kwargs_with_manual_sync(
            {"sync_batchnorm": True, "strategy": "ddp", "accelerator": "cpu", "devices": 2, "logger": False}
        )
    )
    layer_sync = trainer.strategy._layer_sync
    assert isinstance(layer_sync, ManualSyncBatchNorm), f"the DDP strategy got layer sync {layer_sync!r}"


@pytest.mark.parametrize("momentum", [0.1, None])
def test_single_process_matches_builtin_batch_norm(momentum: float | None) -> None:
    """No process group: outputs, input/parameter gradients, running statistics, then eval outputs."""
    torch.manual_seed(0)
    builtin = nn.BatchNorm2d(3, momentum=momentum).double()
    with torch.no_grad():
        builtin.weight.uniform_(0.5, 1.5)
        builtin.bias.normal_()
    manual = mnn.SyncBatchNorm.convert_sync_batchnorm(mnn.BatchNorm2d(3, momentum=momentum).double())
    manual.load_state_dict(builtin.state_dict())
    for step in range(3):
        x = torch.randn(4, 3, 5, 5, dtype=F64) * 2 + 1
        g = torch.randn(4, 3, 5, 5, dtype=F64)
        results = []
        for module in (manual, builtin):
            xi = x.clone().requires_grad_(True)
            out = module(xi)
            out.backward(g)
            results.append((out, xi.grad, module.weight.grad.clone(), module.bias.grad.clone()))
            module.zero_grad()
        for what, got, ref in zip(("output", "dx", "dweight", "dbias"), *results):
            torch.testing.assert_close(got, ref, msg=f"step {step}: {what} differs from torch.nn.BatchNorm2d")
    for key, value in builtin.state_dict().items():
        torch.testing.assert_close(manual.state_dict()[key], value, msg=f"{key} differs after 3 steps")
    manual.eval()
    builtin.eval()
    x = torch.randn(4, 3, 5, 5, dtype=F64)
    torch.testing.assert_close(manual(x), builtin(x), msg="eval output differs from torch.nn.BatchNorm2d")


class _RecordOps(TorchDispatchMode):
    """Records the name of every aten (and c10d) op that runs."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        self.names.append(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.fixture
def one_process_group():
    """A gloo process group of one process (this one), destroyed afterwards."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.usefixtures("one_process_group")
def test_function_backward_gradcheck_and_fallback_with_one_process() -> None:
    """The autograd Function itself (its all_reduces are identities with one process): gradcheck of the
    hand-written backward in float64, which runs no aten ``*_backward`` kernel (the rule of
    ``test_ops_semantics.py``); the public functional falls back to batch_norm for one process."""
    x = (torch.randn(5, 3, 2, dtype=F64) * 2 + 1).requires_grad_(True)
    w = (torch.rand(3, dtype=F64) + 0.5).requires_grad_(True)
    b = torch.randn(3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w, b: SyncBatchNormFunction.apply(x, w, b, 1e-5, None)[0], (x, w, b)
    ), "gradcheck of SyncBatchNormFunction failed"
    out = SyncBatchNormFunction.apply(x, w, b, 1e-5, None)[0]
    with _RecordOps() as recorder:
        torch.autograd.grad(out.sum(), (x, w, b))
    offending = sorted({name for name in recorder.names if "backward" in name})
    assert "allreduce_.default" in recorder.names, f"backward ran no all_reduce: {recorder.names}"
    assert not offending, f"the hand-written backward called built-in gradient kernels {offending}"
    out, mean, var, *_ = SyncBatchNormFunction.apply(x, None, None, 1e-5, None)
    torch.testing.assert_close(mean, x.mean((0, 2)), msg="batch mean")
    torch.testing.assert_close(var, x.var((0, 2)), msg="batch variance should be the unbiased one")
    rm, rv = torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64)
    ref_rm, ref_rv = rm.clone(), rv.clone()
    out = sync_batch_norm(x, rm, rv, w, b, training=True)
    ref = nn.functional.batch_norm(x, ref_rm, ref_rv, w, b, training=True)
    torch.testing.assert_close(out, ref, msg="one-process sync_batch_norm output")
    torch.testing.assert_close((rm, rv), (ref_rm, ref_rv), msg="one-process sync_batch_norm running stats")


# ------------------------------------------------------------------------------ two processes
@dataclass(frozen=True)
class Case:
    """A global batch split between 2 ranks, through a manual BatchNorm1d/2d converted to SyncBatchNorm."""

    id: str
    layer: type[nn.Module]
    shape: tuple[int, ...]  # the global batch
    split: tuple[int, int]  # samples of rank 0 and rank 1
    kwargs: dict[str, Any] = field(default_factory=dict)
    subgroup: bool = False  # synchronise over an explicit process group instead of the default one
    dtype: torch.dtype = F64  # of the input; parameters are float64, or float32 for a bfloat16 input

    def rows(self, rank: int | None) -> slice:
        """This rank's samples of the global batch (all of them for ``rank=None``, one process)."""
        if rank is None:
            return slice(None)
        return slice(0, self.split[0]) if rank == 0 else slice(self.split[0], sum(self.split))


CASES = (
    Case("2d-equal", mnn.BatchNorm2d, (8, 3, 4, 5), (4, 4)),
    Case(
        "2d-unequal-5-3-momentum-None-subgroup",
        mnn.BatchNorm2d,
        (8, 3, 4, 5),
        (5, 3),
        {"momentum": None},
        True,
    ),
    Case("2d-empty-rank-8-0", mnn.BatchNorm2d, (8, 3, 2, 3), (8, 0)),
    Case("2d-no-affine", mnn.BatchNorm2d, (6, 2, 3, 3), (2, 4), {"affine": False}),
    Case("1d-NC-unequal-5-3", mnn.BatchNorm1d, (8, 5), (5, 3)),
    Case("1d-NCL-3-3", mnn.BatchNorm1d, (6, 4, 7), (3, 3), {"momentum": 0.3}),
    Case("2d-bf16-input", mnn.BatchNorm2d, (8, 3, 4, 4), (4, 4), dtype=torch.bfloat16),
)
STEPS = 2


def _run_case(case: Case, rank: int | None, device: str, group: Any = None) -> dict[str, Any]:
    """Two training steps then one eval forward of ``case``: on this rank's samples through a
    SyncBatchNorm when ``rank`` is given, else on the whole batch through the manual layer itself."""
    torch.manual_seed(0)
    param_dtype = F64 if case.dtype == F64 else torch.float32
    module = case.layer(case.shape[1], **case.kwargs).to(device, param_dtype)
    if module.affine:
        with torch.no_grad():
            module.weight.uniform_(0.5, 1.5)
            module.bias.normal_()
    if rank is not None:
        module = mnn.SyncBatchNorm.convert_sync_batchnorm(module, group)
    rows = case.rows(rank)
    steps = []
    for step in range(STEPS):
        gen = torch.Generator().manual_seed(step)
        x_all = torch.randn(case.shape, generator=gen, dtype=F64) * 2 + 3
        g_all = torch.randn(case.shape, generator=gen, dtype=F64)
        x = x_all[rows].to(device, case.dtype).requires_grad_(True)
        out = module(x)
        out.backward(g_all[rows].to(device, case.dtype))  # rank k's loss: sum(out_k * g_k)
        grads = {name: p.grad.cpu() for name, p in module.named_parameters()}
        steps.append({"out": out.detach().cpu(), "dx": x.grad.cpu(), "grads": grads})
        module.zero_grad(set_to_none=True)
    # forward-mode AD (the hand-written jvp, with its all_reduce), one more training step
    gen = torch.Generator().manual_seed(STEPS)
    x_all = torch.randn(case.shape, generator=gen, dtype=F64) * 2 + 3
    t_all = torch.randn(case.shape, generator=gen, dtype=F64)
    with fwAD.dual_level():
        dual = fwAD.make_dual(x_all[rows].to(device, case.dtype), t_all[rows].to(device, case.dtype))
        jvp = fwAD.unpack_dual(module(dual)).tangent.cpu()
    module.eval()
    x_eval = torch.randn(case.shape, generator=torch.Generator().manual_seed(99), dtype=F64)
    with torch.no_grad():
        eval_out = module(x_eval[rows].to(device, case.dtype)).cpu()
    state = {key: value.cpu() for key, value in module.state_dict().items()}
    return {"type": _qualname(module), "steps": steps, "jvp": jvp, "eval": eval_out, "state": state}


# check name -> (call on every rank, exception type expected)
ERROR_CHECKS: dict[str, tuple[Any, type[Exception]]] = {
    "integer input": (
        lambda rank: sync_batch_norm(torch.ones(4, 3, dtype=torch.long), None, None, training=True),
        TypeError,
    ),
    "1-D input": (lambda rank: sync_batch_norm(torch.randn(4), None, None, training=True), ValueError),
    "5-D input": (
        lambda rank: sync_batch_norm(torch.randn(2, 3, 2, 2, 2), None, None, training=True),
        ValueError,
    ),
    "running_mean shape": (
        lambda rank: sync_batch_norm(torch.randn(4, 3), torch.zeros(4), torch.ones(3), training=True),
        ValueError,
    ),
    "weight dtype": (
        lambda rank: sync_batch_norm(torch.randn(4, 3, dtype=F64), None, None, torch.ones(3), training=True),
        TypeError,
    ),
    "no channels": (lambda rank: sync_batch_norm(torch.randn(4, 0), None, None, training=True), ValueError),
    "one value per channel over the group": (
        lambda rank: sync_batch_norm(torch.randn(1 - rank, 3), None, None, training=True),
        ValueError,
    ),
}


def _error_messages(rank: int) -> dict[str, tuple[str, str]]:
    found = {}
    for name, (call, _) in ERROR_CHECKS.items():
        try:
            call(rank)
            found[name] = ("no exception", "")
        except Exception as error:
            found[name] = (" ".join(cls.__name__ for cls in type(error).__mro__), str(error))  # its types
    return found


def _worker(rank: int, port: int, backend: str, out_dir: str) -> None:
    """One rank: every case (and the error checks on CPU), results saved to ``out_dir/rank{rank}.pt``."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=2, timeout=timedelta(seconds=60))
    try:
        device = f"cuda:{rank}" if backend == "nccl" else "cpu"
        if backend == "nccl":
            torch.cuda.set_device(rank)
        subgroup = dist.new_group([0, 1])
        results: dict[str, Any] = {
            case.id: _run_case(case, rank, device, subgroup if case.subgroup else None)
            for case in CASES
            if case.dtype == F64 or backend == "gloo"  # NCCL on CUDA: float64 cases
        }
        if backend == "gloo":
            results["errors"] = _error_messages(rank)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn_two_ranks(backend: str, out_dir: Path) -> list[dict[str, Any]]:
    mp.spawn(_worker, args=(_free_port(), backend, str(out_dir)), nprocs=2, join=True)
    return [torch.load(out_dir / f"rank{rank}.pt") for rank in range(2)]


@pytest.fixture(scope="module")
def gloo_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Both ranks' results of every case, from one 2-process gloo run shared by the tests below."""
    return _spawn_two_ranks("gloo", tmp_path_factory.mktemp("gloo"))


def _assert_two_ranks_match_one_process(case: Case, ranks: list[dict[str, Any]]) -> None:
    ref = _run_case(case, None, "cpu")
    tol = {} if case.dtype == F64 else {"rtol": 2e-2, "atol": 2e-2}
    for rank, result in enumerate(ranks):
        assert result["type"] == "custom_ops.nn.SyncBatchNorm", f"{case.id}: rank {rank} ran {result['type']}"
    for step, expected in enumerate(ref["steps"]):
        got = [result["steps"][step] for result in ranks]
        where = f"{case.id}, step {step}"
        out = torch.cat([g["out"] for g in got])
        torch.testing.assert_close(out, expected["out"], **tol, msg=f"{where}: output != one process")
        dx = torch.cat([g["dx"] for g in got])
        torch.testing.assert_close(dx, expected["dx"], **tol, msg=f"{where}: input gradient != one process")
        assert set(expected["grads"]) == set(got[0]["grads"]), f"{where}: different parameters"
        for name, grad in expected["grads"].items():
            # rank k's loss is sum(out_k * g_k): the ranks' gradients add up to the one-process gradient
            # of the summed loss (DDP then averages: divide both sides by the world size)
            summed = got[0]["grads"][name] + got[1]["grads"][name]
            torch.testing.assert_close(
                summed, grad, **tol, msg=f"{where}: sum over ranks of d{name} != one-process d{name}"
            )
    jvp = torch.cat([result["jvp"] for result in ranks])
    torch.testing.assert_close(jvp, ref["jvp"], **tol, msg=f"{case.id}: forward-mode tangent != one process")
    for rank, result in enumerate(ranks):
        assert list(result["state"]) == list(ref["state"]), f"{case.id}: rank {rank} state_dict keys"
        for key, value in ref["state"].items():
            torch.testing.assert_close(
                result["state"][key], value, **tol, msg=f"{case.id}: rank {rank} {key} != one process"
            )
    eval_out = torch.cat([result["eval"] for result in ranks])
    torch.testing.assert_close(eval_out, ref["eval"], **tol, msg=f"{case.id}: eval output != one process")


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_two_processes_match_one_process_on_the_whole_batch(
    case: Case, gloo_results: list[dict[str, Any]]
) -> None:
    """Outputs, each rank's input gradients, parameter gradients (summed over ranks), running statistics
    and num_batches_tracked on every rank, and eval outputs of 2 gloo processes = 1 process."""
    _assert_two_ranks_match_one_process(case, [result[case.id] for result in gloo_results])


def test_two_processes_reject_bad_input(gloo_results: list[dict[str, Any]]) -> None:
    """Bad input raises on every rank, before any collective (or, for a too small global batch, after
    the count is all-reduced: on every rank), with the exception type torch uses."""
    for rank, result in enumerate(gloo_results):
        for name, (_, expected) in ERROR_CHECKS.items():
            kind, message = result["errors"][name]
            assert expected.__name__ in kind.split(), (
                f"rank {rank}, {name}: raised {kind} ({message}), not {expected}"
            )
    message = gloo_results[1]["errors"]["one value per channel over the group"][1]
    assert "more than 1 value per channel over the whole group" in message, f"unclear message: {message}"


@pytest.mark.cuda
def test_two_gpus_nccl_match_one_process(tmp_path: Path) -> None:
    if torch.cuda.device_count() < 2 or not dist.is_nccl_available():
        pytest.skip("needs 2 CUDA devices and NCCL")
    ranks = _spawn_two_ranks("nccl", tmp_path)
    for case in CASES:
        if case.dtype == F64:
            _assert_two_ranks_match_one_process(case, [result[case.id] for result in ranks])


# ------------------------------------------------------------------------------ Lightning DDP
_DDP_SCRIPT = """
import sys

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from custom_ops import nn as mnn
from lightning_modules.layer_sync import trainer_kwargs_with_manual_sync

STEPS, BATCH = 3, 8  # global batch of 8 per step, 4 on each rank


def data():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(STEPS * BATCH, 6, generator=gen, dtype=torch.float64), torch.randint(
        0, 3, (STEPS * BATCH,), generator=gen
    )


def net():
    torch.manual_seed(0)
    return nn.Sequential(mnn.Linear(6, 8), mnn.BatchNorm1d(8), mnn.ReLU(), mnn.Linear(8, 3)).double()


class Module(LightningModule):
    def __init__(self):
        super().__init__()
        self.net = net()
        self.seen = set()

    def training_step(self, batch, batch_idx):
        self.seen.add(f"{type(self.net[1]).__module__}.{type(self.net[1]).__qualname__}")
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)

    def train_dataloader(self):
        x, y = data()
        half = BATCH // 2
        mine = [s * BATCH + self.global_rank * half + i for s in range(STEPS) for i in range(half)]
        return DataLoader(TensorDataset(x[mine], y[mine]), batch_size=half)


if __name__ == "__main__":
    model = Module()
    kwargs = dict(
        strategy="ddp", accelerator="cpu", devices=2, sync_batchnorm=True, max_epochs=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        use_distributed_sampler=False,
    )
    trainer = Trainer(**trainer_kwargs_with_manual_sync(kwargs))
    trainer.fit(model)
    after = f"{type(model.net[1]).__module__}.{type(model.net[1]).__qualname__}"
    result = {"seen": sorted(model.seen), "after": after, "state": model.net.state_dict()}
    torch.save(result, f"{sys.argv[1]}/rank{trainer.global_rank}.pt")
"""


def test_lightning_ddp_two_processes_train_like_one_process(tmp_path: Path) -> None:
    """``Trainer(strategy="ddp", devices=2, sync_batchnorm=True)``, rewritten by
    ``trainer_kwargs_with_manual_sync``: the manual BatchNorm1d trains as the manual SyncBatchNorm, is
    reverted afterwards, and the weights and running statistics after 3 SGD steps equal one process's on
    the whole batches."""
    script = tmp_path / "ddp_script.py"
    script.write_text(textwrap.dedent(_DDP_SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, f"DDP run failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    sys.path.insert(0, str(tmp_path))
    try:
        import ddp_script
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("ddp_script", None)
    x, y = ddp_script.data()
    net = ddp_script.net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    batch = ddp_script.BATCH
    for step in range(ddp_script.STEPS):
        rows = slice(step * batch, (step + 1) * batch)
        nn.functional.cross_entropy(net(x[rows]), y[rows]).backward()
        optimizer.step()
        optimizer.zero_grad()
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["seen"] == ["custom_ops.nn.SyncBatchNorm"], f"rank {rank} trained with {result['seen']}"
        assert result["after"] == "custom_ops.nn.BatchNorm1d", f"rank {rank}: reverted to {result['after']}"
        for key, value in net.state_dict().items():
            torch.testing.assert_close(
                result["state"][key], value, msg=f"rank {rank}: {key} after DDP != one process"
            )
