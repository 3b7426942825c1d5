"""``cs231n plot`` on hand-written Lightning CSVLogger logs: the run it picks, what each figure plots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from torch_cs231n.tools.plotting import (
    accuracy_figure,
    find_metrics_csv,
    loss_figure,
    main,
    plot_run,
    read_metrics,
)

# A one-epoch `fit` (3 steps, per-step loss, validation at the end of the epoch) as CSVLogger writes it:
# the learning-rate row has no epoch, validation and the epoch metrics are logged at the epoch's last step.
FIT_CSV = """\
epoch,lr-Adam,step,time/epoch_s,train/acc,train/loss_epoch,train/loss_step,val/acc,val/loss
,0.001,0,,,,,,
0,,0,,,,2.5,,
0,,1,,,,2.25,,
0,,2,,,,2.0,,
0,,2,,,,,0.375,2.125
0,,2,0.19,0.25,2.25,,,
"""
# A one-epoch `fit` of 2 steps with log_every_n_steps 20 (base.yaml): no per-step row, only the epoch's.
SHORT_FIT_CSV = """\
epoch,lr-SGD,step,time/epoch_s,train/acc,train/loss_epoch,val/acc,val/loss
,0.001,0,,,,,
0,,1,,,,0.0625,2.30
0,,1,0.013,0.0625,2.25,,
"""
# A `validate` run of the same experiment: no training metrics.
VALIDATE_CSV = """\
epoch,step,val/acc,val/loss
0,0,0.375,2.125
"""


def _write_run(folder: Path, text: str, mtime: float) -> Path:
    folder.mkdir(parents=True)
    path = folder / "metrics.csv"
    path.write_text(text)
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """``experiment/version_0`` (fit, older) and ``experiment/version_1`` (validate, newest)."""
    root = tmp_path / "experiment"
    _write_run(root / "version_0", FIT_CSV, 1_000_000)
    _write_run(root / "version_1", VALIDATE_CSV, 2_000_000)
    return root


def test_the_newest_run_with_training_metrics_is_used(experiment: Path, tmp_path: Path, capsys) -> None:
    chosen = find_metrics_csv(experiment)
    assert chosen == experiment / "version_0" / "metrics.csv", f"picked {chosen}, not the fit run version_0"
    out = tmp_path / "figures"
    assert main([str(experiment), "--out", str(out)]) == 0, "cs231n plot failed"
    printed = capsys.readouterr().out
    assert f"using {chosen}" in printed, f"the chosen run is not named: {printed!r}"
    for name in ("loss.png", "accuracy.png"):
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"{name} is not a PNG"
    assert not (out / "weights.png").exists(), "weights.png without any checkpoint in the run"


def test_a_run_without_training_metrics_is_refused_by_name(experiment: Path, tmp_path: Path) -> None:
    refused = r"version_1/metrics\.csv: no training loss \(train/loss_step or train/loss_epoch\)"
    with pytest.raises(ValueError, match=refused):
        plot_run(experiment / "version_1")
    only_validate = tmp_path / "only_validate"
    _write_run(only_validate / "version_0", VALIDATE_CSV, 1_000_000)
    with pytest.raises(ValueError, match=r"none of the 1 metrics\.csv below .* holds a training loss"):
        find_metrics_csv(only_validate)
    with pytest.raises(FileNotFoundError, match=r"no metrics\.csv in or below .*working directory"):
        find_metrics_csv(tmp_path / "nowhere")


def test_loss_figure_has_train_per_step_and_val_per_epoch(experiment: Path) -> None:
    ax = loss_figure(read_metrics(experiment / "version_0" / "metrics.csv")).axes[0]
    train, val = ax.get_lines()
    assert list(train.get_xdata()) == [0, 1, 2], f"train loss steps {list(train.get_xdata())}"
    assert list(train.get_ydata()) == [2.5, 2.25, 2.0], f"train loss values {list(train.get_ydata())}"
    assert list(val.get_xdata()) == [2] and list(val.get_ydata()) == [2.125], (
        f"val/loss must be drawn once, at the epoch's last step 2: {list(val.get_xdata())}, "
        f"{list(val.get_ydata())}"
    )
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["train, per iteration", "val, per epoch (data loss)"], f"legend: {labels}"


def test_one_epoch_accuracy_has_visible_points_and_integer_ticks(experiment: Path) -> None:
    ax = accuracy_figure(read_metrics(experiment / "version_0" / "metrics.csv")).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"train", "val"}, f"accuracy series: {sorted(lines)}"
    assert list(lines["train"].get_ydata()) == [0.25] and list(lines["val"].get_ydata()) == [0.375], (
        "accuracy values differ from the log"
    )
    for label, line in lines.items():
        assert list(line.get_xdata()) == [0], f"{label}: epochs {list(line.get_xdata())}"
        assert line.get_marker() not in (None, "", "None") and line.get_markersize() > 0, (
            f"{label}: a single point needs a visible marker"
        )
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks), f"epoch ticks must be integers: {ticks}"


def test_a_run_shorter_than_the_logging_interval_plots_its_epoch_loss(tmp_path: Path, capsys) -> None:
    """A fit run of fewer steps than ``log_every_n_steps`` logged no ``train/loss_step``: it is still a fit
    run, and the loss figure draws ``train/loss_epoch`` instead."""
    run = tmp_path / "short" / "version_0"
    _write_run(run, SHORT_FIT_CSV, 1_000_000)
    assert main([str(run), "--out", str(tmp_path / "figures")]) == 0, capsys.readouterr().out
    assert (tmp_path / "figures" / "loss.png").read_bytes().startswith(b"\x89PNG"), "no loss.png written"
    ax = loss_figure(read_metrics(run / "metrics.csv")).axes[0]
    train, val = ax.get_lines()
    assert (list(train.get_xdata()), list(train.get_ydata())) == ([1], [2.25]), (
        f"the epoch's training loss must be drawn at its step 1: {train.get_xdata()}, {train.get_ydata()}"
    )
    assert "per epoch" in train.get_label() and list(val.get_ydata()) == [2.30], (
        f"train label {train.get_label()!r}, val {list(val.get_ydata())}"
    )
