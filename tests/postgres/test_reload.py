"""A contents reload asked of one instance reaches every instance sharing the PostgreSQL
database (NOTIFY), and each reloads its contents once."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from bot.app.engines import build_engine
from bot.app.reload import EngineHolder, Reloader
from bot.knowledge.loader import load
from bot.server import reload_everywhere
from bot.storage.postgres import PostgresStorage
from bot.storage.postgres.schema import ensure_current


async def test_a_reload_on_one_instance_reloads_the_others(pg_url: str, base_copy: Path) -> None:
    await ensure_current(pg_url, upgrade=True)
    kb = load(base_copy)
    stores = [PostgresStorage(pg_url) for _ in range(3)]
    holders = [EngineHolder(build_engine(kb), build_engine) for _ in stores]
    reloaders = [Reloader(base_copy, [holder]) for holder in holders]
    swaps = [0, 0, 0]
    swapped = [asyncio.Event() for _ in stores]

    def watcher(index: int) -> Any:
        def seen(_: object) -> None:
            swaps[index] += 1
            swapped[index].set()

        return seen

    for index, holder in enumerate(holders):
        holder.on_swap(watcher(index))
    async with contextlib.AsyncExitStack() as stack:
        for store, reloader in zip(stores, reloaders, strict=True):
            await store.open()
            stack.push_async_callback(store.close)
            # Each instance's lifespan: it is ready once it hears the others' reloads.
            await stack.enter_async_context(reload_everywhere(reloader, store)(None))  # type: ignore[arg-type]
        result = await reloaders[0].reload()  # POST /admin/reload or SIGHUP on one instance
        assert result.ok
        async with asyncio.timeout(30):
            await asyncio.gather(*(event.wait() for event in swapped))
    assert swaps == [1, 1, 1]
