# Over 400 lines on purpose: one class is the IntegrationStore contract on PostgreSQL (keys,
# conversations, outbox), each turn one transaction.
"""The integration tables (API keys, API conversations and transcripts, webhook outbox) on
PostgreSQL: the public methods of :class:`bot.storage.integration.IntegrationStore`, on the
pool of a :class:`~bot.storage.postgres.core.PostgresStorage`.

Several instances: a conversation's turns are serialised across instances by
:meth:`PostgresIntegrationStore.conversation_turn` (an advisory lock), and each due webhook
event is claimed by one instance (:meth:`PostgresIntegrationStore.outbox_due` takes rows with
``FOR UPDATE SKIP LOCKED`` and leases them): an instance that dies mid-delivery leaves its
events to the others once the lease lapsed.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Sequence

from psycopg.rows import TupleRow

from bot.json_types import JsonObject
from bot.storage.base import FeatureWrite
from bot.storage.integration import (
    KEY_PREFIXES,
    ApiKey,
    Conversation,
    KeyKind,
    OutboxEvent,
    OutboxItem,
    TranscriptLine,
    hash_key,
    new_id,
)
from bot.storage.postgres import rows as feature_rows
from bot.storage.postgres import turns
from bot.storage.postgres.core import PostgresStorage, _lock_key, outbox_insert
from bot.storage.postgres.schema import Statement

#: Namespace of the per-conversation advisory locks.
CONVERSATION_LOCK_SPACE = 0x5041  # "PA"


class PostgresIntegrationStore:
    """Same public methods and semantics as :class:`bot.storage.integration.IntegrationStore`.

    Give it a URL to own its :class:`PostgresStorage`, or share the server's one."""

    def __init__(
        self, target: str | PostgresStorage, *, migrate: bool = False, owned: bool = False
    ) -> None:
        """``owned``: this store opens and closes a core store it was handed."""
        if isinstance(target, PostgresStorage):
            self.core = target
            self._owned = owned
        else:
            self.core = PostgresStorage(target, migrate=migrate)
            self._owned = True

    async def open(self) -> None:
        if self._owned:
            await self.core.open()

    async def close(self) -> None:
        if self._owned:
            await self.core.close()

    # -- keys ------------------------------------------------------------------------------
    async def create_key(self, establishment: str, kind: KeyKind = "api") -> tuple[str, ApiKey]:
        secret = KEY_PREFIXES[kind] + secrets.token_urlsafe(32)
        record = ApiKey(
            id=new_id("key_")[:16],
            establishment=establishment,
            kind=kind,
            prefix=secret[:10],
            created_at=time.time(),
        )
        await self.core.run(
            [
                (
                    "INSERT INTO api_keys (id, establishment, kind, hash, prefix, created_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
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
        rows = await self.core.rows(
            "SELECT id, establishment, kind, prefix, created_at, revoked_at FROM api_keys "
            "WHERE hash = %s AND revoked_at IS NULL",
            (hash_key(secret),),
        )
        return _key(rows[0]) if rows else None

    async def list_keys(self) -> list[ApiKey]:
        rows = await self.core.rows(
            "SELECT id, establishment, kind, prefix, created_at, revoked_at FROM api_keys "
            "ORDER BY created_at"
        )
        return [_key(row) for row in rows]

    async def revoke_key(self, key_id: str) -> bool:
        (count,) = await self.core.run(
            [
                (
                    "UPDATE api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                    (time.time(), key_id),
                )
            ]
        )
        return count > 0

    # -- conversations ---------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def conversation_turn(self, conversation_id: str) -> AsyncIterator[None]:
        """Hold the conversation's lock across every instance for one turn (load → engine →
        :meth:`save_turn`): two requests of one conversation never interleave.

        A transaction-level lock, in one transaction with the load and the save on the
        turn's connection: the lock is taken in the load's round trip and goes with the
        save's commit (see :mod:`.turns`), two round trips for the turn."""
        async with turns.turn(
            self.core.lock_pool,
            CONVERSATION_LOCK_SPACE,
            _lock_key(conversation_id),
            transactional=True,
        ):
            yield

    async def load_conversation(
        self, conversation_id: str, establishment: str
    ) -> Conversation | None:
        select = (
            "SELECT id, key_id, establishment, session, offered, created_at, updated_at, "
            "secret_hash FROM api_conversations WHERE id = %s AND establishment = %s",
            (conversation_id, establishment),
        )
        turn = turns.current(self.core.lock_pool)
        if turn is not None and turn.transactional:
            [rows] = await turn.run([select])
        else:
            rows = await self.core.rows(*select)
        if not rows:
            return None
        row = rows[0]
        return Conversation(
            id=row[0],
            key_id=row[1],
            establishment=row[2],
            session=json.loads(row[3]),
            offered=tuple(json.loads(row[4])),
            created_at=row[5],
            updated_at=row[6],
            secret_hash=row[7],
        )

    async def transcript(self, conversation_id: str) -> list[TranscriptLine]:
        rows = await self.core.rows(
            "SELECT at, author, body FROM api_messages WHERE conversation_id = %s ORDER BY seq",
            (conversation_id,),
        )
        return [TranscriptLine(row[0], row[1], json.loads(row[2])) for row in rows]

    async def save_turn(
        self,
        conversation: Conversation,
        *,
        created: bool,
        lines: Iterable[TranscriptLine],
        events: Iterable[OutboxEvent] = (),
        features: Sequence[FeatureWrite] = (),
    ) -> None:
        now = conversation.updated_at
        session = json.dumps(conversation.session, ensure_ascii=False)
        offered = json.dumps(list(conversation.offered))
        statements: list[Statement] = []
        if created:
            statements.append(
                (
                    "INSERT INTO api_conversations (id, key_id, establishment, session, offered, "
                    "created_at, updated_at, secret_hash) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
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
                    "UPDATE api_conversations SET session = %s, offered = %s, updated_at = %s "
                    "WHERE id = %s",
                    (session, offered, now, conversation.id),
                )
            )
        lines = list(lines)
        if lines:
            # One statement for the turn's lines, numbered after the conversation's last.
            statements.append(
                (
                    "INSERT INTO api_messages (conversation_id, seq, at, author, body) "
                    "SELECT %s, last.seq + l.n, l.at, l.author, l.body FROM "
                    "(SELECT COALESCE(MAX(seq), 0) AS seq FROM api_messages "
                    "WHERE conversation_id = %s) AS last, unnest(%s::float8[], %s::text[], "
                    "%s::text[]) WITH ORDINALITY AS l(at, author, body, n)",
                    (
                        conversation.id,
                        conversation.id,
                        [line.at for line in lines],
                        [line.author for line in lines],
                        [json.dumps(line.body, ensure_ascii=False) for line in lines],
                    ),
                )
            )
        statements += [outbox_insert(event, now) for event in events]
        turn = turns.current(self.core.lock_pool)
        if turn is not None and turn.transactional:
            # The turn's transaction (opened with its lock by the load): committed here, the
            # features first (a taken group code fails before anything else), those that need
            # no answer pipelined with the state.
            batch: list[Statement] = []
            for write in features:
                blind = feature_rows.blind(write, now)
                if blind is None:
                    await turn.ensure()
                    await feature_rows.apply_write(turn.conn, write, now)
                else:
                    batch += blind
            await turn.run([*batch, *statements, ("COMMIT", ())])
            turn.committed()
            return
        pieces = [feature_rows.blind(write, now) for write in features]
        if all(piece is not None for piece in pieces):  # one round trip (pipeline mode)
            head = [statement for piece in pieces if piece for statement in piece]
            await self.core.run(head + statements)
            return
        async with self.core.transaction() as conn:  # one database holds every table
            for write in features:  # first: a taken group code fails before anything else
                await feature_rows.apply_write(conn, write, now)
            for sql, params in statements:
                await conn.execute(sql, params)

    async def holds_features(self) -> bool:
        return True

    async def delete_conversation(self, conversation_id: str, establishment: str) -> bool:
        counts = await self.core.run(
            [
                (
                    "DELETE FROM api_conversations WHERE id = %s AND establishment = %s",
                    (conversation_id, establishment),
                ),
                (
                    "DELETE FROM api_messages WHERE conversation_id = %s AND NOT EXISTS "
                    "(SELECT 1 FROM api_conversations WHERE id = %s)",
                    (conversation_id, conversation_id),
                ),
                (
                    "DELETE FROM webhook_outbox WHERE subject = %s AND NOT EXISTS "
                    "(SELECT 1 FROM api_conversations WHERE id = %s)",
                    (conversation_id, conversation_id),
                ),
            ]
        )
        if counts[0] > 0:
            self.core.vacuum_soon("api_conversations", "api_messages", "webhook_outbox")
        return counts[0] > 0

    async def purge_idle_conversations(self, idle_days: int) -> int:
        cutoff = time.time() - idle_days * 86400
        counts = await self.core.run(
            [
                (
                    "DELETE FROM api_messages WHERE conversation_id IN "
                    "(SELECT id FROM api_conversations WHERE updated_at < %s)",
                    (cutoff,),
                ),
                ("DELETE FROM api_conversations WHERE updated_at < %s", (cutoff,)),
            ]
        )
        if counts[1]:
            self.core.vacuum_soon("api_conversations", "api_messages")
        return counts[1]

    # -- webhook outbox --------------------------------------------------------------------
    async def enqueue(self, events: Iterable[OutboxEvent]) -> None:
        now = time.time()
        statements = [outbox_insert(event, now) for event in events]
        if statements:
            await self.core.run(statements)

    async def outbox_due(
        self,
        now: float,
        limit: int = 50,
        skip_establishments: Sequence[str] = (),
    ) -> list[OutboxItem]:
        """Like SQLite's, but none another live instance holds: each event returned is
        claimed for this instance (for :attr:`PostgresStorage.claim_seconds`, renewed by each
        call); another instance's call skips it meanwhile, and takes it once the claim
        lapsed (this instance died before :meth:`outbox_delivered` / :meth:`outbox_failed`)."""
        me, lapse = self.core.instance, time.time()
        async with self.core.transaction() as conn:
            cursor = await conn.execute(
                _OUTBOX_SELECT.replace(" FROM webhook_outbox", " FROM webhook_outbox o")
                + " WHERE o.status = 'pending' AND o.next_attempt_at <= %s"
                " AND (o.claimed_by IS NULL OR o.claimed_by = %s OR o.claimed_until < %s)"
                " AND NOT (o.establishment = ANY(%s))"
                " AND (o.subject IS NULL OR NOT EXISTS (SELECT 1 FROM webhook_outbox p "
                "WHERE p.subject = o.subject AND p.establishment = o.establishment "
                "AND p.status = 'pending' AND (p.created_at < o.created_at "
                "OR (p.created_at = o.created_at AND p.seq < o.seq)))) "
                "ORDER BY o.next_attempt_at, o.created_at, o.seq LIMIT %s "
                "FOR UPDATE OF o SKIP LOCKED",
                (now, me, lapse, list(skip_establishments), limit),
            )
            rows = await cursor.fetchall()
            if rows:
                await conn.execute(
                    "UPDATE webhook_outbox SET claimed_until = %s, claimed_by = %s "
                    "WHERE id = ANY(%s)",
                    (lapse + self.core.claim_seconds, me, [row[0] for row in rows]),
                )
        return [_item(row) for row in rows]

    async def outbox_next_due(self) -> float | None:
        """When the next event is due for this instance (another live instance's claim
        postpones it until the claim lapses)."""
        rows = await self.core.rows(
            "SELECT MIN(CASE WHEN claimed_by IS NULL OR claimed_by = %s "
            "THEN next_attempt_at ELSE GREATEST(next_attempt_at, claimed_until) END) "
            "FROM webhook_outbox WHERE status = 'pending'",
            (self.core.instance,),
        )
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    async def outbox_list(self) -> list[OutboxItem]:
        rows = await self.core.rows(_OUTBOX_SELECT + " ORDER BY status, created_at")
        return [_item(row) for row in rows]

    async def outbox_about(self, subject: str) -> list[JsonObject]:
        rows = await self.core.rows(
            "SELECT id, establishment, event_type, payload, status, created_at "
            "FROM webhook_outbox WHERE subject = %s ORDER BY created_at",
            (subject,),
        )
        return [
            {
                "id": row[0],
                "establishment": row[1],
                "type": row[2],
                "payload": json.loads(row[3]),
                "status": row[4],
                "created_at": row[5],
            }
            for row in rows
        ]

    async def outbox_delivered(self, event_id: str) -> None:
        await self.core.run([("DELETE FROM webhook_outbox WHERE id = %s", (event_id,))])

    async def outbox_failed(
        self, event_id: str, attempts: int, next_attempt_at: float, error: str
    ) -> None:
        await self.core.run(
            [
                (
                    "UPDATE webhook_outbox SET attempts = %s, next_attempt_at = %s, "
                    "last_error = %s, claimed_until = NULL, claimed_by = NULL "
                    "WHERE id = %s AND status = 'pending'",
                    (attempts, next_attempt_at, error[:500], event_id),
                )
            ]
        )

    async def outbox_dead(self, event_id: str, attempts: int, error: str) -> None:
        await self.core.run(
            [
                (
                    "UPDATE webhook_outbox SET status = 'dead', attempts = %s, last_error = %s, "
                    "claimed_until = NULL, claimed_by = NULL WHERE id = %s",
                    (attempts, error[:500], event_id),
                )
            ]
        )

    async def outbox_retry(self, event_id: str) -> bool:
        now = time.time()
        (count,) = await self.core.run(
            [
                (
                    "UPDATE webhook_outbox SET status = 'pending', next_attempt_at = %s, "
                    "created_at = %s, claimed_until = NULL, claimed_by = NULL WHERE id = %s",
                    (now, now, event_id),
                )
            ]
        )
        return count > 0


_OUTBOX_SELECT = (
    "SELECT id, establishment, event_type, payload, status, attempts, created_at, "
    "next_attempt_at, last_error FROM webhook_outbox"
)


def _key(row: TupleRow) -> ApiKey:
    return ApiKey(
        id=row[0],
        establishment=row[1],
        kind=row[2],
        prefix=row[3],
        created_at=row[4],
        revoked_at=row[5],
    )


def _item(row: TupleRow) -> OutboxItem:
    return OutboxItem(
        id=row[0],
        establishment=row[1],
        event_type=row[2],
        payload=row[3],
        status=row[4],
        attempts=row[5],
        created_at=row[6],
        next_attempt_at=row[7],
        last_error=row[8],
    )
