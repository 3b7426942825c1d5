"""``torch_cs231n.tools.summary.layer_table`` and ``cs231n summary``: rows in call order, the CS231n counts of
the midterm network, activation memory, the model left untouched, configs built without data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch.utilities.model_summary import ModelSummary
from torch import nn

import custom_ops.nn as mnn
from lightning_modules.dispatcher import main
from torch_cs231n.nets.sandwich import SandwichSequential
from torch_cs231n.tools.memory import saved_memory
from torch_cs231n.tools.summary import build_model_from_config, default_input_size, format_table, layer_table

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class MidtermNet(nn.Module):
    """The course's midterm network on 32x32x1: CONV5-10, POOL2, CONV5-10, POOL2, FC-10. The modules are
    registered in another order than they are called (fc first), to check that rows follow the calls."""

    def __init__(self, layers=mnn) -> None:
        super().__init__()
        self.fc = layers.Linear(8 * 8 * 10, 10)
        self.conv1 = layers.Conv2d(1, 10, 5, stride=1, padding=2)
        self.pool1 = layers.MaxPool2d(2, 2)
        self.conv2 = layers.Conv2d(10, 10, 5, stride=1, padding=2)
        self.pool2 = layers.MaxPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool2(self.conv2(self.pool1(self.conv1(x))))
        return self.fc(x.flatten(1))


MIDTERM_ROWS = [  # (name, type, output shape, activations, params) as the course counts them
    ("conv1", "Conv2d", (10, 32, 32), 32 * 32 * 10, 10 * (5 * 5 * 1 + 1)),
    ("pool1", "MaxPool2d", (10, 16, 16), 16 * 16 * 10, 0),
    ("conv2", "Conv2d", (10, 16, 16), 16 * 16 * 10, 10 * (5 * 5 * 10 + 1)),
    ("pool2", "MaxPool2d", (10, 8, 8), 8 * 8 * 10, 0),
    ("fc", "Linear", (10,), 10, 10 * (8 * 8 * 10 + 1)),
]


@pytest.mark.parametrize("layers", [mnn, nn], ids=["manual", "builtin"])
def test_midterm_network_activations_and_parameters(layers) -> None:
    table = layer_table(MidtermNet(layers), (1, 32, 32))
    rows = [(r.name, r.type, r.output_shape, r.activations, r.params) for r in table.rows]
    assert rows == MIDTERM_ROWS, f"midterm network rows:\n{format_table(table)}"
    params = sum(row[4] for row in MIDTERM_ROWS)
    assert table.params == table.trainable_params == params == 9_180, f"{table.params} parameters"
    values = sum(row[3] for row in MIDTERM_ROWS)
    assert table.forward_bytes == 4 * values, f"forward memory {table.forward_bytes} B, expected 4 x {values}"


def test_views_add_no_forward_memory_and_shared_modules_count_params_once() -> None:
    relu = nn.ReLU(inplace=True)
    net = nn.Sequential(nn.Linear(6, 8), relu, nn.Flatten(), nn.Linear(8, 8), relu)
    table = layer_table(net, (6,))
    assert [r.name for r in table.rows] == ["0", "1", "2", "3", "1"], "one row per call, in call order"
    assert [r.activations for r in table.rows] == [8] * 5, "each call outputs 8 values per sample"
    assert table.forward_bytes == 2 * 8 * 4, "in-place ReLU and Flatten return views: two new tensors"
    assert sum(r.params for r in table.rows) == table.params == (6 * 8 + 8) + (8 * 8 + 8), (
        "the parameters of a module called twice are counted once"
    )


@pytest.mark.parametrize("layers", [mnn, nn], ids=["manual", "builtin"])
def test_saved_for_backward_per_sample(layers) -> None:
    """fc1 saves its input (6 values), ReLU its output (16), fc2 the same output: 22 floats a sample;
    the weights are parameters and not counted."""
    net = nn.Sequential(layers.Linear(6, 16), layers.ReLU(), layers.Linear(16, 3))
    table = layer_table(net, (6,))
    assert table.saved_bytes == (6 + 16) * 4, f"saved {table.saved_bytes} B per sample, expected 88"
    assert table.saved_fixed_bytes == 0, f"{table.saved_fixed_bytes} B saved per batch, expected none"


@pytest.mark.parametrize(
    "net, size",
    [
        (
            lambda: SandwichSequential(
                mnn.Conv2d(3, 4, 3, padding=1), mnn.ReLU(), mnn.MaxPool2d(2), nn.Flatten(), mnn.Linear(64, 5)
            ),
            (3, 8, 8),
        ),
        (
            lambda: SandwichSequential(mnn.Linear(6, 8), mnn.BatchNorm1d(8), mnn.ReLU(), mnn.Linear(8, 3)),
            (6,),
        ),
    ],
    ids=["conv_relu_pool", "affine_bn_relu"],
)
def test_saved_for_backward_matches_a_direct_measurement_of_sandwiched_models(net, size) -> None:
    """The sandwiches save less than their layers one by one: both batch sizes must run the sandwiches, as
    training does (a forward hook at one size only made the per-sample figure negative for conv_net.yaml)."""
    model = net()
    table = layer_table(model, size, batch_sizes=(2, 4))
    keep = [*model.parameters(), *model.buffers()]
    small, large = (saved_memory(model.train(), (torch.randn(n, *size),), exclude=keep).bytes for n in (2, 4))
    per_sample = (large - small) // 2
    measured = (per_sample, small - 2 * per_sample)
    assert (table.saved_bytes, table.saved_fixed_bytes) == measured, (
        f"summary says {table.saved_bytes} B per sample + {table.saved_fixed_bytes} B per batch, "
        f"saved_memory measures {measured[0]} B + {measured[1]} B"
    )
    assert [r.type for r in table.rows] == [type(m).__name__ for m in model], "one row per layer"


def test_the_model_is_left_untouched() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5)).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    table = layer_table(net, (3, 8, 8))
    assert table.saved_fixed_bytes > 0, "batch norm saves per-channel statistics whatever the batch size"
    assert not net.training, "the model must stay in eval mode"
    changed = [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]
    assert not changed, f"the summary changed {changed} (running statistics?)"
    assert torch.equal(torch.get_rng_state(), rng), "the summary must not consume the global RNG"


def test_default_input_size() -> None:
    net = nn.Linear(5, 2)
    assert default_input_size(net) == (3, 32, 32), "no hint: a CIFAR-10 image"
    net.example_input_array = torch.zeros(7, 5)
    assert default_input_size(net) == (5,), "example_input_array without its batch dimension"


def test_config_model_matches_lightning_model_summary() -> None:
    model = build_model_from_config(CONFIGS / "conv_net.yaml", ops="builtin")
    assert model.hparams.ops == "builtin", "--ops must override the config's ops"
    table = layer_table(model)
    assert table.input_size == (3, 32, 32), f"input from the model's input_dim, got {table.input_size}"
    lightning = ModelSummary(model, max_depth=-1)
    assert table.params == lightning.total_parameters, (
        f"{table.params} parameters, Lightning's ModelSummary counts {lightning.total_parameters}"
    )
    conv = table.rows[0]
    assert (conv.name, conv.output_shape, conv.params) == ("net.conv1", (32, 32, 32), 32 * (3 * 7 * 7 + 1))


def test_cli_summary_prints_and_writes_json_and_figure(tmp_path: Path, capsys) -> None:
    config = CONFIGS / "two_layer_default.yaml"
    status = main(
        ["summary", "--config", str(config), "--out", str(tmp_path), "--json", str(tmp_path / "s.json")]
    )
    assert status == 0, f"cs231n summary returned {status}"
    out = capsys.readouterr().out
    header = f"{config}: FullyConnectedNet, ops manual\n"
    assert out.startswith(header), f"the header must name the model's ops:\n{out}"
    assert "net.fc1" in out and "307,300" in out, (
        f"the table must list fc1 and its 3072*100+100 params:\n{out}"
    )
    payload = json.loads((tmp_path / "s.json").read_text())
    assert payload == json.loads((tmp_path / "summary.json").read_text()), "--json and --out must agree"
    assert [r["name"] for r in payload["rows"]] == ["net.flatten", "net.fc1", "net.relu1", "net.fc2"]
    assert payload["totals"]["params"] == 3072 * 100 + 100 + 100 * 10 + 10, f"totals: {payload['totals']}"
    assert (tmp_path / "summary.png").stat().st_size > 0, "summary.png not written"


def test_cli_summary_model_overrides(capsys) -> None:
    config = CONFIGS / "fc_net_tuned.yaml"
    status = main(["summary", "--config", str(config), "--model.init_args.hidden_dims", "[7]"])
    assert status == 0, f"cs231n summary returned {status}"
    out = capsys.readouterr().out
    assert "net.fc2" in out and "net.fc3" not in out, f"hidden_dims [7] gives two affine layers:\n{out}"
