"""The package map stays layered (docs/decisions/0014-package-layers.md).

Three rules, checked on the import graph grimp builds from the source:

1. A module imports only from its own layer or the layers below it (LAYERS, top first). Siblings
   in one layer marked independent do not import each other.
2. No import cycle between modules.
3. No private name (``_x``) is imported from another module.

Imports under ``if TYPE_CHECKING:`` are left out of rules 1 and 2, as import-linter's
``exclude_type_checking_imports`` does: an annotation may name a higher layer's type (analytics
functions take the ``Ledger``), but no code runs an import upward.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import grimp
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "fleetledger"

#: Top first. A tuple is one layer; ``independent`` siblings may not import each other.
LAYERS: list[tuple[tuple[str, ...], bool]] = [
    (("cli",), False),
    (("demo", "testing"), True),
    (("server", "sdk"), True),
    (("gateway",), False),
    (("ledger",), False),
    (("reports",), False),
    (("analytics", "reconciliation"), True),
    (("alerts", "budgets", "access"), True),
    (("ingest",), False),
    (("pricing",), False),
    (("storage",), False),
    (("core",), False),
]

#: The migration environment loads every table declaration to compare them with the migrations;
#: it is Alembic's entry point, not part of the storage layer's API.
ENTRY_POINTS = {"fleetledger.storage.migrations.env"}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, exclude_type_checking_imports=True)


def _layer_of(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package root re-exports the public names
    for index, (names, _) in enumerate(LAYERS):
        if parts[1] in names:
            return index
    return None


def test_every_subpackage_has_a_layer(graph: grimp.ImportGraph) -> None:
    top = {module.split(".")[1] for module in graph.modules if module.count(".") >= 1}
    assert {name for name in top if _layer_of(f"{PACKAGE}.{name}") is None} == set()


def test_no_module_imports_upward(graph: grimp.ImportGraph) -> None:
    problems = []
    for module in sorted(graph.modules):
        if module in ENTRY_POINTS:
            continue
        mine = _layer_of(module)
        if mine is None:
            continue
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            theirs = _layer_of(imported)
            if theirs is None:
                if imported == PACKAGE:
                    problems.append(f"{module} imports the package root {PACKAGE}")
                continue
            own_top, other_top = module.split(".")[1], imported.split(".")[1]
            if theirs < mine:
                problems.append(f"{module} imports {imported} (a higher layer)")
            elif theirs == mine and own_top != other_top and LAYERS[mine][1]:
                problems.append(f"{module} imports {imported} (independent siblings)")
    assert problems == []


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(modules)))

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    try:
        for module in modules:
            if module not in index:
                visit(module)
    finally:
        sys.setrecursionlimit(limit)
    return found


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("p.a", "p.b", "p.c"):
        graph.add_module(name)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.a")
    graph.add_import(importer="p.c", imported="p.a")
    assert _cycles(graph) == [["p.a", "p.b"]]


def _source_files() -> list[tuple[str, Path]]:
    files = []
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        files.append((module, path))
    return files


def _private_imports(module: str, source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != PACKAGE or node.module == module:
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{module}: from {node.module} import {alias.name}")
    return found


def test_no_private_name_is_imported_from_another_module() -> None:
    problems = []
    for module, path in _source_files():
        problems.extend(_private_imports(module, path.read_text()))
    assert problems == []


def test_the_private_import_check_sees_one() -> None:
    assert _private_imports("fleetledger.a", "from fleetledger.b import _hidden, shown\n") == [
        "fleetledger.a: from fleetledger.b import _hidden"
    ]


def test_no_relative_imports() -> None:
    """Absolute imports only, so a moved module is found by a search for its name."""
    relative = []
    for module, path in _source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                relative.append(f"{module}:{node.lineno}")
    assert relative == []


#: A module is split along its concepts before it grows past this (the migrations repeat their
#: column lists so that each one stands alone, and are left out).
MAX_LINES = 800


def test_no_module_is_too_long() -> None:
    long = []
    for module, path in _source_files():
        if ".migrations.versions." in module:
            continue
        lines = path.read_text().count("\n")
        if lines > MAX_LINES:
            long.append(f"{module}: {lines} lines")
    assert long == []
