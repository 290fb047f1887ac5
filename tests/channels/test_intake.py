"""Issue 11: no single Telegram update can stop the service. A malformed one is checked before
it is recorded (200, dropped, a log line); rows that an older version recorded, or that keep
failing, are dead-lettered at start-up instead of stopping it."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bot.channels.telegram import MAX_APPLY_ATTEMPTS, update_problem
from bot.engine.flow import Engine
from bot.json_types import JsonObject
from bot.storage.base import UserChange
from bot.storage.sqlite import SqliteStorage
from tests.harness.fakebotapi import FakeBotAPI
from tests.harness.telegram import WEBHOOK_SECRET, msg, running_bot

HEADERS = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}


#: Every test here runs offline: only loopback can be reached (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("no_network")


def with_chat_id(update: dict[str, Any], chat_id: Any) -> dict[str, Any]:
    message = update["message"]
    message["chat"]["id"] = chat_id
    message["from"]["id"] = chat_id
    return update


def inbox(db: Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(
            "SELECT update_id, payload IS NULL, done_at IS NOT NULL, failed_at IS NOT NULL "
            "FROM inbox ORDER BY update_id"
        ).fetchall()


@pytest.mark.parametrize(
    "bad_id", [pytest.param("abc", id="text-id"), pytest.param(2**64, id="id-over-2^64")]
)
async def test_a_malformed_update_is_acknowledged_dropped_and_never_stored(
    api: FakeBotAPI, tmp_path: Path, engine: Engine, bad_id: Any, caplog: pytest.LogCaptureFixture
) -> None:
    user = api.user(601)
    caplog.set_level(logging.WARNING, logger="bot.channels.telegram")
    async with running_bot(api, tmp_path, engine, webhook=True) as bot:
        update = with_chat_id(user.text("/start"), bad_id)
        response = await bot.client.post(
            bot.url + "/telegram/webhook", json=update, headers=HEADERS
        )
        assert response.status_code == 200, "Telegram must not send it again"
        await bot.channel.drain()
        with contextlib.closing(sqlite3.connect(tmp_path / "passerelle.db")) as conn:
            assert conn.execute("SELECT COUNT(*) FROM inbox").fetchone() == (0,), "not recorded"
        assert await bot.storage.replies_pending() == []
        assert any("invalid update dropped" in r.getMessage() for r in caplog.records)
        assert str(bad_id) not in caplog.text
        # The server goes on, and restarts.
        assert await bot.send(user, user.text("/start"))
    async with running_bot(api, tmp_path, engine, webhook=True) as bot:
        assert await bot.send(user, user.text("/aide"))


def message(body: str, chat_id: Any = 42) -> dict[str, Any]:
    person = {"id": chat_id, "is_bot": False, "first_name": "Camille"}
    return {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": 1_764_000_000,
            "chat": {"id": chat_id, "type": "private"},
            "from": person,
            "text": body,
        },
    }


def test_checks_cover_ids_ranges_sizes_and_depth() -> None:
    good = message("bonjour")
    assert update_problem(good) is None
    assert update_problem(message("x", 2**53)) == "chat.id is not a Telegram id"
    assert update_problem(message("x", True)) == "chat.id is not a Telegram id"
    assert update_problem(message("x", -(10**12))) is None  # a supergroup
    assert update_problem(message("é" * 32_769)) == "text too long"
    assert update_problem(message("é" * 10_000)) is None  # answered « too long » by the engine
    assert update_problem({**good, "message": {**good["message"], "date": 2**64}}) == (
        "integer out of range"
    )
    deep: dict[str, Any] = {"update_id": 3}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    assert update_problem(deep) == "too deeply nested"
    callback: JsonObject = {
        "update_id": 4,
        "callback_query": {"id": "1", "from": {"id": 5, "is_bot": False, "first_name": "A"},
                           "chat_instance": "c", "data": "x" * 65},
    }  # fmt: skip
    assert update_problem(callback) == "data too long"


async def test_rows_an_older_version_recorded_do_not_stop_the_start(
    api: FakeBotAPI, tmp_path: Path, engine: Engine
) -> None:
    """What the old intake let in: an update with a text chat id (and its recorded reply), and
    one with a chat id over 2^64 that failed at every start. The server starts, dead-letters
    them (payload dropped) and serves; the next start is clean."""
    db = tmp_path / "passerelle.db"
    user = api.user(602)
    storage = SqliteStorage(db)
    await storage.open()
    text_id = with_chat_id(user.text("/start"), "abc")
    huge_id = with_chat_id(user.text("/start"), 2**64)
    unreadable = {"update_id": 9_000_001}
    for update in (text_id, huge_id):
        assert await storage.inbox_add(update["update_id"], json.dumps(update).encode())
    await storage.inbox_add(unreadable["update_id"], b"\xff not json")
    await storage.close()
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "INSERT INTO replies (update_id, seq, chat_id, method, params, created_at) "
            'VALUES (?, 0, \'abc\', \'sendMessage\', \'{"chat_id": "abc", "text": "x"}\', 1)',
            (text_id["update_id"],),
        )
    async with running_bot(api, tmp_path, engine, webhook=True) as bot:
        await bot.channel.drain()
        assert await bot.send(user, user.text("/start"))
        assert await bot.storage.replies_pending() == []
    rows = {row[0]: row[1:] for row in inbox(db)}
    for update_id in (text_id["update_id"], huge_id["update_id"], unreadable["update_id"]):
        assert rows[update_id] == (1, 1, 1), "dead-lettered: payload dropped, done, failed"
    async with running_bot(api, tmp_path, engine, webhook=True) as bot:
        shown = await bot.send(user, user.text("/aide"))
        assert shown


class FailingStorage(SqliteStorage):
    """Applying one given update always fails (a bug, a full disk…), everything else works."""

    poison: int = -1

    async def commit_update(self, update_id: int | None, user: str, change: UserChange) -> None:
        if update_id == self.poison:
            raise RuntimeError("boom")
        await super().commit_update(update_id, user, change)


async def test_an_update_that_keeps_failing_is_dead_lettered(
    api: FakeBotAPI, tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "passerelle.db"
    user = api.user(603)
    poison = user.text("/start")
    FailingStorage.poison = poison["update_id"]
    monkeypatch.setattr("tests.harness.telegram.SqliteStorage", FailingStorage)
    for attempt in range(1, MAX_APPLY_ATTEMPTS + 1):
        async with running_bot(api, tmp_path, engine, webhook=True) as bot:
            if attempt == 1:
                await bot.deliver(poison)
            await bot.channel.drain()
        [(update_id, *state)] = inbox(db)
        assert update_id == poison["update_id"]
        dead = attempt == MAX_APPLY_ATTEMPTS
        assert state == ([1, 1, 1] if dead else [0, 0, 0]), attempt
    monkeypatch.undo()
    async with running_bot(api, tmp_path, engine, webhook=True) as bot:
        shown = await bot.send(user, user.text("/start"))
        assert msg(engine, "welcome")[:40] in shown[0].text
