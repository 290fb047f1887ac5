"""Being put in touch: the contact request as a mode of its own (consent, how to reach the person,
confirmation, then the ``contact.requested`` event). Offered only when an establishment would
receive it.

Functions of the :class:`~bot.engine.flow.Engine` (their ``self``), bound there as methods.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from bot.engine import events
from bot.engine.base import (
    CANCEL,
    CONFIRM,
    MAX_CONTACT_HOW,
    Turn,
    named_condition,
)
from bot.engine.recommendation import recommend
from bot.engine.replies import (
    Choice,
    Event,
    Reply,
)
from bot.engine.session import (
    RECOMMENDED,
    Pending,
    Session,
)

if TYPE_CHECKING:
    from bot.engine.flow import Engine


def relation_prompt(self: Engine, session: Session) -> Reply | None:
    """The step of a contact request the session waits on, if any."""
    if session.pending == Pending.CONTACT_CONSENT:
        names = ", ".join(name for _, name in session.handoff)
        return Reply(
            self.msg("relation_consent", session, establishments=names),
            (
                Choice(CONFIRM, self.msg("relation_accept", session)),
                Choice(CANCEL, self.msg("relation_refuse", session)),
            ),
        )
    if session.pending == Pending.CONTACT_HOW:
        return Reply(
            self.msg("relation_how", session),
            (Choice(CANCEL, self.msg("relation_refuse", session)),),
        )
    if session.pending == Pending.CONTACT_CONFIRM:
        how = session.contact_how or ""
        return Reply(
            self.msg("relation_confirm", session, how=how),
            (
                Choice(CONFIRM, self.msg("relation_send", session)),
                Choice(CANCEL, self.msg("relation_refuse", session)),
            ),
        )
    return None


def relation_how(self: Engine, session: Session, raw: str) -> Turn:
    """How the person wants to be reached, as typed (one line, bounded), then confirm."""
    how = " ".join(raw.split())[:MAX_CONTACT_HOW]
    ready = replace(session, pending=Pending.CONTACT_CONFIRM, contact_how=how)
    return self.turn(ready, self.prompt(ready))


def relation(self: Engine, session: Session) -> Turn:
    """Start a contact request, only if an establishment would receive it: say who, ask
    consent. Otherwise give the contacts' own details and first steps, and promise nothing."""
    if session.node != RECOMMENDED:
        return self.turn(
            session, Reply(self.msg("relation_unavailable", session)), self.prompt(session)
        )
    receivers = self.handoff(session)
    result = recommend(
        self.kb,
        session.answers,
        session.context,
        session.lang,
        condition=named_condition(session),
    )
    if not receivers:
        lines = [self.msg("relation_nobody", session)]
        steps = [step for role in result.roles for step in role.first_steps]
        if steps:
            lines += ["", self.msg("first_steps", session)]
            lines += [f"• {step}" for step in dict.fromkeys(steps)]
        contacts = self._contacts_reply(
            session, list(result.contacts), result.territory, result.contacts_note
        )
        return self.turn(session, Reply("\n".join(lines)), contacts, self.prompt(session))
    asking = replace(
        session,
        pending=Pending.CONTACT_CONSENT,
        handoff=tuple((r.id, r.name) for r in receivers),
    )
    return self.turn(asking, self.prompt(asking))


def relation_answer(self: Engine, session: Session, yes: bool) -> Turn:
    if not yes:
        cleared = replace(session, pending=None, handoff=(), contact_how=None)
        return self.turn(
            cleared, Reply(self.msg("relation_cancelled", session)), self.prompt(cleared)
        )
    if session.pending == Pending.CONTACT_CONSENT:
        asking = replace(session, pending=Pending.CONTACT_HOW)
        return self.turn(asking, self.prompt(asking))
    if session.pending == Pending.CONTACT_HOW:
        return self.turn(session, self.prompt(session))
    consented = [i for i, _ in session.handoff]
    receivers = [r for r in self.handoff(session) if r.id in consented]
    if not receivers:  # the deployment changed since consent: send nothing, say so
        done = replace(session, pending=None, handoff=(), contact_how=None)
        return self.turn(done, Reply(self.msg("relation_gone", session)), self.prompt(done))
    result = recommend(self.kb, session.answers, session.context, session.lang)
    event = Event(
        events.CONTACT_REQUESTED,
        {
            "establishments": [r.id for r in receivers],
            "contacts": [c.id for c in result.contacts],
            "roles": [role.id for role in result.roles],
            "territory": result.territory,
            "context": session.context,
            "how_to_reach": session.contact_how or "",
            "consent": True,
            "kb_version": self.kb.version,
        },
    )
    done = replace(session, pending=None, handoff=(), contact_how=None)
    names = ", ".join(r.name for r in receivers)
    sent = Reply(self.msg("relation_sent", session, establishments=names))
    return self.turn(done, sent, self.prompt(done), events=(event,))
