"""The delivery worker: drains the durable outbox, one lane per establishment, with retries
(backoff and jitter) and a total deadline per attempt, so one slow receiver delays only
itself. Apart from routing and payloads: it is the only part doing network I/O."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from bot.adapters.webhooks.signing import sign
from bot.adapters.webhooks.target import check_target
from bot.json_types import JsonObject
from bot.knowledge.establishments import Establishment
from bot.storage.base import IntegrationStore, OutboxItem

log = logging.getLogger(__name__)


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


class _Lane:
    """One establishment's deliveries: its own queue and at most ``width`` attempts in flight,
    so a slow or hanging receiver only ever delays itself."""

    def __init__(self, width: int) -> None:
        self.queue: asyncio.Queue[OutboxItem] = asyncio.Queue()
        self.width = width
        self.tasks: list[asyncio.Task[None]] = []

    @property
    def full(self) -> bool:
        return self.queue.qsize() >= self.width * 4


class WebhookWorker:
    """Drains the outbox, one lane per establishment: each lane delivers its due events with
    at most ``per_receiver`` attempts in flight, each attempt bounded by a total deadline
    (``policy.timeout``, connection to last byte), so a receiver that trickles or hangs holds
    up no other establishment. The events of one conversation (same ``subject``) go out one at
    a time, in the order they were created: a later one waits until the earlier one is
    delivered or dead-lettered. Failures are rescheduled (logged at warning, never with the
    payload); the worker wakes as soon as new events are enqueued (:meth:`wake`), an attempt
    ends, or the next retry is due."""

    def __init__(
        self,
        store: IntegrationStore,
        establishments: Mapping[str, Establishment],
        *,
        policy: RetryPolicy | None = None,
        concurrency: int = 8,
        per_receiver: int = 2,
        client: httpx.AsyncClient | None = None,
        idle_poll: float = 5.0,
    ) -> None:
        self.store = store
        self.establishments = establishments
        self.policy = policy or RetryPolicy()
        self.concurrency = concurrency
        self.per_receiver = max(1, per_receiver)
        self.idle_poll = idle_poll
        self._client = client
        self._own_client = client is None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lanes: dict[str, _Lane] = {}
        #: Events handed to a lane and not finished yet, with what their end resolves.
        self._inflight: dict[str, asyncio.Future[bool]] = {}
        #: When each recent event finished (a counter), so that a due list read before that
        #: moment does not hand it out again.
        self._finished: OrderedDict[str, int] = OrderedDict()
        self._clock = 0
        self.delivered = 0
        #: Asleep until woken or the next retry is due (tests wait for it).
        self.waiting = False

    def wake(self) -> None:
        self._wake.set()

    async def open(self) -> None:
        """Ready to deliver, without the background loop: for :meth:`run_once` alone (a
        second dispatcher running beside it would race it for the same events)."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.policy.timeout,
                follow_redirects=False,
                headers={"user-agent": "Passerelle-Webhooks/1"},
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
            )

    async def start(self) -> None:
        """Deliver in the background until :meth:`stop`."""
        await self.open()
        self._task = asyncio.create_task(self.run(), name="webhook-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for lane in self._lanes.values():
            for task in lane.tasks:
                task.cancel()
            for task in lane.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._lanes.clear()
        for future in self._inflight.values():
            future.cancel()
        self._inflight.clear()
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def run(self) -> None:
        while True:
            try:
                await self.dispatch()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook worker: unexpected error, retrying shortly")
            next_due = await self.store.outbox_next_due()
            wait = self.idle_poll
            if next_due is not None:
                wait = max(0.0, min(wait, next_due - time.time()))
            self._wake.clear()
            self.waiting = True
            try:
                # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that comes
                # as the event is set (fixed in 3.12), and stop() then waited for ever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
            finally:
                self.waiting = False

    async def dispatch(self) -> list[asyncio.Future[bool]]:
        """Hand every due event (the oldest pending one of each conversation) to its
        establishment's lane; the futures resolve when those attempts end."""
        busy = sorted(name for name, lane in self._lanes.items() if lane.full)
        read_at = self._clock
        due = await self.store.outbox_due(
            time.time(), limit=max(50, self.concurrency * 16), skip_establishments=busy
        )
        futures = []
        for item in due:
            future = self._inflight.get(item.id)
            if future is None and self._finished.get(item.id, -1) > read_at:
                continue  # finished while the list was read: the list is stale for it
            if future is None:
                lane = self._lane(item.establishment)
                if lane.full:
                    continue
                future = asyncio.get_running_loop().create_future()
                self._inflight[item.id] = future
                lane.queue.put_nowait(item)
            futures.append(future)
        return futures

    async def run_once(self) -> bool:
        """Attempt every due event once (the head of each conversation); ``True`` if there
        were some."""
        futures = await self.dispatch()
        if futures:
            await asyncio.gather(*futures, return_exceptions=True)
        return bool(futures)

    def _lane(self, establishment: str) -> _Lane:
        lane = self._lanes.get(establishment)
        if lane is None:
            lane = self._lanes[establishment] = _Lane(self.per_receiver)
            lane.tasks = [
                asyncio.create_task(self._drain(lane), name=f"webhooks-{establishment}-{n}")
                for n in range(lane.width)
            ]
        return lane

    async def _drain(self, lane: _Lane) -> None:
        while True:
            item = await lane.queue.get()
            ok = False
            try:
                ok = await self.attempt(item)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook %s: attempt failed unexpectedly", item.id)
            finally:
                self._clock += 1
                self._finished[item.id] = self._clock
                while len(self._finished) > 10_000:
                    self._finished.popitem(last=False)
                future = self._inflight.pop(item.id, None)
                if future is not None and not future.done():
                    future.set_result(ok)
                self._wake.set()  # the conversation's next event may now be due

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
            log.warning(
                "webhook %s to %s dead-lettered after %d attempts (%s)",
                item.id,
                item.establishment,
                attempts,
                error.split(":")[0],
            )
            await self.store.outbox_dead(item.id, attempts, error)
        else:
            log.warning(
                "webhook %s to %s: attempt %d failed (%s), retried in %.0f s",
                item.id,
                item.establishment,
                attempts,
                error.split(":")[0],
                next_at - now,
            )
            await self.store.outbox_failed(item.id, attempts, next_at, error)
        return False

    async def post(self, establishment: Establishment, item: OutboxItem) -> str | None:
        """One signed attempt, within a total deadline; ``None`` on a 2xx answer, else what
        went wrong."""
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
            problem = await check_target(establishment.webhook_url)
            if problem is not None:
                return f"Refused: {problem}"
            async with asyncio.timeout(self.policy.timeout):
                response = await self._client.post(
                    establishment.webhook_url, content=body, headers=headers
                )
        except TimeoutError:
            return f"Timeout: no complete answer within {self.policy.timeout:g} s"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"


def describe(item: OutboxItem) -> JsonObject:
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
