"""The storage contract. The engine never imports this: channels load a session, hand it to the
engine, and save what comes back.

Users are known only by a pseudonymous key (see :func:`pseudonym`); nothing here ever receives
a raw Telegram id or a username. Conversation state is kept durably only with consent: without
it, channels keep the session in memory (:class:`bot.storage.memory.MemoryStorage`).

Incoming updates go through an *inbox*: recorded (committed) before they are acknowledged, then
applied; :meth:`Storage.commit_update` saves the effect of an update and marks it applied in one
transaction, so a crash at any point loses nothing and applies nothing twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any


def pseudonym(secret: bytes, channel: str, raw_id: str | int) -> str:
    """Keyed hash of a channel's user id: stable for one deployment, useless without the secret."""
    digest = hmac.new(secret, f"{channel}:{raw_id}".encode(), hashlib.sha256).hexdigest()
    return f"{channel[:2]}_{digest[:40]}"


@dataclass(frozen=True)
class InboxItem:
    """A raw update recorded before it is applied, so a crash loses nothing."""

    update_id: int
    payload: bytes
    #: How many times applying it failed already.
    attempts: int = 0


@dataclass(frozen=True)
class OutgoingReply:
    """One message to send for an applied update, recorded in the same transaction as the
    state change (the *reply outbox*) and deleted once Telegram accepted it.

    ``params`` is the JSON of the Bot API call's parameters (``photo`` travels apart)."""

    update_id: int
    seq: int
    chat_id: int
    method: str
    params: str
    photo: bytes | None = None


@dataclass(frozen=True)
class UserChange:
    """What applying one update changes about one user (all fields optional).

    ``consent=True`` records consent before ``session`` is saved; ``consent=False`` or ``erase``
    removes every row about the user (and ``session`` is then ignored).

    ``outbox``: webhook events (:class:`bot.storage.integration.OutboxEvent`) produced by the
    same update, written in the same transaction as the state change (stores without an
    outbox table ignore them). ``erase`` also removes undelivered events whose ``subject`` is
    the user.
    """

    session: dict[str, Any] | None = None
    consent: bool | None = None
    erase: bool = False
    outbox: tuple[Any, ...] = ()
    #: Replies of the update (:class:`OutgoingReply`), kept until sent (stores without a reply
    #: table ignore them: the channel still sends them, without crash recovery).
    replies: tuple[OutgoingReply, ...] = ()
    #: A due follow-up (``followups.id``) whose question this change carries: it is marked
    #: sent in the same transaction, and if it is no longer pending (already sent, cancelled,
    #: erased) nothing is committed and :class:`FollowUpTaken` is raised. Only for stores
    #: whose :meth:`Storage.holds_followups` is true.
    followup: int | None = None


class FollowUpTaken(Exception):
    """The follow-up of a :class:`UserChange` was no longer pending: nothing was committed."""


class Storage(ABC):
    """What every store offers. All methods are safe to call concurrently."""

    @abstractmethod
    async def open(self) -> None:
        """Create or migrate the schema. Called once at start-up."""

    @abstractmethod
    async def close(self) -> None:
        """Flush and release resources."""

    # -- sessions and consent --------------------------------------------------------------
    @abstractmethod
    async def load_session(self, user: str) -> dict[str, Any] | None:
        """The stored session of ``user``, or ``None``."""

    @abstractmethod
    async def get_consent(self, user: str) -> bool | None:
        """``True``/``False`` once the user answered, ``None`` if never asked (or forgotten)."""

    async def load_state(self, user: str) -> tuple[bool | None, dict[str, Any] | None]:
        """``(consent, session)`` of ``user`` (durable stores answer in one read)."""
        consent = await self.get_consent(user)
        return consent, (await self.load_session(user) if consent else None)

    @abstractmethod
    async def commit_update(self, update_id: int | None, user: str, change: UserChange) -> None:
        """Apply ``change`` and mark ``update_id`` applied (if given), all or nothing."""

    async def save_session(self, user: str, session: dict[str, Any]) -> None:
        """Store ``user``'s session (durable stores keep it only if the user consented)."""
        await self.commit_update(None, user, UserChange(session=session))

    async def set_consent(self, user: str, granted: bool) -> None:
        """Record the user's answer; refusing erases anything kept so far."""
        await self.commit_update(None, user, UserChange(consent=granted))

    async def erase_user(self, user: str) -> None:
        """Remove every row about ``user`` in every table."""
        await self.commit_update(None, user, UserChange(erase=True))

    @abstractmethod
    async def export_user(self, user: str) -> dict[str, Any]:
        """Everything stored about ``user``, as JSON-safe data (empty if nothing)."""

    @abstractmethod
    async def purge_idle(self, idle_days: float) -> int:
        """Erase users idle for more than ``idle_days``; return how many."""

    # -- inbox: durable, exactly-once processing of incoming updates -----------------------
    @abstractmethod
    async def inbox_add(self, update_id: int, payload: bytes, chat: str | None = None) -> bool:
        """Durably record an update; ``False`` if this ``update_id`` was already seen.
        ``chat`` names whose turn it is (shared stores apply a chat's updates in order)."""

    # -- several instances on one store (PostgreSQL); no-ops for a store of one process ---
    #: Whether several processes share this store (then the channels take the per-chat
    #: turn below, and sweep what a dead instance left).
    shared: bool = False

    def chat_turn(self, chat: str) -> AbstractAsyncContextManager[None]:
        """Hold ``chat``'s turn across every process sharing the store (one process: its own
        per-chat queue suffices)."""
        return contextlib.nullcontext()

    async def inbox_pending_of(self, chat: str, up_to: int) -> list[InboxItem] | None:
        """Under :meth:`chat_turn`: ``chat``'s unapplied updates up to ``up_to``, oldest first
        (``None``: this store is not shared, apply just the one in hand)."""
        return None

    @abstractmethod
    async def inbox_pending(self, limit: int = 1000) -> list[InboxItem]:
        """Recorded updates not yet applied, oldest first."""

    async def inbox_done(self, update_id: int) -> None:
        """Mark an update applied without any other change (its payload is dropped)."""
        await self.commit_update(update_id, "", UserChange())

    async def inbox_dead(self, update_id: int) -> None:
        """Dead-letter an update that cannot be applied: its payload is dropped and it is
        never tried again (durable stores also record when)."""
        await self.inbox_done(update_id)

    async def inbox_failed(self, update_id: int, max_attempts: int) -> bool:
        """Count one failed application; dead-letter the update (and return ``True``) once it
        failed ``max_attempts`` times. Stores that keep no count dead-letter it at once."""
        await self.inbox_dead(update_id)
        return True

    # -- reply outbox: replies recorded with the state change, sent afterwards -------------
    async def replies_pending(self) -> list[OutgoingReply]:
        """Recorded replies not yet sent, in the order they were recorded (per chat, the order
        of its updates and follow-ups), then message order."""
        return []

    async def reply_sent(self, update_id: int, seq: int, *, wait: bool = True) -> None:
        """Forget a reply Telegram accepted (or refused for good). With ``wait=False`` the
        deletion joins the next transaction instead of costing one of its own."""
        return None

    async def holds_followups(self) -> bool:
        """Whether the ``followups`` table lives in this store's database, so that
        :attr:`UserChange.followup` can be claimed in the same transaction as the replies."""
        return False

    @abstractmethod
    async def inbox_prune(self, older_than_seconds: float) -> int:
        """Forget ids of updates applied longer ago than this (Telegram stops retrying within
        a day); return how many."""
