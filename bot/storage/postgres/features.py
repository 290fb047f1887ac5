"""The barometer, statistics and follow-up tables on PostgreSQL: the
:class:`~bot.storage.base.FeatureStore` contract on the pool of a
:class:`~bot.storage.postgres.core.PostgresStorage` (every table family lives in one database,
so a turn's feature writes join its transaction; the SQL is in :mod:`.rows`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence

from bot.json_types import JsonObject
from bot.storage.base import FeatureStore, FeatureWrite, FollowUp, StatsCounts, StatsScope
from bot.storage.postgres.core import PostgresStorage
from bot.storage.postgres.rows import apply_write, claim_followup, erase, stats_counts


class PostgresFeatureStore(FeatureStore):
    """The :class:`~bot.storage.base.FeatureStore` contract on PostgreSQL."""

    def __init__(
        self,
        target: str | PostgresStorage,
        *,
        migrate: bool = False,
        owned: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``owned``: this store opens and closes a core store it was handed."""
        if isinstance(target, PostgresStorage):
            self.core = target
            self._owned = owned
        else:
            self.core = PostgresStorage(target, migrate=migrate)
            self._owned = True
        self.path = ":postgresql:"
        self._clock = clock

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

    async def read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Rows of a raw query (``?`` placeholders, as on SQLite; inspection and tests)."""
        return await self.core.rows(sql.replace("?", "%s").encode(), params)

    async def apply(self, writes: Sequence[FeatureWrite]) -> list[int]:
        now = self._clock()
        async with self.core.transaction() as conn:
            return [await apply_write(conn, write, now) for write in writes]

    async def stats_counts(self, scope: StatsScope) -> StatsCounts:
        async with self.core.pool.connection() as conn:
            return await stats_counts(conn, scope)

    async def barometer_round(self, code: str) -> int | None:
        rows = await self.core.rows(
            "SELECT current_round FROM barometer_groups WHERE code = %s", (code,)
        )
        return int(rows[0][0]) if rows else None

    async def barometer_rated(self, code: str, round_: int, member: str) -> bool:
        rows = await self.core.rows(
            "SELECT 1 FROM barometer_ratings WHERE code = %s AND round = %s AND member = %s",
            (code, round_, member),
        )
        return bool(rows)

    async def barometer_groups_of(self, member: str) -> list[str]:
        rows = await self.core.rows(
            "SELECT code, MAX(id) AS last FROM barometer_ratings WHERE member = %s "
            "GROUP BY code ORDER BY last",
            (member,),
        )
        return [str(row[0]) for row in rows]

    async def barometer_is_member(self, code: str, member: str) -> bool:
        rows = await self.core.rows(
            "SELECT 1 FROM barometer_ratings WHERE code = %s AND member = %s LIMIT 1",
            (code, member),
        )
        return bool(rows)

    async def barometer_ratings(self, code: str, round_: int) -> list[tuple[str, dict[str, int]]]:
        rows = await self.core.rows(
            "SELECT rater, scores FROM barometer_ratings WHERE code = %s AND round = %s "
            "ORDER BY id",
            (code, round_),
        )
        return [(str(rater), json.loads(scores)) for rater, scores in rows]

    async def followups_pending(self) -> list[FollowUp]:
        rows = await self.core.rows(
            'SELECT id, "user", address, conversation, context, roles, due_at FROM followups '
            "WHERE sent_at IS NULL AND cancelled_at IS NULL ORDER BY due_at, id"
        )
        return [
            FollowUp(int(r[0]), str(r[1]), str(r[2]), r[3], r[4], tuple(json.loads(r[5])), r[6])
            for r in rows
        ]

    async def followup_claim(self, followup_id: int, now: float) -> bool:
        async with self.core.transaction() as conn:
            return await claim_followup(conn, followup_id, now)

    async def followup_release(self, followup_id: int) -> None:
        await self.core.run(
            [
                (
                    "UPDATE followups SET sent_at = NULL WHERE id = %s AND answer IS NULL",
                    (followup_id,),
                )
            ]
        )

    async def export_user(self, user: str) -> JsonObject:
        ratings = await self.core.rows(
            "SELECT code, round, rater, scores, created_at FROM barometer_ratings "
            "WHERE member = %s ORDER BY id",
            (user,),
        )
        followups = await self.core.rows(
            'SELECT roles, due_at, sent_at, answer FROM followups WHERE "user" = %s ORDER BY id',
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
        async with self.core.transaction() as conn:
            await erase(conn, user)
        self.core.vacuum_soon("barometer_ratings", "barometer_groups", "followups")
