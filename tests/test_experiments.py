"""``cs231n experiment activations``: the weight-initialisation study shows what the lecture says it
shows, on the manual ops and their built-in twins alike."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pytest
import torch

from lightning_modules.dispatcher import main
from torch_cs231n.experiments.activations import INITS, activation_study, init_std


def stds(study: dict, init: str, nonlinearity: str) -> list[float]:
    run = next(r for r in study["runs"] if (r["init"], r["nonlinearity"]) == (init, nonlinearity))
    return [layer["std"] for layer in run["layers"]]


def ratios(values: list[float]) -> list[float]:
    return [b / a for a, b in pairwise(values)]


@pytest.fixture(scope="module")
def lecture_study() -> dict:
    """The lecture's size: 16 inputs, 6 layers of 4096 (about 3 s on one core)."""
    return activation_study()


def test_tanh_small_gaussian_collapses_toward_zero(lecture_study: dict) -> None:
    s = stds(lecture_study, "gaussian-0.01", "tanh")
    assert all(r < 0.7 for r in ratios(s)), f"std 0.01 + tanh must shrink at every layer, stds {s}"
    assert s[-1] < 0.06, f"layer 6 std {s[-1]:.3g}: expected a collapse toward zero (< 0.06)"


def test_tanh_larger_gaussian_saturates(lecture_study: dict) -> None:
    run = next(
        r for r in lecture_study["runs"] if (r["init"], r["nonlinearity"]) == ("gaussian-0.05", "tanh")
    )
    for k, layer in enumerate(run["layers"], start=1):
        edges, counts = layer["histogram"]["edges"], layer["histogram"]["counts"]
        near_one = sum(
            c for c, lo, hi in zip(counts, edges, edges[1:]) if lo >= 0.9 - 1e-9 or hi <= -0.9 + 1e-9
        )
        fraction = near_one / sum(counts)
        assert fraction > 0.5, (
            f"layer {k}: {fraction:.0%} of |h| >= 0.9; std 0.05 + tanh must saturate at +-1"
        )
        assert layer["std"] > 0.8, f"layer {k}: std {layer['std']:.3g}, saturated values have std near 1"


def test_tanh_xavier_keeps_a_steady_spread(lecture_study: dict) -> None:
    s = stds(lecture_study, "xavier", "tanh")
    r = ratios(s)
    assert all(0.25 < v < 0.7 for v in s), f"xavier + tanh stds {s}: expected neither collapse nor saturation"
    assert all(v > 0.75 for v in r) and r == sorted(r), f"std ratios {r}: expected > 0.75, approaching 1"


def test_relu_xavier_halves_the_variance_and_kaiming_keeps_it(lecture_study: dict) -> None:
    xavier = [v**2 for v in ratios(stds(lecture_study, "xavier", "relu"))]
    assert all(0.45 < v < 0.55 for v in xavier), f"xavier + relu variance ratios {xavier}: expected 1/2"
    kaiming = ratios(stds(lecture_study, "kaiming", "relu"))
    assert all(0.95 < v < 1.05 for v in kaiming), f"kaiming + relu std ratios {kaiming}: expected 1"


def test_study_layout_and_manual_equals_builtin() -> None:
    kwargs = {"depth": 3, "width": 128, "batch": 4, "seed": 1, "bins": 10}
    manual = activation_study(**kwargs)
    builtin = activation_study(**kwargs, ops="builtin")
    pairs = [(r["init"], r["nonlinearity"]) for r in manual["runs"]]
    assert pairs == [(i, f) for f in ("tanh", "relu") for i in INITS], f"runs {pairs}"
    for run in manual["runs"]:
        assert len(run["layers"]) == 3, f"{run['init']}/{run['nonlinearity']}: one entry per layer"
        for layer in run["layers"]:
            assert sum(layer["histogram"]["counts"]) == 4 * 128, "every value is in its layer's histogram"
            assert len(layer["histogram"]["edges"]) == 11, "bins + 1 edges"
    for a, b in zip(manual["runs"], builtin["runs"]):
        for la, lb in zip(a["layers"], b["layers"]):
            assert la["std"] == pytest.approx(lb["std"], rel=1e-5), f"{a['init']}/{a['nonlinearity']}"


def test_study_matches_a_plain_numpy_style_loop() -> None:
    """The lecture's loop written out: same input and weights, same statistics."""
    study = activation_study(["kaiming"], ["relu"], depth=2, width=32, batch=5, seed=3)
    g = torch.Generator().manual_seed(3)
    h = torch.randn(5, 32, generator=g)
    for k in range(2):
        h = torch.relu(h @ (torch.randn(32, 32, generator=g) * (2 / 32) ** 0.5).T)
        got = study["runs"][0]["layers"][k]
        assert got["mean"] == pytest.approx(h.mean().item(), rel=1e-5), f"layer {k + 1} mean"
        assert got["std"] == pytest.approx(h.std(correction=0).item(), rel=1e-5), f"layer {k + 1} std"


def test_init_std() -> None:
    assert init_std("gaussian-0.01", 4096) == 0.01, "gaussian-STD is STD"
    assert init_std("xavier", 4096) == 1 / 64, "xavier is 1/sqrt(D_in)"
    assert init_std("kaiming", 2) == 1.0, "kaiming is sqrt(2/D_in)"
    with pytest.raises(ValueError, match="gaussian-STD"):
        init_std("gaussian", 10)


def test_cli_experiment_activations_writes_json_and_figures(tmp_path: Path, capsys) -> None:
    args = ["experiment", "activations", "--depth", "2", "--width", "64", "--batch", "4", "--ops", "builtin"]
    status = main([*args, "--out", str(tmp_path), "--json", str(tmp_path / "a.json")])
    assert status == 0, f"cs231n experiment activations returned {status}"
    payload = json.loads((tmp_path / "a.json").read_text())
    assert payload == json.loads((tmp_path / "activations.json").read_text()), "--json and --out must agree"
    assert payload["ops"] == "builtin" and len(payload["runs"]) == 8, "8 runs of the builtin ops"
    assert set(payload["runs"][0]) == {"init", "nonlinearity", "layers"}, (
        f"run keys {set(payload['runs'][0])}"
    )
    assert {"mean", "std"} <= set(payload["runs"][0]["layers"][0]), "each layer has mean and std"
    for name in ("activations_std.png", "activations_hist.png"):
        assert (tmp_path / name).stat().st_size > 0, f"{name} not written"
    assert "kaiming" in capsys.readouterr().out, "the table names the runs"
