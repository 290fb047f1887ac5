"""The Telegram channel end to end: the real PTB Application and our server, against a fake
Bot API on loopback. Telegram is simulated; our code is not."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot.app.identity import pseudonym
from bot.channels.telegram import encode_choice, node_tag, render, split_text
from bot.engine.flow import Engine
from bot.engine.replies import Choice, Reply
from bot.knowledge.model import COMMANDS, text
from bot.storage.sqlite import SqliteStorage
from tests.harness.fakebotapi import TOKEN, FakeBotAPI, FakeUser
from tests.harness.paths import CONVERSATIONS
from tests.harness.telegram import (
    SECRET,
    WEBHOOK_SECRET,
    begin,
    last_buttons,
    msg,
    press_choice,
    running_bot,
)

#: Every test here runs offline: only loopback can be reached (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("no_network")


def patient_label(engine: Engine) -> str:
    first = engine.kb.questions[engine.kb.flow.start]
    return text(next(c for c in first.choices if c.id == "patient").label)


def persona(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CONVERSATIONS / name).read_text(encoding="utf-8"))
    return data


MODES = [pytest.param(False, id="polling"), pytest.param(True, id="webhook")]


@pytest.mark.parametrize("webhook", MODES)
async def test_persona_by_buttons(
    api: FakeBotAPI, database: str, engine: Engine, webhook: bool
) -> None:
    script = persona("01_patiente_chronique_formatrice.yaml")
    async with running_bot(api, database, engine, webhook) as bot:
        if webhook:
            assert api.webhook is not None
            assert api.webhook["secret_token"] == WEBHOOK_SECRET
        user = api.user(501)
        shown = await begin(bot, user, engine)
        first = engine.kb.questions[engine.kb.flow.start]
        assert text(first.text) in shown[-1].text
        for step in script["steps"]:
            shown = await bot.send(user, press_choice(user, shown, step["choice"]))
        everything = "\n".join(m.text for m in shown)
        role = engine.kb.roles[script["expect"]["roles_first"]]
        assert text(role.title) in everything
        assert api.called("sendChatAction"), "typing indicator before a long answer"
        # Every tap was answered (no spinning button); every message is HTML that Telegram
        # could parse (the fake refuses an unknown tag, a bare « < » or « & » with a 400).
        taps = len(script["steps"]) + 1
        assert len(api.called("answerCallbackQuery")) == taps
        assert all(c.params.get("parse_mode") == "HTML" for c in api.called("sendMessage"))
        assert [c for c in api.calls if c.status == 400] == []
        assert all(len(m.text) <= 4096 for m in api.sent)


@pytest.mark.parametrize("webhook", MODES)
async def test_persona_by_free_text(
    api: FakeBotAPI, database: str, engine: Engine, webhook: bool
) -> None:
    script = persona("07_fautes_sans_accents.yaml")
    async with running_bot(api, database, engine, webhook) as bot:
        user = api.user(502)
        shown = await begin(bot, user, engine)
        for step in script["steps"]:
            shown = await bot.send(user, user.text(step["text"]))
            expected = step.get("expect", {}).get("node")
            if expected:
                assert text(engine.kb.questions[expected].text) in shown[-1].text
        role = engine.kb.roles[script["expect"]["roles_first"]]
        assert text(role.title) in "\n".join(m.text for m in shown)


async def test_restart_mid_conversation_resumes(
    api: FakeBotAPI, database: str, engine: Engine
) -> None:
    user = api.user(503)
    async with running_bot(api, database, engine, webhook=False) as bot:
        shown = await begin(bot, user, engine)
        shown = await bot.send(user, press_choice(user, shown, "patient"))
        assert text(engine.kb.questions["experience"].text) in shown[-1].text
    # A new process on the same database: the old keyboard still works, one step further.
    async with running_bot(api, database, engine, webhook=False) as bot:
        shown = await bot.send(user, press_choice(user, shown, "chronique"))
        experience = engine.kb.questions["experience"]
        chosen = next(c for c in experience.choices if c.id == "chronique")
        target = chosen.next or experience.next
        assert target is not None
        assert text(engine.kb.questions[target].text) in shown[-1].text


async def test_update_recorded_before_a_crash_is_applied_at_start(
    api: FakeBotAPI, tmp_path: Path, engine: Engine
) -> None:
    """The webhook answered 200 (update in the inbox) and the process died before applying."""
    user = api.user(504)
    storage = SqliteStorage(tmp_path / "passerelle.db")
    await storage.open()
    update = user.text("/start")
    assert await storage.inbox_add(update["update_id"], json.dumps(update).encode())
    await storage.close()
    async with running_bot(api, tmp_path, engine, webhook=True) as bot:
        await api.wait_for(lambda: bool(api.to_chat(user.id)))
        await bot.channel.drain()
        assert msg(engine, "welcome")[:40] in api.to_chat(user.id)[0].text
        assert await bot.storage.inbox_pending() == []


async def test_duplicate_update_is_applied_once(
    api: FakeBotAPI, database: str, engine: Engine
) -> None:
    async with running_bot(api, database, engine, webhook=True) as bot:
        user = api.user(505)
        shown = await begin(bot, user, engine)
        tap = press_choice(user, shown, "patient")
        first = await bot.send(user, tap)
        await bot.deliver(tap)  # Telegram re-delivers the very same update
        await bot.channel.drain()
        assert api.to_chat(user.id)[-len(first) :] == first
        # Applied once: the next question is still "experience", not the stale-button path.
        shown = await bot.send(user, press_choice(user, first, "chronique"))
        assert msg(engine, "stale_button")[:30] not in shown[0].text


@pytest.mark.parametrize("header", [None, "wrong-secret-abcdefghijkl", ""])
async def test_webhook_without_the_secret_is_refused(
    api: FakeBotAPI, database: str, engine: Engine, header: str | None
) -> None:
    async with running_bot(api, database, engine, webhook=True) as bot:
        user = api.user(506)
        headers = {} if header is None else {"X-Telegram-Bot-Api-Secret-Token": header}
        async with httpx.AsyncClient() as client:
            response = await client.post(
                bot.url + "/telegram/webhook", json=user.text("/start"), headers=headers
            )
        assert response.status_code == 403
        await bot.channel.drain()
        assert api.to_chat(user.id) == []
        assert (await bot.storage.counts())["inbox"] == 0


async def test_webhook_rejects_what_is_not_an_update(
    api: FakeBotAPI, database: str, engine: Engine
) -> None:
    async with running_bot(api, database, engine, webhook=True) as bot:
        headers = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
        async with httpx.AsyncClient() as client:
            for body in (b"not json", b"[]", b'{"update_id": "7"}', b"\xff\xfe"):
                response = await client.post(
                    bot.url + "/telegram/webhook", content=body, headers=headers
                )
                assert response.status_code == 400
        assert (await bot.storage.counts())["inbox"] == 0


async def test_non_text_messages_get_a_kind_reply(
    api: FakeBotAPI, database: str, engine: Engine
) -> None:
    async with running_bot(api, database, engine, webhook=True) as bot:
        user = api.user(507)
        await begin(bot, user, engine)
        file = {"file_id": "f", "file_unique_id": "u"}
        cases: dict[str, dict[str, Any]] = {
            "photo": {"photo": [{**file, "width": 1, "height": 1}]},
            "voice": {"voice": {**file, "duration": 2}},
            "sticker": {
                "sticker": {
                    **file,
                    "type": "regular",
                    "width": 1,
                    "height": 1,
                    "is_animated": False,
                    "is_video": False,
                }
            },
            "document": {"document": file},
            "location": {"location": {"latitude": 48.8, "longitude": 2.3}},
        }
        for kind, content in cases.items():
            shown = await bot.send(user, user.message(**content))
            # One short line, no second copy of the question and its keyboard.
            expected = msg(engine, "non_text", kind=msg(engine, f"kind_{kind}"))
            assert [(m.text, m.buttons) for m in shown] == [(expected, [])], kind
            assert "\n" not in shown[0].text and len(shown[0].text) < 120
        shown = await bot.send(user, user.edited("patient"))
        assert [(m.text, m.buttons) for m in shown] == [(msg(engine, "edited_message"), [])]
        shown = await bot.send(user, user.text("x" * 10_000))
        assert shown[0].text.startswith(msg(engine, "too_long")[:40])


async def test_two_hundred_chats_at_once(api: FakeBotAPI, database: str, engine: Engine) -> None:
    """No reply lost, none sent to the wrong chat, every chat applied in order."""
    async with running_bot(api, database, engine, webhook=True) as bot:
        users = [api.user(10_000 + i) for i in range(200)]
        yes = msg(engine, "consent_yes")

        async def person(user: FakeUser, index: int) -> None:
            greeting = await bot.send(user, user.text("/start"), drain=False)
            await api.wait_for(lambda: any(m.buttons for m in api.to_chat(user.id)))
            consent = last_buttons(api.to_chat(user.id))
            shown = await bot.send(user, user.press(consent, consent.data_of(yes)), drain=False)
            await api.wait_for(lambda: bool(api._by_chat[user.id][-1].buttons))
            shown = api.to_chat(user.id)[len(greeting) :]
            choice = "patient" if index % 2 else "proche"
            await bot.send(user, press_choice(user, shown, choice), drain=False)

        await asyncio.gather(*(person(u, i) for i, u in enumerate(users)))
        await bot.channel.drain()
        storage = bot.storage
        for index, user in enumerate(users):
            session = await storage.load_session(pseudonym(SECRET, "telegram", user.id))
            assert session is not None
            expected = "patient" if index % 2 else "proche"
            assert session["answers"] == [[engine.kb.flow.start, expected]], user.id
            chat = api.to_chat(user.id)
            assert all(m.chat_id == user.id for m in chat)
        assert (await storage.counts())["sessions"] == 200
        assert await storage.inbox_pending() == []


async def test_forget_leaves_no_row_of_that_person(
    api: FakeBotAPI, tmp_path: Path, engine: Engine
) -> None:
    async with running_bot(api, tmp_path, engine, webhook=True) as bot:
        user, other = api.user(508), api.user(509)
        shown = await begin(bot, user, engine)
        await bot.send(user, press_choice(user, shown, "patient"))
        await begin(bot, other, engine)
        mine = await bot.send(user, user.text("/mesdonnees"))
        assert msg(engine, "mydata_intro") in mine[0].text
        assert text(engine.kb.questions["experience"].text) in mine[0].text
        confirm = await bot.send(user, user.text("/oubli"))
        done = await bot.send(user, user.press(confirm[0], confirm[0].data_of("Oui, tout effacer")))
        assert done[0].text == msg(engine, "forget_done")
        await bot.channel.drain()
    key = pseudonym(SECRET, "telegram", user.id)
    with contextlib.closing(sqlite3.connect(tmp_path / "passerelle.db")) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert {"consents", "sessions", "inbox"} <= set(tables)
        telegram_id = re.compile(rf"(?<![\d.]){user.id}(?![\d.])")  # not inside a timestamp
        for table in tables:
            for row in db.execute(f"SELECT * FROM {table}"):
                for cell in map(str, row):
                    assert key not in cell, table
                    assert not telegram_id.search(cell), table
        others = db.execute("SELECT COUNT(*) FROM consents").fetchone()[0]
    assert others == 1  # the other person is untouched


async def test_without_consent_nothing_is_stored(
    api: FakeBotAPI, database: str, engine: Engine
) -> None:
    async with running_bot(api, database, engine, webhook=True) as bot:
        user = api.user(510)
        shown = await begin(bot, user, engine, consent=False)
        assert shown[0].text.startswith(msg(engine, "consent_refused")[:40])
        shown = await bot.send(user, press_choice(user, shown, "patient"))
        assert text(engine.kb.questions["experience"].text) in shown[-1].text
        counts = await bot.storage.counts()
        assert counts["sessions"] == 0 and counts["consents"] == 0
        mine = await bot.send(user, user.text("/mesdonnees"))
        assert mine[0].text == msg(engine, "mydata_none")


async def test_old_buttons_are_answered_gracefully(
    api: FakeBotAPI, database: str, engine: Engine
) -> None:
    async with running_bot(api, database, engine, webhook=True) as bot:
        user = api.user(511)
        first = await begin(bot, user, engine)
        old_tap = press_choice(user, first, "proche")  # kept before its keyboard goes
        await bot.send(user, press_choice(user, first, "patient"))
        # The first keyboard again, a button from an older knowledge base, and garbage: the
        # current question is simply asked again, with its buttons (no « old button » note).
        experience = text(engine.kb.questions["experience"].text)
        for update in (
            old_tap,
            user.press(first[-1], encode_choice("ancienne_question", "ancien_choix")),
            user.press(first[-1], "n'importe quoi"),
        ):
            shown = await bot.send(user, update)
            assert [m.text for m in shown] == [experience]
            assert shown[0].buttons
        assert all(msg(engine, "stale_button")[:20] not in m.text for m in api.to_chat(user.id))
        assert len(api.called("answerCallbackQuery")) == 5
        # The first question still shows the answer given, not the stale tap.
        question = first[-1]
        assert question.text.endswith(msg(engine, "telegram_answered", label=patient_label(engine)))


async def test_deep_link_payload_is_validated(
    api: FakeBotAPI, database: str, engine: Engine
) -> None:
    known = sorted({c.establishment for c in engine.kb.contacts.values() if c.establishment})
    async with running_bot(api, database, engine, webhook=True) as bot:
        for index, payload in enumerate(["inconnu", "a" * 65, "<script>", *known[:1]]):
            user = api.user(600 + index)
            shown = await bot.send(user, user.text(f"/start {payload}"))
            note = msg(engine, "deeplink_unknown")
            assert any(m.text.find(note) >= 0 for m in shown) == (payload not in known)
            assert last_buttons(shown).buttons  # the consent question follows either way


async def test_every_command_is_in_the_menu(api: FakeBotAPI, database: str, engine: Engine) -> None:
    async with running_bot(api, database, engine, webhook=False) as bot:
        names = [c["command"] for c in api.commands]
        assert names[:6] == ["aide", "retour", "recommencer", "contacts", "glossaire", "stop"]
        typed = {*COMMANDS, *bot.channel.engine.modes, "mesdonnees", "oubli"}
        assert set(names) == typed
        assert all(c["description"] for c in api.commands)
        # /stop, typed from the menu, stops the conversation.
        user = api.user(515)
        await begin(bot, user, engine)
        shown = await bot.send(user, user.text("/stop"))
        assert msg(engine, "stopped") in shown[-1].text


async def test_telegram_429_then_200_delivers_once(
    api: FakeBotAPI, database: str, engine: Engine
) -> None:
    async with running_bot(api, database, engine, webhook=True) as bot:
        user = api.user(512)
        api.fail("sendMessage", 429, retry_after=1)
        shown = await bot.send(user, user.text("/start"))
        assert [c.status for c in api.called("sendMessage")][:2] == [429, 200]
        welcome = [m for m in api.to_chat(user.id) if m.text == shown[0].text]
        assert len(welcome) == 1


async def test_telegram_5xx_is_retried_boundedly(
    api: FakeBotAPI, database: str, engine: Engine
) -> None:
    async with running_bot(api, database, engine, webhook=True) as bot:
        user = api.user(513)
        api.fail("sendMessage", 500, times=2)
        shown = await bot.send(user, user.text("/start"))
        assert [c.status for c in api.called("sendMessage")][:3] == [500, 500, 200]
        assert len([m for m in api.to_chat(user.id) if m.text == shown[0].text]) == 1
        # A Telegram that keeps failing: the update is still marked applied, nothing loops.
        api.fail("sendMessage", 500, times=10)
        await bot.deliver(user.text("aide"))
        await bot.channel.drain()
        assert await bot.storage.inbox_pending() == []


async def test_logs_carry_no_text_no_id_no_token(
    api: FakeBotAPI, database: str, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_bot(api, database, engine, webhook=True) as bot:
        user = api.user(987654321)
        await begin(bot, user, engine)
        shown = await bot.send(user, user.text("je suis une phrase tres personnelle"))
        api.fail("sendMessage", 500)
        keyboard = last_buttons(shown)  # whichever question that sentence led to
        await bot.send(user, user.press(keyboard, keyboard.buttons[0][1]))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("987654321", TOKEN, "tres personnelle", SECRET.decode(), WEBHOOK_SECRET):
        assert secret not in logged


def test_long_replies_are_split_under_the_limit() -> None:
    paragraph = "Une phrase assez longue pour remplir la page. " * 20
    replies = [Reply(paragraph) for _ in range(12)] + [Reply("Et ensuite ?", (Choice("a", "A"),))]
    messages = render(replies)
    assert len(messages) > 1
    assert all(len(m.text) <= 4000 for m in messages)
    assert messages[-1].choices == (Choice("a", "A"),)
    assert "".join(m.text for m in messages).replace("\n", "").replace(" ", "") == "".join(
        r.text for r in replies
    ).replace(" ", "")
    assert all(len(piece) <= 4000 for piece in split_text("x" * 9000))


def test_callback_data_fits_telegram_limit() -> None:
    long_id = "choix_" + "x" * 60
    data = encode_choice("question", long_id)
    assert len(data.encode()) <= 64
    assert data.startswith(node_tag("question"))
    assert encode_choice("profil", "patient") == f"{node_tag('profil')}|patient"


# -- how a person sees it on a phone ---------------------------------------------------------
async def test_a_tapped_question_shows_the_answer_and_loses_its_buttons(
    api: FakeBotAPI, database: str, engine: Engine
) -> None:
    async with running_bot(api, database, engine, webhook=True) as bot:
        user = api.user(520)
        shown = await begin(bot, user, engine)
        question = shown[-1]
        before = question.text
        label = patient_label(engine)
        shown = await bot.send(user, press_choice(user, shown, "patient"))
        # The question message now reads « … qui êtes-vous ? » then the chosen answer, in full
        # (the button showed its short form), in bold; its keyboard is gone.
        answered = msg(engine, "telegram_answered", label=label)
        assert question.text == f"{before}\n\n{answered}"
        assert question.bold == [answered] and question.buttons == []
        assert question.edits == [before]
        assert text(engine.kb.questions["experience"].text) in shown[-1].text


async def test_keyboards_are_compact_and_labels_fit_a_phone(
    api: FakeBotAPI, database: str, engine: Engine
) -> None:
    script = persona("01_patiente_chronique_formatrice.yaml")
    back = text(engine.kb.flow.commands["retour"].label)
    async with running_bot(api, database, engine, webhook=True) as bot:
        user = api.user(521)
        shown = await begin(bot, user, engine)
        keyboards = [last_buttons(shown).rows]
        for step in script["steps"]:
            shown = await bot.send(user, press_choice(user, shown, step["choice"]))
            keyboards.append(last_buttons(shown).rows)
        for rows in keyboards:
            for row in rows:
                # Two or three side by side when short, one per row when long.
                assert len(row) == 1 or all(len(label) <= 20 for label in row), row
                assert all(len(label) <= 32 for label in row), row
        experience = next(rows for rows in keyboards if any("Cancer" in row for row in rows))
        assert [len(row) for row in experience] == [2, 2, 2, 1, 1]  # was 8 rows of one
        assert experience[-1] == [back]  # « back » alone on the last row
        assert max(len(rows) for rows in keyboards) <= 11  # the 19 regions: 10 rows + back


async def test_the_glossary_is_paged_in_place(
    api: FakeBotAPI, database: str, engine: Engine
) -> None:
    async with running_bot(api, database, engine, webhook=True) as bot:
        user = api.user(522)
        await begin(bot, user, engine)
        [glossary] = await bot.send(user, user.text("/glossaire"))
        resume = msg(engine, "back_to_question")
        seen: list[str] = []
        pages = 0
        while True:
            pages += 1
            labels = [label for label, _ in glossary.buttons]
            terms = [
                label
                for label, data in glossary.buttons
                if not data.startswith("p:") and label != resume
            ]
            assert 1 <= len(terms) <= 8 and resume in labels
            seen += terms
            if msg(engine, "telegram_next") not in labels:
                break
            # « Suivants » edits the same message: nothing new in the chat.
            count = api.count_to(user.id)
            await bot.edit(user.press(glossary, glossary.data_of(msg(engine, "telegram_next"))))
            assert api.count_to(user.id) == count
        assert pages == 5 and len(seen) == len(engine.kb.glossary) == len(set(seen))
        # A term from the last page: its definition, and the glossary message shows the choice.
        term = engine.kb.glossary[next(reversed(engine.kb.glossary))]
        shown = await bot.send(user, user.press(glossary, glossary.data_of(seen[-1])))
        assert shown[0].text.startswith(text(term.term))
        assert glossary.buttons == []


async def test_the_recommendation_is_one_message_per_role_with_bold_headings(
    api: FakeBotAPI, database: str, engine: Engine
) -> None:
    script = persona("01_patiente_chronique_formatrice.yaml")
    async with running_bot(api, database, engine, webhook=True) as bot:
        user = api.user(523)
        shown = await begin(bot, user, engine)
        for step in script["steps"]:
            shown = await bot.send(user, press_choice(user, shown, step["choice"]))
        titles = [text(role.title) for role in engine.kb.roles.values()]
        roles = [m for m in shown if re.sub(r"^\d\. ", "", m.text.split("\n")[0]) in titles]
        assert 1 <= len(roles) <= 3
        for rank, message in enumerate(roles, start=1):
            first_line = message.text.split("\n")[0]
            assert first_line.startswith(f"{rank}. ")
            assert first_line in message.bold  # « 1. Patient partenaire formateur »
            others = [t for t in titles if f"\n{rank + 1}. {t}\n" in message.text]
            assert others == []  # one role per message
            assert msg(engine, "reasons") in message.bold
            assert len(message.text) < 2500
        # Then the contacts, with each organisation's name in bold, after the last role.
        contacts = next(m for m in shown if m.text.startswith(msg(engine, "contacts_intro")[:20]))
        assert shown.index(contacts) > shown.index(roles[-1])
        contact = engine.kb.contacts[script["expect"]["contacts_include"][0]]
        assert text(contact.name) in contacts.bold


async def test_a_typed_answer_removes_the_buttons_it_answered(
    api: FakeBotAPI, database: str, engine: Engine
) -> None:
    """Once the conversation moves on, answered by typing or tapping, no older message keeps
    buttons; at the same question (« aide »), they stay, without an extra call."""
    async with running_bot(api, database, engine, webhook=True) as bot:
        user = api.user(524)
        shown = await begin(bot, user, engine)
        question = last_buttons(shown)
        shown = await bot.send(user, user.text("je suis patiente"))
        assert question.buttons == []  # still reads the question, without its buttons
        assert text(engine.kb.questions[engine.kb.flow.start].text) in question.text
        current = last_buttons(shown)
        edits = len(api.called("editMessageReplyMarkup"))
        shown = await bot.send(user, user.text("/aide"))
        assert current.buttons and last_buttons(shown).buttons  # the same question twice
        assert len(api.called("editMessageReplyMarkup")) == edits
        keyboard = last_buttons(shown)
        await bot.send(user, user.press(keyboard, keyboard.buttons[0][1]))
        with_buttons = [m for m in api.to_chat(user.id) if m.buttons]
        assert with_buttons == [api.to_chat(user.id)[-1]]
        assert [c for c in api.calls if c.status == 400] == []
