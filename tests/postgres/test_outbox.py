"""The webhook outbox and the follow-ups with two instances on one PostgreSQL database: each
event reaches its establishment once (counted by ``webhook-id`` at a real receiver), an event
claimed by an instance that then died is delivered by the other once the claim lapsed, and a
due follow-up is claimed by one instance only."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import time
from collections.abc import AsyncIterator

import pytest

from bot.adapters.webhooks import RetryPolicy, WebhookWorker
from bot.json_types import JsonObject
from bot.storage.base import FollowUpTaken, OutgoingReply, UserChange
from bot.storage.integration import Conversation, OutboxEvent, TranscriptLine
from bot.storage.postgres import PostgresIntegrationStore, PostgresStorage
from bot.storage.postgres.schema import ensure_current
from tests.harness.webhooks import Receiver, establishment


@pytest.fixture
async def two(pg_url: str) -> AsyncIterator[tuple[PostgresStorage, PostgresStorage]]:
    """Two instances' stores (two pools, two claim identities) on one migrated database."""
    await ensure_current(pg_url, upgrade=True)
    first, second = PostgresStorage(pg_url), PostgresStorage(pg_url)
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()


def events(count: int) -> list[OutboxEvent]:
    return [
        OutboxEvent(f"msg_{n:04d}", "chu", "contact.requested", json.dumps({"n": n}), f"s{n % 7}")
        for n in range(count)
    ]


async def wait_until(condition: object, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_two_workers_deliver_each_event_once(
    two: tuple[PostgresStorage, PostgresStorage],
) -> None:
    receiver = Receiver()
    try:
        places = {"chu": establishment("chu", receiver.port)}
        stores = [PostgresIntegrationStore(core) for core in two]
        await stores[0].enqueue(events(120))
        workers = [
            WebhookWorker(s, places, policy=RetryPolicy(base=0.05), idle_poll=0.05) for s in stores
        ]
        for worker in workers:
            await worker.start()
        try:
            await wait_until(lambda: len(receiver.acked) == 120)
            await asyncio.sleep(0.3)  # a second delivery of any event would land by now
        finally:
            for worker in workers:
                await worker.stop()
    finally:
        receiver.stop()
    ids = collections.Counter(headers["webhook-id"] for headers, _ in receiver.raw)
    assert set(ids) == {e.id for e in events(120)}
    assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]
    assert all(w.delivered > 0 for w in workers), [w.delivered for w in workers]
    assert await stores[0].outbox_list() == []


async def test_events_claimed_by_a_dead_instance_are_delivered_by_the_other(
    two: tuple[PostgresStorage, PostgresStorage],
) -> None:
    dead, alive = (PostgresIntegrationStore(core) for core in two)
    dead.core.claim_seconds = 1.0
    await dead.enqueue(events(10))
    claimed = await dead.outbox_due(time.time())  # claimed, then the process died
    assert len(claimed) == 7  # the head of each of the 7 conversations
    assert await alive.outbox_due(time.time()) == []  # held by the (dead) claimer
    receiver = Receiver()
    try:
        worker = WebhookWorker(
            alive,
            {"chu": establishment("chu", receiver.port)},
            policy=RetryPolicy(base=0.05),
            idle_poll=0.05,
        )
        await worker.start()
        try:
            await wait_until(lambda: len(receiver.acked) == 10)
        finally:
            await worker.stop()
    finally:
        receiver.stop()
    ids = collections.Counter(headers["webhook-id"] for headers, _ in receiver.raw)
    assert len(ids) == 10 and max(ids.values()) == 1


async def test_a_due_follow_up_is_claimed_by_one_instance(
    two: tuple[PostgresStorage, PostgresStorage],
) -> None:
    first, second = two
    now = time.time()
    await first.run(
        [
            (
                'INSERT INTO followups ("user", address, roles, due_at, created_at) '
                "VALUES ('te_x', '42', '[]', %s, %s)",
                (now - 1, now - 10),
            )
        ]
    )
    (row,) = await first.rows("SELECT id FROM followups")
    outcomes = await asyncio.gather(
        *(
            store.commit_update(None, "", UserChange(followup=int(row[0])))
            for store in (first, second, first, second)
        ),
        return_exceptions=True,
    )
    assert sum(o is None for o in outcomes) == 1
    assert all(isinstance(o, FollowUpTaken) for o in outcomes if o is not None)


async def test_the_retention_lease_has_one_holder_until_it_lapses(pg_url: str) -> None:
    await ensure_current(pg_url, upgrade=True)
    now = [1_700_000_000.0]
    first = PostgresStorage(pg_url, clock=lambda: now[0])
    second = PostgresStorage(pg_url, clock=lambda: now[0])
    await first.open()
    await second.open()
    try:
        assert await first.lease("retention", 60)
        assert not await second.lease("retention", 60)
        now[0] += 30
        assert await first.lease("retention", 60)  # the holder renews
        now[0] += 59
        assert not await second.lease("retention", 60)  # renewed: still held
        now[0] += 2
        assert await second.lease("retention", 60)  # lapsed: the other takes over
        assert not await first.lease("retention", 60)
    finally:
        await first.close()
        await second.close()


async def test_a_conversation_turn_waits_for_the_other_instance(
    two: tuple[PostgresStorage, PostgresStorage],
) -> None:
    """Two instances' turns of one conversation (load, then save a changed state): the second
    one's load waits for the first one's save, so that no turn's change is lost."""
    a, b = (PostgresIntegrationStore(core) for core in two)
    now = time.time()
    start = Conversation("conv_1", "key_1", "chu", {"turns": 0}, (), now, now)
    await a.save_turn(start, created=True, lines=[])
    order: list[str] = []
    inside = asyncio.Event()

    async def turn(store: PostgresIntegrationStore, name: str, first: bool) -> None:
        if not first:
            await inside.wait()
        async with store.conversation_turn("conv_1"):
            loaded = await store.load_conversation("conv_1", "chu")
            assert loaded is not None
            turns = loaded.session["turns"]
            assert isinstance(turns, int)
            order.append(f"{name} loaded {turns}")
            inside.set()
            await asyncio.sleep(0.2)
            session: JsonObject = {"turns": turns + 1}
            line = TranscriptLine(time.time(), "person", {"text": name})
            await store.save_turn(
                dataclasses.replace(loaded, session=session), created=False, lines=[line]
            )
            order.append(f"{name} saved")

    await asyncio.gather(turn(a, "a", True), turn(b, "b", False))
    # b's load came after a's commit (it saw a's change), whichever task then ran first.
    assert sorted(order) == ["a loaded 0", "a saved", "b loaded 1", "b saved"]
    final = await b.load_conversation("conv_1", "chu")
    assert final is not None and final.session == {"turns": 2}
    assert [line.body["text"] for line in await a.transcript("conv_1")] == ["a", "b"]


async def test_a_reply_taken_over_from_a_live_sender_is_sent_by_one_instance(pg_url: str) -> None:
    """A live instance's claim lapsed (frozen, starved) while it sends a chat's reply in the
    chat's turn: the other instance claims the reply, but reads what is left to send only in
    that turn, so it waits for the sender and then finds the reply gone (sent once)."""
    await ensure_current(pg_url, upgrade=True)
    late = PostgresStorage(pg_url, clock=lambda: time.time() - 3600)  # its claims lapse at once
    other = PostgresStorage(pg_url)
    await late.open()
    await other.open()
    try:
        sending = asyncio.Event()
        sent = asyncio.Event()
        reply = OutgoingReply(5, 0, 7, "sendMessage", '{"text": "Bonjour"}')

        async def sender() -> None:
            async with late.chat_turn("chat:7"):
                await late.inbox_add(5, b"{}", chat="chat:7")
                await late.commit_update(5, "", UserChange(replies=(reply,)))
                sending.set()
                await sent.wait()  # Telegram answering, the claim lapsed meanwhile
                await late.reply_sent(5, 0)

        async def taker() -> list[OutgoingReply]:
            await sending.wait()
            assert [r.update_id for r in await other.replies_orphaned()] == [5]
            async with other.chat_turn("chat:7"):
                return await other.replies_of_chat(7)

        sending_task = asyncio.create_task(sender())
        taking = asyncio.create_task(taker())
        waiting = "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        while (await late.rows(waiting))[0][0] == 0:  # the taker waits for the chat's turn
            assert not taking.done(), "the taker read the replies while they were being sent"
            await asyncio.sleep(0.02)
        assert not taking.done()
        sent.set()
        await sending_task
        assert await taking == []  # nothing left: the reply is not sent a second time
        # A reply still unsent is what the turn hands over, whoever recorded it.
        async with other.chat_turn("chat:7"):
            await other.commit_update(None, "", UserChange(replies=(reply,)))
        async with late.chat_turn("chat:7"):
            assert await late.replies_of_chat(7) == [reply]
    finally:
        await late.close()
        await other.close()
