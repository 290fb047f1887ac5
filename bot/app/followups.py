"""Follow-ups a set number of days after a recommendation, kept in the feature store (with
consent).

The scheduler (:mod:`bot.app.scheduler`) keeps jobs in memory only, so the stored rows are
the truth: :meth:`FollowUps.rebuild` schedules every pending follow-up again at start-up
(overdue ones at once), skipping those already scheduled. A due follow-up is claimed
(``sent_at``) in the same transaction that saves its question in the reply outbox
(:attr:`bot.storage.base.UserChange.followup`), so a follow-up scheduled twice (two restarts,
two processes) is still asked once, and a crash before that commit leaves it pending for the
next start-up. (:meth:`FollowUps.claim` and :meth:`FollowUps.release` are the fallback when the
follow-ups live in another database than the replies.) One open follow-up per person: asking
again does not add a second one.

``address`` is how the channel reaches the person (e.g. the Telegram chat id): it is kept only
because the person agreed to be written to, and erased with the follow-up.
"""

from __future__ import annotations

import time
from typing import Protocol

from bot.app.stats import STATS_ID, StatsRecorder
from bot.engine.flow import Turn
from bot.engine.followup import ANSWERED, DEFAULT_DAYS, REQUESTED
from bot.json_types import as_int, as_list, as_text
from bot.storage.base import (
    FeatureStore,
    FeatureWrite,
    FollowUp,
    FollowUpAnswered,
    FollowUpCancelled,
    FollowUpScheduled,
)

__all__ = ["DAY", "FollowUp", "FollowUps", "Scheduler"]

DAY = 86400.0


class Scheduler(Protocol):
    """What :meth:`FollowUps.rebuild` needs from a job queue."""

    def scheduled(self) -> set[str]: ...

    def schedule(self, name: str, when: float, followup: FollowUp) -> None: ...


class FollowUps:
    def __init__(self, store: FeatureStore, stats: StatsRecorder | None = None) -> None:
        self.store = store
        self.stats = stats

    async def schedule(
        self,
        user: str,
        address: str,
        roles: list[str],
        *,
        context: str | None = None,
        conversation: str | None = None,
        days: int = DEFAULT_DAYS,
        now: float | None = None,
    ) -> FollowUp:
        """Schedule one follow-up (the person consented); an open one is kept, not doubled."""
        now = time.time() if now is None else now
        await self.store.apply(
            [
                FollowUpScheduled(
                    user, address, tuple(roles), now + days * DAY, context, conversation
                )
            ]
        )
        [found] = [f for f in await self.pending() if f.user == user]
        return found

    async def pending(self) -> list[FollowUp]:
        """Follow-ups not yet sent nor cancelled, soonest first."""
        return await self.store.followups_pending()

    async def due(self, now: float | None = None) -> list[FollowUp]:
        now = time.time() if now is None else now
        return [f for f in await self.pending() if f.due_at <= now]

    async def claim(self, followup_id: int, now: float | None = None) -> bool:
        """Mark as sent; ``True`` only for the one caller that should send it."""
        return await self.store.followup_claim(followup_id, time.time() if now is None else now)

    async def release(self, followup_id: int) -> None:
        """The send failed: make it pending again."""
        await self.store.followup_release(followup_id)

    async def cancel(self, user: str) -> int:
        [count] = await self.store.apply([FollowUpCancelled(user)])
        return count

    async def answer(self, followup_id: int, reached: bool) -> None:
        """Record the answer once; it feeds the statistics (share who reached a contact)."""
        await self.store.apply([self.answered(followup_id, reached)])

    def answered(self, followup_id: int, reached: bool) -> FollowUpAnswered:
        """The write recording an answer (with its statistics outcome if stats are kept)."""
        return FollowUpAnswered(followup_id, reached, stats=self.stats is not None)

    async def rebuild(self, scheduler: Scheduler, now: float | None = None) -> int:
        """Schedule every pending follow-up not already scheduled; returns how many were added."""
        now = time.time() if now is None else now
        already = scheduler.scheduled()
        added = 0
        for followup in await self.pending():
            if followup.job_name in already:
                continue
            scheduler.schedule(followup.job_name, max(followup.due_at, now), followup)
            added += 1
        return added

    async def apply(
        self, user: str, address: str, turn: Turn, scheduler: Scheduler | None = None
    ) -> Turn:
        """Channels call this after each engine turn: schedules and records follow-ups."""
        for write in self.plan(user, address, turn):
            await self.store.apply([write])
            if isinstance(write, FollowUpScheduled) and scheduler is not None:
                await self.rebuild(scheduler)
        return turn

    def plan(
        self, user: str, address: str, turn: Turn, now: float | None = None
    ) -> tuple[FeatureWrite, ...]:
        """The follow-up writes of one turn, for a caller that commits them with the turn
        (then calls :meth:`rebuild` once committed, if one was scheduled)."""
        now = time.time() if now is None else now
        writes: list[FeatureWrite] = []
        for event in turn.events:
            if event.kind == REQUESTED and event.data.get("consent"):
                days = as_int(event.data.get("days", DEFAULT_DAYS))
                writes.append(
                    FollowUpScheduled(
                        user,
                        address,
                        tuple(str(r) for r in as_list(event.data.get("roles"))),
                        now + days * DAY,
                        as_text(event.data.get("context")),
                        as_text(turn.session.extra.get(STATS_ID)),
                    )
                )
            elif event.kind == ANSWERED:
                writes.append(
                    self.answered(as_int(event.data.get("id", 0)), bool(event.data.get("reached")))
                )
        return tuple(writes)
