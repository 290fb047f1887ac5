"""Telegram channel: python-telegram-bot 22 in front of the conversation service, with durable,
ordered processing.

Every update goes through the store's *inbox* first (:meth:`TelegramChannel.receive`): recorded
and committed, then applied by the handlers (:mod:`.handlers`), whose one change is committed
with the inbox mark and the replies in one transaction (:mod:`.apply`, :mod:`.queues`), then
sent (:mod:`.delivery`). The webhook answers 200 only after the recording; polling confirms an
offset only after it (:mod:`.transport`). Updates of one chat are applied in order, different
chats concurrently; several instances on one store take over each other's leftovers
(:mod:`.sweeper`).

Consent, privacy, routing and features live in :mod:`bot.app`; users are keyed by a pseudonym
(keyed hash of the Telegram id); logs carry no message text, no Telegram id and no token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from starlette.routing import Route
from telegram import Bot, Update
from telegram.ext import Application

from bot.app.choices import ChoiceIds
from bot.app.consent import Consent
from bot.app.conversation import ConversationService
from bot.app.identity import Pseudonyms
from bot.app.ordering import KeyedQueues
from bot.app.outbox import EventRouter
from bot.app.privacy import OutboxAbout, Privacy, schedule_retention
from bot.app.reload import EngineHolder, holder_of
from bot.app.scheduler import Scheduler
from bot.channels.telegram import menu, transport
from bot.channels.telegram.apply import MAX_APPLY_ATTEMPTS, UpdateApplier
from bot.channels.telegram.delivery import RETRY_BASE_DELAY, Delivery
from bot.channels.telegram.handlers import Handlers
from bot.channels.telegram.intake import MAX_INT, chat_key, chat_name, json_object, parse
from bot.channels.telegram.queues import CatchUp, FollowUpDue, Redeliver, StagedTransaction
from bot.channels.telegram.render import choice_hash
from bot.channels.telegram.scheduler import RETENTION_FIRST, FollowUpAsker
from bot.channels.telegram.sweeper import Sweeper
from bot.config import Settings
from bot.engine.flow import Engine
from bot.json_types import JsonObject
from bot.storage.base import Storage

if TYPE_CHECKING:
    from bot.app.features import Features
    from bot.app.followups import FollowUp
    from bot.knowledge.establishments import Establishment

# Opt in to PTB's coming behaviour (durations as ``timedelta``): without it, PTB 22 warns on
# every RetryAfter, and ``retry_after`` would change type under our feet in PTB 23.
os.environ.setdefault("PTB_TIMEDELTA", "true")

log = logging.getLogger(__name__)


class TelegramChannel:
    """The Telegram side of Passerelle. Build it with :func:`build`; ``start`` before use."""

    def __init__(
        self,
        application: Application[Any, Any, Any, Any, Any, Any],
        engine: Engine | EngineHolder,
        storage: Storage,
        settings: Settings,
        *,
        memory: Storage | None = None,
        contexts: Collection[str] | None = None,
        pause: float = 0.3,
        poll_timeout: int = 25,
        retry_delay: float = RETRY_BASE_DELAY,
        features: Features | None = None,
        establishments: Mapping[str, Establishment] | None = None,
        integration: OutboxAbout | None = None,
        on_events: Callable[[], None] | None = None,
        router: EventRouter | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        if settings.secret is None:
            raise ValueError("the Telegram channel needs settings.secret (PASSERELLE_SECRET)")
        self.application = application
        self.holder = holder_of(engine)
        self.features = features
        self.establishments = dict(establishments or {})
        self.integration = integration
        self.on_events = on_events
        self.storage = storage
        self.settings = settings
        self.contexts = frozenset(
            contexts
            if contexts is not None
            else {c.establishment for c in self.engine.kb.contacts.values() if c.establishment}
        )
        self.poll_timeout = poll_timeout
        #: The follow-ups' scheduler. Given one (the composition's, shared with the API), its
        #: giver schedules retention and stops it; else the channel runs its own, with both.
        self.scheduler = scheduler or Scheduler()
        self._owns_scheduler = scheduler is None
        self._queues = KeyedQueues(self.apply, max_concurrency=64)
        consent = Consent(storage, memory, retention_days=settings.retention_days)
        #: Sessions of people who did not consent (in this process only).
        self.memory = consent.memory
        self.service = ConversationService(
            self.holder, storage, consent=consent, features=features, router=router
        )
        self.privacy = Privacy(
            storage,
            self.memory,
            features=features,
            integration=integration,
            retention_days=settings.retention_days,
            establishments=self.establishments,
        )
        self.delivery = Delivery(
            lambda: self.application.bot,
            self.holder,
            storage,
            self._queues,
            pause=pause,
            retry_delay=retry_delay,
        )
        self.handlers = Handlers(
            self.service,
            self.privacy,
            self.delivery,
            Pseudonyms(settings.secret),
            contexts=lambda: self.contexts,
            choices=ChoiceIds(self.holder, key=choice_hash),
            transaction=lambda update: StagedTransaction(storage, update.update_id, self.on_events),
        )
        self.followups = FollowUpAsker(self.service, self.delivery, features)
        self.applier = UpdateApplier(
            application.process_update,
            lambda: self.application.bot,
            storage,
            self.delivery,
            features,
            on_events,
        )
        self.sweeper = Sweeper(storage, self.delivery, self._queues, features, self.send_followup)
        self._started = False

    @property
    def engine(self) -> Engine:
        """The engine of the current knowledge base (swapped on reload): read it per update."""
        return self.holder.engine

    @property
    def bot(self) -> Bot:
        bot: Bot = self.application.bot
        return bot

    def install(self) -> None:
        """Register the handlers on the PTB application (order matters)."""
        self.handlers.install(self.application)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Initialise PTB (getMe), register the command menu, schedule the follow-ups (and
        retention, on its own scheduler), and apply whatever the inbox holds from before a
        crash or restart."""
        await self.application.initialize()
        await self.application.start()
        self._started = True
        await self.delivery.call(self.bot.set_my_commands, menu.bot_commands(self.engine))
        if self._owns_scheduler:
            schedule_retention(self.scheduler, self.purge, first=RETENTION_FIRST)
        if self.features is not None:
            self.features.scheduler = self.scheduler.followups(self.send_followup)
            await self.features.followups.rebuild(self.features.scheduler)
        await self.resume_inbox()
        if self.storage.shared:
            self.sweeper.start()

    async def sweep_once(self, older_than: float) -> None:
        """One sweep of :class:`.sweeper.Sweeper` (several instances on one store)."""
        await self.sweeper.sweep_once(older_than)

    async def stop(self) -> None:
        """Finish what is under way, then stop PTB (the store is closed by its owner).
        Replies Telegram did not accept yet stay in the outbox for the next start."""
        self.delivery.stop()
        if self._owns_scheduler:
            await self.scheduler.stop()
        await self.sweeper.stop()
        await self._queues.join()
        if self._started:
            self._started = False
            await self.application.stop()
            await self.application.shutdown()

    async def resume_inbox(self) -> int:
        """Send the replies recorded but not sent before a crash, then apply every recorded
        update not yet applied, in update order (per chat: old replies first).

        A row that cannot be read (recorded by an older version, or damaged) never stops the
        start: a reply is dropped, an update dead-lettered (its payload nulled), with a log
        line each; so is an update that already failed :data:`MAX_APPLY_ATTEMPTS` times."""
        replies = await self.storage.replies_pending()
        if self.storage.shared:  # read again in each chat's turn (UpdateApplier.redeliver)
            chats = list(dict.fromkeys(reply.chat_id for reply in replies))
        else:
            chats = self.delivery.pending(replies)
        for chat_id in chats:
            self._queues.submit(("chat", chat_id), Redeliver(chat_id))
        pending = await self.storage.inbox_pending(limit=100_000)
        resumed = 0
        for item in pending:
            update = None
            if item.attempts < MAX_APPLY_ATTEMPTS:
                with contextlib.suppress(ValueError):
                    update = parse(json_object(item.payload), self.bot)
            if update is None:
                log.warning("recorded update dead-lettered at start-up (unreadable or failing)")
                await self.storage.inbox_dead(item.update_id)
                continue
            self._queues.submit(chat_key(update), update)
            resumed += 1
        return resumed

    async def drain(self) -> None:
        """Wait until every update received so far has been applied (tests, shutdown)."""
        await self._queues.join()

    def menu(self) -> list[str]:
        """Every command a person can type, in the menu's order: the engine's, its modes' (the
        barometer, follow-ups), then the channel's own."""
        return menu.command_names(self.engine)

    async def purge(self) -> int:
        """Erase people idle past the retention period; forget ids of old applied updates."""
        return await self.privacy.purge()

    async def export(self, user: str) -> JsonObject:
        """Everything stored about ``user``, as JSON-safe data (what ``/mesdonnees`` sends)."""
        return await self.privacy.export(user)

    # -- intake ----------------------------------------------------------------------------
    async def receive(self, payload: bytes) -> bool:
        """Check a raw update, durably record it, then schedule it. ``False`` for a duplicate
        or for an update that fails the checks (:func:`.intake.update_problem`): that one is
        dropped with a log line and never recorded (the webhook still answers 200, so
        Telegram does not send it again).

        Raises :class:`ValueError` if ``payload`` is not an update at all (not JSON, no
        ``update_id``): nothing is recorded."""
        data = json_object(payload)
        update_id = data.get("update_id") if isinstance(data, dict) else None
        if type(update_id) is not int:
            raise ValueError("not a Telegram update")
        if not 0 <= update_id < MAX_INT:
            raise ValueError("update_id out of range")
        try:
            update = parse(data, self.bot)
        except ValueError as exc:
            log.warning("invalid update dropped before recording: %s", exc)
            return False
        added = await self.storage.inbox_add(update_id, payload, chat=chat_name(chat_key(update)))
        if added:
            self._queues.submit(chat_key(update), update)
        return added

    async def apply(self, job: Update | Redeliver | FollowUpDue | CatchUp) -> None:
        """One job of a chat's queue. An update: its handlers' change, its inbox mark and its
        replies in one transaction (the reply outbox), then the replies are sent."""
        if isinstance(job, Redeliver):
            await self.applier.redeliver(job.chat_id)
            return
        if isinstance(job, FollowUpDue):
            async with self.storage.chat_turn(chat_name(("chat", int(job.followup.address)))):
                await self.followups.ask(job.followup)  # its question sent in the chat's turn
            return
        if isinstance(job, CatchUp):
            await self.applier.in_turn(job.chat, MAX_INT, None)
            return
        if self.storage.shared:
            await self.applier.in_turn(chat_name(chat_key(job)), job.update_id, job)
            return
        await self.applier.update(job)

    async def poll(self, stop: asyncio.Event) -> None:
        """Long polling until ``stop`` is set (:func:`.transport.poll`)."""
        await transport.poll(self.bot, self.delivery, self.receive, stop, self.poll_timeout)

    async def send_followup(self, followup: FollowUp) -> None:
        """A due follow-up (the scheduler): queued behind the updates of its chat, so it never
        interleaves with one (:meth:`drain` waits for it too)."""
        if self.features is not None:
            self._queues.submit(("chat", int(followup.address)), FollowUpDue(followup))

    async def set_webhook(self) -> None:
        """Point Telegram at ``PASSERELLE_WEBHOOK_URL`` with the secret header."""
        await transport.set_webhook(self.bot, self.delivery, self.settings)

    def webhook_route(self) -> Route:
        """The Starlette route Telegram posts updates to (:func:`.transport.webhook_route`)."""
        return transport.webhook_route(self.settings, self.receive)
