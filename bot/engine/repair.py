"""Repair instead of looping: the ladder of misses, small talk, « ce n'est pas ça », « passer »,
stale buttons and the crisis reply.

Functions of the :class:`~bot.engine.flow.Engine` (their ``self``), bound there as methods.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from rapidfuzz import fuzz

from bot.engine.base import (
    CLOSEST_CUTOFF,
    RESUME,
    SKIP,
    Turn,
)
from bot.engine.normalize import normalize
from bot.engine.places import (
    country_of,
    holds,
    offered,
)
from bot.engine.recommendation import facts_of
from bot.engine.replies import (
    STALE,
    Choice,
    Reply,
)
from bot.engine.session import (
    UNKNOWN,
    Session,
    Undo,
)
from bot.knowledge.model import Choice as Option
from bot.knowledge.model import Question, text

if TYPE_CHECKING:
    from bot.engine.flow import Engine


def stale(self: Engine, session: Session) -> Turn:
    stale = Reply(self.msg("stale_button", session), kind=STALE)
    return self.turn(session, stale, self.prompt(session))


def skip(self: Engine, session: Session, question: Question) -> Turn:
    """« Je ne sais pas » / « passer »: an unknown answer, and the conversation goes on."""
    replies = [Reply(self.msg("skipped", session))]
    session = replace(session.answered(session.node, UNKNOWN), stopped_at=None)
    facts = facts_of(self.kb, session.answers)
    target = next((b.next for b in question.next_when if holds(b.when, facts)), question.next)
    return self._advance(self._settled(session), target, replies)


def smalltalk(self: Engine, session: Session, index: str) -> Turn:
    talk = self.kb.language.smalltalk[int(index)]
    return self.turn(session, Reply(text(talk.reply, session.lang)), self.prompt(session))


def not_that(self: Engine, session: Session, undo: object | None) -> Turn:
    """« Ce n'est pas ça »: forget what the last message brought and ask again."""
    if not isinstance(undo, Undo):
        return self.turn(
            session, Reply(self.msg("not_that_nothing", session)), self.prompt(session)
        )
    restored = replace(
        session,
        node=undo.node or session.node,
        answers=undo.answers,
        prefill=dict(undo.prefill),
        condition=undo.condition,
        place=undo.place,
        relative=undo.relative,
    )
    return self.turn(restored, Reply(self.msg("not_that_done", session)), self.prompt(restored))


def missed(self: Engine, session: Session, question: Question, plain: str) -> Turn:
    """Nothing understood at a question: climb the repair ladder, never the same line twice."""
    count = session.misses + 1 if session.missed_at == session.node else 1
    last = session.last_miss
    lang = session.lang
    choices: tuple[Choice, ...] = ()
    offer_skip = session.offer_skip
    if count == 1:
        key = "repair_first" if question.example else "repair_first_plain"
        if key == last:
            key = "repair_first_plain" if key == "repair_first" else "repair_first"
            key = key if question.example or key == "repair_first_plain" else "repair_second_list"
        body = (
            self.msg(key, session, example=text(question.example, lang))
            if question.example
            else self.msg(key, session)
        )
        if question.help:
            body += "\n" + text(question.help, lang)
    elif count == 2:
        country = country_of(self.kb, facts_of(self.kb, session.answers))
        closest = [c for c in self._closest(question, plain) if offered(c, country)]
        if closest:
            key = "repair_second"
            options = " ou ".join(f"« {self._label(c, session)} »" for c in closest)
            body = self.msg(key, session, options=options)
            choices = tuple(Choice(c.id, self._label(c, session)) for c in closest)
        else:
            key = "repair_second_list"
            country = country_of(self.kb, facts_of(self.kb, session.answers))
            shown = [c for c in question.choices if offered(c, country)]
            lines = [
                f"{number}. {self._label(c, session)}" for number, c in enumerate(shown, start=1)
            ]
            body = "\n".join([self.msg(key, session), *lines])
    else:
        key = "repair_third" if count % 2 else "repair_fourth"
        offer_skip = session.node
        body = self.msg(key, session)
    session = replace(
        session, misses=count, missed_at=session.node, last_miss=key, offer_skip=offer_skip
    )
    if choices:
        full = (*choices, Choice(SKIP, self.msg("skip_button", session)))
        return self.turn(session, Reply(body, full))
    return self.turn(session, Reply(body), self.prompt(session))


def closest(self: Engine, question: Question, plain: str) -> list[Option]:
    """The one or two choices nearest to what was typed, if any is near enough."""
    scored: list[tuple[float, int]] = []
    for index, choice in enumerate(question.choices):
        phrases = [*choice.label.values(), *(w for ws in choice.synonyms.values() for w in ws)]
        best = max(fuzz.WRatio(plain, normalize(p)) for p in phrases)
        scored.append((best, index))
    scored.sort(reverse=True)
    near = [question.choices[i] for score, i in scored[:2] if score >= CLOSEST_CUTOFF]
    return near


def crisis_reply(self: Engine, session: Session) -> Reply:
    """The crisis numbers of the person's country (for channels that screen before the
    engine runs, e.g. Telegram before consent)."""
    territory = facts_of(self.kb, session.answers).get(self.kb.flow.territory_fact)
    country = self.kb.territories[territory].country if territory in self.kb.territories else None
    return Reply(self.safety.crisis_text(country, session.lang))


def crisis(self: Engine, session: Session) -> Turn:
    """Crisis numbers of the person's country first; then the conversation goes on."""
    body = self.crisis_reply(session).text
    if session.mode:
        resume = Choice(RESUME, self.msg("back_to_question", session))
        return self.turn(session, Reply(body, (resume,)))
    return self.turn(session, Reply(body), self.prompt(session))


def not_understood(self: Engine, session: Session) -> Turn:
    """Never the same « pas compris » sentence twice in a row."""
    key = "not_understood"
    if session.last_miss == key:
        key = "not_understood_again"
    session = replace(session, last_miss=key)
    return self.turn(session, Reply(self.msg(key, session)), self.prompt(session))
