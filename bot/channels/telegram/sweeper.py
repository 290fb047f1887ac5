"""Several instances on one store (PostgreSQL): the sweeper takes over what another instance
left behind when it died, once its claims lapsed: replies recorded and not sent, updates
recorded and not applied, follow-ups due that no job of this instance waits for.

Its own module because only a shared store runs it: the channel starts it and stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot.channels.telegram.delivery import Delivery
from bot.channels.telegram.intake import chat_of
from bot.channels.telegram.queues import CatchUp, ChatQueues, Redeliver
from bot.storage.base import Storage

if TYPE_CHECKING:
    from bot.app.features import Features
    from bot.app.followups import FollowUp

log = logging.getLogger(__name__)


class Sweeper:
    """Sweeps every third of the store's claim period, while started."""

    def __init__(
        self,
        storage: Storage,
        delivery: Delivery,
        queues: ChatQueues,
        features: Features | None,
        send_followup: Callable[[FollowUp], Awaitable[None]],
    ) -> None:
        self.storage = storage
        self.delivery = delivery
        self.queues = queues
        self.features = features
        self.send_followup = send_followup
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._sweep(), name="telegram-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _sweep(self) -> None:
        interval = max(0.2, self.storage.claim_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep_once(older_than=interval * 3)
            except Exception as exc:
                log.warning("sweep failed: %s", type(exc).__name__)

    async def sweep_once(self, older_than: float) -> None:
        """One sweep: updates recorded more than ``older_than`` seconds ago count as left."""
        await self.storage.renew_claims()  # what this instance sends stays its own while it lives
        # Sent in the chat's turn (:meth:`.apply.UpdateApplier.redeliver`): an instance alive
        # but too slow to renew its claim still holds the turn while it sends: waited for.
        for chat_id in dict.fromkeys(r.chat_id for r in await self.storage.replies_orphaned()):
            self.queues.submit(("chat", chat_id), Redeliver(chat_id))
        for chat in await self.storage.inbox_stale_chats(older_than):
            self.queues.submit(chat_of(chat), CatchUp(chat))
        if self.features is not None:
            # Due follow-ups no job of this instance waits for (another instance's, or one
            # left by an instance that stopped); one waiting for its retry is left to it.
            jobs = self.features.scheduler
            waiting = jobs.scheduled() if jobs is not None else set()
            for followup in await self.features.followups.due():
                if followup.job_name not in waiting:
                    await self.send_followup(followup)
