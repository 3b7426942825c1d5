"""Check a built site: every public name of the operator packages has a rendered entry, and every internal
link resolves (the file exists, and so does the anchor it names). No network: external links are not
followed.

    python docs/check_site.py docs/_build/html      # `make docs` runs it after the build

Exit status 0 when all is well, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

EXTERNAL = ("http:", "https:", "mailto:", "javascript:", "data:", "ftp:")


class _Page(HTMLParser):
    """The ids (and ``name`` anchors) of one HTML page and the targets of its links."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for key in ("id", "name"):
            if values.get(key) and (key == "id" or tag == "a"):
                self.ids.add(values[key])
        if tag in ("a", "link") and values.get("href"):
            self.links.append(values["href"])
        if tag in ("img", "script") and values.get("src"):
            self.links.append(values["src"])


def read_site(site: Path) -> dict[Path, _Page]:
    """Every HTML page under ``site``, parsed (not the theme's templates in ``_static/``)."""
    pages = {}
    for path in sorted(site.rglob("*.html")):
        if path.relative_to(site).parts[0] == "_static":
            continue
        page = _Page()
        page.feed(path.read_text(encoding="utf-8", errors="replace"))
        pages[path.resolve()] = page
    return pages


def broken_links(site: Path, pages: dict[Path, _Page] | None = None) -> list[str]:
    """``"page: href"`` for each internal link whose file or anchor does not exist."""
    pages = read_site(site) if pages is None else pages
    problems = []
    for path, page in pages.items():
        for href in page.links:
            if href.startswith(EXTERNAL) or href.startswith("//"):
                continue
            parts = urlsplit(href)
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{path.relative_to(site.resolve())}: {href} (no such file)")
                continue
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else set()
                if fragment not in ids:
                    problems.append(f"{path.relative_to(site.resolve())}: {href} (no anchor #{fragment})")
    return problems


def missing_entries(site: Path, names: Iterable[str], pages: dict[Path, _Page] | None = None) -> list[str]:
    """The qualified names (``custom_ops.functional.relu``) that no page has an entry (an id) for."""
    pages = read_site(site) if pages is None else pages
    ids = set().union(*(page.ids for page in pages.values())) if pages else set()
    return [name for name in names if name not in ids]


def public_names() -> list[str]:
    """Every public name of ``custom_ops.functional`` and ``custom_ops.nn``, qualified."""
    import custom_ops.functional as MF
    import custom_ops.nn as MN

    return [f"custom_ops.functional.{n}" for n in MF.__all__] + [f"custom_ops.nn.{n}" for n in MN.__all__]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print(
            "usage: python docs/check_site.py SITE_DIR (a built site, e.g. docs/_build/html)", file=sys.stderr
        )
        return 2
    site = Path(args[0])
    pages = read_site(site)
    problems = [f"no rendered entry for {name}" for name in missing_entries(site, public_names(), pages)]
    problems += [f"broken link in {link}" for link in broken_links(site, pages)]
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"checked {len(pages)} pages: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
