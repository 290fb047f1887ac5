"""The hospital integration as parts of ``passerelle serve``: the conversation API, the web chat,
and the webhook worker, sharing the server's SQLite store.

:func:`integration_parts` gives routes and a lifespan for :func:`bot.server.build_app`; the store
must be opened with :data:`bot.storage.integration.ALL_MIGRATIONS`.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from bot.adapters.webhooks import RetryPolicy, WebhookWorker
from bot.app.privacy import schedule_api_retention
from bot.app.reload import EngineHolder
from bot.app.scheduler import Scheduler
from bot.channels.http import ConversationApi, RateLimiter
from bot.config import Settings, ensure_secret
from bot.engine.flow import Engine
from bot.knowledge.establishments import Establishment, EstablishmentsError, load_establishments
from bot.storage.factory import integration_for
from bot.storage.integration import IntegrationStore
from bot.storage.sqlite import SqliteStorage

if TYPE_CHECKING:
    from bot.app.features import Features

log = logging.getLogger(__name__)

Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


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


@dataclass
class Integration:
    """The integration's parts, for the composition root (Telegram shares the worker)."""

    api: ConversationApi
    store: IntegrationStore
    worker: WebhookWorker
    establishments: dict[str, Establishment]
    routes: list[BaseRoute]
    lifespans: list[Lifespan]


def integration_parts(
    settings: Settings, engine: Engine | EngineHolder, storage: SqliteStorage
) -> tuple[list[BaseRoute], list[Lifespan]]:
    """Routes (``/api/v1``, ``/``, ``/widget.js``) and the lifespan running the webhook worker
    and the daily erasure of idle API conversations."""
    parts = build_integration(settings, engine, storage)
    return parts.routes, parts.lifespans


def build_integration(
    settings: Settings,
    engine: Engine | EngineHolder,
    storage: SqliteStorage,
    *,
    features: Features | None = None,
) -> Integration:
    """Like :func:`integration_parts`, with the statistics, barometer and privacy features."""
    establishments = establishments_or_exit(settings, engine)
    store = integration_for(storage)
    worker = WebhookWorker(
        store, establishments, policy=RetryPolicy(base=settings.webhook_retry_base)
    )
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
