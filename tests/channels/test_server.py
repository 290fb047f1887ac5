"""The ASGI app: health check, plugging in routes and lifespans, serving without Telegram."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bot.config import Settings
from bot.engine.flow import Engine
from bot.server import build_app, build_server_app
from tests.harness.servers import serve

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
