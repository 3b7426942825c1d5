"""The ``cs231n`` CLI: every config fits, resume, validate/test/predict from a checkpoint, plot, bench."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from cifar_fixtures import write_npz

from lightning_modules.cli import main, run_lightning

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def tiny_args(config: Path, npz: Path, save_dir: Path, *extra: str) -> list[str]:
    """Overrides shrinking a config to a few batches of generated data, on CPU, logging under save_dir."""
    return [
        f"--config={config}",
        f"--data.init_args.npz_path={npz}",
        "--data.init_args.val_size=16",
        "--data.init_args.batch_size=8",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
        "--trainer.accelerator=cpu",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.logger.init_args.save_dir={save_dir}",
        *extra,
    ]


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    return write_npz(tmp_path_factory.mktemp("data") / "cifar_small.npz", n_train=64, n_test=16)


def offline_cpu_args(config: Path) -> list[str]:
    """Overrides that let any config run here: CPU precision, no worker processes, and for pretrained
    (transfer) models random weights at the smallest resolution, so no download and little compute."""
    model_args = (yaml.safe_load(config.read_text()).get("model") or {}).get("init_args") or {}
    args = ["--trainer.precision=32-true", "--trainer.devices=1", "--data.init_args.num_workers=0"]
    if "weights" in model_args:
        args.append("--model.init_args.weights=null")
    if "resolution" in model_args:
        args.append("--model.init_args.resolution=32")
    return args


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_config_runs_a_tiny_fit(config, npz, tmp_path):
    cli = run_lightning(["fit", *tiny_args(config, npz, tmp_path, *offline_cpu_args(config))])
    steps = cli.trainer.global_step
    assert steps == 2, f"{config.name}: {steps} optimizer steps, expected 2"
    assert {"train/loss_epoch", "val/acc", "val/loss"} <= set(cli.trainer.callback_metrics)
    assert Path(cli.trainer.checkpoint_callback.last_model_path).is_file(), "no last.ckpt written"
    assert Path(cli.trainer.checkpoint_callback.best_model_path).is_file(), "no best checkpoint written"


def test_fit_without_a_logger(npz, tmp_path):
    """``--trainer.logger false`` trains and checkpoints; only the learning-rate log is skipped."""
    config = next(c for c in CONFIGS if c.name == "two_layer_tuned.yaml")
    args = tiny_args(
        config, npz, tmp_path, "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}"
    )
    cli = run_lightning(["fit", *args])
    assert cli.trainer.global_step == 2 and not cli.trainer.loggers, "expected 2 steps and no logger"
    assert Path(cli.trainer.checkpoint_callback.last_model_path).is_file(), "no last.ckpt written"


@pytest.fixture(scope="module")
def fitted(npz, tmp_path_factory) -> tuple[Path, Path, Path]:
    """One tiny Adam + LRDecay fit: (log dir, last checkpoint, npz)."""
    save_dir = tmp_path_factory.mktemp("logs")
    config = next(c for c in CONFIGS if c.name == "two_layer_tuned.yaml")
    cli = run_lightning(["fit", *tiny_args(config, npz, save_dir, "--trainer.limit_train_batches=3")])
    return Path(cli.trainer.log_dir), Path(cli.trainer.checkpoint_callback.last_model_path), config


def test_resume_continues_global_step_optimizer_and_data_state(fitted, npz, tmp_path):
    _, last, config = fitted
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 3
    args = tiny_args(config, npz, tmp_path, "--trainer.limit_train_batches=3", "--trainer.max_epochs=2")
    cli = run_lightning(["fit", *args, f"--ckpt_path={last}"])
    assert cli.trainer.global_step == 6, (
        f"resumed run ended at step {cli.trainer.global_step}, expected 3 + 3"
    )
    optimizer = cli.trainer.optimizers[0]
    steps = {int(state["t"]) for state in optimizer.state.values()}
    assert steps == {6}, f"Adam step counts {steps}: the optimizer state was not restored (3 saved + 3 new)"
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.9**2), "lr_decay schedule not resumed"
    torch.testing.assert_close(cli.datamodule.stats["mean"], saved["CIFAR10DataModule"]["mean"])


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_evaluate_from_checkpoint(subcommand, fitted, npz, tmp_path):
    _, last, config = fitted
    cli = run_lightning([subcommand, *tiny_args(config, npz, tmp_path), f"--ckpt_path={last}"])
    if subcommand == "predict":
        predictions = torch.cat(cli.trainer.predict_loop.predictions)
        assert predictions.shape == (16,) and predictions.dtype == torch.int64, (
            "one class index per test image"
        )
    else:
        stage = "val" if subcommand == "validate" else "test"
        accuracy = cli.trainer.callback_metrics[f"{stage}/acc"].item()
        assert 0.0 <= accuracy <= 1.0 and f"{stage}/loss" in cli.trainer.callback_metrics


def test_plot_writes_the_solver_figures(fitted, tmp_path, capsys):
    log_dir, _, _ = fitted
    assert main(["plot", str(log_dir), "--out", str(tmp_path)]) == 0
    for name in ("loss.png", "accuracy.png", "weights.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000, f"{name} is not a PNG figure"
    assert main(["plot", str(tmp_path / "nowhere")]) == 2
    assert "no metrics.csv in or below" in capsys.readouterr().out


def test_bench_dispatches_lazily(monkeypatch):
    import torch_cs231n.bench

    calls = []
    monkeypatch.setattr(torch_cs231n.bench, "main", lambda argv: calls.append(argv) or 0)
    assert main(["bench", "--tiny"]) == 0
    assert calls == [["--tiny"]]
