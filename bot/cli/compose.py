"""The composition root: :func:`build_world` builds, once, what every long-running command
shares (the stores, the features, the establishments, the webhook outbox and its worker, the
engines, the one scheduler and the one retention), so ``passerelle serve`` and
``passerelle telegram`` run the same world.

Nothing is opened here: ``serve`` opens the parts in the web server's lifespans,
``telegram`` around its polling loop. :func:`build_integration` adds the HTTP API and its
lifespan (webhook worker) for the web server; :func:`build_server_app` assembles the web
server's parts (store, features, Telegram, timed jobs) with :func:`bot.server.build_app`;
:func:`with_store` opens the integration store for the one-shot ``keys`` and ``webhooks``
commands. Which store implementation a deployment uses is decided here and nowhere else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Unpack

from bot import config
from bot.adapters.webhooks import RetryPolicy, WebhookWorker
from bot.app.engines import build_engine
from bot.app.features import Features
from bot.app.privacy import IdleConversations, Privacy, schedule_retention
from bot.app.reload import EngineHolder, Reloader
from bot.app.scheduler import Scheduler
from bot.cli.contents import default_contenus, extra_contenus
from bot.config import Settings, ensure_secret
from bot.engine.flow import Engine
from bot.knowledge.establishments import Establishment, EstablishmentsError, load_establishments
from bot.knowledge.model import KnowledgeBase
from bot.storage.base import IntegrationStore, Storage
from bot.storage.factory import build_stores, integration_for, integration_store
from bot.storage.memory import MemoryStorage

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.routing import BaseRoute

    from bot.channels.http import ConversationApi
    from bot.channels.telegram.compose import BuildOptions, ChannelOptions

log = logging.getLogger(__name__)

Lifespan = Callable[["Starlette"], AbstractAsyncContextManager[None]]


def establishments_or_exit(
    settings: Settings, engine: Engine | EngineHolder | None = None
) -> dict[str, Establishment]:
    """The establishments of ``PASSERELLE_ETABLISSEMENTS``, validated, or a clean exit."""
    if settings.establishments is None:
        return {}
    territories = engine.kb.territories if engine is not None else None
    try:
        return load_establishments(settings.establishments, known_territories=territories)
    except EstablishmentsError as exc:
        print("Le fichier des établissements est invalide :", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(2) from None


def with_store(
    work: Callable[[IntegrationStore, Settings, argparse.Namespace], Awaitable[int]],
) -> Callable[[argparse.Namespace], int]:
    """A command handler running ``work`` with the integration store of ``PASSERELLE_DB``
    opened, and closed whatever happens (the ``keys`` and ``webhooks`` commands)."""

    def handler(args: argparse.Namespace) -> int:
        settings = config.load_or_exit()

        async def run() -> int:
            target = settings.database_url or settings.db_path
            store = integration_store(target, claim_seconds=settings.claim_seconds)
            await store.open()
            try:
                return await work(store, settings, args)
            finally:
                await store.close()

        return asyncio.run(run())

    return handler


def webhook_worker(
    settings: Settings,
    outbox: IntegrationStore,
    establishments: dict[str, Establishment],
    *,
    idle_poll: float | None = None,
) -> WebhookWorker:
    """The worker delivering the outbox to the establishments, with the configured retries
    (``idle_poll``: seconds between looks at the outbox when idle; the worker's own default)."""
    policy = RetryPolicy(base=settings.webhook_retry_base)
    if idle_poll is None:
        return WebhookWorker(outbox, establishments, policy=policy)
    return WebhookWorker(outbox, establishments, policy=policy, idle_poll=idle_poll)


@dataclass
class Jobs:
    """The timed jobs of one process: ONE scheduler (retention, Telegram's follow-ups) and ONE
    retention run over every store (people of every channel, API conversations)."""

    scheduler: Scheduler
    #: Sessions of people who did not consent (this process only), erased by retention too.
    memory: Storage
    retention: Privacy

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Retention at once (then every six hours) until left; then the scheduler stops,
        waiting for a job under way. Enter it after the channels started, so it is left
        before they stop."""
        schedule_retention(self.scheduler, self.retention.purge)
        try:
            yield
        finally:
            await self.scheduler.stop()

    def lifespan(self, app: Starlette) -> AbstractAsyncContextManager[None]:
        app.state.scheduler = self.scheduler
        return self.running()


def jobs_for(
    settings: Settings, storage: Storage, conversations: IdleConversations | None = None
) -> Jobs:
    """The :class:`Jobs` of a process on ``storage`` (and the API's ``conversations``)."""
    memory = MemoryStorage()
    retention = Privacy(
        storage, memory, retention_days=settings.retention_days, conversations=conversations
    )
    return Jobs(Scheduler(), memory, retention)


@dataclass
class World:
    """What ``serve`` and ``telegram`` share, built by :func:`build_world`, not yet opened."""

    settings: Settings
    establishments: dict[str, Establishment]
    storage: Storage
    features: Features
    outbox: IntegrationStore
    worker: WebhookWorker
    #: The API's and the web chat's engine (no follow-up: a browser tab does not come back).
    api_engine: EngineHolder
    #: Telegram's engine (with follow-ups); ``features`` follows its swaps.
    telegram_engine: EngineHolder
    #: Swaps both engines at once (SIGHUP, ``POST /admin/reload``).
    reloader: Reloader
    #: The one scheduler and the one retention, shared by Telegram and the API.
    jobs: Jobs

    def telegram_options(self) -> ChannelOptions:
        """The Telegram channel's share of the world (see ``bot.channels.telegram.build``)."""
        return {
            "establishments": self.establishments,
            "integration": self.outbox,
            "on_events": self.worker.wake,
        }


def build_world(settings: Settings, kb: KnowledgeBase) -> World:
    """The one composition of the long-running commands. The engines offer a hand-off only
    towards establishments receiving webhooks."""
    establishments = establishments_or_exit(settings, build_engine(kb))
    receivers = tuple(establishments.values())
    api_factory = functools.partial(build_engine, receivers=receivers)
    telegram_factory = functools.partial(build_engine, followup=True, receivers=receivers)
    api_engine = EngineHolder(api_factory(kb), api_factory)
    telegram_engine = EngineHolder(telegram_factory(kb), telegram_factory)
    if settings.database_url is not None:
        from bot.storage.postgres.schema import ensure_current

        # PostgreSQL is never migrated by serve (instances of two versions share it during a
        # rolling restart): a schema older or newer than the code stops here, before anything.
        asyncio.run(ensure_current(settings.database_url))
    stores = build_stores(
        settings.database_url or settings.db_path, claim_seconds=settings.claim_seconds
    )
    storage = stores.core
    features = Features(telegram_engine.engine, stores.features)
    telegram_engine.on_swap(features.set_engine)
    outbox = stores.integration
    reloader = Reloader(
        settings.contenus or default_contenus(),
        [api_engine, telegram_engine],
        extra=extra_contenus(settings.contenus_extra),
    )
    return World(
        settings=settings,
        establishments=establishments,
        storage=storage,
        features=features,
        outbox=outbox,
        worker=webhook_worker(settings, outbox, establishments),
        api_engine=api_engine,
        telegram_engine=telegram_engine,
        reloader=reloader,
        jobs=jobs_for(settings, storage, conversations=outbox),
    )


@dataclass
class Integration:
    """The web server's integration parts: the API, and the world's outbox and worker."""

    api: ConversationApi
    store: IntegrationStore
    worker: WebhookWorker
    establishments: dict[str, Establishment]
    routes: list[BaseRoute]
    lifespans: list[Lifespan]


def build_integration(
    settings: Settings,
    engine: Engine | EngineHolder,
    storage: Storage,
    *,
    features: Features | None = None,
    world: World | None = None,
) -> Integration:
    """The conversation API (``/api/v1``, ``/``, ``/widget.js``) and the lifespan running the
    webhook worker; over ``world``'s outbox, worker and establishments when given, else over
    new ones on ``storage``. (Idle API conversations are erased by the process's one
    retention: :class:`Jobs`.)"""
    from bot.channels.http import ConversationApi, RateLimiter

    if world is not None:
        establishments, store, worker = world.establishments, world.outbox, world.worker
    else:
        establishments = establishments_or_exit(settings, engine)
        store = integration_for(storage)
        worker = webhook_worker(settings, store, establishments)
    demo_key = "pwk_demo_" + secrets.token_urlsafe(24) if settings.demo else None
    api = ConversationApi(
        engine,
        store,
        establishments,
        limiter=RateLimiter(settings.api_rate, settings.api_burst),
        demo_key=demo_key,
        on_events=worker.wake,
        features=features,
        secret=ensure_secret(settings).secret,
        body_timeout=settings.body_timeout,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.api = api
        await worker.start()
        try:
            yield
        finally:
            await worker.stop()

    return Integration(api, store, worker, establishments, api.routes(), [lifespan])


def telegram_parts(
    engine: Engine | EngineHolder,
    storage: Storage,
    settings: Settings,
    **options: Unpack[BuildOptions],
) -> tuple[list[BaseRoute], list[Lifespan]]:
    """The Telegram routes (the webhook's) and lifespan for the web server (none without a
    token); ``options`` go to ``bot.channels.telegram.build``."""
    if settings.telegram_token is None:
        return [], []
    from bot.channels import telegram

    channel = telegram.build(engine, storage, settings, **options)
    routes: list[BaseRoute] = [channel.webhook_route()] if settings.webhook_url else []

    def lifespan(app: Starlette) -> AbstractAsyncContextManager[None]:
        app.state.telegram = channel
        return telegram.running(channel)

    return routes, [lifespan]


def build_server_app(
    settings: Settings,
    engine: Engine | EngineHolder,
    *,
    routes: Sequence[BaseRoute] = (),
    lifespans: Sequence[Lifespan] = (),
    storage: Storage | None = None,
    features: Features | None = None,
    jobs: Jobs | None = None,
    **telegram_options: Unpack[ChannelOptions],
) -> Starlette:
    """The web server's app: the store first (``PASSERELLE_DB``'s unless given), then the
    features (statistics, barometer groups, follow-ups, on the same database), then Telegram
    (webhook, or polling beside the server; none without a token), then the extra parts, then
    the timed jobs: ``jobs``' one scheduler serves Telegram's follow-ups and one retention
    every store (by default over the store alone)."""
    from bot.server import build_app, opened, storage_checks

    if storage is None:
        target = settings.database_url or settings.db_path
        storage = build_stores(target, claim_seconds=settings.claim_seconds).core
    jobs = jobs or jobs_for(settings, storage)
    feature_lifespans = [opened("features", features)] if features is not None else []
    tg_routes, tg_lifespans = telegram_parts(
        engine,
        storage,
        settings,
        features=features,
        scheduler=jobs.scheduler,
        memory=jobs.memory,
        **telegram_options,
    )
    return build_app(
        routes=[*tg_routes, *routes],
        lifespans=[
            opened("storage", storage),
            *feature_lifespans,
            *tg_lifespans,
            *lifespans,
            jobs.lifespan,
        ],
        checks=storage_checks(storage),
    )
