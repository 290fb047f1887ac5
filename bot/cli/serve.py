"""``passerelle serve`` (the web server) and ``passerelle telegram`` (long polling, no web
server): both run the world of :func:`bot.cli.compose.build_world`, so a conversation's
statistics, events, webhooks, retention and follow-ups are the same whichever command runs
the bot."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Unpack

from bot.cli.commands import Subcommands
from bot.cli.compose import Lifespan, World, build_integration, build_server_app, build_world
from bot.cli.contents import load_or_exit
from bot.config import Settings

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from bot.channels.telegram.compose import ChannelOptions
    from bot.knowledge.establishments import Establishment

log = logging.getLogger(__name__)


def _settings_or_exit(*, need_telegram: bool) -> Settings:
    """Settings from the environment with the kept secret, logging configured (or a one-line
    exit naming the variable)."""
    from bot import config
    from bot.logging_setup import configure_logging

    settings = config.load_or_exit(need_telegram=need_telegram)
    settings = config.secret_or_exit(settings)  # PASSERELLE_SECRET, or the kept one
    configure_logging(settings)
    return settings


def _world(*, need_telegram: bool) -> World:
    settings = _settings_or_exit(need_telegram=need_telegram)
    return build_world(settings, load_or_exit(settings.contenus, settings.contenus_extra))


def cmd_serve(args: argparse.Namespace) -> int:
    """The web server on ``$PORT``: Telegram webhook (or polling), health check, features."""
    return serve(_world(need_telegram=False))


def web_app(world: World, *, ready: Lifespan | None = None) -> Starlette:
    """``world`` as the web server runs it: Telegram, the API and the web chat, the admin
    routes, reloads (SIGHUP, and NOTIFY between instances on PostgreSQL), the chart worker,
    and one scheduler for both channels' timed jobs; ``ready`` is entered last."""
    from bot.app.reload import sighup_lifespan
    from bot.channels.http.admin import admin_routes
    from bot.server import ReloadBus, reload_everywhere

    settings = world.settings
    parts = build_integration(
        settings, world.api_engine, world.storage, features=world.features, world=world
    )
    extra: list[Lifespan] = [sighup_lifespan(world.reloader)]
    if world.storage.shared and isinstance(world.storage, ReloadBus):
        extra.append(reload_everywhere(world.reloader, world.storage))
    extra.append(chart_worker)
    return build_server_app(
        settings,
        world.telegram_engine,
        routes=[*parts.routes, *admin_routes(world.reloader, settings.admin_token)],
        lifespans=[*parts.lifespans, *extra, *([ready] if ready is not None else [])],
        storage=world.storage,
        features=world.features,
        jobs=world.jobs,
        **world.telegram_options(),
    )


def serve(world: World) -> int:
    """Run ``world``'s web server under uvicorn on ``settings.host:settings.port`` until
    interrupted (2 if the port cannot be bound, said in one French line)."""
    import uvicorn

    from bot.server import bind, bind_error, freeze_startup_objects, listening, uvicorn_config

    settings = world.settings
    started = time.perf_counter()
    try:
        sock = bind(settings.host, settings.port)
    except OSError as exc:
        print(bind_error(settings.host, settings.port, exc), file=sys.stderr, flush=True)
        return 2
    address = listening(sock)

    @contextlib.asynccontextmanager
    async def announce(app: Starlette) -> AsyncIterator[None]:
        freeze_startup_objects()
        line = startup_line(
            settings,
            mode=telegram_mode(settings),
            kb_version=world.telegram_engine.kb.version,
            establishments=world.establishments,
            address=address,
            seconds=time.perf_counter() - started,
        )
        if settings.log_format == "json":
            log.info("%s", line)  # JSON logs: every line on standard error is JSON
        else:
            print(line, file=sys.stderr, flush=True)
        yield

    server = uvicorn.Server(uvicorn_config(web_app(world, ready=announce), settings))
    with sock:
        server.run(sockets=[sock])
    return 0


@contextlib.asynccontextmanager
async def chart_worker(app: Starlette) -> AsyncIterator[None]:
    """The chart worker stopped with the server, in order: uvicorn ends the process by
    re-raising SIGTERM, after which nothing registered with ``atexit`` runs. It is started by
    the first conversation that enters the barometer (:func:`bot.adapters.charts.warm_soon`),
    warm well before that conversation's first chart; a server nobody uses the barometer on
    never pays for it (a second process that imports matplotlib: about 1 s of CPU)."""
    from bot.adapters import charts

    try:
        yield
    finally:
        await asyncio.to_thread(charts.stop)


def telegram_mode(settings: Settings) -> str:
    if not settings.telegram_token:
        return "sans Telegram"
    return "Telegram par webhook" if settings.webhook_url else "Telegram par long polling"


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
        f"Passerelle est prête{where} — {mode} ; base de données {settings.database_label} ; "
        f"contenus version {kb_version} ; établissements : {names}{took}."
    )


def cmd_telegram(args: argparse.Namespace) -> int:
    """Telegram by long polling, with the SQLite store (``PASSERELLE_DB``)."""
    return asyncio.run(poll(_world(need_telegram=True)))


async def poll(world: World, **channel_options: Unpack[ChannelOptions]) -> int:
    """Run ``world``'s Telegram channel by long polling until SIGINT/SIGTERM: the same store,
    features, establishments, outbox and worker as ``serve``, minus the web server
    (``channel_options`` over the world's own)."""
    from bot.adapters import charts
    from bot.channels import telegram

    settings = world.settings
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    await world.storage.open()
    try:
        await world.features.open()
        try:
            await world.worker.start()
            options: ChannelOptions = {**world.telegram_options(), **channel_options}
            try:
                channel = telegram.build(
                    world.telegram_engine,
                    world.storage,
                    settings,
                    features=world.features,
                    scheduler=world.jobs.scheduler,
                    memory=world.jobs.memory,
                    **options,
                )
                async with telegram.running(channel, webhook=False), world.jobs.running():
                    line = startup_line(
                        settings,
                        mode="Telegram par long polling, sans serveur web",
                        kb_version=world.telegram_engine.kb.version,
                        establishments=world.establishments,
                    )
                    if settings.log_format == "json":
                        log.info("%s", line)  # JSON logs: every line is JSON
                    else:
                        print(f"{line} Ctrl+C pour arrêter.", flush=True)
                    await stop.wait()
            finally:
                await asyncio.to_thread(charts.stop)
                await world.worker.stop()
        finally:
            await world.features.close()
    finally:
        await world.storage.close()
    return 0


def add_commands(sub: Subcommands) -> None:
    """Add ``telegram`` and ``serve`` to the ``passerelle`` parser."""
    from bot.config import settings_help

    telegram = sub.add_parser("telegram", help="Telegram en long polling")
    telegram.set_defaults(handler=cmd_telegram)
    serve = sub.add_parser(
        "serve",
        help="serveur web ($PORT) : webhook Telegram, API, chat web, /healthz",
        description="Le serveur web : chat web sur /, API des établissements sur /api/v1, "
        "webhook Telegram (ou long polling), /healthz.",
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.set_defaults(handler=cmd_serve)
