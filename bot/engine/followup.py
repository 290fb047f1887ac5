"""The follow-up as an engine mode: ask consent after a recommendation, read the answer later.

Pure. Consent gives ``followup.requested`` (the channel's :class:`bot.app.followups.FollowUps`
schedules it); when it is due the channel puts the session in this mode with :func:`asking` and
sends the reply; the answer gives ``followup.answered`` and, when the person could not reach
anyone, other contacts and the first steps again.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from bot.engine import events
from bot.engine.normalize import normalize
from bot.engine.recommendation import recommend
from bot.engine.replies import Choice, Event, Reply
from bot.engine.session import RECOMMENDED, Input, Session
from bot.json_types import as_int, as_object

if TYPE_CHECKING:
    from bot.engine.flow import Engine, Turn

NAME = "suivi"
STATE = "followup"
YES = "suivi:oui"
NO = "suivi:non"
DEFAULT_DAYS = 14

REQUESTED = events.FOLLOWUP_REQUESTED
ANSWERED = events.FOLLOWUP_ANSWERED


def asking(engine: Engine, session: Session, followup_id: int) -> tuple[Session, Reply]:
    """The session and message to send when follow-up ``followup_id`` is due."""
    waiting = replace(
        session,
        pending=None,
        mode=NAME,
        mode_state={**session.mode_state, STATE: {"step": "ask", "id": followup_id}},
    )
    return waiting, FollowUpMode.prompt(engine, waiting)


class FollowUpMode:
    name = NAME
    words = frozenset({"suivi", "me relancer", "relance", "rappel"})

    def __init__(self, days: int = DEFAULT_DAYS) -> None:
        self.days = days

    def handle(self, engine: Engine, session: Session, event: Input) -> Turn:
        state = session.mode_state.get(STATE)
        if session.mode != NAME or not isinstance(state, dict):
            return self._enter(engine, session)
        answer = self._answer(engine, event)
        if answer is None:
            if event.kind == "command" or event.value.startswith("cmd:"):
                name = event.value.removeprefix("cmd:").lstrip("/")
                return engine.handle(self._leave(session), Input.command(name))
            return engine.turn(
                session, Reply(engine.msg("not_understood", session)), self.prompt(engine, session)
            )
        if state.get("step") == "consent":
            return self._consent(engine, session, answer)
        return self._answered(engine, session, as_int(state.get("id", 0)), answer)

    @staticmethod
    def prompt(engine: Engine, session: Session) -> Reply:
        state = as_object(session.mode_state.get(STATE))
        key = "followup_consent" if state.get("step") == "consent" else "followup_question"
        days = str(state.get("days", DEFAULT_DAYS))
        yes, no = ("followup_yes", "followup_no")
        if key == "followup_question":
            yes, no = ("followup_reached", "followup_not_reached")
        return Reply(
            engine.msg(key, session, days=days),
            (Choice(YES, engine.msg(yes, session)), Choice(NO, engine.msg(no, session))),
        )

    def _enter(self, engine: Engine, session: Session) -> Turn:
        if session.node != RECOMMENDED:
            return engine.turn(
                session, Reply(engine.msg("followup_unavailable", session)), engine.prompt(session)
            )
        asking_ = replace(
            session,
            pending=None,
            mode=NAME,
            mode_state={**session.mode_state, STATE: {"step": "consent", "days": self.days}},
        )
        return engine.turn(asking_, self.prompt(engine, asking_))

    @staticmethod
    def _answer(engine: Engine, event: Input) -> bool | None:
        if event.value in (YES, NO):
            return event.value == YES
        if event.kind == "text":
            return engine.matcher.confirmation(normalize(event.value))
        return None

    def _consent(self, engine: Engine, session: Session, yes: bool) -> Turn:
        left = self._leave(session)
        if not yes:
            return engine.turn(
                left, Reply(engine.msg("followup_declined", session)), engine.prompt(left)
            )
        result = recommend(engine.kb, session.answers, session.context, session.lang)
        event = Event(
            REQUESTED,
            {
                "roles": [role.id for role in result.roles],
                "context": session.context,
                "days": self.days,
                "consent": True,
                "kb_version": engine.kb.version,
            },
        )
        return engine.turn(
            left,
            Reply(engine.msg("followup_scheduled", session, days=str(self.days))),
            engine.prompt(left),
            events=(event,),
        )

    def _answered(self, engine: Engine, session: Session, followup_id: int, reached: bool) -> Turn:
        left = self._leave(session)
        event = Event(ANSWERED, {"id": followup_id, "reached": reached})
        if reached:
            return engine.turn(
                left,
                Reply(engine.msg("followup_glad", session)),
                engine.prompt(left),
                events=(event,),
            )
        replies = [Reply(engine.msg("followup_help", session))]
        result = recommend(engine.kb, session.answers, session.context, session.lang)
        contacts = engine.handle(left, Input.command("contacts")).replies[:-1]
        replies += list(contacts)
        for role in result.roles[:1]:
            steps = [f"{n}. {step}" for n, step in enumerate(role.first_steps, start=1)]
            if steps:
                intro = engine.msg("followup_steps", session, role=role.title)
                replies.append(Reply("\n".join([intro, *steps])))
        return engine.turn(left, *replies, engine.prompt(left), events=(event,))

    @staticmethod
    def _leave(session: Session) -> Session:
        states = {k: v for k, v in session.mode_state.items() if k != STATE}
        return replace(session, mode=None, mode_state=states)
