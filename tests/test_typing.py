"""``Any`` only at the edges: where data is untyped because it comes from outside (a request
body before validation, a library's untyped API) and nowhere else.

Every use of ``Any`` is found in the syntax tree, aliases (``from typing import Any as A``,
``typing.Any``) and string annotations included. A module outside :data:`EDGES` using it, or
an edge module using it more often than listed, fails the test, so the count cannot creep
back into the engine, the application layer or storage; an entry no longer needed fails
too, so the list only shrinks.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

from tests.harness.paths import ROOT

#: Modules allowed to say ``Any``: how many times at most, and why the value really has no
#: type there. Everything else in ``bot/`` (engine, knowledge, app, storage…) has none.
EDGES: dict[str, tuple[int, str]] = {
    "bot/channels/http/openapi.py": (8, "the OpenAPI document: pydantic's JSON schemas, assembled"),
    "bot/channels/http/schemas.py": (2, "pydantic fields holding a stored JSON body as it is"),
    "bot/channels/telegram/channel.py": (6, "python-telegram-bot's Application generics"),
    "bot/adapters/charts.py": (3, "matplotlib's Agg canvas methods are untyped"),
}


def any_uses(source: str, filename: str = "<string>") -> Iterator[int]:
    """The line of each use of ``Any`` in ``source`` (imports excluded)."""
    tree = ast.parse(source, filename)
    names = {"Any"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("typing", "typing_extensions"):
            names |= {a.asname for a in node.names if a.name == "Any" and a.asname}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Name) and node.id in names) or (
            isinstance(node, ast.Attribute) and node.attr == "Any"
        ):
            yield node.lineno
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            try:  # a string annotation ("asyncio.Future[Any]"); prose does not parse
                inner = ast.parse(node.value, mode="eval")
            except SyntaxError:
                continue
            if any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(inner)):
                yield node.lineno


@functools.cache
def uses_by_module(root: Path = ROOT) -> dict[str, list[int]]:
    """Every use of ``Any`` under ``bot/``, by module (computed once, by the first test that
    asks: not at import, which every pytest worker does)."""
    found: dict[str, list[int]] = {}
    for path in sorted((root / "bot").rglob("*.py")):
        lines = list(any_uses(path.read_text(encoding="utf-8"), str(path)))
        if lines:
            found[path.relative_to(root).as_posix()] = lines
    return found


def test_any_is_used_only_in_the_edge_modules() -> None:
    outside = {module: lines for module, lines in uses_by_module().items() if module not in EDGES}
    assert outside == {}, "type these (JsonValue, a TypedDict, a dataclass, object, a Protocol)"


def test_no_edge_module_uses_it_more_than_it_needs() -> None:
    uses = uses_by_module().items()
    more = {m: len(lines) for m, lines in uses if m in EDGES and len(lines) > EDGES[m][0]}
    assert more == {}


def test_each_edge_module_still_needs_its_entry() -> None:
    assert [module for module in EDGES if module not in uses_by_module()] == []


def test_the_counter_sees_every_spelling_of_any() -> None:
    source = (
        "from typing import Any, Any as Loose\n"
        "import typing\n"
        "x: Any = 1\n"
        "def f(y: Loose) -> typing.Any: ...\n"
        'Job = tuple[int, "asyncio.Future[Any] | None"]\n'
        '"""Any page may call the API."""\n'
        "# Any other command\n"
        "y: object = 2\n"
    )
    assert sorted(any_uses(source)) == [3, 4, 4, 5]
