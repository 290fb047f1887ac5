"""The statistics report's queries: raw counts of the conversations in a scope, with how many
of each the scope's establishment created (suppression of small counts is the caller's)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from bot.storage.base import Counts, StatsCounts, StatsScope
from bot.storage.sqlite.writer import SqlValue


def _where(scope: StatsScope) -> tuple[str, list[SqlValue]]:
    clauses: list[str] = ["1 = 1"]
    params: list[SqlValue] = []
    if scope.since is not None:
        clauses.append("c.day >= ?")
        params.append(scope.since)
    if scope.context is not None:
        clauses.append("c.context IS ?")
        params.append(scope.context)
    if scope.establishment is not None:
        contexts = sorted({scope.establishment, *scope.contexts})
        marks = ", ".join("?" for _ in contexts)
        clauses.append(
            f"(c.establishment = ? OR (c.establishment IS NULL AND c.context IN ({marks})))"
        )
        params += [scope.establishment, *contexts]
    return " AND ".join(clauses), params


def _counts(db: sqlite3.Connection, sql: str, params: Sequence[SqlValue]) -> Counts:
    """``sql`` selects (key, count, own count)."""
    return {str(key): (int(count), int(mine or 0)) for key, count, mine in db.execute(sql, params)}


def _by_value(db: sqlite3.Connection, sql: str, params: Sequence[SqlValue]) -> dict[str, Counts]:
    """``sql`` selects (key, value, count, own count)."""
    found: dict[str, Counts] = {}
    for key, value, count, mine in db.execute(sql, params):
        found.setdefault(str(key), {})[str(value)] = (int(count), int(mine or 0))
    return found


def counts(db: sqlite3.Connection, scope: StatsScope) -> StatsCounts:
    where, params = _where(scope)
    # How many of a count the scope's establishment created (0 for the operator's report).
    own, own_done, own_params = "0", "0", []
    if scope.establishment is not None:
        own = "SUM(c.establishment IS ?)"
        own_done = "SUM(c.completed AND c.establishment IS ?)"
        own_params = [scope.establishment]
    both = [*own_params, *params]
    started, completed, started_own, completed_own = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(c.completed), 0), "
        f"COALESCE({own}, 0), COALESCE({own_done}, 0) FROM stats_conversations c WHERE {where}",
        [*own_params, *own_params, *params],
    ).fetchone()
    conversations = "JOIN stats_conversations c ON c.id"
    return StatsCounts(
        started=(int(started), int(started_own)),
        completed=(int(completed), int(completed_own)),
        reached=_counts(
            db,
            f"SELECT n.node, COUNT(*), {own} FROM stats_nodes n {conversations} = n.conversation "
            f"WHERE {where} GROUP BY n.node",
            both,
        ),
        left=_counts(
            db,
            f"SELECT COALESCE(c.last_node, ''), COUNT(*), {own} FROM stats_conversations c "
            f"WHERE {where} AND c.completed = 0 GROUP BY c.last_node",
            both,
        ),
        roles=_counts(
            db,
            f"SELECT r.role, COUNT(*), {own} FROM stats_roles r {conversations} = r.conversation "
            f"WHERE {where} GROUP BY r.role",
            both,
        ),
        territories=_counts(
            db,
            f"SELECT COALESCE(c.territory, ''), COUNT(*), {own} FROM stats_conversations c "
            f"WHERE {where} AND c.completed = 1 GROUP BY c.territory",
            both,
        ),
        outcomes=_counts(
            db,
            f"SELECT o.kind || ':' || o.value, COUNT(*), {own} FROM stats_outcomes o "
            f"{conversations} = o.conversation WHERE {where} GROUP BY o.kind, o.value",
            both,
        ),
        followups_by_role=_by_value(
            db,
            f"SELECT r.role, o.value, COUNT(*), {own} FROM stats_outcomes o "
            f"{conversations} = o.conversation "
            "JOIN stats_roles r ON r.conversation = o.conversation "
            f"WHERE {where} AND o.kind = 'followup' GROUP BY r.role, o.value",
            both,
        ),
        followups_by_context=_by_value(
            db,
            f"SELECT COALESCE(c.context, ''), o.value, COUNT(*), {own} FROM stats_outcomes o "
            f"{conversations} = o.conversation "
            f"WHERE {where} AND o.kind = 'followup' GROUP BY c.context, o.value",
            both,
        ),
    )
