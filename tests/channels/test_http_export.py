"""A person's data export (``GET /conversations/{id}``) holds what the features kept about the
conversation, in the shape the served OpenAPI document describes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest

from bot.app.engines import build_engine
from bot.app.features import Features
from bot.channels.http import ConversationApi, RateLimiter
from bot.engine import barometer as mode
from bot.knowledge.model import KnowledgeBase
from bot.server import build_app
from bot.storage.features import FeatureStore
from bot.storage.integration import IntegrationStore

SCORES = [1, 2, 2, 1, 2, 2, 3, 3, 1, 1, 2]


@pytest.fixture
async def client(kb: KnowledgeBase, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    db = tmp_path / "passerelle.db"
    store = IntegrationStore(db)
    engine = build_engine(kb)
    features = Features(engine, FeatureStore(db))
    await store.open()
    await features.open()
    key, _ = await store.create_key("chu-a")
    api = ConversationApi(engine, store, limiter=RateLimiter(1e4, 10_000), features=features)
    transport = httpx.ASGITransport(app=build_app(routes=api.routes()))
    try:
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://test/api/v1",
            headers={"authorization": f"Bearer {key}"},
        ) as made:
            yield made
    finally:
        await features.close()
        await store.close()


async def say(client: httpx.AsyncClient, cid: str, body: dict[str, str]) -> None:
    response = await client.post(f"/conversations/{cid}/messages", json=body)
    assert response.status_code == 200, response.text


async def test_the_export_lists_the_barometer_rating_as_documented(
    client: httpx.AsyncClient,
) -> None:
    cid = (await client.post("/conversations", json={})).json()["conversation_id"]
    await say(client, cid, {"choice": "cmd:" + mode.NAME})
    await say(client, cid, {"choice": mode.RATER + "usager"})
    for score in SCORES:
        await say(client, cid, {"text": str(score)})
    await say(client, cid, {"choice": mode.CREATE})

    exported = (await client.get(f"/conversations/{cid}")).json()
    [rating] = exported["barometer_ratings"]
    assert rating["rater"] == "usager" and rating["round"] >= 1 and rating["group"]
    assert exported["followups"] == []  # no follow-up on the API

    document: dict[str, Any] = (await client.get("/openapi.json")).json()
    schema = {"$ref": "#/components/schemas/ConversationOut", **document}
    errors = [str(error) for error in jsonschema_rs.validator_for(schema).iter_errors(exported)]
    assert errors == []
    item = document["components"]["schemas"]["BarometerRatingOut"]
    assert set(item["required"]) == set(rating)  # every field documented, none left out
