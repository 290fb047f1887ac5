"""The understanding corpus: natural utterances, each with what the bot should take from it.

A corpus file (``tests/understanding/*.yaml``) names a question, the buttons that lead there,
and utterances typed at that question with the facts expected (fact name -> value id, plus
``condition`` and ``place``), or an ``outcome`` (``unknown``, ``why``, ``smalltalk``,
``glossary``, ``command``, ``crisis``, ``medical``, ``ambiguous``, ``missed``). Played by pytest,
``passerelle kb test`` and ``bench/understanding.py``.

What counts: the facts the turn *added or changed* must be exactly the expected ones. A turn
that took facts that were not expected is *wrong*; it is *silently wrong* if the bot did not say
back what it understood (« J'ai compris : … », with « Ce n'est pas ça »).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.engine.flow import Engine, Turn
from bot.engine.session import UNKNOWN, Input, Session
from bot.knowledge.model import text

Outcome = Literal[
    "answer", "unknown", "why", "smalltalk", "glossary", "command", "crisis", "medical",
    "ambiguous", "missed", "nothing",
]  # fmt: skip


#: Facts that name a lexicon entry rather than a choice.
NAMED = ("condition", "place")


class Utterance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    understood: dict[str, str] = {}
    outcome: Outcome | None = None
    note: str = ""


class CorpusFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    #: The question asked when the utterance is typed.
    at: str
    #: Buttons pressed from the start to reach it (choice ids, in order).
    path: list[str] = []
    utterances: list[Utterance] = Field(min_length=1)


@dataclass
class Result:
    file: str
    at: str
    utterance: Utterance
    got: dict[str, str]
    outcome: str
    said_back: bool
    seconds: float = 0.0

    @property
    def expected_outcome(self) -> str:
        if self.utterance.outcome:
            return self.utterance.outcome
        return "answer" if self.utterance.understood else "nothing"

    @property
    def compared(self) -> dict[str, str]:
        """The facts taken, without the named condition or place unless they are expected
        (their ids belong to the lexicons; the category and territory are what count)."""
        expected = self.utterance.understood
        return {k: v for k, v in self.got.items() if k not in NAMED or k in expected}

    @property
    def ok(self) -> bool:
        if self.compared != self.utterance.understood:
            return False
        expected = self.expected_outcome
        if expected == "nothing":
            return self.outcome in ("missed", "nothing", "smalltalk")
        if expected == "answer":
            return True
        return self.outcome == expected

    @property
    def wrong(self) -> bool:
        """Facts were taken that the person did not give."""
        return any(self.utterance.understood.get(k) != v for k, v in self.compared.items())

    @property
    def silently_wrong(self) -> bool:
        return self.wrong and not self.said_back


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if not r.ok]


def load_corpus(path: Path) -> CorpusFile:
    data: object = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        return CorpusFile.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{path}: corpus invalide : {exc}") from exc


def reach(engine: Engine, corpus: CorpusFile) -> Turn:
    """The turn where ``corpus.at`` is asked, by pressing ``corpus.path``."""
    turn = engine.start()
    for choice in corpus.path:
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    if turn.node != corpus.at:
        raise ValueError(f"{corpus.name}: le chemin mène à « {turn.node} », pas à « {corpus.at} »")
    return turn


def classify(engine: Engine, before: Session, turn: Turn) -> str:
    """What the turn did, in the corpus's words."""
    kb = engine.kb
    body = "\n".join(reply.text for reply in turn.replies)
    lang = before.lang
    if text(kb.safety.crisis_title, lang) in body:
        return "crisis"
    if text(kb.safety.medical_reply, lang) in body:
        return "medical"
    if (before.node, UNKNOWN) in turn.session.answers and (
        before.node,
        UNKNOWN,
    ) not in before.answers:
        return "unknown"
    question = kb.questions.get(before.node)
    if question is not None and question.why and text(question.why, lang) in body:
        return "why"
    if engine.msg("why_default", before) in body:
        return "why"
    if any(text(t.reply, lang) == r.text for t in kb.language.smalltalk for r in turn.replies):
        return "smalltalk"
    first = turn.replies[0].text if turn.replies else ""
    glossary_intro = engine.msg("glossary_intro", before)
    if glossary_intro in body or any(
        first.startswith(text(term.term, lang) + " : ") for term in kb.glossary.values()
    ):
        return "glossary"
    if turn.session.pending or (
        turn.node != before.node and len(turn.session.answers) < len(before.answers)
    ):
        return "command"
    commands = ("help", "contacts_need_territory", "contacts_none", "restarted", "back_at_start")
    if turn.node in ("exit",) or any(engine.msg(key, before) in body for key in commands):
        return "command"
    if engine.msg("contacts_intro", before, territory="").split("(")[0] in body:
        return "command"
    if any(c.id.startswith("place:") for r in turn.replies for c in r.choices) or (
        first.startswith(engine.msg("ambiguous", before, first="", second="").split("«")[0])
    ):
        return "ambiguous"
    if engine.understood(turn.session) != engine.understood(before) or turn.node != before.node:
        return "answer"
    if turn.session.misses or turn.session.last_miss:
        return "missed"
    return "nothing"


def new_facts(before: dict[str, str], after: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in after.items() if before.get(k) != v}


def play_corpus(engine: Engine, path: Path) -> Report:
    import time

    corpus = load_corpus(path)
    start = reach(engine, corpus)
    report = Report()
    said = engine.msg("said_intro", start.session, items="").split(":")[0]
    echo = engine.msg("understood_as", start.session, label="").split("«")[0]
    for utterance in corpus.utterances:
        began = time.perf_counter()
        turn = engine.handle(start.session, Input.text(utterance.text))
        elapsed = time.perf_counter() - began
        got = new_facts(engine.understood(start.session), engine.understood(turn.session))
        said_back = any(r.text.startswith((said, echo)) for r in turn.replies) or (
            classify(engine, start.session, turn) == "ambiguous"
        )
        report.results.append(
            Result(
                path.name,
                corpus.at,
                utterance,
                got,
                classify(engine, start.session, turn),
                said_back,
                elapsed,
            )
        )
    return report


def describe(result: Result) -> str:
    return (
        f"{result.file} [{result.at}] « {result.utterance.text} » : attendu "
        f"{result.utterance.understood or '{}'} ({result.expected_outcome}), obtenu "
        f"{result.got or '{}'} ({result.outcome})"
    )
