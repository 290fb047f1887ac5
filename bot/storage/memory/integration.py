"""The integration store in dictionaries (tests, demos): the same contract as SQLite's."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TypedDict, Unpack

from bot.json_types import JsonObject, loads, loads_object
from bot.storage.base import (
    ApiKey,
    Conversation,
    FeatureWrite,
    IntegrationStore,
    KeyKind,
    OutboxEvent,
    OutboxItem,
    TranscriptLine,
    hash_key,
    new_id,
    new_key_secret,
)
from bot.storage.memory.features import MemoryFeatureStore


@dataclass
class _Event:
    item: OutboxItem
    subject: str | None
    #: Insertion order (ties between events created at the same instant).
    order: int


def _copy(data: JsonObject) -> JsonObject:
    """A JSON round trip: only JSON-safe data survives, as in a database."""
    return loads_object(json.dumps(data))


class _OutboxChange(TypedDict, total=False):
    """The fields of an :class:`OutboxItem` a delivery attempt or a retry changes."""

    status: str
    attempts: int
    next_attempt_at: float
    created_at: float
    last_error: str | None


class MemoryIntegrationStore(IntegrationStore):
    """Given a :class:`MemoryFeatureStore` (``features``), a turn's feature rows join its
    :meth:`save_turn`, all or nothing, as on one database."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        features: MemoryFeatureStore | None = None,
    ) -> None:
        self._clock = clock
        self.features = features
        self._keys: dict[str, tuple[ApiKey, str]] = {}
        self._conversations: dict[str, Conversation] = {}
        self._lines: dict[str, list[TranscriptLine]] = {}
        self._outbox: dict[str, _Event] = {}
        self._order = 0

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # -- keys ------------------------------------------------------------------------------
    async def create_key(self, establishment: str, kind: KeyKind = "api") -> tuple[str, ApiKey]:
        secret = new_key_secret(kind)
        record = ApiKey(new_id("key_")[:16], establishment, kind, secret[:10], self._clock())
        self._keys[record.id] = (record, hash_key(secret))
        return secret, record

    async def find_key(self, secret: str) -> ApiKey | None:
        wanted = hash_key(secret)
        for record, hashed in self._keys.values():
            if hashed == wanted and record.revoked_at is None:
                return record
        return None

    async def list_keys(self) -> list[ApiKey]:
        return sorted((record for record, _ in self._keys.values()), key=lambda k: k.created_at)

    async def revoke_key(self, key_id: str) -> bool:
        found = self._keys.get(key_id)
        if found is None or found[0].revoked_at is not None:
            return False
        self._keys[key_id] = (replace(found[0], revoked_at=self._clock()), found[1])
        return True

    # -- conversations ---------------------------------------------------------------------
    async def load_conversation(
        self, conversation_id: str, establishment: str
    ) -> Conversation | None:
        found = self._conversations.get(conversation_id)
        if found is None or found.establishment != establishment:
            return None
        return replace(found, session=_copy(found.session))

    async def transcript(self, conversation_id: str) -> list[TranscriptLine]:
        return [
            TranscriptLine(line.at, line.author, _copy(line.body))
            for line in self._lines.get(conversation_id, [])
        ]

    async def save_turn(
        self,
        conversation: Conversation,
        *,
        created: bool,
        lines: Iterable[TranscriptLine],
        events: Iterable[OutboxEvent] = (),
        features: Sequence[FeatureWrite] = (),
    ) -> None:
        if created and conversation.id in self._conversations:
            raise ValueError(f"conversation {conversation.id} exists already")
        stored = replace(conversation, session=_copy(conversation.session))
        new_lines = [TranscriptLine(line.at, line.author, _copy(line.body)) for line in lines]
        if features:
            if self.features is None:
                raise ValueError("this store holds no feature tables: use FeatureStore.apply")
            # All or nothing by itself (CodeTaken: nothing written), and the last step that
            # can fail: the conversation below changes only once the rows are in.
            await self.features.apply(features)
        if created:
            self._conversations[conversation.id] = stored
        elif conversation.id in self._conversations:
            previous = self._conversations[conversation.id]
            self._conversations[conversation.id] = replace(
                previous,
                session=stored.session,
                offered=stored.offered,
                updated_at=stored.updated_at,
            )
        self._lines.setdefault(conversation.id, []).extend(new_lines)
        self._add(events, conversation.updated_at)

    async def holds_features(self) -> bool:
        return self.features is not None

    async def delete_conversation(self, conversation_id: str, establishment: str) -> bool:
        found = self._conversations.get(conversation_id)
        if found is not None and found.establishment != establishment:
            return False
        self._conversations.pop(conversation_id, None)
        self._lines.pop(conversation_id, None)
        for event_id in [i for i, e in self._outbox.items() if e.subject == conversation_id]:
            del self._outbox[event_id]
        return found is not None

    async def purge_idle_conversations(self, idle_days: int) -> int:
        cutoff = self._clock() - idle_days * 86400
        idle = [c.id for c in self._conversations.values() if c.updated_at < cutoff]
        for conversation_id in idle:
            del self._conversations[conversation_id]
            self._lines.pop(conversation_id, None)
        return len(idle)

    # -- webhook outbox --------------------------------------------------------------------
    def _add(self, events: Iterable[OutboxEvent], now: float) -> None:
        for event in events:
            if event.id in self._outbox:
                continue
            self._order += 1
            item = OutboxItem(
                event.id, event.establishment, event.event_type, event.payload, "pending", 0,
                now, now, None,
            )  # fmt: skip
            self._outbox[event.id] = _Event(item, event.subject, self._order)

    async def enqueue(self, events: Iterable[OutboxEvent]) -> None:
        self._add(events, self._clock())

    async def outbox_due(
        self, now: float, limit: int = 50, skip_establishments: Sequence[str] = ()
    ) -> list[OutboxItem]:
        pending = [e for e in self._outbox.values() if e.item.status == "pending"]

        def first_of_its_subject(event: _Event) -> bool:
            if event.subject is None:
                return True
            return not any(
                other.subject == event.subject
                and other.item.establishment == event.item.establishment
                and (other.item.created_at, other.order) < (event.item.created_at, event.order)
                for other in pending
            )

        due = [
            e
            for e in pending
            if e.item.next_attempt_at <= now
            and e.item.establishment not in skip_establishments
            and first_of_its_subject(e)
        ]
        due.sort(key=lambda e: (e.item.next_attempt_at, e.item.created_at, e.order))
        return [e.item for e in due[:limit]]

    async def outbox_next_due(self) -> float | None:
        due = [e.item.next_attempt_at for e in self._outbox.values() if e.item.status == "pending"]
        return min(due) if due else None

    async def outbox_list(self) -> list[OutboxItem]:
        events = sorted(self._outbox.values(), key=lambda e: (e.item.status, e.item.created_at))
        return [e.item for e in events]

    async def outbox_about(self, subject: str) -> list[JsonObject]:
        events = sorted(
            (e for e in self._outbox.values() if e.subject == subject),
            key=lambda e: (e.item.created_at, e.order),
        )
        return [
            {
                "id": e.item.id,
                "establishment": e.item.establishment,
                "type": e.item.event_type,
                "payload": loads(e.item.payload),
                "status": e.item.status,
                "created_at": e.item.created_at,
            }
            for e in events
        ]

    async def outbox_delivered(self, event_id: str) -> None:
        self._outbox.pop(event_id, None)

    def _update(self, event_id: str, **changes: Unpack[_OutboxChange]) -> bool:
        found = self._outbox.get(event_id)
        if found is None:
            return False
        found.item = replace(found.item, **changes)
        return True

    async def outbox_failed(
        self, event_id: str, attempts: int, next_attempt_at: float, error: str
    ) -> None:
        found = self._outbox.get(event_id)
        if found is not None and found.item.status == "pending":
            self._update(
                event_id, attempts=attempts, next_attempt_at=next_attempt_at, last_error=error[:500]
            )

    async def outbox_dead(self, event_id: str, attempts: int, error: str) -> None:
        self._update(event_id, status="dead", attempts=attempts, last_error=error[:500])

    async def outbox_retry(self, event_id: str) -> bool:
        now = self._clock()
        return self._update(event_id, status="pending", next_attempt_at=now, created_at=now)
