"""The composition root: :func:`build_world` builds, once, what every long-running command
shares (the stores, the features, the establishments, the webhook outbox and its worker, the
engines), so ``passerelle serve`` and ``passerelle telegram`` run the same world.

Nothing is opened here: ``serve`` opens the parts in the web server's lifespans,
``telegram`` around its polling loop. :func:`build_integration` adds the HTTP API and its
lifespan (webhook worker, daily erasure of idle API conversations) for the web server;
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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot import config
from bot.adapters.webhooks import RetryPolicy, WebhookWorker
from bot.app.engines import build_engine
from bot.app.features import Features
from bot.app.privacy import schedule_api_retention
from bot.app.reload import EngineHolder, Reloader
from bot.app.scheduler import Scheduler
from bot.cli.contents import default_contenus, extra_contenus
from bot.config import Settings, ensure_secret
from bot.engine.flow import Engine
from bot.knowledge.establishments import Establishment, EstablishmentsError, load_establishments
from bot.knowledge.model import KnowledgeBase
from bot.storage.factory import build_stores, integration_for, integration_store
from bot.storage.integration import IntegrationStore
from bot.storage.sqlite import SqliteStorage

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.routing import BaseRoute

    from bot.channels.http import ConversationApi

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
class World:
    """What ``serve`` and ``telegram`` share, built by :func:`build_world`, not yet opened."""

    settings: Settings
    establishments: dict[str, Establishment]
    storage: SqliteStorage
    features: Features
    outbox: IntegrationStore
    worker: WebhookWorker
    #: The API's and the web chat's engine (no follow-up: a browser tab does not come back).
    api_engine: EngineHolder
    #: Telegram's engine (with follow-ups); ``features`` follows its swaps.
    telegram_engine: EngineHolder
    #: Swaps both engines at once (SIGHUP, ``POST /admin/reload``).
    reloader: Reloader

    def telegram_options(self) -> dict[str, Any]:
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
    storage: SqliteStorage,
    *,
    features: Features | None = None,
    world: World | None = None,
) -> Integration:
    """The conversation API (``/api/v1``, ``/``, ``/widget.js``) and the lifespan running the
    webhook worker and the daily erasure of idle API conversations; over ``world``'s outbox,
    worker and establishments when given, else over new ones on ``storage``."""
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
        # The application's one scheduler (as Telegram's retention and follow-ups).
        scheduler = Scheduler()
        schedule_api_retention(
            scheduler, store, settings.retention_days, lease=getattr(storage, "lease", None)
        )
        try:
            yield
        finally:
            await scheduler.stop()
            await worker.stop()

    return Integration(api, store, worker, establishments, api.routes(), [lifespan])
