"""The README's operator table, row by row, and the docs' count of registry cases stay true to the specs."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from custom_ops.registry import OP_CASES, SPECS
from custom_ops.spec import OpSpec

README = Path(__file__).resolve().parents[1] / "README.md"
OPS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "ops" / "index.md"


def ops_table() -> dict[str, list[str]]:
    """op name -> the cells of its row, from the table after the ``ops-table`` marker."""
    lines = README.read_text().split("<!-- ops-table", 1)[1].splitlines()[1:]
    rows = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows[re.match(r"`(\w+)`", cells[0]).group(1)] = cells
    return rows


def twin_name(fn: Callable[..., Any]) -> str:
    """How the README names a built-in twin: ``F.conv2d``, ``torch.sigmoid``, or its function name."""
    for prefix, namespace in (("F", F), ("torch", torch)):
        if getattr(namespace, fn.__name__, None) is fn:
            return f"{prefix}.{fn.__name__}"
    return fn.__name__


def expected_cells(spec: OpSpec) -> list[str]:
    """The row of ``spec``; the built-in cell may go on after the twin's name (e.g. what it computes)."""
    modules = ", ".join(f"`{cls.__name__}`" for cls in dict.fromkeys(c.manual for c in spec.modules))
    return [
        f"`{spec.name}`" + (f" ({spec.features})" if spec.features else ""),
        modules or "—",
        f"`{twin_name(spec.builtin)}`",
        spec.backward,
        "yes" if spec.double_backward else "no (`once_differentiable`)",
    ]


def test_readme_lists_every_spec_once() -> None:
    assert list(ops_table()) == list(SPECS), "README op table and custom_ops.registry.SPECS list other ops"


@pytest.mark.parametrize("name", list(SPECS))
def test_readme_row_matches_the_spec(name: str) -> None:
    row = ops_table().get(name)
    assert row is not None, f"README op table has no row for {name}"
    expected = expected_cells(SPECS[name])
    columns = ("op", "module", "built-in twin", "backward", "double backward")
    for column, cell, want in zip(columns, row, expected, strict=True):
        matches = cell.startswith(want) if column == "built-in twin" else cell == want
        assert matches, f"README {name} row, {column}: {cell!r}, the spec says {want!r}"


def test_docs_case_count_holds() -> None:
    found = re.search(r"OP_CASES`, (\d+)\+ cases", OPS_PAGE.read_text())
    assert found, f"{OPS_PAGE} no longer states the number of registry cases (OP_CASES`, N+ cases)"
    count = int(found.group(1))
    assert len(OP_CASES) >= count, f"docs/ops/index.md promises {count}+ registry cases, not {len(OP_CASES)}"
