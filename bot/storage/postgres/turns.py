"""A chat's or a conversation's turn on PostgreSQL in as few round trips as the guarantees allow.

A turn holds its lock on a connection of its own (apart from the main pool, so that holders
never starve the queries of the turn). The lock is taken with the turn's first statement, in
the same round trip (:meth:`Turn.run` puts it in front, in pipeline mode): nothing of the
turn reaches the database before the lock is held, so the order and exclusion across
instances are those of taking it on entry, one round trip fewer.

- A Telegram chat's turn takes a session-level advisory lock (the replies are sent under it,
  after the commit, so that two instances never interleave one chat's replies).
- An API conversation's turn takes a transaction-level lock: load and save are one
  transaction on the turn's connection, the lock goes with its commit (two round trips).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from bot.storage.postgres.schema import Connection, Statement

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

    def _lock(self) -> list[Statement]:
        if self.transactional:
            return [("BEGIN", ()), ("SELECT pg_advisory_xact_lock(%s, %s)", (self.space, self.key))]
        return [("SELECT pg_advisory_lock(%s, %s)", (self.space, self.key))]

    async def run(self, statements: Sequence[Statement]) -> list[list[TupleRow]]:
        """``statements`` on the turn's connection in one round trip, the lock taken first if
        not held yet; each one's rows (empty for a statement that returns none)."""
        lock = [] if self.held else self._lock()
        try:
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

    async def end(self) -> None:
        """Release the lock (one round trip); a connection whose lock could not be released
        for sure is closed (the server releases it)."""
        self.active = False
        try:
            if self._uncertain:
                raise psycopg.OperationalError("a lock of the turn may still be held")
            if self.held and not self.transactional:
                await self.conn.execute("SELECT pg_advisory_unlock(%s, %s)", (self.space, self.key))
            elif self.transactional and self.conn.info.transaction_status != IDLE:
                await self.conn.rollback()
        except BaseException as exc:
            log.warning("a turn's lock connection is closed (%s)", type(exc).__name__)
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
