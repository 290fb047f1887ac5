"""Who may call the API and how often, seen from the client: a public widget key is limited per
visitor (address), a secret key per key; revoking a key takes effect; a body sent too slowly is
refused with 408 and the connection closed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from bot.channels.http import ConversationApi, RateLimiter
from bot.engine.flow import Engine
from bot.server import build_app
from bot.storage.integration import IntegrationStore


@dataclass
class Site:
    api: ConversationApi
    store: IntegrationStore
    widget_key: str
    secret_key: str

    @contextlib.asynccontextmanager
    async def client(
        self, key: str, address: str = "192.0.2.1"
    ) -> AsyncIterator[httpx.AsyncClient]:
        """A client calling from ``address`` (what the server sees as the peer's address)."""
        transport = httpx.ASGITransport(app=_app(self.api), client=(address, 50_000))
        headers = {"authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test/api/v1", headers=headers
        ) as client:
            yield client


def _app(api: ConversationApi) -> Starlette:
    return build_app(routes=api.routes())


@pytest.fixture
async def site(engine: Engine, tmp_path: Path) -> AsyncIterator[Site]:
    store = IntegrationStore(tmp_path / "passerelle.db")
    await store.open()
    widget_key, _ = await store.create_key("chu-a", "widget")
    secret_key, _ = await store.create_key("chu-a")
    api = ConversationApi(
        engine, store, limiter=RateLimiter(rate=0.01, burst=2), key_cache_seconds=0.0
    )
    try:
        yield Site(api, store, widget_key, secret_key)
    finally:
        await store.close()


async def statuses(client: httpx.AsyncClient, count: int) -> list[int]:
    return [(await client.post("/conversations", json={})).status_code for _ in range(count)]


async def test_one_visitor_exhausting_the_widget_key_leaves_others_served(site: Site) -> None:
    async with site.client(site.widget_key, "192.0.2.1") as first:
        assert await statuses(first, 3) == [201, 201, 429]
    async with site.client(site.widget_key, "192.0.2.2") as second:
        assert await statuses(second, 1) == [201]


async def test_a_secret_key_has_one_allowance_whatever_the_address(site: Site) -> None:
    async with site.client(site.secret_key, "192.0.2.1") as first:
        assert await statuses(first, 2) == [201, 201]
    async with site.client(site.secret_key, "192.0.2.2") as second:
        limited = await second.post("/conversations", json={})
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1


async def test_a_revoked_key_is_refused_from_the_next_request(site: Site) -> None:
    [record] = [k for k in await site.store.list_keys() if k.kind == "api"]
    async with site.client(site.secret_key) as client:
        assert (await client.post("/conversations", json={})).status_code == 201
        assert await site.store.revoke_key(record.id)
        refused = await client.post("/conversations", json={})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_a_body_that_never_ends_gets_408_and_the_connection_closed(
    engine: Engine, site: Site
) -> None:
    api = ConversationApi(engine, site.store, key_cache_seconds=0.0, body_timeout=0.2)
    never = asyncio.Event()

    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"context": '
        await never.wait()  # the rest never comes
        yield b"}"

    transport = httpx.ASGITransport(app=_app(api))
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1") as client:
        response = await client.post(
            "/conversations",
            content=trickle(),
            headers={"authorization": f"Bearer {site.secret_key}"},
        )
    assert response.status_code == 408
    assert response.json()["error"]["code"] == "request_timeout"
    assert response.headers["connection"] == "close"
    assert "0.2 s" in response.json()["error"]["message"]
