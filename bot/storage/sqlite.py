"""The durable store: SQLite through aiosqlite, in WAL mode, migrated at start-up.

Writes go through one writer task that groups whatever is queued into a single transaction
(group commit, each operation in its own savepoint), so many chats writing at once cost one
disk sync instead of one each; reads use a second connection and see committed data only.
The database file is created readable by its owner only (mode 0600).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from bot.storage.base import InboxItem, Storage, UserChange
from bot.storage.migrations import CORE_MIGRATIONS, Migration, migrate

log = logging.getLogger(__name__)

T = TypeVar("T")
Operation = Callable[[aiosqlite.Connection], Awaitable[Any]]
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


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
        self._queue: asyncio.Queue[tuple[Operation, asyncio.Future[Any]] | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

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
        await self._pragma(self._db, "busy_timeout=10000")
        await migrate(self._db, self.migrations)
        if memory:
            self._reader = self._db
        else:
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            await self._pragma(self._reader, "busy_timeout=10000")
            await self._pragma(self._reader, "query_only=ON")
        self._queue = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name="sqlite-writer")

    async def close(self) -> None:
        if self._writer is not None:
            self._queue.put_nowait(None)
            await self._writer
            self._writer = None
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
    async def _write(self, operation: Operation) -> Any:
        """Queue ``operation`` for the next transaction; return its result once committed."""
        if self._writer is None or self._writer.done():
            raise RuntimeError("SqliteStorage is not open")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((operation, future))
        return await future

    async def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            await self._run_batch(batch)

    async def _run_batch(self, batch: list[tuple[Operation, asyncio.Future[Any]]]) -> None:
        db = self._db
        assert db is not None
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            await db.execute("BEGIN IMMEDIATE")
            for operation, future in batch:
                await db.execute("SAVEPOINT op")
                try:
                    result = await operation(db)
                except Exception as exc:
                    await db.execute("ROLLBACK TO op")
                    await db.execute("RELEASE op")
                    outcomes.append((future, None, exc))
                else:
                    await db.execute("RELEASE op")
                    outcomes.append((future, result, None))
            await db.execute("COMMIT")
        except Exception as exc:
            log.error("storage transaction failed: %s", type(exc).__name__)
            with contextlib.suppress(Exception):
                await db.execute("ROLLBACK")
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, result, error in outcomes:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self.reader.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

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

    async def commit_update(self, update_id: int | None, user: str, change: UserChange) -> None:
        now = self._clock()
        session = None if change.session is None else json.dumps(change.session)

        async def operation(db: aiosqlite.Connection) -> None:
            if user and (change.erase or change.consent is False):
                await db.execute("DELETE FROM sessions WHERE user = ?", (user,))
                await db.execute("DELETE FROM consents WHERE user = ?", (user,))
            elif user:
                if change.consent:
                    await db.execute(
                        "INSERT INTO consents (user, granted_at) VALUES (?, ?) "
                        "ON CONFLICT (user) DO NOTHING",
                        (user, now),
                    )
                if session is not None:
                    await db.execute(
                        "INSERT INTO sessions (user, data, updated_at) SELECT ?, ?, ? "
                        "WHERE EXISTS (SELECT 1 FROM consents WHERE user = ?) "
                        "ON CONFLICT (user) DO UPDATE SET data = excluded.data, "
                        "updated_at = excluded.updated_at",
                        (user, session, now, user),
                    )
            if update_id is not None:
                await db.execute(
                    "UPDATE inbox SET done_at = ?, payload = NULL "
                    "WHERE update_id = ? AND done_at IS NULL",
                    (now, update_id),
                )

        await self._write(operation)

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
        return count

    # -- inbox -----------------------------------------------------------------------------
    async def inbox_add(self, update_id: int, payload: bytes) -> bool:
        now = self._clock()

        async def operation(db: aiosqlite.Connection) -> bool:
            cursor = await db.execute(
                "INSERT OR IGNORE INTO inbox (update_id, payload, received_at) VALUES (?, ?, ?)",
                (update_id, payload, now),
            )
            added = cursor.rowcount == 1
            await cursor.close()
            return added

        added: bool = await self._write(operation)
        return added

    async def inbox_pending(self, limit: int = 1000) -> list[InboxItem]:
        rows = await self._rows(
            "SELECT update_id, payload FROM inbox WHERE done_at IS NULL ORDER BY update_id LIMIT ?",
            (limit,),
        )
        return [InboxItem(int(row[0]), bytes(row[1])) for row in rows]

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
    async def counts(self) -> dict[str, int]:
        """Rows per core table."""
        result: dict[str, int] = {}
        for table in ("consents", "sessions", "inbox"):
            rows = await self._rows(f"SELECT COUNT(*) FROM {table}")
            result[table] = int(rows[0][0])
        return result
