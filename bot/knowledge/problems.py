"""A problem of the knowledge base or the establishments file: where (file and line) and what
to fix, as an editor reads it (``contenus/roles.yaml:12: erreur: …``)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.knowledge.model import Location


@dataclass(frozen=True)
class Problem:
    location: Location
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        label = "erreur" if self.severity == "error" else "avertissement"
        return f"{self.location}: {label}: {self.message}"
