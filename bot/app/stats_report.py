"""The statistics report: what an establishment (or an operator) is shown.

What is shown: counts below ``k`` (default 5) are hidden, so no one can be singled out; in a
breakdown whose total is shown (where people left, territories), a second cell is hidden when
only one would be, so the hidden one cannot be recomputed by subtraction.

Against padding (an establishment creating conversations with its own keys to lift a hidden
cell over ``k``, then subtracting them): the report of an establishment counts, in each cell,
the conversations its own keys created apart. Those never lift a cell over the threshold: a
cell is shown only if the conversations *not* created by the caller's keys are 0 or at least
``k`` there (as well as the whole cell). A conversation erased through the API takes its
statistics rows with it, so no padding is left behind either.

How a report is written out (text, CSV, funnel chart): :mod:`bot.app.stats_output`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypedDict

from bot.engine.session import EXITED, RECOMMENDED
from bot.knowledge.model import KnowledgeBase, text
from bot.storage.base import (
    Counts,
    FeatureStore,
    StatsScope,
)

DEFAULT_K = 5
#: The funnel's first step (every conversation started), before the questions' node ids.
STARTED = "_started"

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


class RowJson(TypedDict):
    id: str
    label: str
    count: Cell


class FollowupRowJson(TypedDict):
    id: str
    label: str
    answered: Cell
    reached: Cell
    share_reached: float | None


class ReportJson(TypedDict):
    """:meth:`Report.to_dict`: the body of ``GET /api/v1/stats`` (``StatsOut``)."""

    since: str | None
    context: str | None
    k: int
    conversations: Cell
    completed: Cell
    completion_rate: float | None
    funnel: list[RowJson]
    dropoff: list[RowJson]
    roles: list[RowJson]
    territories: list[RowJson]
    outcomes: list[RowJson]
    followup_by_role: list[FollowupRowJson]
    followup_by_context: list[FollowupRowJson]


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

    def to_dict(self) -> ReportJson:
        """JSON-safe figures; ``null`` means hidden (fewer than ``k``)."""

        def rows(values: Iterable[Row]) -> list[RowJson]:
            return [{"id": r.key, "label": r.label, "count": r.count} for r in values]

        def followups(values: Iterable[FollowupRow]) -> list[FollowupRowJson]:
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
        query = StatsScope(
            since=since.isoformat() if since is not None else None,
            context=context,
            establishment=scope.establishment if scope is not None else None,
            contexts=scope.contexts if scope is not None else (),
        )
        counts = await self.store.stats_counts(query)
        label = context if scope is None else scope.establishment
        (started_raw, started_own), (completed_raw, completed_own) = (
            counts.started,
            counts.completed,
        )
        if started_raw < k:
            # Too few conversations: every figure could point at someone.
            return Report(since, label, k, hide(started_raw, k), None, (), (), (), (), ())
        started = hide(started_raw, k, started_own)
        completed = hide(completed_raw, k, completed_own)

        reached = counts.reached
        nodes = [q for q in question_order(self.kb) if q in reached]
        nodes += sorted(n for n in reached if n not in nodes and n not in (RECOMMENDED, EXITED))
        funnel = [Row(STARTED, _label(self.kb, STARTED), started)]
        funnel += [Row(n, _label(self.kb, n), hide(reached[n][0], k, reached[n][1])) for n in nodes]
        funnel.append(Row(RECOMMENDED, _label(self.kb, RECOMMENDED), completed))

        left, left_own = _split(counts.left)
        left_cells = hide_partition(left, k, total_shown=completed is not None, own=left_own)
        order = {node: index for index, node in enumerate([*nodes, EXITED, ""])}
        dropoff = [
            Row(node, _label(self.kb, node) if node else "Avant la première question", cell)
            for node, cell in sorted(left_cells.items(), key=lambda kv: order.get(kv[0], 999))
        ]

        roles = [
            Row(
                role,
                text(self.kb.roles[role].title) if role in self.kb.roles else role,
                hide(n, k, own),
            )
            for role, (n, own) in sorted(counts.roles.items(), key=lambda kv: (-kv[1][0], kv[0]))
        ]

        territories_raw, territories_own = _split(counts.territories)
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

        outcomes = [
            Row(key, _OUTCOME_LABELS.get(key, key), hide(n, k, own))
            for key, (n, own) in sorted(counts.outcomes.items())
        ]

        by_role = _followups(
            counts.followups_by_role,
            k,
            lambda key: text(self.kb.roles[key].title) if key in self.kb.roles else key,
        )
        by_context = _followups(counts.followups_by_context, k, lambda key: key or "Sans contexte")
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


def _split(counts: Counts) -> tuple[dict[str, int], dict[str, int]]:
    """Counts and own counts as two dicts."""
    return (
        {key: count for key, (count, _) in counts.items()},
        {key: own for key, (_, own) in counts.items()},
    )


def _followups(
    by_value: dict[str, Counts], k: int, label: Callable[[str], str]
) -> tuple[FollowupRow, ...]:
    rows = []
    for key in sorted(by_value):
        values = by_value[key]
        answered = sum(count for count, _ in values.values())
        answered_own = sum(own for _, own in values.values())
        reached, reached_own = values.get("reached", (0, 0))
        shown = hide(answered, k, answered_own)
        rows.append(
            FollowupRow(
                key,
                str(label(key)),
                shown,
                hide(reached, k, reached_own) if shown is not None else None,
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
