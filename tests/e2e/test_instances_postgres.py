"""Two ``passerelle serve`` instances on one PostgreSQL database, with updates spread over both
as a load balancer would (each update to one instance, the next of a chat maybe to the other):
nothing lost, nothing applied twice, each chat's order kept; then one instance killed with
SIGKILL five times under load while the other carries on.

What people would notice is asserted on the fake Bot API: one reply per text turn, in the
order of the turns. The one duplicate the design allows is a reply Telegram accepted in the
instant before the dead instance marked it sent: at most one per chat per crash
(docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.storage.postgres.schema import ensure_current
from tests.harness.fakebotapi import FakeBotAPI, FakeUser
from tests.harness.instances import Server, post, telegram
from tests.harness.wait import eventually
from tests.harness.webhook_client import WebhookClient

pytestmark = pytest.mark.slow
CHATS = 16
TURNS = 8
CLAIM_SECONDS = "4"  # how long a dead instance's claims last before the other takes over


@pytest.fixture
def migrated_pg(pg_url: str) -> str:
    """A new PostgreSQL database, migrated as ``passerelle db migrate`` does."""
    asyncio.run(ensure_current(pg_url, upgrade=True))
    return pg_url


def instance(api: FakeBotAPI, url: str, tmp_path: Path) -> Server:
    server = Server(api, tmp_path / "passerelle.db")  # the path only places the log
    server.env["PASSERELLE_DB"] = url
    server.env["PASSERELLE_CLAIM_SECONDS"] = CLAIM_SECONDS
    return server


async def deliver(client: WebhookClient, servers: list[Server], first: int, update: Any) -> int:
    """Post like a load balancer: to ``servers[first]``, else to the next one that answers
    200 (a dead instance refuses the connection). Returns the index that took it."""
    for attempt in range(200):
        index = (first + attempt) % len(servers)
        if await post(client, servers[index].url, update):
            return index
        await asyncio.sleep(0.02)
    raise AssertionError("no instance accepted the update")


async def consent_everyone(
    api: FakeBotAPI, client: WebhookClient, servers: list[Server], users: list[FakeUser]
) -> dict[int, int]:
    for i, user in enumerate(users):
        await deliver(client, servers, i, user.text("/start"))
    await api.wait_for(lambda: all(any(m.buttons for m in api.to_chat(u.id)) for u in users), 30)
    counts = {u.id: api.count_to(u.id) for u in users}
    for i, user in enumerate(users):
        consent = next(m for m in reversed(api.to_chat(user.id)) if m.buttons)
        await deliver(client, servers, i + 1, user.press(consent, consent.buttons[0][1]))
    await api.wait_for(lambda: all(api.count_to(u.id) > counts[u.id] for u in users), 30)
    await drained(api, servers[0].env["PASSERELLE_DB"])  # the consent's last messages landed
    return {u.id: api.count_to(u.id) for u in users}


def words(turns: int) -> list[str]:
    return ["aide" if turn % 2 else "glossaire" for turn in range(turns)]


def check_order(api: FakeBotAPI, users: list[FakeUser], baseline: dict[int, int]) -> None:
    """Each chat's replies alternate as its turns did (aide, glossaire, …)."""
    for user in users:
        texts = [m.text for m in api.to_chat(user.id)[baseline[user.id] :]]
        assert texts[0] != texts[1], "the two kinds of turn have different replies"
        for index, text in enumerate(texts[:TURNS]):
            assert text == texts[index % 2], (user.id, index)


async def drained(api: FakeBotAPI, url: str) -> None:
    """Wait until nothing more can reach Telegram: every update applied, no reply left to send
    (a reply whose sender died stays in ``replies`` until the other instance sends it again)
    and no call being answered. After it, a message that did not come never will."""

    async def nothing_left() -> bool:
        pending, unsent, _ = await asyncio.to_thread(database_state, url)
        return pending == 0 and unsent == 0 and api.busy == 0

    await eventually(nothing_left, "updates applied and replies sent by the instances")
    await api.idle()


def database_state(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        pending = conn.execute("SELECT COUNT(*) FROM inbox WHERE done_at IS NULL").fetchone()
        unsent = conn.execute("SELECT COUNT(*) FROM replies").fetchone()
        applied = conn.execute("SELECT COUNT(*) FROM inbox").fetchone()
    assert pending and unsent and applied
    return int(pending[0]), int(unsent[0]), int(applied[0])


async def test_two_instances_apply_each_update_once_in_order(
    migrated_pg: str, tmp_path: Path
) -> None:
    database = migrated_pg
    async with FakeBotAPI() as api:
        servers = [instance(api, database, tmp_path) for _ in range(2)]
        for server in servers:
            await server.start()
        try:
            users = [api.user(8_000_000 + i) for i in range(CHATS)]
            async with telegram() as client:
                baseline = await consent_everyone(api, client, servers, users)
                spread = itertools.count()
                took = [0, 0]

                async def talk(user: FakeUser) -> None:
                    for word in words(TURNS):  # like Telegram: the next after the 200
                        took[await deliver(client, servers, next(spread) % 2, user.text(word))] += 1

                await asyncio.gather(*(talk(u) for u in users))
                await api.wait_for(
                    lambda: all(api.count_to(u.id) >= baseline[u.id] + TURNS for u in users), 60
                )
                await drained(api, database)  # a reply applied twice would have landed
        finally:
            for server in servers:
                server.stop()
    assert min(took) > CHATS * TURNS // 4, took  # both instances really took updates
    extra = {u.id: api.count_to(u.id) - baseline[u.id] - TURNS for u in users}
    assert all(n == 0 for n in extra.values()), extra
    check_order(api, users, baseline)
    pending, unsent, _ = database_state(database)
    assert pending == 0 and unsent == 0


async def test_one_instance_killed_five_times_under_load_loses_nothing(
    migrated_pg: str, tmp_path: Path
) -> None:
    database = migrated_pg
    crashes = 5
    async with FakeBotAPI() as api:
        servers = [instance(api, database, tmp_path) for _ in range(2)]
        for server in servers:
            await server.start()
        try:
            users = [api.user(8_100_000 + i) for i in range(CHATS)]
            async with telegram() as client:
                baseline = await consent_everyone(api, client, servers, users)
                spread = itertools.count()
                sent = 0
                for _ in range(crashes):

                    async def talk(user: FakeUser) -> None:
                        nonlocal sent
                        for word in words(2):
                            await deliver(client, servers, next(spread) % 2, user.text(word))
                            sent += 1

                    async def killer(target: int) -> None:
                        while sent < target:  # noqa: ASYNC110
                            await asyncio.sleep(0.002)
                        servers[0].kill()  # SIGKILL: nothing flushed, nothing released

                    target = sent + CHATS  # mid-round
                    await asyncio.gather(killer(target), *(talk(u) for u in users))
                    await servers[0].start()
                expected = {u.id: baseline[u.id] + 2 * crashes for u in users}
                await api.wait_for(
                    lambda: all(api.count_to(u.id) >= expected[u.id] for u in users), 90
                )
                await drained(api, database)  # late duplicates (claims expired) landed
        finally:
            for server in servers:
                server.stop()
    extra = {u.id: api.count_to(u.id) - expected[u.id] for u in users}
    assert all(0 <= n <= crashes for n in extra.values()), extra
    pending, unsent, _ = database_state(database)
    assert pending == 0 and unsent == 0


async def test_a_paused_instance_keeps_its_replies_no_reply_sent_twice(
    migrated_pg: str, tmp_path: Path
) -> None:
    """An instance frozen (SIGSTOP: a stalled VM, a machine under heavy load) longer than its
    claim while Telegram is answering its reply: the other instance sees the claim lapse, but
    the frozen one is alive and finishes that send when it resumes; the reply reaches the
    person once, not once from each instance."""
    database = migrated_pg
    claim = 2.0
    async with FakeBotAPI() as api:
        servers = [instance(api, database, tmp_path) for _ in range(2)]
        for server in servers:
            server.env["PASSERELLE_CLAIM_SECONDS"] = str(claim)
            await server.start()
        frozen = servers[0]
        assert frozen.process is not None
        try:
            user = api.user(8_200_000)
            async with telegram() as client:
                baseline = (await consent_everyone(api, client, servers, [user]))[user.id]
                # Telegram is slow to answer the next reply: the instance is mid-send.
                api.fail("sendMessage", 200, delay=4 * claim)
                assert await post(client, frozen.url, user.text("aide"))
                await eventually(lambda: api.busy > 0, "the reply being sent")
                holder = await asyncio.to_thread(reply_holders, database)
                frozen.process.send_signal(signal.SIGSTOP)
                try:
                    # The other instance's sweeper found the claim lapsed and took the reply.
                    await eventually(
                        _claim_moved(database, holder), "the other instance took the reply over"
                    )
                finally:
                    frozen.process.send_signal(signal.SIGCONT)
                await drained(api, database)
        finally:
            for server in servers:
                server.stop()
    texts = [m.text for m in api.to_chat(user.id)[baseline:]]
    assert len(texts) == 1, texts


def reply_holders(url: str) -> set[str]:
    """Who holds the claims of the replies not sent yet."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT claimed_by FROM replies").fetchall()
    return {str(row[0]) for row in rows}


def _claim_moved(url: str, before: set[str]) -> Any:
    async def moved() -> bool:
        now = await asyncio.to_thread(reply_holders, url)
        return bool(now) and not now & before

    return moved
