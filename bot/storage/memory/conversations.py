"""In-memory store: for people who did not consent to keep their answers, and for tests.

Everything lives in dictionaries of this process and vanishes when it stops.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable

from bot.json_types import JsonObject, loads_object
from bot.storage.base import ConversationStore, InboxItem, UserChange


class MemoryStorage(ConversationStore):
    """A :class:`ConversationStore` in dictionaries. Sessions are kept whether or not consent
    was given: this is the store used precisely when it was not."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._sessions: dict[str, tuple[JsonObject, float]] = {}
        self._consents: dict[str, tuple[bool, float]] = {}
        self._inbox: dict[int, tuple[bytes | None, float, float | None]] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def load_session(self, user: str) -> JsonObject | None:
        found = self._sessions.get(user)
        return copy.deepcopy(found[0]) if found else None

    async def get_consent(self, user: str) -> bool | None:
        found = self._consents.get(user)
        return found[0] if found else None

    async def commit_update(self, update_id: int | None, user: str, change: UserChange) -> None:
        if change.features:
            raise ValueError("this store holds no feature tables: use FeatureStore.apply")
        now = self._clock()
        if change.erase or change.consent is False:
            self._sessions.pop(user, None)
            self._consents.pop(user, None)
            if change.consent is False:
                self._consents[user] = (False, now)
        else:
            if change.consent:
                self._consents[user] = (True, now)
            if change.session is not None:
                # A JSON round trip keeps the store honest: only JSON-safe data survives.
                self._sessions[user] = (loads_object(json.dumps(change.session)), now)
        if update_id is not None and update_id in self._inbox:
            self._inbox[update_id] = (None, self._inbox[update_id][1], now)

    async def export_user(self, user: str) -> JsonObject:
        data: JsonObject = {}
        if user in self._consents:
            granted, at = self._consents[user]
            data["consent"] = {"granted": granted, "at": at}
        if user in self._sessions:
            session, at = self._sessions[user]
            data["session"] = copy.deepcopy(session)
            data["updated_at"] = at
        return data

    async def purge_idle(self, idle_days: float) -> int:
        cutoff = self._clock() - idle_days * 86400
        last: dict[str, float] = {}
        for user, (_, at) in self._sessions.items():
            last[user] = max(last.get(user, 0.0), at)
        for user, (_, at) in self._consents.items():
            last[user] = max(last.get(user, 0.0), at)
        idle = [user for user, at in last.items() if at < cutoff]
        for user in idle:
            self._sessions.pop(user, None)
            self._consents.pop(user, None)
        return len(idle)

    async def inbox_add(self, update_id: int, payload: bytes, chat: str | None = None) -> bool:
        if update_id in self._inbox:
            return False
        self._inbox[update_id] = (payload, self._clock(), None)
        return True

    async def inbox_pending(self, limit: int = 1000) -> list[InboxItem]:
        pending = sorted(
            (uid, payload)
            for uid, (payload, _, done) in self._inbox.items()
            if done is None and payload is not None
        )
        return [InboxItem(uid, payload) for uid, payload in pending[:limit]]

    async def inbox_prune(self, older_than_seconds: float) -> int:
        cutoff = self._clock() - older_than_seconds
        old = [uid for uid, (_, _, done) in self._inbox.items() if done and done < cutoff]
        for uid in old:
            del self._inbox[uid]
        return len(old)

    def count_sessions(self) -> int:
        return len(self._sessions)
