"""schemathesis against the served OpenAPI document: generated requests never get a 5xx, and
every answer matches the documented status codes, content types and schemas."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from bot.app.engines import build_engine
from bot.app.features import Features
from bot.channels.http import ConversationApi, RateLimiter
from bot.knowledge.model import KnowledgeBase
from bot.server import create_app
from bot.storage.features import FeatureStore
from bot.storage.integration import IntegrationStore
from tests.harness.servers import serve

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


async def make_key(db: Path) -> str:
    store = IntegrationStore(db)
    await store.open()
    key, _ = await store.create_key("chu-a")
    await store.close()
    return key


def test_api_matches_its_openapi_document(kb: KnowledgeBase, tmp_path: Path) -> None:
    db = tmp_path / "passerelle.db"
    key = asyncio.run(make_key(db))
    headers = {"authorization": f"Bearer {key}"}
    engine = build_engine(kb)
    api = ConversationApi(
        engine,
        IntegrationStore(db),
        limiter=RateLimiter(1e4, 10_000),
        features=Features(engine, FeatureStore(db)),
    )
    with serve(create_app(api)) as url:
        # The document the server itself serves, not the one in memory.
        schema = schemathesis.openapi.from_url(f"{url}/api/v1/openapi.json")
        # A real conversation, so generated messages also hit an existing one.
        created = httpx.post(f"{url}/api/v1/conversations", json={}, headers=headers)
        conversation_id = created.json()["conversation_id"]
        results = list(schema.get_all_operations())
        assert [r for r in results if not isinstance(r, Ok)] == [], "the served schema is valid"
        operations = [r.ok() for r in results if isinstance(r, Ok)]
        assert len(operations) == 5  # stats, and four on conversations
        seen: set[int] = set()
        modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
        for operation, mode in itertools.product(operations, modes):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
            def check(case: schemathesis.Case[Any]) -> None:
                if case.path_parameters and case.path_parameters.get("conversation_id") == "":
                    return
                if case.path_parameters and case.operation.method != "delete":
                    case.path_parameters["conversation_id"] = conversation_id
                response = case.call_and_validate(
                    base_url=f"{url}/api/v1", headers=headers, checks=CHECKS
                )
                seen.add(response.status_code)

            check()
        assert 200 in seen and 201 in seen and 422 in seen


def test_every_operation_is_documented_with_examples_errors_and_webhooks(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    api = ConversationApi(build_engine(kb), IntegrationStore(tmp_path / "p.db"))
    with serve(create_app(api)) as url:
        document = httpx.get(f"{url}/api/v1/openapi.json").json()
    schemas = document["components"]["schemas"]

    def validate(schema: dict[str, Any], value: Any) -> None:
        validator = jsonschema_rs.validator_for({**schema, "components": document["components"]})
        assert validator.is_valid(value), (schema, value, list(validator.iter_errors(value)))

    def examples_of(content: dict[str, Any]) -> list[Any]:
        media = content["application/json"]
        found = [example["value"] for example in media.get("examples", {}).values()]
        assert found, f"no example for {media['schema']}"
        for value in found:
            validate(media["schema"], value)
        return found

    operations = [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]
    assert len(operations) == 5
    codes_seen: set[str] = set()
    for path, method, operation in operations:
        assert "500" in operation["responses"], (path, method)
        if "requestBody" in operation:
            examples_of(operation["requestBody"]["content"])
        for status, response in operation["responses"].items():
            if "content" in response:
                for example in examples_of(response["content"]):
                    if status >= "400":
                        codes_seen.add(example["error"]["code"])
    # Every error code is an enum value, and every one has an example somewhere.
    enum = set(schemas["ErrorDetail"]["properties"]["code"]["enum"])
    assert codes_seen <= enum
    assert enum - codes_seen <= {"bad_request", "not_found", "method_not_allowed"}
    # The webhooks section describes each event's payload, with an example that fits it.
    assert set(document["webhooks"]) == {"contact.requested", "conversation.completed"}
    for hook in document["webhooks"].values():
        [example] = examples_of(hook["post"]["requestBody"]["content"])
        assert example["data"]["kb_version"]
    requested = schemas["ContactRequestedData"]
    assert {"how_to_reach", "consent", "conversation_id"} <= set(requested["properties"])
