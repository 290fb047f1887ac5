"""The feature tables' SQL on PostgreSQL, as functions of a connection in a transaction: the
feature store's own (:mod:`.features`) or a turn's (:meth:`PostgresStorage.commit_update`).

The SQL is that of :mod:`bot.storage.sqlite.features` and :mod:`bot.storage.sqlite.stats` in
PostgreSQL's dialect (``ON CONFLICT``, ``IS NOT DISTINCT FROM``, ``CASE`` rather than boolean
sums, ``GREATEST``, the ``"user"`` column quoted).
"""

from __future__ import annotations

import json
from decimal import Decimal

import psycopg
from psycopg.abc import Params

from bot.json_types import as_int
from bot.storage.base import (
    BarometerRating,
    CodeTaken,
    Counts,
    FeatureWrite,
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
from bot.storage.postgres.schema import Connection, Query, Statement


async def _count(conn: Connection, sql: Query, params: Params) -> int:
    return (await conn.execute(sql, params)).rowcount


def blind(write: FeatureWrite, now: float) -> list[Statement] | None:
    """The statements of a write that needs no answer on the way (they can be pipelined),
    its row count that of the last one; ``None`` for a write that does (see
    :func:`apply_write`)."""
    match write:
        case StatsStarted():
            return [
                (
                    "INSERT INTO stats_conversations (id, day, context, channel, establishment) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (
                        write.conversation,
                        write.day,
                        write.context,
                        write.channel,
                        write.establishment,
                    ),
                )
            ]
        case StatsReached():
            return [
                (
                    "INSERT INTO stats_nodes (conversation, node) VALUES (%s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (write.conversation, write.node),
                ),
                (
                    "UPDATE stats_conversations SET last_node = %s WHERE id = %s",
                    (write.node, write.conversation),
                ),
            ]
        case StatsCompleted():
            roles = [
                (
                    "INSERT INTO stats_roles (conversation, role) VALUES (%s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (write.conversation, role),
                )
                for role in write.roles
            ]
            return [
                *roles,
                (
                    "UPDATE stats_conversations SET completed = 1, territory = %s WHERE id = %s",
                    (write.territory, write.conversation),
                ),
            ]
        case StatsOutcome():
            return [_outcome_statement(write.conversation, write.kind, write.value)]
        case StatsForgotten():
            sid = (write.conversation,)
            return [
                ("DELETE FROM stats_nodes WHERE conversation = %s", sid),
                ("DELETE FROM stats_roles WHERE conversation = %s", sid),
                ("DELETE FROM stats_outcomes WHERE conversation = %s", sid),
                ("DELETE FROM stats_conversations WHERE id = %s", sid),
            ]
        case FollowUpScheduled():
            # One open follow-up per person (unique partial index): asking twice keeps one.
            return [
                (
                    'INSERT INTO followups ("user", address, conversation, context, roles, '
                    "due_at, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (
                        write.user,
                        write.address,
                        write.conversation,
                        write.context,
                        json.dumps(list(write.roles)),
                        write.due_at,
                        now,
                    ),
                )
            ]
        case FollowUpCancelled():
            return [
                (
                    "UPDATE followups SET cancelled_at = %s, address = '' "
                    'WHERE "user" = %s AND sent_at IS NULL AND cancelled_at IS NULL',
                    (now, write.user),
                )
            ]
    return None


async def apply_write(conn: Connection, write: FeatureWrite, now: float) -> int:
    """Apply one write in ``conn``'s transaction; the rows it changed (for a
    :class:`BarometerRating`, the round the rating went to, 0 for an unknown group)."""
    statements = blind(write, now)
    if statements is not None:
        count = 0
        for sql, params in statements:
            count = await _count(conn, sql, params)
        return count
    match write:
        case BarometerRating():
            return await _rating(conn, write, now)
        case FollowUpAnswered():
            cursor = await conn.execute(
                "SELECT conversation FROM followups WHERE id = %s AND answer IS NULL",
                (write.followup,),
            )
            found = await cursor.fetchone()
            if found is None:
                return 0
            value = "reached" if write.reached else "not_reached"
            await conn.execute(
                "UPDATE followups SET answer = %s, answered_at = %s, address = '' WHERE id = %s",
                (value, now, write.followup),
            )
            if write.stats and found[0]:
                await _outcome(conn, found[0], "followup", value)
            return 1
    raise TypeError(f"not a feature write: {type(write).__name__}")


def _outcome_statement(conversation: str, kind: str, value: str) -> Statement:
    return (
        "INSERT INTO stats_outcomes (conversation, kind, value) VALUES (%s, %s, %s) "
        "ON CONFLICT (conversation, kind) DO UPDATE SET value = excluded.value",
        (conversation, kind, value),
    )


async def _outcome(conn: Connection, conversation: str, kind: str, value: str) -> int:
    return await _count(conn, *_outcome_statement(conversation, kind, value))


async def _rating(conn: Connection, write: BarometerRating, now: float) -> int:
    scores = json.dumps(write.scores)
    if write.create:
        try:
            async with conn.transaction():  # a savepoint: a taken code leaves the rest intact
                await conn.execute(
                    "INSERT INTO barometer_groups (code, created_at, context) VALUES (%s, %s, %s)",
                    (write.code, now, write.context),
                )
        except psycopg.errors.UniqueViolation:
            raise CodeTaken(write.code) from None
        target = 1
    else:
        cursor = await conn.execute(
            "SELECT current_round FROM barometer_groups WHERE code = %s FOR UPDATE", (write.code,)
        )
        row = await cursor.fetchone()
        if row is None:
            return 0
        current = int(row[0])
        cursor = await conn.execute(
            "SELECT 1 FROM barometer_ratings WHERE code = %s AND round = %s AND member = %s",
            (write.code, current, write.member),
        )
        already = await cursor.fetchone()
        # A member who already rated in the current round starts the next one.
        target = current + 1 if already else current
        await conn.execute(
            "UPDATE barometer_groups SET current_round = GREATEST(current_round, %s) "
            "WHERE code = %s",
            (target, write.code),
        )
    await conn.execute(
        "INSERT INTO barometer_ratings (code, round, member, rater, scores, kb_version, "
        "created_at) VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (code, round, member) DO UPDATE SET rater = excluded.rater, "
        "scores = excluded.scores, kb_version = excluded.kb_version, "
        "created_at = excluded.created_at",
        (write.code, target, write.member, write.rater, scores, write.kb_version, now),
    )
    return target


def erase_statements(user: str) -> list[Statement]:
    """``user``'s ratings and follow-ups (groups left empty go too)."""
    return [
        ("DELETE FROM barometer_ratings WHERE member = %s", (user,)),
        (
            "DELETE FROM barometer_groups WHERE code NOT IN "
            "(SELECT DISTINCT code FROM barometer_ratings)",
            (),
        ),
        ('DELETE FROM followups WHERE "user" = %s', (user,)),
    ]


async def erase(conn: Connection, user: str) -> None:
    """``user``'s ratings and follow-ups (groups left empty go too)."""
    for sql, params in erase_statements(user):
        await conn.execute(sql, params)


async def claim_followup(conn: Connection, followup_id: int, now: float) -> bool:
    return (
        await _count(
            conn,
            "UPDATE followups SET sent_at = %s "
            "WHERE id = %s AND sent_at IS NULL AND cancelled_at IS NULL",
            (now, followup_id),
        )
        == 1
    )


# -- statistics --------------------------------------------------------------------------------
def _where(scope: StatsScope) -> tuple[str, list[object]]:
    clauses: list[str] = ["1 = 1"]
    params: list[object] = []
    if scope.since is not None:
        clauses.append("c.day >= %s")
        params.append(scope.since)
    if scope.context is not None:
        clauses.append("c.context IS NOT DISTINCT FROM %s")
        params.append(scope.context)
    if scope.establishment is not None:
        contexts = sorted({scope.establishment, *scope.contexts})
        clauses.append(
            "(c.establishment = %s OR (c.establishment IS NULL AND c.context = ANY(%s)))"
        )
        params += [scope.establishment, contexts]
    return " AND ".join(clauses), params


def _int(value: object) -> int:
    """A count as PostgreSQL answers it (``SUM`` gives a ``Decimal``, or ``NULL`` over none)."""
    return int(value) if isinstance(value, (int, Decimal)) else as_int(value or 0)


async def _counts(conn: Connection, sql: str, params: Params) -> Counts:
    cursor = await conn.execute(sql.encode(), params)
    return {str(key): (_int(count), _int(mine)) for key, count, mine in await cursor.fetchall()}


async def _by_value(conn: Connection, sql: str, params: Params) -> dict[str, Counts]:
    found: dict[str, Counts] = {}
    cursor = await conn.execute(sql.encode(), params)
    for key, value, count, mine in await cursor.fetchall():
        found.setdefault(str(key), {})[str(value)] = (_int(count), _int(mine))
    return found


async def stats_counts(conn: Connection, scope: StatsScope) -> StatsCounts:
    where, params = _where(scope)
    own, own_done, own_params = "0", "0", []
    if scope.establishment is not None:
        own = "SUM(CASE WHEN c.establishment IS NOT DISTINCT FROM %s THEN 1 ELSE 0 END)"
        own_done = (
            "SUM(CASE WHEN c.completed = 1 AND c.establishment IS NOT DISTINCT FROM %s "
            "THEN 1 ELSE 0 END)"
        )
        own_params = [scope.establishment]
    both = [*own_params, *params]
    cursor = await conn.execute(
        (
            "SELECT COUNT(*), COALESCE(SUM(c.completed), 0), "
            f"COALESCE({own}, 0), COALESCE({own_done}, 0) FROM stats_conversations c "
            f"WHERE {where}"
        ).encode(),
        [*own_params, *own_params, *params],
    )
    row = await cursor.fetchone()
    assert row is not None
    started, completed, started_own, completed_own = row
    conversations = "JOIN stats_conversations c ON c.id"
    return StatsCounts(
        started=(_int(started), _int(started_own)),
        completed=(_int(completed), _int(completed_own)),
        reached=await _counts(
            conn,
            f"SELECT n.node, COUNT(*), {own} FROM stats_nodes n {conversations} = n.conversation "
            f"WHERE {where} GROUP BY n.node",
            both,
        ),
        left=await _counts(
            conn,
            f"SELECT COALESCE(c.last_node, ''), COUNT(*), {own} FROM stats_conversations c "
            f"WHERE {where} AND c.completed = 0 GROUP BY c.last_node",
            both,
        ),
        roles=await _counts(
            conn,
            f"SELECT r.role, COUNT(*), {own} FROM stats_roles r {conversations} = r.conversation "
            f"WHERE {where} GROUP BY r.role",
            both,
        ),
        territories=await _counts(
            conn,
            f"SELECT COALESCE(c.territory, ''), COUNT(*), {own} FROM stats_conversations c "
            f"WHERE {where} AND c.completed = 1 GROUP BY c.territory",
            both,
        ),
        outcomes=await _counts(
            conn,
            f"SELECT o.kind || ':' || o.value, COUNT(*), {own} FROM stats_outcomes o "
            f"{conversations} = o.conversation WHERE {where} GROUP BY o.kind, o.value",
            both,
        ),
        followups_by_role=await _by_value(
            conn,
            f"SELECT r.role, o.value, COUNT(*), {own} FROM stats_outcomes o "
            f"{conversations} = o.conversation "
            "JOIN stats_roles r ON r.conversation = o.conversation "
            f"WHERE {where} AND o.kind = 'followup' GROUP BY r.role, o.value",
            both,
        ),
        followups_by_context=await _by_value(
            conn,
            f"SELECT COALESCE(c.context, ''), o.value, COUNT(*), {own} FROM stats_outcomes o "
            f"{conversations} = o.conversation "
            f"WHERE {where} AND o.kind = 'followup' GROUP BY c.context, o.value",
            both,
        ),
    )
