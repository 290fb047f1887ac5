"""The safety net: distress words are answered first with crisis numbers, at any step.

Phrases come from ``contenus/safety.yaml`` and are matched word by word in order, each word
allowing a typo, so "envi de mourrir" is caught while "je veux finir le questionnaire" is not.
The engine never blocks and never diagnoses: it answers kindly and offers to continue.
"""

from __future__ import annotations

from functools import lru_cache

from rapidfuzz import fuzz

from bot.engine.normalize import normalize
from bot.knowledge.model import KnowledgeBase, text


@lru_cache(maxsize=131072)
def _close(typed: str, known: str) -> bool:
    if typed == known:
        return True
    if len(known) <= 4:
        return False
    cutoff = 80.0 if len(known) <= 6 else 75.0
    return fuzz.ratio(typed, known) >= cutoff


def _contains(words: list[str], phrase: tuple[str, ...]) -> bool:
    size = len(phrase)
    for start in range(len(words) - size + 1):
        if all(_close(words[start + i], phrase[i]) for i in range(size)):
            return True
    return False


class Safety:
    """Phrase lists of one knowledge base, normalised once."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        safety = kb.safety
        self.distress = [tuple(normalize(p).split()) for p in safety.distress if normalize(p)]
        self.not_distress = [
            tuple(normalize(p).split()) for p in safety.not_distress if normalize(p)
        ]
        self.medical = [tuple(normalize(p).split()) for p in safety.medical if normalize(p)]
        self.vocabulary = sorted({w for p in [*self.distress, *self.not_distress] for w in p})
        self._near_cache: dict[str, frozenset[str]] = {}

    def _possible(self, words: list[str], phrases: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
        """The phrases whose every word is close to some typed word (a cheap first pass)."""
        present: set[str] = set()
        for word in set(words):
            present |= self._near(word)
        return [p for p in phrases if all(w in present for w in p)]

    def _near(self, typed: str) -> frozenset[str]:
        found = self._near_cache.get(typed)
        if found is None:
            found = frozenset(k for k in self.vocabulary if _close(typed, k))
            if len(self._near_cache) < 100_000:
                self._near_cache[typed] = found
        return found

    def is_distress(self, norm: str) -> bool:
        words = norm.split()
        candidates = self._possible(words, self.distress)
        if not any(_contains(words, phrase) for phrase in candidates):
            return False
        # A near-miss phrase cancels only the trigger it overlaps: remove it and look again.
        for phrase in self.not_distress:
            if _contains(words, phrase):
                words = _remove(words, phrase)
        return any(_contains(words, phrase) for phrase in self.distress)

    def is_medical(self, norm: str) -> bool:
        """Exact words only: a close spelling of « symptôme » is « lymphome », an answer."""
        padded = f" {norm} "
        return any(f" {' '.join(phrase)} " in padded for phrase in self.medical)

    def crisis_text(self, country: str | None, lang: str) -> str:
        safety = self.kb.safety
        crisis = self.kb.crisis
        code = country if country in crisis.countries else safety.default_country
        lines = [text(safety.crisis_title, lang), "", text(crisis.intro, lang), ""]
        entry = crisis.countries.get(code)
        if entry is not None:
            lines.append(f"{text(entry.name, lang)} :")
            lines += [f"• {n.number} — {text(n.label, lang)}" for n in entry.numbers]
        if country not in crisis.countries:
            lines += ["", text(safety.crisis_other_countries, lang)]
        lines += ["", text(safety.crisis_continue, lang)]
        return "\n".join(lines)


def _remove(words: list[str], phrase: tuple[str, ...]) -> list[str]:
    size = len(phrase)
    for start in range(len(words) - size + 1):
        if all(_close(words[start + i], phrase[i]) for i in range(size)):
            return [*words[:start], "·", *words[start + size :]]
    return words


def screen(raw: str) -> str:
    """Normalised text for screening: long messages are screened too (distress may be long)."""
    return normalize(raw[:20_000])
