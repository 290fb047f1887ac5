"""What one queued job of a chat produces, and how its one commit is staged.

Jobs of one chat run one after the other (:class:`bot.app.ordering.KeyedQueues`): updates,
re-deliveries of replies Telegram did not accept yet, due follow-ups. While an update is
applied, the service's commit and the replies the handlers say are staged in a
:class:`PendingTurn`; :meth:`bot.channels.telegram.apply.UpdateApplier.update` commits both
with the inbox mark in one transaction, then sends the replies (the reply outbox).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from telegram import Update

from bot.app.ordering import KeyedQueues
from bot.storage.base import OutgoingReply, Storage, UserChange

if TYPE_CHECKING:
    from bot.app.followups import FollowUp


@dataclass
class PendingTurn:
    """The state change and the replies of the update being applied."""

    update_id: int
    user: str = ""
    change: UserChange | None = None
    replies: list[OutgoingReply] = field(default_factory=list)
    events: bool = False
    #: An earlier change of the update was committed already (so applying it again would not
    #: start from the same state).
    committed: bool = False


@dataclass(frozen=True)
class Redeliver:
    """A job of a chat's queue: send that chat's replies still in the outbox."""

    chat_id: int


@dataclass(frozen=True)
class FollowUpDue:
    """A job of a chat's queue: ask a due follow-up."""

    followup: FollowUp


@dataclass(frozen=True)
class CatchUp:
    """A job of a chat's queue (shared stores): apply the chat's updates recorded by an
    instance that did not apply them (it died)."""

    chat: str


#: A job of a chat's queue.
ChatJob = Update | Redeliver | FollowUpDue | CatchUp
#: Per-chat ordering (kept under its former name for readers of the channel).
ChatQueues = KeyedQueues[ChatJob]

CURRENT: ContextVar[PendingTurn | None] = ContextVar("passerelle_turn", default=None)


class StagedTransaction:
    """The service's :class:`bot.app.conversation.Transaction` for one update: the change is
    staged in the update's :class:`PendingTurn` and committed with its inbox mark and replies;
    outside of it (or for another update) it is committed at once."""

    def __init__(
        self, storage: Storage, update_id: int, on_events: Callable[[], None] | None = None
    ) -> None:
        self.storage = storage
        self.update_id = update_id
        self.on_events = on_events

    async def commit(self, user: str, change: UserChange) -> None:
        turn = CURRENT.get()
        if turn is None or turn.update_id != self.update_id:
            await self.storage.commit_update(self.update_id, user, change)
            if change.outbox and self.on_events is not None:
                self.on_events()
            return
        if turn.change is not None:  # a second change in one update: keep both, in order
            await self.storage.commit_update(None, turn.user, turn.change)
            turn.committed = True
        turn.user, turn.change = user, change
        turn.events = turn.events or bool(change.outbox)
