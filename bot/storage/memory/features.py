"""The feature store in dictionaries (tests, demos): the same contract as SQLite's."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bot.json_types import JsonObject
from bot.storage.base import (
    BarometerRating,
    CodeTaken,
    Counts,
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


@dataclass
class _Conversation:
    day: str
    context: str | None
    channel: str
    establishment: str | None
    last_node: str | None = None
    completed: bool = False
    territory: str | None = None


@dataclass
class _FollowUpRow:
    """A row of the follow-ups table."""

    user: str
    address: str
    conversation: str | None
    context: str | None
    roles: tuple[str, ...]
    due_at: float
    sent_at: float | None = None
    answer: str | None = None
    cancelled_at: float | None = None


@dataclass
class _State:
    conversations: dict[str, _Conversation] = field(default_factory=dict)
    nodes: dict[str, set[str]] = field(default_factory=dict)
    roles: dict[str, set[str]] = field(default_factory=dict)
    #: conversation -> kind -> value
    outcomes: dict[str, dict[str, str]] = field(default_factory=dict)
    #: code -> current round
    groups: dict[str, int] = field(default_factory=dict)
    #: (code, round, member) -> (id, rater, scores, at); ids grow like an autoincrement.
    ratings: dict[tuple[str, int, str], tuple[int, str, dict[str, int], float]] = field(
        default_factory=dict
    )
    followups: dict[int, _FollowUpRow] = field(default_factory=dict)
    next_id: int = 1


def _add(counts: Counts, key: str, own: int) -> None:
    count, mine = counts.get(key, (0, 0))
    counts[key] = (count + 1, mine + own)


class MemoryFeatureStore(FeatureStore):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._state = _State()

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _id(self) -> int:
        self._state.next_id += 1
        return self._state.next_id - 1

    async def apply(self, writes: Sequence[FeatureWrite]) -> list[int]:
        before = copy.deepcopy(self._state)
        try:
            return [self._apply(write, self._clock()) for write in writes]
        except BaseException:
            self._state = before  # all or nothing
            raise

    def _apply(self, write: FeatureWrite, now: float) -> int:
        state = self._state
        match write:
            case StatsStarted():
                if write.conversation in state.conversations:
                    return 0
                state.conversations[write.conversation] = _Conversation(
                    write.day, write.context, write.channel, write.establishment
                )
                return 1
            case StatsReached():
                state.nodes.setdefault(write.conversation, set()).add(write.node)
                found = state.conversations.get(write.conversation)
                if found is None:
                    return 0
                found.last_node = write.node
                return 1
            case StatsCompleted():
                state.roles.setdefault(write.conversation, set()).update(write.roles)
                found = state.conversations.get(write.conversation)
                if found is None:
                    return 0
                found.completed, found.territory = True, write.territory
                return 1
            case StatsOutcome():
                state.outcomes.setdefault(write.conversation, {})[write.kind] = write.value
                return 1
            case StatsForgotten():
                for table in (state.nodes, state.roles, state.outcomes):
                    table.pop(write.conversation, None)
                return 1 if state.conversations.pop(write.conversation, None) else 0
            case BarometerRating():
                return self._rating(write, now)
            case FollowUpScheduled():
                if any(self._open(f) and f.user == write.user for f in state.followups.values()):
                    return 0
                state.followups[self._id()] = _FollowUpRow(
                    write.user,
                    write.address,
                    write.conversation,
                    write.context,
                    tuple(write.roles),
                    write.due_at,
                )
                return 1
            case FollowUpCancelled():
                mine = [
                    f for f in state.followups.values() if self._open(f) and f.user == write.user
                ]
                for cancelled in mine:
                    cancelled.cancelled_at, cancelled.address = now, ""
                return len(mine)
            case FollowUpAnswered():
                followup = state.followups.get(write.followup)
                if followup is None or followup.answer is not None:
                    return 0
                value = "reached" if write.reached else "not_reached"
                followup.answer, followup.address = value, ""
                if write.stats and followup.conversation:
                    state.outcomes.setdefault(followup.conversation, {})["followup"] = value
                return 1
        raise TypeError(f"not a feature write: {type(write).__name__}")

    @staticmethod
    def _open(followup: _FollowUpRow) -> bool:
        return followup.sent_at is None and followup.cancelled_at is None

    def _rating(self, write: BarometerRating, now: float) -> int:
        state = self._state
        if write.create:
            if write.code in state.groups:
                raise CodeTaken(write.code)
            state.groups[write.code] = target = 1
        else:
            current = state.groups.get(write.code)
            if current is None:
                return 0
            target = (
                current + 1 if (write.code, current, write.member) in state.ratings else current
            )
            state.groups[write.code] = max(current, target)
        key = (write.code, target, write.member)
        rating_id = state.ratings[key][0] if key in state.ratings else self._id()
        state.ratings[key] = (rating_id, write.rater, dict(write.scores), now)
        return target

    # -- statistics ------------------------------------------------------------------------
    async def stats_counts(self, scope: StatsScope) -> StatsCounts:
        state = self._state
        contexts = {scope.establishment, *scope.contexts}

        def covered(c: _Conversation) -> bool:
            if scope.since is not None and c.day < scope.since:
                return False
            if scope.context is not None and c.context != scope.context:
                return False
            if scope.establishment is not None:
                return c.establishment == scope.establishment or (
                    c.establishment is None and c.context in contexts
                )
            return True

        chosen = {sid: c for sid, c in state.conversations.items() if covered(c)}
        own = {
            sid: int(scope.establishment is not None and c.establishment == scope.establishment)
            for sid, c in chosen.items()
        }
        reached: Counts = {}
        left: Counts = {}
        roles: Counts = {}
        territories: Counts = {}
        outcomes: Counts = {}
        by_role: dict[str, Counts] = {}
        by_context: dict[str, Counts] = {}
        for sid, c in chosen.items():
            for node in state.nodes.get(sid, ()):
                _add(reached, node, own[sid])
            for role in state.roles.get(sid, ()):
                _add(roles, role, own[sid])
            if c.completed:
                _add(territories, c.territory or "", own[sid])
            else:
                _add(left, c.last_node or "", own[sid])
            for kind, value in state.outcomes.get(sid, {}).items():
                _add(outcomes, f"{kind}:{value}", own[sid])
                if kind == "followup":
                    for role in state.roles.get(sid, ()):
                        _add(by_role.setdefault(role, {}), value, own[sid])
                    _add(by_context.setdefault(c.context or "", {}), value, own[sid])
        done = [sid for sid, c in chosen.items() if c.completed]
        return StatsCounts(
            started=(len(chosen), sum(own.values())),
            completed=(len(done), sum(own[sid] for sid in done)),
            reached=reached,
            left=left,
            roles=roles,
            territories=territories,
            outcomes=outcomes,
            followups_by_role=by_role,
            followups_by_context=by_context,
        )

    # -- barometer groups ------------------------------------------------------------------
    def _sorted_ratings(self) -> list[tuple[int, str, int, str, str, dict[str, int], float]]:
        """In the order they were kept (then updated in place)."""
        return sorted(
            (rating_id, code, round_, member, rater, scores, at)
            for (code, round_, member), (
                rating_id,
                rater,
                scores,
                at,
            ) in self._state.ratings.items()
        )

    async def barometer_round(self, code: str) -> int | None:
        return self._state.groups.get(code)

    async def barometer_rated(self, code: str, round_: int, member: str) -> bool:
        return (code, round_, member) in self._state.ratings

    async def barometer_groups_of(self, member: str) -> list[str]:
        last: dict[str, int] = {}
        for rating_id, code, _, who, _, _, _ in self._sorted_ratings():
            if who == member:
                last[code] = rating_id
        return sorted(last, key=last.__getitem__)

    async def barometer_is_member(self, code: str, member: str) -> bool:
        return any(c == code and m == member for c, _, m in self._state.ratings)

    async def barometer_ratings(self, code: str, round_: int) -> list[tuple[str, dict[str, int]]]:
        return [
            (rater, dict(scores))
            for _, c, r, _, rater, scores, _ in self._sorted_ratings()
            if c == code and r == round_
        ]

    # -- follow-ups ------------------------------------------------------------------------
    async def followups_pending(self) -> list[FollowUp]:
        pending = [
            FollowUp(fid, f.user, f.address, f.conversation, f.context, f.roles, f.due_at)
            for fid, f in self._state.followups.items()
            if self._open(f)
        ]
        return sorted(pending, key=lambda f: (f.due_at, f.id))

    async def followup_claim(self, followup_id: int, now: float) -> bool:
        followup = self._state.followups.get(followup_id)
        if followup is None or not self._open(followup):
            return False
        followup.sent_at = now
        return True

    async def followup_release(self, followup_id: int) -> None:
        followup = self._state.followups.get(followup_id)
        if followup is not None and followup.answer is None:
            followup.sent_at = None

    # -- the person's rights ---------------------------------------------------------------
    async def export_user(self, user: str) -> JsonObject:
        return {
            "barometer_ratings": [
                {
                    "group": code,
                    "round": round_,
                    "rater": rater,
                    "scores": json.dumps(scores),
                    "at": at,
                }
                for _, code, round_, member, rater, scores, at in self._sorted_ratings()
                if member == user
            ],
            "followups": [
                {
                    "roles": json.dumps(list(f.roles)),
                    "due_at": f.due_at,
                    "sent_at": f.sent_at,
                    "answer": f.answer,
                }
                for f in self._state.followups.values()
                if f.user == user
            ],
        }

    async def erase_user(self, user: str) -> None:
        state = self._state
        for key in [k for k in state.ratings if k[2] == user]:
            del state.ratings[key]
        kept = {code for code, _, _ in state.ratings}
        state.groups = {code: r for code, r in state.groups.items() if code in kept}
        state.followups = {i: f for i, f in state.followups.items() if f.user != user}
