"""``passerelle serve`` (the web server) and ``passerelle telegram`` (long polling, no web
server): both run the world of :func:`bot.cli.compose.build_world`, so a conversation's
statistics, events and webhooks are the same whichever command runs the bot."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from typing import Any

from bot.cli.compose import World, build_integration, build_world
from bot.cli.contents import load_or_exit
from bot.config import Settings

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
    from bot.channels.http.admin import admin_routes
    from bot.server import serve

    world = _world(need_telegram=False)
    settings = world.settings
    parts = build_integration(
        settings, world.api_engine, world.storage, features=world.features, world=world
    )
    return serve(
        settings,
        world.telegram_engine,
        routes=[*parts.routes, *admin_routes(world.reloader, settings.admin_token)],
        lifespans=parts.lifespans,
        storage=world.storage,
        features=world.features,
        reloader=world.reloader,
        telegram_options=world.telegram_options(),
    )


def cmd_telegram(args: argparse.Namespace) -> int:
    """Telegram by long polling, with the SQLite store (``PASSERELLE_DB``)."""
    return asyncio.run(poll(_world(need_telegram=True)))


async def poll(world: World, **channel_options: Any) -> int:
    """Run ``world``'s Telegram channel by long polling until SIGINT/SIGTERM: the same store,
    features, establishments, outbox and worker as ``serve``, minus the web server."""
    from bot.adapters import charts
    from bot.channels import telegram
    from bot.server import startup_line

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
            charts.prestart()
            try:
                channel = telegram.build(
                    world.telegram_engine,
                    world.storage,
                    settings,
                    features=world.features,
                    **world.telegram_options(),
                    **channel_options,
                )
                async with telegram.running(channel, webhook=False):
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


def add_commands(sub: argparse._SubParsersAction[Any]) -> None:
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
