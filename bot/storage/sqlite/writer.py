# Over 400 lines on purpose: the one group-commit writer (queue, batches, retries, scrub) kept
# whole: its parts share one writer thread and connection.
"""One SQLite file in WAL mode: the group-commit writer every SQLite store writes through.

Writes are plain functions of a ``sqlite3`` connection, queued and run by one writer task on
its own database thread: whatever is queued goes into a single transaction (group commit,
each operation in its own savepoint, so one failing does not undo the others), so many chats
writing at once cost one disk sync instead of one each, and a batch costs one thread hop.
Reads use a second connection (its own thread) and see committed data only; point reads by
key run inline (:meth:`SqliteWriter.lookup`).

Durability: ``synchronous=FULL`` by default, so a commit (and the 200 answered after it) survives
a power loss, not only a process crash. A writer blocked by another process (``busy_timeout``)
waits, then retries the batch. The database file is created readable by its owner only (0600).

Erasure reaches the disk: ``secure_delete`` overwrites deleted content with zeros, and the
write-ahead log (which still holds every page as it was written) is checkpointed into the
database and truncated to zero bytes (:meth:`SqliteWriter.scrub`) right after an erasure, and
within :data:`SCRUB_DELAY` of any other write (an inbox payload nulled once applied, a reply
deleted once sent). So what a person erased does not outlive on disk the turn that needed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from bot.storage.sqlite.migrations import CORE_MIGRATIONS, MIGRATIONS, Migration, migrate

log = logging.getLogger(__name__)

T = TypeVar("T")
#: A value as SQLite stores it (its storage classes); what a query parameter or a column is.
SqlValue = str | int | float | bytes | None
#: One result row (``sqlite3`` leaves rows untyped: this is what they hold).
Row = tuple[SqlValue, ...]
#: A write: a plain function of the writer's connection, run inside the batch's transaction.
Operation = Callable[[sqlite3.Connection], object]
#: ``(sql, params)``, for :meth:`SqliteWriter.execute`.
Statement = tuple[str, Sequence[SqlValue]]


@dataclass(frozen=True)
class Job:
    """A queued write. ``run`` executes it on the writer's connection (inside the batch's
    transaction) and returns how to hand its result to the caller once committed; ``fail``
    hands an error instead (``None`` for a fire-and-forget write: nobody waits)."""

    run: Callable[[sqlite3.Connection], Callable[[], None]]
    fail: Callable[[BaseException], None] | None

    @staticmethod
    def of(operation: Callable[[sqlite3.Connection], T], future: asyncio.Future[T] | None) -> Job:
        def run(db: sqlite3.Connection) -> Callable[[], None]:
            result = operation(db)

            def settle() -> None:
                if future is not None and not future.done():
                    future.set_result(result)

            return settle

        def fail(exc: BaseException) -> None:
            if future is not None and not future.done():
                future.set_exception(exc)

        return Job(run, fail if future is not None else None)


#: A job run in a batch: the job, how to settle it (if it ran), its error (if it failed).
Outcome = tuple[Job, "Callable[[], None] | None", "Exception | None"]
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
    """Create ``path`` (and its directory) readable by its owner only, if it does not exist.

    An existing file is never opened: closing any descriptor of a file drops every POSIX lock
    the process holds on it, SQLite's included, and another process closing its connection
    would then think itself the last one and delete the WAL this process still reads and
    writes (its reads stale, its commits lost)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def has_table(db: sqlite3.Connection, name: str) -> bool:
    """Whether the database has table ``name`` (another store may have migrated it since)."""
    found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return found.fetchone() is not None


def _locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


class SqliteWriter:
    """The connections to one database file and its single writer. Stores on the same file
    share one writer (and so one transaction per batch)."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        migrations: Sequence[Migration] = CORE_MIGRATIONS,
        max_batch: int = 512,
        scrub_delay: float = SCRUB_DELAY,
    ) -> None:
        if synchronous.upper() not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS}")
        self.path = str(path)
        self.synchronous = synchronous.upper()
        self.migrations = list(migrations)
        self.max_batch = max_batch
        self.scrub_delay = scrub_delay
        #: Checkpoints that truncated the WAL (tests, health).
        self.scrubs = 0
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        #: For point lookups by primary key, run inline in the event loop (see lookup).
        self._inline: sqlite3.Connection | None = None
        self._write_thread: ThreadPoolExecutor | None = None
        self._read_thread: ThreadPoolExecutor | None = None
        self._queue: asyncio.Queue[Job | _Scrub | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._scrub_timer: asyncio.TimerHandle | None = None

    @property
    def memory(self) -> bool:
        return self.path == ":memory:"

    @property
    def is_open(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, set WAL and the pragmas, run the migrations, start the writer."""
        if not self.memory:
            create_private_file(self.path)
        loop = asyncio.get_running_loop()
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._db = await loop.run_in_executor(self._write_thread, self._connect_writer)
        if self.memory:
            self._reader, self._read_thread = self._db, self._write_thread
        else:
            self._read_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-reader")
            self._reader = await loop.run_in_executor(self._read_thread, self._connect_reader)
            self._inline = sqlite3.connect(self.path, isolation_level=None)
            self._inline.execute(f"PRAGMA busy_timeout={INLINE_BUSY_TIMEOUT_MS}")
            self._inline.execute("PRAGMA query_only=ON")
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._write_loop(), name="sqlite-writer")

    def _connect_writer(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if not self.memory and str(mode).lower() != "wal":
                raise RuntimeError(f"SQLite refused WAL mode (got {mode!r})")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA secure_delete=ON")
            db.execute("PRAGMA foreign_keys=ON")
            migrate(db, self.migrations)
        except BaseException:
            db.close()
            raise
        return db

    def _connect_reader(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA query_only=ON")
        return db

    async def close(self) -> None:
        """Commit what is queued, scrub the WAL, close every connection."""
        if self._scrub_timer is not None:
            self._scrub_timer.cancel()
            self._scrub_timer = None
        if self._task is not None:
            if not self._task.done():
                await self.scrub()
                self._queue.put_nowait(None)
            await self._task
            self._task = None
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        loop = asyncio.get_running_loop()
        if self._reader is not None and self._reader is not self._db:
            await loop.run_in_executor(self._read_thread, self._reader.close)
        self._reader = None
        if self._db is not None:
            await loop.run_in_executor(self._write_thread, self._db.close)
            self._db = None
        for pool in {self._read_thread, self._write_thread}:
            if pool is not None:
                pool.shutdown(wait=True)
        self._read_thread = self._write_thread = None

    # -- writes ----------------------------------------------------------------------------
    def _enqueue(self, job: Job) -> None:
        if not self.is_open:
            raise RuntimeError("the SQLite store is not open")
        self._queue.put_nowait(job)

    async def write(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``operation`` in the next transaction (its own savepoint); its result once
        committed. An exception it raises undoes its own changes only, and is raised here."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._enqueue(Job.of(operation, future))
        return await future

    def write_later(self, operation: Operation) -> None:
        """Queue ``operation`` without waiting: it joins the next transaction."""
        self._enqueue(Job.of(operation, None))

    async def execute(self, statements: Sequence[Statement]) -> list[int]:
        """Run statements all or nothing; each one's row count."""

        def operation(db: sqlite3.Connection) -> list[int]:
            return [db.execute(sql, params).rowcount for sql, params in statements]

        return await self.write(operation)

    async def scrub(self) -> None:
        """Checkpoint the write-ahead log into the database and truncate it, after every write
        queued so far: what was erased is then gone from the files on disk (the database's
        freed space was already zeroed by ``secure_delete``)."""
        if self.memory or not self.is_open:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Scrub(future))
        await future

    def _scrub_soon(self) -> None:
        if self._scrub_timer is not None or self.memory:
            return
        self._scrub_timer = asyncio.get_running_loop().call_later(self.scrub_delay, self._scrub_due)

    def _scrub_due(self) -> None:
        self._scrub_timer = None
        if self.is_open:
            self._queue.put_nowait(_Scrub(None))

    async def _run_scrub(self, scrub: _Scrub) -> None:
        db = self._db
        assert db is not None
        try:
            loop = asyncio.get_running_loop()
            done = await loop.run_in_executor(self._write_thread, checkpoint, db)
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
            while len(batch) < self.max_batch and not self._queue.empty():
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
        loop = asyncio.get_running_loop()
        for attempt in range(LOCKED_RETRIES + 1):
            try:
                outcomes = await loop.run_in_executor(self._write_thread, self._run_batch, batch)
            except Exception as exc:
                if _locked(exc) and attempt < LOCKED_RETRIES:
                    log.warning("database locked by another process, retrying")
                    continue
                log.error("storage transaction failed: %s", type(exc).__name__)
                for job in batch:
                    if job.fail is not None:
                        job.fail(exc)
                return
            for job, settle, error in outcomes:
                if job.fail is None:
                    if error is not None:
                        log.error("deferred write failed: %s", type(error).__name__)
                elif error is not None:
                    job.fail(error)
                elif settle is not None:
                    settle()
            return

    def _run_batch(self, batch: list[Job]) -> list[Outcome]:
        """The database-thread side of a batch: one transaction, one savepoint per operation.
        Futures are settled by the caller, in the event loop. Raises if the transaction itself
        failed (a lock held elsewhere: the whole batch is retried)."""
        db = self._db
        assert db is not None
        outcomes: list[Outcome] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for job in batch:
                db.execute("SAVEPOINT op")
                try:
                    settle = job.run(db)
                except Exception as exc:
                    if _locked(exc):
                        raise
                    db.execute("ROLLBACK TO op")
                    db.execute("RELEASE op")
                    outcomes.append((job, None, exc))
                else:
                    db.execute("RELEASE op")
                    outcomes.append((job, settle, None))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                db.execute("ROLLBACK")
            raise
        return outcomes

    # -- reads -----------------------------------------------------------------------------
    async def read(self, sql: str, params: Sequence[SqlValue] = ()) -> list[Row]:
        """Rows of a query on the reader connection (committed data), in one thread hop."""

        def fetch(db: sqlite3.Connection) -> list[Row]:
            rows: list[Row] = db.execute(sql, params).fetchall()
            return rows

        return await self.read_with(fetch)

    async def read_with(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(reader)`` on the reader's thread: several queries for one hop."""
        reader = self._reader
        if reader is None:
            raise RuntimeError("the SQLite store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._read_thread, fn, reader)

    async def lookup(self, sql: str, params: Sequence[SqlValue] = ()) -> list[Row]:
        """A point read by primary key, run inline in the event loop.

        In WAL mode a reader never waits for the writer, and a lookup by key takes a few
        microseconds: less than the hop to a thread and back, which also wakes another thread
        that then competes for the GIL. The webhook and the API do one such read per message.
        Only for indexed single-row queries; anything that may scan goes through :meth:`read`.
        """
        if self._inline is None:
            return await self.read(sql, params)
        rows: list[Row] = self._inline.execute(sql, params).fetchall()
        return rows


class HasWriter(Protocol):
    """A store whose writer others on the same file may share."""

    @property
    def writer(self) -> SqliteWriter: ...


def own_or_share(
    target: str | Path | SqliteWriter | HasWriter, synchronous: str = "FULL"
) -> tuple[SqliteWriter, bool]:
    """The writer a store uses, and whether it owns it (opens and closes it): its own one on
    a path (with the whole schema), else the given writer or store's."""
    if isinstance(target, SqliteWriter):
        return target, False
    if isinstance(target, (str, Path)):
        return SqliteWriter(target, synchronous=synchronous, migrations=MIGRATIONS), True
    return target.writer, False
