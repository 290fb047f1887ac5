"""Database round trips per Telegram update and per API turn on PostgreSQL (one instance).

A round trip is a wait for the server's answer: each of psycopg's waits on a connection that
had to wait for the socket to be readable (one per statement outside pipeline mode; in
pipeline mode one per sync or fetch of the answers queued so far, none for what is sent
without waiting). The statements sent are listed beside, per update or turn, so that one can
see where the round trips go.

    .venv/bin/python bench/roundtrips.py [--updates 20] [--turns 20]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import re
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WEBHOOK_SECRET = "bench-webhook-secret-0123456789"
SECRET = b"bench-pseudonym-secret-0123456789"


class Counter:
    """Counts psycopg's waits for the server (see the module's docstring) and the statements."""

    def __init__(self) -> None:
        self.trips = 0
        self.statements: collections.Counter[str] = collections.Counter()
        self.on = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[Counter]:
        from psycopg import _connection_base, _cursor_base
        from psycopg.connection_async import AsyncConnection
        from psycopg.waiting import Wait

        counter = self
        wait = AsyncConnection.wait
        prepare = _cursor_base.BaseCursor._maybe_prepare_gen  # every statement of a cursor
        command = _connection_base.BaseConnection._exec_command  # BEGIN, COMMIT, SAVEPOINT

        def watched(gen: Any) -> Any:
            """``gen``, counting one round trip if it waited for the socket to be readable."""
            read, ready = False, None
            try:
                while True:
                    state = gen.send(ready)
                    read = read or state == Wait.R
                    ready = yield state
            except StopIteration as stop:
                return stop.value
            finally:
                if read and counter.on:
                    counter.trips += 1

        async def counted_wait(self: Any, gen: Any, *args: Any, **kwargs: Any) -> Any:
            return await wait(self, watched(gen), *args, **kwargs)

        def counted_prepare(self: Any, pgq: Any, *args: Any, **kwargs: Any) -> Any:
            if counter.on:
                counter.statements[_shape(bytes(pgq.query).decode())] += 1
            return prepare(self, pgq, *args, **kwargs)

        def counted_command(self: Any, sql: Any, *args: Any, **kwargs: Any) -> Any:
            if counter.on:
                text = sql.decode() if isinstance(sql, bytes) else str(sql)
                counter.statements[_shape(text)] += 1
            return command(self, sql, *args, **kwargs)

        patches = [
            (AsyncConnection, "wait", counted_wait),
            (_cursor_base.BaseCursor, "_maybe_prepare_gen", counted_prepare),
            (_connection_base.BaseConnection, "_exec_command", counted_command),
        ]
        saved = [(cls, name, getattr(cls, name)) for cls, name, _ in patches]
        for cls, name, value in patches:
            setattr(cls, name, value)
        try:
            yield self
        finally:
            for cls, name, value in saved:
                setattr(cls, name, value)

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        self.trips = 0
        self.statements.clear()
        self.on = True
        try:
            yield
        finally:
            self.on = False


def replied(api: Any, chat: int, before: int) -> bool:
    return bool(api.count_to(chat) > before)


def _shape(sql: str) -> str:
    """A statement's first words (its kind and table), enough to tell them apart."""
    words = re.sub(r"\s+", " ", sql).strip()
    return words[:70]


async def telegram(
    url: str, counter: Counter, updates: int
) -> tuple[float, collections.Counter[str]]:
    from bot.app.engines import build_engine
    from bot.cli.compose import build_server_app
    from bot.config import Settings
    from bot.knowledge.loader import load
    from bot.storage.factory import build_stores
    from tests.harness.fakebotapi import TOKEN, FakeBotAPI
    from tests.harness.servers import serve

    engine = build_engine(load(ROOT / "contenus"))
    async with FakeBotAPI() as api:
        settings = Settings(
            telegram_token=TOKEN,
            telegram_api_base_url=api.base_url,
            secret=SECRET,
            db_path=Path("unused.db"),
            database_url=url,
            telegram_rate=0,
            webhook_url="https://bench.invalid/telegram/webhook",
            webhook_secret=WEBHOOK_SECRET,
        )
        app = build_server_app(settings, engine, storage=build_stores(url).core, pause=0)
        async with serve(app):
            channel = app.state.telegram
            user = api.user(1_000_001)
            await channel.receive(json.dumps(user.text("/start")).encode())
            await channel.drain()
            consent = next(m for m in reversed(api.to_chat(user.id)) if m.buttons)
            data = consent.data_of(engine.msg("consent_yes", engine.new_session()))
            await channel.receive(json.dumps(user.press(consent, data)).encode())
            await channel.drain()
            await channel.receive(json.dumps(user.text("aide")).encode())  # warm-up
            await channel.drain()
            with counter.measuring():
                for index in range(updates):
                    before = api.count_to(user.id)
                    body = "aide" if index % 2 else "glossaire"
                    await channel.receive(json.dumps(user.text(body)).encode())
                    await api.wait_for(partial(replied, api, user.id, before), timeout=30)
                    await channel.drain()
                await asyncio.sleep(0.05)  # the last reply's deletion
            return counter.trips / updates, counter.statements.copy()


async def api_turns(
    url: str, counter: Counter, turns: int
) -> tuple[float, collections.Counter[str]]:
    import httpx

    from bot.app.engines import build_engine
    from bot.channels.http import ConversationApi, RateLimiter
    from bot.knowledge.loader import load
    from bot.server import create_app
    from bot.storage.factory import integration_store
    from tests.harness.servers import serve

    store = integration_store(url)
    await store.open()
    key, _ = await store.create_key("bench")
    await store.close()
    api = ConversationApi(
        build_engine(load(ROOT / "contenus")),
        integration_store(url),
        limiter=RateLimiter(1e6, 1_000_000),
    )
    async with (
        serve(create_app(api)) as base,
        httpx.AsyncClient(base_url=base, headers={"authorization": f"Bearer {key}"}) as client,
    ):
        response = await client.post("/api/v1/conversations", json={})
        cid = response.json()["conversation_id"]
        await client.post(f"/api/v1/conversations/{cid}/messages", json={"text": "aide"})
        with counter.measuring():
            for index in range(turns):
                body = {"text": "aide" if index % 2 else "glossaire"}
                response = await client.post(f"/api/v1/conversations/{cid}/messages", json=body)
                assert response.status_code == 200, response.text
        return counter.trips / turns, counter.statements.copy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()
    from bot.storage.postgres.schema import ensure_current
    from tests.harness.postgres import cluster

    counter = Counter()
    started = time.perf_counter()
    with cluster() as pg, counter.installed():
        with pg.database() as url:
            asyncio.run(ensure_current(url, upgrade=True))
            update_trips, update_statements = asyncio.run(telegram(url, counter, args.updates))
        with pg.database() as url:
            asyncio.run(ensure_current(url, upgrade=True))
            turn_trips, turn_statements = asyncio.run(api_turns(url, counter, args.turns))
    for title, trips, statements, count in (
        ("Telegram update (webhook → reply sent)", update_trips, update_statements, args.updates),
        ("API turn (POST …/messages)", turn_trips, turn_statements, args.turns),
    ):
        print(
            f"{title}: {trips:.1f} round trips, {sum(statements.values()) / count:.1f} statements"
        )
        for shape, seen in statements.most_common():
            print(f"  {seen / count:5.1f}  {shape}")
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
