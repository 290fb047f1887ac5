"""The web chat's files and demo page, as a browser fetches them (headers included)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from bot.channels.http.webchat import webchat_routes
from bot.server import build_app

ORIGIN = "https://hopital.example"


@contextlib.asynccontextmanager
async def client_for(demo_key: str | None) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(routes=webchat_routes(demo_key)))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for("pwk_demo") as made:
        yield made


@pytest.mark.parametrize(
    ("path", "media_type", "marker"),
    [("/widget.js", "text/javascript", "data-key"), ("/widget.css", "text/css", "{")],
)
async def test_widget_files_load_cross_origin_and_are_cached_briefly(
    client: httpx.AsyncClient, path: str, media_type: str, marker: str
) -> None:
    response = await client.get(path, headers={"origin": ORIGIN})
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{media_type}; charset=utf-8"
    assert response.headers["access-control-allow-origin"] == "*"  # <script integrity> works
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "public, max-age=300"
    assert marker in response.text


async def test_the_demo_page_embeds_the_demo_key_escaped_and_is_never_cached() -> None:
    async with client_for('pwk_"><script>alert(1)</script>') as client:
        response = await client.get("/")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.headers["cache-control"] == "no-store"
        assert "<script>alert(1)</script>" not in response.text
        assert "pwk_&quot;&gt;&lt;script&gt;" in response.text
        assert "{{WIDGET_KEY}}" not in response.text


async def test_without_a_demo_key_the_page_carries_none(client: httpx.AsyncClient) -> None:
    async with client_for(None) as bare:
        page = (await bare.get("/")).text
        assert "{{WIDGET_KEY}}" not in page
        assert "pwk_demo" not in page
    assert "pwk_demo" in (await client.get("/")).text
