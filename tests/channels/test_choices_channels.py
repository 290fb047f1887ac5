"""One set of valid choice ids on every channel (:mod:`bot.app.choices`): the same button is
accepted or refused the same way on Telegram (the real PTB stack against the fake Bot API) and
on the HTTP API (a real server), and a refused one changes nothing on either."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.channels.telegram import encode_choice
from bot.engine.flow import Engine
from bot.knowledge.model import text
from tests.harness.api import Api, run_api, start
from tests.harness.fakebotapi import FakeBotAPI
from tests.harness.telegram import begin, press_choice, running_bot

pytestmark = pytest.mark.usefixtures("no_network")

#: (what is sent as a choice once the person answered « patient », accepted?)
CASES = [
    ("cmd:glossaire", True),  # a command, at any step
    ("proche", False),  # the first question's other button: an old one
    ("ancien_choix", False),  # an id this base never offered
    ("cmd:inconnu", False),  # a command no button carries
    ("terme:" + "x" * 60, False),  # too long for Telegram's callback data: sent as a hash
    ("cmd:aide", True),  # last: it asks the question again, whose answer follows
]


@pytest.fixture
def http_api(engine: Engine, tmp_path: Path) -> Iterator[Api]:
    yield from run_api(engine, tmp_path / "api.db")


async def test_a_button_is_accepted_or_refused_alike_on_both_channels(
    api: FakeBotAPI, http_api: Api, engine: Engine, tmp_path: Path
) -> None:
    experience = text(engine.kb.questions["experience"].text)
    telegram: dict[str, bool] = {}
    async with running_bot(api, tmp_path / "telegram.db", engine, webhook=True) as bot:
        user = api.user(901)
        first = await begin(bot, user, engine)
        old_tap = press_choice(user, first, "proche")  # kept before its keyboard goes
        latest = await bot.send(user, press_choice(user, first, "patient"))
        for choice, _ in CASES:
            data = encode_choice("experience", choice)
            update = old_tap if choice == "proche" else user.press(latest[-1], data)
            shown = await bot.send(user, update)
            # Refused: the current question is asked again, and nothing else is said.
            telegram[choice] = [m.text for m in shown] != [experience]
            if shown[-1].text.endswith(experience):
                latest = shown
        answered = await bot.send(user, press_choice(user, latest, "chronique"))
        assert experience not in answered[-1].text, "the real answer still moves it on"

    http: dict[str, bool] = {}
    with http_api.client() as client:
        cid = start(client)["conversation_id"]
        path = f"/conversations/{cid}/messages"
        assert client.post(path, json={"choice": "patient"}).json()["node"] == "experience"
        for choice, _ in CASES:
            response = client.post(path, json={"choice": choice})
            http[choice] = response.status_code == 200
            if not http[choice]:
                assert response.status_code == 422, response.text
                assert response.json()["error"]["code"] == "unknown_choice"
            assert client.get(f"/conversations/{cid}").json()["node"] == "experience"
        assert client.post(path, json={"choice": "chronique"}).json()["node"] != "experience"

    expected = dict(CASES)
    assert telegram == expected
    assert http == expected
