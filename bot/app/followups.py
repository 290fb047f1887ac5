"""Follow-ups a set number of days after a recommendation, kept in SQLite (with consent).

PTB's JobQueue keeps jobs in memory only, so the rows here are the truth: :meth:`FollowUps.rebuild`
schedules every pending follow-up again at start-up (overdue ones at once), skipping those
already scheduled. A due follow-up is claimed (``sent_at``) in the same transaction that saves
its question in the reply outbox (:attr:`bot.storage.base.UserChange.followup`), so a
follow-up scheduled twice (two restarts, two processes) is still asked once, and a crash
before that commit leaves it pending for the next start-up. (:meth:`FollowUps.claim` and
:meth:`FollowUps.release` are the fallback when the follow-ups live in another database than
the replies.) One open follow-up per person: asking again does not add a second one.

``address`` is how the channel reaches the person (e.g. the Telegram chat id): it is kept only
because the person agreed to be written to, and erased with the follow-up.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bot.app.stats import STATS_ID, StatsRecorder
from bot.engine.flow import Turn
from bot.engine.followup import ANSWERED, DEFAULT_DAYS, REQUESTED
from bot.storage.features import FeatureStore

DAY = 86400.0


@dataclass(frozen=True)
class FollowUp:
    id: int
    user: str
    address: str
    conversation: str | None
    context: str | None
    roles: tuple[str, ...]
    due_at: float

    @property
    def job_name(self) -> str:
        return f"followup:{self.id}"


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
        # OR IGNORE: one open follow-up per person (unique index); asking twice keeps one.
        await self.store.write(
            [
                (
                    'INSERT INTO followups ("user", address, conversation, context, roles, '
                    "due_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (
                        user,
                        address,
                        conversation,
                        context,
                        json.dumps(roles),
                        now + days * DAY,
                        now,
                    ),
                )
            ]
        )
        [found] = [f for f in await self.pending() if f.user == user]
        return found

    async def pending(self) -> list[FollowUp]:
        """Follow-ups not yet sent nor cancelled, soonest first."""
        rows = await self.store.read(
            'SELECT id, "user", address, conversation, context, roles, due_at FROM followups '
            "WHERE sent_at IS NULL AND cancelled_at IS NULL ORDER BY due_at, id"
        )
        return [
            FollowUp(int(r[0]), str(r[1]), str(r[2]), r[3], r[4], tuple(json.loads(r[5])), r[6])
            for r in rows
        ]

    async def due(self, now: float | None = None) -> list[FollowUp]:
        now = time.time() if now is None else now
        return [f for f in await self.pending() if f.due_at <= now]

    async def claim(self, followup_id: int, now: float | None = None) -> bool:
        """Mark as sent; ``True`` only for the one caller that should send it."""
        [count] = await self.store.write(
            [
                (
                    "UPDATE followups SET sent_at = ? "
                    "WHERE id = ? AND sent_at IS NULL AND cancelled_at IS NULL",
                    (time.time() if now is None else now, followup_id),
                )
            ]
        )
        return count == 1

    async def release(self, followup_id: int) -> None:
        """The send failed: make it pending again."""
        await self.store.write(
            [
                (
                    "UPDATE followups SET sent_at = NULL WHERE id = ? AND answer IS NULL",
                    (followup_id,),
                )
            ]
        )

    async def cancel(self, user: str) -> int:
        [count] = await self.store.write(
            [
                (
                    "UPDATE followups SET cancelled_at = ?, address = '' "
                    'WHERE "user" = ? AND sent_at IS NULL AND cancelled_at IS NULL',
                    (time.time(), user),
                )
            ]
        )
        return count

    async def answer(self, followup_id: int, reached: bool) -> None:
        """Record the answer once; it feeds the statistics (share who reached a contact)."""
        rows = await self.store.read(
            "SELECT conversation FROM followups WHERE id = ? AND answer IS NULL", (followup_id,)
        )
        if not rows:
            return
        await self.store.write(
            [
                (
                    "UPDATE followups SET answer = ?, answered_at = ?, address = '' "
                    "WHERE id = ? AND answer IS NULL",
                    ("reached" if reached else "not_reached", time.time(), followup_id),
                )
            ]
        )
        if self.stats is not None:
            await self.stats.record_followup(rows[0][0], reached)

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
        for event in turn.events:
            if event.kind == REQUESTED and event.data.get("consent"):
                await self.schedule(
                    user,
                    address,
                    [str(r) for r in event.data.get("roles", [])],
                    context=event.data.get("context"),
                    conversation=turn.session.extra.get(STATS_ID),
                    days=int(event.data.get("days", DEFAULT_DAYS)),
                )
                if scheduler is not None:
                    await self.rebuild(scheduler)
            elif event.kind == ANSWERED:
                await self.answer(int(event.data.get("id", 0)), bool(event.data.get("reached")))
        return turn


class JobQueueScheduler:
    """:class:`Scheduler` over python-telegram-bot's ``JobQueue``.

    ``callback(followup)`` is awaited when a follow-up is due; it should claim it and record
    :func:`bot.engine.followup.asking`'s reply in one transaction (see
    :meth:`bot.channels.telegram.TelegramChannel.send_followup`).
    """

    def __init__(self, job_queue: Any, callback: Callable[[FollowUp], Awaitable[None]]) -> None:
        self.job_queue = job_queue
        self.callback = callback

    def scheduled(self) -> set[str]:
        return {str(job.name) for job in self.job_queue.jobs()}

    def schedule(self, name: str, when: float, followup: FollowUp) -> None:
        async def run(_: Any) -> None:
            await self.callback(followup)

        at = dt.datetime.fromtimestamp(when, dt.UTC)
        self.job_queue.run_once(run, when=at, name=name)
