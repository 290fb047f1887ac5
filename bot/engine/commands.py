"""Commands (aide, retour, recommencer, contacts, glossaire, stop…), typed or pressed, at any step.

Functions of the :class:`~bot.engine.flow.Engine` (their ``self``), bound there as methods.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from bot.engine.base import (
    RELATION,
    RESUME,
    TERM,
    Turn,
    named_condition,
    owner_of,
)
from bot.engine.places import (
    country_of,
    holds_in,
)
from bot.engine.recommendation import facts_of, recommend, select_contacts
from bot.engine.replies import (
    Choice,
    Reply,
)
from bot.engine.session import (
    EXITED,
    RECOMMENDED,
    Input,
    Pending,
    Session,
)
from bot.knowledge.model import text

if TYPE_CHECKING:
    from bot.engine.flow import Engine


def command(self: Engine, session: Session, name: str) -> Turn:
    if name in ("aide", "help"):
        lines = [self.msg("help", session)]
        question = self.kb.questions.get(session.node)
        if question is not None:
            country = country_of(self.kb, facts_of(self.kb, session.answers))
            help_text = question.help_in.get(country or "") or question.help
            if help_text:
                lines.insert(0, text(help_text, session.lang))
        return self.turn(session, Reply("\n\n".join(lines)), self.prompt(session))
    if name == "retour":
        return self._back(session)
    if name == "recommencer":
        if not session.answers:
            fresh = replace(session, node=self.kb.flow.start, pending=None, stopped_at=None)
            return self.turn(fresh, Reply(self.msg("restarted", session)), self.prompt(fresh))
        pending = replace(session, pending=Pending.RESTART)
        return self.turn(pending, self.prompt(pending))
    if name == "contacts":
        return self._contacts(session)
    if name in ("glossaire", "glossary"):
        return self._glossary(session)
    if name == "stop":
        stopped = replace(
            session,
            node=EXITED,
            pending=None,
            stopped_at=session.node if session.node in self.kb.questions else None,
        )
        return self.turn(stopped, self.prompt(stopped))
    if name in ("start", "demarrer"):
        return self.start(session.context, session.lang, owner_of(session))
    if name == RELATION:
        return self._relation(session)
    if name in self.modes:
        return self.modes[name].handle(self, session, Input.command(name))
    return self._not_understood(session)


def command_label(self: Engine, name: str, session: Session) -> str:
    return text(self.kb.flow.commands[name].label, session.lang)


def confirm(self: Engine, session: Session, yes: bool) -> Turn:
    if session.pending == Pending.WISH_LEAD:
        return self.turn(session, self.prompt(session))
    if session.pending in (
        Pending.CONTACT_CONSENT,
        Pending.CONTACT_HOW,
        Pending.CONTACT_CONFIRM,
    ):
        return self._relation_answer(session, yes)
    if not yes:
        cleared = replace(session, pending=None)
        return self.turn(cleared, self.prompt(cleared))
    # A fresh start keeps the rest of the session (owner, statistics id, modes' state).
    fresh = replace(
        session,
        kb_version=self.kb.version,
        node=self.kb.flow.start,
        answers=(),
        pending=None,
        stopped_at=None,
    )
    return self.turn(fresh, Reply(self.msg("restarted", session)), self.prompt(fresh))


def back(self: Engine, session: Session) -> Turn:
    session = replace(session, pending=None)
    if session.node == EXITED and session.stopped_at in self.kb.questions:
        back = replace(session, node=session.stopped_at, stopped_at=None)
        return self.turn(back, self.prompt(back))
    if not session.answers:
        start = replace(session, node=self.kb.flow.start)
        return self.turn(start, Reply(self.msg("back_at_start", session)), self.prompt(start))
    question_id, _ = session.answers[-1]
    answers = session.answers
    while answers and answers[-1][0] == question_id:
        answers = answers[:-1]
    back = replace(self._settled(session), node=question_id, answers=answers, stopped_at=None)
    return self.turn(back, self.prompt(back))


def contacts(self: Engine, session: Session) -> Turn:
    facts = facts_of(self.kb, session.answers)
    territory = facts.get(self.kb.flow.territory_fact)
    if territory is None:
        return self.turn(
            session, Reply(self.msg("contacts_need_territory", session)), self.prompt(session)
        )
    roles: list[str] = []
    if session.node == RECOMMENDED:
        result = recommend(self.kb, session.answers, session.context, session.lang)
        roles = [role.id for role in result.roles]
    selection = select_contacts(
        self.kb,
        territory,
        roles,
        session.context,
        session.lang,
        facts=facts,
        condition=named_condition(session),
    )
    reply = self._contacts_reply(session, list(selection.contacts), territory, selection.note)
    return self.turn(session, reply, self.prompt(session))


def glossary(self: Engine, session: Session, unknown: bool = False) -> Turn:
    lines = []
    if unknown:
        lines.append(self.msg("glossary_unknown", session))
    lines.append(self.msg("glossary_intro", session))
    country = country_of(self.kb, facts_of(self.kb, session.answers))
    choices = [
        Choice(
            TERM + term_id,
            text(term.term, session.lang),
            text(term.short, session.lang) if term.short else None,
        )
        for term_id, term in self.kb.glossary.items()
        if country is None or holds_in(term.countries, country)  # not another country's
    ]
    choices.append(Choice(RESUME, self.msg("back_to_question", session)))
    session = replace(session, glossary=True)
    return self.turn(session, Reply("\n".join(lines), tuple(choices)))


def definition(self: Engine, term_id: str, session: Session) -> str | None:
    """« RU : … » for a glossary term, or None if there is no such term."""
    term = self.kb.glossary.get(term_id)
    if term is None:
        return None
    return f"{text(term.term, session.lang)} : {text(term.definition, session.lang)}"


def define(self: Engine, session: Session, term_id: str) -> Turn:
    body = self.definition(term_id, session)
    if body is None:
        return self._stale(session)
    term = self.kb.glossary[term_id]
    if term.countries:
        country = country_of(self.kb, facts_of(self.kb, session.answers))
        names = [
            text(self.kb.crisis.countries[c].name, session.lang)
            for c in term.countries
            if c in self.kb.crisis.countries
        ]
        if country is None:
            body += "\n" + self.msg("term_where", session, countries=", ".join(names))
        elif not holds_in(term.countries, country):
            body += "\n" + self.msg("term_elsewhere", session, countries=", ".join(names))
    return self.turn(session, Reply(body), self.prompt(session))
