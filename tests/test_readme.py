"""The README's operator table is the one :func:`custom_ops.registry.ops_table` renders from the runtime
facts, and the docs' count of registry cases holds."""

from __future__ import annotations

import re
from pathlib import Path

from custom_ops.registry import OPS, ops_table
from custom_ops.testing import OP_CASES

README = Path(__file__).resolve().parents[1] / "README.md"
OPS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "ops" / "index.md"
MARKER = "<!-- ops-table"


def readme_ops_table() -> list[str]:
    """The lines of the table after the ``ops-table`` marker, up to the first line not in the table."""
    lines = README.read_text().split(MARKER, 1)[1].splitlines()[1:]
    end = next((i for i, line in enumerate(lines) if not line.startswith("|")), len(lines))
    return lines[:end]


def test_readme_ops_table_is_the_rendered_one() -> None:
    """Row by row, so that a failure names the op whose facts and README row differ."""
    assert MARKER in README.read_text(), f"README has no {MARKER} marker before the operator table"
    have, want = readme_ops_table(), ops_table().splitlines()
    for line, (row, expected) in enumerate(zip(have, want)):
        assert row == expected, (
            f"README op table line {line + 1} differs from custom_ops.registry.ops_table() (regenerate it: "
            f"python -c 'from custom_ops.registry import ops_table; print(ops_table())'):\n"
            f"  README: {row}\n  facts:  {expected}"
        )
    assert len(have) == len(want), (
        f"README op table has {len(have) - 2} rows, custom_ops.registry.OPS {len(OPS)} ops: "
        f"regenerate it with custom_ops.registry.ops_table()"
    )


def test_docs_case_count_holds() -> None:
    found = re.search(r"OP_CASES`, (\d+)\+ cases", OPS_PAGE.read_text())
    assert found, f"{OPS_PAGE} no longer states the number of registry cases (OP_CASES`, N+ cases)"
    count = int(found.group(1))
    assert len(OP_CASES) >= count, f"docs/ops/index.md promises {count}+ registry cases, not {len(OP_CASES)}"
