"""Telegram's side of a webhook in the tests and benchmarks: updates POSTed to our server.

One aiohttp session with a bounded pool, not httpx: httpcore scans every connection of its pool
(a ``getpeername`` and a ``select`` system call each) on every request, which made this driver
the largest CPU cost of the load tests (a third of the 300-people run); aiohttp's connector
takes an idle connection in constant time and queues the callers beyond its limit. Telegram's
own client is neither: what the tests check is our server's answer and what it sends back.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any

import aiohttp

#: What a delivery that got no answer raises (Telegram would deliver again later).
UNANSWERED = (aiohttp.ClientError, TimeoutError)


class WebhookClient:
    """``async with WebhookClient(secret) as telegram: await telegram.post(url, update)``:
    at most ``connections`` requests at once (the others wait for a connection)."""

    def __init__(self, secret: str, *, connections: int = 10, timeout: float = 30) -> None:
        self.headers = {
            "Content-Type": "application/json",
            "X-Telegram-Bot-Api-Secret-Token": secret,
        }
        self.connections = connections
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> WebhookClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.connections, limit_per_host=0),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, url: str, update: dict[str, Any]) -> int:
        """Deliver ``update`` to the webhook at ``url``; the status our server answered (a
        refused or broken connection, or no answer in time: one of :data:`UNANSWERED`)."""
        assert self._session is not None, "use it in `async with`"
        body = json.dumps(update).encode()
        async with self._session.post(url, data=body, headers=self.headers) as response:
            await response.read()
            return response.status
