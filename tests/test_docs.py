"""The documentation site's sources cover every public operator name, and its checker finds what it must.

Building the site takes minutes (the walk-throughs run), so the build itself is ``make docs``, which CI
runs after the tests: ``sphinx-build -W`` (warnings are errors) and then ``docs/check_site.py`` on the
result. These tests check, without a build, that the pages generated from the code cover every public
name of ``custom_ops.functional`` and ``custom_ops.nn``, that the pages and the README point at files
that exist, and that the site checker reports a missing entry and a broken link.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

import custom_ops.functional as MF
import custom_ops.nn as MN

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


cs231n_docs = _load("cs231n_docs", DOCS / "_ext" / "cs231n_docs.py")
check_site = _load("check_site", DOCS / "check_site.py")


def test_every_functional_op_has_a_page() -> None:
    assert sorted(cs231n_docs.op_names()) == sorted(MF.__all__), "op pages and custom_ops.functional differ"


def test_every_module_twin_is_on_an_op_page() -> None:
    placed = [cls for classes in cs231n_docs.module_twins().values() for cls in classes]
    assert sorted(placed) == sorted(MN.__all__), (
        f"custom_ops.nn classes on no op page: {set(MN.__all__) - set(placed)}"
    )


@pytest.mark.parametrize("name", ["relu", "batch_norm"])
def test_an_op_page_documents_the_op_and_its_twins(name: str) -> None:
    classes = cs231n_docs.module_twins()[name]
    page = cs231n_docs.op_page(name, classes, [name])
    assert f".. autofunction:: custom_ops.functional.{name}" in page, page
    for cls in classes:
        assert f".. autoclass:: custom_ops.nn.{cls}" in page, page
    assert ".. literalinclude::" in page and "double backward" in page and "forward mode" in page, page


def test_the_measured_tables_render_from_their_json() -> None:
    bench = cs231n_docs.bench_markdown()
    assert "**command:** `cs231n bench" in bench and "**date:**" in bench and "**machine:**" in bench, bench[
        :400
    ]
    assert bench.count("\n| `") >= 20, "the benchmark table has almost no rows"
    coverage = cs231n_docs.coverage_markdown()
    assert "| resnet18 |" in coverage and "**date:**" in coverage, coverage[:400]
    tables = cs231n_docs.figure_tables()
    assert {"summary", "gradcheck", "optimizers", "dropout"} <= set(tables), sorted(tables)


def _local_targets(text: str) -> list[str]:
    """Relative link and image targets of markdown text (no URLs, no pure anchors)."""
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


@pytest.mark.parametrize(
    "page",
    [ROOT / "README.md", *sorted(DOCS.glob("*.md")), *sorted(DOCS.glob("guide/*.md"))],
    ids=lambda p: p.name,
)
def test_links_of_a_page_point_at_files(page: Path) -> None:
    generated = ("auto_examples/", "generated/", "api.html")  # written by the build
    for target in _local_targets(page.read_text()):
        if target.startswith(generated) or "/auto_examples/" in target:
            continue
        assert (page.parent / target).exists(), (
            f"{page.relative_to(ROOT)} links to {target}, which does not exist"
        )


def _site(tmp_path: Path, pages: dict[str, str]) -> Path:
    for name, body in pages.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"<html><body>{body}</body></html>")
    return tmp_path


def test_the_site_checker_finds_a_broken_link_and_a_missing_anchor(tmp_path: Path) -> None:
    site = _site(
        tmp_path,
        {
            "index.html": '<a href="ops/relu.html#custom_ops.functional.relu">relu</a>'
            ' <a href="gone.html">x</a> <a href="ops/relu.html#nowhere">y</a> <a href="https://example.org/">z</a>',
            "ops/relu.html": '<dt id="custom_ops.functional.relu">relu</dt><a href="../index.html">up</a>',
        },
    )
    problems = check_site.broken_links(site)
    assert len(problems) == 2, problems
    assert any("gone.html (no such file)" in p for p in problems), problems
    assert any("no anchor #nowhere" in p for p in problems), problems


def test_the_site_checker_finds_a_missing_entry(tmp_path: Path) -> None:
    site = _site(tmp_path, {"ops/relu.html": '<dt id="custom_ops.functional.relu">relu</dt>'})
    names = ["custom_ops.functional.relu", "custom_ops.nn.ReLU"]
    assert check_site.missing_entries(site, names) == ["custom_ops.nn.ReLU"]
    assert len(check_site.public_names()) == len(MF.__all__) + len(MN.__all__)
