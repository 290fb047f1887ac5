"""Issue 5 and 6 on Telegram, end to end: the real PTB application and our server (composed as
``passerelle serve`` composes it) against the fake Bot API; hospital webhooks to a real
receiver on loopback; export, erasure and logs checked the way a reviewer would."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.app.engines import build_engine
from bot.app.features import Features
from bot.app.identity import pseudonym
from bot.app.reload import EngineHolder, Reloader, sighup_lifespan
from bot.channels.telegram import TelegramChannel, build
from bot.config import Settings
from bot.engine import barometer as mode
from bot.engine.flow import Engine
from bot.engine.followup import asking
from bot.json_types import at
from bot.knowledge.loader import load
from bot.knowledge.model import KnowledgeBase
from bot.logging_setup import JsonFormatter
from bot.storage.features import FeatureStore
from bot.storage.sqlite import SqliteStorage
from tests.harness.fakebotapi import TOKEN, FakeBotAPI, FakeUser, Sent
from tests.harness.knowledge import version_b
from tests.harness.paths import CONTENUS
from tests.harness.personas import HOW, PATIENT_TRAINER
from tests.harness.ports import free_port
from tests.harness.telegram import (
    SECRET,
    Bot,
    begin,
    full_bot,
    last_buttons,
    press_choice,
    settled,
)
from tests.harness.wait import eventually, within
from tests.harness.webhooks import SECRET as HOOK_SECRET
from tests.harness.webhooks import Receiver

PRO_SCORES = [4, 3, 4, 2, 0, 2, 3, 4, 2, 2, 3]
PATIENT_SCORES = [1, 2, 2, 1, 2, 2, 3, 3, 1, 1, 2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def criteria(engine: Engine) -> list[str]:
    return [c.id for _, c in mode.barometer_of(engine.kb).criteria()]


#: Every test here runs offline: only loopback can be reached (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("no_network")


@pytest.fixture
def fengine(kb: KnowledgeBase) -> Engine:
    return build_engine(kb, followup=True)


def keyboards_sent(api: FakeBotAPI) -> list[list[list[str]]]:
    """Every keyboard the bot sent, row by row, as it was sent (later edits aside)."""
    return [
        [
            [button["text"] for button in row]
            for row in call.params["reply_markup"]["inline_keyboard"]
        ]
        for call in api.calls
        if call.method.startswith("send") and isinstance(call.params.get("reply_markup"), dict)
    ]


def photos(messages: list[Sent]) -> list[Sent]:
    return [m for m in messages if m.method == "sendPhoto"]


def assert_png(sent: Sent) -> None:
    png = sent.params["photo"]
    assert isinstance(png, bytes) and png.startswith(PNG_MAGIC) and len(png) > 5000
    assert png.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")


async def rate(bot: Bot, user: FakeUser, rater: str, scores: list[int]) -> list[Sent]:
    """/barometre, say who rates (button), then type each score; returns the last messages."""
    shown = await bot.send(user, user.text("/barometre"))
    shown = await bot.send(user, press_choice(user, shown, mode.RATER + rater))
    for score in scores:
        shown = await bot.send(user, user.text(str(score)))
    return shown


async def to_contact_request(bot: Bot, user: FakeUser) -> list[Sent]:
    shown = await begin(bot, user, bot.channel.engine)
    for choice in PATIENT_TRAINER:
        shown = await bot.send(user, press_choice(user, shown, choice))
    shown = await bot.send(user, user.text("/relation"))
    shown = await bot.send(user, press_choice(user, shown, "cmd:confirmer"))
    shown = await bot.send(user, user.text(HOW))
    return await bot.send(user, press_choice(user, shown, "cmd:confirmer"))


def capture_json_logs() -> tuple[logging.Handler, io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    logging.getLogger("bot").setLevel(logging.DEBUG)
    return handler, buffer


def stats_id(cells: dict[str, list[tuple[Any, ...]]], user: str) -> str:
    """The statistics id kept in ``user``'s stored session (``sessions``: user, data, …)."""
    [data] = [row[1] for row in cells["sessions"] if row[0] == user]
    session = json.loads(data) if isinstance(data, str | bytes) else data
    found = session["extra"]["stats_id"]
    assert isinstance(found, str) and found
    return found


def every_cell(db: str | Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the schema (sqlite_master, or PostgreSQL's catalogue)."""
    if str(db).startswith("postgresql://"):
        with psycopg.connect(str(db)) as pg:
            names = [
                str(row[0])
                for row in pg.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                )
            ]
            return {
                t: [tuple(r) for r in pg.execute(f'SELECT * FROM "{t}"'.encode())] for t in names
            }
    with contextlib.closing(sqlite3.connect(db)) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {t: conn.execute(f'SELECT * FROM "{t}"').fetchall() for t in tables}


async def test_professional_and_patient_rate_group_and_see_the_comparison_photo(
    tmp_path: Path, fengine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHU_A_SECRET", HOOK_SECRET)
    async with FakeBotAPI() as api, full_bot(api, tmp_path, fengine, free_port()) as bot:
        pro, patient = api.user(9001, "Dominique"), api.user(9002, "Camille")
        await begin(bot, pro, fengine)
        shown = await rate(bot, pro, "professionnel", PRO_SCORES)
        [own_chart] = photos(shown)
        assert_png(own_chart)
        # The summary once, with the chart (its caption, or the message just before it).
        summary = mode.BarometerMode().result_text(
            fengine,
            fengine.new_session(),
            "professionnel",
            dict(zip(criteria(fengine), PRO_SCORES, strict=True)),
        )
        chat = api.to_chat(pro.id)
        assert [m.text for m in chat].count(summary) == 1
        assert own_chart.text == summary or chat[chat.index(own_chart) - 1].text == summary
        assert not any("message précédent" in m.text for m in chat)
        # The 0–4 scale on one row, « back » below it (as sent: typed scores removed them since).
        scale = [rows for rows in keyboards_sent(api) if rows[0] == ["0", "1", "2", "3", "4"]]
        assert len(scale) == len(criteria(fengine)) and all(len(rows) == 2 for rows in scale)
        shown = await bot.send(pro, press_choice(pro, shown, mode.CREATE))
        line = next(m.text for m in shown if "Son code : " in m.text)
        code = line.split("Son code : ")[1][:9]

        await begin(bot, patient, fengine)
        shown = await rate(bot, patient, "usager", PATIENT_SCORES)
        shown = await bot.send(patient, press_choice(patient, shown, mode.JOIN))
        shown = await bot.send(patient, patient.text(code.lower()))
        [comparison] = photos(shown)
        assert_png(comparison)
        described = "\n".join(m.text for m in shown)
        assert "Professionnels" in described and "Patients" in described

        # The professional sees the same comparison from the barometer's first screen.
        shown = await bot.send(pro, pro.text("/barometre"))
        keyboard = last_buttons(shown)
        compare = next(data for _, data in keyboard.buttons if data.endswith(mode.COMPARE))
        shown = await bot.send(pro, pro.press(keyboard, compare))
        assert len(photos(shown)) == 1
        assert_png(photos(shown)[0])
        commands = [c["command"] for c in api.commands]
        assert "barometre" in commands
        # Every button of these conversations fits a phone; short ones side by side.
        for rows in keyboards_sent(api):
            for row in rows:
                assert all(len(label) <= 32 for label in row), row
                assert len(row) == 1 or all(len(label) <= 20 for label in row), row


async def test_contact_request_on_telegram_reaches_the_hospital_signed(
    tmp_path: Path, fengine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHU_A_SECRET", HOOK_SECRET)
    receiver = Receiver()
    handler, logs = capture_json_logs()
    try:
        async with FakeBotAPI() as api, full_bot(api, tmp_path, fengine, receiver.port) as bot:
            user = api.user(424242, "Camille")
            await to_contact_request(bot, user)
            await api.wait_for(
                lambda: any(e["type"] == "contact.requested" for e in receiver.acked.values())
            )
    finally:
        logging.getLogger().removeHandler(handler)
        receiver.stop()
    assert receiver.rejected == 0, "every delivery carries a valid Standard Webhooks signature"
    [requested] = [e for e in receiver.acked.values() if e["type"] == "contact.requested"]
    assert requested["data"]["how_to_reach"] == HOW and requested["data"]["consent"] is True
    assert requested["data"]["territory"] == "fr-occitanie"
    body = json.dumps(requested)
    assert "424242" not in body and pseudonym(SECRET, "telegram", 424242) not in body
    # Logs: structured, and nothing a person typed, no Telegram id, no token, no secret.
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    assert lines and all({"ts", "level", "logger", "event"} <= set(line) for line in lines)
    text = logs.getvalue()
    for needle in ("424242", "camille@example.org", TOKEN, HOOK_SECRET, SECRET.decode()):
        assert needle not in text


async def test_export_then_erasure_leaves_no_row_about_the_person(
    tmp_path: Path, database: str, fengine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHU_A_SECRET", HOOK_SECRET)
    down = free_port()  # the hospital is down: the contact request stays undelivered
    db = database
    async with FakeBotAPI() as api, full_bot(api, tmp_path, fengine, down, database) as bot:
        pro, patient = api.user(7001, "Dominique"), api.user(7002, "Camille")
        await begin(bot, pro, fengine)
        shown = await rate(bot, pro, "professionnel", PRO_SCORES)
        shown = await bot.send(pro, press_choice(pro, shown, mode.CREATE))
        code = next(m.text for m in shown if "Son code : " in m.text).split("Son code : ")[1][:9]
        await to_contact_request(bot, patient)
        shown = await rate(bot, patient, "usager", PATIENT_SCORES)
        shown = await bot.send(patient, press_choice(patient, shown, mode.JOIN))
        await bot.send(patient, patient.text(code))

        shown = await bot.send(patient, patient.text("/mesdonnees"))
        summary, document = shown[-2:]
        # A summary a person can read: no internal name, no Unix time; then the file.
        assert "recommendation" not in summary.text and "barometre" not in summary.text
        assert not re.search(r"\d{9,}", summary.text)
        assert "Évaluations du baromètre gardées : 1" in summary.text
        assert "pas encore transmises" in summary.text
        assert document.method == "sendDocument" and document.filename.endswith(".json")
        assert document.document is not None
        data = json.loads(document.document)
        assert not re.search(r"\b1[6-9]\d{8}(\.\d+)?\b", document.document.decode())
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["conversation"]["consent"]["at"]
        )
        assert data["conversation"]["consent"]["granted"] is True
        session = data["conversation"]["session"]
        assert "node" not in session and session["where"] == "les rôles vous ont été proposés"
        assert session["answers"][0] == {
            "question": "Pour commencer, qui êtes-vous ?",
            "answer": "Je vis avec une maladie ou un handicap",
            "question_id": "profil",
            "answer_id": "patient",
        }
        assert len(data["barometer_ratings"]) == 1
        assert any(e["type"] == "contact.requested" for e in data["webhooks_pending"])

        user = pseudonym(SECRET, "telegram", patient.id)
        cells = every_cell(db)
        before = json.dumps(cells, default=str, ensure_ascii=False)
        assert user in before and HOW in before
        # The anonymous statistics row of each conversation, as an API DELETE erases it.
        patient_stats = stats_id(cells, user)
        ids = {str(row[0]) for row in cells["stats_conversations"]}
        assert {patient_stats, stats_id(cells, pseudonym(SECRET, "telegram", pro.id))} <= ids

        shown = await bot.send(patient, patient.text("/oubli"))
        keyboard = last_buttons(shown)
        await bot.send(patient, patient.press(keyboard, keyboard.buttons[0][1]))
        shown = await bot.send(patient, patient.text("/mesdonnees"))
        assert [m.method for m in shown] == ["sendMessage"]  # nothing kept: no file

    tables = every_cell(db)
    assert {"sessions", "consents", "barometer_ratings", "followups", "webhook_outbox"} <= set(
        tables
    )
    telegram_id = re.compile(rf"(?<![\d.]){patient.id}(?![\d.])")  # not inside a timestamp
    for table, rows in tables.items():
        for row in rows:
            for cell in map(str, row):
                for needle in (user, HOW, "camille@example.org", patient_stats):
                    assert needle not in cell, f"{table} still holds {needle!r}"
                assert not telegram_id.search(cell), f"{table} still holds the Telegram id"
    # The professional's own data is untouched, their statistics row too.
    pro_user = pseudonym(SECRET, "telegram", pro.id)
    assert any(pro_user in str(row) for row in tables["barometer_ratings"])
    assert stats_id(tables, pro_user) in {str(row[0]) for row in tables["stats_conversations"]}


# Here rather than beside the other reload tests: Playwright's loop runs in that module.
async def test_sighup_reloads_the_base(tmp_path: Path) -> None:
    contenus = tmp_path / "contenus"
    shutil.copytree(CONTENUS, contenus)
    holder = EngineHolder(build_engine(load(contenus)), build_engine)
    seen: list[str] = []
    swapped = asyncio.Event()

    def on_swap(engine: Engine) -> None:
        seen.append(engine.kb.version)
        swapped.set()

    holder.on_swap(on_swap)
    version_b(contenus)
    async with sighup_lifespan(Reloader(contenus, [holder]))(None):
        os.kill(os.getpid(), signal.SIGHUP)
        await within(swapped.wait(), "the engine swapped after SIGHUP")
    assert seen == ["9.9.9"] and holder.kb.version == "9.9.9"


# -- follow-ups through the chat's queue and the reply outbox -----------------------------------
@contextlib.asynccontextmanager
async def followup_bot(
    api: FakeBotAPI, db: Path, engine: Engine
) -> AsyncIterator[tuple[TelegramChannel, SqliteStorage, Features]]:
    """The channel with its follow-ups, on one database as ``passerelle serve`` runs it (no
    polling: follow-ups are written first, from the JobQueue)."""
    settings = Settings(
        telegram_token=TOKEN,
        telegram_api_base_url=api.base_url,
        secret=SECRET,
        db_path=db,
        telegram_rate=0,
    )
    features = Features(engine, FeatureStore(db))
    storage = SqliteStorage(db, synchronous="NORMAL")
    await features.open()
    await storage.open()
    channel = build(engine, storage, settings, pause=0, retry_delay=0.01, features=features)
    try:
        await channel.start()  # rebuilds the follow-ups: overdue ones run at once
        yield channel, storage, features
    finally:
        await channel.stop()
        await storage.close()
        await features.close()


async def test_due_follow_up_is_asked_once_even_across_a_crash(
    tmp_path: Path, fengine: Engine
) -> None:
    """A due follow-up is claimed, saved and queued in the reply outbox in one transaction,
    then sent like any reply: once. Stopped after the claim but before Telegram accepted the
    question (it waits in the outbox), the next start sends it exactly once, and does not ask
    it again."""
    db = tmp_path / "passerelle.db"
    async with FakeBotAPI() as api:
        alice, bruno = api.user(4101), api.user(4102)
        keys = {u.id: pseudonym(SECRET, "telegram", u.id) for u in (alice, bruno)}
        async with FeatureStore(db) as store:
            followups = Features(fengine, store).followups
            due = time.time() - 15 * 86400  # scheduled 15 days ago for 14 days: overdue
            first = await followups.schedule(keys[alice.id], str(alice.id), ["r"], now=due)
        before = SqliteStorage(db, synchronous="NORMAL")
        await before.open()
        await before.set_consent(keys[alice.id], True)
        await before.close()
        expected = asking(fengine, fengine.new_session(), first.id)[1].text

        # A due follow-up (the person consented to storage): asked once, session saved.
        async with followup_bot(api, db, fengine) as (channel, storage, features):
            await api.wait_for(lambda: api.count_to(alice.id) == 1)
            await settled(api, channel, storage)  # a duplicate, if any, has landed
            [asked] = api.to_chat(alice.id)
            assert asked.text == expected and len(asked.buttons) == 2
            assert await features.followups.pending() == []
            assert await storage.replies_pending() == []
            saved = await storage.load_session(keys[alice.id])
            assert saved is not None and at(saved, "extra", "mode") == "suivi"

            # Telegram down: the next follow-up is claimed, its question stays in the outbox.
            api.fail("sendMessage", 500, times=1000)
            second = await features.followups.schedule(
                keys[bruno.id], str(bruno.id), ["r"], now=due
            )
            await channel.send_followup(second)
            await api.wait_for(lambda: len(failed(api)) >= 4)
            await channel.drain()
        # The process is gone before the question got through ("crash" after the claim).
        assert api.count_to(bruno.id) == 0
        async with FeatureStore(db) as store:
            assert await Features(fengine, store).followups.pending() == []
        api.faults.clear()

        # Restart on the same database: the question goes out once; nothing is asked again.
        async with followup_bot(api, db, fengine) as (channel, storage, features):
            await api.wait_for(lambda: api.count_to(bruno.id) == 1)
            await settled(api, channel, storage)
            [late] = api.to_chat(bruno.id)
            assert late.text == asking(fengine, fengine.new_session(), second.id)[1].text
            assert api.count_to(alice.id) == 1
            assert await storage.replies_pending() == []
            assert await features.followups.pending() == []
            # The job queue fires again for an already asked follow-up: nothing is sent.
            await channel.send_followup(first)
            await settled(api, channel, storage)
            assert (api.count_to(alice.id), api.count_to(bruno.id)) == (1, 1)


@contextlib.contextmanager
def claims_refused(database: str) -> Any:
    """The database itself refuses to mark a follow-up as sent (a trigger), on SQLite as on
    PostgreSQL: the whole commit of its question fails, as when the database is in trouble."""
    if database.startswith("postgresql://"):
        with psycopg.connect(database, autocommit=True) as pg:
            pg.execute(
                "CREATE FUNCTION refuse_claim() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'refused'; END $$"
            )
            pg.execute(
                "CREATE TRIGGER refuse_claim BEFORE UPDATE ON followups "
                "FOR EACH ROW EXECUTE FUNCTION refuse_claim()"
            )
            yield
            pg.execute("DROP TRIGGER refuse_claim ON followups")
        return
    with contextlib.closing(sqlite3.connect(database, isolation_level=None)) as db:
        db.execute(
            "CREATE TRIGGER refuse_claim BEFORE UPDATE ON followups "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        yield
        db.execute("DROP TRIGGER refuse_claim")


async def test_a_follow_up_whose_sending_failed_is_tried_again_later_on_either_store(
    tmp_path: Path,
    database: str,
    fengine: Engine,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One policy whatever the store: a follow-up whose question could not be committed stays
    pending and is asked by a later try of the same instance (not only at the next start, not
    every sweep of the PostgreSQL sweeper), once it can be."""
    monkeypatch.setenv("CHU_A_SECRET", HOOK_SECRET)
    caplog.set_level(logging.ERROR, "bot.channels.telegram.scheduler")

    def failures() -> int:
        return sum("follow-up not sent" in r.getMessage() for r in caplog.records)

    async with FakeBotAPI() as api, full_bot(api, tmp_path, fengine, free_port(), database) as bot:
        user = api.user(4201)
        await begin(bot, user, fengine)
        channel, features = bot.channel, bot.channel.features
        assert features is not None and features.scheduler is not None
        channel.followups.retry_seconds = 5.0
        key = pseudonym(SECRET, "telegram", user.id)
        before = api.count_to(user.id)
        with claims_refused(database):
            followup = await features.followups.schedule(
                key, str(user.id), ["r"], now=time.time() - 15 * 86400
            )
            await channel.send_followup(followup)
            await eventually(lambda: failures() == 1, "the first try failed")
            assert followup.job_name in features.scheduler.scheduled(), "a retry waits"
            # Sweeps meanwhile (several instances sweep every few seconds) leave it to that retry.
            for _ in range(3):
                await channel.sweep_once(older_than=0)
            await channel.drain()
            assert failures() == 1 and followup.job_name in features.scheduler.scheduled()
            assert [f.id for f in await features.followups.pending()] == [followup.id]
            assert api.count_to(user.id) == before
        # The database accepts it again: the retry asks the question, once.
        await api.wait_for(lambda: api.count_to(user.id) == before + 1)
        await settled(api, channel, bot.storage)
        [asked] = api.to_chat(user.id)[before:]
        assert asked.text == asking(fengine, fengine.new_session(), followup.id)[1].text
        assert await features.followups.pending() == []
        assert failures() == 1


def failed(api: FakeBotAPI) -> list[Any]:
    return [c for c in api.called("sendMessage") if c.status == 500]


async def test_markup_typed_by_a_person_is_shown_never_interpreted(
    tmp_path: Path, fengine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages go out in HTML: what a person typed is escaped, so Telegram shows their « <b> »
    as typed, and a stray « < » or « & » cannot make Telegram refuse the message."""
    monkeypatch.setenv("CHU_A_SECRET", HOOK_SECRET)
    typed = "<b>le soir</b> & <i>pas avant 18 h</i> <script>"
    async with FakeBotAPI() as api, full_bot(api, tmp_path, fengine, free_port()) as bot:
        user = api.user(4343)
        shown = await begin(bot, user, fengine)
        for choice in PATIENT_TRAINER:
            shown = await bot.send(user, press_choice(user, shown, choice))
        shown = await bot.send(user, user.text("/relation"))
        shown = await bot.send(user, press_choice(user, shown, "cmd:confirmer"))
        shown = await bot.send(user, user.text(typed))
        [confirm] = shown
        assert typed in confirm.text
        assert confirm.bold == [] and confirm.params["parse_mode"] == "HTML"
        assert [c for c in api.calls if c.status == 400] == []


async def test_a_tapped_score_reads_in_words_on_the_criterion(
    tmp_path: Path, fengine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHU_A_SECRET", HOOK_SECRET)
    async with FakeBotAPI() as api, full_bot(api, tmp_path, fengine, free_port()) as bot:
        user = api.user(4545)
        await begin(bot, user, fengine)
        shown = await bot.send(user, user.text("/barometre"))
        who = last_buttons(shown)
        shown = await bot.send(user, press_choice(user, shown, mode.RATER + "usager"))
        assert who.text.endswith("Votre réponse : Je suis patient(e), proche-aidant(e) ou RU")
        criterion = last_buttons(shown)
        assert criterion.rows == [["0", "1", "2", "3", "4"], ["Retour"]]
        await bot.send(user, user.press(criterion, criterion.data_of("3")))
        assert criterion.text.endswith("Votre réponse : 3 — Souvent")
        assert criterion.buttons == []
