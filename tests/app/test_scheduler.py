"""The one scheduler (retention, follow-ups) and the per-conversation ordering, as channels
rely on them: overdue jobs run at once, a failing job never stops the next run, requests of
one conversation never interleave while other conversations go on."""

from __future__ import annotations

import asyncio
import time
from typing import Never

import pytest

from bot.app.ordering import KeyedQueues
from bot.app.privacy import Privacy, schedule_retention
from bot.app.scheduler import Scheduler
from bot.storage.base import Conversation
from bot.storage.memory import MemoryIntegrationStore, MemoryStorage


async def test_an_overdue_job_runs_at_once_and_a_failure_does_not_stop_the_next_run() -> None:
    scheduler = Scheduler(clock=lambda: 1_000.0)
    ran = asyncio.Event()
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise RuntimeError("store busy")
        ran.set()

    scheduler.every("retention", 0.01, flaky)
    overdue = asyncio.Event()

    async def followup() -> None:
        overdue.set()

    scheduler.at("followup:1", 10.0, followup)  # due long ago
    async with asyncio.timeout(30):
        await ran.wait()
        await overdue.wait()
    assert runs >= 2
    assert "followup:1" not in scheduler.scheduled()  # ran once, not waiting again
    await scheduler.stop()
    assert scheduler.scheduled() == set()


async def test_one_conversation_in_order_others_meanwhile() -> None:
    queues: KeyedQueues[Never] = KeyedQueues()
    gate = asyncio.Event()
    seen: list[str] = []

    async def first() -> str:
        await gate.wait()
        seen.append("a1")
        return "a1"

    async def second() -> str:
        seen.append("a2")
        return "a2"

    async def other() -> str:
        seen.append("b")
        gate.set()  # runs while a1 waits: another conversation is not held up
        return "b"

    results = await asyncio.gather(
        queues.run("a", first), queues.run("a", second), queues.run("b", other)
    )
    assert list(results) == ["a1", "a2", "b"]
    assert seen == ["b", "a1", "a2"]


async def test_an_error_reaches_its_caller_and_the_next_request_still_runs() -> None:
    queues: KeyedQueues[Never] = KeyedQueues()

    async def failing() -> None:
        raise ValueError("unknown choice")

    async def fine() -> str:
        return "ok"

    with pytest.raises(ValueError):
        await queues.run("a", failing)
    assert await queues.run("a", fine) == "ok"


class Watched(MemoryIntegrationStore):
    """The memory store, saying when a purge has run."""

    def __init__(self) -> None:
        super().__init__()
        self.purged = asyncio.Event()

    async def purge_idle_conversations(self, idle_days: int) -> int:
        erased = await super().purge_idle_conversations(idle_days)
        self.purged.set()
        return erased


async def test_one_retention_run_at_start_up_erases_idle_people_and_api_conversations() -> None:
    """One job on one scheduler serves every channel: a Telegram person and an API
    conversation idle past the retention period are both erased by its first run, at
    start-up; the recent ones stay."""
    store = Watched()
    now = time.time()
    for cid, at in (("conv_old", now - 400 * 86400), ("conv_new", now)):
        row = Conversation(cid, "key_1", "chu-a", {"node": "start"}, (), at, at)
        await store.save_turn(row, created=True, lines=[])
    clock = [now - 400 * 86400]
    people = MemoryStorage(clock=lambda: clock[0])
    await people.set_consent("idle-person", True)
    await people.save_session("idle-person", {"node": "start"})
    clock[0] = now
    await people.set_consent("recent-person", True)
    await people.save_session("recent-person", {"node": "start"})
    retention = Privacy(people, MemoryStorage(), retention_days=180, conversations=store)
    scheduler = Scheduler()
    schedule_retention(scheduler, retention.purge)
    try:
        async with asyncio.timeout(30):  # at start-up: at once, whatever the load
            await store.purged.wait()
    finally:
        await scheduler.stop()
    assert scheduler.scheduled() == set()
    assert await store.load_conversation("conv_old", "chu-a") is None
    assert await store.load_conversation("conv_new", "chu-a") is not None
    assert await people.load_session("idle-person") is None
    assert await people.load_session("recent-person") == {"node": "start"}
