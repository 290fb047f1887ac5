"""SQLite tables of the barometer groups, usage statistics and follow-ups (migrations 200–299).

Same pattern as the other stores: its own forward migrations, run by
:func:`bot.storage.migrations.migrate` on the same database file as the core store. The
services (:mod:`bot.app.barometer`, :mod:`bot.app.stats`, :mod:`bot.app.followups`) hold the logic;
this module only opens the connection and serialises access to it.

Privacy: members of a barometer group are known by the pseudonymous key of
:func:`bot.storage.base.pseudonym`; statistics rows carry a random conversation id that is not
derived from any user id, and never any text typed by a person.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from bot.storage.migrations import Migration, migrate

FEATURE_MIGRATIONS: list[Migration] = [
    (
        200,
        """
        CREATE TABLE IF NOT EXISTS barometer_groups (
            code TEXT PRIMARY KEY,
            created_at REAL NOT NULL,
            context TEXT,
            current_round INTEGER NOT NULL DEFAULT 1
        );
        CREATE TABLE IF NOT EXISTS barometer_ratings (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            code TEXT NOT NULL REFERENCES barometer_groups (code),
            round INTEGER NOT NULL,
            member TEXT NOT NULL,
            rater TEXT NOT NULL,
            scores TEXT NOT NULL,
            kb_version TEXT NOT NULL,
            created_at REAL NOT NULL,
            UNIQUE (code, round, member)
        );
        CREATE INDEX IF NOT EXISTS barometer_ratings_member ON barometer_ratings (member)
        """,
    ),
    (
        201,
        """
        CREATE TABLE IF NOT EXISTS stats_conversations (
            id TEXT PRIMARY KEY,
            day TEXT NOT NULL,
            context TEXT,
            channel TEXT NOT NULL,
            last_node TEXT,
            completed INTEGER NOT NULL DEFAULT 0,
            territory TEXT
        );
        CREATE INDEX IF NOT EXISTS stats_conversations_day ON stats_conversations (day);
        CREATE TABLE IF NOT EXISTS stats_nodes (
            conversation TEXT NOT NULL,
            node TEXT NOT NULL,
            PRIMARY KEY (conversation, node)
        );
        CREATE TABLE IF NOT EXISTS stats_roles (
            conversation TEXT NOT NULL,
            role TEXT NOT NULL,
            PRIMARY KEY (conversation, role)
        );
        CREATE TABLE IF NOT EXISTS stats_outcomes (
            conversation TEXT NOT NULL,
            kind TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (conversation, kind)
        )
        """,
    ),
    (
        202,
        """
        CREATE TABLE IF NOT EXISTS followups (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user TEXT NOT NULL,
            address TEXT NOT NULL DEFAULT '',
            conversation TEXT,
            context TEXT,
            roles TEXT NOT NULL,
            due_at REAL NOT NULL,
            created_at REAL NOT NULL,
            sent_at REAL,
            answered_at REAL,
            answer TEXT,
            cancelled_at REAL
        );
        CREATE UNIQUE INDEX IF NOT EXISTS followups_one_open
            ON followups (user) WHERE sent_at IS NULL AND cancelled_at IS NULL;
        CREATE INDEX IF NOT EXISTS followups_due ON followups (due_at)
            WHERE sent_at IS NULL AND cancelled_at IS NULL
        """,
    ),
    (
        203,
        # Statistics are tagged with the establishment whose API key created the conversation
        # (NULL on Telegram): an establishment's report never counts another's conversations,
        # and its own never lift a hidden count over the threshold (bot/app/stats.py).
        """
        ALTER TABLE stats_conversations ADD COLUMN establishment TEXT;
        CREATE INDEX IF NOT EXISTS stats_conversations_establishment
            ON stats_conversations (establishment)
        """,
    ),
]


def default_db_path() -> Path:
    """``$PASSERELLE_DB``, else the file ``passerelle serve`` uses by default."""
    from bot.config import DEFAULT_DB

    return Path(os.environ.get("PASSERELLE_DB") or DEFAULT_DB)


class FeatureStore:
    """One aiosqlite connection (autocommit, WAL) shared by the three services."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA busy_timeout=5000")
        await self._db.execute("PRAGMA foreign_keys=ON")
        # Erased ratings and follow-ups are overwritten with zeros; the WAL they went through
        # is truncated by the core store's scrub (same file), which erasures run afterwards.
        await self._db.execute("PRAGMA secure_delete=ON")
        await migrate(self._db, FEATURE_MIGRATIONS)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def __aenter__(self) -> FeatureStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("FeatureStore.open() was not called")
        return self._db

    async def write(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run statements in one immediate transaction; return each one's row count."""
        counts: list[int] = []
        async with self._lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    cursor = await self.db.execute(sql, params)
                    counts.append(cursor.rowcount)
                    await cursor.close()
                await self.db.execute("COMMIT")
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
        return counts

    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._lock, self.db.execute(sql, params) as cursor:
            return [tuple(row) for row in await cursor.fetchall()]

    # -- the person's rights ---------------------------------------------------------------
    async def export_user(self, user: str) -> dict[str, Any]:
        """Rows about ``user`` (barometer ratings and follow-ups); statistics are anonymous."""
        ratings = await self.read(
            "SELECT code, round, rater, scores, created_at FROM barometer_ratings "
            "WHERE member = ? ORDER BY id",
            (user,),
        )
        followups = await self.read(
            'SELECT roles, due_at, sent_at, answer FROM followups WHERE "user" = ? ORDER BY id',
            (user,),
        )
        return {
            "barometer_ratings": [
                {"group": r[0], "round": r[1], "rater": r[2], "scores": r[3], "at": r[4]}
                for r in ratings
            ],
            "followups": [
                {"roles": f[0], "due_at": f[1], "sent_at": f[2], "answer": f[3]} for f in followups
            ],
        }

    async def erase_user(self, user: str) -> None:
        """Remove ``user``'s ratings and follow-ups (groups left empty are removed too)."""
        await self.write(
            [
                ("DELETE FROM barometer_ratings WHERE member = ?", (user,)),
                (
                    "DELETE FROM barometer_groups WHERE code NOT IN "
                    "(SELECT DISTINCT code FROM barometer_ratings)",
                    (),
                ),
                ('DELETE FROM followups WHERE "user" = ?', (user,)),
            ]
        )
