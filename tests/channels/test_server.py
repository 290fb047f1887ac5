"""The ASGI app: health check, plugging in routes and lifespans, serving without Telegram."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bot.cli.compose import build_server_app, build_world
from bot.cli.serve import web_app
from bot.config import Settings
from bot.engine.flow import Engine
from bot.knowledge.model import KnowledgeBase
from bot.server import build_app
from bot.storage.base import Conversation, Storage
from bot.storage.integration import ALL_MIGRATIONS, IntegrationStore
from bot.storage.sqlite import SqliteStorage
from tests.harness.fakebotapi import TOKEN, FakeBotAPI
from tests.harness.servers import serve
from tests.harness.wait import eventually

#: Every test here runs offline: only loopback can be reached (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("no_network")


async def test_routes_and_lifespans_plug_in_in_order() -> None:
    events: list[str] = []

    def hook(name: str):  # type: ignore[no-untyped-def]
        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            events.append(f"start {name}")
            yield
            events.append(f"stop {name}")

        return lifespan

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("bonjour")

    app = build_app(routes=[Route("/hello", hello)], lifespans=[hook("a"), hook("b")])
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/hello")).text == "bonjour"
        assert events == ["start a", "start b"]
    assert events == ["start a", "start b", "stop b", "stop a"]


async def test_serves_without_telegram(tmp_path: Path, engine: Engine) -> None:
    settings = Settings(db_path=tmp_path / "p.db")
    app = build_server_app(settings, engine)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.post("/telegram/webhook", json={})).status_code == 404
        assert app.state.storage is not None
    assert (tmp_path / "p.db").exists()


async def test_serve_runs_one_scheduler_and_one_retention_for_telegram_and_the_api(
    tmp_path: Path, kb: KnowledgeBase
) -> None:
    """``passerelle serve``'s composition: Telegram's follow-ups and the retention of every
    channel run on one scheduler, and its one retention run (at start-up) erases both a
    Telegram person and an API conversation idle past the retention period."""
    db = tmp_path / "passerelle.db"
    long_ago, now = time.time() - 400 * 86400, time.time()
    people = SqliteStorage(db, migrations=ALL_MIGRATIONS, clock=lambda: long_ago)
    await people.open()
    await people.set_consent("idle-person", True)
    await people.save_session("idle-person", {"node": "start"})
    await people.close()
    conversations = IntegrationStore(db)
    await conversations.open()
    _, key = await conversations.create_key("chu-a")
    for cid, at in (("conv_idle", long_ago), ("conv_recent", now)):
        row = Conversation(cid, key.id, "chu-a", {"node": "start"}, (), at, at)
        await conversations.save_turn(row, created=True, lines=[])
    await conversations.close()

    async with FakeBotAPI() as api:
        settings = Settings(
            telegram_token=TOKEN,
            telegram_api_base_url=api.base_url,
            secret=b"test-pseudonym-secret-0123456789",
            db_path=db,
            telegram_rate=0,
        )
        world = build_world(settings, kb)
        app = web_app(world)
        async with serve(app):
            scheduler = app.state.scheduler
            assert scheduler is world.jobs.scheduler
            channel = app.state.telegram
            assert channel.scheduler is scheduler
            assert channel.features.scheduler.scheduler is scheduler  # follow-ups
            assert {n for n in scheduler.scheduled() if n.startswith("retention")} <= {"retention"}
            check = IntegrationStore(db)
            await check.open()
            try:
                await eventually(
                    lambda: _gone(check, world.storage),
                    "the start-up retention erased the idle person and API conversation",
                )
                assert await check.load_conversation("conv_recent", "chu-a") is not None
            finally:
                await check.close()


async def _gone(conversations: IntegrationStore, people: Storage) -> bool:
    return (
        await conversations.load_conversation("conv_idle", "chu-a") is None
        and await people.load_session("idle-person") is None
    )
