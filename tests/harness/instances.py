"""``passerelle serve`` as a child process on loopback, delivered to as Telegram would: what
the crash and the several-instances end-to-end tests share."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.harness.fakebotapi import TOKEN, FakeBotAPI
from tests.harness.ports import free_port
from tests.harness.wait import DEADLINE
from tests.harness.webhook_client import UNANSWERED, WebhookClient

WEBHOOK_SECRET = "crash-webhook-secret-0123456789"


class Server:
    """``passerelle serve`` as a child process on loopback."""

    def __init__(self, api: FakeBotAPI, db: Path) -> None:
        self.db = db
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
        deadline = time.monotonic() + DEADLINE
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


def telegram(connections: int = 100) -> WebhookClient:
    """How Telegram delivers to these servers (``async with``)."""
    return WebhookClient(WEBHOOK_SECRET, connections=connections, timeout=10)


async def post(client: WebhookClient, url: str, update: dict[str, Any]) -> bool:
    """Deliver like Telegram: ``True`` only if the server answered 200."""
    try:
        return await client.post(url + "/telegram/webhook", update) == 200
    except UNANSWERED:
        return False
