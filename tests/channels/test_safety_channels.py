"""The safety net on every channel: terminal (JSON lines), hospital API and Telegram, before
and after consent. Distress always brings the crisis numbers first; near-misses never do."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.channels.terminal import run_json
from bot.engine.flow import Engine
from tests.harness.api import Api, run_api, start
from tests.harness.fakebotapi import FakeBotAPI
from tests.harness.phrases import DISTRESS, NEAR_MISSES
from tests.harness.telegram import begin, last_buttons, msg, running_bot

#: Every test here runs offline: only loopback can be reached (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("no_network")

#: A sample on the slower channels (the whole lists run against the engine in test_safety).
SAMPLE = ["jveux mourir", "chui a bout", "je me scarifie", "envie d'en finir", "au secours"]
CALM = ["je meurs d'envie de participer", "je travaille en soins palliatifs", "mourir de rire"]


def test_samples_come_from_the_lists() -> None:
    assert set(SAMPLE) <= set(DISTRESS) and set(CALM) <= set(NEAR_MISSES)


def test_terminal_json_lines(engine: Engine) -> None:
    lines = [json.dumps({"text": phrase}) for phrase in (*SAMPLE, *CALM)]
    out = io.StringIO()
    run_json(engine, lines, out)
    turns = [json.loads(line) for line in out.getvalue().splitlines()][1:]
    for phrase, turn in zip((*SAMPLE, *CALM), turns, strict=True):
        crisis = "3114" in turn["replies"][0]["text"]
        assert crisis == (phrase in SAMPLE), phrase
        assert "understood" in turn


@pytest.fixture
def server(engine: Engine, tmp_path: Path) -> Iterator[Api]:
    yield from run_api(engine, tmp_path)


def test_api_turns(server: Api) -> None:
    with server.client() as client:
        for phrase in (*SAMPLE, *CALM):
            cid = start(client)["conversation_id"]
            turn = client.post(f"/conversations/{cid}/messages", json={"text": phrase}).json()
            crisis = "3114" in turn["replies"][0]["text"]
            assert crisis == (phrase in SAMPLE), phrase
            assert turn["node"] == "profil"


def test_api_turn_payload_has_understood(server: Api) -> None:
    with server.client() as client:
        cid = start(client)["conversation_id"]
        text = "je suis la maman d'un garçon autiste, on habite à Quimper"
        turn = client.post(f"/conversations/{cid}/messages", json={"text": text}).json()
        assert turn["understood"]["profile"] == "proche"
        assert turn["understood"]["experience"] == "handicap"
        assert turn["understood"]["territory"] == "fr-bretagne"
        assert turn["node"] == "recul"


async def test_telegram_distress_before_consent(
    api: FakeBotAPI, tmp_path: Path, engine: Engine
) -> None:
    async with running_bot(api, tmp_path, engine, webhook=True) as bot:
        for number, phrase in enumerate(SAMPLE):
            user = api.user(700 + number)
            await bot.send(user, user.text("/start"))
            shown = await bot.send(user, user.text(phrase))
            assert "3114" in shown[0].text, phrase
            assert msg(engine, "consent_question", days="90")[:40] in last_buttons(shown).text
        # The very first message, without /start.
        user = api.user(799)
        shown = await bot.send(user, user.text("je veux mourir"))
        assert "3114" in shown[0].text
        counts = await bot.storage.counts()
        assert counts["sessions"] == 0 and counts["consents"] == 0, "nothing stored"


async def test_telegram_near_miss_before_consent_gets_the_reminder_only(
    api: FakeBotAPI, tmp_path: Path, engine: Engine
) -> None:
    async with running_bot(api, tmp_path, engine, webhook=True) as bot:
        user = api.user(720)
        await bot.send(user, user.text("/start"))
        shown = await bot.send(user, user.text(CALM[0]))
        assert all("3114" not in m.text for m in shown)
        assert shown[0].text.startswith(msg(engine, "consent_reminder"))


async def test_telegram_distress_after_consent(
    api: FakeBotAPI, tmp_path: Path, engine: Engine
) -> None:
    async with running_bot(api, tmp_path, engine, webhook=True) as bot:
        user = api.user(730)
        await begin(bot, user, engine)
        shown = await bot.send(user, user.text("chui a bout"))
        assert "3114" in shown[0].text
        shown = await bot.send(user, user.text("je travaille en soins palliatifs"))
        assert all("3114" not in m.text for m in shown)
