# Over 400 lines on purpose: one class is the Storage contract on PostgreSQL (pool, locks,
# leases); split, it would be mixins sharing private state.
"""The durable store on PostgreSQL (psycopg 3, one async connection pool), for deployments of
several instances on one database. Same contract and semantics as
:class:`bot.storage.sqlite.SqliteStorage`: one transaction per applied update (state, replies,
webhook events, follow-up claim and inbox mark together), sessions only with consent (enforced
in SQL), erasure of every row about a person.

What several instances add (see docs/deploy.md):

- :meth:`PostgresStorage.inbox_add` dedupes on ``update_id`` in the database, whichever
  instance Telegram (or a load balancer) posted the update to;
- :meth:`PostgresStorage.chat_turn` holds a per-chat advisory lock across instances while a
  chat's update is applied, after the chat's earlier pending updates (wherever recorded);
- :meth:`PostgresStorage.replies_claim` hands each unsent reply to one instance
  (``FOR UPDATE SKIP LOCKED`` plus a lease), so a dead instance's replies are sent by another;
- :meth:`PostgresStorage.lease` elects one instance for periodic jobs (retention, follow-ups).

Erasure: deleted rows are gone for every query at once; PostgreSQL reclaims their space at the
next (auto)vacuum, and erasing calls ``VACUUM`` on the tables touched so that it happens within
seconds rather than whenever autovacuum comes by (the WAL segments are recycled by checkpoints).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence

import psycopg
from psycopg.abc import Params
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from bot.json_types import JsonObject, loads, loads_object
from bot.storage.base import (
    FollowUpTaken,
    InboxItem,
    OutboxEvent,
    OutgoingReply,
    Storage,
    UserChange,
)
from bot.storage.postgres import rows as features
from bot.storage.postgres import turns
from bot.storage.postgres.schema import (
    Connection,
    DatabaseUnavailable,
    Query,
    SchemaMismatch,
    Statement,
    applied,
    connect,
    migrate,
    mismatch,
    unreachable,
)

log = logging.getLogger(__name__)

#: Seconds a claim (reply, webhook event, lease) stays with its instance without renewal: past
#: it, another instance takes over (what a dead instance costs in delay).
CLAIM_SECONDS = 30.0
#: Namespace of the per-chat advisory locks (the second key is a hash of the chat).
CHAT_LOCK_SPACE = 0x5053  # "PS"
#: Chats whose person this instance remembers (to read their state with the lock).
REMEMBERED_CHATS = 10_000


#: Tables an erasure deletes from (vacuumed right after).
ERASED_TABLES = (
    "sessions",
    "consents",
    "replies",
    "webhook_outbox",
    "barometer_ratings",
    "followups",
)


#: A person's consent and session (no row: never consented).
STATE_SQL = (
    'SELECT s.data FROM consents c LEFT JOIN sessions s ON s."user" = c."user" WHERE c."user" = %s'
)
IDLE = psycopg.pq.TransactionStatus.IDLE


def instance_id() -> str:
    """Who holds a claim: host, process and a random part (a restarted process is new)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class PostgresStorage(Storage):
    """A :class:`Storage` on a PostgreSQL database shared by every instance of a deployment.

    Replies committed by an instance are claimed by it for ``claim_seconds`` (it sends them
    right away); only once that lapsed may another instance send them.

    ``migrate=True`` brings the schema up to date at :meth:`open` (tests, ``db migrate``);
    otherwise a database older or newer than the code is refused with one French line.
    """

    def __init__(
        self,
        url: str,
        *,
        migrate: bool = False,
        clock: Callable[[], float] = time.time,
        min_size: int = 2,
        max_size: int = 20,
        claim_seconds: float = CLAIM_SECONDS,
    ) -> None:
        self.url = url
        self.claim_seconds = claim_seconds
        self.path = ":postgresql:"  # for health checks that look at a file's disk
        self._migrate = migrate
        self._clock = clock
        self._min_size = min_size
        self._max_size = max_size
        self._pool: AsyncConnectionPool[Connection] | None = None
        #: Connections that hold the per-chat locks, apart: a turn holding one still gets its
        #: queries from the main pool (one pool for both would deadlock once full of holders).
        self._locks: AsyncConnectionPool[Connection] | None = None
        self.instance = instance_id()
        self._vacuum: asyncio.Task[None] | None = None
        #: The person of each chat seen lately (chat name → pseudonymous id): their state is
        #: read in the round trip that takes the chat's lock.
        self._people: OrderedDict[str, str] = OrderedDict()

    shared = True

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        # One plain connection first: an unreachable server or a stale schema fails at once,
        # with the server's own reason, instead of after the pool's timeout.
        conn = await connect(self.url)
        try:
            if self._migrate:
                await migrate(conn)
            else:
                problem = mismatch(await applied(conn))
                if problem:
                    raise SchemaMismatch(problem)
        finally:
            await conn.close()
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self.url,
            min_size=self._min_size,
            max_size=self._max_size,
            kwargs={"autocommit": True},
            open=False,
            name="passerelle",
        )
        try:
            await pool.open(wait=True, timeout=15)
        except Exception as exc:
            await pool.close()
            raise unreachable(self.url, exc) from None
        self._pool = pool
        self._locks = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self._max_size * 2,
            kwargs={"autocommit": True},
            open=False,
            name="passerelle-locks",
        )
        await self._locks.open(wait=True, timeout=15)

    async def close(self) -> None:
        if self._vacuum is not None:
            with contextlib.suppress(Exception):
                await self._vacuum
            self._vacuum = None
        if self._locks is not None:
            await self._locks.close()
            self._locks = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def lock_pool(self) -> AsyncConnectionPool[Connection]:
        if self._locks is None:
            raise RuntimeError("PostgresStorage.open() was not called")
        return self._locks

    @property
    def pool(self) -> AsyncConnectionPool[Connection]:
        if self._pool is None:
            raise RuntimeError("PostgresStorage.open() was not called")
        return self._pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """One connection in one transaction: committed on exit, rolled back on error."""
        await self._in_turn()
        try:
            async with self.pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"PostgreSQL injoignable : {exc}") from exc

    async def _in_turn(self) -> turns.Turn | None:
        """The current turn (its lock taken now if not yet: nothing of a turn reaches the
        database before its lock is held)."""
        turn = turns.current(self._locks)
        if turn is not None:
            await turn.ensure()
        return turn

    async def rows(self, sql: Query, params: Params = ()) -> list[TupleRow]:
        """A read in autocommit (committed data only)."""
        await self._in_turn()
        async with self.pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return list(await cursor.fetchall())

    async def run(self, statements: Sequence[Statement]) -> list[int]:
        """Statements in one transaction, in one round trip (pipeline mode); each one's row
        count (a single statement runs in autocommit: as atomic)."""
        await self._in_turn()
        try:
            async with self.pool.connection() as conn:
                return await pipelined(conn, statements)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"PostgreSQL injoignable : {exc}") from exc

    def vacuum_soon(self, *tables: str) -> None:
        """Reclaim erased rows' space now rather than at autovacuum's next pass (outside any
        transaction, in the background; a failure is logged, nothing else depends on it)."""

        async def vacuum() -> None:
            try:
                async with self.pool.connection() as conn:
                    for table in tables:
                        await conn.execute(f"VACUUM {table}".encode())
            except Exception as exc:
                log.warning("VACUUM after erasure failed: %s", type(exc).__name__)

        if self._vacuum is None or self._vacuum.done():
            self._vacuum = asyncio.create_task(vacuum(), name="postgres-vacuum")

    # -- sessions and consent --------------------------------------------------------------
    async def load_session(self, user: str) -> JsonObject | None:
        rows = await self.rows('SELECT data FROM sessions WHERE "user" = %s', (user,))
        if not rows:
            return None
        return loads_object(rows[0][0])

    async def get_consent(self, user: str) -> bool | None:
        rows = await self.rows('SELECT 1 FROM consents WHERE "user" = %s', (user,))
        return True if rows else None

    async def load_state(self, user: str) -> tuple[bool | None, JsonObject | None]:
        turn = turns.current(self._locks)
        if turn is not None and turn.prefetched is not None and turn.prefetched[0] == user:
            rows = turn.prefetched[1]  # read with the chat's lock, nothing committed since
            turn.prefetched = None
        else:
            rows = await self.rows(STATE_SQL, (user,))
        if not rows:
            return None, None
        return True, (loads_object(rows[0][0]) if rows[0][0] else None)

    async def commit_update(self, update_id: int | None, user: str, change: UserChange) -> None:
        """One transaction, in one round trip (pipeline mode) unless a write needs an answer
        on the way (a follow-up's claim, a barometer rating, a follow-up's answer)."""
        now = self._clock()
        erasing = bool(user) and (change.erase or change.consent is False)
        turn = await self._in_turn()
        if turn is not None:
            turn.prefetched = None  # the state may change now
            if user and turn.chat is not None:
                self._remember(turn.chat, user)
        blind = [features.blind(write, now) for write in change.features]
        try:
            async with self.pool.connection() as conn:
                if change.followup is None and all(b is not None for b in blind):
                    head = [statement for writes in blind if writes for statement in writes]
                    statements = head + self._commit_statements(update_id, user, change, now)
                    await pipelined(conn, statements, transaction=True)
                else:
                    async with conn.transaction():
                        if change.followup is not None and not await features.claim_followup(
                            conn, change.followup, now
                        ):
                            raise FollowUpTaken(change.followup)  # nothing of the turn committed
                        for write in change.features:
                            await features.apply_write(conn, write, now)
                        for sql, params in self._commit_statements(update_id, user, change, now):
                            await conn.execute(sql, params)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"PostgreSQL injoignable : {exc}") from exc
        if erasing:
            self.vacuum_soon(*ERASED_TABLES)

    def _commit_statements(
        self, update_id: int | None, user: str, change: UserChange, now: float
    ) -> list[Statement]:
        """The statements of a commit after its feature writes, in order."""
        session = None if change.session is None else json.dumps(change.session)
        erasing = bool(user) and (change.erase or change.consent is False)
        out: list[Statement] = []
        if user and change.erase:
            out.append(("DELETE FROM webhook_outbox WHERE subject = %s", (user,)))
        out += [outbox_insert(event, now) for event in change.outbox]
        if erasing:
            out.append(('DELETE FROM sessions WHERE "user" = %s', (user,)))
            out.append(('DELETE FROM consents WHERE "user" = %s', (user,)))
        elif user:
            if change.consent:
                out.append(
                    (
                        'INSERT INTO consents ("user", granted_at) VALUES (%s, %s) '
                        "ON CONFLICT DO NOTHING",
                        (user, now),
                    )
                )
            if session is not None:
                out.append(
                    (
                        'INSERT INTO sessions ("user", data, updated_at) SELECT %s, %s, %s '
                        'WHERE EXISTS (SELECT 1 FROM consents WHERE "user" = %s) '
                        'ON CONFLICT ("user") DO UPDATE SET data = excluded.data, '
                        "updated_at = excluded.updated_at",
                        (user, session, now, user),
                    )
                )
        if user and change.erase:
            out += features.erase_statements(user)
            chats = sorted({r.chat_id for r in change.replies})
            if chats:
                out.append(("DELETE FROM replies WHERE chat_id = ANY(%s)", (chats,)))
        if change.replies:
            until = now + self.claim_seconds
            out.append(
                (
                    "INSERT INTO replies (update_id, seq, chat_id, method, params, photo, "
                    "created_at, claimed_until, claimed_by) SELECT u, s, c, m, p, f, %s, %s, %s "
                    "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::text[], "
                    "%s::text[], %s::bytea[]) AS r(u, s, c, m, p, f) ON CONFLICT DO NOTHING",
                    (
                        now,
                        until,
                        self.instance,
                        [r.update_id for r in change.replies],
                        [r.seq for r in change.replies],
                        [r.chat_id for r in change.replies],
                        [r.method for r in change.replies],
                        [r.params for r in change.replies],
                        [r.photo for r in change.replies],
                    ),
                )
            )
        if update_id is not None:
            out.append(
                (
                    "UPDATE inbox SET done_at = %s, payload = NULL, chat = NULL "
                    "WHERE update_id = %s AND done_at IS NULL",
                    (now, update_id),
                )
            )
        return out

    def _remember(self, chat: str, user: str) -> None:
        self._people[chat] = user
        self._people.move_to_end(chat)
        if len(self._people) > REMEMBERED_CHATS:
            self._people.popitem(last=False)

    async def export_user(self, user: str) -> JsonObject:
        data: JsonObject = {}
        consent = await self.rows('SELECT granted_at FROM consents WHERE "user" = %s', (user,))
        if consent:
            data["consent"] = {"granted": True, "at": consent[0][0]}
        session = await self.rows(
            'SELECT data, updated_at FROM sessions WHERE "user" = %s', (user,)
        )
        if session:
            data["session"] = loads(session[0][0])
            data["updated_at"] = session[0][1]
        return data

    async def purge_idle(self, idle_days: float) -> int:
        cutoff = self._clock() - idle_days * 86400
        async with self.transaction() as conn:
            cursor = await conn.execute(
                'SELECT "user" FROM consents c WHERE COALESCE('
                '(SELECT updated_at FROM sessions s WHERE s."user" = c."user"), c.granted_at) < %s '
                'UNION SELECT "user" FROM sessions WHERE updated_at < %s '
                'AND "user" NOT IN (SELECT "user" FROM consents)',
                (cutoff, cutoff),
            )
            users = [row[0] for row in await cursor.fetchall()]
            if users:
                await conn.execute('DELETE FROM sessions WHERE "user" = ANY(%s)', (users,))
                await conn.execute('DELETE FROM consents WHERE "user" = ANY(%s)', (users,))
        if users:
            self.vacuum_soon("sessions", "consents")
        return len(users)

    # -- inbox -----------------------------------------------------------------------------
    async def inbox_add(self, update_id: int, payload: bytes, chat: str | None = None) -> bool:
        """Record an update once across every instance (``chat``: whose turn it is, so that
        :meth:`chat_turn` can apply a chat's updates in order wherever they arrived). Like
        the payload, ``chat`` (it holds the chat's Telegram id) is dropped once applied."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO inbox (update_id, payload, received_at, chat) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (update_id, payload, self._clock(), chat),
            )
            return cursor.rowcount == 1

    async def inbox_pending(self, limit: int = 1000) -> list[InboxItem]:
        rows = await self.rows(
            "SELECT update_id, payload, attempts FROM inbox WHERE done_at IS NULL "
            "ORDER BY update_id LIMIT %s",
            (limit,),
        )
        return [InboxItem(int(u), bytes(p or b""), int(a or 0)) for u, p, a in rows]

    async def inbox_dead(self, update_id: int) -> None:
        now = self._clock()
        await self.run(
            [
                (
                    "UPDATE inbox SET done_at = %s, failed_at = %s, payload = NULL, chat = NULL "
                    "WHERE update_id = %s AND done_at IS NULL",
                    (now, now, update_id),
                )
            ]
        )

    async def inbox_failed(self, update_id: int, max_attempts: int) -> bool:
        rows = await self.rows(
            "UPDATE inbox SET attempts = attempts + 1 WHERE update_id = %s AND done_at IS NULL "
            "RETURNING attempts",
            (update_id,),
        )
        if rows and int(rows[0][0]) >= max_attempts:
            await self.inbox_dead(update_id)
            return True
        return False

    async def inbox_prune(self, older_than_seconds: float) -> int:
        cutoff = self._clock() - older_than_seconds
        (count,) = await self.run(
            [("DELETE FROM inbox WHERE done_at IS NOT NULL AND done_at < %s", (cutoff,))]
        )
        return count

    # -- several instances: per-chat turns -------------------------------------------------
    @contextlib.asynccontextmanager
    async def chat_turn(self, chat: str) -> AsyncIterator[None]:
        """Hold ``chat``'s lock across every instance of the deployment (a session-level
        advisory lock on a connection kept for the turn): two instances never apply two
        updates of one chat at once. Reentrant per process only through the caller's queue.

        The lock is taken with the turn's first statement, in its round trip (see
        :mod:`.turns`): :meth:`inbox_pending_of` reads the chat's pending updates and, for
        a chat seen lately, its person's state with it."""
        async with turns.turn(
            self.lock_pool, CHAT_LOCK_SPACE, _lock_key(chat), transactional=False
        ) as turn:
            turn.chat = chat
            yield

    async def inbox_pending_of(self, chat: str, up_to: int) -> list[InboxItem]:
        """``chat``'s updates recorded (by any instance) and not yet applied, up to
        ``up_to``, oldest first: what must be applied before ``up_to`` (under
        :meth:`chat_turn`)."""
        pending = (
            "SELECT update_id, payload, attempts FROM inbox WHERE chat = %s AND "
            "done_at IS NULL AND update_id <= %s ORDER BY update_id",
            (chat, up_to),
        )
        turn = turns.current(self._locks)
        if turn is None:
            rows = await self.rows(*pending)
        else:
            user = self._people.get(chat) if turn.chat == chat else None
            statements = [pending] if user is None else [pending, (STATE_SQL, (user,))]
            found = await turn.run(statements)
            rows = found[0]
            if user is not None:
                turn.prefetched = (user, found[1])
        return [InboxItem(int(u), bytes(p or b""), int(a or 0)) for u, p, a in rows]

    async def inbox_is_done(self, update_id: int) -> bool:
        """Whether an update was applied (or dead-lettered) already, by whichever instance."""
        rows = await self.rows(
            "SELECT done_at IS NOT NULL FROM inbox WHERE update_id = %s", (update_id,)
        )
        return bool(rows and rows[0][0])

    async def inbox_stale_chats(self, older_than: float, limit: int = 100) -> list[str]:
        """Chats with an update recorded more than ``older_than`` seconds ago and still not
        applied: the instance that recorded it died (or is far behind); any instance may
        apply them, under :meth:`chat_turn`."""
        rows = await self.rows(
            "SELECT chat FROM inbox WHERE done_at IS NULL AND chat IS NOT NULL "
            "AND received_at < %s GROUP BY chat ORDER BY MIN(update_id) LIMIT %s",
            (self._clock() - older_than, limit),
        )
        return [str(row[0]) for row in rows]

    # -- reply outbox ----------------------------------------------------------------------
    async def replies_pending(self) -> list[OutgoingReply]:
        """Unsent replies, in recorded order, but none another live instance holds: this
        instance's own, unclaimed ones and lapsed claims (all claimed for this instance)."""
        return await self._claim_replies(orphans_only=False)

    async def replies_orphaned(self) -> list[OutgoingReply]:
        """Unsent replies whose claim lapsed (their instance died, or this one could not
        send them for :attr:`claim_seconds`), claimed for this instance: the sweeper's."""
        return await self._claim_replies(orphans_only=True)

    async def renew_claims(self) -> None:
        """Extend this instance's claims (replies, webhook events): while it lives, no other
        instance takes over what it is sending."""
        until = self._clock() + self.claim_seconds
        await self.run(
            [
                (
                    "UPDATE replies SET claimed_until = %s WHERE claimed_by = %s",
                    (until, self.instance),
                ),
                (
                    "UPDATE webhook_outbox SET claimed_until = %s WHERE claimed_by = %s",
                    (until, self.instance),
                ),
            ]
        )

    async def replies_of_chat(self, chat_id: int) -> list[OutgoingReply]:
        """Under :meth:`chat_turn`, in the round trip that takes the chat's lock if not held
        yet: the chat's unsent replies, claimed for this instance (see the contract)."""
        claim = (
            "UPDATE replies SET claimed_until = %s, claimed_by = %s WHERE chat_id = %s "
            "RETURNING update_id, seq, chat_id, method, params, photo, created_at",
            (self._clock() + self.claim_seconds, self.instance, chat_id),
        )
        turn = turns.current(self._locks)
        if turn is not None:
            (rows,) = await turn.run([claim])
        else:
            rows = await self.rows(*claim)
        rows.sort(key=lambda row: (row[6], row[0], row[1]))
        return [
            OutgoingReply(int(u), int(s), int(c), m, p, None if f is None else bytes(f))
            for u, s, c, m, p, f, _ in rows
        ]

    async def _claim_replies(
        self, *, orphans_only: bool, limit: int = 10_000
    ) -> list[OutgoingReply]:
        """Rows another live instance holds are skipped (locked ones too: ``SKIP LOCKED``),
        so each reply is sent by one instance; a dead instance's come back once its claim
        lapsed (its very last one may be sent twice: Telegram may have accepted it just
        before the crash)."""
        now = self._clock()
        mine = "FALSE" if orphans_only else "claimed_by IS NULL OR claimed_by = %(me)s"
        async with self.transaction() as conn:
            cursor = await conn.execute(
                (
                    "SELECT update_id, seq, chat_id, method, params, photo FROM replies "
                    f"WHERE {mine} OR claimed_until < %(now)s "
                    "ORDER BY created_at, update_id, seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
                ).encode(),
                {"me": self.instance, "now": now, "limit": limit},
            )
            rows = await cursor.fetchall()
            if rows:
                await conn.execute(
                    "UPDATE replies SET claimed_until = %s, claimed_by = %s "
                    "WHERE (update_id, seq) IN "
                    "(SELECT * FROM unnest(%s::bigint[], %s::bigint[]))",
                    (
                        now + self.claim_seconds,
                        self.instance,
                        [r[0] for r in rows],
                        [r[1] for r in rows],
                    ),
                )
        replies = []
        for update_id, seq, chat_id, method, params, photo in rows:
            photo = None if photo is None else bytes(photo)
            replies.append(
                OutgoingReply(int(update_id), int(seq), int(chat_id), method, params, photo)
            )
        return replies

    async def reply_sent(self, update_id: int, seq: int, *, wait: bool = True) -> None:
        delete = ("DELETE FROM replies WHERE update_id = %s AND seq = %s", (update_id, seq))
        turn = turns.current(self._locks)
        if turn is not None and not turn.transactional:
            await turn.run([delete])  # on the turn's connection (in autocommit)
            return
        await self.run([delete])

    async def holds_followups(self) -> bool:
        return True  # one database holds every table

    async def holds_features(self) -> bool:
        return True

    # -- several instances: leader lease ---------------------------------------------------
    async def lease(self, name: str, seconds: float = CLAIM_SECONDS) -> bool:
        """Take or renew the lease ``name`` for ``seconds``: ``True`` for exactly one instance
        at a time (the holder renews; another takes it only once it lapsed)."""
        now = self._clock()
        rows = await self.rows(
            "INSERT INTO leases (name, holder, until) VALUES (%s, %s, %s) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until "
            "WHERE leases.holder = excluded.holder OR leases.until < %s RETURNING holder",
            (name, self.instance, now + seconds, now),
        )
        return bool(rows)

    async def release(self, name: str) -> None:
        await self.run(
            [("DELETE FROM leases WHERE name = %s AND holder = %s", (name, self.instance))]
        )

    # -- several instances: contents reload ------------------------------------------------
    async def notify(self, channel: str, payload: str = "") -> None:
        """Tell every instance listening on ``channel`` (NOTIFY; this one included)."""
        await self.rows("SELECT pg_notify(%s, %s)", (channel, payload))

    async def listen(self, channel: str, ready: asyncio.Event | None = None) -> AsyncIterator[str]:
        """Payloads NOTIFYed on ``channel`` by any instance, on a dedicated connection
        (``ready`` is set once listening: nothing sent after that is missed)."""
        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        try:
            await conn.execute(f"LISTEN {_identifier(channel)}".encode())
            if ready is not None:
                ready.set()
            async for notice in conn.notifies():
                yield notice.payload
        finally:
            await conn.close()

    # -- introspection (health, benchmarks, tests) -----------------------------------------
    async def probe(self) -> None:
        await self.run(
            [
                (
                    "INSERT INTO health (id, checked_at) VALUES (1, %s) "
                    "ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
                    (self._clock(),),
                )
            ]
        )

    async def counts(self) -> dict[str, int]:
        result: dict[str, int] = {}
        for table in ("consents", "sessions", "inbox"):
            rows = await self.rows(f"SELECT COUNT(*) FROM {table}".encode())
            result[table] = int(rows[0][0])
        return result

    async def scrub(self) -> None:
        """SQLite's WAL scrub has no PostgreSQL counterpart beyond :meth:`vacuum_soon`."""
        if self._vacuum is not None:
            with contextlib.suppress(Exception):
                await self._vacuum


def _lock_key(chat: str) -> int:
    """A stable signed 32-bit key for ``chat`` (advisory locks take two int4 keys)."""
    import zlib

    return zlib.crc32(chat.encode()) - 2**31


def _identifier(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not an identifier: {name!r}")
    return name


def outbox_insert(event: OutboxEvent, now: float) -> Statement:
    """The INSERT of one webhook event (:class:`bot.storage.integration.OutboxEvent`)."""
    return (
        "INSERT INTO webhook_outbox (id, establishment, event_type, payload, subject, "
        "status, attempts, created_at, next_attempt_at) "
        "VALUES (%s, %s, %s, %s, %s, 'pending', 0, %s, %s) ON CONFLICT DO NOTHING",
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


async def pipelined(
    conn: Connection, statements: Sequence[Statement], *, transaction: bool = False
) -> list[int]:
    """``statements`` in one round trip (pipeline mode): in one transaction if there are
    several (or ``transaction``), else in autocommit; each one's row count. On an error
    nothing is committed and the connection is back to idle."""
    if not statements:
        return []
    begin = transaction or len(statements) > 1
    try:
        async with conn.pipeline():
            if begin:
                await conn.execute("BEGIN")
            cursors = [await conn.execute(sql, params) for sql, params in statements]
            if begin:
                await conn.execute("COMMIT")
    except BaseException:
        if conn.info.transaction_status != IDLE and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                await conn.rollback()
        raise
    return [cursor.rowcount for cursor in cursors]
