"""``CHANGELOG.md`` beside the base: one section per version, newest first, starting with the
version of ``meta.yaml``, so an editor who bumps the version is reminded to say what changed.

Warnings only: the history is for people, the bot never reads it.
"""

from __future__ import annotations

import re
from pathlib import Path

from bot.knowledge.model import Location
from bot.knowledge.problems import Problem

#: A version heading: ``## 2.3.0 — 2026-12-01``.
HEADING = re.compile(r"^##\s+(\d+(?:\.\d+)*)\b")


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def check_changelog(path: Path, version: str) -> list[Problem]:
    """What makes ``path`` (``contenus/CHANGELOG.md``) read wrong for a base at ``version``."""
    if not path.is_file():
        return []  # a base of one's own (tests, an establishment's copy) may keep none
    headings = [
        (number, match.group(1))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if (match := HEADING.match(line))
    ]
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for (number, found), previous in zip(headings, [None, *headings], strict=False):
        where = Location(str(path), number)
        if found in seen:
            problems.append(
                Problem(
                    where,
                    f"la version {found} a déjà son paragraphe (ligne {seen[found]}) : "
                    "réunissez-les en un seul",
                    "warning",
                )
            )
        elif previous is not None and _key(found) > _key(previous[1]):
            problems.append(
                Problem(
                    where,
                    f"la version {found} est sous la {previous[1]} : la plus récente va en haut",
                    "warning",
                )
            )
        seen.setdefault(found, number)
    if not headings or headings[0][1] != version:
        line = headings[0][0] if headings else None
        problems.append(
            Problem(
                Location(str(path), line),
                f"le premier paragraphe doit être celui de la version {version} (meta.yaml) : "
                f"« ## {version} — AAAA-MM-JJ », puis ce qui a changé",
                "warning",
            )
        )
    return problems
