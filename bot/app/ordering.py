"""Per-conversation ordering, once for every channel: jobs of one key run one after the other,
jobs of different keys concurrently (bounded).

Telegram submits its updates, re-deliveries and due follow-ups (fire and forget, see
:meth:`KeyedQueues.submit`); the HTTP API awaits its request's work in the same queue
(:meth:`KeyedQueues.run`), which gives the same order as a lock per conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
#: The plain jobs a queue's runner takes (``Never`` for a queue of awaited calls only).
J = TypeVar("J")


@dataclass(frozen=True)
class _Call:
    """Awaited work (:meth:`KeyedQueues.run`): ``call()`` runs it and settles its caller."""

    call: Callable[[], Awaitable[None]]


class KeyedQueues(Generic[J]):
    """Runs jobs of one key in submission order; ``run(job)`` is awaited for plain jobs."""

    def __init__(
        self, run: Callable[[J], Awaitable[None]] | None = None, max_concurrency: int = 256
    ) -> None:
        self._run = run
        self._queues: dict[Hashable, deque[J | _Call]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_concurrency)
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, key: Hashable, job: J) -> None:
        """Queue ``job`` behind the jobs of ``key``; a failure is logged (type only) and never
        stops the jobs after it."""
        self._enqueue(key, job)

    def _enqueue(self, key: Hashable, job: J | _Call) -> None:
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(job)
            return
        self._queues[key] = deque([job])
        self._idle.clear()
        task = asyncio.create_task(self._drain(key))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` in ``key``'s turn and return its result (or raise its error)."""
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()

        async def call() -> None:
            if done.cancelled():  # the caller went away before its turn
                return
            try:
                result = await work()
            except Exception as exc:  # handed to the waiting caller
                if not done.cancelled():
                    done.set_exception(exc)
                return
            except BaseException:
                done.cancel()
                raise
            if not done.cancelled():
                done.set_result(result)

        self._enqueue(key, _Call(call))
        return await done

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    async def _drain(self, key: Hashable) -> None:
        queue = self._queues[key]
        try:
            while queue:
                job = queue.popleft()
                async with self._slots:
                    if isinstance(job, _Call):
                        await job.call()
                        continue
                    assert self._run is not None, "plain jobs need a runner"
                    try:
                        await self._run(job)
                    except Exception as exc:  # one bad update must not stop its chat
                        log.error("update failed: %s", type(exc).__name__)
        finally:
            del self._queues[key]

    async def join(self) -> None:
        """Wait until every submitted job has run."""
        await self._idle.wait()

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
