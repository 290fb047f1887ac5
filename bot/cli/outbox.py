"""The integration database as the ``keys`` and ``webhooks`` commands open it."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable

from bot import config
from bot.storage.integration import IntegrationStore

Work = Callable[[IntegrationStore, config.Settings, argparse.Namespace], Awaitable[int]]


def with_store(work: Work) -> Callable[[argparse.Namespace], int]:
    """A command handler running ``work`` with the integration store of ``PASSERELLE_DB``
    opened, and closed whatever happens."""

    def handler(args: argparse.Namespace) -> int:
        settings = config.load_or_exit()

        async def run() -> int:
            store = IntegrationStore(settings.db_path)
            await store.open()
            try:
                return await work(store, settings, args)
            finally:
                await store.close()

        return asyncio.run(run())

    return handler
