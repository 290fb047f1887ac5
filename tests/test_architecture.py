"""The arrows point inward, for every layer, and no import cycle exists among bot modules.

The module graph is read from every module's syntax tree, so an import inside a function (a
"lazy" import) counts like one at the top. Imports under ``if TYPE_CHECKING:`` count for the
layer rules (a type names a dependency) but not for cycles (they never run).
"""

from __future__ import annotations

import ast
import functools
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.harness.paths import ROOT

FORBIDDEN = ("telegram", "starlette", "uvicorn", "httpx", "aiosqlite", "sqlite3", "matplotlib",
             "bot.channels", "bot.storage", "bot.server", "bot.adapters.webhooks")  # fmt: skip

#: Imports that break a rule below today, each with the branch that removes it. An entry
#: covers the modules within its importer and imported names (a package split keeps it valid).
#: The test fails when an entry is no longer needed, so the list only shrinks: delete the entry
#: as its branch lands.
PENDING: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str  # a bot module, or a third-party/standard top-level package
    type_only: bool


def module_names(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the ``bot`` package by dotted name (a package by its ``__init__``)."""
    names: dict[str, Path] = {}
    for path in sorted((root / "bot").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside.update(id(child) for block in node.body for child in ast.walk(block))
    return inside


def edges(modules: dict[str, Path]) -> Iterator[Edge]:
    """Each import of each module, resolved to the bot module it loads (``from a import b``
    is ``a.b`` when that is a module) or to the outside package's top-level name."""

    def target(name: str) -> str:
        return name if name.split(".")[0] == "bot" else name.split(".")[0]

    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        type_only = _type_checking_nodes(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Edge(name, target(alias.name), id(node) in type_only)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([base] if base else [])])
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    yield Edge(
                        name, full if full in modules else target(base), id(node) in type_only
                    )


#: A module longer than this says why in its first :data:`REASON_WITHIN` lines (issue 12); a
#: channel module (a thin translator) is never longer.
MAX_LINES = 400
REASON = re.compile(r"(Over|Longer than) 400 lines on purpose: \w")
REASON_WITHIN = 12


def long_modules(modules: dict[str, Path]) -> dict[str, tuple[int, bool]]:
    """Each module over :data:`MAX_LINES` lines: its length, and whether its top says why."""
    found: dict[str, tuple[int, bool]] = {}
    for name, path in modules.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > MAX_LINES:
            top = " ".join(" ".join(lines[:REASON_WITHIN]).split())
            found[name] = (len(lines), REASON.search(top) is not None)
    return found


def within(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


#: Leaf modules every layer may import: types only (the JSON value types, which the engine's
#: sessions and events are made of and storage keeps), no behaviour of any layer.
LEAVES = ("bot.json_types",)

#: (who, rule, is the import forbidden?) for every layer.
RULES: tuple[tuple[str, str, Callable[[str], bool]], ...] = (
    (
        "bot.engine",
        "the engine imports only bot.engine, bot.knowledge.model and bot.json_types",
        lambda m: (
            m.startswith("bot") and not within(m, "bot.engine", "bot.knowledge.model", *LEAVES)
        ),
    ),
    (
        "bot.knowledge",
        "knowledge imports only bot.knowledge and bot.json_types (never the engine)",
        lambda m: m.startswith("bot") and not within(m, "bot.knowledge", *LEAVES),
    ),
    (
        "bot.json_types",
        "bot.json_types is a leaf: it imports no bot module",
        lambda m: m.startswith("bot"),
    ),
    (
        "bot.app",
        "app imports no channel, server, CLI, web, Telegram, database or HTTP client library",
        lambda m: (
            within(m, "bot.channels", "bot.server", "bot.cli")
            or m in ("starlette", "uvicorn", "telegram", "aiosqlite", "sqlite3", "httpx", "psycopg")
        ),
    ),
    (
        "bot.storage",
        "storage imports no app, config, channel, server or CLI",
        lambda m: within(m, "bot.app", "bot.config", "bot.channels", "bot.server", "bot.cli"),
    ),
    (
        "bot.channels",
        "channels import only the storage contracts (bot.storage.base), not bot.server or the CLI",
        lambda m: (
            (within(m, "bot.storage") and m != "bot.storage.base")
            or within(m, "bot.server", "bot.cli")
        ),
    ),
    (
        "bot.server",
        "the server assembles the parts it is given: no CLI, no Telegram part, no concrete store",
        lambda m: (
            within(m, "bot.cli", "bot.channels.telegram", "telegram")
            or (within(m, "bot.storage") and m != "bot.storage.base")
        ),
    ),
)


def violations(found: Iterable[Edge]) -> dict[tuple[str, str], str]:
    broken: dict[tuple[str, str], str] = {}
    for edge in found:
        for layer, rule, forbidden in RULES:
            if within(edge.importer, layer) and forbidden(edge.imported):
                broken[(edge.importer, edge.imported)] = rule
    return broken


def runtime_graph(found: Iterable[Edge]) -> dict[str, set[str]]:
    """bot module -> the bot modules it imports when it runs (a module's own parent package,
    which Python initialises first anyway, is not an edge)."""
    graph: dict[str, set[str]] = {}
    for edge in found:
        if edge.type_only or not edge.imported.startswith("bot"):
            continue
        if edge.importer == edge.imported or edge.importer.startswith(edge.imported + "."):
            continue
        graph.setdefault(edge.importer, set()).add(edge.imported)
    return graph


def reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen: set[str] = set()
    todo = [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo += graph.get(node, ())
    return False


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles, one per strongly connected group of modules (Tarjan), each as the
    modules of the group in order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while (member := stack.pop()) != node:
                group.append(member)
            group.append(node)
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def covered(pair: tuple[str, str], entries: Iterable[tuple[str, str]]) -> bool:
    """Whether an import (importer, imported) is one of the ``entries``' exceptions."""
    return any(within(pair[0], a) and within(pair[1], b) for a, b in entries)


def without(graph: dict[str, set[str]], removed: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    drop = list(removed)
    return {a: {b for b in bs if not covered((a, b), drop)} for a, bs in graph.items()}


@functools.cache
def all_edges() -> list[Edge]:
    """Every import of ``bot/`` (parsed once, by the first test that asks: not at import,
    which every pytest worker does)."""
    return list(edges(module_names()))


def test_every_layer_imports_only_inward() -> None:
    broken = {
        pair: rule for pair, rule in violations(all_edges()).items() if not covered(pair, PENDING)
    }
    assert broken == {}


def test_no_import_cycle_among_bot_modules_lazy_imports_included() -> None:
    assert cycles(without(runtime_graph(all_edges()), PENDING)) == []


def test_each_pending_exception_is_still_needed() -> None:
    """An entry is needed while its import exists and breaks a rule or closes a cycle."""
    broken = violations(all_edges())
    graph = runtime_graph(all_edges())
    unneeded = []
    for entry in PENDING:
        others = without(graph, [p for p in PENDING if p != entry])
        imports = [(a, b) for a, bs in others.items() for b in bs if covered((a, b), [entry])]
        breaks_rule = any(covered(pair, [entry]) for pair in broken)
        closes_cycle = any(reaches(others, b, a) for a, b in imports)
        if not breaks_rule and not closes_cycle:
            unneeded.append(entry)
    assert unneeded == [], "remove these entries from PENDING: their import is gone or allowed"


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The graph is only as good as its parsing: a function-level import, a relative one and a
    ``TYPE_CHECKING`` one are all found, and a two-module cycle through a lazy import is one."""
    package = tmp_path / "bot" / "pkg"
    package.mkdir(parents=True)
    (tmp_path / "bot" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from bot.pkg import b\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nfrom . import a\nif TYPE_CHECKING:\n    import sqlite3\n"
    )
    found = set(edges(module_names(tmp_path)))
    assert Edge("bot.pkg.a", "bot.pkg.b", False) in found
    assert Edge("bot.pkg.b", "bot.pkg.a", False) in found
    assert Edge("bot.pkg.b", "sqlite3", True) in found
    assert cycles(runtime_graph(found)) == [["bot.pkg.a", "bot.pkg.b"]]


def test_every_module_over_400_lines_says_why_at_its_top() -> None:
    unexplained = {name: n for name, (n, why) in long_modules(module_names()).items() if not why}
    assert unexplained == {}, "split these, or write « Over 400 lines on purpose: … » at the top"


def test_no_channel_module_is_over_400_lines() -> None:
    """Channels only translate: a long one holds something that belongs in bot.app, or a
    concept of its own (a module of the channel's package)."""
    long = {
        n: size
        for n, (size, _) in long_modules(module_names()).items()
        if within(n, "bot.channels")
    }
    assert long == {}


def test_the_length_check_reads_the_reason_at_the_top_only(tmp_path: Path) -> None:
    (tmp_path / "bot").mkdir()
    filler = "x = 1\n" * MAX_LINES
    (tmp_path / "bot" / "short.py").write_text(filler)
    (tmp_path / "bot" / "why.py").write_text("# Over 400 lines on purpose: one table.\n" + filler)
    (tmp_path / "bot" / "late.py").write_text(filler + "# Over 400 lines on purpose: late.\n")
    assert long_modules(module_names(tmp_path)) == {
        "bot.late": (MAX_LINES + 1, False),
        "bot.why": (MAX_LINES + 1, True),
    }


def test_engine_imports_nothing_outside_the_core() -> None:
    code = (
        "import sys, pkgutil, importlib, bot.engine\n"
        "for m in pkgutil.iter_modules(bot.engine.__path__): "
        "importlib.import_module('bot.engine.' + m.name)\n"
        "print('\\n'.join(sorted(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    loaded = result.stdout.split()
    assert "bot.engine.flow" in loaded
    leaks = [m for m in loaded if m.split(".")[0] in FORBIDDEN or m.startswith(FORBIDDEN)]
    assert leaks == []
