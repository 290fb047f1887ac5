"""Issue 11, as an attacker would try it, on loopback: two establishments (chu-a serving
Occitanie, chu-b with its own context), real HTTP server, real webhook receivers. Each
establishment sees only its own conversations, events and statistics."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.adapters.webhooks import RetryPolicy, WebhookWorker
from bot.app.engines import build_engine
from bot.app.features import Features
from bot.app.stats import StatsRecorder
from bot.channels.http import ConversationApi, RateLimiter
from bot.knowledge.establishments import Establishment, load_establishments
from bot.knowledge.model import KnowledgeBase
from bot.server import create_app
from bot.storage.features import FeatureStore
from bot.storage.integration import IntegrationStore
from tests.harness.personas import PATIENT_TRAINER
from tests.harness.servers import serve
from tests.harness.wait import wait_until
from tests.harness.webhooks import SECRET, Receiver

DEMO_KEY = "pwk_demo_for_isolation_tests"


@dataclass
class Site:
    url: str
    db: Path
    keys: dict[str, str]
    receivers: dict[str, Receiver]
    features: Features
    establishments: dict[str, Establishment]

    def client(self, name: str, secret: str | None = None) -> httpx.Client:
        headers = {"authorization": f"Bearer {self.keys[name]}"}
        if secret is not None:
            headers["x-conversation-secret"] = secret
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=20)


def write_establishments(path: Path, ports: dict[str, int]) -> Path:
    path.write_text(
        "establishments:\n"
        "  chu-a:\n"
        "    name: CHU A\n"
        "    contexts: [chu-a, chu-a-cardio]\n"
        "    territories: [fr-occitanie]\n"
        "    webhook:\n"
        f"      url: http://127.0.0.1:{ports['chu-a']}/hooks\n"
        "      secret_env: ISOLATION_SECRET\n"
        "  chu-b:\n"
        "    name: CHU B\n"
        "    contexts: [chu-b]\n"
        "    webhook:\n"
        f"      url: http://127.0.0.1:{ports['chu-b']}/hooks\n"
        "      secret_env: ISOLATION_SECRET\n",
        encoding="utf-8",
    )
    return path


async def make_keys(db: Path) -> dict[str, str]:
    store = IntegrationStore(db)
    await store.open()
    keys = {}
    for establishment in ("chu-a", "chu-b"):
        keys[establishment] = (await store.create_key(establishment, "api"))[0]
        keys[establishment + ":widget"] = (await store.create_key(establishment, "widget"))[0]
    await store.close()
    return keys


@pytest.fixture
def site(kb: KnowledgeBase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("ISOLATION_SECRET", SECRET)
    receivers = {name: Receiver() for name in ("chu-a", "chu-b")}
    ports = {name: receiver.port for name, receiver in receivers.items()}
    establishments = load_establishments(write_establishments(tmp_path / "etab.yaml", ports))
    db = tmp_path / "passerelle.db"
    keys = asyncio.run(make_keys(db))
    keys["demo"] = DEMO_KEY
    engine = build_engine(kb, receivers=tuple(establishments.values()))
    store = IntegrationStore(db)
    features = Features(engine, FeatureStore(db))
    worker = WebhookWorker(store, establishments, policy=RetryPolicy(base=0.05), idle_poll=0.1)
    api = ConversationApi(
        engine,
        store,
        establishments,
        limiter=RateLimiter(1e4, 10_000),
        demo_key=DEMO_KEY,
        on_events=worker.wake,
        features=features,
        secret=b"isolation-tests-pseudonym-key-0",
    )
    try:
        with serve(create_app(api, worker=worker)) as url:
            yield Site(url, db, keys, receivers, features, establishments)
    finally:
        for receiver in receivers.values():
            receiver.stop()


def events(receiver: Receiver, kind: str) -> list[dict[str, Any]]:
    return [event for event in receiver.acked.values() if event["type"] == kind]


def test_an_event_sent_to_another_establishment_unlocks_nothing(site: Site) -> None:
    """chu-b's public widget creates a conversation that ends in Occitanie: chu-a (which
    serves Occitanie) hears of the contact request, but with nothing that opens it, and no
    key of chu-a, nor chu-b's public key without the conversation's own secret, reaches it."""
    with site.client("chu-b:widget") as browser:
        created = browser.post("/conversations", json={}).json()
        cid, secret = created["conversation_id"], created["conversation_secret"]
        assert secret, "a widget conversation gets its own secret"
        with site.client("chu-b:widget", secret) as person:
            for choice in PATIENT_TRAINER:
                response = person.post(f"/conversations/{cid}/messages", json={"choice": choice})
                assert response.status_code == 200, response.text
            for step in (
                {"choice": "cmd:relation"},
                {"choice": "cmd:confirmer"},
                {"text": "Par courriel : camille@example.org"},
                {"choice": "cmd:confirmer"},
            ):
                assert person.post(f"/conversations/{cid}/messages", json=step).status_code == 200
    wait_until(lambda: len(events(site.receivers["chu-a"], "contact.requested")) == 1)
    wait_until(lambda: len(events(site.receivers["chu-b"], "contact.requested")) == 1)
    foreign = events(site.receivers["chu-a"], "contact.requested")[0]["data"]
    owned = events(site.receivers["chu-b"], "contact.requested")[0]["data"]
    assert "conversation_id" not in foreign, "only the owner gets the id"
    assert cid not in str(foreign)
    assert foreign["establishment"] == "chu-b" and owned["establishment"] == "chu-b"
    assert owned["conversation_id"] == cid
    # The id, however it was learnt, opens nothing without the right establishment and secret.
    for name, given in (
        ("chu-a", None),
        ("chu-a:widget", None),
        ("chu-a:widget", secret),
        ("chu-b:widget", None),
        ("chu-b:widget", "pcs_wrong"),
        ("demo", secret),
    ):
        with site.client(name, given) as other:
            for response in (
                other.get(f"/conversations/{cid}"),
                other.delete(f"/conversations/{cid}"),
                other.post(f"/conversations/{cid}/messages", json={"choice": "cmd:aide"}),
            ):
                assert response.status_code == 404, (name, given, response.text)
                assert response.json()["error"]["code"] == "conversation_not_found"
    # Its owner reaches it: the browser with its secret, and chu-b's own secret key.
    with site.client("chu-b:widget", secret) as person, site.client("chu-b") as server:
        assert person.get(f"/conversations/{cid}").status_code == 200
        transcript = server.get(f"/conversations/{cid}").json()["transcript"]
        assert any(line["text"] == "Par courriel : camille@example.org" for line in transcript)
        assert person.delete(f"/conversations/{cid}").status_code == 204
        assert server.get(f"/conversations/{cid}").status_code == 404


def test_a_conversation_belongs_to_the_establishment_not_to_one_key(site: Site) -> None:
    with site.client("chu-a") as api, site.client("chu-b") as other:
        created = api.post("/conversations", json={}).json()
        assert created["conversation_secret"] is None, "a secret key needs no second secret"
        cid = created["conversation_id"]
        assert other.get(f"/conversations/{cid}").status_code == 404
        with site.client("chu-a:widget") as widget:
            assert widget.get(f"/conversations/{cid}").status_code == 404, (
                "the public key never opens a conversation it has no secret for"
            )
        assert api.get(f"/conversations/{cid}").status_code == 200


@pytest.mark.parametrize(
    ("key", "context", "status"),
    [
        ("chu-b:widget", "chu-a", 403),
        ("chu-b", "chu-a", 403),
        ("chu-b", "chu-a-cardio", 403),
        ("demo", "chu-a", 403),
        ("chu-a:widget", "chu-b", 403),
        ("chu-a", "chu-a", 201),
        ("chu-a:widget", "chu-a-cardio", 201),
        ("chu-b", "chu-b", 201),
        ("chu-b", None, 201),
        ("demo", "demo", 201),
    ],
)
def test_a_key_may_only_use_its_own_establishments_contexts(
    site: Site, key: str, context: str | None, status: int
) -> None:
    with site.client(key) as client:
        response = client.post("/conversations", json={"context": context} if context else {})
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["error"]["code"] == "forbidden_context"


def test_a_foreign_context_sends_no_event_and_no_statistic(site: Site) -> None:
    """The phishing attempt: chu-b's key speaking for chu-a. Refused before anything exists."""
    with site.client("chu-b") as client:
        response = client.post("/conversations", json={"context": "chu-a"})
    assert response.status_code == 403
    with contextlib.closing(sqlite3.connect(site.db)) as db:
        assert db.execute("SELECT COUNT(*) FROM api_conversations").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM stats_conversations").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM webhook_outbox").fetchone() == (0,)


def test_statistics_need_a_secret_key(site: Site) -> None:
    for name in ("chu-a:widget", "demo"):
        with site.client(name) as widget:
            response = widget.get("/stats")
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "forbidden"
    with site.client("chu-a") as api:
        assert api.get("/stats").status_code == 200


def telegram_conversations(site: Site, context: str, count: int) -> None:
    """People who came through a Telegram deep link: the establishment cannot read those."""

    async def record() -> None:
        store = FeatureStore(site.db)
        await store.open()
        try:
            recorder = StatsRecorder(store)
            engine = site.features.engine
            for _ in range(count):
                await recorder.record(engine.start(context), "telegram")
        finally:
            await store.close()

    asyncio.run(record())


def test_padding_with_own_conversations_does_not_reveal_a_small_count(site: Site) -> None:
    telegram_conversations(site, "chu-b", 2)  # two real people: must stay hidden
    with site.client("chu-b") as client:
        assert client.get("/stats").json()["conversations"] is None
        padding = [
            client.post("/conversations", json={"context": "chu-b"}).json()["conversation_id"]
            for _ in range(4)
        ]
        stats = client.get("/stats").json()
        assert stats["conversations"] is None, "6 shown would reveal 6 - 4 = 2"
        assert stats["funnel"] == [] or stats["funnel"][0]["count"] is None
        # Erasing the padding leaves nothing behind.
        for cid in padding:
            assert client.delete(f"/conversations/{cid}").status_code == 204
    with contextlib.closing(sqlite3.connect(site.db)) as db:
        rows = db.execute("SELECT channel FROM stats_conversations").fetchall()
    assert sorted(rows) == [("telegram",), ("telegram",)], "deleted conversations left no row"


def test_own_conversations_are_counted_and_others_are_not(site: Site) -> None:
    with site.client("chu-a") as a, site.client("chu-b") as b:
        for _ in range(6):
            assert a.post("/conversations", json={}).status_code == 201
        for _ in range(5):
            assert b.post("/conversations", json={"context": "chu-b"}).status_code == 201
        telegram_conversations(site, "chu-a-cardio", 5)  # chu-a's deep link: counted for it
        mine = a.get("/stats").json()
        theirs = b.get("/stats").json()
    assert mine["context"] == "chu-a" and mine["conversations"] == 11
    assert theirs["context"] == "chu-b" and theirs["conversations"] == 5


def test_the_demo_widget_still_works_end_to_end_with_its_secret(site: Site) -> None:
    with site.client("demo") as demo:
        created = demo.post("/conversations", json={}).json()
    cid, secret = created["conversation_id"], created["conversation_secret"]
    with site.client("demo", secret) as person:
        assert person.post(f"/conversations/{cid}/messages", json={"choice": "patient"}).is_success
        assert person.get(f"/conversations/{cid}").json()["answers"] == [
            {"question": "profil", "choice": "patient"}
        ]
