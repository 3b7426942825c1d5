"""The packages' structure: imports go one way (``custom_ops`` <- ``torch_cs231n`` <- ``lightning_modules``),
``custom_ops`` needs only torch, no module reaches into another package's private modules, and no import
cycle exists anywhere (function-level imports included: a lazy import still ties two modules together)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("custom_ops", "torch_cs231n", "lightning_modules")
LAYER = {name: i for i, name in enumerate(PACKAGES)}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imports(name: str) -> set[str]:
    """Every module ``name`` imports, at any level of its code, resolved to the project's modules where it
    names one (``from . import x`` -> the package's module ``x``) and to top-level names otherwise."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found.update(
                f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in MODULES
            )
    return found


GRAPH = {name: {t for t in imports(name) if t in MODULES and t != name} for name in MODULES}


def test_imports_go_one_way() -> None:
    wrong = [
        f"{name} imports {target}"
        for name, targets in sorted(GRAPH.items())
        for target in sorted(targets)
        if LAYER[target.split(".")[0]] > LAYER[name.split(".")[0]]
    ]
    assert not wrong, (
        "imports against the direction custom_ops <- torch_cs231n <- lightning_modules:\n" + "\n".join(wrong)
    )


def test_custom_ops_needs_only_torch() -> None:
    allowed = {"torch", "__future__", "custom_ops", *sys.stdlib_module_names}
    wrong = [
        f"{name} imports {target}"
        for name in sorted(MODULES)
        if name.startswith("custom_ops")
        for target in sorted(imports(name))
        if target.split(".")[0] not in allowed
    ]
    assert not wrong, "custom_ops must depend on torch only:\n" + "\n".join(wrong)


def test_no_private_module_of_another_package() -> None:
    wrong = [
        f"{name} imports {target}"
        for name, targets in sorted(GRAPH.items())
        for target in sorted(targets)
        if target.split(".")[0] != name.split(".")[0]
        and any(p.startswith("_") for p in target.split(".")[1:])
    ]
    assert not wrong, "modules reach into another package's private modules:\n" + "\n".join(wrong)


def cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    found = cycles()
    assert not found, "modules that import each other (directly or through others): " + "; ".join(
        " <-> ".join(c) for c in found
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_is_found(package: str) -> None:
    assert any(name.startswith(package + ".") for name in MODULES), (
        f"no module of {package} found under {ROOT}"
    )
