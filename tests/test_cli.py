"""The ``cs231n`` CLI: every config fits, resume, validate/test/predict from a checkpoint, plot, bench."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from cifar_fixtures import tiny_fit_args, write_npz

from lightning_modules.cli import CheckpointMismatchError, MissingCheckpointError, run_lightning
from lightning_modules.dispatcher import main
from torch_cs231n.interop.checkpoint import CheckpointError

# The experiment configs: every YAML of configs/ but the base (and a local override) they are layered on.
CONFIGS = sorted(
    c
    for c in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")
    if c.name not in ("base.yaml", "local.yaml")
)


def tiny_args(config: Path, npz: Path, save_dir: Path, *extra: str) -> list[str]:
    """Overrides shrinking a config to a few batches of generated data, on CPU, logging under save_dir."""
    logging = ("--trainer.log_every_n_steps=1", f"--trainer.logger.init_args.save_dir={save_dir}")
    return [f"--config={config}", *tiny_fit_args(npz, *logging, *extra)]


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


def test_a_config_with_the_deprecated_keys_still_fits(npz, tmp_path):
    """A config written before the renames (``strategy`` of TransferLearning, ``normalization`` of the data
    module) fits with a FutureWarning naming each new key, and its checkpoint validates with it."""
    config = next(c for c in CONFIGS if c.name == "transfer_feature_extraction_cpu.yaml")
    old = yaml.safe_load(config.read_text())
    old["model"]["init_args"].pop("finetuning", None)
    old["model"]["init_args"]["strategy"] = "full"
    old["data"]["init_args"]["normalization"] = old["data"]["init_args"].pop("pixel_normalization")
    old_config = tmp_path / "old_keys.yaml"
    old_config.write_text(yaml.safe_dump(old))
    args = tiny_args(old_config, npz, tmp_path, *offline_cpu_args(config))
    with pytest.warns(FutureWarning) as caught:
        cli = run_lightning(["fit", *args])
    messages = " | ".join(str(w.message) for w in caught if issubclass(w.category, FutureWarning))
    for new_key in ("--model.init_args.finetuning", "--data.init_args.pixel_normalization"):
        assert new_key in messages, f"no deprecation warning naming {new_key}: {messages}"
    assert cli.trainer.global_step == 2 and cli.model.finetuning == "full", "the old keys were not applied"
    assert cli.datamodule.pixel_normalization == "none" == cli.datamodule.hparams.pixel_normalization
    ckpt = cli.trainer.checkpoint_callback.last_model_path
    with pytest.warns(FutureWarning):
        validated = run_lightning(["validate", *args, f"--ckpt_path={ckpt}"])
    assert validated.model.finetuning == "full" and validated.datamodule.pixel_normalization == "none"
    with pytest.raises(SystemExit):  # the old and the new key typed together: refused
        run_lightning(["fit", *args, "--model.strategy=full", "--model.init_args.finetuning=gradual"])


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
    expected = tmp_path / "two_layer_tuned" / subcommand / "version_0"
    assert Path(cli.trainer.log_dir) == expected, (
        f"an evaluation logs into its own folder {expected}, not a new run of the experiment: "
        f"{cli.trainer.log_dir}"
    )
    if subcommand == "predict":
        probabilities = torch.cat(cli.trainer.predict_loop.predictions)
        assert probabilities.shape == (16, 10), (
            f"one row of class probabilities per test image, got {probabilities.shape}"
        )
        torch.testing.assert_close(probabilities.sum(1), torch.ones(16), msg="rows must sum to 1")
    else:
        stage = "val" if subcommand == "validate" else "test"
        accuracy = cli.trainer.callback_metrics[f"{stage}/acc"].item()
        assert 0.0 <= accuracy <= 1.0 and f"{stage}/loss" in cli.trainer.callback_metrics


def test_a_failed_evaluation_leaves_no_folder(fitted, npz, tmp_path):
    """An evaluation that fails once its logger exists (here: the data cannot be split) removes its run
    folder, and the folders it created for it; an earlier evaluation's folder stays."""
    _, last, config = fitted
    run_lightning(["validate", *tiny_args(config, npz, tmp_path), f"--ckpt_path={last}"])
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for save_dir in (tmp_path, tmp_path / "fresh"):
        args = tiny_args(config, npz, save_dir, "--data.init_args.val_size=1000")
        with pytest.raises(ValueError, match="val_size=1000"):
            run_lightning(["validate", *args, f"--ckpt_path={last}"])
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before, f"the failed validations left {sorted(set(after) - set(before))}"


def test_plot_writes_the_solver_figures(fitted, tmp_path, capsys):
    log_dir, _, _ = fitted
    assert main(["plot", str(log_dir), "--out", str(tmp_path)]) == 0
    for name in ("loss.png", "accuracy.png", "weights.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000, f"{name} is not a PNG figure"
    assert main(["plot", str(tmp_path / "nowhere")]) == 2
    assert "no metrics.csv in or below" in capsys.readouterr().out


def test_bench_dispatches_lazily(monkeypatch):
    import torch_cs231n.tools.bench

    calls = []
    monkeypatch.setattr(torch_cs231n.tools.bench, "main", lambda argv: calls.append(argv) or 0)
    assert main(["bench", "--tiny"]) == 0
    assert calls == [["--tiny"]]


# ------------------------------------------------------------------ checkpoints never override the user
FC_NET = next(c for c in CONFIGS if c.name == "fc_net_tuned.yaml")


@pytest.fixture(scope="module")
def builtin_fc(npz, tmp_path_factory) -> Path:
    """The last checkpoint of a tiny fc_net_tuned fit on BUILT-IN ops."""
    save_dir = tmp_path_factory.mktemp("builtin_fc")
    cli = run_lightning(["fit", *tiny_args(FC_NET, npz, save_dir, "--model.init_args.ops=builtin")])
    return Path(cli.trainer.checkpoint_callback.last_model_path)


def test_arguments_win_over_the_checkpoint(builtin_fc, npz, tmp_path):
    """The same weights evaluated on manual ops: --model.init_args.ops manual must not be overridden by the
    checkpoint's ops: builtin (neither in the model nor in the run's saved config.yaml)."""
    args = tiny_args(FC_NET, npz, tmp_path, "--model.init_args.ops=manual", f"--ckpt_path={builtin_fc}")
    cli = run_lightning(["validate", *args])
    kinds = {type(m).__module__ for m in cli.model.net.modules() if isinstance(m, torch.nn.Linear)}
    assert kinds == {"custom_ops.nn"}, f"validate ran {kinds} linear layers, expected the manual ones"
    saved = yaml.safe_load((Path(cli.trainer.log_dir) / "config.yaml").read_text())
    assert saved["model"]["init_args"]["ops"] == "manual", "config.yaml records the checkpoint's ops"


def test_checkpoint_fills_in_what_the_user_leaves_unset(builtin_fc, npz, tmp_path):
    """Without a config: the model class and every unset hyper-parameter come from the checkpoint."""
    args = [
        f"--ckpt_path={builtin_fc}",
        "--data=lightning_modules.data.CIFAR10DataModule",
        f"--data.init_args.npz_path={npz}",
        "--data.init_args.val_size=16",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.logger=false",
        "--model=lightning_modules.fc_net.FullyConnectedNet",
        "--model.init_args.hidden_dims=[1024, 512, 256]",
    ]
    cli = run_lightning(["validate", *args])
    assert cli.model.hparams.ops == "builtin" and cli.model.hparams.normalization == "batchnorm", (
        f"unset hyper-parameters were not taken from the checkpoint: {dict(cli.model.hparams)}"
    )


def test_checkpoint_of_another_model_class_is_refused(builtin_fc, npz, tmp_path):
    conv = next(c for c in CONFIGS if c.name == "conv_net.yaml")
    with pytest.raises(CheckpointMismatchError) as err:
        run_lightning(["validate", *tiny_args(conv, npz, tmp_path), f"--ckpt_path={builtin_fc}"])
    assert "FullyConnectedNet" in str(err.value) and "ThreeLayerConvNet" in str(err.value), (
        f"the error must name both classes: {err.value}"
    )


def test_checkpoint_that_does_not_fit_the_model_is_refused(builtin_fc, npz, tmp_path):
    args = tiny_args(
        FC_NET, npz, tmp_path, "--model.init_args.hidden_dims=[100]", f"--ckpt_path={builtin_fc}"
    )
    with pytest.raises(CheckpointMismatchError) as err:
        run_lightning(["validate", *args])
    message = str(err.value)
    assert str(builtin_fc) in message and "FullyConnectedNet" in message, f"names neither: {message}"
    assert "hidden_dims: checkpoint [1024, 512, 256], arguments [100]" in message, (
        f"the error does not say which argument makes the difference: {message}"
    )


@pytest.mark.parametrize("subcommand", ["validate", "test", "predict"])
def test_evaluating_without_a_checkpoint_is_refused(subcommand, npz, tmp_path):
    with pytest.raises(MissingCheckpointError, match="random"):
        run_lightning([subcommand, *tiny_args(FC_NET, npz, tmp_path)])


def test_ckpt_path_last_finds_the_newest_last_checkpoint(npz, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no last\.ckpt"):
        run_lightning(["fit", *tiny_args(FC_NET, npz, tmp_path), "--ckpt_path=last"])
    first = run_lightning(["fit", *tiny_args(FC_NET, npz, tmp_path)])
    newest = run_lightning(["fit", *tiny_args(FC_NET, npz, tmp_path, "--trainer.max_epochs=2")])
    assert first.trainer.log_dir != newest.trainer.log_dir, "expected two run folders"
    cli = run_lightning(["validate", *tiny_args(FC_NET, npz, tmp_path), "--ckpt_path=last"])
    used = Path(cli.config["validate"]["ckpt_path"])
    assert used == Path(newest.trainer.checkpoint_callback.last_model_path), f"resolved to {used}"
    resumed = run_lightning(
        ["fit", *tiny_args(FC_NET, npz, tmp_path, "--trainer.max_epochs=3"), "--ckpt_path=last"]
    )
    assert resumed.trainer.global_step == 6, f"resumed at step {resumed.trainer.global_step - 2}, expected 4"


@pytest.mark.parametrize("damage", ["flipped", "truncated"])
def test_corrupt_checkpoints_are_refused_with_the_file_name(damage, builtin_fc, npz, tmp_path, capsys):
    from test_checkpoint import flip_tensor_byte

    path = tmp_path / "damaged.ckpt"
    path.write_bytes(builtin_fc.read_bytes())
    if damage == "flipped":
        flip_tensor_byte(path)
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"damaged\.ckpt"):
        run_lightning(["validate", *tiny_args(FC_NET, npz, tmp_path), f"--ckpt_path={path}"])
    assert main(["validate", *tiny_args(FC_NET, npz, tmp_path), f"--ckpt_path={path}"]) == 2
    err = capsys.readouterr().err
    assert "damaged.ckpt" in err and "weights_only=False" not in err, f"unclear error: {err}"


# ------------------------------------------------------------------------------------- exact resume
def _final_state(cli) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in cli.model.state_dict().items()}


@pytest.mark.parametrize("data_seed", [None, 3], ids=["global_rng_shuffle", "seeded_shuffle"])
@pytest.mark.parametrize("stop_after", [1, 2])
def test_resume_ends_bit_for_bit_where_the_uninterrupted_run_ends(stop_after, data_seed, npz, tmp_path):
    """fc_net_tuned has every random stream: shuffle, flip augmentation (and crops, turned on here), dropout
    masks."""
    extra = [
        "--trainer.limit_train_batches=3",
        "--data.init_args.crop_padding=4",
        f"--data.init_args.seed={'null' if data_seed is None else data_seed}",
    ]
    whole = run_lightning(
        ["fit", *tiny_args(FC_NET, npz, tmp_path / "whole", *extra, "--trainer.max_epochs=3")]
    )
    stopped = run_lightning(
        ["fit", *tiny_args(FC_NET, npz, tmp_path / "part", *extra, f"--trainer.max_epochs={stop_after}")]
    )
    last = stopped.trainer.checkpoint_callback.last_model_path
    resumed = run_lightning(
        [
            "fit",
            *tiny_args(FC_NET, npz, tmp_path / "part", *extra, "--trainer.max_epochs=3"),
            f"--ckpt_path={last}",
        ]
    )
    expected, got = _final_state(whole), _final_state(resumed)
    differ = [k for k in expected if not torch.equal(expected[k], got[k])]
    assert not differ, (
        f"stopped after epoch {stop_after} and resumed: {differ} differ from the uninterrupted run"
    )


def test_resume_uses_the_interrupted_runs_seed(npz, tmp_path):
    """A resumed run draws the interrupted run's epochs even when seed_everything changes."""
    extra = ["--trainer.limit_train_batches=3"]
    whole = run_lightning(["fit", *tiny_args(FC_NET, npz, tmp_path / "a", *extra, "--trainer.max_epochs=2")])
    stopped = run_lightning(["fit", *tiny_args(FC_NET, npz, tmp_path / "b", *extra)])
    resumed = run_lightning(
        [
            "fit",
            *tiny_args(
                FC_NET, npz, tmp_path / "b", *extra, "--trainer.max_epochs=2", "--seed_everything=123"
            ),
            f"--ckpt_path={stopped.trainer.checkpoint_callback.last_model_path}",
        ]
    )
    expected, got = _final_state(whole), _final_state(resumed)
    assert all(torch.equal(expected[k], got[k]) for k in expected), "the resumed epoch used another seed"


# ---------------------------------------------------------------------------------- command line
def test_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("fit", "validate", "test", "predict", "plot", "bench"):
        assert f"  {name} " in out, f"`cs231n --help` does not list {name}:\n{out}"
    assert main([]) == 2, "no subcommand must be an error"
    err = capsys.readouterr().err
    assert "plot" in err and "bench" in err, f"the no-argument error does not list plot and bench:\n{err}"
    assert main(["nonsense"]) == 2 and "unknown subcommand 'nonsense'" in capsys.readouterr().err


def test_console_runs_without_the_args_warning(npz, tmp_path, monkeypatch, recwarn):
    """`cs231n ...` parses sys.argv itself: no "args parameter is intended to run from within Python"."""
    args = tiny_args(FC_NET, npz, tmp_path, "--model.init_args.hidden_dims=[8]")
    monkeypatch.setattr("sys.argv", ["cs231n", "fit", *args])
    assert main() == 0
    messages = [str(w.message) for w in recwarn]
    assert not [m for m in messages if "args parameter" in m], "the LightningCLI args warning was printed"


def test_logs_to_csv_and_tensorboard_by_default(npz, tmp_path):
    cli = run_lightning(["fit", *tiny_args(FC_NET, npz, tmp_path, "--model.init_args.hidden_dims=[8]")])
    run_dir = Path(cli.trainer.log_dir)
    assert (run_dir / "metrics.csv").is_file(), "no CSV log"
    assert list(run_dir.glob("events.out.tfevents.*")), f"no TensorBoard events file in {run_dir}"


def test_weights_null_wins_over_the_checkpoint(npz, tmp_path):
    """The README's recipe: evaluate a fine-tuned checkpoint without the pretrained weights at hand."""
    config = next(c for c in CONFIGS if c.name == "transfer_resnet18.yaml")
    args = tiny_args(config, npz, tmp_path, *offline_cpu_args(config))
    fitted = run_lightning(["fit", *args])
    path = tmp_path / "pretrained.ckpt"
    checkpoint = torch.load(fitted.trainer.checkpoint_callback.last_model_path, weights_only=True)
    checkpoint["hyper_parameters"]["weights"] = "DEFAULT"  # as if fine-tuned from torchvision's weights
    torch.save(checkpoint, path)
    cli = run_lightning(["validate", *args, f"--ckpt_path={path}"])  # offline_cpu_args give weights=null
    assert cli.model.hparams.weights is None, "the checkpoint's weights: DEFAULT overrode weights=null"
    assert 0.0 <= cli.trainer.callback_metrics["val/acc"].item() <= 1.0, "validation did not run"


def test_sync_batchnorm_flag_keeps_manual_batch_norm_manual(npz, tmp_path):
    """--trainer.sync_batchnorm true becomes the ManualSyncBatchNorm plugin (plain Lightning would convert
    the manual layers to torch.nn.SyncBatchNorm); a single process trains as before."""
    from lightning_modules.layer_sync import ManualSyncBatchNorm

    cli = run_lightning(["fit", *tiny_args(FC_NET, npz, tmp_path, "--trainer.sync_batchnorm=true")])
    layer_sync = cli.trainer._accelerator_connector._layer_sync
    assert isinstance(layer_sync, ManualSyncBatchNorm), f"the trainer synchronises with {layer_sync!r}"
    assert cli.trainer.global_step == 2, "the single-process run did not train"


def test_ddp_fit_on_two_cpu_processes_with_sync_batchnorm(npz, tmp_path):
    """The documented command, end to end: 2 gloo processes, manual synchronised batch norm."""
    import subprocess
    import sys

    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys, torch\n"
        "from lightning.pytorch.callbacks import Callback\n"
        "from lightning_modules import dispatcher\n"
        "class Probe(Callback):\n"
        "    def on_train_batch_start(self, trainer, pl_module, batch, i):\n"
        "        kinds = sorted({type(m).__module__ + '.' + type(m).__name__ for m in pl_module.modules()\n"
        "                        if 'BatchNorm' in type(m).__name__})\n"
        f"        open(r'{tmp_path}/kinds' + str(trainer.global_rank), 'w').write(','.join(kinds))\n"
        "probe = '--trainer.callbacks+=__main__.Probe'\n"
        "sys.argv += [] if probe in sys.argv else [probe]  # the DDP launcher re-runs this script\n"
        "sys.exit(dispatcher.main())\n"
    )
    args = tiny_args(
        FC_NET,
        npz,
        tmp_path,
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--trainer.sync_batchnorm=true",
        "--trainer.enable_checkpointing=false",
    )
    done = subprocess.run(
        [sys.executable, str(probe), "fit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, f"DDP fit failed:\n{done.stderr[-3000:]}"
    for rank in (0, 1):
        kinds = (tmp_path / f"kinds{rank}").read_text()
        assert kinds == "custom_ops.nn.SyncBatchNorm", f"rank {rank} trained with {kinds}"


BUILDERS = {
    "lightning_modules.fc_net.FullyConnectedNet": "build_fc_net",
    "lightning_modules.conv_net.ThreeLayerConvNet": "build_three_layer_convnet",
    "lightning_modules.conv_net.ConvNet": "build_convnet",
}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_print_config_lists_every_model_argument(config, capsys):
    """``--print_config`` shows the config's model arguments and, for the CS231n nets, every argument of
    their builder with the builder's default (the modules pass ``**net_args`` on); ``num_classes`` is the
    data module's (linked), so it is not a model key."""
    import inspect

    from torch_cs231n.nets import models

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", f"--config={config}", "--print_config"])
    assert exit_info.value.code in (0, None), capsys.readouterr().err
    printed = yaml.safe_load(capsys.readouterr().out)
    given = yaml.safe_load(config.read_text())["model"]
    model_args = printed["model"]["init_args"]
    assert printed["model"]["class_path"] == given["class_path"]
    for name, value in given.get("init_args", {}).items():
        if isinstance(value, dict):  # optimizer / lr_scheduler: their class and given init_args
            assert model_args[name]["class_path"] == value["class_path"], name
            assert value.get("init_args", {}).items() <= model_args[name]["init_args"].items(), name
        else:
            assert model_args[name] == value, f"{name}: printed {model_args[name]!r}, config {value!r}"
    assert "num_classes" not in model_args, "num_classes is linked from the data module"
    builder = BUILDERS.get(given["class_path"])
    if builder is not None:
        for name, parameter in inspect.signature(getattr(models, builder)).parameters.items():
            if name == "num_classes":
                continue
            expected = given["init_args"].get(name, parameter.default)
            assert name in model_args, f"builder argument {name} missing from --print_config"
            if isinstance(expected, tuple):
                expected = list(expected)
            assert model_args[name] == expected, f"{name}: printed {model_args[name]!r}, not {expected!r}"
        assert {"reg", "loss", "optimizer", "lr_scheduler"} <= set(model_args)


def test_num_classes_is_linked_from_the_data_module(npz, tmp_path, capsys):
    config = next(c for c in CONFIGS if c.name == "two_layer_tuned.yaml")
    cli = run_lightning(tiny_args(config, npz, tmp_path), run=False)
    assert cli.model.val_acc.num_classes == cli.datamodule.num_classes == 10
    assert cli.model.hparams.num_classes == 10
    assert cli.model.hparams.num_classes == cli.datamodule.num_classes
    status = main(["fit", *tiny_args(config, npz, tmp_path, "--model.init_args.num_classes=5")])
    err = capsys.readouterr().err
    assert status == 2 and "--model.init_args.num_classes 5" in err and "data module" in err, err


@pytest.mark.parametrize(
    "option, change",
    [
        ("--model.init_args.optimizer.init_args.lr=0.5", "optimizer.lr: checkpoint 0.001, arguments 0.5"),
        ("--model.init_args.lr_scheduler.init_args.lr_decay=0.5", "lr_scheduler.gamma: checkpoint 0.9, "),
    ],
    ids=["lr", "lr_decay"],
)
def test_resume_refuses_optimizer_hyper_parameters_it_would_ignore(option, change, fitted, npz, tmp_path):
    """A resume restores the optimizer and scheduler state whole: a new lr (or decay) typed with
    --ckpt_path would be ignored while config.yaml records it, so it is refused, naming it; no run starts."""
    _, last, config = fitted
    args = tiny_args(config, npz, tmp_path, "--trainer.max_epochs=2")
    with pytest.raises(CheckpointMismatchError, match="configure the optimizer otherwise") as refused:
        run_lightning(["fit", *args, option, f"--ckpt_path={last}"])
    assert change in str(refused.value), f"the error must name the option and both values:\n{refused.value}"
    assert not list(tmp_path.rglob("config.yaml")), "a refused resume must record no config"
    resumed = run_lightning(["fit", *args, f"--ckpt_path={last}"])  # the config's own values: accepted
    assert resumed.trainer.global_step > 3, "resuming with the run's own optimizer settings must train on"
