"""Moving through the flow: the next question, answers given ahead, and the path a place or a
changed answer leads to.

Functions of the :class:`~bot.engine.flow.Engine` (their ``self``), bound there as methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from bot.engine.base import (
    Turn,
    choice_of,
    has_choice,
)
from bot.engine.places import (
    country_of,
    country_question,
    holds,
    next_target,
    offered,
)
from bot.engine.recommendation import facts_of, leads_that_matter
from bot.engine.replies import (
    Reply,
)
from bot.engine.session import (
    EXITED,
    RECOMMENDED,
    UNKNOWN,
    Pending,
    Session,
)
from bot.knowledge.model import EXIT, RECOMMENDATION, Question, text

if TYPE_CHECKING:
    from bot.engine.flow import Engine


def walk(
    self: Engine, answers: Sequence[tuple[str, str]]
) -> tuple[tuple[tuple[str, str], ...], str | None]:
    """Follow the flow from its start with ``answers``: the answers on the path (in flow
    order) and the first question left to ask (or ``recommendation``). Answers off the path
    (the patient's experience once the person says she is a nurse) are dropped."""
    given: dict[str, list[str]] = {}
    for qid, choice_id in answers:
        if choice_id not in given.setdefault(qid, []):
            given[qid].append(choice_id)
    kept: list[tuple[str, str]] = []
    node: str | None = self.kb.flow.start
    for _ in range(len(self.kb.questions) + 1):
        question = self.kb.questions.get(node or "")
        if question is None or node not in given:
            break
        choices = given.pop(node)
        kept += [(node, c) for c in choices]
        facts = facts_of(self.kb, kept)
        if choices[0] == UNKNOWN:
            node = next((b.next for b in question.next_when if holds(b.when, facts)), question.next)
        elif has_choice(question, choices[0]):
            node = next_target(question, choice_of(question, choices[0]), facts)
        else:
            break
    return tuple(kept), node


def reachable(self: Engine, start: str | None) -> set[str]:
    """Questions that may still be asked from ``start``, following every choice."""
    cached = self._reachable_cache.get(start or "")
    if cached is not None:
        return set(cached)
    seen: set[str] = set()
    todo = [start] if start else []
    while todo:
        current = todo.pop()
        question = self.kb.questions.get(current)
        if question is None or current in seen:
            continue
        seen.add(current)
        todo += [c.next or "" for c in question.choices]
        todo += [branch.next for branch in question.next_when]
        todo.append(question.next or "")
    self._reachable_cache[start or ""] = frozenset(seen)
    return seen


def place_answers(self: Engine, place_id: str) -> dict[str, str]:
    """The answers a place gives (``pays: fr, region: bretagne``), found by reverse lookup
    of the choices that set its territory (or a parent territory) and the path to them."""
    place = self.understanding.places.get(place_id)
    if place is None:
        return {}
    cached = self._place_paths.get(place.territory)
    if cached is not None:
        return cached
    questions = self.kb.questions
    found: dict[str, str] = {}
    territory: str | None = place.territory
    while territory and not found:
        for qid, question in questions.items():
            for choice in question.choices:
                if choice.sets.get("territory") == territory:
                    found = {qid: choice.id}
                    break
                if (
                    choice.id == territory
                    and qid in self.understanding.place_questions
                    and not choice.sets
                ):
                    found = {qid: choice.id}
                    break
            if found:
                break
        parent = self.kb.territories.get(territory)
        territory = parent.parent if parent else None
    # Walk back: which choice leads to the question found (pays: fr -> region)?
    for _ in range(len(questions)):
        first = next(iter(found), None)
        if first is None:
            break
        before = next(
            (
                (qid, choice.id)
                for qid, question in questions.items()
                for choice in question.choices
                if choice.next == first and qid not in found
            ),
            None,
        )
        if before is None:
            break
        found = {before[0]: before[1], **found}
    self._place_paths[place.territory] = found
    return found


def advance(self: Engine, session: Session, target: str | None, replies: list[Reply]) -> Turn:
    """Go to ``target``, answering on the way every question already answered in advance."""
    for _ in range(len(self.kb.questions) + 1):
        if target == RECOMMENDATION:
            return self._recommend(session, replies)
        if target == EXIT or target is None or target not in self.kb.questions:
            session = replace(session, node=EXITED)
            return self.turn(session, *replies, self.prompt(session))
        prefill = dict(session.prefill)
        question = self.kb.questions[target]
        country = country_of(self.kb, facts_of(self.kb, session.answers))
        ready = [
            c
            for c in prefill.pop(target, [])
            if has_choice(question, c) and offered(choice_of(question, c), country)
        ]
        if not ready:
            break
        session = replace(session, prefill=prefill)
        for choice_id in ready:
            session = session.answered(target, choice_id)
        target = next_target(
            question, choice_of(question, ready[0]), facts_of(self.kb, session.answers)
        )
    session = replace(session, node=str(target))
    return self.turn(session, *replies, self.prompt(session))


def settled(self: Engine, session: Session) -> Session:
    """The question is answered: the repair ladder starts again from the first rung."""
    return replace(session, misses=0, missed_at=None, last_miss=None, offer_skip=None)


def answer(
    self: Engine, session: Session, question: Question, index: int, echo: bool = False
) -> Turn:
    choice = question.choices[index]
    country = country_of(self.kb, facts_of(self.kb, session.answers))
    if not offered(choice, country):
        return self._not_understood(session)  # a choice that does not hold in their country
    replies: list[Reply] = []
    if echo:
        label = text(choice.label_in.get(country or "") or choice.label, session.lang)
        replies.append(Reply(self.msg("understood_as", session, label=label)))
    session = replace(session.answered(session.node, choice.id), stopped_at=None)
    target = next_target(question, choice, facts_of(self.kb, session.answers))
    return self._advance(self._settled(session), target, replies)


def country(self: Engine, session: Session) -> str | None:
    return country_of(self.kb, facts_of(self.kb, session.answers))


def upgrade(self: Engine, session: Session) -> tuple[Session, tuple[Reply, ...]]:
    """Carry a session started on another knowledge-base version over to this one.

    Answers whose question or choice no longer exists are dropped; if the current question
    is gone, the person goes back to the nearest earlier question that still exists. An open
    « which comes first? » is kept while it still applies.
    """
    if session.kb_version == self.kb.version:
        return session, ()
    questions = self.kb.questions
    answers = tuple(
        (q, c)
        for q, c in session.answers
        if q in questions
        and (c == UNKNOWN or any(choice.id == c for choice in questions[q].choices))
    )
    node = session.node
    moved = False
    if (node not in questions and node not in (RECOMMENDED, EXITED)) or (
        len(answers) != len(session.answers) and node == RECOMMENDED
    ):
        moved = True
        node = answers[-1][0] if answers else self.kb.flow.start
        answers = answers[:-1] if answers else answers
    asking = country_question(self.kb)
    if (
        asking is not None
        and node in self._after_country
        and country_of(self.kb, facts_of(self.kb, answers)) is None
    ):
        moved, node = True, asking  # the new flow asks the country before this point
    # « Which comes first? » stays open while every answer and the question still hold and
    # the wishes still lead to different first roles: asked again, answerable. Every other
    # pending question is dropped (the person is asked where they stand).
    keep = (
        session.pending == Pending.WISH_LEAD
        and not moved
        and answers == session.answers
        and bool(leads_that_matter(self.kb, answers)[1])
    )
    upgraded = replace(
        session,
        kb_version=self.kb.version,
        node=node,
        answers=answers,
        pending=session.pending if keep else None,
    )
    return upgraded, ((Reply(self.msg("kb_changed", session)),) if moved else ())
