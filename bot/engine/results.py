"""The recommendation, and « which wish comes first? » when several wishes lead to different first
roles.

Functions of the :class:`~bot.engine.flow.Engine` (their ``self``), bound there as methods.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from bot.engine import events
from bot.engine.base import (
    LEAD,
    Turn,
    all_key,
    choice_of,
    named_condition,
)
from bot.engine.recommendation import facts_of, leads_that_matter, recommend
from bot.engine.replies import (
    GUIDE,
    ROLE,
    Choice,
    Event,
    Recommendation,
    Reply,
)
from bot.engine.session import (
    RECOMMENDED,
    UNKNOWN,
    Lead,
    Pending,
    Session,
)

if TYPE_CHECKING:
    from bot.engine.flow import Engine


def lead(self: Engine, session: Session) -> tuple[str, str] | None:
    """The answer the person said comes first among several (several wishes), while it
    still holds for their answers; None: they all weigh the same."""
    held = session.lead
    if held is None or not held.choice:
        return None
    question_id, options = leads_that_matter(self.kb, session.answers)
    if options != held.among:
        return None
    return question_id, held.choice


def lead_asked(self: Engine, session: Session) -> bool:
    """Was « which comes first? » answered for these very wishes (even « autant »)?"""
    _, options = leads_that_matter(self.kb, session.answers)
    return session.lead is not None and session.lead.among == options


def lead_reply(self: Engine, session: Session) -> Reply:
    question_id, options = leads_that_matter(self.kb, session.answers)
    question = self.kb.questions[question_id]
    choices = [Choice(LEAD + c, self._label(choice_of(question, c), session)) for c in options]
    choices.append(Choice(LEAD, self.msg("wish_lead_equal", session)))
    return Reply(self.msg("wish_lead", session), tuple(choices))


def set_lead(self: Engine, session: Session, choice_id: str) -> Turn:
    _, options = leads_that_matter(self.kb, session.answers)
    if choice_id and choice_id not in options:
        return self._stale(session)
    chosen = replace(session, pending=None, lead=Lead(choice_id, options))
    return self._recommend(chosen, [])


def typed_lead(self: Engine, session: Session, raw: str, plain: str) -> str | None:
    """The wish named in answer to « which comes first? » ("" for « les deux »)."""
    question_id, options = leads_that_matter(self.kb, session.answers)
    if plain in self.understanding.equal:
        return ""
    if plain.isdigit() and 1 <= int(plain) <= len(options):
        return options[int(plain) - 1]
    reading = self.understanding.read(raw, question_id, self._country(session))
    named = [c for c in reading.answers.get(question_id, []) if c in options]
    if len(named) == 1 and not reading.negated:
        return named[0]
    found = self.matcher.choice(question_id, plain)
    if found is not None and self.kb.questions[question_id].choices[found.index].id in options:
        return self.kb.questions[question_id].choices[found.index].id
    return None


def result(self: Engine, session: Session) -> Recommendation:
    """The recommendation for the session's answers, as the person is shown it."""
    gender = session.gender
    return recommend(
        self.kb,
        session.answers,
        session.context,
        session.lang,
        str(gender or "") or None,
        condition=named_condition(session),
        lead=self.lead(session),
    )


def recommend_turn(self: Engine, session: Session, replies: list[Reply]) -> Turn:
    if not self._lead_asked(session) and leads_that_matter(self.kb, session.answers)[1]:
        # Which wish comes first changes the first role: ask, once, before recommending.
        asking = replace(session, pending=Pending.WISH_LEAD)
        return self.turn(asking, *replies, self.prompt(asking))
    session = replace(session, node=RECOMMENDED)
    result = self.result(session)
    if result.roles:
        replies.append(Reply(self._intro(session)))
        for rank, role in enumerate(result.roles, start=1):
            replies.append(Reply(self._render_role(session, rank, role), kind=ROLE))
    else:
        replies.append(Reply(self.msg("recommendation_none", session)))
    replies.append(
        self._contacts_reply(session, list(result.contacts), result.territory, result.contacts_note)
    )
    if result.guide:
        replies.append(Reply(self._render_guide(session), kind=GUIDE))
    replies.append(self.prompt(session))
    event = Event(
        events.CONVERSATION_COMPLETED,
        {
            "roles": [role.id for role in result.roles],
            "territory": result.territory,
            "context": session.context,
            "kb_version": self.kb.version,
        },
    )
    return self.turn(session, *replies, recommendation=result, events=(event,))


def understood(self: Engine, session: Session) -> dict[str, str]:
    """Every fact held now: answers given, facts read ahead, the named condition and place."""
    facts = {
        fact: value
        for fact, value in facts_of(self.kb, session.answers).items()
        if value != UNKNOWN
    }
    for question_id, choice_id in reversed(session.answers):
        # Several answers to one question (several wishes): name the first one given.
        question = self.kb.questions.get(question_id)
        if question is not None and question.multiple and choice_id != UNKNOWN:
            facts[question.fact] = choice_id
    for question_id, question in self.kb.questions.items():
        given = [c for q, c in session.answers if q == question_id and c != UNKNOWN]
        if question.multiple and len(given) > 1:
            # All of them, in the order given (``wishes: partager,former``).
            facts[all_key(question.fact)] = ",".join(dict.fromkeys(given))
    lead = self.lead(session)
    if lead is not None:
        facts[self.kb.questions[lead[0]].fact] = lead[1]  # the one that comes first
    ahead: dict[str, str] = {}
    for question_id, choices in session.prefill.items():
        # In flow order, so the more precise territory (a community after a country) wins.
        question = self.kb.questions.get(question_id)
        if question is None or not choices:
            continue
        ahead[question.fact] = str(choices[0])
        if question.multiple and len(choices) > 1:
            ahead[all_key(question.fact)] = ",".join(str(c) for c in choices)
        for choice in question.choices:
            if choice.id == choices[0]:
                ahead.update(choice.sets)
    for fact, value in ahead.items():
        facts.setdefault(fact, value)
    if session.condition:
        facts["condition"] = session.condition
    if session.place:
        facts["place"] = session.place
    return facts
