"""Forward-only schema migrations, as code, run at start-up.

A migration is ``(version, sql)``; :func:`migrate` applies, in version order, those not yet
recorded in ``schema_version``, each in its own transaction. Versions 1–99 belong to the core
store (:data:`CORE_MIGRATIONS`); other modules keep their own lists (the integration tables use
100+) and call the same runner on the same database file.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import aiosqlite

Migration = tuple[int, str]

#: The core store: consent, sessions, the inbox of incoming updates and the reply outbox.
CORE_MIGRATIONS: list[Migration] = [
    (
        1,
        """
        CREATE TABLE IF NOT EXISTS consents (
            user TEXT PRIMARY KEY,
            granted_at REAL NOT NULL
        );
        CREATE TABLE IF NOT EXISTS sessions (
            user TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX IF NOT EXISTS sessions_updated ON sessions (updated_at);
        CREATE TABLE IF NOT EXISTS inbox (
            update_id INTEGER PRIMARY KEY,
            payload BLOB,
            received_at REAL NOT NULL,
            done_at REAL
        );
        CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (update_id) WHERE done_at IS NULL;
        CREATE INDEX IF NOT EXISTS inbox_done ON inbox (done_at) WHERE done_at IS NOT NULL;
        """,
    ),
    (
        2,
        # The reply outbox: replies written in the same transaction as the state change that
        # produced them, deleted once Telegram accepted them (see docs/reliability.md).
        """
        CREATE TABLE IF NOT EXISTS replies (
            update_id INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            chat_id INTEGER NOT NULL,
            method TEXT NOT NULL,
            params TEXT NOT NULL,
            photo BLOB,
            created_at REAL NOT NULL,
            PRIMARY KEY (update_id, seq)
        );
        """,
    ),
    (
        3,
        # Poison updates: how many times applying one failed; past a few it is dead-lettered
        # (payload dropped, ``failed_at`` set) instead of failing again at every start.
        """
        ALTER TABLE inbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE inbox ADD COLUMN failed_at REAL;
        """,
    ),
    (
        4,
        # /healthz commits a write here: a full disk or a read-only database shows at once.
        """
        CREATE TABLE IF NOT EXISTS health (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            checked_at REAL NOT NULL
        );
        """,
    ),
]

SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at REAL)"
)


def check(migrations: Sequence[Migration]) -> None:
    """Refuse a list with duplicate or non-positive versions (a programming error)."""
    versions = [version for version, _ in migrations]
    if len(set(versions)) != len(versions) or any(v <= 0 for v in versions):
        raise ValueError(f"migration versions must be positive and unique: {versions}")


async def applied(db: aiosqlite.Connection) -> set[int]:
    """Versions already recorded in ``schema_version`` (creating the table if needed)."""
    await db.execute(SCHEMA_VERSION_TABLE)
    async with db.execute("SELECT version FROM schema_version") as cursor:
        return {int(row[0]) for row in await cursor.fetchall()}


async def migrate(db: aiosqlite.Connection, migrations: Sequence[Migration]) -> list[int]:
    """Apply the migrations not yet applied, lowest version first, each atomically.

    ``db`` must be in autocommit mode (``isolation_level=None``). Returns the versions applied.
    """
    check(migrations)
    done = await applied(db)
    ran: list[int] = []
    for version, script in sorted(migrations):
        if version in done:
            continue
        await db.execute("BEGIN IMMEDIATE")
        try:
            # Re-check under the write lock: another process may have migrated meanwhile.
            async with db.execute(
                "SELECT 1 FROM schema_version WHERE version = ?", (version,)
            ) as cursor:
                if await cursor.fetchone() is not None:
                    await db.execute("COMMIT")
                    continue
            for statement in script.split(";"):
                if statement.strip():
                    await db.execute(statement)
            await db.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (version, time.time()),
            )
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        ran.append(version)
    return ran
