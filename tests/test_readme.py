"""The README's operator table stays true to the registry."""

from __future__ import annotations

import re
from pathlib import Path

from custom_ops.registry import OP_CASES, OPS

README = Path(__file__).resolve().parents[1] / "README.md"


def ops_table() -> dict[str, str]:
    """op name -> its "double backward" cell, from the table after the ``ops-table`` marker."""
    lines = README.read_text().split("<!-- ops-table", 1)[1].splitlines()[1:]
    rows = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[re.match(r"`(\w+)`", cells[0]).group(1)] = cells[-1]
    return rows


def test_readme_lists_every_registered_op_once() -> None:
    assert sorted(ops_table()) == sorted(OPS), "README op table and custom_ops.registry list different ops"


def test_readme_double_backward_column_matches_the_ops() -> None:
    for op, cell in ops_table().items():
        supported = all(case.double_backward for case in OP_CASES if case.op == op)
        assert cell.startswith("yes" if supported else "no"), f"README: {cell!r} for {op}'s double backward"
