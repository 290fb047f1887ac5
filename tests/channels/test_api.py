"""The conversation API as an integrator sees it: a real HTTP client against a real uvicorn
server on loopback, with a durable store (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bot.channels.http import ConversationApi, RateLimiter
from bot.engine.flow import Engine
from bot.server import create_app
from bot.storage.factory import integration_store
from tests.harness.api import Api, make_keys, run_api, start
from tests.harness.personas import PATIENT_TRAINER
from tests.harness.servers import serve


@pytest.fixture
def server(engine: Engine, database: str) -> Iterator[Api]:
    yield from run_api(engine, database)


def choices(turn: dict[str, Any]) -> list[str]:
    return [c["id"] for reply in turn["replies"] for c in reply["choices"]]


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def test_a_conversation_by_choices_reaches_a_recommendation(server: Api) -> None:
    with server.client() as client:
        response = client.post("/conversations", json={})
        assert response.status_code == 201
        created = response.json()
        cid = created["conversation_id"]
        assert response.headers["location"] == f"/api/v1/conversations/{cid}"
        assert created["recommendation"] is None
        assert created["node"]
        assert {"patient", "proche"} <= set(choices(created))
        for reply in created["replies"]:
            assert set(reply) == {"text", "choices", "image_url", "image_alt"}
            assert reply["image_url"] is None
        turn = created
        for choice in PATIENT_TRAINER:
            assert choice in choices(turn)
            response = client.post(f"/conversations/{cid}/messages", json={"choice": choice})
            assert response.status_code == 200, response.text
            turn = response.json()
        assert turn["node"] == "recommendation"
        reco = turn["recommendation"]
        assert reco["roles"][0]["id"] == "patient_partenaire_formateur"
        assert reco["roles"][0]["title"] and reco["roles"][0]["reasons"]
        assert reco["contacts"] and reco["territory"] == "fr-occitanie"
        assert all(c["website"].startswith("http") for c in reco["contacts"])


def test_free_text_is_understood(server: Api) -> None:
    with server.client() as client:
        cid = start(client)["conversation_id"]
        response = client.post(f"/conversations/{cid}/messages", json={"text": "je suis patiente"})
        assert response.status_code == 200
        turn = response.json()
        assert turn["node"] == "experience", "the typed answer moved the conversation on"
        assert "chronique" in choices(turn)
        got = client.get(f"/conversations/{cid}").json()
        assert got["answers"] == [{"question": "profil", "choice": "patient"}]


def test_get_returns_state_and_transcript_then_delete_erases(server: Api) -> None:
    with server.client() as client:
        cid = start(client, context="chu-a")["conversation_id"]
        client.post(f"/conversations/{cid}/messages", json={"choice": "patient"})
        client.post(f"/conversations/{cid}/messages", json={"text": "maladie chronique"})
        got = client.get(f"/conversations/{cid}")
        assert got.status_code == 200
        data = got.json()
        assert data["conversation_id"] == cid
        assert data["context"] == "chu-a"
        assert data["answers"][0] == {"question": "profil", "choice": "patient"}
        authors = [line["author"] for line in data["transcript"]]
        assert authors[0] == "bot" and authors.count("person") == 2
        person = [line for line in data["transcript"] if line["author"] == "person"]
        assert person[0]["choice"] == "patient" and person[1]["text"] == "maladie chronique"
        deleted = client.delete(f"/conversations/{cid}")
        assert deleted.status_code == 204 and deleted.content == b""
        assert_error(client.get(f"/conversations/{cid}"), 404, "conversation_not_found")
        assert_error(client.delete(f"/conversations/{cid}"), 404, "conversation_not_found")


def test_another_key_sees_nothing(server: Api) -> None:
    with server.client() as client, server.client(server.other_key) as other:
        cid = start(client)["conversation_id"]
        assert_error(other.get(f"/conversations/{cid}"), 404, "conversation_not_found")
        assert_error(
            other.post(f"/conversations/{cid}/messages", json={"choice": "patient"}),
            404,
            "conversation_not_found",
        )
        assert_error(other.delete(f"/conversations/{cid}"), 404, "conversation_not_found")
        assert client.get(f"/conversations/{cid}").status_code == 200


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic abc", "psk_abc"])
def test_missing_or_wrong_key_is_401(server: Api, header: str | None) -> None:
    headers = {"authorization": header} if header is not None else {}
    response = httpx.post(f"{server.url}/api/v1/conversations", json={}, headers=headers)
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_revoked_key_is_401(server: Api) -> None:
    with server.client(server.revoked_key) as client:
        assert_error(client.post("/conversations", json={}), 401, "unauthorized")


def test_malformed_json_is_400(server: Api) -> None:
    with server.client() as client:
        response = client.post(
            "/conversations", content=b'{"context": ', headers={"content-type": "application/json"}
        )
        assert_error(response, 400, "invalid_json")
        cid = start(client)["conversation_id"]
        response = client.post(f"/conversations/{cid}/messages", content=b"\xff\xfe{")
        assert_error(response, 400, "invalid_json")


def test_unknown_fields_and_bad_shapes_are_422(server: Api) -> None:
    with server.client() as client:
        assert_error(client.post("/conversations", json={"contexte": "x"}), 422, "unknown_field")
        assert_error(client.post("/conversations", json=[1]), 422, "invalid_request")
        assert_error(
            client.post("/conversations", json={"context": "<script>"}), 422, "invalid_request"
        )
        cid = start(client)["conversation_id"]
        url = f"/conversations/{cid}/messages"
        assert_error(client.post(url, json={"text": "a", "extra": 1}), 422, "unknown_field")
        assert_error(
            client.post(url, json={"text": "a", "choice": "patient"}), 422, "invalid_request"
        )
        assert_error(client.post(url, json={}), 422, "invalid_request")
        assert_error(client.post(url, json={"text": 3}), 422, "invalid_request")
        # Every message is in French, pydantic's own included.
        both = client.post(url, json={"text": "a", "choice": "patient"}).json()["error"]
        assert both["message"] == (
            "Requête invalide : donnez soit « text », soit « choice » (un seul des deux)."
        )
        typed = client.post(url, json={"text": 3}).json()["error"]
        assert (
            typed["message"] == "Requête invalide (text) : une chaîne de caractères est attendue."
        )
        bad_context = client.post("/conversations", json={"context": "<script>"}).json()["error"]
        assert "A-Z a-z 0-9" in bad_context["message"]


def test_text_over_2000_characters_is_422_and_2000_is_fine(server: Api) -> None:
    with server.client() as client:
        cid = start(client)["conversation_id"]
        url = f"/conversations/{cid}/messages"
        assert_error(client.post(url, json={"text": "é" * 2001}), 422, "text_too_long")
        assert client.post(url, json={"text": "é" * 2000}).status_code == 200


def test_body_over_16_kib_is_413(server: Api) -> None:
    with server.client() as client:
        cid = start(client)["conversation_id"]
        big = b'{"text": "' + b"a" * 17_000 + b'"}'
        assert_error(
            client.post(f"/conversations/{cid}/messages", content=big), 413, "body_too_large"
        )

        def chunks() -> Iterator[bytes]:  # no Content-Length: the server must count
            yield b'{"text": "'
            for _ in range(20):
                yield b"a" * 1024
            yield b'"}'

        response = client.post(f"/conversations/{cid}/messages", content=chunks())
        assert_error(response, 413, "body_too_large")
        # The conversation is untouched and still works.
        assert (
            client.post(f"/conversations/{cid}/messages", json={"text": "aide"}).status_code == 200
        )


def test_unknown_conversation_is_404(server: Api) -> None:
    with server.client() as client:
        url = "/conversations/conv_does_not_exist/messages"
        assert_error(client.post(url, json={"text": "bonjour"}), 404, "conversation_not_found")
        assert_error(client.get("/conversations/nope"), 404, "conversation_not_found")


def test_unknown_choice_is_422_and_changes_nothing(server: Api) -> None:
    with server.client() as client:
        cid = start(client)["conversation_id"]
        url = f"/conversations/{cid}/messages"
        assert_error(client.post(url, json={"choice": "licorne"}), 422, "unknown_choice")
        assert_error(client.post(url, json={"choice": "cmd:rm-rf"}), 422, "unknown_choice")
        # An engine command is always accepted, and the conversation is where it was.
        assert client.post(url, json={"choice": "cmd:aide"}).status_code == 200
        assert client.post(url, json={"choice": "patient"}).status_code == 200
        # A choice of an earlier step is no longer offered.
        assert_error(client.post(url, json={"choice": "patient"}), 422, "unknown_choice")


def test_unknown_routes_and_methods_answer_json(server: Api) -> None:
    with server.client() as client:
        assert_error(client.get("/nothing-here"), 404, "not_found")
        assert_error(client.put("/conversations", json={}), 405, "method_not_allowed")


def test_cors_preflight_lets_a_hospital_page_call_the_api(server: Api) -> None:
    response = httpx.options(
        f"{server.url}/api/v1/conversations",
        headers={
            "origin": "https://www.chu-exemple.fr",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    # Answers, errors included, are readable by the page (its code can tell 401 from 429).
    origin = {"origin": "https://www.chu-exemple.fr"}
    refused = httpx.post(f"{server.url}/api/v1/conversations", json={}, headers=origin)
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == "*"
    with server.client() as client:
        created = client.post("/conversations", json={}, headers=origin)
        assert created.headers["access-control-allow-origin"] == "*"
        assert "location" in created.headers["access-control-expose-headers"].lower()


def test_openapi_document_describes_the_api(server: Api) -> None:
    response = httpx.get(f"{server.url}/api/v1/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    assert set(paths["/conversations"]) == {"post"}
    assert set(paths["/conversations/{conversation_id}"]) == {"get", "delete"}
    responses = paths["/conversations/{conversation_id}/messages"]["post"]["responses"]
    assert {"200", "400", "401", "404", "413", "422", "429"} <= set(responses)
    assert "ConversationCreated" in doc["components"]["schemas"]


def test_rate_limit_per_key_gives_429_with_retry_after(engine: Engine, database: str) -> None:
    for api in run_api(engine, database, limiter=RateLimiter(rate=0.5, burst=3)):
        with api.client() as client, api.client(api.other_key) as other:
            statuses = [client.post("/conversations", json={}).status_code for _ in range(3)]
            assert statuses == [201, 201, 201]
            limited = client.post("/conversations", json={})
            assert_error(limited, 429, "rate_limited")
            assert int(limited.headers["retry-after"]) >= 1
            # Another key has its own allowance.
            assert other.post("/conversations", json={}).status_code == 201


def test_conversation_survives_a_server_restart(engine: Engine, database: str) -> None:
    db = database
    key, _, _ = asyncio.run(make_keys(db))
    headers = {"authorization": f"Bearer {key}"}
    with serve(create_app(ConversationApi(engine, integration_store(db)))) as url:
        cid = httpx.post(f"{url}/api/v1/conversations", json={}, headers=headers).json()[
            "conversation_id"
        ]
        httpx.post(
            f"{url}/api/v1/conversations/{cid}/messages",
            json={"choice": "patient"},
            headers=headers,
        )
    with serve(create_app(ConversationApi(engine, integration_store(db)))) as url:
        response = httpx.post(
            f"{url}/api/v1/conversations/{cid}/messages",
            json={"choice": "chronique"},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        assert (
            len(httpx.get(f"{url}/api/v1/conversations/{cid}", headers=headers).json()["answers"])
            == 2
        )
