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
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.fakebotapi import FakeBotAPI, FakeUser
from tests.harness.instances import Server, post, telegram
from tests.harness.wait import eventually

CHATS = 50
TURNS = 12


async def settled(api: FakeBotAPI, db: Path) -> None:
    """Every update the server acknowledged is applied and every reply it recorded is sent
    (its tables say so) and no call is being answered: nothing more can reach Telegram."""

    def quiet() -> bool:
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            (pending,) = connection.execute(
                "SELECT COUNT(*) FROM inbox WHERE done_at IS NULL"
            ).fetchone()
            (unsent,) = connection.execute("SELECT COUNT(*) FROM replies").fetchone()
        finally:
            connection.close()
        return pending == 0 and unsent == 0 and api.busy == 0

    await eventually(quiet, "the server applied every update and sent every reply")


@pytest.fixture
def cwd_root() -> Iterator[None]:
    # ``python -m bot.cli`` must find the package and ``contenus/`` from the repository root.
    here = os.getcwd()
    os.chdir(Path(__file__).resolve().parents[2])
    try:
        yield
    finally:
        os.chdir(here)


async def test_sigkill_mid_conversation_loses_nothing_and_applies_once(
    tmp_path: Path, cwd_root: None
) -> None:
    async with FakeBotAPI() as api:
        server = Server(api, tmp_path / "passerelle.db")
        await server.start()
        try:
            users = [api.user(7_000_000 + i) for i in range(CHATS)]
            async with telegram(connections=20) as client:
                # Everyone starts and consents (state is then durable).
                for user in users:
                    assert await post(client, server.url, user.text("/start"))
                await api.wait_for(lambda: all(api.count_to(u.id) >= 1 for u in users))
                await settled(api, server.db)  # the second greeting message too
                greeted = {u.id: api.count_to(u.id) for u in users}
                for user in users:
                    consent = next(m for m in reversed(api.to_chat(user.id)) if m.buttons)
                    press = user.press(consent, consent.buttons[0][1])
                    assert await post(client, server.url, press)
                await api.wait_for(lambda: all(api.count_to(u.id) > greeted[u.id] for u in users))
                await settled(api, server.db)
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
                await settled(api, server.db)  # any extra (duplicate) reply has landed
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
