"""The barometer, statistics and follow-up tables on PostgreSQL: the public methods of
:class:`bot.storage.features.FeatureStore`, on the pool of a
:class:`~bot.storage.postgres.core.PostgresStorage` (every table family lives in one database).

The services (:mod:`bot.stats`, :mod:`bot.followup`, :mod:`bot.barometer_groups`) write
portable SQL (``ON CONFLICT``, ``IS NOT DISTINCT FROM``, ``CASE``, the ``"user"`` column
quoted) with ``?`` placeholders; :func:`placeholders` turns those into psycopg's ``%s``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from bot.storage.postgres.core import PostgresStorage

_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%")


def placeholders(sql: str) -> bytes:
    """``sql`` with each ``?`` outside quotes turned into ``%s`` (and ``%`` doubled)."""

    def swap(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        return token.replace("%", "%%") if token.startswith("'") else token

    return _TOKENS.sub(swap, sql).encode()


class PostgresFeatureStore:
    """Same public methods as :class:`bot.storage.features.FeatureStore`."""

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
        self.path = ":postgresql:"

    async def open(self) -> None:
        if self._owned:
            await self.core.open()

    async def close(self) -> None:
        if self._owned:
            await self.core.close()

    async def __aenter__(self) -> PostgresFeatureStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def write(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run statements in one transaction; return each one's row count."""
        return await self.core.run([(placeholders(sql), params) for sql, params in statements])

    async def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return [
            tuple(_plain(v) for v in row) for row in await self.core.rows(placeholders(sql), params)
        ]

    async def export_user(self, user: str) -> dict[str, Any]:
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
        self.core.vacuum_soon("barometer_ratings", "followups")


def _plain(value: Any) -> Any:
    """SQLite gives ints where PostgreSQL's SUM gives a Decimal: the same Python types."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value
