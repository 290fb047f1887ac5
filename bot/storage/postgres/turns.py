"""A chat's or a conversation's turn on PostgreSQL in as few round trips as the guarantees allow.

A turn holds its lock on a connection of its own (apart from the main pool, so that holders
never starve the queries of the turn). The lock is taken with the turn's first statement, in
the same round trip (:meth:`Turn.run` puts it in front, in pipeline mode): nothing of the
turn reaches the database before the lock is held, so the order and exclusion across
instances are those of taking it on entry, one round trip fewer.

- A Telegram chat's turn takes a session-level advisory lock (the replies are sent under it,
  after the commit, so that two instances never interleave one chat's replies); reply
  deletions made in the turn are sent at once, each committed on its own, and their answers
  read with the unlock's, in one round trip (:meth:`Turn.send`).
- An API conversation's turn takes a transaction-level lock: load and save are one
  transaction on the turn's connection, the lock goes with its commit (two round trips).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar

import psycopg
from psycopg.abc import Params
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from bot.storage.postgres.schema import Connection, Query, Statement

log = logging.getLogger(__name__)


class Turn:
    """The lock connection of one turn and what it already knows (see the module)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Connection],
        conn: Connection,
        space: int,
        key: int,
        *,
        transactional: bool,
    ) -> None:
        self.pool = pool
        self.conn = conn
        self.space, self.key = space, key
        self.transactional = transactional
        self.held = False
        self.active = True
        #: Whose turn it is (a chat's name) and a state read under its lock, for that user.
        self.chat: str | None = None
        self.prefetched: tuple[str, list[TupleRow]] | None = None
        self._uncertain = False  # a session lock that may be held after an error
        self._pipeline: psycopg.AsyncPipeline | None = None
        self._stack = contextlib.AsyncExitStack()

    def _lock(self) -> list[Statement]:
        if self.transactional:
            return [("BEGIN", ()), ("SELECT pg_advisory_xact_lock(%s, %s)", (self.space, self.key))]
        return [("SELECT pg_advisory_lock(%s, %s)", (self.space, self.key))]

    async def run(self, statements: Sequence[Statement]) -> list[list[TupleRow]]:
        """``statements`` on the turn's connection in one round trip, the lock taken first if
        not held yet; each one's rows (empty for a statement that returns none)."""
        lock = [] if self.held else self._lock()
        try:
            if self._pipeline is not None:
                cursors = [await self.conn.execute(sql, params) for sql, params in lock]
                cursors += [await self.conn.execute(sql, params) for sql, params in statements]
                await self._pipeline.sync()
            else:
                async with self.conn.pipeline():
                    cursors = [await self.conn.execute(sql, params) for sql, params in lock]
                    cursors += [await self.conn.execute(sql, params) for sql, params in statements]
        except BaseException:
            self._uncertain = self._uncertain or not self.transactional
            raise
        self.held = True
        return [
            list(await cursor.fetchall()) if cursor.description is not None else []
            for cursor in cursors[len(lock) :]
        ]

    def committed(self) -> None:
        """The turn's transaction ended (a transactional turn's lock with it)."""
        if self.transactional:
            self.held = False

    async def ensure(self) -> None:
        """Take the lock now if not held (a statement of the turn runs elsewhere)."""
        if not self.held:
            await self.run([])

    async def send(self, sql: Query, params: Params) -> None:
        """Send a statement, committed on its own (its own sync), without waiting for the
        answer, which is read with the turn's next round trip (at the latest, its end). The
        statement has left the process when this returns, as if its answer had come.

        psycopg has no public call for a sync without a wait: the pipeline's own steps are
        used (``_enqueue_sync``, ``_communicate_gen``; psycopg is pinned in constraints.txt)."""
        await self.ensure()
        if self._pipeline is None:
            self._pipeline = await self._stack.enter_async_context(self.conn.pipeline())
        pipeline = self._pipeline
        try:
            await self.conn.execute(sql, params)
            async with self.conn.lock:
                pipeline._enqueue_sync()
                await self.conn.wait(pipeline._communicate_gen())
        except BaseException:
            self._uncertain = True
            raise

    async def end(self) -> None:
        """Release the lock, reading the answers still due, in one round trip; a connection
        whose lock could not be released for sure is closed (the server releases it)."""
        self.active = False
        try:
            if self._uncertain:
                raise psycopg.OperationalError("a lock of the turn may still be held")
            last: list[Statement] = []
            if self.held and not self.transactional:
                last.append(("SELECT pg_advisory_unlock(%s, %s)", (self.space, self.key)))
            elif self.transactional and self.conn.info.transaction_status != IDLE:
                last.append(("ROLLBACK", ()))
            if self._pipeline is not None:
                for sql, params in last:
                    await self.conn.execute(sql, params)
                await self._stack.aclose()  # the pipeline's exit: one sync for everything
            elif last:
                async with self.conn.pipeline():
                    for sql, params in last:
                        await self.conn.execute(sql, params)
        except BaseException as exc:
            log.warning("turn ended on a closed connection (%s)", type(exc).__name__)
            await self.conn.close()  # its locks go with the session
            if not isinstance(exc, Exception):
                raise


IDLE = psycopg.pq.TransactionStatus.IDLE

#: The turn the current task is in.
TURN: ContextVar[Turn | None] = ContextVar("passerelle_postgres_turn", default=None)


def current(pool: AsyncConnectionPool[Connection] | None) -> Turn | None:
    """The current task's turn on the lock pool ``pool``, if it is still under way."""
    turn = TURN.get()
    if turn is None or not turn.active or turn.pool is not pool:
        return None
    return turn


@contextlib.asynccontextmanager
async def turn(
    pool: AsyncConnectionPool[Connection], space: int, key: int, *, transactional: bool
) -> AsyncIterator[Turn]:
    """A turn on a connection of the lock pool ``pool`` (see the module)."""
    async with pool.connection() as conn:
        held = Turn(pool, conn, space, key, transactional=transactional)
        token = TURN.set(held)
        try:
            yield held
        finally:
            TURN.reset(token)
            await held.end()
