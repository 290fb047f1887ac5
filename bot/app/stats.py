"""Anonymous usage statistics for establishments.

What is recorded, per conversation (a random id kept in ``session.extra["stats_id"]``, never
derived from a user id): the day it started, its context (deep link / API key's establishment),
the establishment whose API key created it (none on Telegram), the channel, the questions it
reached, where it stopped, whether it ended with a recommendation, the roles recommended and the
territory, and outcomes (contact requested, barometer done, follow-up answered). Nothing a person
typed is ever read here: only node ids from the knowledge base and event fields chosen below.

What is shown: counts below ``k`` (default 5) are hidden, so no one can be singled out; in a
breakdown whose total is shown (where people left, territories), a second cell is hidden when
only one would be, so the hidden one cannot be recomputed by subtraction.

Against padding (an establishment creating conversations with its own keys to lift a hidden
cell over ``k``, then subtracting them): the report of an establishment counts, in each cell,
the conversations its own keys created apart. Those never lift a cell over the threshold: a
cell is shown only if the conversations *not* created by the caller's keys are 0 or at least
``k`` there (as well as the whole cell). A conversation erased through the API takes its
statistics rows with it, so no padding is left behind either.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bot.adapters.charts import FunnelStep, funnel_png
from bot.engine.flow import Turn
from bot.engine.session import EXITED, RECOMMENDED
from bot.knowledge.model import KnowledgeBase, text
from bot.storage.features import FeatureStore

log = logging.getLogger(__name__)

STATS_ID = "stats_id"
DEFAULT_K = 5
STARTED = "_started"

#: Outcomes kept per conversation (kind -> the event field giving its value).
OUTCOMES = {"contact.requested": "contact", "barometer.completed": "barometer"}


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class StatsRecorder:
    """What channels call after each engine turn: ``turn = await stats.record(turn, "telegram")``.

    Returns the turn with the conversation's random statistics id in its session (the channel
    saves that session as usual). Never raises: statistics must not break a conversation.
    """

    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    async def record(
        self,
        turn: Turn,
        channel: str,
        day: dt.date | None = None,
        *,
        establishment: str | None = None,
    ) -> Turn:
        """``establishment``: whose API key created the conversation (kept with its row)."""
        try:
            return await self._record(turn, channel, day or today(), establishment)
        except Exception:
            log.exception("statistics not recorded")
            return turn

    async def forget(self, session: dict[str, Any] | None) -> None:
        """Drop the statistics rows of the conversation whose session this is (API erasure:
        nothing of it, not even an anonymous row, is left to pad a count)."""
        extra = (session or {}).get("extra") or {}
        sid = extra.get(STATS_ID) if isinstance(extra, dict) else None
        if not isinstance(sid, str) or not sid:
            return
        await self.store.write(
            [
                ("DELETE FROM stats_nodes WHERE conversation = ?", (sid,)),
                ("DELETE FROM stats_roles WHERE conversation = ?", (sid,)),
                ("DELETE FROM stats_outcomes WHERE conversation = ?", (sid,)),
                ("DELETE FROM stats_conversations WHERE id = ?", (sid,)),
            ]
        )

    async def _record(
        self, turn: Turn, channel: str, day: dt.date, establishment: str | None
    ) -> Turn:
        session = turn.session
        sid = session.extra.get(STATS_ID)
        statements: list[tuple[str, Sequence[Any]]] = []
        if not isinstance(sid, str) or not sid:
            sid = secrets.token_hex(12)
            session = replace(session, extra={**session.extra, STATS_ID: sid})
            turn = replace(turn, session=session)
            statements.append(
                (
                    "INSERT INTO stats_conversations "
                    "(id, day, context, channel, establishment) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (sid, day.isoformat(), session.context, channel[:32], establishment),
                )
            )
        node = session.node
        if node and not session.extra.get("mode"):
            statements += [
                (
                    "INSERT INTO stats_nodes (conversation, node) VALUES (?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (sid, node),
                ),
                ("UPDATE stats_conversations SET last_node = ? WHERE id = ?", (node, sid)),
            ]
        for event in turn.events:
            data = event.data
            if event.kind == "conversation.completed":
                statements.append(
                    (
                        "UPDATE stats_conversations SET completed = 1, territory = ? WHERE id = ?",
                        (data.get("territory"), sid),
                    )
                )
                statements += [
                    (
                        "INSERT INTO stats_roles (conversation, role) VALUES (?, ?) "
                        "ON CONFLICT DO NOTHING",
                        (sid, str(role)),
                    )
                    for role in data.get("roles", [])
                ]
            elif event.kind in OUTCOMES:
                # The value is a fixed word, never a field a person typed.
                value = str(data.get("rater", "1")) if event.kind == "barometer.completed" else "1"
                statements.append(
                    (
                        "INSERT INTO stats_outcomes (conversation, kind, value) "
                        "VALUES (?, ?, ?) ON CONFLICT (conversation, kind) "
                        "DO UPDATE SET value = excluded.value",
                        (sid, OUTCOMES[event.kind], value),
                    )
                )
        if statements:
            await self.store.write(statements)
        return turn

    async def record_followup(self, conversation: str | None, reached: bool) -> None:
        """The answer to a follow-up (« could you reach the contact? »)."""
        if not conversation:
            return
        await self.store.write(
            [
                (
                    "INSERT INTO stats_outcomes (conversation, kind, value) "
                    "VALUES (?, 'followup', ?) ON CONFLICT (conversation, kind) "
                    "DO UPDATE SET value = excluded.value",
                    (conversation, "reached" if reached else "not_reached"),
                )
            ]
        )


# -- the report --------------------------------------------------------------------------------
Cell = int | None  # None: hidden (fewer than k)


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    count: Cell


@dataclass(frozen=True)
class FollowupRow:
    key: str
    label: str
    answered: Cell
    reached: Cell

    @property
    def share(self) -> float | None:
        if not self.answered or self.reached is None:
            return None
        return round(self.reached / self.answered, 3)


@dataclass(frozen=True)
class Report:
    since: dt.date | None
    context: str | None
    k: int
    started: Cell
    completed: Cell
    funnel: tuple[Row, ...]
    dropoff: tuple[Row, ...]
    roles: tuple[Row, ...]
    territories: tuple[Row, ...]
    outcomes: tuple[Row, ...]
    followup_by_role: tuple[FollowupRow, ...] = field(default=())
    followup_by_context: tuple[FollowupRow, ...] = field(default=())

    @property
    def completion_rate(self) -> float | None:
        if not self.started or self.completed is None:
            return None
        return round(self.completed / self.started, 3)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe figures; ``null`` means hidden (fewer than ``k``)."""

        def rows(values: Iterable[Row]) -> list[dict[str, Any]]:
            return [{"id": r.key, "label": r.label, "count": r.count} for r in values]

        def followups(values: Iterable[FollowupRow]) -> list[dict[str, Any]]:
            return [
                {
                    "id": r.key,
                    "label": r.label,
                    "answered": r.answered,
                    "reached": r.reached,
                    "share_reached": r.share,
                }
                for r in values
            ]

        return {
            "since": self.since.isoformat() if self.since else None,
            "context": self.context,
            "k": self.k,
            "conversations": self.started,
            "completed": self.completed,
            "completion_rate": self.completion_rate,
            "funnel": rows(self.funnel),
            "dropoff": rows(self.dropoff),
            "roles": rows(self.roles),
            "territories": rows(self.territories),
            "outcomes": rows(self.outcomes),
            "followup_by_role": followups(self.followup_by_role),
            "followup_by_context": followups(self.followup_by_context),
        }


def hide(count: int, k: int, own: int = 0) -> Cell:
    """Primary suppression: counts from 1 to k-1 are hidden; 0 and k or more are shown.

    ``own``: how many of them the caller's own keys created. The caller knows those, so the
    others alone must be 0 or at least ``k`` too: its own conversations never lift a small
    count of other people over the threshold."""
    others = count - own
    return None if 0 < count < k or 0 < others < k else count


def hide_partition(
    counts: dict[str, int], k: int, total_shown: bool, own: dict[str, int] | None = None
) -> dict[str, Cell]:
    """Suppression for a breakdown whose total is published: never exactly one hidden cell."""
    own = own or {}
    cells: dict[str, Cell] = {key: hide(value, k, own.get(key, 0)) for key, value in counts.items()}
    hidden = [key for key, value in cells.items() if value is None]
    if total_shown and len(hidden) == 1:
        visible = sorted(
            (value, key) for key, value in counts.items() if cells[key] is not None and value > 0
        )
        if visible:
            cells[visible[0][1]] = None
    return cells


def question_order(kb: KnowledgeBase) -> list[str]:
    """Questions in the order people meet them: each after every question that leads to it,
    and one branch followed to its end before the next (the first choice's branch first), so
    a funnel reads down one path instead of mixing the steps of several."""
    successors: dict[str, list[str]] = {}
    reachable: list[str] = []
    queue = [kb.flow.start]
    while queue:
        node = queue.pop(0)
        if node in successors or node not in kb.questions:
            continue
        question = kb.questions[node]
        targets = [*(c.next or question.next for c in question.choices), question.next]
        targets += [branch.next for branch in question.next_when]
        successors[node] = [
            t for t in dict.fromkeys(targets) if t and t in kb.questions and t != node
        ]
        reachable.append(node)
        queue += successors[node]
    waiting = {node: 0 for node in reachable}
    for node in reachable:
        for target in successors[node]:
            waiting[target] += 1
    order: list[str] = []
    stack = [kb.flow.start] if kb.flow.start in waiting else []
    while stack:
        node = stack.pop()
        order.append(node)
        ready = []
        for target in successors[node]:
            waiting[target] -= 1
            if waiting[target] == 0:
                ready.append(target)
        stack += reversed(ready)
    order += [q for q in reachable if q not in order]  # in a loop: where first reached
    order += [q for q in kb.questions if q not in order]
    return order


def _label(kb: KnowledgeBase, node: str) -> str:
    if node == STARTED:
        return "Conversations commencées"
    if node == RECOMMENDED:
        return "Recommandation reçue"
    if node == EXITED:
        return "Arrêt demandé (stop)"
    question = kb.questions.get(node)
    if question is None:
        return f"{node} (question retirée)"
    label = text(question.text).split("\n")[0]
    return f"{node} — {label[:70]}{'…' if len(label) > 70 else ''}"


@dataclass(frozen=True)
class Scope:
    """The conversations one establishment's report covers: those its API keys created, and
    those from elsewhere (Telegram deep links) whose context is its id or one of its
    ``contexts``. Conversations created by another establishment's keys are never in it."""

    establishment: str
    contexts: tuple[str, ...] = ()


class StatsReader:
    """Computes :class:`Report` from the recorded rows."""

    def __init__(self, store: FeatureStore, kb: KnowledgeBase) -> None:
        self.store = store
        self.kb = kb

    def _where(
        self,
        since: dt.date | None,
        context: str | None,
        scope: Scope | None = None,
        alias: str = "c",
    ) -> tuple[str, list[Any]]:
        clauses, params = ["1 = 1"], []
        if since is not None:
            clauses.append(f"{alias}.day >= ?")
            params.append(since.isoformat())
        if context is not None:
            clauses.append(f"{alias}.context IS NOT DISTINCT FROM ?")
            params.append(context)
        if scope is not None:
            contexts = sorted({scope.establishment, *scope.contexts})
            marks = ", ".join("?" for _ in contexts)
            clauses.append(
                f"({alias}.establishment = ? OR "
                f"({alias}.establishment IS NULL AND {alias}.context IN ({marks})))"
            )
            params += [scope.establishment, *contexts]
        return " AND ".join(clauses), params

    async def _counts(
        self, sql: str, params: Sequence[Any]
    ) -> tuple[dict[str, int], dict[str, int]]:
        """``sql`` selects (key, count, own count): both as dicts."""
        counts: dict[str, int] = {}
        own: dict[str, int] = {}
        for key, count, mine in await self.store.read(sql, params):
            counts[str(key)] = int(count)
            own[str(key)] = int(mine or 0)
        return counts, own

    async def report(
        self,
        since: dt.date | None = None,
        context: str | None = None,
        k: int = DEFAULT_K,
        *,
        scope: Scope | None = None,
    ) -> Report:
        """The figures of ``context`` (all when ``None``), or of an establishment's ``scope``
        (then its own conversations never lift a cell over ``k``: see :func:`hide`)."""
        where, params = self._where(since, context, scope)
        # How many of a count the caller's own keys created (0 for the operator's report).
        own_sql, own_done_sql, own_params = "0", "0", []
        if scope is not None:
            # Portable SQL (SQLite and PostgreSQL): no boolean arithmetic.
            own_sql = "SUM(CASE WHEN c.establishment IS NOT DISTINCT FROM ? THEN 1 ELSE 0 END)"
            own_done_sql = (
                "SUM(CASE WHEN c.completed = 1 AND c.establishment IS NOT DISTINCT FROM ? "
                "THEN 1 ELSE 0 END)"
            )
            own_params = [scope.establishment]
        label = context if scope is None else scope.establishment
        all_params = [*own_params, *params]
        [(started_raw, completed_raw, started_own, completed_own)] = await self.store.read(
            "SELECT COUNT(*), COALESCE(SUM(c.completed), 0), "
            f"COALESCE({own_sql}, 0), COALESCE({own_done_sql}, 0) "
            f"FROM stats_conversations c WHERE {where}",
            [*own_params, *own_params, *params],
        )
        started_raw, completed_raw = int(started_raw), int(completed_raw)
        if started_raw < k:
            # Too few conversations: every figure could point at someone.
            return Report(since, label, k, hide(started_raw, k), None, (), (), (), (), ())
        started = hide(started_raw, k, int(started_own))
        completed = hide(completed_raw, k, int(completed_own))

        reached, reached_own = await self._counts(
            f"SELECT n.node, COUNT(*), {own_sql} FROM stats_nodes n JOIN stats_conversations c "
            f"ON c.id = n.conversation WHERE {where} GROUP BY n.node",
            all_params,
        )
        nodes = [q for q in question_order(self.kb) if q in reached]
        nodes += sorted(n for n in reached if n not in nodes and n not in (RECOMMENDED, EXITED))
        funnel = [Row(STARTED, _label(self.kb, STARTED), started)]
        funnel += [Row(n, _label(self.kb, n), hide(reached[n], k, reached_own[n])) for n in nodes]
        funnel.append(Row(RECOMMENDED, _label(self.kb, RECOMMENDED), completed))

        left, left_own = await self._counts(
            f"SELECT COALESCE(c.last_node, ''), COUNT(*), {own_sql} FROM stats_conversations c "
            f"WHERE {where} AND c.completed = 0 GROUP BY c.last_node",
            all_params,
        )
        left_cells = hide_partition(left, k, total_shown=completed is not None, own=left_own)
        order = {node: index for index, node in enumerate([*nodes, EXITED, ""])}
        dropoff = [
            Row(node, _label(self.kb, node) if node else "Avant la première question", cell)
            for node, cell in sorted(left_cells.items(), key=lambda kv: order.get(kv[0], 999))
        ]

        roles_raw, roles_own = await self._counts(
            f"SELECT r.role, COUNT(*), {own_sql} FROM stats_roles r JOIN stats_conversations c "
            f"ON c.id = r.conversation WHERE {where} GROUP BY r.role",
            all_params,
        )
        roles = [
            Row(
                role,
                text(self.kb.roles[role].title) if role in self.kb.roles else role,
                hide(n, k, roles_own[role]),
            )
            for role, n in sorted(roles_raw.items(), key=lambda kv: (-kv[1], kv[0]))
        ]

        territories_raw, territories_own = await self._counts(
            f"SELECT COALESCE(c.territory, ''), COUNT(*), {own_sql} FROM stats_conversations c "
            f"WHERE {where} AND c.completed = 1 GROUP BY c.territory",
            all_params,
        )
        territory_cells = hide_partition(
            territories_raw, k, total_shown=completed is not None, own=territories_own
        )
        territories = [
            Row(
                key,
                text(self.kb.territories[key].name)
                if key in self.kb.territories
                else (key or "Non précisé"),
                cell,
            )
            for key, cell in sorted(territory_cells.items())
        ]

        outcomes_raw, outcomes_own = await self._counts(
            f"SELECT o.kind || ':' || o.value, COUNT(*), {own_sql} FROM stats_outcomes o "
            f"JOIN stats_conversations c ON c.id = o.conversation WHERE {where} "
            "GROUP BY o.kind, o.value",
            all_params,
        )
        outcomes = [
            Row(key, _OUTCOME_LABELS.get(key, key), hide(n, k, outcomes_own[key]))
            for key, n in sorted(outcomes_raw.items())
        ]

        by_role = await self._followups(
            f"SELECT r.role, o.value, COUNT(*), {own_sql} FROM stats_outcomes o "
            "JOIN stats_conversations c ON c.id = o.conversation "
            "JOIN stats_roles r ON r.conversation = o.conversation "
            f"WHERE {where} AND o.kind = 'followup' GROUP BY r.role, o.value",
            all_params,
            k,
            lambda key: text(self.kb.roles[key].title) if key in self.kb.roles else key,
        )
        by_context = await self._followups(
            f"SELECT COALESCE(c.context, ''), o.value, COUNT(*), {own_sql} FROM stats_outcomes o "
            "JOIN stats_conversations c ON c.id = o.conversation "
            f"WHERE {where} AND o.kind = 'followup' GROUP BY c.context, o.value",
            all_params,
            k,
            lambda key: key or "Sans contexte",
        )
        return Report(
            since,
            label,
            k,
            started,
            completed,
            tuple(funnel),
            tuple(dropoff),
            tuple(roles),
            tuple(territories),
            tuple(outcomes),
            by_role,
            by_context,
        )

    async def _followups(
        self, sql: str, params: Sequence[Any], k: int, label: Any
    ) -> tuple[FollowupRow, ...]:
        answered: dict[str, int] = {}
        answered_own: dict[str, int] = {}
        reached: dict[str, int] = {}
        reached_own: dict[str, int] = {}
        for key, value, count, mine in await self.store.read(sql, params):
            key = str(key)
            answered[key] = answered.get(key, 0) + int(count)
            answered_own[key] = answered_own.get(key, 0) + int(mine or 0)
            if value == "reached":
                reached[key] = int(count)
                reached_own[key] = int(mine or 0)
        rows = []
        for key in sorted(answered):
            shown = hide(answered[key], k, answered_own[key])
            rows.append(
                FollowupRow(
                    key,
                    str(label(key)),
                    shown,
                    hide(reached.get(key, 0), k, reached_own.get(key, 0))
                    if shown is not None
                    else None,
                )
            )
        return tuple(rows)


_OUTCOME_LABELS = {
    "contact:1": "Demandes de mise en relation",
    "barometer:professionnel": "Baromètres remplis par des professionnels",
    "barometer:usager": "Baromètres remplis par des patients, proches-aidants, RU",
    "followup:reached": "Relances : contact joint",
    "followup:not_reached": "Relances : contact non joint",
}


# -- output ------------------------------------------------------------------------------------
def shown(cell: Cell, k: int) -> str:
    return f"< {k}" if cell is None else str(cell)


def render_table(report: Report) -> str:
    """The report as plain text for the terminal."""
    k = report.k
    lines = ["Statistiques d'utilisation de Passerelle"]
    scope = []
    if report.since:
        scope.append(f"depuis le {report.since.isoformat()}")
    scope.append(f"contexte : {report.context}" if report.context else "tous contextes")
    lines.append(f"({', '.join(scope)} ; les nombres inférieurs à {k} sont masqués)")
    lines.append("")
    lines.append(f"Conversations : {shown(report.started, k)}")
    if report.started is None or (report.started or 0) < k:
        lines.append("Trop peu de conversations pour publier des chiffres.")
        return "\n".join(lines)
    lines.append(f"Terminées par une recommandation : {shown(report.completed, k)}")
    rate = report.completion_rate
    lines.append(f"Taux de complétion : {'masqué' if rate is None else f'{rate:.0%}'}")
    sections = [
        ("Parcours (conversations ayant atteint chaque étape)", report.funnel),
        ("Où les personnes se sont arrêtées (sans recommandation)", report.dropoff),
        ("Rôles recommandés", report.roles),
        ("Territoires (conversations terminées)", report.territories),
        ("Suites", report.outcomes),
    ]
    for title, rows in sections:
        if not rows:
            continue
        lines += ["", title]
        width = max(len(row.label) for row in rows)
        lines += [f"  {row.label.ljust(width)}  {shown(row.count, k):>6}" for row in rows]
    for title, followups in (
        ("Relances par rôle : contact joint / réponses", report.followup_by_role),
        ("Relances par contexte : contact joint / réponses", report.followup_by_context),
    ):
        if followups:
            lines += ["", title]
            for f in followups:
                share = "" if f.share is None else f" ({f.share:.0%})"
                lines.append(f"  {f.label} : {shown(f.reached, k)} / {shown(f.answered, k)}{share}")
    return "\n".join(lines)


def render_csv(report: Report) -> str:
    """One line per figure: ``section,id,label,count`` (empty count = hidden)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["section", "id", "label", "count"])

    def cell(value: Cell) -> str:
        return "" if value is None else str(value)

    writer.writerow(["total", "conversations", "Conversations", cell(report.started)])
    writer.writerow(["total", "completed", "Terminées", cell(report.completed)])
    rate = report.completion_rate
    writer.writerow(
        ["total", "completion_rate", "Taux de complétion", "" if rate is None else rate]
    )
    for section, rows in (
        ("funnel", report.funnel),
        ("dropoff", report.dropoff),
        ("roles", report.roles),
        ("territories", report.territories),
        ("outcomes", report.outcomes),
    ):
        for row in rows:
            writer.writerow([section, row.key, row.label, cell(row.count)])
    for section, followups in (
        ("followup_by_role", report.followup_by_role),
        ("followup_by_context", report.followup_by_context),
    ):
        for f in followups:
            writer.writerow([section + ":answered", f.key, f.label, cell(f.answered)])
            writer.writerow([section + ":reached", f.key, f.label, cell(f.reached)])
    return buffer.getvalue()


def funnel_chart(report: Report) -> bytes:
    """The funnel as a PNG (sync: run it in a worker thread from async code)."""
    steps = [FunnelStep(row.label, row.count) for row in report.funnel]
    if not steps:
        steps = [FunnelStep("Conversations commencées", report.started)]
    title = "Parcours des conversations" + (f" — {report.context}" if report.context else "")
    return funnel_png(steps, title, hidden_label=f"moins de {report.k}")
