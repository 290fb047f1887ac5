"""The feature tables in SQLite: barometer groups, usage statistics and follow-ups.

Every write is a :data:`~bot.storage.base.FeatureWrite` value, applied by :func:`apply_write`
inside a transaction: the feature store's own (:meth:`SqliteFeatureStore.apply`), or a turn's
when the conversation store holds these tables (:attr:`~bot.storage.base.UserChange.features`).

Privacy: members of a barometer group are known by the pseudonymous key of
:func:`bot.storage.base.pseudonym`; statistics rows carry a random conversation id that is not
derived from any user id, and never any text typed by a person.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bot.json_types import JsonObject, as_float, as_int, as_list, as_text, loads
from bot.storage.base import (
    BarometerRating,
    CodeTaken,
    FeatureStore,
    FeatureWrite,
    FollowUp,
    FollowUpAnswered,
    FollowUpCancelled,
    FollowUpScheduled,
    StatsCompleted,
    StatsCounts,
    StatsForgotten,
    StatsOutcome,
    StatsReached,
    StatsScope,
    StatsStarted,
)
from bot.storage.sqlite import stats
from bot.storage.sqlite.writer import HasWriter, Row, SqliteWriter, SqlValue, own_or_share

FEATURE_TABLES = ("barometer_ratings", "stats_conversations", "followups")


def holds_features(db: sqlite3.Connection) -> bool:
    """Whether this database has the feature tables (migrations 200+)."""
    marks = ", ".join("?" for _ in FEATURE_TABLES)
    row = db.execute(
        f"SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ({marks})",
        FEATURE_TABLES,
    ).fetchone()
    return int(row[0]) == len(FEATURE_TABLES)


def apply_write(db: sqlite3.Connection, write: FeatureWrite, now: float) -> int:
    """Apply one write; the rows it changed (for a :class:`BarometerRating`, the round the
    rating went to, 0 for an unknown group)."""
    match write:
        case StatsStarted():
            return db.execute(
                "INSERT OR IGNORE INTO stats_conversations "
                "(id, day, context, channel, establishment) VALUES (?, ?, ?, ?, ?)",
                (write.conversation, write.day, write.context, write.channel, write.establishment),
            ).rowcount
        case StatsReached():
            db.execute(
                "INSERT OR IGNORE INTO stats_nodes (conversation, node) VALUES (?, ?)",
                (write.conversation, write.node),
            )
            return db.execute(
                "UPDATE stats_conversations SET last_node = ? WHERE id = ?",
                (write.node, write.conversation),
            ).rowcount
        case StatsCompleted():
            count = db.execute(
                "UPDATE stats_conversations SET completed = 1, territory = ? WHERE id = ?",
                (write.territory, write.conversation),
            ).rowcount
            db.executemany(
                "INSERT OR IGNORE INTO stats_roles (conversation, role) VALUES (?, ?)",
                [(write.conversation, role) for role in write.roles],
            )
            return count
        case StatsOutcome():
            return _outcome(db, write.conversation, write.kind, write.value)
        case StatsForgotten():
            sid = (write.conversation,)
            db.execute("DELETE FROM stats_nodes WHERE conversation = ?", sid)
            db.execute("DELETE FROM stats_roles WHERE conversation = ?", sid)
            db.execute("DELETE FROM stats_outcomes WHERE conversation = ?", sid)
            return db.execute("DELETE FROM stats_conversations WHERE id = ?", sid).rowcount
        case BarometerRating():
            return _rating(db, write, now)
        case FollowUpScheduled():
            # OR IGNORE: one open follow-up per person (unique index); asking twice keeps one.
            return db.execute(
                "INSERT OR IGNORE INTO followups (user, address, conversation, context, roles, "
                "due_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    write.user,
                    write.address,
                    write.conversation,
                    write.context,
                    json.dumps(list(write.roles)),
                    write.due_at,
                    now,
                ),
            ).rowcount
        case FollowUpCancelled():
            return db.execute(
                "UPDATE followups SET cancelled_at = ?, address = '' "
                "WHERE user = ? AND sent_at IS NULL AND cancelled_at IS NULL",
                (now, write.user),
            ).rowcount
        case FollowUpAnswered():
            found = db.execute(
                "SELECT conversation FROM followups WHERE id = ? AND answer IS NULL",
                (write.followup,),
            ).fetchone()
            if found is None:
                return 0
            value = "reached" if write.reached else "not_reached"
            db.execute(
                "UPDATE followups SET answer = ?, answered_at = ?, address = '' WHERE id = ?",
                (value, now, write.followup),
            )
            if write.stats and found[0]:
                _outcome(db, found[0], "followup", value)
            return 1
    raise TypeError(f"not a feature write: {type(write).__name__}")


def _outcome(db: sqlite3.Connection, conversation: str, kind: str, value: str) -> int:
    return db.execute(
        "INSERT OR REPLACE INTO stats_outcomes (conversation, kind, value) VALUES (?, ?, ?)",
        (conversation, kind, value),
    ).rowcount


def _rating(db: sqlite3.Connection, write: BarometerRating, now: float) -> int:
    scores = json.dumps(write.scores)
    if write.create:
        try:
            db.execute(
                "INSERT INTO barometer_groups (code, created_at, context) VALUES (?, ?, ?)",
                (write.code, now, write.context),
            )
        except sqlite3.IntegrityError:
            raise CodeTaken(write.code) from None
        target = 1
    else:
        row = db.execute(
            "SELECT current_round FROM barometer_groups WHERE code = ?", (write.code,)
        ).fetchone()
        if row is None:
            return 0
        current = int(row[0])
        already = db.execute(
            "SELECT 1 FROM barometer_ratings WHERE code = ? AND round = ? AND member = ?",
            (write.code, current, write.member),
        ).fetchone()
        # A member who already rated in the current round starts the next one.
        target = current + 1 if already else current
        db.execute(
            "UPDATE barometer_groups SET current_round = MAX(current_round, ?) WHERE code = ?",
            (target, write.code),
        )
    db.execute(
        "INSERT INTO barometer_ratings (code, round, member, rater, scores, kb_version, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (code, round, member) DO UPDATE SET rater = excluded.rater, "
        "scores = excluded.scores, kb_version = excluded.kb_version, "
        "created_at = excluded.created_at",
        (write.code, target, write.member, write.rater, scores, write.kb_version, now),
    )
    return target


def erase(db: sqlite3.Connection, user: str) -> None:
    """``user``'s ratings and follow-ups (groups left empty go too)."""
    db.execute("DELETE FROM barometer_ratings WHERE member = ?", (user,))
    db.execute(
        "DELETE FROM barometer_groups WHERE code NOT IN "
        "(SELECT DISTINCT code FROM barometer_ratings)"
    )
    db.execute("DELETE FROM followups WHERE user = ?", (user,))


def export(db: sqlite3.Connection, user: str) -> JsonObject:
    ratings = db.execute(
        "SELECT code, round, rater, scores, created_at FROM barometer_ratings "
        "WHERE member = ? ORDER BY id",
        (user,),
    ).fetchall()
    followups = db.execute(
        "SELECT roles, due_at, sent_at, answer FROM followups WHERE user = ? ORDER BY id", (user,)
    ).fetchall()
    return {
        "barometer_ratings": [
            {"group": r[0], "round": r[1], "rater": r[2], "scores": r[3], "at": r[4]}
            for r in ratings
        ],
        "followups": [
            {"roles": f[0], "due_at": f[1], "sent_at": f[2], "answer": f[3]} for f in followups
        ],
    }


def _scores(column: SqlValue) -> dict[str, int]:
    """A rating's stored scores (a JSON object of criterion id to score)."""
    scores = loads(column)
    return {str(k): as_int(v) for k, v in scores.items()} if isinstance(scores, dict) else {}


def claim_followup(db: sqlite3.Connection, followup_id: int, now: float) -> bool:
    cursor = db.execute(
        "UPDATE followups SET sent_at = ? "
        "WHERE id = ? AND sent_at IS NULL AND cancelled_at IS NULL",
        (now, followup_id),
    )
    return cursor.rowcount == 1


class SqliteFeatureStore(FeatureStore):
    """The feature tables on a SQLite file: its own writer (given a path; ``:memory:`` for
    tests), or a conversation store's (given it: one file, one writer, one schema)."""

    def __init__(
        self,
        target: str | Path | SqliteWriter | HasWriter = ":memory:",
        *,
        synchronous: str = "FULL",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.writer, self._owned = own_or_share(target, synchronous)
        self.path = self.writer.path
        self._clock = clock

    async def open(self) -> None:
        if self._owned:
            await self.writer.open()

    async def close(self) -> None:
        if self._owned:
            await self.writer.close()

    async def __aenter__(self) -> SqliteFeatureStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def read(self, sql: str, params: Sequence[SqlValue] = ()) -> list[Row]:
        """Rows of a raw query (inspection and tests; the application uses the methods)."""
        return [tuple(row) for row in await self.writer.read(sql, params)]

    async def apply(self, writes: Sequence[FeatureWrite]) -> list[int]:
        now = self._clock()

        def operation(db: sqlite3.Connection) -> list[int]:
            return [apply_write(db, write, now) for write in writes]

        return await self.writer.write(operation)

    async def stats_counts(self, scope: StatsScope) -> StatsCounts:
        return await self.writer.read_with(lambda db: stats.counts(db, scope))

    async def barometer_round(self, code: str) -> int | None:
        rows = await self.writer.read(
            "SELECT current_round FROM barometer_groups WHERE code = ?", (code,)
        )
        return as_int(rows[0][0]) if rows else None

    async def barometer_rated(self, code: str, round_: int, member: str) -> bool:
        rows = await self.writer.read(
            "SELECT 1 FROM barometer_ratings WHERE code = ? AND round = ? AND member = ?",
            (code, round_, member),
        )
        return bool(rows)

    async def barometer_groups_of(self, member: str) -> list[str]:
        rows = await self.writer.read(
            "SELECT code, MAX(id) AS last FROM barometer_ratings WHERE member = ? "
            "GROUP BY code ORDER BY last",
            (member,),
        )
        return [str(row[0]) for row in rows]

    async def barometer_is_member(self, code: str, member: str) -> bool:
        rows = await self.writer.read(
            "SELECT 1 FROM barometer_ratings WHERE code = ? AND member = ? LIMIT 1",
            (code, member),
        )
        return bool(rows)

    async def barometer_ratings(self, code: str, round_: int) -> list[tuple[str, dict[str, int]]]:
        rows = await self.writer.read(
            "SELECT rater, scores FROM barometer_ratings WHERE code = ? AND round = ? ORDER BY id",
            (code, round_),
        )
        return [(str(rater), _scores(scores)) for rater, scores in rows]

    async def followups_pending(self) -> list[FollowUp]:
        rows = await self.writer.read(
            "SELECT id, user, address, conversation, context, roles, due_at FROM followups "
            "WHERE sent_at IS NULL AND cancelled_at IS NULL ORDER BY due_at, id"
        )
        return [
            FollowUp(
                as_int(r[0]),
                str(r[1]),
                str(r[2]),
                as_text(r[3]),
                as_text(r[4]),
                tuple(str(role) for role in as_list(loads(r[5]))),
                as_float(r[6]),
            )
            for r in rows
        ]

    async def followup_claim(self, followup_id: int, now: float) -> bool:
        return await self.writer.write(lambda db: claim_followup(db, followup_id, now))

    async def followup_release(self, followup_id: int) -> None:
        await self.writer.execute(
            [
                (
                    "UPDATE followups SET sent_at = NULL WHERE id = ? AND answer IS NULL",
                    (followup_id,),
                )
            ]
        )

    async def export_user(self, user: str) -> JsonObject:
        return await self.writer.read_with(lambda db: export(db, user))

    async def erase_user(self, user: str) -> None:
        await self.writer.write(lambda db: erase(db, user))
        await self.writer.scrub()  # gone from the WAL too
