"""Issue 11: the webhook worker isolates receivers. A receiver that trickles its answer (or
hangs) holds up no other establishment; every attempt has a total deadline; the events of one
conversation arrive in the order they were created; failures are logged (never the payload);
and webhook URLs cannot point at private, link-local or metadata addresses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.adapters.webhooks import RetryPolicy, WebhookWorker, check_target
from bot.knowledge.establishments import (
    EstablishmentsError,
    load_establishments,
    target_problem,
)
from bot.storage.integration import IntegrationStore, OutboxEvent
from tests.harness.wait import eventually
from tests.harness.webhooks import SECRET, Receiver, establishment


class Trickler:
    """A receiver that reads the request, then answers one byte every ``every`` seconds,
    forever: a per-read timeout never fires."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by stop()
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n" * 100:
                if self.stopping.wait(self.every):
                    return
                conn.sendall(bytes([byte]))

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()


def event(n: int, to: str, subject: str | None = None, kind: str = "contact.requested") -> Any:
    body = json.dumps({"type": kind, "data": {"n": n, "subject": subject}})
    return OutboxEvent(f"msg_{to}_{n:03d}", to, kind, body, subject)


@pytest.fixture
def trickler() -> Iterator[Trickler]:
    slow = Trickler(every=0.5)
    yield slow
    slow.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    fast = Receiver()
    yield fast
    fast.stop()


async def test_a_trickling_receiver_does_not_delay_another_establishment(
    tmp_path: Path, trickler: Trickler, receiver: Receiver
) -> None:
    store = IntegrationStore(tmp_path / "passerelle.db")
    await store.open()
    # The slow one's events are older: a shared pool would give them every slot first.
    await store.enqueue([event(n, "slow") for n in range(12)])
    await store.enqueue([event(n, "fast") for n in range(6)])
    places = {
        "slow": establishment("slow", trickler.port),
        "fast": establishment("fast", receiver.port),
    }
    worker = WebhookWorker(store, places, policy=RetryPolicy(timeout=30), idle_poll=0.2)
    started = time.monotonic()
    await worker.start()
    try:
        # Each slow attempt lasts its whole 30 s deadline: behind them, the fast receiver
        # would get nothing before 30 s. Seen well within that (a margin a busy machine keeps),
        # its events did not wait for the slow ones.
        while len(receiver.acked) < 6 and time.monotonic() - started < 20:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        assert len(receiver.acked) == 6, "the fast receiver waited for the slow one's attempts"
        assert trickler.connections <= 2, "at most a few attempts in flight per receiver"
    finally:
        await worker.stop()
        await store.close()


async def test_an_attempt_has_a_total_deadline(
    tmp_path: Path, trickler: Trickler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.adapters.webhooks")
    store = IntegrationStore(tmp_path / "passerelle.db")
    await store.open()
    secret_words = "courriel-tres-personnel@example.org"
    await store.enqueue(
        [OutboxEvent("msg_slow", "slow", "contact.requested", json.dumps({"how": secret_words}))]
    )
    worker = WebhookWorker(
        store,
        {"slow": establishment("slow", trickler.port)},
        policy=RetryPolicy(base=60, timeout=1.0),
    )
    await worker.open()
    try:
        started = time.monotonic()
        await asyncio.wait_for(worker.run_once(), timeout=5)
        assert time.monotonic() - started < 2.5, "ended by the 1 s deadline, not per read"
        [item] = await store.outbox_list()
        assert item.status == "pending" and item.attempts == 1
        assert (item.last_error or "").startswith("Timeout")
    finally:
        await worker.stop()
        await store.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("msg_slow" in r.getMessage() and "attempt 1" in r.getMessage() for r in warnings)
    assert secret_words not in caplog.text, "never the payload"


async def test_events_of_one_conversation_arrive_in_order(tmp_path: Path) -> None:
    receiver = Receiver()
    handler_class: Any = receiver.server.RequestHandlerClass
    original = handler_class.do_POST

    def slow_post(handler: Any) -> None:
        time.sleep(random.uniform(0, 0.02))  # requests take a varying time, as in real life
        original(handler)

    handler_class.do_POST = slow_post
    store = IntegrationStore(tmp_path / "passerelle.db")
    await store.open()
    events = []
    for n in range(16):  # both events of a conversation written in the same transaction
        events += [
            event(2 * n, "chu", f"conv_{n}", "conversation.completed"),
            event(2 * n + 1, "chu", f"conv_{n}", "contact.requested"),
        ]
    await store.enqueue(events)
    worker = WebhookWorker(
        store, {"chu": establishment("chu", receiver.port)}, per_receiver=8, idle_poll=0.1
    )
    await worker.start()
    try:
        await eventually(lambda: len(receiver.acked) >= 32, "the 32 events delivered")
    finally:
        await worker.stop()
        await store.close()
        receiver.stop()
    assert len(receiver.acked) == 32
    arrived = [json.loads(body) for _, body in receiver.raw]  # in the order they came in
    for n in range(16):
        kinds = [e["type"] for e in arrived if e["data"]["subject"] == f"conv_{n}"]
        assert kinds == ["conversation.completed", "contact.requested"], (n, kinds)


async def test_the_worker_stops_even_when_woken_at_the_same_moment(tmp_path: Path) -> None:
    """``serve`` stopping (SIGTERM) just as an event is enqueued: the wake-up and the stop
    arrive in the same turn of the event loop. The worker must still stop (it used to go on
    polling for ever, and the shutdown never ended)."""
    store = IntegrationStore(tmp_path / "passerelle.db")
    await store.open()
    worker = WebhookWorker(store, {}, idle_poll=0.1)

    async def stopped() -> bool:
        # asyncio.wait, not a timeout: stop() must end by itself, not be cancelled.
        done, _ = await asyncio.wait([asyncio.ensure_future(worker.stop())], timeout=10)
        return bool(done)

    try:
        for attempt in range(5):
            await worker.start()
            await eventually(lambda: worker.waiting, "the worker waits for work")
            worker.wake()
            assert await stopped(), f"stop {attempt + 1} never ended"
    finally:
        await store.close()


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.5/hooks",
        "https://192.168.1.10/hooks",
        "https://[fd00::1]/hooks",
        "https://[::ffff:169.254.169.254]/hooks",
        "https://2852039166/hooks",  # 169.254.169.254 written as one number
        "https://0xa9fea9fe/hooks",
        "https://100.64.0.1/hooks",
        "http://localhost:80@169.254.169.254/",  # user-info trick past the loopback exception
        "https://user:pass@hooks.chu.example/",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://receiver.local/hooks",
        "http://hooks.chu.example/hooks",
    ],
)
def test_private_link_local_and_metadata_targets_are_refused(tmp_path: Path, url: str) -> None:
    assert target_problem(url) is not None
    path = tmp_path / "etab.yaml"
    path.write_text(
        f"establishments:\n  chu:\n    name: CHU\n    webhook:\n      url: {url}\n"
        f"      secret: {SECRET}\n",
        encoding="utf-8",
    )
    with pytest.raises(EstablishmentsError, match="adresse du webhook refusée"):
        load_establishments(path)


@pytest.mark.parametrize(
    "url",
    [
        "https://partenariat.chu-exemple.fr/passerelle/webhook",
        "http://127.0.0.1:8081/hooks",
        "http://localhost:9000/hooks",
        "https://[::1]:8443/hooks",
        "https://93.184.216.34/hooks",
    ],
)
def test_public_and_loopback_targets_are_accepted(url: str) -> None:
    assert target_problem(url) is None


async def test_a_name_resolving_to_a_private_address_is_refused_at_delivery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()

    async def resolve(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        address = {"rebound.chu.example": "10.0.0.5", "ok.chu.example": "93.184.216.34"}[host]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 443))]

    monkeypatch.setattr(loop, "getaddrinfo", resolve)
    assert "10.0.0.5" in (await check_target("https://rebound.chu.example/hooks") or "")
    assert await check_target("https://ok.chu.example/hooks") is None
