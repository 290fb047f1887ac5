"""The durable store: SQLite through aiosqlite, in WAL mode, migrated at start-up.

Writes go through one writer task that groups whatever is queued into a single transaction
(group commit, each operation in its own savepoint), so many chats writing at once cost one
disk sync instead of one each. Operations written as plain functions of a ``sqlite3``
connection (:meth:`SqliteStorage._write_sync`) run a whole batch in one hop to the database
thread; reads use a second connection and see committed data only.

Durability: ``synchronous=FULL`` by default, so a commit (and the 200 answered after it) survives
a power loss, not only a process crash; group commit keeps the cost at one fsync per batch.
A writer blocked by another process (``busy_timeout``) waits, then retries the batch.
The database file is created readable by its owner only (mode 0600).

Erasure reaches the disk: ``secure_delete`` overwrites deleted content with zeros, and the
write-ahead log (which still holds every page as it was written) is checkpointed into the
database and truncated to zero bytes (:meth:`SqliteStorage.scrub`) right after an erasure, and
within :data:`SCRUB_DELAY` of any other write (an inbox payload nulled once applied, a reply
deleted once sent). So what a person erased, or sent before consenting, does not outlive on disk
the turn that needed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from bot.storage.base import FollowUpTaken, InboxItem, OutgoingReply, Storage, UserChange
from bot.storage.migrations import CORE_MIGRATIONS, Migration, migrate

log = logging.getLogger(__name__)

T = TypeVar("T")
Operation = Callable[[aiosqlite.Connection], Awaitable[Any]]
SyncOperation = Callable[[sqlite3.Connection], Any]
#: A queued write: the operation, whether it is a plain (sync) function, and its future
#: (``None`` for fire-and-forget writes that join the next transaction).
Job = tuple[Any, bool, "asyncio.Future[Any] | None"]
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
#: How long one statement waits for another process's write lock before "database is locked".
BUSY_TIMEOUT_MS = 10_000
#: Inline point reads never wait for the writer in WAL mode; this only covers the rare moment
#: a reader must wait (WAL recovery after a crash of another process).
INLINE_BUSY_TIMEOUT_MS = 1_000
#: How many times a batch that failed on a lock held elsewhere is retried (after the busy
#: timeout above, so a lock held for minutes is survived).
LOCKED_RETRIES = 5
#: Seconds after a write before the write-ahead log is checkpointed and truncated (at most one
#: such scrub per delay under load; erasures scrub at once).
SCRUB_DELAY = 0.5


class _Scrub:
    """A queued checkpoint-and-truncate of the WAL (run by the writer between transactions)."""

    def __init__(self, future: asyncio.Future[None] | None) -> None:
        self.future = future


def checkpoint(db: sqlite3.Connection) -> bool:
    """Copy the WAL into the database and truncate it to zero bytes; ``False`` if a reader
    kept it from finishing (it is then tried again later)."""
    row = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return row is None or int(row[0]) == 0


def create_private_file(path: str | Path) -> None:
    """Create ``path`` (and its directory) readable by its owner only, if it does not exist."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


class SqliteStorage(Storage):
    """A :class:`Storage` in one SQLite file. Sessions are only ever stored for users whose
    consent is recorded: saving one without consent is a no-op, enforced in SQL."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        migrations: Sequence[Migration] = CORE_MIGRATIONS,
        clock: Callable[[], float] = time.time,
        max_batch: int = 512,
        scrub_delay: float = SCRUB_DELAY,
    ) -> None:
        if synchronous.upper() not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS}")
        self.path = str(path)
        self.synchronous = synchronous.upper()
        self.migrations = list(migrations)
        self._clock = clock
        self._max_batch = max_batch
        self._db: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        #: For point lookups by primary key, run inline in the event loop (see _lookup).
        self._inline: sqlite3.Connection | None = None
        self._queue: asyncio.Queue[Job | _Scrub | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.scrub_delay = scrub_delay
        self._scrub_timer: asyncio.TimerHandle | None = None
        #: Checkpoints that truncated the WAL (tests, health).
        self.scrubs = 0

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        memory = self.path == ":memory:"
        if not memory:
            create_private_file(self.path)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        mode = await self._pragma(self._db, "journal_mode=WAL")
        if not memory and str(mode).lower() != "wal":
            raise RuntimeError(f"SQLite refused WAL mode (got {mode!r})")
        await self._pragma(self._db, f"synchronous={self.synchronous}")
        await self._pragma(self._db, f"busy_timeout={BUSY_TIMEOUT_MS}")
        await self._pragma(self._db, "secure_delete=ON")
        await migrate(self._db, self.migrations)
        if memory:
            self._reader = self._db
        else:
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            await self._pragma(self._reader, f"busy_timeout={BUSY_TIMEOUT_MS}")
            await self._pragma(self._reader, "query_only=ON")
            self._inline = sqlite3.connect(self.path, isolation_level=None)
            self._inline.execute(f"PRAGMA busy_timeout={INLINE_BUSY_TIMEOUT_MS}")
            self._inline.execute("PRAGMA query_only=ON")
        self._queue = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name="sqlite-writer")

    async def close(self) -> None:
        if self._scrub_timer is not None:
            self._scrub_timer.cancel()
            self._scrub_timer = None
        if self._writer is not None:
            if not self._writer.done():
                await self.scrub()
            self._queue.put_nowait(None)
            await self._writer
            self._writer = None
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        if self._reader is not None and self._reader is not self._db:
            await self._reader.close()
        self._reader = None
        if self._db is not None:
            await self._db.close()
            self._db = None

    @staticmethod
    async def _pragma(db: aiosqlite.Connection, pragma: str) -> Any:
        async with db.execute(f"PRAGMA {pragma}") as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None

    @property
    def reader(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise RuntimeError("SqliteStorage.open() was not called")
        return self._reader

    # -- the writer ------------------------------------------------------------------------
    def _enqueue(self, operation: Any, sync: bool, wait: bool) -> asyncio.Future[Any] | None:
        if self._writer is None or self._writer.done():
            raise RuntimeError("SqliteStorage is not open")
        future = asyncio.get_running_loop().create_future() if wait else None
        self._queue.put_nowait((operation, sync, future))
        return future

    async def _write(self, operation: Operation) -> Any:
        """Queue ``operation`` for the next transaction; return its result once committed."""
        return await self._enqueue(operation, False, True)  # type: ignore[misc]

    async def _write_sync(self, operation: SyncOperation) -> Any:
        """Like :meth:`_write` for a plain function of the ``sqlite3`` connection, run in the
        database thread (a batch of these costs one thread hop, not one per statement)."""
        return await self._enqueue(operation, True, True)  # type: ignore[misc]

    def _write_later(self, operation: SyncOperation) -> None:
        """Queue ``operation`` without waiting: it joins the next transaction."""
        self._enqueue(operation, True, False)

    async def scrub(self) -> None:
        """Checkpoint the write-ahead log into the database and truncate it, after every write
        queued so far: what was erased is then gone from the files on disk (the database's
        freed space was already zeroed by ``secure_delete``)."""
        if self.path == ":memory:" or self._writer is None or self._writer.done():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Scrub(future))
        await future

    def _scrub_soon(self) -> None:
        if self._scrub_timer is not None or self.path == ":memory:":
            return
        self._scrub_timer = asyncio.get_running_loop().call_later(self.scrub_delay, self._scrub_due)

    def _scrub_due(self) -> None:
        self._scrub_timer = None
        if self._writer is not None and not self._writer.done():
            self._queue.put_nowait(_Scrub(None))

    async def _run_scrub(self, scrub: _Scrub) -> None:
        db = self._db
        assert db is not None
        try:
            done = await _in_thread(db, checkpoint)
        except Exception as exc:
            log.warning("WAL checkpoint failed: %s", type(exc).__name__)
            done = False
        if done:
            self.scrubs += 1
        else:
            self._scrub_soon()  # a long reader held it: try again shortly
        if scrub.future is not None and not scrub.future.done():
            scrub.future.set_result(None)

    async def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            if isinstance(first, _Scrub):
                await self._run_scrub(first)
                continue
            batch: list[Job] = [first]
            scrub: _Scrub | None = None
            while len(batch) < self._max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                if isinstance(item, _Scrub):  # after this batch, before anything queued later
                    scrub = item
                    break
                batch.append(item)
            await self._commit_batch(batch)
            if scrub is not None:
                await self._run_scrub(scrub)
            else:
                self._scrub_soon()

    async def _commit_batch(self, batch: list[Job]) -> None:
        for attempt in range(LOCKED_RETRIES + 1):
            try:
                outcomes = await self._run_batch(batch)
            except sqlite3.OperationalError as exc:
                locked = "locked" in str(exc) or "busy" in str(exc)
                if locked and attempt < LOCKED_RETRIES:
                    log.warning("database locked by another process, retrying")
                    continue
                self._settle_failed(batch, exc)
                break
            except Exception as exc:
                self._settle_failed(batch, exc)
                break
            self._settle(outcomes)
            break

    @staticmethod
    def _settle_failed(batch: list[Job], exc: BaseException) -> None:
        log.error("storage transaction failed: %s", type(exc).__name__)
        for _, _, future in batch:
            if future is not None and not future.done():
                future.set_exception(exc)

    @staticmethod
    def _settle(outcomes: list[tuple[asyncio.Future[Any] | None, Any, Exception | None]]) -> None:
        for future, result, error in outcomes:
            if future is None or future.done():
                if error is not None and future is None:
                    log.error("deferred write failed: %s", type(error).__name__)
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    async def _run_batch(
        self, batch: list[Job]
    ) -> list[tuple[asyncio.Future[Any] | None, Any, Exception | None]]:
        """Run ``batch`` in one transaction, each operation in a savepoint (one failing does
        not undo the others). Raises if the transaction itself could not be committed."""
        db = self._db
        assert db is not None
        if all(sync for _, sync, _ in batch):
            return await _in_thread(db, _run_sync_batch, batch)  # type: ignore[no-any-return]
        outcomes: list[tuple[asyncio.Future[Any] | None, Any, Exception | None]] = []
        try:
            await db.execute("BEGIN IMMEDIATE")
            for operation, sync, future in batch:
                await db.execute("SAVEPOINT op")
                try:
                    if sync:
                        result = await _in_thread(db, operation)
                    else:
                        result = await operation(db)
                except Exception as exc:
                    await db.execute("ROLLBACK TO op")
                    await db.execute("RELEASE op")
                    outcomes.append((future, None, exc))
                else:
                    await db.execute("RELEASE op")
                    outcomes.append((future, result, None))
            await db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                await db.execute("ROLLBACK")
            raise
        return outcomes

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run a read on the reader connection's thread, in one hop."""

        def fetch(db: sqlite3.Connection) -> list[Any]:
            return db.execute(sql, params).fetchall()

        rows: list[Any] = await _in_thread(self.reader, fetch)
        return rows

    async def _lookup(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """A point read by primary key, run inline in the event loop.

        In WAL mode a reader never waits for the writer, and a lookup by key takes a few
        microseconds: less than the hop to a thread and back, which also wakes another thread
        that then competes for the GIL. The webhook and the API do one such read per message.
        Only for indexed single-row queries; anything that may scan goes through :meth:`_rows`.
        """
        if self._inline is None:
            return await self._rows(sql, params)
        return self._inline.execute(sql, params).fetchall()

    # -- sessions and consent --------------------------------------------------------------
    async def load_session(self, user: str) -> dict[str, Any] | None:
        rows = await self._rows("SELECT data FROM sessions WHERE user = ?", (user,))
        if not rows:
            return None
        data: dict[str, Any] = json.loads(rows[0][0])
        return data

    async def get_consent(self, user: str) -> bool | None:
        rows = await self._rows("SELECT 1 FROM consents WHERE user = ?", (user,))
        return True if rows else None

    async def load_state(self, user: str) -> tuple[bool | None, dict[str, Any] | None]:
        rows = await self._lookup(
            "SELECT s.data FROM consents c LEFT JOIN sessions s ON s.user = c.user "
            "WHERE c.user = ?",
            (user,),
        )
        if not rows:
            return None, None
        data: dict[str, Any] | None = json.loads(rows[0][0]) if rows[0][0] else None
        return True, data

    async def commit_update(self, update_id: int | None, user: str, change: UserChange) -> None:
        now = self._clock()
        session = None if change.session is None else json.dumps(change.session)

        def operation(db: sqlite3.Connection) -> None:
            if change.followup is not None:
                # Claimed with the question and the session, all or nothing (savepoint).
                claimed = db.execute(
                    "UPDATE followups SET sent_at = ? "
                    "WHERE id = ? AND sent_at IS NULL AND cancelled_at IS NULL",
                    (now, change.followup),
                )
                if claimed.rowcount != 1:
                    raise FollowUpTaken(change.followup)
            if change.outbox or (user and change.erase):
                _outbox_changes(db, user if change.erase else "", change.outbox, now)
            if user and (change.erase or change.consent is False):
                db.execute("DELETE FROM sessions WHERE user = ?", (user,))
                db.execute("DELETE FROM consents WHERE user = ?", (user,))
            elif user:
                if change.consent:
                    db.execute(
                        "INSERT INTO consents (user, granted_at) VALUES (?, ?) "
                        "ON CONFLICT (user) DO NOTHING",
                        (user, now),
                    )
                if session is not None:
                    db.execute(
                        "INSERT INTO sessions (user, data, updated_at) SELECT ?, ?, ? "
                        "WHERE EXISTS (SELECT 1 FROM consents WHERE user = ?) "
                        "ON CONFLICT (user) DO UPDATE SET data = excluded.data, "
                        "updated_at = excluded.updated_at",
                        (user, session, now, user),
                    )
            if user and change.erase:
                # Replies not yet sent to this person's chat go too (the new ones below stay).
                chats = {(r.chat_id,) for r in change.replies}
                db.executemany("DELETE FROM replies WHERE chat_id = ?", chats)
            if change.replies:
                db.executemany(
                    "INSERT OR IGNORE INTO replies "
                    "(update_id, seq, chat_id, method, params, photo, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (r.update_id, r.seq, r.chat_id, r.method, r.params, r.photo, now)
                        for r in change.replies
                    ],
                )
            if update_id is not None:
                db.execute(
                    "UPDATE inbox SET done_at = ?, payload = NULL "
                    "WHERE update_id = ? AND done_at IS NULL",
                    (now, update_id),
                )

        await self._write_sync(operation)
        if user and (change.erase or change.consent is False):
            await self.scrub()  # the erased rows leave the WAL too, before the confirmation

    async def export_user(self, user: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        consent = await self._rows("SELECT granted_at FROM consents WHERE user = ?", (user,))
        if consent:
            data["consent"] = {"granted": True, "at": consent[0][0]}
        session = await self._rows("SELECT data, updated_at FROM sessions WHERE user = ?", (user,))
        if session:
            data["session"] = json.loads(session[0][0])
            data["updated_at"] = session[0][1]
        return data

    async def purge_idle(self, idle_days: float) -> int:
        cutoff = self._clock() - idle_days * 86400

        async def operation(db: aiosqlite.Connection) -> int:
            async with db.execute(
                "SELECT user FROM consents c WHERE COALESCE("
                "(SELECT updated_at FROM sessions s WHERE s.user = c.user), c.granted_at) < ? "
                "UNION SELECT user FROM sessions WHERE updated_at < ? "
                "AND user NOT IN (SELECT user FROM consents)",
                (cutoff, cutoff),
            ) as cursor:
                users = [(row[0],) for row in await cursor.fetchall()]
            await db.executemany("DELETE FROM sessions WHERE user = ?", users)
            await db.executemany("DELETE FROM consents WHERE user = ?", users)
            return len(users)

        count: int = await self._write(operation)
        if count:
            await self.scrub()
        return count

    # -- inbox -----------------------------------------------------------------------------
    async def inbox_add(self, update_id: int, payload: bytes, chat: str | None = None) -> bool:
        now = self._clock()

        def operation(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "INSERT OR IGNORE INTO inbox (update_id, payload, received_at) VALUES (?, ?, ?)",
                (update_id, payload, now),
            )
            return cursor.rowcount == 1

        added: bool = await self._write_sync(operation)
        return added

    async def inbox_pending(self, limit: int = 1000) -> list[InboxItem]:
        rows = await self._rows(
            "SELECT update_id, payload, attempts FROM inbox WHERE done_at IS NULL "
            "ORDER BY update_id LIMIT ?",
            (limit,),
        )
        items = []
        for update_id, payload, attempts in rows:
            if isinstance(payload, str):
                payload = payload.encode("utf-8", "replace")
            items.append(InboxItem(int(update_id), bytes(payload or b""), int(attempts or 0)))
        return items

    async def inbox_dead(self, update_id: int) -> None:
        now = self._clock()

        def operation(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE inbox SET done_at = ?, failed_at = ?, payload = NULL "
                "WHERE update_id = ? AND done_at IS NULL",
                (now, now, update_id),
            )

        await self._write_sync(operation)

    async def inbox_failed(self, update_id: int, max_attempts: int) -> bool:
        def operation(db: sqlite3.Connection) -> int:
            db.execute(
                "UPDATE inbox SET attempts = attempts + 1 WHERE update_id = ? AND done_at IS NULL",
                (update_id,),
            )
            row = db.execute("SELECT attempts FROM inbox WHERE update_id = ?", (update_id,))
            found = row.fetchone()
            return int(found[0]) if found else 0

        attempts: int = await self._write_sync(operation)
        if attempts >= max_attempts:
            await self.inbox_dead(update_id)
            return True
        return False

    # -- reply outbox ----------------------------------------------------------------------
    async def replies_pending(self) -> list[OutgoingReply]:
        """Recorded replies, in order; a row that cannot be a Bot API call (written by an older
        version from a malformed update) is deleted with a log line instead of stopping the
        start-up."""
        rows = await self._rows(
            "SELECT update_id, seq, chat_id, method, params, photo FROM replies "
            "ORDER BY created_at, update_id, seq"
        )
        replies, bad = [], []
        for row in rows:
            update_id, seq, chat_id, method, params, photo = row
            if (
                type(chat_id) is not int
                or method not in ("sendMessage", "sendPhoto")
                or not isinstance(params, str)
                or not (photo is None or isinstance(photo, bytes))
            ):
                bad.append((update_id, seq))
                continue
            replies.append(OutgoingReply(int(update_id), int(seq), chat_id, method, params, photo))
        if bad:
            log.warning("%d unreadable recorded reply(ies) dropped", len(bad))

            def operation(db: sqlite3.Connection) -> None:
                db.executemany("DELETE FROM replies WHERE update_id = ? AND seq = ?", bad)

            await self._write_sync(operation)
        return replies

    async def reply_sent(self, update_id: int, seq: int, *, wait: bool = True) -> None:
        def operation(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM replies WHERE update_id = ? AND seq = ?", (update_id, seq))

        if wait:
            await self._write_sync(operation)
        else:
            self._write_later(operation)

    async def holds_followups(self) -> bool:
        rows = await self._rows(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'followups'"
        )
        return bool(rows)

    async def inbox_prune(self, older_than_seconds: float) -> int:
        cutoff = self._clock() - older_than_seconds

        async def operation(db: aiosqlite.Connection) -> int:
            cursor = await db.execute(
                "DELETE FROM inbox WHERE done_at IS NOT NULL AND done_at < ?", (cutoff,)
            )
            count = cursor.rowcount
            await cursor.close()
            return count

        count: int = await self._write(operation)
        return count

    # -- introspection (health, benchmarks, tests) -----------------------------------------
    async def probe(self) -> None:
        """Commit one small write (``/healthz``): raises if the database cannot be written
        (disk full, file read-only or locked for too long)."""
        now = self._clock()

        def operation(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO health (id, checked_at) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
                (now,),
            )

        await self._write_sync(operation)

    async def counts(self) -> dict[str, int]:
        """Rows per core table."""
        result: dict[str, int] = {}
        for table in ("consents", "sessions", "inbox"):
            rows = await self._rows(f"SELECT COUNT(*) FROM {table}")
            result[table] = int(rows[0][0])
        return result


async def _in_thread(db: aiosqlite.Connection, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(connection, *args)`` in the connection's own thread (one hop)."""
    execute: Callable[..., Awaitable[Any]] = db._execute
    return await execute(fn, db._conn, *args)


def _run_sync_batch(
    db: sqlite3.Connection, batch: list[Job]
) -> list[tuple[asyncio.Future[Any] | None, Any, Exception | None]]:
    """The database-thread side of a batch of plain operations: one transaction, one
    savepoint per operation. Futures are settled by the caller, in the event loop."""
    outcomes: list[tuple[asyncio.Future[Any] | None, Any, Exception | None]] = []
    db.execute("BEGIN IMMEDIATE")
    try:
        for operation, _, future in batch:
            db.execute("SAVEPOINT op")
            try:
                result = operation(db)
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise  # the whole batch is retried
                db.execute("ROLLBACK TO op")
                db.execute("RELEASE op")
                outcomes.append((future, None, exc))
            except Exception as exc:
                db.execute("ROLLBACK TO op")
                db.execute("RELEASE op")
                outcomes.append((future, None, exc))
            else:
                db.execute("RELEASE op")
                outcomes.append((future, result, None))
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            db.execute("ROLLBACK")
        raise
    return outcomes


def _outbox_changes(db: sqlite3.Connection, erased: str, events: Sequence[Any], now: float) -> None:
    """Webhook events of a :class:`UserChange` (same transaction), and on erasure the user's
    undelivered ones. No-op when the database has no outbox table (core schema only)."""
    from bot.storage.integration import _outbox_insert

    found = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'webhook_outbox'"
    ).fetchone()
    if found is None:
        return
    if erased:
        db.execute("DELETE FROM webhook_outbox WHERE subject = ?", (erased,))
    for event in events:
        db.execute(*_outbox_insert(event, now))
