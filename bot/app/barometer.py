"""Barometer charts and joint evaluation in groups (step 3 of the seed's *mode d'emploi*).

The engine's barometer mode (:mod:`bot.engine.barometer`) is pure; channels pass every turn
through :meth:`BarometerService.apply`, which

* draws the person's radar chart after ``barometer.completed`` (in the chart worker process,
  see :func:`bot.adapters.charts.render`);
* keeps a rating in a group after ``barometer.keep`` (the person pressed « create a group » or
  typed a code: that is the consent), then shows the comparison once two or more have rated;
* answers ``barometer.compare`` for members only.

Groups: a code (``ABCD-2345``) is an invitation; whoever rates with it becomes a member. The
comparison shows side averages (professionals, patients / carers / RU), never a rating by name.
Rounds: a member who rates again in a group starts the group's next round; the chart then shows
the previous round faded.

The charts (what they show, drawn in the chart worker): :mod:`bot.app.barometer_chart`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

from bot.adapters import charts
from bot.app.barometer_chart import Comparison, Side, comparison_chart, rating_chart
from bot.engine import barometer as mode
from bot.engine.flow import Engine, Turn
from bot.engine.replies import Reply
from bot.engine.session import Session
from bot.json_types import JsonValue
from bot.knowledge.model import BAROMETER_RATERS, text
from bot.storage.base import BarometerRating, CodeTaken, FeatureStore, FeatureWrite

log = logging.getLogger(__name__)

#: A gap between the two sides' averages larger than this is a topic to discuss.
GAP_THRESHOLD = 1.0


# -- storage --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pending:
    """A rating planned in a turn and not committed yet: comparisons count it already."""

    member: str
    round: int
    rater: str
    scores: dict[str, int]


class BarometerGroups:
    """Groups, ratings kept with consent, and comparisons (members only)."""

    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    async def free_code(self) -> str:
        """A fresh code no group has (the turn's commit claims it: a group created meanwhile
        with the same code makes that commit raise :class:`CodeTaken`)."""
        for _ in range(10):
            code = mode.new_code()
            if await self.store.barometer_round(code) is None:
                return code
        raise RuntimeError("could not find a free group code")

    async def joining(self, code: str, member: str) -> int | None:
        """The round ``member``'s rating in group ``code`` would go to (``None``: no such
        group), as :meth:`join` would write it."""
        current = await self.store.barometer_round(code)
        if current is None:
            return None
        return current + 1 if await self.store.barometer_rated(code, current, member) else current

    async def create(
        self,
        member: str,
        rater: str,
        scores: dict[str, int],
        kb_version: str,
        context: str | None = None,
    ) -> str:
        """A new group holding ``member``'s rating; returns its code."""
        for _ in range(10):
            code = mode.new_code()
            rating = BarometerRating(code, member, rater, scores, kb_version, True, context)
            try:
                await self.store.apply([rating])
            except CodeTaken:
                continue
            return code
        raise RuntimeError("could not find a free group code")

    async def join(
        self, code: str, member: str, rater: str, scores: dict[str, int], kb_version: str
    ) -> int | None:
        """Keep ``member``'s rating in group ``code``; the round it went to, ``None`` if no group.

        A member who already rated in the current round starts the next one.
        """
        [round_] = await self.store.apply(
            [BarometerRating(code, member, rater, scores, kb_version)]
        )
        return round_ or None

    async def groups_of(self, member: str) -> list[str]:
        """Codes of the groups ``member`` belongs to, most recently rated last."""
        return await self.store.barometer_groups_of(member)

    async def is_member(self, code: str, member: str) -> bool:
        return await self.store.barometer_is_member(code, member)

    async def compare(
        self, code: str, member: str, pending: Pending | None = None
    ) -> Comparison | None:
        """The group's current round against its previous one; ``None`` for a non-member.
        ``pending``: a rating of this turn, counted as if committed."""
        mine = pending is not None and pending.member == member
        if not mine and not await self.is_member(code, member):
            return None
        current = await self.store.barometer_round(code)
        if current is None:
            return None
        if pending is not None:
            current = max(current, pending.round)
        sides = await self._sides(code, current, pending)
        previous = await self._sides(code, current - 1, pending) if current > 1 else {}
        gaps: list[tuple[str, float, float]] = []
        pro, usr = sides.get(BAROMETER_RATERS[0]), sides.get(BAROMETER_RATERS[1])
        if pro and usr:
            for criterion, a in pro.means.items():
                b = usr.means.get(criterion)
                if b is not None and abs(a - b) > GAP_THRESHOLD:
                    gaps.append((criterion, a, b))
        return Comparison(code, current, sides, previous, tuple(gaps))

    async def _sides(self, code: str, round_: int, pending: Pending | None) -> dict[str, Side]:
        collected: dict[str, list[dict[str, int]]] = {}
        kept = [*await self.store.barometer_ratings(code, round_)]
        if pending is not None and pending.round == round_:
            # Its member had not rated in that round (else it would be the next one).
            kept.append((pending.rater, pending.scores))
        for rater, scores in kept:
            collected.setdefault(rater, []).append(scores)
        sides: dict[str, Side] = {}
        for rater in [*BAROMETER_RATERS, *sorted(set(collected) - set(BAROMETER_RATERS))]:
            ratings = collected.get(rater)
            if not ratings:
                continue
            keys = dict.fromkeys(k for r in ratings for k in r)
            means = {
                k: round(
                    sum(r[k] for r in ratings if k in r) / sum(1 for r in ratings if k in r), 2
                )
                for k in keys
            }
            sides[rater] = Side(len(ratings), means)
        return sides


# -- the channel-facing service ------------------------------------------------------------------
def _before_prompt(turn: Turn, *replies: Reply) -> Turn:
    """``replies`` inserted before the turn's last reply (the prompt with buttons)."""
    if not turn.replies:
        return replace(turn, replies=replies)
    return replace(turn, replies=(*turn.replies[:-1], *replies, turn.replies[-1]))


class BarometerService:
    """What channels call after each engine turn: ``turn, writes = await service.plan(member,
    turn)``, the writes (a rating kept, a group code claimed) going into the turn's commit;
    :meth:`apply` writes them at once where the feature tables live apart.

    ``member`` is the person's pseudonymous key (``None`` when the channel has none: groups are
    then unavailable). ``groups`` is ``None`` without storage: only the personal chart is shown.
    """

    def __init__(self, engine: Engine, groups: BarometerGroups | None = None) -> None:
        self.engine = engine
        self.groups = groups
        self.mode = mode.BarometerMode()

    async def apply(self, member: str | None, turn: Turn) -> Turn:
        """:meth:`plan`, its writes applied at once (another code if the one drawn was taken
        meanwhile)."""
        for _ in range(10):
            planned, writes = await self.plan(member, turn)
            if not writes or self.groups is None:
                return planned
            try:
                await self.groups.store.apply(writes)
            except CodeTaken:
                continue
            return planned
        raise RuntimeError("could not find a free group code")

    async def plan(self, member: str | None, turn: Turn) -> tuple[Turn, tuple[FeatureWrite, ...]]:
        """The turn with the charts, groups and comparisons it shows, and the ratings to
        commit with it (a new group's code is claimed by that commit: :class:`CodeTaken` if
        another turn took it since it was drawn, and then nothing is written)."""
        if turn.session.mode == mode.NAME:
            charts.warm_soon()  # the worker warms while the person answers (see warm_soon)
        writes: list[FeatureWrite] = []
        for event in turn.events:
            if event.kind == mode.COMPLETED:
                turn = await self._completed(turn, event.data)
            elif event.kind == mode.KEEP:
                turn, kept = await self._keep(member, turn, event.data)
                writes += kept
            elif event.kind == mode.COMPARE_EVENT:
                turn = await self._compare(member, turn, None)
        return turn, tuple(writes)

    def msg(self, key: str, session: Session, **values: str) -> str:
        return self.engine.msg(key, session, **values)

    async def _completed(self, turn: Turn, data: Mapping[str, JsonValue]) -> Turn:
        session = turn.session
        rater = str(data.get("rater"))
        scores = mode.scores_of(data)
        alt = self.mode.result_text(self.engine, session, rater, scores)
        try:
            image = await rating_chart(self.engine.kb, rater, scores, alt, session.lang)
        except Exception:
            log.exception("barometer chart failed")
            return _before_prompt(turn, Reply(self.msg("barometer_chart_failed", session)))
        return _before_prompt(
            turn, Reply(self.msg("barometer_chart_caption", session), image=image)
        )

    async def _keep(
        self, member: str | None, turn: Turn, data: Mapping[str, JsonValue]
    ) -> tuple[Turn, tuple[BarometerRating, ...]]:
        session = turn.session
        if self.groups is None or member is None:
            unavailable = Reply(self.msg("barometer_groups_unavailable", session))
            return _before_prompt(turn, unavailable), ()
        rater = str(data.get("rater"))
        scores = mode.scores_of(data)
        version = str(data.get("kb_version", self.engine.kb.version))
        if data.get("action") == "create":
            code = await self.groups.free_code()
            rating = BarometerRating(code, member, rater, scores, version, True, session.context)
            turn = replace(turn, session=mode.remember_group(session, code))
            created = self.msg("barometer_group_created", session, code=mode.format_code(code))
            return _before_prompt(turn, Reply(created)), (rating,)
        code = str(data.get("code") or "")
        round_ = await self.groups.joining(code, member)
        if round_ is None:
            return self.mode.code_unknown(self.engine, session, data), ()
        rating = BarometerRating(code, member, rater, scores, version)
        turn = replace(turn, session=mode.remember_group(session, code))
        joined = Reply(self.msg("barometer_group_joined", session, code=mode.format_code(code)))
        pending = Pending(member, round_, rater, scores)
        return await self._compare(member, _before_prompt(turn, joined), code, pending), (rating,)

    async def _compare(
        self, member: str | None, turn: Turn, code: str | None, pending: Pending | None = None
    ) -> Turn:
        session = turn.session
        if self.groups is None or member is None:
            return _before_prompt(turn, Reply(self.msg("barometer_groups_unavailable", session)))
        if code is None:
            mine = await self.groups.groups_of(member)
            known = [str(c) for c in session.groups]
            chosen = [c for c in known if c in mine] or mine
            code = chosen[-1] if chosen else None
        comparison = await self.groups.compare(code, member, pending) if code else None
        if comparison is None:
            return _before_prompt(turn, Reply(self.msg("barometer_not_member", session)))
        if comparison.raters < 2:
            return _before_prompt(turn, Reply(self.msg("barometer_group_waiting", session)))
        alt = self.comparison_text(session, comparison)
        labels = self._labels(session, comparison)
        try:
            image = await comparison_chart(self.engine.kb, comparison, alt, labels, session.lang)
        except Exception:
            log.exception("barometer comparison chart failed")
            return _before_prompt(
                turn, Reply(alt), Reply(self.msg("barometer_chart_failed", session))
            )
        caption = Reply(self.msg("barometer_comparison_caption", session), image=image)
        return _before_prompt(turn, Reply(alt), caption)

    def _who(self, session: Session, rater: str) -> str:
        barometer = mode.barometer_of(self.engine.kb)
        if rater in barometer.raters:
            return text(barometer.raters[rater].who, session.lang)
        return rater

    def _labels(self, session: Session, comparison: Comparison) -> dict[str, str]:
        labels = {
            "subtitle": self.msg(
                "barometer_chart_subtitle",
                session,
                code=mode.format_code(comparison.code),
                round=str(comparison.round),
            )
        }
        for rater in {*comparison.sides, *comparison.previous}:
            who = self._who(session, rater)
            labels[rater] = who
            labels[f"previous:{rater}"] = self.msg("barometer_previous_label", session, who=who)
        return labels

    def comparison_text(self, session: Session, comparison: Comparison) -> str:
        """The comparison's text alternative: every criterion by side, gaps, dimensions."""
        barometer = mode.barometer_of(self.engine.kb)
        lang = session.lang
        counts = " ; ".join(
            f"{self._who(session, rater)} : {side.count}"
            for rater, side in comparison.sides.items()
        )
        lines = [
            self.msg(
                "barometer_comparison_intro",
                session,
                code=mode.format_code(comparison.code),
                round=str(comparison.round),
                counts=counts,
            )
        ]
        for dimension in barometer.dimensions.values():
            if not dimension.criteria:
                continue
            lines += ["", text(dimension.label, lang)]
            for criterion in dimension.criteria:
                parts = [
                    f"{self._who(session, rater)} : {mode.fmt_score(side.means[criterion.id])}/4"
                    for rater, side in comparison.sides.items()
                    if criterion.id in side.means
                ]
                lines.append(f"• {text(criterion.text, lang)} — {' ; '.join(parts)}")
        lines.append("")
        known = {c.id for _, c in barometer.criteria()}
        for rater, side in comparison.sides.items():
            means = [value for key, value in side.means.items() if key in known]
            overall = sum(means) / len(means) if means else 0.0
            lines.append(
                self.msg(
                    "barometer_comparison_side",
                    session,
                    who=self._who(session, rater),
                    count=str(side.count),
                    score=mode.fmt_score(overall),
                )
            )
        if len(comparison.sides) < 2:
            only = next(iter(comparison.sides), "")
            lines += ["", self.msg("barometer_one_side", session, who=self._who(session, only))]
        elif comparison.gaps:
            lines += ["", self.msg("barometer_gaps", session)]
            names = {c.id: text(c.text, lang) for _, c in barometer.criteria()}
            first, second = (self._who(session, r) for r in BAROMETER_RATERS)
            for criterion_id, a, b in comparison.gaps:
                lines.append(
                    self.msg(
                        "barometer_gap_line",
                        session,
                        criterion=names.get(criterion_id, criterion_id),
                        first=first,
                        a=mode.fmt_score(a),
                        second=second,
                        b=mode.fmt_score(b),
                    )
                )
        else:
            lines += ["", self.msg("barometer_no_gaps", session)]
        if comparison.previous:
            lines += ["", self.msg("barometer_previous_round", session)]
        return "\n".join(lines)
