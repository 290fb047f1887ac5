"""Telegram's timed jobs on the application's one scheduler (:mod:`bot.app.scheduler`): due
follow-ups, asked in their chat's queue (retention is :func:`bot.app.privacy.schedule_retention`,
one job for every channel when the composition shares its scheduler).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from bot.app.conversation import ConversationService
from bot.channels.telegram.delivery import Delivery
from bot.channels.telegram.queues import CURRENT, PendingTurn
from bot.engine.followup import asking
from bot.storage.base import FollowUpTaken, UserChange

if TYPE_CHECKING:
    from bot.app.features import Features
    from bot.app.followups import FollowUp

log = logging.getLogger(__name__)

#: A channel running its own scheduler runs its retention this long after start-up first.
RETENTION_FIRST = 30.0
#: A follow-up whose sending failed (nothing committed) is tried again this much later by the
#: instance that tried it, whatever the store (docs/telegram.md, « Relances »).
FOLLOWUP_RETRY = 300.0


class FollowUpAsker:
    """Asks a due follow-up in its chat (the job :meth:`ask` runs in that chat's queue)."""

    def __init__(
        self,
        service: ConversationService,
        delivery: Delivery,
        features: Features | None,
        retry_seconds: float = FOLLOWUP_RETRY,
    ) -> None:
        self.service = service
        self.delivery = delivery
        self.features = features
        self.retry_seconds = retry_seconds

    async def ask(self, followup: FollowUp) -> None:
        """The follow-up's turn, its saved session, its question (reply outbox) and its claim
        are committed in one transaction, then the question is sent like any reply.

        A crash before that commit leaves the follow-up pending (start-up schedules it
        again); after it, the question waits in the outbox (start-up sends it) and the
        follow-up is no longer pending: asked once either way. Only when the follow-ups live
        in another database than the store (not as ``passerelle serve`` runs) is it claimed
        first, in its own transaction: a crash before the commit then loses it."""
        features = self.features
        assert features is not None
        storage = self.service.storage
        together = await storage.holds_followups()
        if not together and not await features.followups.claim(followup.id):
            return
        chat_id = int(followup.address)
        turn = PendingTurn(-followup.id)  # never a Telegram update id (those are >= 0)
        try:
            engine = self.service.engine
            state = await self.service.state(followup.user)
            consent = state.consent
            session, reply = asking(engine, state.session or engine.new_session(), followup.id)
            token = CURRENT.set(turn)
            try:
                await self.delivery.say(chat_id, [reply], session.node)
            finally:
                CURRENT.reset(token)
            change = UserChange(
                session=session.to_dict() if consent else None,
                replies=tuple(turn.replies),
                followup=followup.id if together else None,
            )
            await storage.commit_update(None, followup.user if consent else "", change)
        except FollowUpTaken:
            return  # already asked (or cancelled, or erased) by someone else
        except Exception as exc:
            log.error(
                "follow-up not sent: %s; tried again in %.0f s",
                type(exc).__name__,
                self.retry_seconds,
            )
            if not together:
                await features.followups.release(followup.id)
            if features.scheduler is not None:
                # Still pending: this instance's job queue tries again later (the sweeper of
                # several instances leaves a follow-up alone while a job of its own waits).
                when = time.time() + self.retry_seconds
                features.scheduler.schedule(followup.job_name, when, followup)
            return
        if not consent:
            await self.service.consent.remember_unconsented(followup.user, session)
        await self.delivery.deliver(chat_id, turn.replies)
