"""Reading and breaking copies of the knowledge base: where a fragment is, what the validator
says, and a second version of the base for hot-reload tests."""

from __future__ import annotations

import re
from pathlib import Path

from bot.knowledge.loader import load_with_problems


def line_of(path: Path, fragment: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if fragment in line:
            return number
    raise AssertionError(f"{fragment!r} not in {path}")


def errors(directory: Path) -> list[str]:
    _, problems = load_with_problems(directory)
    return [str(p) for p in problems if p.severity == "error"]


def version_b(directory: Path, *, valid: bool = True) -> None:
    """Edit a copy of the base: the question ``recul`` is renamed (so a conversation waiting
    on it finds it gone); ``valid=False`` removes it instead, which the validator refuses."""
    flow = directory / "flow.yaml"
    text = flow.read_text(encoding="utf-8")
    if valid:
        text = text.replace("\n  recul:\n", "\n  recul_v2:\n").replace(
            "    next: recul\n", "    next: recul_v2\n"
        )
    else:
        lines = text.split("\n")
        start, end = lines.index("  recul:"), lines.index("  envie:")
        text = "\n".join(lines[:start] + lines[end:]).replace("next: recul\n", "next: envie\n")
    flow.write_text(text, encoding="utf-8")
    meta = directory / "meta.yaml"
    meta.write_text(
        re.sub(r"version: .*", "version: 9.9.9", meta.read_text(encoding="utf-8"), count=1),
        encoding="utf-8",
    )
