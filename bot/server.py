"""The ASGI server of ``passerelle serve``: one Starlette app for the Telegram webhook, the
health check and whatever other features plug in (hospital API, web chat).

:func:`build_app` knows no feature: it takes routes and lifespan hooks. :func:`serve` is the
composition for a deployment: SQLite store, Telegram (webhook if ``PASSERELLE_WEBHOOK_URL`` is
set, else long polling beside the web server, or none without a token), uvicorn on ``$PORT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bot.config import Settings
from bot.engine.flow import Engine
from bot.live import EngineHolder, Reloader, sighup_lifespan
from bot.storage.sqlite import SqliteStorage

if TYPE_CHECKING:
    from bot.establishments import Establishment
    from bot.features import Features

log = logging.getLogger(__name__)

#: A start-up/shutdown hook: entered before the server accepts requests, left after it stops.
Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


def build_app(
    *,
    routes: Sequence[BaseRoute] = (),
    lifespans: Sequence[Lifespan] = (),
    debug: bool = False,
) -> Starlette:
    """A Starlette app with ``/healthz``, the given routes, and the lifespans entered in order
    (and left in reverse order). ``app.state.ready`` turns true once they have all started."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for hook in lifespans:
                await stack.enter_async_context(hook(app))
            app.state.ready = True
            try:
                yield
            finally:
                app.state.ready = False

    async def healthz(request: Request) -> JSONResponse:
        ready = bool(getattr(request.app.state, "ready", False))
        return JSONResponse({"status": "ok" if ready else "starting"}, 200 if ready else 503)

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        # Paths no route or mount can match (e.g. with a newline) still get the API's JSON shape.
        error = {"code": "not_found", "message": "Cette adresse n'existe pas."}
        return JSONResponse({"error": error}, 404)

    app = Starlette(
        debug=debug,
        routes=[Route("/healthz", healthz, methods=["GET"]), *routes],
        lifespan=lifespan,
        exception_handlers={404: not_found},
    )
    app.state.ready = False
    return app


def telegram_parts(
    engine: Engine | EngineHolder, storage: SqliteStorage, settings: Settings, **options: Any
) -> tuple[list[BaseRoute], list[Lifespan]]:
    """The Telegram routes and lifespan for :func:`build_app` (none without a token)."""
    if settings.telegram_token is None:
        return [], []
    from bot.channels import telegram

    channel = telegram.build(engine, storage, settings, **options)
    routes: list[BaseRoute] = [channel.webhook_route()] if settings.webhook_url else []

    def lifespan(app: Starlette) -> AbstractAsyncContextManager[None]:
        app.state.telegram = channel
        return telegram.running(channel)

    return routes, [lifespan]


class _Resource(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...


def opened(name: str, resource: _Resource) -> Lifespan:
    """Open ``resource`` at start-up as ``app.state.<name>``, close it at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await resource.open()
        setattr(app.state, name, resource)
        try:
            yield
        finally:
            await resource.close()

    return lifespan


def freeze_startup_objects() -> None:
    """Once ready: move what start-up built (knowledge base, engine, PTB, routes) out of the
    cyclic garbage collector's reach. Full collections then only walk objects created since,
    which keeps their pauses short (measured: 65–115 ms stalls of the event loop without this,
    the main source of p99 latency in bench/webhook.py)."""
    gc.collect()
    gc.freeze()


def build_server_app(
    settings: Settings,
    engine: Engine | EngineHolder,
    *,
    routes: Sequence[BaseRoute] = (),
    lifespans: Sequence[Lifespan] = (),
    storage: SqliteStorage | None = None,
    features: Features | None = None,
    **telegram_options: Any,
) -> Starlette:
    """The deployment's app: store first, then the features (statistics, barometer groups,
    follow-ups, on the same database), then Telegram, then the extra features."""
    storage = storage or SqliteStorage(settings.db_path)
    feature_lifespans = [opened("features", features)] if features is not None else []
    tg_routes, tg_lifespans = telegram_parts(
        engine, storage, settings, features=features, **telegram_options
    )
    return build_app(
        routes=[*tg_routes, *routes],
        lifespans=[opened("storage", storage), *feature_lifespans, *tg_lifespans, *lifespans],
    )


def startup_line(
    settings: Settings,
    *,
    mode: str,
    kb_version: str,
    establishments: Mapping[str, Establishment],
    address: str | None = None,
    seconds: float | None = None,
) -> str:
    """What an operator needs to see at start-up, all of it as it actually is: how Telegram is
    reached, the address, the database file, the contents version and the establishments
    loaded (with those that receive webhooks)."""
    names = ", ".join(sorted(establishments)) or "aucun"
    hooked = sorted(e.id for e in establishments.values() if e.webhook_url)
    if hooked:
        names += f" (webhook : {', '.join(hooked)})"
    where = f" sur {address}" if address else ""
    took = f" ; démarrage en {seconds:.1f} s" if seconds is not None else ""
    return (
        f"Passerelle est prête{where} — {mode} ; base de données {settings.db_path.resolve()} ; "
        f"contenus version {kb_version} ; établissements : {names}{took}."
    )


@contextlib.asynccontextmanager
async def chart_worker(app: Starlette) -> AsyncIterator[None]:
    """The chart worker started with the server (warm before the first barometer ends) and
    stopped with it, in order: uvicorn ends the process by re-raising SIGTERM, after which
    nothing registered with ``atexit`` runs."""
    from bot import charts

    charts.prestart()
    try:
        yield
    finally:
        await asyncio.to_thread(charts.shutdown)


def telegram_mode(settings: Settings) -> str:
    if not settings.telegram_token:
        return "sans Telegram"
    return "Telegram par webhook" if settings.webhook_url else "Telegram par long polling"


def serve(
    settings: Settings,
    engine: Engine | EngineHolder,
    *,
    routes: Sequence[BaseRoute] = (),
    lifespans: Sequence[Lifespan] = (),
    storage: SqliteStorage | None = None,
    features: Features | None = None,
    reloader: Reloader | None = None,
    telegram_options: dict[str, Any] | None = None,
) -> int:
    """Run the app under uvicorn on ``settings.host:settings.port`` until interrupted."""
    import uvicorn

    started = time.perf_counter()

    @contextlib.asynccontextmanager
    async def announce(app: Starlette) -> AsyncIterator[None]:
        freeze_startup_objects()
        line = startup_line(
            settings,
            mode=telegram_mode(settings),
            kb_version=engine.kb.version,
            establishments=(telegram_options or {}).get("establishments") or {},
            address=settings.local_address,
            seconds=time.perf_counter() - started,
        )
        print(line, file=sys.stderr, flush=True)
        yield

    extra = [sighup_lifespan(reloader)] if reloader is not None else []
    extra.append(chart_worker)
    app = build_server_app(
        settings,
        engine,
        routes=routes,
        lifespans=[*lifespans, *extra, announce],
        storage=storage,
        features=features,
        **(telegram_options or {}),
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,  # an access log would carry webhook paths and client addresses
        proxy_headers=True,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    server.run()
    return 0
