"""Smoke test of the benchmark: it runs on tiny shapes and reports every registered operator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from custom_ops.registry import OP_NAMES
from custom_ops.testing import SANDWICHES
from torch_cs231n.tools import bench


def test_bench_tiny_reports_every_op_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bench.json"
    status = bench.main(["--tiny", "--repeats", "1", "--no-e2e", "--json", str(path)])
    assert status == 0, f"bench.main returned {status}"
    payload = json.loads(path.read_text())
    rows = payload["rows"]
    missing = set(OP_NAMES) - {row["name"] for row in rows}
    assert not missing, f"ops missing from the benchmark output: {sorted(missing)}"
    conv_labels = {row["label"].split("-")[0] for row in rows if row["name"] == "conv2d"}
    assert {"fast", "im2col"} <= conv_labels, f"both conv algorithms must appear, got {conv_labels}"
    for row in rows:
        for key in ("fwd_manual", "fwd_builtin", "fwdbwd_manual", "fwdbwd_builtin"):
            assert row[key] > 0, f"{row['name']}[{row['label']}]: {key} is {row[key]!r}, expected a time > 0"
        assert set(row["ratios"]) >= {"fwd", "fwdbwd", "saved"}, f"ratios missing in {row}"
    table = capsys.readouterr().out
    assert all(op in table for op in OP_NAMES), "the terminal table must name every op"
    sandwich_rows = [row for row in rows if row["name"] in SANDWICHES]
    assert {row["name"] for row in sandwich_rows} == set(SANDWICHES), "a sandwich layer is missing"
    for row in sandwich_rows:  # against the built-in chain, and the chain of manual ops beside it
        assert row["fwdbwd_chain"] > 0 and "fwdbwd_chain" in row["ratios"], f"no manual-chain time: {row}"
    assert payload["fused"] in (True, False), "the JSON must say whether the fused kernels ran"
    fused_rows = [row for row in rows if row["fused"]]
    assert fused_rows and all(row["fwdbwd_eager"] > 0 for row in fused_rows), "no eager reference times"


def test_bench_json_to_stdout_and_e2e_rows(capsys: pytest.CaptureFixture[str]) -> None:
    status = bench.main(
        ["--tiny", "--repeats", "1", "--no-fused", "--op", "relu", "--e2e-models", "fc_net", "--json", "-"]
    )
    assert status == 0, f"bench.main returned {status}"
    payload = json.loads(capsys.readouterr().out)
    assert payload["date"] and payload["machine"], "the JSON must record when and where it ran"
    kinds = [(row["kind"], row["name"]) for row in payload["rows"]]
    assert ("e2e", "fc_net") in kinds, f"expected an fc_net end-to-end row, got {kinds}"
    for row in (row for row in payload["rows"] if row["kind"] == "e2e"):  # a whole step, named as one
        assert row["train_step_manual"] > 0 and row["train_step_builtin"] > 0, f"no training-step time: {row}"
        assert row["fwdbwd_manual"] is None and "train_step" in row["ratios"], f"e2e row named fwdbwd: {row}"
    assert all(name == "relu" for kind, name in kinds if kind == "op"), f"--op relu ignored: {kinds}"


def test_bench_rejects_unknown_op(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--op", "not_an_op"])
    assert "unknown op not_an_op" in capsys.readouterr().err


def test_bench_deprecated_ops_option_still_selects_ops(capsys: pytest.CaptureFixture[str]) -> None:
    """``--ops`` (op names) is the deprecated old name of ``--op`` for one release: it warns naming ``--op``,
    and giving both is refused."""
    with pytest.warns(FutureWarning, match="'--ops'.*deprecated.*use '--op'"):
        status = bench.main(
            ["--tiny", "--repeats", "1", "--no-fused", "--ops", "relu", "--no-e2e", "--json", "-"]
        )
    assert status == 0, f"bench.main returned {status}"
    names = {row["name"] for row in json.loads(capsys.readouterr().out)["rows"]}
    assert names == {"relu"}, f"--ops relu ran {sorted(names)}"
    with pytest.raises(SystemExit):
        bench.main(["--ops", "relu", "--op", "linear"])
    assert "give only --op" in capsys.readouterr().err
