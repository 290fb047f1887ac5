"""The examples of docs/integration.md run as documented: the API client against a real local
server, the webhook receiver against real deliveries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from bot.adapters.webhooks import RetryPolicy, WebhookWorker
from bot.channels.http import ConversationApi
from bot.engine.flow import Engine
from bot.knowledge.establishments import load_establishments
from bot.server import create_app
from bot.storage.integration import IntegrationStore
from tests.harness.ports import free_port
from tests.harness.servers import serve
from tests.harness.webhooks import SECRET, run_to_contact_request, write_establishments

ROOT = Path(__file__).resolve().parents[2]
PATIENT_TRAINER = ["patient", "chronique", "stabilise", "former", "fr", "occitanie", "aucune",
                   "aucune", "mensuel"]  # fmt: skip


async def make_key(db: Path) -> str:
    store = IntegrationStore(db)
    await store.open()
    key, _ = await store.create_key("chu-a")
    await store.close()
    return key


def test_the_client_example_runs_a_conversation_to_a_contact_request(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "passerelle.db"
    key = asyncio.run(make_key(db))
    # An establishment with a webhook: the hand-off is offered towards it (nobody listens: the
    # events wait in the outbox, and the example's erasure drops them).
    monkeypatch.setenv("CHU_A_SECRET", SECRET)
    establishments = load_establishments(write_establishments(tmp_path / "e.yaml", free_port()))
    engine = Engine(engine.kb, receivers=tuple(establishments.values()))
    api = ConversationApi(engine, IntegrationStore(db), establishments)
    with serve(create_app(api)) as url:
        result = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "client.py"), *PATIENT_TRAINER],
            env={"PATH": os.environ["PATH"], "PASSERELLE_URL": url, "PASSERELLE_KEY": key},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert "Rôle recommandé : Patient partenaire formateur" in out
        assert "Contact : " in out and "https://" in out
        assert "camille@example.org" in out  # shown back before it is sent
        assert "Votre demande est envoyée à CHU A" in out
        assert "Conversation effacée." in out
    with contextlib.closing(sqlite3.connect(db)) as connection:
        (left,) = connection.execute("SELECT COUNT(*) FROM api_conversations").fetchone()
        (pending,) = connection.execute("SELECT COUNT(*) FROM webhook_outbox").fetchone()
    assert left == 0, "the example erased its conversation"
    assert pending == 0, "and the events about it that were not delivered yet"


def test_the_receiver_example_verifies_and_prints_each_event_once(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = SECRET
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "webhook_receiver.py")],
        env={"PATH": os.environ["PATH"], "WEBHOOK_SECRET": secret, "PORT": str(port)},
        stdout=subprocess.PIPE,
        text=True,
    )
    printed: queue.Queue[str] = queue.Queue()
    assert receiver.stdout is not None

    def pump() -> None:
        for line in receiver.stdout or []:
            printed.put(line)

    reader = threading.Thread(target=pump)
    reader.start()
    try:
        assert printed.get(timeout=30).startswith("Prêt sur")
        monkeypatch.setenv("CHU_A_SECRET", secret)
        establishments = load_establishments(write_establishments(tmp_path / "e.yaml", port))
        db = tmp_path / "passerelle.db"
        key = asyncio.run(make_key(db))
        store = IntegrationStore(db)
        worker = WebhookWorker(store, establishments, policy=RetryPolicy(base=0.05))
        engine = Engine(engine.kb, receivers=tuple(establishments.values()))
        api = ConversationApi(engine, store, establishments, on_events=worker.wake)
        with (
            serve(create_app(api, worker=worker)) as url,
            httpx.Client(
                base_url=url + "/api/v1", headers={"authorization": f"Bearer {key}"}
            ) as client,
        ):
            run_to_contact_request(client, "chu-a")
            lines = [printed.get(timeout=30) for _ in range(3)]
        # A forged delivery is refused.
        forged = httpx.post(
            f"http://127.0.0.1:{port}/",
            content=b'{"type":"contact.requested"}',
            headers={"webhook-id": "msg_x", "webhook-timestamp": "1", "webhook-signature": "v1,x"},
        )
        assert forged.status_code == 400
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)
        reader.join(timeout=10)
        receiver.stdout.close()
    assert any(line.startswith("À recontacter : Par courriel") for line in lines)
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert sorted(event["type"] for event in events) == [
        "contact.requested",
        "conversation.completed",
    ]
