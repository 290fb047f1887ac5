"""Webhooks reach an independent receiver: a plain ``http.server`` on loopback that checks
Standard Webhooks signatures with its own code (not ours), even when it was down for a while
or the delivering process was killed mid-delivery."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
import standardwebhooks

from bot.adapters.webhooks import RetryPolicy, WebhookWorker
from bot.channels.http import ConversationApi
from bot.engine.flow import Engine
from bot.knowledge.establishments import load_establishments
from bot.server import create_app
from bot.storage.factory import integration_store
from bot.storage.integration import OutboxEvent
from tests.harness.ports import free_port
from tests.harness.servers import serve
from tests.harness.wait import eventually, wait_until, within
from tests.harness.webhooks import (
    SECRET,
    Receiver,
    run_to_contact_request,
    verify,
    write_establishments,
)

ROOT = Path(__file__).resolve().parents[2]


async def outbox(db: str) -> list[Any]:
    store = integration_store(db)
    await store.open()
    try:
        return await store.outbox_list()
    finally:
        await store.close()


def test_receiver_down_then_up_gets_every_event(
    engine: Engine, tmp_path: Path, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHU_A_SECRET", SECRET)
    port = free_port()  # nobody listens there yet: the receiver is down
    establishments = load_establishments(write_establishments(tmp_path / "etab.yaml", port))
    db = database

    async def make_key() -> str:
        store = integration_store(db)
        await store.open()
        key, _ = await store.create_key("chu-a")
        await store.close()
        return key

    key = asyncio.run(make_key())
    store = integration_store(db)
    worker = WebhookWorker(
        store, establishments, policy=RetryPolicy(base=0.05, cap=0.3), idle_poll=0.2
    )
    # The engine offers the hand-off only towards establishments whose webhook will get it.
    engine = Engine(engine.kb, receivers=tuple(establishments.values()))
    api = ConversationApi(engine, store, establishments, on_events=worker.wake)
    receiver: Receiver | None = None
    try:
        with (
            serve(create_app(api, worker=worker)) as url,
            httpx.Client(
                base_url=url + "/api/v1", headers={"authorization": f"Bearer {key}"}
            ) as client,
        ):
            conversations = [run_to_contact_request(client, "chu-a") for _ in range(3)]
            wait_until(lambda: any(item.attempts >= 2 for item in asyncio.run(outbox(db))))
            pending = asyncio.run(outbox(db))
            assert len(pending) == 6 and all(item.status == "pending" for item in pending)
            assert all("Connect" in (item.last_error or "") for item in pending if item.attempts)
            receiver = Receiver(port)
            # 3 conversation.completed + 3 contact.requested, to chu-a (context and owner).
            wait_until(lambda: receiver is not None and len(receiver.acked) == 6)
            wait_until(lambda: asyncio.run(outbox(db)) == [], "the outbox delivered")
    finally:
        if receiver is not None:
            receiver.stop()
    assert receiver.rejected == 0, "every signature verifies"
    events = list(receiver.acked.values())
    requested = [e for e in events if e["type"] == "contact.requested"]
    completed = [e for e in events if e["type"] == "conversation.completed"]
    assert len(requested) == 3 and len(completed) == 3
    assert {e["data"]["conversation_id"] for e in requested} == set(conversations)
    for event in requested:
        assert event["data"]["how_to_reach"] == "Par courriel : camille@example.org, plutôt le soir"
        assert event["data"]["consent"] is True
        assert event["data"]["territory"] == "fr-occitanie"
        assert event["data"]["contacts"]
        assert event["data"]["establishments"] == ["chu-a"], "only the one the person accepted"
    for event in completed:
        assert set(event["data"]) == {
            "roles",
            "territory",
            "context",
            "kb_version",
            "establishment",
        }, "anonymous: no conversation id, nothing typed"
        assert event["data"]["establishment"] == "chu-a", "tagged with the creating key's"
        assert event["data"]["roles"][0] == "patient_partenaire_formateur"
    # Retries kept the same webhook-id: the receiver saw duplicates of nothing it acknowledged.
    assert asyncio.run(outbox(db)) == [], "acknowledged events leave the outbox"


def test_tampered_body_or_timestamp_fails_verification(
    engine: Engine, tmp_path: Path, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHU_A_SECRET", SECRET)
    receiver = Receiver()
    establishments = load_establishments(write_establishments(tmp_path / "e.yaml", receiver.port))
    db = database

    async def deliver_one() -> None:
        store = integration_store(db)
        await store.open()
        await store.enqueue(
            [OutboxEvent("msg_1", "chu-a", "conversation.completed", '{"type":"x","data":{}}')]
        )
        worker = WebhookWorker(store, establishments)
        await worker.open()
        await within(worker.run_once(), "one pass of the webhook worker")
        await worker.stop()
        await store.close()

    try:
        asyncio.run(deliver_one())
    finally:
        receiver.stop()
    assert list(receiver.acked) == ["msg_1"]
    headers, body = receiver.raw[0]
    assert headers["webhook-signature"].startswith("v1,")
    assert verify(SECRET, headers, body)
    assert not verify(SECRET, headers, body.replace(b'"x"', b'"y"'))
    assert not verify(SECRET, {**headers, "webhook-timestamp": str(int(time.time()) + 1)}, body)
    assert not verify(SECRET, {**headers, "webhook-id": "msg_2"}, body)
    other = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
    assert not verify(other, headers, body)


@pytest.fixture
def worker_env(database: str) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "PASSERELLE_DB": database,
        "PASSERELLE_SECRET": "webhooks-pseudonym-secret-0123456789",
        # PostgreSQL: a killed worker's claims lapse after this (SQLite claims nothing).
        "PASSERELLE_CLAIM_SECONDS": "1",
        "CHU_A_SECRET": SECRET,
        "PASSERELLE_WEBHOOK_RETRY_BASE": "0.05",
    }
    env.pop("TELEGRAM_BOT_TOKEN", None)
    yield env


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "webhooks", "run"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.readline()  # "Livraison des webhooks en cours…": it is running
    return process


def test_worker_killed_mid_delivery_delivers_everything_after_restart(
    tmp_path: Path, worker_env: dict[str, str]
) -> None:
    receiver = Receiver()
    worker_env["PASSERELLE_ETABLISSEMENTS"] = str(
        write_establishments(tmp_path / "etab.yaml", receiver.port)
    )
    db = worker_env["PASSERELLE_DB"]
    ids = [f"msg_{i:03d}" for i in range(40)]

    async def fill() -> None:
        store = integration_store(db)
        await store.open()
        await store.enqueue(
            [
                OutboxEvent(i, "chu-a", "contact.requested", json.dumps({"n": i}), "conv_x")
                for i in ids
            ]
        )
        await store.close()

    asyncio.run(fill())
    receiver.hold.set()  # the first requests hang: the worker is killed while sending them
    first = start_worker(worker_env)
    try:
        wait_until(lambda: receiver.held >= 1)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    assert receiver.acked == {}, "nothing was acknowledged before the kill"
    receiver.hold.clear()
    second = start_worker(worker_env)
    try:
        wait_until(lambda: set(receiver.acked) == set(ids))
        wait_until(lambda: asyncio.run(outbox(db)) == [])
    finally:
        second.send_signal(signal.SIGTERM)
        second.communicate(timeout=10)
        receiver.stop()
    assert second.returncode == 0
    assert receiver.rejected == 0


def test_failures_dead_letter_then_retry_resends(
    tmp_path: Path, worker_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHU_A_SECRET", SECRET)
    receiver = Receiver()
    receiver.status = 500
    path = write_establishments(tmp_path / "etab.yaml", receiver.port)
    establishments = load_establishments(path)
    db = worker_env["PASSERELLE_DB"]

    async def fail_for_a_while() -> None:
        store = integration_store(db)
        await store.open()
        await store.enqueue([OutboxEvent("msg_dead", "chu-a", "contact.requested", "{}")])
        worker = WebhookWorker(
            store,
            establishments,
            policy=RetryPolicy(
                base=0.02, cap=0.05, give_up_after=2.0
            ),  # 2 s: retried even when busy
            idle_poll=0.05,
        )
        await worker.start()

        async def died() -> bool:
            return any(item.status == "dead" for item in await store.outbox_list())

        await eventually(died, "the event given up (dead)")
        await worker.stop()
        await store.close()

    try:
        asyncio.run(fail_for_a_while())
        items = asyncio.run(outbox(db))
        assert [(i.id, i.status) for i in items] == [("msg_dead", "dead")]
        assert items[0].attempts >= 2 and items[0].last_error == "HTTP 500"
        worker_env["PASSERELLE_ETABLISSEMENTS"] = str(path)
        status = subprocess.run(
            [sys.executable, "-m", "bot.cli", "webhooks", "status"],
            env=worker_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "0 en attente, 1 en échec définitif" in status.stdout
        assert "msg_dead" in status.stdout and "HTTP 500" in status.stdout
        receiver.status = 204
        retry = subprocess.run(
            [sys.executable, "-m", "bot.cli", "webhooks", "retry", "msg_dead", "--now"],
            env=worker_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert retry.returncode == 0, retry.stderr
        assert "Livré" in retry.stdout
    finally:
        receiver.stop()
    assert "msg_dead" in receiver.acked
    assert asyncio.run(outbox(db)) == []


def test_deliveries_verify_with_the_official_package_and_match_the_openapi_webhooks(
    engine: Engine, tmp_path: Path, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a hospital would do: verify with `standardwebhooks` (PyPI), then read the payload
    as the served OpenAPI document's `webhooks` section describes it."""
    monkeypatch.setenv("CHU_A_SECRET", SECRET)
    receiver = Receiver()
    establishments = load_establishments(write_establishments(tmp_path / "e.yaml", receiver.port))
    db = database
    key = asyncio.run(create_key(db))
    store = integration_store(db)
    worker = WebhookWorker(store, establishments, policy=RetryPolicy(base=0.05), idle_poll=0.2)
    engine = Engine(engine.kb, receivers=tuple(establishments.values()))
    api = ConversationApi(engine, store, establishments, on_events=worker.wake)
    try:
        with (
            serve(create_app(api, worker=worker)) as url,
            httpx.Client(
                base_url=url + "/api/v1", headers={"authorization": f"Bearer {key}"}
            ) as client,
        ):
            cid = run_to_contact_request(client, "chu-a")
            wait_until(lambda: len(receiver.acked) == 2)
            document = client.get("/openapi.json").json()
    finally:
        receiver.stop()
    official = standardwebhooks.Webhook(SECRET)
    seen = {}
    for headers, body in receiver.raw:
        event = official.verify(body, headers)
        kind = event["type"]
        schema = document["webhooks"][kind]["post"]["requestBody"]["content"]["application/json"]
        validator = jsonschema_rs.validator_for(
            {**schema["schema"], "components": document["components"]}
        )
        assert validator.is_valid(event), list(validator.iter_errors(event))
        seen[kind] = event["data"]
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            official.verify(body.replace(b"chu-a", b"chu-b"), headers)
    assert set(seen) == {"contact.requested", "conversation.completed"}
    assert seen["contact.requested"]["conversation_id"] == cid
    assert seen["contact.requested"]["how_to_reach"].startswith("Par courriel")
    assert seen["contact.requested"]["establishments"] == ["chu-a"]


async def create_key(db: str) -> str:
    store = integration_store(db)
    await store.open()
    key, _ = await store.create_key("chu-a")
    await store.close()
    return key
