"""The storage contract. The engine never imports this: channels load a session, hand it to the
engine, and save what comes back.

Users are known only by a pseudonymous key (see :func:`pseudonym`); nothing here ever receives
a raw Telegram id or a username. Conversation state is kept only with consent: without it,
channels keep the session in memory (:class:`bot.storage.memory.MemoryStorage`).
"""

from __future__ import annotations

import hashlib
import hmac
from abc import ABC, abstractmethod
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
    async def save_session(self, user: str, session: dict[str, Any]) -> None:
        """Store ``user``'s session (only called when the user consented)."""

    @abstractmethod
    async def get_consent(self, user: str) -> bool | None:
        """``True``/``False`` once the user answered, ``None`` if never asked."""

    @abstractmethod
    async def set_consent(self, user: str, granted: bool) -> None:
        """Record the user's answer; refusing erases anything kept so far."""

    @abstractmethod
    async def export_user(self, user: str) -> dict[str, Any]:
        """Everything stored about ``user``, as JSON-safe data."""

    @abstractmethod
    async def erase_user(self, user: str) -> None:
        """Remove every row about ``user`` in every table."""

    @abstractmethod
    async def purge_idle(self, idle_days: int) -> int:
        """Erase users idle for more than ``idle_days``; return how many."""

    # -- inbox: durable, exactly-once processing of incoming updates -----------------------
    @abstractmethod
    async def inbox_add(self, update_id: int, payload: bytes) -> bool:
        """Durably record an update; ``False`` if this ``update_id`` was already seen."""

    @abstractmethod
    async def inbox_pending(self, limit: int = 100) -> list[InboxItem]:
        """Recorded updates not yet applied, oldest first."""

    @abstractmethod
    async def inbox_done(self, update_id: int) -> None:
        """Mark an update applied (its effects are saved)."""
