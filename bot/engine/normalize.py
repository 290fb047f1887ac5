"""Text normalisation for matching, the knowledge base's own (``bot.knowledge.model``): the
validator compares words exactly as the engine will, without importing the engine."""

from __future__ import annotations

from bot.knowledge.model import normalize

__all__ = ["normalize"]
