"""Reliability proofs (issue 6): a busy database, Telegram faults, hostile input on the webhook
and the API, and a small load run. Telegram is the fake Bot API on loopback; our code is real.
The SIGKILL proof is in test_crash.py; the full load run is ``bench/load.py`` (``make soak``)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from bot.cli.compose import build_server_app
from bot.engine.flow import Engine
from bot.storage.sqlite import SqliteStorage
from tests.harness.api import Api, run_api
from tests.harness.fakebotapi import FakeBotAPI, FakeUser
from tests.harness.servers import serve
from tests.harness.telegram import WEBHOOK_SECRET, Bot, running_bot, settings_for, settled
from tests.harness.wait import within
from tests.harness.webhook_client import WebhookClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

HEADERS = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
HOSTILE = [
    "<b>gras</b> <script>alert(1)</script> <a href='https://evil.example'>x</a>",
    "*gras* _italique_ [lien](https://evil.example) `code` ||spoiler||",
    "'; DROP TABLE sessions; --",
    "Robert'); DELETE FROM consents WHERE ('1'='1",
    "bonjour\x00\x07\x1b[31m\u200b\u200d\ufeff fin",
    "\u202eעברית مرحبا\u202c",
    "é" * 10_000,
]


#: Every test here runs offline: only loopback can be reached (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("no_network")


async def consented(bot: Bot, user: FakeUser) -> None:
    """The person starts and consents (their state is then durable)."""
    await bot.send(user, user.text("/start"))
    consent = next(m for m in reversed(bot.api.to_chat(user.id)) if m.buttons)
    await bot.send(user, user.press(consent, consent.buttons[0][1]))


# -- busy database ---------------------------------------------------------------------------
async def test_a_write_lock_held_by_another_process_loses_no_update(
    api: FakeBotAPI, tmp_path: Path, engine: Engine
) -> None:
    async with running_bot(api, tmp_path, engine, webhook=True) as bot:
        user = api.user(42)
        await consented(bot, user)
        holder = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block)
            [
                sys.executable,
                "-c",
                "import sqlite3, sys, time\n"
                "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
                "db.execute('BEGIN IMMEDIATE')\n"
                "print('locked', flush=True)\n"
                "time.sleep(2)\n"
                "released = time.monotonic()\n"
                "db.execute('COMMIT')\n"
                "print(released, flush=True)\n",
                str(tmp_path / "passerelle.db"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None
            assert await asyncio.to_thread(holder.stdout.readline) == "locked\n"
            before = api.count_to(user.id)
            update = user.text("aide")
            # The 200 comes once the lock is released and the update recorded.
            await bot.deliver(update)
            answered = time.monotonic()
            # CLOCK_MONOTONIC is one clock for every process of the machine.
            released = float(await asyncio.to_thread(holder.stdout.readline))
            assert answered >= released, "answered 200 while the update could not be stored"
            await api.wait_for(lambda: api.count_to(user.id) > before)
            await bot.channel.drain()
        finally:
            holder.wait(timeout=10)
            assert holder.stdout is not None
            holder.stdout.close()
        with sqlite3.connect(tmp_path / "passerelle.db") as db:
            row = db.execute(
                "SELECT done_at FROM inbox WHERE update_id = ?", (update["update_id"],)
            ).fetchone()
        assert row is not None and row[0] is not None
        assert len(api.to_chat(user.id)) == before + 1


# -- Telegram faults --------------------------------------------------------------------------
async def test_429_and_500_from_telegram_still_deliver_every_reply_once(
    api: FakeBotAPI, tmp_path: Path, engine: Engine
) -> None:
    async with running_bot(api, tmp_path, engine, webhook=True) as bot:
        users = [api.user(100 + i) for i in range(5)]
        for user in users:
            await consented(bot, user)
        before = {u.id: api.count_to(u.id) for u in users}
        api.fail("sendMessage", 429, retry_after=1)
        api.fail("sendMessage", 500, times=2)
        for user in users:
            await bot.deliver(user.text("aide"))
        await api.wait_for(lambda: all(api.count_to(u.id) > before[u.id] for u in users))
        await bot.channel.drain()
        assert {u.id: api.count_to(u.id) - before[u.id] for u in users} == {u.id: 1 for u in users}
        assert [c.status for c in api.called("sendMessage") if c.status != 200] == [429, 500, 500]


async def test_telegram_down_longer_than_the_retries_delivers_later_in_order(
    api: FakeBotAPI, tmp_path: Path, engine: Engine
) -> None:
    """Past the bounded retries, replies wait in the outbox and go out when Telegram is back,
    in order, each once."""
    async with running_bot(api, tmp_path, engine, webhook=True) as bot:
        user = api.user(7)
        await consented(bot, user)
        before = api.count_to(user.id)
        api.fail("sendMessage", 500, times=6)  # more than one call's retries
        await bot.deliver(user.text("glossaire"))
        await bot.deliver(user.text("aide"))
        await api.wait_for(lambda: api.count_to(user.id) >= before + 2)
        await settled(api, bot.channel, bot.storage)  # a duplicate, if any, has landed
        sent = api.to_chat(user.id)[before:]
        assert len(sent) == 2
        assert sent[0].text != sent[1].text  # glossary first, then help: in order
        assert (await bot.storage.replies_pending()) == []


async def test_telegram_timeouts_still_deliver_every_reply(
    api: FakeBotAPI, tmp_path: Path, engine: Engine
) -> None:
    """Telegram answering too late: the call is retried. A request that timed out may still
    have been delivered (the Bot API has no idempotency key), so a timeout is the one fault
    where a person can see a reply twice: at most once more per timed-out attempt."""
    settings = settings_for(api, tmp_path, webhook=True)
    storage = SqliteStorage(settings.db_path, synchronous="NORMAL")
    app = build_server_app(
        settings, engine, storage=storage, pause=0, retry_delay=0.01, read_timeout=0.3
    )
    async with (
        serve(app) as url,
        httpx.AsyncClient(timeout=30) as client,
        WebhookClient(WEBHOOK_SECRET) as telegram,
    ):
        bot = Bot(api, app.state.telegram, storage, url, True, client, telegram)
        user = api.user(8)
        await consented(bot, user)
        before = api.count_to(user.id)
        api.fail("sendMessage", 200, delay=1.0, times=2)  # answers after the client gave up
        await bot.deliver(user.text("aide"))
        await api.wait_for(lambda: api.count_to(user.id) > before)
        await settled(api, bot.channel, storage)  # the late answers have landed
        delivered = api.count_to(user.id) - before
        assert 1 <= delivered <= 1 + 2
        assert (await storage.replies_pending()) == []


# -- hostile input ----------------------------------------------------------------------------
async def test_hostile_bodies_on_the_webhook_are_refused_and_nothing_is_recorded(
    api: FakeBotAPI, tmp_path: Path, engine: Engine
) -> None:
    async with running_bot(api, tmp_path, engine, webhook=True) as bot:
        url = bot.url + "/telegram/webhook"

        async def ten_megabytes() -> AsyncIterator[bytes]:
            for _ in range(10 * 16):
                yield b" " * 65536

        huge = await bot.client.post(url, content=ten_megabytes(), headers=HEADERS)
        assert huge.status_code == 413
        nested = b'{"update_id": 5, "message": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        assert (await bot.client.post(url, content=nested, headers=HEADERS)).status_code in (
            400,
            413,
        )
        deep = b'{"update_id": 6, "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
        assert (await bot.client.post(url, content=deep, headers=HEADERS)).status_code == 400
        bad = b'{"update_id": 7, "message": {"text": "\xff\xfe"}}'
        assert (await bot.client.post(url, content=bad, headers=HEADERS)).status_code == 400
        counts = await bot.storage.counts()
        assert counts["inbox"] == 0
        # The server still serves.
        user = api.user(9)
        assert await bot.send(user, user.text("/start"))


async def test_hostile_text_is_answered_and_never_interpreted(
    api: FakeBotAPI, tmp_path: Path, engine: Engine
) -> None:
    async with running_bot(api, tmp_path, engine, webhook=True) as bot:
        user = api.user(11)
        await consented(bot, user)
        for body in HOSTILE:
            sent = await bot.send(user, user.text(body))
            assert sent and all(m.text for m in sent)
        calls = [c for c in api.calls if c.method in ("sendMessage", "sendPhoto")]
        # HTML parse mode, every dynamic value escaped: Telegram parsed every message (the fake
        # refuses an unknown tag or a bare « < » / « & » with a 400, as Telegram does), and
        # nothing a person typed came out in bold.
        assert calls and all(c.params.get("parse_mode") == "HTML" for c in calls)
        assert [c for c in api.calls if c.status == 400] == []
        assert all("entities" not in c.params for c in calls)
        assert all(not m.bold for m in api.to_chat(user.id)[2:])
        # SQL-looking text changed nothing: the person's rows are still there, once.
        with sqlite3.connect(tmp_path / "passerelle.db") as db:
            assert db.execute("SELECT COUNT(*) FROM consents").fetchone()[0] == 1
            assert db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 1


@pytest.fixture
def hospital_api(engine: Engine, tmp_path: Path) -> Iterator[Api]:
    yield from run_api(engine, tmp_path)


def test_hostile_input_on_the_api(hospital_api: Api) -> None:
    with hospital_api.client() as client:
        headers = {"content-type": "application/json"}

        def ten_megabytes() -> Iterator[bytes]:
            for _ in range(10 * 16):
                yield b" " * 65536

        huge = client.post("/conversations", content=ten_megabytes(), headers=headers)
        assert huge.status_code == 413
        nested = b'{"context": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
        assert client.post("/conversations", content=nested, headers=headers).status_code in (
            400,
            413,
            422,
        )
        bad = b'{"context": "\xff\xfe"}'
        assert client.post("/conversations", content=bad, headers=headers).status_code in (
            400,
            422,
        )
        created = client.post("/conversations", json={})
        assert created.status_code == 201
        conversation = created.json()["conversation_id"]
        for body in HOSTILE:
            answer = client.post(
                f"/conversations/{conversation}/messages", json={"text": body[:2000]}
            )
            assert answer.status_code == 200, answer.text
            assert all(reply["text"] for reply in answer.json()["replies"])
        transcript = client.get(f"/conversations/{conversation}")
        assert transcript.status_code == 200
        # Stored and returned as data: the SQL-looking text is in the transcript verbatim.
        assert HOSTILE[2] in json.dumps(transcript.json(), ensure_ascii=False)


# -- load (small variant of bench/load.py) ------------------------------------------------------
async def test_small_load_run_loses_and_duplicates_no_reply(tmp_path: Path) -> None:
    from bench.load import run

    result = await run(users=60, turns=5, concurrency=20, workdir=tmp_path)
    assert result["lost"] == 0
    assert result["duplicated"] == 0
    assert result["replies"] == 60 * 5


@pytest.mark.slow
async def test_load_run_300_people_loses_and_duplicates_no_reply(tmp_path: Path) -> None:
    from bench.load import run

    result = await within(
        run(users=300, turns=10, concurrency=50, workdir=tmp_path), "the load run", seconds=600
    )
    assert (result["lost"], result["duplicated"], result["replies"]) == (0, 0, 300 * 10)
