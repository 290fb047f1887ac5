"""One scheduler for every timed job of the application: retention and follow-ups, whatever
the channel (it replaces PTB's JobQueue on Telegram and a hand-made loop for the API).

Jobs live in memory: the stores are the truth, and whoever owns a kind of job schedules it
again at start-up (:meth:`bot.app.followups.FollowUps.rebuild`). A job that fails is logged
(its error type only, never content) and does not stop the others nor its next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.app.followups import FollowUp

log = logging.getLogger(__name__)
Job = Callable[[], Awaitable[object]]


class Scheduler:
    """Named jobs at a wall-clock time (:meth:`at`) or repeated (:meth:`every`)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._stopped = False

    def scheduled(self) -> set[str]:
        """Names of the jobs waiting for their time."""
        return set(self._timers)

    def at(self, name: str, when: float, job: Job) -> None:
        """Run ``job`` once at ``when`` (Unix seconds; past = at once). A job of the same name
        waiting already is replaced."""
        self._arm(name, max(0.0, when - self._clock()), job, None)

    def every(self, name: str, interval: float, job: Job, *, first: float = 0.0) -> None:
        """Run ``job`` ``first`` seconds from now, then every ``interval`` seconds."""
        self._arm(name, first, job, interval)

    def cancel(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _arm(self, name: str, delay: float, job: Job, interval: float | None) -> None:
        if self._stopped:
            return
        self.cancel(name)
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(delay, self._fire, name, job, interval)

    def _fire(self, name: str, job: Job, interval: float | None) -> None:
        self._timers.pop(name, None)
        task = asyncio.create_task(self._run(name, job), name=f"job:{name}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        if interval is not None:
            self._arm(name, interval, job, interval)

    @staticmethod
    async def _run(name: str, job: Job) -> None:
        try:
            await job()
        except Exception as exc:
            log.error("scheduled job %s failed: %s", name.split(":")[0], type(exc).__name__)

    async def stop(self) -> None:
        """Cancel what waits, and wait for what runs (never leaves a job half done)."""
        self._stopped = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        running = list(self._running)
        if running:
            with contextlib.suppress(Exception):
                await asyncio.gather(*running, return_exceptions=True)

    def followups(self, callback: Callable[[FollowUp], Awaitable[None]]) -> FollowUpJobs:
        """The follow-ups' view of this scheduler (:class:`bot.app.followups.Scheduler`)."""
        return FollowUpJobs(self, callback)


class FollowUpJobs:
    """:class:`bot.app.followups.Scheduler` over :class:`Scheduler`: ``callback(followup)``
    is awaited when a follow-up is due."""

    def __init__(
        self, scheduler: Scheduler, callback: Callable[[FollowUp], Awaitable[None]]
    ) -> None:
        self.scheduler = scheduler
        self.callback = callback

    def scheduled(self) -> set[str]:
        return self.scheduler.scheduled()

    def schedule(self, name: str, when: float, followup: FollowUp) -> None:
        async def run() -> None:
            await self.callback(followup)

        self.scheduler.at(name, when, run)
