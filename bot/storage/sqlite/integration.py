# Over 400 lines on purpose: one class is the IntegrationStore contract on SQLite (keys,
# conversations, outbox), each turn one transaction.
"""The integration tables in SQLite: API keys (hashed), API conversations with their
transcript, and the webhook outbox (pending and dead-lettered events).

A turn's new state, its transcript lines and the webhook events it produced are written in one
transaction (:meth:`SqliteIntegrationStore.save_turn`), so an event exists if and only if the
state change that caused it was committed.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from bot.json_types import JsonObject, as_float, as_int, as_list, as_text, loads, loads_object
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
    key_kind,
    new_id,
    new_key_secret,
)
from bot.storage.sqlite import features as feature_rows
from bot.storage.sqlite.writer import (
    HasWriter,
    Row,
    SqliteWriter,
    SqlValue,
    Statement,
    has_table,
    own_or_share,
)


class SqliteIntegrationStore(IntegrationStore):
    """The integration tables, on the same SQLite file (and writer) as the conversation store.

    Give it a path to own its :class:`SqliteWriter`, or share a conversation store's (its
    ``writer``, opened with :data:`MIGRATIONS`): then a turn's events join its transaction.
    """

    def __init__(
        self, target: str | Path | SqliteWriter | HasWriter, *, synchronous: str = "FULL"
    ) -> None:
        self.writer, self._owned = own_or_share(target, synchronous)

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        if self._owned:
            await self.writer.open()

    async def close(self) -> None:
        if self._owned:
            await self.writer.close()

    async def _write(self, statements: Sequence[Statement]) -> list[int]:
        """Run statements in one transaction; return each one's row count."""
        return await self.writer.execute(statements)

    async def _read(self, sql: str, params: Sequence[SqlValue] = ()) -> list[Row]:
        return await self.writer.read(sql, params)

    # -- keys ------------------------------------------------------------------------------
    async def create_key(self, establishment: str, kind: KeyKind = "api") -> tuple[str, ApiKey]:
        """A new key: returns the secret (shown once) and its record; only the hash is kept."""
        secret = new_key_secret(kind)
        record = ApiKey(
            id=new_id("key_")[:16],
            establishment=establishment,
            kind=kind,
            prefix=secret[:10],
            created_at=time.time(),
        )
        await self._write(
            [
                (
                    "INSERT INTO api_keys (id, establishment, kind, hash, prefix, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        record.id,
                        establishment,
                        kind,
                        hash_key(secret),
                        record.prefix,
                        record.created_at,
                    ),
                )
            ]
        )
        return secret, record

    async def find_key(self, secret: str) -> ApiKey | None:
        rows = await self.writer.lookup(  # unique index on hash: a point read
            "SELECT id, establishment, kind, prefix, created_at, revoked_at FROM api_keys "
            "WHERE hash = ? AND revoked_at IS NULL",
            (hash_key(secret),),
        )
        return _key(rows[0]) if rows else None

    async def list_keys(self) -> list[ApiKey]:
        rows = await self._read(
            "SELECT id, establishment, kind, prefix, created_at, revoked_at FROM api_keys "
            "ORDER BY created_at"
        )
        return [_key(row) for row in rows]

    async def revoke_key(self, key_id: str) -> bool:
        (count,) = await self._write(
            [
                (
                    "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                    (time.time(), key_id),
                )
            ]
        )
        return count > 0

    # -- conversations ---------------------------------------------------------------------
    async def load_conversation(
        self, conversation_id: str, establishment: str
    ) -> Conversation | None:
        """The conversation if it belongs to ``establishment`` (whatever key of it created
        it); the caller still checks a widget conversation's own secret."""
        rows = await self.writer.lookup(  # primary key: a point read
            "SELECT id, key_id, establishment, session, offered, created_at, updated_at, "
            "secret_hash FROM api_conversations WHERE id = ? AND establishment = ?",
            (conversation_id, establishment),
        )
        if not rows:
            return None
        row = rows[0]
        return Conversation(
            id=str(row[0]),
            key_id=str(row[1]),
            establishment=str(row[2]),
            session=loads_object(row[3]),
            offered=tuple(str(offer) for offer in as_list(loads(row[4]))),
            created_at=as_float(row[5]),
            updated_at=as_float(row[6]),
            secret_hash=as_text(row[7]),
        )

    async def transcript(self, conversation_id: str) -> list[TranscriptLine]:
        rows = await self._read(
            "SELECT at, author, body FROM api_messages WHERE conversation_id = ? ORDER BY seq",
            (conversation_id,),
        )
        return [TranscriptLine(as_float(row[0]), str(row[1]), loads_object(row[2])) for row in rows]

    async def save_turn(
        self,
        conversation: Conversation,
        *,
        created: bool,
        lines: Iterable[TranscriptLine],
        events: Iterable[OutboxEvent] = (),
        features: Sequence[FeatureWrite] = (),
    ) -> None:
        """Store the conversation's new state, its new transcript lines, the webhook events
        and the feature rows of the turn, all or nothing (one savepoint)."""
        now = conversation.updated_at
        session = json.dumps(conversation.session, ensure_ascii=False)
        offered = json.dumps(list(conversation.offered))
        statements: list[Statement] = []
        if created:
            statements.append(
                (
                    "INSERT INTO api_conversations (id, key_id, establishment, session, offered, "
                    "created_at, updated_at, secret_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        conversation.id,
                        conversation.key_id,
                        conversation.establishment,
                        session,
                        offered,
                        conversation.created_at,
                        now,
                        conversation.secret_hash,
                    ),
                )
            )
        else:
            statements.append(
                (
                    "UPDATE api_conversations SET session = ?, offered = ?, updated_at = ? "
                    "WHERE id = ?",
                    (session, offered, now, conversation.id),
                )
            )
        for line in lines:
            statements.append(
                (
                    "INSERT INTO api_messages (conversation_id, seq, at, author, body) VALUES "
                    "(?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM api_messages "
                    "WHERE conversation_id = ?), ?, ?, ?)",
                    (
                        conversation.id,
                        conversation.id,
                        line.at,
                        line.author,
                        json.dumps(line.body, ensure_ascii=False),
                    ),
                )
            )
        statements += [_outbox_insert(event, now) for event in events]
        if not features:
            await self._write(statements)
            return
        writes = tuple(features)

        def operation(db: sqlite3.Connection) -> None:
            if not feature_rows.holds_features(db):
                raise ValueError("this database has no feature tables: use FeatureStore")
            for write in writes:  # first: a taken group code fails before anything else
                feature_rows.apply_write(db, write, now)
            for sql, params in statements:
                db.execute(sql, params)

        await self.writer.write(operation)

    async def holds_features(self) -> bool:
        return await self.writer.read_with(feature_rows.holds_features)

    async def delete_conversation(self, conversation_id: str, establishment: str) -> bool:
        """Erase a conversation of ``establishment``, its transcript and its undelivered
        webhook payloads."""
        counts = await self._write(
            [
                (
                    "DELETE FROM api_conversations WHERE id = ? AND establishment = ?",
                    (conversation_id, establishment),
                ),
                (
                    "DELETE FROM api_messages WHERE conversation_id = ? AND NOT EXISTS "
                    "(SELECT 1 FROM api_conversations WHERE id = ?)",
                    (conversation_id, conversation_id),
                ),
                (
                    "DELETE FROM webhook_outbox WHERE subject = ? AND NOT EXISTS "
                    "(SELECT 1 FROM api_conversations WHERE id = ?)",
                    (conversation_id, conversation_id),
                ),
            ]
        )
        if counts[0] > 0:
            await self.writer.scrub()  # gone from the WAL too, before the 204
        return counts[0] > 0

    async def purge_idle_conversations(self, idle_days: int) -> int:
        cutoff = time.time() - idle_days * 86400
        counts = await self._write(
            [
                (
                    "DELETE FROM api_messages WHERE conversation_id IN "
                    "(SELECT id FROM api_conversations WHERE updated_at < ?)",
                    (cutoff,),
                ),
                ("DELETE FROM api_conversations WHERE updated_at < ?", (cutoff,)),
            ]
        )
        if counts[1]:
            await self.writer.scrub()
        return counts[1]

    # -- webhook outbox --------------------------------------------------------------------
    async def enqueue(self, events: Iterable[OutboxEvent]) -> None:
        """Add events alone (when no state change goes with them)."""
        now = time.time()
        await self._write([_outbox_insert(event, now) for event in events])

    async def outbox_due(
        self, now: float, limit: int = 50, skip_establishments: Sequence[str] = ()
    ) -> list[OutboxItem]:
        """Pending events due by ``now``, but only the oldest pending one of each subject and
        establishment (a conversation's events go out in the order they were created), and
        none for ``skip_establishments`` (whose lanes are full)."""
        skip = ""
        if skip_establishments:
            skip = f" AND o.establishment NOT IN ({', '.join('?' for _ in skip_establishments)})"
        rows = await self._read(
            _OUTBOX_SELECT.replace(" FROM webhook_outbox", " FROM webhook_outbox o")
            + " WHERE o.status = 'pending' AND o.next_attempt_at <= ?"
            + skip
            + " AND (o.subject IS NULL OR NOT EXISTS (SELECT 1 FROM webhook_outbox p "
            "WHERE p.subject = o.subject AND p.establishment = o.establishment "
            "AND p.status = 'pending' AND (p.created_at < o.created_at "
            "OR (p.created_at = o.created_at AND p.rowid < o.rowid)))) "
            "ORDER BY o.next_attempt_at, o.created_at, o.rowid LIMIT ?",
            (now, *skip_establishments, limit),
        )
        return [_item(row) for row in rows]

    async def outbox_next_due(self) -> float | None:
        rows = await self._read(
            "SELECT MIN(next_attempt_at) FROM webhook_outbox WHERE status = 'pending'"
        )
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    async def outbox_list(self) -> list[OutboxItem]:
        rows = await self._read(_OUTBOX_SELECT + " ORDER BY status, created_at")
        return [_item(row) for row in rows]

    async def outbox_about(self, subject: str) -> list[JsonObject]:
        """Undelivered events about one person or conversation (for their data export)."""
        rows = await self._read(
            "SELECT id, establishment, event_type, payload, status, created_at "
            "FROM webhook_outbox WHERE subject = ? ORDER BY created_at",
            (subject,),
        )
        return [
            {
                "id": str(row[0]),
                "establishment": str(row[1]),
                "type": str(row[2]),
                "payload": loads(row[3]),
                "status": str(row[4]),
                "created_at": as_float(row[5]),
            }
            for row in rows
        ]

    async def outbox_delivered(self, event_id: str) -> None:
        """Acknowledged: the payload (which may hold personal data) is deleted."""
        await self._write([("DELETE FROM webhook_outbox WHERE id = ?", (event_id,))])

    async def outbox_failed(
        self, event_id: str, attempts: int, next_attempt_at: float, error: str
    ) -> None:
        await self._write(
            [
                (
                    "UPDATE webhook_outbox SET attempts = ?, next_attempt_at = ?, last_error = ? "
                    "WHERE id = ? AND status = 'pending'",
                    (attempts, next_attempt_at, error[:500], event_id),
                )
            ]
        )

    async def outbox_dead(self, event_id: str, attempts: int, error: str) -> None:
        await self._write(
            [
                (
                    "UPDATE webhook_outbox SET status = 'dead', attempts = ?, last_error = ? "
                    "WHERE id = ?",
                    (attempts, error[:500], event_id),
                )
            ]
        )

    async def outbox_retry(self, event_id: str) -> bool:
        """Put a pending or dead event back in line for an immediate attempt."""
        now = time.time()
        (count,) = await self._write(
            [
                (
                    "UPDATE webhook_outbox SET status = 'pending', next_attempt_at = ?, "
                    "created_at = ? WHERE id = ?",
                    (now, now, event_id),
                )
            ]
        )
        return count > 0


_OUTBOX_SELECT = (
    "SELECT id, establishment, event_type, payload, status, attempts, created_at, "
    "next_attempt_at, last_error FROM webhook_outbox"
)


def outbox_changes(
    db: sqlite3.Connection, erased: str, events: Sequence[OutboxEvent], now: float
) -> None:
    """Webhook events of a :class:`~bot.storage.base.UserChange` (same transaction), and on
    erasure the user's undelivered ones. No-op when the database has no outbox table."""
    if not has_table(db, "webhook_outbox"):
        return
    if erased:
        db.execute("DELETE FROM webhook_outbox WHERE subject = ?", (erased,))
    for event in events:
        db.execute(*_outbox_insert(event, now))


def _outbox_insert(event: OutboxEvent, now: float) -> Statement:
    return (
        "INSERT OR IGNORE INTO webhook_outbox (id, establishment, event_type, payload, subject, "
        "status, attempts, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
        (
            event.id,
            event.establishment,
            event.event_type,
            event.payload,
            event.subject,
            now,
            now,
        ),
    )


def _key(row: Row) -> ApiKey:
    revoked = row[5]
    return ApiKey(
        id=str(row[0]),
        establishment=str(row[1]),
        kind=key_kind(row[2]),
        prefix=str(row[3]),
        created_at=as_float(row[4]),
        revoked_at=None if revoked is None else as_float(revoked),
    )


def _item(row: Row) -> OutboxItem:
    return OutboxItem(
        id=str(row[0]),
        establishment=str(row[1]),
        event_type=str(row[2]),
        payload=str(row[3]),
        status=str(row[4]),
        attempts=as_int(row[5]),
        created_at=as_float(row[6]),
        next_attempt_at=as_float(row[7]),
        last_error=as_text(row[8]),
    )
