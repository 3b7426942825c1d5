"""``torch_cs231n.tools.command``: ``--json -`` means stdout for every tool that has ``--json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_modules.dispatcher import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

TOOLS = {
    "bench": ["bench", "--tiny", "--repeats", "1", "--no-fused", "--op", "relu", "--no-e2e"],
    "gradcheck": ["gradcheck", "--op", "linear"],
    "summary": ["summary", "--config", str(CONFIGS / "two_layer_default.yaml")],
    "experiment": ["experiment", "activations", "--depth", "2", "--width", "16", "--batch", "4"],
}


@pytest.mark.parametrize("tool", TOOLS)
def test_json_dash_is_stdout_for_every_tool(tool, tmp_path, monkeypatch, capsys) -> None:
    """stdout holds the JSON alone (the table goes to stderr), and no file named ``-`` is written."""
    monkeypatch.chdir(tmp_path)
    status = main([*TOOLS[tool], "--json", "-"])
    # gradcheck exits 1 when a check fails (its JSON says which); here only the output's place matters
    assert status in ((0, 1) if tool == "gradcheck" else (0,)), f"cs231n {tool} --json - returned {status}"
    out, err = capsys.readouterr()
    try:
        payload = json.loads(out)
    except json.JSONDecodeError as failure:
        pytest.fail(f"cs231n {tool} --json -: stdout is not the JSON alone ({failure}):\n{out[:500]}")
    assert isinstance(payload, dict) and payload, f"cs231n {tool}: empty JSON"
    assert err.strip(), f"cs231n {tool} --json -: the table must go to stderr"
    assert not (tmp_path / "-").exists(), f"cs231n {tool} --json - wrote a file named '-'"
