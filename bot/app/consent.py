"""Consent and where a person's state lives, once for every channel.

Nothing about a person is stored durably before they consent: until then their session lives
in memory only (:class:`bot.storage.memory.MemoryStorage`, dropped after a day of idleness),
and a refusal keeps it there. Consenting moves it to the durable store and clears memory;
refusing erases every durable row. Channels whose people agreed elsewhere (an establishment's
API, the terminal that stores nothing) do not ask (``required=False``).
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.engine.flow import Engine
from bot.engine.replies import Choice, Reply
from bot.engine.session import Session
from bot.storage.base import OutboxEvent, Storage, UserChange
from bot.storage.memory import MemoryStorage

#: The buttons of the consent question (the application's own, not the engine's).
CONSENT_YES, CONSENT_NO = "p:c1", "p:c0"


@dataclass(frozen=True)
class State:
    """A person's consent (``None``: never answered) and session (``None``: none yet)."""

    consent: bool | None
    session: Session | None

    @property
    def durable(self) -> bool:
        return bool(self.consent)


class Consent:
    """Reads a person's :class:`State` and says what saving it means, durable or in memory."""

    def __init__(
        self,
        storage: Storage,
        memory: Storage | None = None,
        *,
        required: bool = True,
        retention_days: int = 180,
    ) -> None:
        self.storage = storage
        self.memory: Storage = memory if memory is not None else MemoryStorage()
        self.required = required
        self.retention_days = retention_days

    async def state(self, user: str) -> State:
        """Durable if consent was given, else from memory."""
        if not self.required:
            data = await self.storage.load_session(user)
            return State(True, Session.from_dict(data) if data else None)
        stored, data = await self.storage.load_state(user)
        if stored:
            return State(True, Session.from_dict(data) if data else None)
        consent = await self.memory.get_consent(user)
        data = await self.memory.load_session(user)
        return State(consent, Session.from_dict(data) if data else None)

    async def keep(
        self,
        user: str,
        consent: bool | None,
        session: Session | None,
        outbox: tuple[OutboxEvent, ...],
    ) -> tuple[str, UserChange]:
        """The change to commit for a turn (and who it is about): the session goes to the
        durable store only with consent, else to memory now. Events go in either way."""
        data = session.to_dict() if session is not None else None
        if consent or not self.required:
            return user, UserChange(session=data, outbox=outbox)
        if data is not None:
            await self.memory.save_session(user, data)
        return "", UserChange(outbox=outbox)

    async def answer(self, user: str, session: Session, yes: bool) -> UserChange:
        """The person's answer: memory is cleared once the durable change is decided (yes), or
        keeps the session and the refusal (no; every durable row is erased)."""
        data = session.to_dict()
        if yes:
            await self.memory.erase_user(user)
            return UserChange(consent=True, session=data)
        await self.memory.set_consent(user, False)
        await self.memory.save_session(user, data)
        return UserChange(erase=True)

    async def remember_unconsented(self, user: str, session: Session) -> None:
        """A session started before any answer: memory only."""
        await self.memory.save_session(user, session.to_dict())

    def question(self, engine: Engine, session: Session, *, reminder: bool = False) -> Reply:
        """The consent question (with a reminder line when asked again)."""
        body = engine.msg("consent_question", session, days=str(self.retention_days))
        if reminder:
            body = f"{engine.msg('consent_reminder', session)}\n{body}"
        return Reply(
            body,
            (
                Choice(CONSENT_YES, engine.msg("consent_yes", session)),
                Choice(CONSENT_NO, engine.msg("consent_no", session)),
            ),
        )
