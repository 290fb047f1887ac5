"""The migration list under its former module (see :mod:`bot.storage.sqlite.migrations`), and
the runner for a connection of aiosqlite, which scripts and older callers use."""

from __future__ import annotations

import time
from collections.abc import Sequence

import aiosqlite

from bot.storage.sqlite.migrations import (
    ALL_MIGRATIONS,
    CORE_MIGRATIONS,
    FEATURE_MIGRATIONS,
    INTEGRATION_MIGRATIONS,
    MIGRATIONS,
    SCHEMA_VERSION_TABLE,
    Migration,
    check,
    statements,
)

__all__ = [
    "ALL_MIGRATIONS",
    "CORE_MIGRATIONS",
    "FEATURE_MIGRATIONS",
    "INTEGRATION_MIGRATIONS",
    "MIGRATIONS",
    "Migration",
    "migrate",
]


async def migrate(db: aiosqlite.Connection, migrations: Sequence[Migration]) -> list[int]:
    """:func:`bot.storage.sqlite.migrations.migrate` on an aiosqlite connection (autocommit)."""
    check(migrations)
    await db.execute(SCHEMA_VERSION_TABLE)
    async with db.execute("SELECT version FROM schema_version") as cursor:
        done = {int(row[0]) for row in await cursor.fetchall()}
    ran: list[int] = []
    for version, script in sorted(migrations):
        if version in done:
            continue
        await db.execute("BEGIN IMMEDIATE")
        try:
            async with db.execute(
                "SELECT 1 FROM schema_version WHERE version = ?", (version,)
            ) as cursor:
                if await cursor.fetchone() is not None:
                    await db.execute("COMMIT")
                    continue
            for statement in statements(script):
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
