"""What an operator reads and runs: the start-up line, ``keys create``, ``webhooks run``, and
``passerelle telegram`` (polling) delivering events to establishments as ``serve`` does."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from bot.cli import main
from bot.knowledge.loader import load
from tests.harness.fakebotapi import TOKEN, FakeBotAPI, FakeUser, Sent
from tests.harness.personas import HOW, PATIENT_TRAINER
from tests.harness.ports import free_port
from tests.harness.telegram import SECRET, press_choice
from tests.harness.telegram import write_region_establishment as write_establishments
from tests.harness.wait import within
from tests.harness.webhooks import SECRET as HOOK_SECRET
from tests.harness.webhooks import Receiver

ROOT = Path(__file__).resolve().parents[2]
CONTENUS = ROOT / "contenus"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A clean environment for the commands: a fresh database, no Telegram, no webhook URL."""
    for name in list(os.environ):
        if name.startswith(("PASSERELLE_", "TELEGRAM_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PASSERELLE_DB", str(tmp_path / "passerelle.db"))
    monkeypatch.setenv("CHU_A_SECRET", HOOK_SECRET)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    yield dict(os.environ)


def declare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, webhook: bool) -> Path:
    path = tmp_path / "etablissements.yaml"
    if webhook:
        write_establishments(path, 9)
    else:
        path.write_text(
            "establishments:\n  chu-exemple:\n    name: CHU Exemple\n    contexts: [chu-exemple]\n",
            encoding="utf-8",
        )
    monkeypatch.setenv("PASSERELLE_ETABLISSEMENTS", str(path))
    return path


# -- keys create --------------------------------------------------------------------------------
def test_keys_create_refuses_an_id_no_establishment_declares(
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    declare(tmp_path, monkeypatch, webhook=False)
    assert main(["keys", "create", "CHU Exemple!"]) == 2
    err = capsys.readouterr().err
    assert "Aucun établissement « CHU Exemple! »" in err and "chu-exemple" in err
    assert main(["keys", "list"]) == 0
    assert "Aucune clé" in capsys.readouterr().out  # nothing was created
    assert main(["keys", "create", "chu-exemple"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("psk_") and "« chu-exemple »" in err


def test_keys_create_without_any_establishment_says_how_to_declare_one(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "create", "chu-exemple"]) == 2
    err = capsys.readouterr().err
    assert "Aucun établissement n'est déclaré" in err and "PASSERELLE_ETABLISSEMENTS" in err


# -- webhooks run -------------------------------------------------------------------------------
def test_webhooks_run_says_when_no_establishment_has_a_webhook(
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["webhooks", "run"]) == 1
    out, err = capsys.readouterr()
    assert "Livraison" not in out
    assert "Aucun établissement n'a de webhook" in err and "PASSERELLE_ETABLISSEMENTS" in err
    declare(tmp_path, monkeypatch, webhook=False)
    assert main(["webhooks", "run"]) == 1
    assert "Aucun établissement n'a de webhook dans" in capsys.readouterr().err


# -- the start-up line --------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def command(
    args: list[str], env: dict[str, str], stream: str = "stderr"
) -> AsyncIterator[Callable[[str], asyncio.Future[str]]]:
    """Run ``passerelle ARGS``; yield a function waiting for its first line containing a text."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    output = process.stderr if stream == "stderr" else process.stdout
    assert output is not None
    seen: list[str] = []

    async def first(needle: str) -> str:
        while True:
            raw = await output.readline()
            if not raw:
                raise AssertionError(f"no line with {needle!r} in {seen}")
            seen.append(raw.decode())
            if needle in seen[-1]:
                return seen[-1]

    def wait(needle: str) -> asyncio.Future[str]:
        return asyncio.ensure_future(within(first(needle), f"a line containing {needle!r}"))

    try:
        yield wait
    finally:
        if process.returncode is None:
            process.terminate()
        await process.communicate()


async def test_serve_prints_mode_address_database_contents_and_establishments(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    declare(tmp_path, monkeypatch, webhook=True)
    port = free_port()
    environment = {**os.environ, "PORT": str(port), "PASSERELLE_HOST": "127.0.0.1"}
    async with command(["serve"], environment) as wait:
        line = await wait("prête")
    assert "sans Telegram" in line and str(port) in line
    assert str(tmp_path / "passerelle.db") in line
    assert f"contenus version {load(CONTENUS).version}" in line
    assert "region-occitanie (webhook : region-occitanie)" in line


# -- passerelle telegram (polling) routes events as serve does -----------------------------
async def test_polling_delivers_a_contact_request_to_the_establishment(
    env: dict[str, str], tmp_path: Path
) -> None:
    receiver = Receiver()
    establishments = write_establishments(tmp_path / "etab.yaml", receiver.port)
    try:
        async with FakeBotAPI() as api:
            environment = {
                **os.environ,
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "TELEGRAM_API_BASE_URL": api.base_url,
                "PASSERELLE_SECRET": SECRET.decode(),
                "PASSERELLE_TELEGRAM_RATE": "0",
                "PASSERELLE_ETABLISSEMENTS": str(establishments),
                "PASSERELLE_WEBHOOK_RETRY_BASE": "0.05",
            }
            async with command(["telegram"], environment, stream="stdout") as wait:
                line = await wait("prête")
                assert "long polling" in line and "region-occitanie" in line
                user = api.user(777)
                await converse(api, user)
                await api.wait_for(
                    lambda: any(e["type"] == "contact.requested" for e in receiver.acked.values())
                )
    finally:
        receiver.stop()
    [event] = [e for e in receiver.acked.values() if e["type"] == "contact.requested"]
    assert event["data"]["how_to_reach"] == HOW and event["data"]["territory"] == "fr-occitanie"
    assert receiver.rejected == 0


async def converse(api: FakeBotAPI, user: FakeUser) -> None:
    """/start, consent, the patient's answers, then a contact request, by polling."""

    async def step(update: dict[str, object]) -> list[Sent]:
        before = api.count_to(user.id)
        await api.push(update)
        await api.wait_for(lambda: any(m.buttons for m in api.to_chat(user.id)[before:]))
        return api.to_chat(user.id)[before:]

    shown = await step(user.text("/start"))
    consent = next(m for m in shown if m.buttons)
    shown = await step(user.press(consent, consent.buttons[0][1]))
    for choice in PATIENT_TRAINER:
        shown = await step(press_choice(user, shown, choice))
    shown = await step(press_choice(user, shown, "cmd:relation"))
    shown = await step(press_choice(user, shown, "cmd:confirmer"))
    shown = await step(user.text(HOW))
    await step(press_choice(user, shown, "cmd:confirmer"))
