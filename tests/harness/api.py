"""The conversation API as a hospital's integrator meets it: keys created the way
``passerelle keys create`` does, a real server on loopback, a client with a key."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bot.channels.http import ConversationApi, RateLimiter
from bot.engine.flow import Engine
from bot.server import create_app
from bot.storage.factory import integration_store
from tests.harness.servers import serve


@dataclass
class Api:
    url: str
    key: str
    other_key: str
    revoked_key: str
    db: str

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {key or self.key}"}
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=10)


async def make_keys(db: str) -> tuple[str, str, str]:
    """Created the way `passerelle keys create` does, before the server starts."""
    store = integration_store(db)
    await store.open()
    key, _ = await store.create_key("chu-a")
    other, _ = await store.create_key("chu-b")
    revoked, record = await store.create_key("chu-a")
    await store.revoke_key(record.id)
    await store.close()
    return key, other, revoked


def run_api(engine: Engine, db: str | Path, limiter: RateLimiter | None = None) -> Iterator[Api]:
    """The API on ``db``: a PostgreSQL URL, a SQLite file, or a directory (its passerelle.db)."""
    db = str(Path(db) / "passerelle.db") if Path(db).is_dir() else str(db)
    key, other, revoked = asyncio.run(make_keys(db))
    api = ConversationApi(engine, integration_store(db), limiter=limiter or RateLimiter(1000, 1000))
    with serve(create_app(api)) as url:
        yield Api(url, key, other, revoked, db)


def start(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/conversations", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data
