"""One recorded update applied: PTB runs its handlers, whose one change is committed with the
inbox mark and the replies in one transaction (the reply outbox), then the replies are sent.

Its own module because this is the channel's delicate step: the retry when a new barometer
group's code is taken, the attempts before an update is dead-lettered, and (several
instances) the chat's turn in the database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from telegram import Bot, Update

from bot.channels.telegram.delivery import Delivery
from bot.channels.telegram.intake import chat_name, json_object, parse
from bot.channels.telegram.queues import CURRENT, PendingTurn
from bot.storage.base import CodeTaken, OutgoingReply, Storage, UserChange

if TYPE_CHECKING:
    from bot.app.features import Features

log = logging.getLogger(__name__)

#: An update whose application failed this many times is dead-lettered (payload dropped).
MAX_APPLY_ATTEMPTS = 3
#: How many times an update is applied at once when its new barometer group's code is taken.
CODE_ATTEMPTS = 3


class UpdateApplier:
    """Applies updates with ``process`` (PTB's ``Application.process_update``)."""

    def __init__(
        self,
        process: Callable[[Update], Awaitable[None]],
        bot: Callable[[], Bot],
        storage: Storage,
        delivery: Delivery,
        features: Features | None,
        on_events: Callable[[], None] | None,
    ) -> None:
        self.process = process
        self.bot = bot
        self.storage = storage
        self.delivery = delivery
        self.features = features
        self.on_events = on_events

    async def redeliver(self, chat_id: int) -> None:
        """Send a chat's replies left unsent. Several instances: in the chat's turn, and only
        what the database still holds then. Every instance sends a chat's replies in its
        turn only, so a reply another instance took over (its claim lapsed while this one
        was frozen or starved) is sent by one of them: whichever holds the turn first, the
        other then finds it gone. Only a crash (which ends the turn) between Telegram's
        acceptance and the deletion sends one twice."""
        if not self.storage.shared:
            await self.delivery.deliver(chat_id, ())
            return
        async with self.storage.chat_turn(chat_name(("chat", chat_id))):
            replies = await self.storage.replies_of_chat(chat_id)
            await self.delivery.deliver(chat_id, replies, fresh=True)

    async def in_turn(self, chat: str, up_to: int, current: Update | None) -> None:
        """Several instances on one store: under the chat's turn (a lock in the database),
        apply the chat's updates still pending up to ``up_to``, oldest first, wherever they
        were recorded, and send their replies; one applied by another instance meanwhile is
        no longer pending, so none is applied twice and the chat's order holds."""
        async with self.storage.chat_turn(chat):
            for item in await self.storage.inbox_pending_of(chat, up_to) or ():
                update = current if current and item.update_id == current.update_id else None
                if update is None:
                    try:
                        update = parse(json_object(item.payload), self.bot())
                    except ValueError:
                        log.warning("recorded update dead-lettered (unreadable)")
                        await self.storage.inbox_dead(item.update_id)
                        continue
                await self.update(update)

    async def update(self, job: Update) -> None:
        """Apply ``job`` and commit it (raises what its handlers or the commit raised, once
        what could be committed was)."""
        started = time.perf_counter()
        for attempt in range(1, CODE_ATTEMPTS + 1):
            turn = PendingTurn(job.update_id)
            token = CURRENT.set(turn)
            error: BaseException | None = None
            try:
                await self.process(job)
            except BaseException as exc:  # what was staged is committed all the same
                error = exc
            finally:
                CURRENT.reset(token)
            change = replace(turn.change or UserChange(), replies=tuple(turn.replies))
            try:
                await self.storage.commit_update(job.update_id, turn.user, change)
            except CodeTaken:
                # A new barometer group's code taken by another turn since it was drawn:
                # nothing was committed, so a consenting person's update (state read from
                # the store) is applied again at once, with another code.
                fresh = error is None and bool(turn.user) and not turn.committed
                if fresh and attempt < CODE_ATTEMPTS:
                    continue
                await self._not_applied(job, CodeTaken.__name__)
                raise
            except Exception as exc:
                await self._not_applied(job, type(exc).__name__)
                raise
            if error is not None:
                raise error
            break
        if turn.events and self.on_events is not None:
            self.on_events()
        if change.features and self.features is not None:
            await self.features.committed(change.features)
        chats: dict[int, list[OutgoingReply]] = {}
        for reply in turn.replies:
            chats.setdefault(reply.chat_id, []).append(reply)
        for chat_id, replies in chats.items():
            if self.storage.shared and self.delivery.retrying(chat_id):
                # Older replies wait for a retry (Telegram was down): still first, as the
                # store holds them now (another instance may have sent them meanwhile).
                left = await self.storage.replies_of_chat(chat_id)
                await self.delivery.deliver(chat_id, left, fresh=True)
                continue
            await self.delivery.deliver(chat_id, replies)
        log.debug("update applied in %.1f ms", (time.perf_counter() - started) * 1000)

    async def _not_applied(self, job: Update, reason: str) -> None:
        """Left pending for the next start, up to :data:`MAX_APPLY_ATTEMPTS` times."""
        dead = await self.storage.inbox_failed(job.update_id, MAX_APPLY_ATTEMPTS)
        log.warning(
            "update not applied (%s)%s",
            reason,
            ": dead-lettered" if dead else "; retried at the next start",
        )
