"""Crash proof: the real ``passerelle serve`` (webhook mode) in a subprocess, killed with SIGKILL
while 50 chats are mid-conversation, then restarted on the same database.

What Telegram and the people would notice is asserted on the fake Bot API: every update that
got a 200 is applied exactly once (one reply each, re-deliveries deduplicated), and no reply
recorded before the crash is lost. The only duplicate the design allows is a reply Telegram
accepted in the instant between its 200 and our "sent" mark: at most one per chat per crash
(docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness.fakebotapi import TOKEN, FakeBotAPI, FakeUser

WEBHOOK_SECRET = "crash-webhook-secret-0123456789"
HEADERS = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
CHATS = 50
TURNS = 12


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``passerelle serve`` as a child process on loopback."""

    def __init__(self, api: FakeBotAPI, db: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": api.base_url,
            "PASSERELLE_SECRET": "crash-pseudonym-secret-0123456789",
            "PASSERELLE_WEBHOOK_URL": "https://passerelle.test/telegram/webhook",
            "PASSERELLE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PASSERELLE_DB": str(db),
            "PASSERELLE_TELEGRAM_RATE": "0",
            "PASSERELLE_HOST": "127.0.0.1",
            "PORT": str(self.port),
            "PASSERELLE_LOG_LEVEL": "WARNING",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = db.parent / "server.log"
        self.log = self.log_path.open("ab")

    async def start(self) -> None:
        if self.log.closed:
            self.log = self.log_path.open("ab")
        command = [sys.executable, "-m", "bot.cli", "serve"]
        self.process = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block)
            command, env=self.env, stdout=subprocess.DEVNULL, stderr=self.log
        )
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, "passerelle serve exited"
                try:
                    if (await client.get(self.url + "/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("passerelle serve did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        self.log.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture
def cwd_root() -> Iterator[None]:
    # ``python -m bot.cli`` must find the package and ``contenus/`` from the repository root.
    here = os.getcwd()
    os.chdir(Path(__file__).resolve().parents[2])
    try:
        yield
    finally:
        os.chdir(here)


async def post(client: httpx.AsyncClient, url: str, update: dict[str, Any]) -> bool:
    """Deliver like Telegram: ``True`` only if the server answered 200."""
    try:
        response = await client.post(url + "/telegram/webhook", json=update, headers=HEADERS)
    except httpx.TransportError:
        return False
    return response.status_code == 200


async def test_sigkill_mid_conversation_loses_nothing_and_applies_once(
    tmp_path: Path, cwd_root: None
) -> None:
    async with FakeBotAPI() as api:
        server = Server(api, tmp_path / "passerelle.db")
        await server.start()
        try:
            users = [api.user(7_000_000 + i) for i in range(CHATS)]
            limits = httpx.Limits(max_connections=20)
            async with httpx.AsyncClient(timeout=10, limits=limits) as client:
                # Everyone starts and consents (state is then durable).
                for user in users:
                    assert await post(client, server.url, user.text("/start"))
                await api.wait_for(lambda: all(api.count_to(u.id) >= 1 for u in users), 30)
                await asyncio.sleep(0.3)  # let the last greetings land (not asserted)
                greeted = {u.id: api.count_to(u.id) for u in users}
                for user in users:
                    consent = next(m for m in reversed(api.to_chat(user.id)) if m.buttons)
                    press = user.press(consent, consent.buttons[0][1])
                    assert await post(client, server.url, press)
                await api.wait_for(
                    lambda: all(api.count_to(u.id) > greeted[u.id] for u in users), 30
                )
                await asyncio.sleep(0.3)  # let the last consent replies land (not asserted)
                baseline = {u.id: api.count_to(u.id) for u in users}

                # 50 chats talk at once; the server is killed in the middle of it.
                updates: dict[int, list[dict[str, Any]]] = {u.id: [] for u in users}
                acknowledged: set[int] = set()
                killed = asyncio.Event()

                async def talk(user: FakeUser) -> None:
                    for turn in range(TURNS):
                        if killed.is_set():
                            return
                        update = user.text("aide" if turn % 2 else "glossaire")
                        updates[user.id].append(update)
                        if await post(client, server.url, update):
                            acknowledged.add(update["update_id"])

                async def killer() -> None:
                    while len(acknowledged) < CHATS * TURNS // 2:  # noqa: ASYNC110
                        await asyncio.sleep(0.005)
                    server.kill()
                    killed.set()

                await asyncio.gather(killer(), *(talk(u) for u in users))
                assert len(acknowledged) >= CHATS * TURNS // 2
                acknowledged_before_kill = set(acknowledged)

                # Restart; Telegram re-delivers what it got no 200 for, and (to prove the
                # deduplication) everything else too.
                await server.start()
                for user in users:
                    for update in updates[user.id]:
                        assert await post(client, server.url, update)
                        acknowledged.add(update["update_id"])

                def expected(user: FakeUser) -> int:
                    return baseline[user.id] + len(updates[user.id])

                await api.wait_for(
                    lambda: all(api.count_to(u.id) >= expected(u) for u in users), timeout=60
                )
                await asyncio.sleep(0.5)  # any extra (duplicate) reply would land by now
        finally:
            server.stop()

        # Every update Telegram got a 200 for produced its reply; none was applied twice.
        duplicates = {u.id: api.count_to(u.id) - expected(u) for u in users}
        assert all(0 <= extra <= 1 for extra in duplicates.values()), duplicates
        with sqlite3.connect(tmp_path / "passerelle.db") as db:
            applied = {row[0] for row in db.execute("SELECT update_id FROM inbox")}
            pending = db.execute("SELECT COUNT(*) FROM inbox WHERE done_at IS NULL").fetchone()
            unsent = db.execute("SELECT COUNT(*) FROM replies").fetchone()
        assert acknowledged_before_kill <= applied
        assert pending[0] == 0 and unsent[0] == 0
        # Each text turn is answered by exactly one message: the replies are those turns'.
        for user in users:
            texts = [m.text for m in api.to_chat(user.id)[baseline[user.id] :]]
            assert all(texts), "every reply has text"
