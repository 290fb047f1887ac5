"""Telegram channel: python-telegram-bot 22 in front of the conversation service, with durable,
ordered processing.

Every update goes through the store's *inbox* first (:meth:`TelegramChannel.receive`): recorded
and committed, then applied by the handlers (:mod:`.handlers`), whose one change is committed
with the inbox mark and the replies in one transaction (:mod:`.queues`), then sent
(:mod:`.delivery`). The webhook answers 200 only after the recording; polling confirms an offset
only after it. Updates of one chat are applied in order, different chats concurrently.

Consent, privacy, routing and features live in :mod:`bot.app`; users are keyed by a pseudonym
(keyed hash of the Telegram id); logs carry no message text, no Telegram id and no token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import Bot, BotCommand, Update
from telegram.error import NetworkError, RetryAfter, TelegramError
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
from bot.channels.telegram.delivery import RETRY_BASE_DELAY, Delivery
from bot.channels.telegram.handlers import Handlers
from bot.channels.telegram.intake import (
    MAX_INT,
    chat_key,
    chat_name,
    chat_of,
    json_object,
    parse,
)
from bot.channels.telegram.queues import (
    CURRENT,
    CatchUp,
    FollowUpDue,
    PendingTurn,
    Redeliver,
    StagedTransaction,
)
from bot.channels.telegram.render import choice_hash
from bot.channels.telegram.scheduler import RETENTION_FIRST, FollowUpAsker
from bot.config import Settings
from bot.engine.flow import Engine
from bot.json_types import JsonObject
from bot.knowledge.model import COMMANDS
from bot.storage.base import CodeTaken, OutgoingReply, Storage, UserChange

if TYPE_CHECKING:
    from bot.app.features import Features
    from bot.app.followups import FollowUp
    from bot.knowledge.establishments import Establishment

# Opt in to PTB's coming behaviour (durations as ``timedelta``): without it, PTB 22 warns on
# every RetryAfter, and ``retry_after`` would change type under our feet in PTB 23.
os.environ.setdefault("PTB_TIMEDELTA", "true")

log = logging.getLogger(__name__)

#: Commands of the channel itself, after the engine's and its modes' in the menu.
OWN_COMMANDS = ("mesdonnees", "oubli")
MAX_BODY = 1 << 20
#: An update whose application failed this many times is dead-lettered (payload dropped).
MAX_APPLY_ATTEMPTS = 3
#: How many times an update is applied at once when its new barometer group's code is taken.
CODE_ATTEMPTS = 3


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
        self._started = False
        self._sweeper: asyncio.Task[None] | None = None

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
        await self.delivery.call(self.bot.set_my_commands, self._menu())
        if self._owns_scheduler:
            schedule_retention(self.scheduler, self.purge, first=RETENTION_FIRST)
        if self.features is not None:
            self.features.scheduler = self.scheduler.followups(self.send_followup)
            await self.features.followups.rebuild(self.features.scheduler)
        await self.resume_inbox()
        if self.storage.shared:
            self._sweeper = asyncio.create_task(self._sweep(), name="telegram-sweeper")

    async def _sweep(self) -> None:
        """Several instances: what another instance left behind when it died, taken over
        once its claims lapsed (replies recorded and not sent, updates recorded and not
        applied), and follow-ups due (each claimed once, by whichever instance asks first)."""
        interval = max(0.2, self.storage.claim_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep_once(older_than=interval * 3)
            except Exception as exc:
                log.warning("sweep failed: %s", type(exc).__name__)

    async def sweep_once(self, older_than: float) -> None:
        await self.storage.renew_claims()  # what this instance sends stays its own while it lives
        # Sent in the chat's turn (see :meth:`_redeliver`): an instance that is alive but was
        # too slow to renew its claim still holds the turn while it sends, and is waited for.
        for chat_id in dict.fromkeys(r.chat_id for r in await self.storage.replies_orphaned()):
            self._queues.submit(("chat", chat_id), Redeliver(chat_id))
        for chat in await self.storage.inbox_stale_chats(older_than):
            self._queues.submit(chat_of(chat), CatchUp(chat))
        if self.features is not None:
            # Due follow-ups no job of this instance waits for (another instance's, or one
            # left by an instance that stopped); one waiting for its retry is left to it.
            jobs = self.features.scheduler
            waiting = jobs.scheduled() if jobs is not None else set()
            for followup in await self.features.followups.due():
                if followup.job_name not in waiting:
                    await self.send_followup(followup)

    async def stop(self) -> None:
        """Finish what is under way, then stop PTB (the store is closed by its owner).
        Replies Telegram did not accept yet stay in the outbox for the next start."""
        self.delivery.stop()
        if self._owns_scheduler:
            await self.scheduler.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
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
        if self.storage.shared:  # read again in each chat's turn (see :meth:`_redeliver`)
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
        names = [*COMMANDS, *self.engine.modes, *OWN_COMMANDS]
        return [name for name in names if f"telegram_cmd_{name}" in self.engine.kb.messages]

    def _menu(self) -> list[BotCommand]:
        session = self.engine.new_session()
        return [
            BotCommand(name, self.engine.msg(f"telegram_cmd_{name}", session))
            for name in self.menu()
        ]

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
            await self._redeliver(job.chat_id)
            return
        if isinstance(job, FollowUpDue):
            async with self.storage.chat_turn(chat_name(("chat", int(job.followup.address)))):
                await self.followups.ask(job.followup)  # its question sent in the chat's turn
            return
        if isinstance(job, CatchUp):
            await self._apply_in_turn(job.chat, MAX_INT, None)
            return
        if self.storage.shared:
            await self._apply_in_turn(chat_name(chat_key(job)), job.update_id, job)
            return
        await self._apply_update(job)

    async def _redeliver(self, chat_id: int) -> None:
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

    async def _apply_in_turn(self, chat: str, up_to: int, current: Update | None) -> None:
        """Several instances on one store: under the chat's turn (a lock in the database),
        apply the chat's updates still pending up to ``up_to``, oldest first, wherever they
        were recorded, and send their replies; one applied by another instance meanwhile is
        no longer pending, so none is applied twice and the chat's order holds."""
        async with self.storage.chat_turn(chat):
            for item in await self.storage.inbox_pending_of(chat, up_to) or ():
                update = current if current and item.update_id == current.update_id else None
                if update is None:
                    try:
                        update = parse(json_object(item.payload), self.bot)
                    except ValueError:
                        log.warning("recorded update dead-lettered (unreadable)")
                        await self.storage.inbox_dead(item.update_id)
                        continue
                await self._apply_update(update)

    async def _apply_update(self, job: Update) -> None:
        started = time.perf_counter()
        for attempt in range(1, CODE_ATTEMPTS + 1):
            turn = PendingTurn(job.update_id)
            token = CURRENT.set(turn)
            error: BaseException | None = None
            try:
                await self.application.process_update(job)
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

    async def poll(self, stop: asyncio.Event) -> None:
        """Long polling until ``stop`` is set. An offset is confirmed to Telegram (by asking
        for the next one) only after its update was committed to the inbox."""
        await self.delivery.call(self.bot.delete_webhook, False)
        offset: int | None = None
        failures = 0
        while not stop.is_set():
            fetch = asyncio.ensure_future(
                self.bot.get_updates(
                    offset=offset, timeout=self.poll_timeout, allowed_updates=Update.ALL_TYPES
                )
            )
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not fetch.done():
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError, TelegramError):
                    await fetch
                break
            stopping.cancel()
            try:
                updates = fetch.result()
            except (NetworkError, RetryAfter) as exc:
                failures += 1
                log.warning("getUpdates failed (%s), retrying", type(exc).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), min(30.0, 0.5 * 2**failures))
                continue
            failures = 0
            for update in updates:
                raw = json.dumps(update.to_dict(), ensure_ascii=False).encode()
                await self.receive(raw)
                offset = update.update_id + 1

    async def send_followup(self, followup: FollowUp) -> None:
        """A due follow-up (the scheduler): queued behind the updates of its chat, so it never
        interleaves with one (:meth:`drain` waits for it too)."""
        if self.features is not None:
            self._queues.submit(("chat", int(followup.address)), FollowUpDue(followup))

    async def set_webhook(self) -> None:
        """Point Telegram at ``PASSERELLE_WEBHOOK_URL`` with the secret header."""
        assert self.settings.webhook_url is not None
        await self.delivery.call(
            self.bot.set_webhook,
            url=self.settings.webhook_url,
            secret_token=self.settings.webhook_secret,
            allowed_updates=Update.ALL_TYPES,
        )

    def webhook_route(self) -> Route:
        """The Starlette route Telegram posts updates to (path of ``PASSERELLE_WEBHOOK_URL``)."""
        secret = (self.settings.webhook_secret or "").encode()

        async def webhook(request: Request) -> Response:
            given = request.headers.get("x-telegram-bot-api-secret-token", "").encode()
            if not secret or not hmac.compare_digest(given, secret):
                return Response(status_code=403)
            length = request.headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                return Response(status_code=413)  # refused before reading any of it
            body = bytearray()
            try:
                async with asyncio.timeout(self.settings.body_timeout):
                    async for chunk in request.stream():
                        body += chunk
                        if len(body) > MAX_BODY:
                            return Response(status_code=413)
            except TimeoutError:
                return Response(status_code=408, headers={"connection": "close"})
            try:
                await self.receive(bytes(body))
            except ValueError:
                return Response(status_code=400)
            return Response(status_code=200)

        return Route(self.settings.webhook_path, webhook, methods=["POST"])
