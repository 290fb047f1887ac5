"""``POST /admin/reload``: only the admin token reloads; each refusal says why in JSON."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from bot.app.reload import EngineHolder, Reloader
from bot.channels.http.admin import admin_routes
from bot.engine.flow import Engine
from bot.server import build_app
from tests.harness.paths import CONTENUS

TOKEN = "admin-token-for-tests"


@pytest.fixture
def holder(engine: Engine) -> EngineHolder:
    return EngineHolder(engine)


@contextlib.asynccontextmanager
async def client_for(holder: EngineHolder, token: str | None) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(routes=admin_routes(Reloader(CONTENUS, [holder]), token))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
async def client(holder: EngineHolder) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(holder, TOKEN) as made:
        yield made


async def test_without_a_bearer_token_401_and_nothing_reloaded(
    client: httpx.AsyncClient, holder: EngineHolder, engine: Engine
) -> None:
    response = await client.post("/admin/reload")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {
        "error": {"code": "unauthorized", "message": "Jeton d'administration manquant."}
    }
    assert holder.engine is engine


async def test_a_wrong_token_is_refused_with_403(
    client: httpx.AsyncClient, holder: EngineHolder, engine: Engine
) -> None:
    response = await client.post("/admin/reload", headers={"authorization": "Bearer nope"})
    assert response.status_code == 403
    assert response.json() == {
        "error": {"code": "forbidden", "message": "Jeton d'administration refusé."}
    }
    assert holder.engine is engine


async def test_no_admin_token_configured_refuses_every_token(
    holder: EngineHolder, engine: Engine
) -> None:
    async with client_for(holder, None) as client:
        response = await client.post("/admin/reload", headers={"authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
    assert holder.engine is engine


async def test_the_admin_token_reloads_and_names_the_version(
    client: httpx.AsyncClient, holder: EngineHolder, engine: Engine
) -> None:
    response = await client.post("/admin/reload", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"reloaded": True, "version": engine.kb.version}
    assert holder.engine is not engine  # a new engine, built from the files just read
