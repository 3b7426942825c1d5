"""The TransferLearning fine-tuning schedules, checkpoints and the transfer configs."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torchvision
from cifar_fixtures import write_npz
from lite0 import HAS_LITE0, LITE0_MISSING
from torch.utils.data import DataLoader, TensorDataset

from lightning_modules.data import CIFAR10DataModule
from lightning_modules.transfer import GradualUnfreezing, TransferLearning
from torch_cs231n.interop.function_mode import manual_functions_of
from torch_cs231n.interop.pretrained import (
    WeightsMismatchError,
)
from torch_cs231n.interop.swap import count_layers, manual_share

REPO = Path(__file__).resolve().parents[1]


def _loader(n: int = 8, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=4)


def _trainer(max_epochs: int = 1, **kwargs) -> pl.Trainer:
    """A quiet CPU trainer: one training and one validation batch per epoch unless told otherwise."""
    kwargs.setdefault("limit_train_batches", 1)
    return pl.Trainer(
        max_epochs=max_epochs,
        limit_val_batches=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def _resnet(**kwargs) -> TransferLearning:
    """resnet18 with random weights (asked for explicitly), 32x32 inputs: fast."""
    torch.manual_seed(0)
    return TransferLearning("resnet18", weights=None, resolution=32, **kwargs)


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="finetuning must be one of"):
        _resnet(finetuning="freeze_all")
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3, H, W\)"):
        _resnet()(torch.rand(2, 1, 32, 32))


def test_deprecated_strategy_keyword_is_finetuning() -> None:
    """``strategy``, the old name of ``finetuning``, works for one release: a FutureWarning naming the new
    key; the hyper-parameters record ``finetuning``; with the new keyword too, a TypeError."""
    with pytest.warns(FutureWarning, match=r"'strategy' is deprecated.*--model\.init_args\.finetuning"):
        model = _resnet(strategy="full")
    assert model.finetuning == "full" and all(p.requires_grad for p in model.parameters())
    assert model.hparams.finetuning == "full" and "strategy" not in model.hparams, model.hparams
    with pytest.raises(TypeError, match="give only finetuning"):
        _resnet(finetuning="full", strategy="gradual")
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="finetuning must be one of"):
        _resnet(strategy="freeze_all")


@pytest.mark.parametrize("stage", ["fit", "validate", "predict"])
def test_a_data_module_that_normalises_too_is_refused(stage: str, tmp_path: Path) -> None:
    """The model normalises with the weights' mean/std; a normalising data module would do it twice."""
    npz = write_npz(tmp_path / "c.npz", n_train=24, n_test=8)
    data = CIFAR10DataModule(npz_path=str(npz), val_size=8, batch_size=4, pixel_normalization="per_channel")
    run = {"fit": _trainer().fit, "validate": _trainer().validate, "predict": _trainer().predict}[stage]
    with pytest.raises(
        ValueError,
        match=r"TransferLearning \(--model\.class_path lightning_modules\.transfer\.TransferLearning\).*"
        r"--data\.init_args\.pixel_normalization per_channel\): set --data\.init_args\.pixel_normalization "
        r"none",
    ):
        run(_resnet(), datamodule=data)
    accepted = CIFAR10DataModule(npz_path=str(npz), val_size=8, batch_size=4, pixel_normalization="none")
    (metrics,) = _trainer().validate(_resnet(), datamodule=accepted)
    assert "val/acc" in metrics, f"pixel_normalization none must be accepted, got the metrics {metrics}"


# ------------------------------------------------------------------------------------------ finetuning
def test_feature_extraction_freezes_backbone_and_its_batchnorm() -> None:
    model = _resnet(finetuning="feature_extraction")
    before = _snapshot(model)
    model.train()  # what Lightning does every epoch
    assert not model.net.layer1[0].bn1.training, "frozen BatchNorm must stay in eval mode"
    _trainer().fit(model, _loader(), _loader())
    after = model.state_dict()
    for name, value in before.items():
        changed = not torch.equal(after[name], value)
        assert changed == name.startswith("net.fc."), f"{name}: changed={changed}"
    model.zero_grad(set_to_none=True)
    x, y = next(iter(_loader()))
    model.loss(model(x), y).backward()
    for name, p in model.net.named_parameters():
        assert (p.grad is not None) == name.startswith("fc."), f"{name}: has grad {p.grad is not None}"


def test_last_blocks_train_only_the_deepest_blocks() -> None:
    model = _resnet(finetuning="last_blocks", trainable_blocks=1)
    before = _snapshot(model)
    _trainer().fit(model, _loader(), _loader())
    after = model.state_dict()
    for name, value in before.items():
        changed = not torch.equal(after[name], value)
        trained = name.startswith(("net.fc.", "net.layer4.1."))  # the head and the last block
        assert changed == trained, f"{name}: changed={changed}, expected {trained}"


def test_full_finetuning_uses_a_lower_backbone_learning_rate() -> None:
    model = _resnet(finetuning="full", backbone_lr_factor=0.1)
    optimizer = model.configure_optimizers()
    head, backbone = optimizer.param_groups
    assert backbone["lr"] == pytest.approx(0.1 * head["lr"])
    assert len(head["params"]) == 2 and len(backbone["params"]) == len(list(model.parameters())) - 2


def test_gradual_unfreezing_at_the_configured_epoch() -> None:
    model = _resnet(finetuning="gradual", trainable_blocks=2, unfreeze_at_epoch=1)
    (callback,) = model.configure_callbacks()
    assert isinstance(callback, GradualUnfreezing)
    before = _snapshot(model)
    seen: list[tuple[int, int, bool]] = []

    class Spy(pl.Callback):
        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            groups = len(trainer.optimizers[0].param_groups)
            seen.append((trainer.current_epoch, groups, pl_module.net.layer4[1].bn1.training))

    _trainer(max_epochs=2, callbacks=[Spy()]).fit(model, _loader(), _loader())
    assert seen == [(0, 1, False), (1, 2, True)], f"(epoch, param groups, layer4.1 BN training): {seen}"
    head_lr, block_lr = (g["lr"] for g in model.trainer.optimizers[0].param_groups)
    assert block_lr == pytest.approx(0.1 * head_lr)
    after = model.state_dict()
    assert not torch.equal(after["net.layer4.1.conv1.weight"], before["net.layer4.1.conv1.weight"])
    assert not torch.equal(after["net.layer4.0.conv1.weight"], before["net.layer4.0.conv1.weight"])
    assert torch.equal(after["net.layer3.1.conv1.weight"], before["net.layer3.1.conv1.weight"])
    assert torch.equal(after["net.layer3.1.bn1.running_mean"], before["net.layer3.1.bn1.running_mean"])


def test_gradual_unfreezing_group_follows_the_lr_schedule() -> None:
    """Groups added from epoch 1 on keep lr = factor * head lr under a CosineAnnealingLR created before them,
    also past T_max, where the scheduler reads its per-group ``base_lrs``."""
    model = _resnet(
        finetuning="gradual",
        unfreeze_at_epoch=1,
        backbone_lr_factor=0.1,
        lr_scheduler=lambda optimizer: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=2),
    )
    seen: list[tuple[int, float, float]] = []  # (epoch, added group's lr, 0.1 * head lr)

    class Spy(pl.Callback):
        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            head, *added = trainer.optimizers[0].param_groups
            seen.extend((trainer.current_epoch, group["lr"], 0.1 * head["lr"]) for group in added)

    _trainer(max_epochs=5, callbacks=[Spy()]).fit(model, _loader(), _loader())
    assert {epoch for epoch, _, _ in seen} == {2, 3, 4}, f"(epoch, lr, expected lr) seen: {seen}"
    for epoch, lr, expected in seen:
        assert lr == pytest.approx(expected, abs=1e-12), f"epoch {epoch}: added group lr {lr} != {expected}"


@pytest.mark.parametrize("ops", ["builtin", "manual"])
def test_channels_last_gives_the_same_model(ops: str) -> None:
    """``channels_last`` changes only the memory layout: same logits, same gradients, NHWC weights."""
    default, nhwc = (
        _resnet(ops=ops, finetuning="full"),
        _resnet(ops=ops, finetuning="full", channels_last=True),
    )
    conv = nhwc.net.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last), "conv weight not in channels_last"
    x = next(iter(_loader()))[0]
    outs = []
    for model in (default, nhwc):
        out = model(x)
        out.square().sum().backward()
        outs.append((out, model.net.conv1.weight.grad))
    (out, grad), (ref, ref_grad) = outs
    # only the summation order differs: float32 rounding, relative to the values' scale
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4, msg=f"{ops}: channels_last changes the logits")
    scale = float(ref_grad.abs().max())
    torch.testing.assert_close(
        grad, ref_grad, rtol=1e-4, atol=1e-4 * scale, msg=f"{ops}: channels_last changes conv1's gradient"
    )


def test_manual_ops_route_the_functional_calls_of_the_backbone_forward() -> None:
    """MobileNetV2's forward calls ``F.adaptive_avg_pool2d`` itself: with ``ops="manual"`` it runs on the
    manual op too (``attach_manual_functions`` after ``to_manual``), so every layer call is manual."""
    torch.manual_seed(0)
    manual = TransferLearning("mobilenet_v2", weights=None, resolution=32, finetuning="full", ops="manual")
    assert manual_functions_of(manual.net) is not None, "ops='manual' did not attach ManualFunctions"
    share = manual_share(manual.net, next(iter(_loader()))[0])
    assert share.manual_calls.get("adaptive_avg_pool2d") == 1 and share.layer_calls == 1.0, str(share)
    builtin = TransferLearning("mobilenet_v2", weights=None, resolution=32, ops="builtin")
    assert manual_functions_of(builtin.net) is None, "ops='builtin' attached ManualFunctions"


@pytest.mark.parametrize("ops", ["builtin", "manual"])
def test_checkpoint_round_trip(tmp_path: Path, ops: str) -> None:
    model = _resnet(finetuning="full", ops=ops)
    trainer = _trainer()
    trainer.fit(model, _loader(), _loader())
    path = tmp_path / "finetuned.ckpt"
    trainer.save_checkpoint(path)
    restored = TransferLearning.load_from_checkpoint(path, weights_only=True)
    assert restored.hparams.ops == ops and count_layers(restored.net) == count_layers(model.net)
    x = next(iter(_loader(seed=1)))[0]
    model.eval()
    restored.eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(x), model(x), msg="logits differ after checkpoint round trip")


def test_second_stage_starts_from_a_checkpoint(tmp_path: Path) -> None:
    """``init_weights`` starts a new fit from a fine-tuned checkpoint's weights; a wrong one is refused."""
    model = _resnet(finetuning="full")
    trainer = _trainer()
    trainer.fit(model, _loader(), _loader())
    path = tmp_path / "stage1.ckpt"
    trainer.save_checkpoint(path)
    stage2 = _resnet(finetuning="full", ops="manual", init_weights=str(path))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(
            stage2.state_dict()[key], value, msg=f"{key} not loaded from the checkpoint"
        )
    with pytest.raises(WeightsMismatchError, match="shapes"):
        _resnet(num_classes=5, init_weights=str(path))


# ------------------------------------------------------------------------------------------- configs
CONFIGS = {
    "transfer_resnet18.yaml": ["--trainer.accelerator", "cpu", "--trainer.precision", "32-true"],
    "transfer_efficientnet_lite0.yaml": [],
    "transfer_feature_extraction_cpu.yaml": [],
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_config_runs_one_tiny_fit(config: str, tmp_path: Path, monkeypatch) -> None:
    if "resnet18" not in config and not HAS_LITE0:
        pytest.skip(LITE0_MISSING)
    from lightning_modules.cli import run_lightning

    rng = np.random.default_rng(0)
    npz = tmp_path / "tiny_cifar.npz"
    np.savez(
        npz,
        x_train=rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8),
        y_train=rng.integers(0, 10, 24).astype(np.int64),
    )
    extra = list(CONFIGS[config])
    if "resnet18" in config:  # offline: a local weights file stands in for the ImageNet download
        weights = tmp_path / "resnet18.pth"
        torch.save(torchvision.models.resnet18().state_dict(), weights)
        extra += ["--model.init_args.weights_path", str(weights)]
    monkeypatch.chdir(tmp_path)
    cli = run_lightning(
        [
            "fit",
            "--config",
            str(REPO / "configs" / config),
            "--trainer.fast_dev_run",
            "1",
            "--model.init_args.resolution",
            "32",
            "--data.init_args.npz_path",
            str(npz),
            "--data.init_args.download",
            "false",
            "--data.init_args.val_size",
            "8",
            "--data.init_args.batch_size",
            "4",
            "--data.init_args.num_workers",
            "0",
            *extra,
        ]
    )
    assert isinstance(cli.model, TransferLearning)
    assert cli.trainer.state.finished, f"{config}: fit did not finish"
    assert cli.trainer.global_step == 1, (
        f"{config}: expected one training step, got {cli.trainer.global_step}"
    )
