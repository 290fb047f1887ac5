"""Issue 11: what a person erased is gone from the disk, not only from the tables. The raw
database, WAL and SHM files are read byte for byte while the server is still running (closing
it would checkpoint and hide the problem)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.app.engines import build_engine
from bot.app.features import Features
from bot.app.identity import pseudonym
from bot.channels.http import ConversationApi, RateLimiter
from bot.engine.flow import Engine
from bot.knowledge.model import KnowledgeBase
from bot.server import create_app
from bot.storage.features import FeatureStore
from bot.storage.integration import IntegrationStore
from tests.harness.fakebotapi import FakeBotAPI, FakeUser
from tests.harness.personas import HOW, PATIENT_TRAINER
from tests.harness.ports import free_port
from tests.harness.servers import serve
from tests.harness.telegram import SECRET, full_bot, last_buttons, press_choice
from tests.harness.wait import eventually
from tests.harness.webhooks import SECRET as HOOK_SECRET

TELEGRAM_ID = 7345678912
NAME = "Zéphyrine"
BEFORE_CONSENT = "je suis Zéphyrine Quatrebarbes et j'ai un diabète de type 1"
NEVER_CONSENTS = "Hippolyte Vandermeersch, sclérose en plaques, ne veut rien garder"
API_TEXT = "Je suis Philomène Ardouin-Kerbrat, suivie pour une mucoviscidose"
API_EMAIL = "philomene.ardouin@example.org"


#: Every test here runs offline: only loopback can be reached (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("no_network")


def raw_files(db: Path) -> dict[str, bytes]:
    """The database as it is on disk: main file, write-ahead log, shared-memory index."""
    files = {}
    for suffix in ("", "-wal", "-shm"):
        path = Path(str(db) + suffix)
        if path.exists():
            files[path.name] = path.read_bytes()
    return files


def leftovers(db: Path, needles: list[str | re.Pattern[bytes]]) -> list[tuple[str, str]]:
    found = []
    for name, content in raw_files(db).items():
        for needle in needles:
            if isinstance(needle, str):
                if needle.encode() in content:
                    found.append((name, needle))
            elif needle.search(content):
                found.append((name, needle.pattern.decode()))
    return found


async def wait_clean(db: Path, needles: list[str | re.Pattern[bytes]]) -> None:
    """The erasure reaches the files (WAL included) without a restart: wait for it, then say
    which values are still there if they are."""
    with contextlib.suppress(AssertionError):
        await eventually(lambda: not leftovers(db, needles), "erased values gone from the disk")
    assert leftovers(db, needles) == [], "erased values still on disk"


def digits(value: int) -> re.Pattern[bytes]:
    return re.compile(rb"(?<![\d.])" + str(value).encode() + rb"(?![\d.])")


async def test_forget_on_telegram_leaves_nothing_in_the_database_wal_or_shm_files(
    tmp_path: Path, kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHU_A_SECRET", HOOK_SECRET)
    engine = build_engine(kb, followup=True)
    db = tmp_path / "passerelle.db"
    down = free_port()  # the hospital is down: the contact request (e-mail) waits in the outbox
    async with FakeBotAPI() as api, full_bot(api, tmp_path, engine, down) as bot:
        user = FakeUser(api, TELEGRAM_ID, NAME)
        quiet = FakeUser(api, 6_123_987_654, "Hippolyte")
        # Before consent: typed text (kept in memory only; its raw update went through the inbox).
        greeting = await bot.send(user, user.text("/start"))
        await bot.send(user, user.text(BEFORE_CONSENT))
        consent = last_buttons(greeting)
        yes = consent.data_of("Oui, gardez mes réponses")
        shown = await bot.send(user, user.press(consent, yes))
        for choice in PATIENT_TRAINER:
            shown = await bot.send(user, press_choice(user, shown, choice))
        shown = await bot.send(user, user.text("/relation"))
        shown = await bot.send(user, press_choice(user, shown, "cmd:confirmer"))
        shown = await bot.send(user, user.text(HOW))
        await bot.send(user, press_choice(user, shown, "cmd:confirmer"))
        # Someone who never consents: nothing of theirs outlives the turn that needed it.
        await bot.send(quiet, quiet.text("/start"))
        await bot.send(quiet, quiet.text(NEVER_CONSENTS))
        await wait_clean(db, [NEVER_CONSENTS, digits(6_123_987_654), "Hippolyte"])
        assert any(HOW.encode() in content for content in raw_files(db).values()), (
            "the consented conversation is kept until erased"
        )
        confirm = await bot.send(user, user.text("/oubli"))
        await bot.send(user, user.press(confirm[0], confirm[0].data_of("Oui, tout effacer")))
        await bot.channel.drain()
        needles: list[str | re.Pattern[bytes]] = [
            digits(TELEGRAM_ID),
            NAME,
            BEFORE_CONSENT,
            HOW,
            "camille@example.org",
            pseudonym(SECRET, "telegram", TELEGRAM_ID),
        ]
        await wait_clean(db, needles)
        assert len(raw_files(db).get(db.name + "-wal", b"")) == 0, "the WAL was truncated"


@pytest.fixture
def api_site(engine: Engine, tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    db = tmp_path / "passerelle.db"

    async def key() -> str:
        store = IntegrationStore(db)
        await store.open()
        secret, _ = await store.create_key("chu-a")
        await store.close()
        return secret

    secret = asyncio.run(key())
    api = ConversationApi(
        engine,
        IntegrationStore(db),
        limiter=RateLimiter(1e4, 10_000),
        features=Features(engine, FeatureStore(db)),
        secret=b"erasure-tests-pseudonym-key-000",
    )
    with serve(create_app(api)) as url:
        yield url, secret, db


def test_delete_on_the_api_leaves_nothing_in_the_database_wal_or_shm_files(
    api_site: tuple[str, str, Path],
) -> None:
    url, key, db = api_site
    headers = {"authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url + "/api/v1", headers=headers, timeout=20) as client:
        cid = client.post("/conversations", json={}).json()["conversation_id"]
        for body in ({"text": API_TEXT}, {"text": f"écrivez-moi à {API_EMAIL}"}):
            assert client.post(f"/conversations/{cid}/messages", json=body).status_code == 200
        assert any(API_TEXT.encode() in content for content in raw_files(db).values())
        assert client.delete(f"/conversations/{cid}").status_code == 204
        # At once: the 204 comes after the scrub.
        assert leftovers(db, [API_TEXT, API_EMAIL, cid]) == []
