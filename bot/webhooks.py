"""Outgoing webhooks: routing engine events to establishments, Standard Webhooks signatures,
and the delivery worker draining the durable outbox.

Each delivery is a ``POST`` of a JSON body ``{"type", "timestamp", "data"}`` with the headers
``webhook-id`` (stable across retries: receivers deduplicate on it), ``webhook-timestamp``
(Unix seconds of this attempt) and ``webhook-signature`` = ``v1,`` + base64 of
HMAC-SHA256(secret, ``"{id}.{timestamp}.{body}"``). A 2xx answer acknowledges the event;
anything else is retried with exponential backoff and jitter for 24 hours, then dead-lettered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from bot.engine.replies import Event
from bot.establishments import Establishment
from bot.storage.integration import IntegrationStore, OutboxEvent, OutboxItem, new_id

log = logging.getLogger(__name__)

#: Events an establishment can receive.
EVENT_TYPES = ("contact.requested", "conversation.completed")


def sign(secret: bytes, event_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one attempt."""
    signed = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def route(
    event: Event,
    establishments: Mapping[str, Establishment],
    *,
    owner: str | None = None,
    subject: str | None = None,
    territories: Iterable[str] = (),
    now: dt.datetime | None = None,
) -> list[OutboxEvent]:
    """One outbox entry per establishment concerned by ``event`` and having a webhook.

    An establishment is concerned when it owns the conversation (its API key created it), when
    the conversation's context is one of its contexts, or when the person's territory (or a
    parent of it, given in ``territories``) is one it serves. ``subject`` (an API conversation
    id) is kept beside the entry so erasing the conversation also erases undelivered payloads.
    """
    if event.kind not in EVENT_TYPES:
        return []
    context = event.data.get("context")
    places = set(territories)
    if event.data.get("territory"):
        places.add(str(event.data["territory"]))
    stamp = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    data = dict(event.data)
    if event.kind == "contact.requested" and subject is not None:
        data["conversation_id"] = subject
    entries = []
    consented = event.data.get("establishments") if event.kind == "contact.requested" else None
    for establishment in establishments.values():
        if establishment.webhook_url is None:
            continue
        if consented is not None and establishment.id not in consented:
            continue  # a contact request goes only where the person agreed to send it
        if establishment.id != owner and not establishment.serves(
            str(context) if context else None, places
        ):
            continue
        body = {"type": event.kind, "timestamp": stamp, "data": data}
        entries.append(
            OutboxEvent(
                id=new_id("msg_"),
                establishment=establishment.id,
                event_type=event.kind,
                payload=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                subject=subject,
            )
        )
    return entries


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, for ``give_up_after`` seconds in total."""

    base: float = 5.0
    cap: float = 3600.0
    give_up_after: float = 24 * 3600.0
    timeout: float = 10.0

    def delay(self, attempts: int) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(attempts - 1, 30))
        return random.uniform(ceiling / 2, ceiling)


class WebhookWorker:
    """Drains the outbox: delivers due events concurrently, reschedules failures, and wakes
    as soon as new events are enqueued (:meth:`wake`) or the next retry is due."""

    def __init__(
        self,
        store: IntegrationStore,
        establishments: Mapping[str, Establishment],
        *,
        policy: RetryPolicy | None = None,
        concurrency: int = 8,
        client: httpx.AsyncClient | None = None,
        idle_poll: float = 5.0,
    ) -> None:
        self.store = store
        self.establishments = establishments
        self.policy = policy or RetryPolicy()
        self.concurrency = concurrency
        self.idle_poll = idle_poll
        self._client = client
        self._own_client = client is None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.policy.timeout,
                follow_redirects=False,
                headers={"user-agent": "Passerelle-Webhooks/1"},
            )
        self._task = asyncio.create_task(self.run(), name="webhook-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def run(self) -> None:
        while True:
            try:
                busy = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook worker: unexpected error, retrying shortly")
                busy = False
            if busy:
                continue
            next_due = await self.store.outbox_next_due()
            wait = self.idle_poll
            if next_due is not None:
                wait = max(0.0, min(wait, next_due - time.time()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def run_once(self) -> bool:
        """Attempt every due event once; ``True`` if there were some."""
        due = await self.store.outbox_due(time.time(), limit=self.concurrency * 4)
        if not due:
            return False
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(item: OutboxItem) -> None:
            async with semaphore:
                await self.attempt(item)

        await asyncio.gather(*(one(item) for item in due))
        return True

    async def attempt(self, item: OutboxItem) -> bool:
        establishment = self.establishments.get(item.establishment)
        attempts = item.attempts + 1
        if establishment is None or not establishment.webhook_url or not establishment.secret:
            await self.store.outbox_dead(
                item.id, item.attempts, "établissement ou webhook absent de la configuration"
            )
            return False
        error = await self.post(establishment, item)
        if error is None:
            await self.store.outbox_delivered(item.id)
            self.delivered += 1
            return True
        now = time.time()
        next_at = now + self.policy.delay(attempts)
        if next_at - item.created_at > self.policy.give_up_after:
            log.warning("webhook %s dead-lettered after %d attempts", item.id, attempts)
            await self.store.outbox_dead(item.id, attempts, error)
        else:
            await self.store.outbox_failed(item.id, attempts, next_at, error)
        return False

    async def post(self, establishment: Establishment, item: OutboxItem) -> str | None:
        """One signed attempt; ``None`` on a 2xx answer, else what went wrong."""
        assert self._client is not None and establishment.webhook_url and establishment.secret
        body = item.payload.encode()
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": item.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(establishment.secret, item.id, timestamp, body),
        }
        try:
            response = await self._client.post(
                establishment.webhook_url, content=body, headers=headers
            )
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"


def describe(item: OutboxItem) -> dict[str, Any]:
    """A line of ``passerelle webhooks status`` (no payload: it may hold personal data)."""
    return {
        "id": item.id,
        "establishment": item.establishment,
        "type": item.event_type,
        "status": item.status,
        "attempts": item.attempts,
        "created_at": dt.datetime.fromtimestamp(item.created_at, dt.UTC).isoformat(
            timespec="seconds"
        ),
        "next_attempt_at": dt.datetime.fromtimestamp(item.next_attempt_at, dt.UTC).isoformat(
            timespec="seconds"
        ),
        "last_error": item.last_error,
    }
