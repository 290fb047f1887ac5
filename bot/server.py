"""The ASGI assembly of ``passerelle serve``: one Starlette app with the health check and the
routes and lifespans it is given (Telegram webhook, hospital API, web chat), and how uvicorn
runs it (socket, limits, logging).

Nothing here builds a part: :func:`build_app` knows no feature, no store, no channel; which
parts a deployment runs is decided by the composition root (:mod:`bot.cli.compose`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from bot.app.reload import Reloader
from bot.channels.http.errors import model_response
from bot.channels.http.schemas import ErrorDetail, ErrorOut, HealthOut
from bot.config import MAX_HEADER_BYTES, Settings, http_address
from bot.logging_setup import logging_config

if TYPE_CHECKING:
    import uvicorn

    from bot.adapters.webhooks import WebhookWorker
    from bot.channels.http import ConversationApi

log = logging.getLogger(__name__)

#: A start-up/shutdown hook: entered before the server accepts requests, left after it stops.
Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]
#: A health check: returns normally if that part works, raises (with a reason) if not.
Check = Callable[[], Awaitable[None]]
#: Seconds one health check may take before it counts as failed.
CHECK_TIMEOUT = 3.0
#: Free space below which the database's disk is reported full (a write would soon fail).
MIN_FREE_BYTES = 1024 * 1024


def build_app(
    *,
    routes: Sequence[BaseRoute] = (),
    lifespans: Sequence[Lifespan] = (),
    checks: Sequence[tuple[str, Check]] = (),
    debug: bool = False,
) -> Starlette:
    """A Starlette app with ``/healthz``, the given routes, and the lifespans entered in order
    (and left in reverse order). ``app.state.ready`` turns true once they have all started.

    ``/healthz`` answers 503 ``starting`` before that, then runs every named check: 200
    ``{"status": "ok", "checks": {name: "ok"}}``, or 503 with ``"status": "error"`` and, for
    the part that failed, what went wrong (``"database": "error: OperationalError"``)."""

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

    async def healthz(request: Request) -> Response:
        if not bool(getattr(request.app.state, "ready", False)):
            return model_response(HealthOut(status="starting"), 503, exclude_none=True)
        results = dict(await asyncio.gather(*(_run_check(name, check) for name, check in checks)))
        healthy = all(result == "ok" for result in results.values())
        body = HealthOut(status="ok" if healthy else "error", checks=results or None)
        return model_response(body, 200 if healthy else 503, exclude_none=True)

    async def not_found(request: Request, exc: Exception) -> Response:
        # Paths no route or mount can match (e.g. with a newline) still get the API's JSON shape.
        error = ErrorDetail(code="not_found", message="Cette adresse n'existe pas.")
        return model_response(ErrorOut(error=error), 404)

    app = Starlette(
        debug=debug,
        routes=[Route("/healthz", healthz, methods=["GET"]), *routes],
        lifespan=lifespan,
        exception_handlers={404: not_found},
    )
    app.state.ready = False
    return app


def create_app(
    api: ConversationApi,
    *,
    worker: WebhookWorker | None = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """A standalone app serving the API and the web chat: opens the store and the features
    (and starts the webhook worker) at start-up, closes them at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await api.store.open()
        if api.features is not None:
            await api.features.open()
        if worker is not None:
            await worker.start()
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            if api.features is not None:
                await api.features.close()
            await api.store.close()

    return build_app(routes=[*extra_routes, *api.routes()], lifespans=[lifespan])


async def _run_check(name: str, check: Check) -> tuple[str, str]:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await check()
    except TimeoutError:
        return name, f"error: no answer within {CHECK_TIMEOUT:g} s"
    except Exception as exc:
        log.warning("health check %s failed: %s", name, type(exc).__name__)
        return name, f"error: {type(exc).__name__}: {str(exc)[:120]}"
    return name, "ok"


class Probed(Protocol):
    """What the health check needs of the store: where it lives, and a real write."""

    @property
    def path(self) -> str: ...

    async def probe(self) -> None: ...


def storage_checks(storage: Probed) -> list[tuple[str, Check]]:
    """``/healthz`` checks of the database: a real write is committed (a full disk, a locked
    or read-only file fail it), and its disk keeps some free space."""

    async def disk() -> None:
        if storage.path in (":memory:", ":postgresql:"):  # no local file to watch
            return
        free = (await asyncio.to_thread(shutil.disk_usage, Path(storage.path).parent)).free
        if free < MIN_FREE_BYTES:
            raise OSError(f"disk almost full ({free // 1024} KiB free)")

    return [("database", storage.probe), ("disk", disk)]


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


#: The PostgreSQL notification channel of contents reloads.
RELOAD_CHANNEL = "passerelle_reload"


@runtime_checkable
class ReloadBus(Protocol):
    """What :func:`reload_everywhere` needs of a store several instances share (PostgreSQL's
    NOTIFY/LISTEN): who this instance is, and a channel every instance hears."""

    instance: str

    async def notify(self, channel: str, payload: str = "") -> None: ...

    def listen(self, channel: str, ready: asyncio.Event | None = None) -> AsyncIterator[str]: ...


def reload_everywhere(reloader: Reloader, storage: ReloadBus) -> Lifespan:
    """Several instances on one PostgreSQL database: a reload asked of any instance (SIGHUP,
    ``POST /admin/reload``) is announced with NOTIFY, and every other instance reloads its
    own copy of the contents on hearing it (deploy the files to every machine first)."""

    async def announce() -> None:
        await storage.notify(RELOAD_CHANNEL, storage.instance)

    ready = asyncio.Event()

    async def listen() -> None:
        async for sender in storage.listen(RELOAD_CHANNEL, ready):
            if sender != storage.instance:
                result = await reloader.reload(announce=False)
                log.info(
                    "reload announced by another instance: %s", "ok" if result.ok else "refused"
                )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        reloader.on_reloaded.append(announce)
        task = asyncio.create_task(listen(), name="reload-listener")
        try:
            async with asyncio.timeout(15):  # ready once it hears the others' reloads
                await asyncio.wait(
                    [task, asyncio.ensure_future(ready.wait())],
                    return_when=asyncio.FIRST_COMPLETED,
                )
            if task.done():
                task.result()  # the listener failed: say why at start-up
            yield
        finally:
            reloader.on_reloaded.remove(announce)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    return lifespan


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else starts (so a busy port is known
    before any banner, and the address printed is the one really bound)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


def bind_error(host: str, port: int, exc: OSError) -> str:
    """One French line saying why we cannot listen, and how to fix it."""
    if exc.errno == errno.EADDRINUSE:
        return (
            f"Le port {port} est déjà utilisé (une autre Passerelle tourne peut-être) : "
            f"arrêtez-la, ou choisissez un autre port, par exemple PORT={port + 1} make run"
        )
    if exc.errno == errno.EACCES:
        return (
            f"Le port {port} est réservé à l'administrateur : choisissez un port au-dessus "
            "de 1024, par exemple PORT=8080"
        )
    return (
        f"Impossible d'écouter sur {host}:{port} ({exc.strerror or exc}) : vérifiez "
        "PASSERELLE_HOST (127.0.0.1 ou 0.0.0.0, par exemple)"
    )


def listening(sock: socket.socket) -> str:
    """The bound address as a person would open it (every interface: say so, and give the
    local one)."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        return f"{http_address('127.0.0.1', port)} (et sur toutes les interfaces, {host})"
    return http_address(host, port)


def uvicorn_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    """How uvicorn runs the app: the project's logging (``log_config``, so JSON means every
    line), no access log, ``X-Forwarded-*`` believed only from ``PASSERELLE_TRUSTED_PROXIES``,
    and read limits: request head within ``PASSERELLE_HEADER_TIMEOUT`` and
    :data:`bot.config.MAX_HEADER_BYTES` (the body's own deadline is the routes')."""
    import uvicorn

    from bot.channels.http.limits import HeaderTimeoutProtocol

    class Protocol(HeaderTimeoutProtocol):
        header_timeout = settings.header_timeout

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=logging_config(settings),
        log_level=settings.log_level.lower(),
        access_log=False,  # an access log would carry webhook paths and client addresses
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies) or None,
        http=Protocol,
        ws="none",
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        timeout_keep_alive=5,
        lifespan="on",
    )
