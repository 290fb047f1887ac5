"""A turn's feature rows (statistics, barometer ratings and group codes) commit with the turn,
on SQLite and PostgreSQL. API: when the database refuses the turn (a trigger refusing its
transcript line, as a full disk or a broken constraint would), the person gets an error and no
statistics row, rating nor group is left of a turn that never happened; the same request once
the database accepts it again writes them all. API and Telegram: a group code another turn
takes between drawing and committing fails the whole turn, which is applied again with another
code: the person sees a group of their own, once."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from bot.app.engines import build_engine
from bot.app.features import Features
from bot.channels.http import ConversationApi, RateLimiter
from bot.engine import barometer as mode
from bot.knowledge.model import KnowledgeBase
from bot.server import create_app
from bot.storage.base import BarometerRating
from bot.storage.factory import feature_store, integration_store, is_postgres_url
from tests.harness.api import make_keys
from tests.harness.fakebotapi import FakeBotAPI
from tests.harness.ports import free_port
from tests.harness.servers import serve
from tests.harness.telegram import begin, full_bot, press_choice, settled
from tests.harness.webhooks import SECRET as HOOK_SECRET

PATIENT_SCORES = [1, 2, 2, 1, 2, 2, 3, 3, 1, 1, 2]
REFUSE = {
    "sqlite": [
        "CREATE TRIGGER refuse BEFORE INSERT ON api_messages "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused'; END $$",
        "CREATE TRIGGER refuse BEFORE INSERT ON api_messages "
        "FOR EACH ROW EXECUTE FUNCTION refuse()",
    ],
}
ACCEPT = {"sqlite": ["DROP TRIGGER refuse"], "postgresql": ["DROP TRIGGER refuse ON api_messages"]}
#: Another turn creating group ABCD2345 just before ours does, after our code was drawn and
#: seen free (in our transaction, so it is undone with it: the group is taken only for that
#: attempt).
RACE = {
    "sqlite": [
        "CREATE TRIGGER race BEFORE INSERT ON barometer_groups WHEN NEW.code = 'ABCD2345' "
        "BEGIN INSERT OR IGNORE INTO barometer_groups (code, created_at) "
        "VALUES ('ABCD2345', 0); END"
    ],
    "postgresql": [
        "CREATE OR REPLACE FUNCTION race() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF pg_trigger_depth() = 1 AND NEW.code = 'ABCD2345' THEN "
        "INSERT INTO barometer_groups (code, created_at) VALUES ('ABCD2345', 0) "
        "ON CONFLICT DO NOTHING; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER race BEFORE INSERT ON barometer_groups "
        "FOR EACH ROW EXECUTE FUNCTION race()",
    ],
}


def dialect(db: str) -> str:
    return "postgresql" if is_postgres_url(db) else "sqlite"


def sql(db: str, statement: str) -> list[tuple[Any, ...]]:
    """A statement on the server's database from outside the server (committed)."""
    if dialect(db) == "postgresql":
        with psycopg.connect(db, autocommit=True) as pg:
            cursor = pg.execute(statement.encode())
            return list(cursor.fetchall()) if cursor.description else []
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn, conn:
        return list(conn.execute(statement).fetchall())


@dataclass
class Site:
    url: str
    db: str
    key: str

    @property
    def dialect(self) -> str:
        return dialect(self.db)

    def client(self) -> httpx.Client:
        headers = {"authorization": f"Bearer {self.key}"}
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=20)

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        return sql(self.db, statement)

    def count(self, table: str) -> int:
        [(count,)] = self.sql(f"SELECT COUNT(*) FROM {table}")
        return int(count)

    def refuse_turns(self) -> None:
        for statement in REFUSE[self.dialect]:
            self.sql(statement)

    def accept_turns(self) -> None:
        for statement in ACCEPT[self.dialect]:
            self.sql(statement)


@pytest.fixture
def site(kb: KnowledgeBase, database: str) -> Iterator[Site]:
    key, _, _ = asyncio.run(make_keys(database))
    engine = build_engine(kb)
    api = ConversationApi(
        engine,
        integration_store(database),
        limiter=RateLimiter(1e4, 10_000),
        features=Features(engine, feature_store(database)),
    )
    with serve(create_app(api)) as url:
        yield Site(url, database, key)


def post(client: httpx.Client, cid: str, body: dict[str, str]) -> dict[str, Any]:
    response = client.post(f"/conversations/{cid}/messages", json=body)
    assert response.status_code == 200, response.text
    turn: dict[str, Any] = response.json()
    return turn


def refused(client: httpx.Client, path: str, body: dict[str, str]) -> None:
    """A request the database refuses: 500 (the server then drops the connection, so this
    one is not kept alive for the next request to find reset)."""
    response = client.post(path, json=body, headers={"connection": "close"})
    assert response.status_code == 500, response.text
    assert response.json()["error"]["code"] == "internal_error"


def texts(turn: dict[str, Any]) -> str:
    return "\n".join(reply["text"] for reply in turn["replies"])


def test_statistics_of_a_refused_turn_are_not_kept(site: Site) -> None:
    with site.client() as client:
        site.refuse_turns()
        refused(client, "/conversations", {})
        assert site.count("api_conversations") == 0
        assert site.count("stats_conversations") == 0, "a conversation that never started"
        site.accept_turns()
        created = client.post("/conversations", json={})
        assert created.status_code == 201
        cid = created.json()["conversation_id"]
        assert site.sql("SELECT channel FROM stats_conversations") == [("api",)]
        post(client, cid, {"choice": "patient"})
        reached = site.count("stats_nodes")
        assert reached >= 2

        site.refuse_turns()
        refused(client, f"/conversations/{cid}/messages", {"choice": "chronique"})
        assert site.count("stats_nodes") == reached, "no question reached by a refused turn"
        site.accept_turns()
        assert client.get(f"/conversations/{cid}").json()["node"] == "experience"
        post(client, cid, {"choice": "chronique"})
        assert site.count("stats_nodes") == reached + 1


def test_a_group_of_a_refused_turn_is_not_created(site: Site) -> None:
    with site.client() as client:
        cid = client.post("/conversations", json={}).json()["conversation_id"]
        post(client, cid, {"choice": "cmd:barometre"})
        post(client, cid, {"choice": mode.RATER + "usager"})
        for score in PATIENT_SCORES:
            post(client, cid, {"text": str(score)})

        site.refuse_turns()
        refused(client, f"/conversations/{cid}/messages", {"choice": mode.CREATE})
        assert site.count("barometer_groups") == 0 and site.count("barometer_ratings") == 0
        assert site.sql("SELECT value FROM stats_outcomes WHERE kind = 'barometer'") == [
            ("usager",)
        ], "the rating itself was a turn of its own, kept"

        site.accept_turns()
        created = post(client, cid, {"choice": mode.CREATE})  # the same button, again
        [(code,)] = site.sql("SELECT code FROM barometer_groups")
        assert f"Son code : {mode.format_code(code)}" in texts(created)
        assert site.count("barometer_ratings") == 1
        exported = client.get(f"/conversations/{cid}").json()
        assert [r["group"] for r in exported["barometer_ratings"]] == [code]


def test_a_code_taken_by_another_turn_meanwhile_still_gives_a_group_of_its_own(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code is free when drawn, taken before the turn commits: the turn fails as a
    whole, is planned again with another code, and the person sees that one."""
    drawn = iter(["ABCD2345", "EFGH6789"])
    monkeypatch.setattr(mode, "new_code", lambda: next(drawn))
    with site.client() as client:
        cid = client.post("/conversations", json={}).json()["conversation_id"]
        post(client, cid, {"choice": "cmd:barometre"})
        post(client, cid, {"choice": mode.RATER + "usager"})
        for score in PATIENT_SCORES:
            post(client, cid, {"text": str(score)})
        for statement in RACE[site.dialect]:
            site.sql(statement)
        created = post(client, cid, {"choice": mode.CREATE})
    assert "Son code : EFGH-6789" in texts(created)
    assert site.sql("SELECT code FROM barometer_ratings") == [("EFGH6789",)]
    assert site.sql("SELECT code FROM barometer_groups") == [("EFGH6789",)]


def test_a_code_already_taken_still_gives_a_group_of_its_own(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def taken() -> None:
        store = feature_store(site.db)
        await store.open()
        try:
            await store.apply([BarometerRating("ABCD2345", "someone", "usager", {}, "1", True)])
        finally:
            await store.close()

    asyncio.run(taken())
    drawn = iter(["ABCD2345", "EFGH6789"])
    monkeypatch.setattr(mode, "new_code", lambda: next(drawn))
    with site.client() as client:
        cid = client.post("/conversations", json={}).json()["conversation_id"]
        post(client, cid, {"choice": "cmd:barometre"})
        post(client, cid, {"choice": mode.RATER + "professionnel"})
        for score in PATIENT_SCORES:
            post(client, cid, {"text": str(score)})
        created = post(client, cid, {"choice": mode.CREATE})
    assert "Son code : EFGH-6789" in texts(created)
    assert sorted(site.sql("SELECT code, member FROM barometer_ratings"))[0] == (
        "ABCD2345",
        "someone",
    )
    assert site.count("barometer_ratings") == 2


async def test_on_telegram_a_code_taken_meanwhile_still_gives_a_group_of_its_own(
    kb: KnowledgeBase, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHU_A_SECRET", HOOK_SECRET)
    engine = build_engine(kb, followup=True)
    drawn = iter(["ABCD2345", "EFGH6789"])
    monkeypatch.setattr(mode, "new_code", lambda: next(drawn))
    async with FakeBotAPI() as api, full_bot(api, tmp_path, engine, free_port(), database) as bot:
        user = api.user(9101)
        await begin(bot, user, engine)
        shown = await bot.send(user, user.text("/barometre"))
        shown = await bot.send(user, press_choice(user, shown, mode.RATER + "usager"))
        for score in PATIENT_SCORES:
            shown = await bot.send(user, user.text(str(score)))
        for statement in RACE[dialect(database)]:
            sql(database, statement)
        shown = await bot.send(user, press_choice(user, shown, mode.CREATE))
        await settled(api, bot.channel, bot.storage)
        said = [m.text for m in api.to_chat(user.id)]
        assert sum("Son code : " in line for line in said) == 1, "one group, said once"
        assert any("Son code : EFGH-6789" in line for line in said)
        assert await bot.storage.inbox_pending() == []
    assert sql(database, "SELECT code FROM barometer_ratings") == [("EFGH6789",)]
