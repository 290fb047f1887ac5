"""The Telegram side of the tests: our real server (PTB and uvicorn) composed as
``passerelle serve`` composes it, reached like Telegram reaches it (webhook) or fed through the
fake Bot API (polling), and the small moves a person makes in a chat."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bot.app.features import Features
from bot.channels.telegram import TelegramChannel
from bot.cli.compose import build_integration, build_server_app, establishments_or_exit, jobs_for
from bot.config import Settings
from bot.engine.flow import Engine
from bot.storage.base import Storage
from bot.storage.factory import build_stores, is_postgres_url
from bot.storage.features import FeatureStore
from bot.storage.integration import ALL_MIGRATIONS
from bot.storage.postgres import PostgresStorage
from bot.storage.sqlite import SqliteStorage
from tests.harness.fakebotapi import TOKEN, FakeBotAPI, FakeUser, Sent
from tests.harness.servers import serve
from tests.harness.wait import DEADLINE
from tests.harness.webhook_client import WebhookClient

SECRET = b"test-pseudonym-secret-0123456789"
#: The stores the tests run on (both count their rows, for the tests' checks).
Store = SqliteStorage | PostgresStorage
WEBHOOK_SECRET = "webhook-secret-abcdefghijklmnop"


def settings_for(api: FakeBotAPI, db: str | Path, webhook: bool) -> Settings:
    """Settings of a bot on ``db``: a SQLite file, a directory (its passerelle.db) or a
    PostgreSQL URL."""
    if not isinstance(db, str) or not is_postgres_url(db):
        db = str(Path(db) / "passerelle.db") if Path(db).is_dir() else str(db)
    return Settings(
        telegram_token=TOKEN,
        telegram_api_base_url=api.base_url,
        secret=SECRET,
        db_path=Path(db) if not is_postgres_url(db) else Path("unused.db"),
        database_url=db if is_postgres_url(db) else None,
        telegram_rate=0,
        webhook_url="https://passerelle.test/telegram/webhook" if webhook else None,
        webhook_secret=WEBHOOK_SECRET if webhook else None,
    )


def concrete(core: Storage) -> Store:
    """The factory's store as the implementation the tests inspect."""
    assert isinstance(core, SqliteStorage | PostgresStorage)
    return core


@dataclass
class Bot:
    """One running server (our real app under uvicorn) and how to reach it like Telegram."""

    api: FakeBotAPI
    channel: TelegramChannel
    storage: Store
    url: str
    webhook: bool
    #: For the tests' own requests (the API, hostile bodies).
    client: httpx.AsyncClient
    #: How Telegram delivers to the webhook (``None``: the bot polls).
    telegram: WebhookClient | None = None

    async def deliver(self, update: dict[str, Any]) -> None:
        if self.webhook:
            assert self.telegram is not None, "a webhook bot needs a WebhookClient"
            assert await self.telegram.post(self.url + "/telegram/webhook", update) == 200
        else:
            await self.api.push(update)

    async def send(
        self, user: FakeUser, update: dict[str, Any], *, drain: bool = True
    ) -> list[Sent]:
        """Deliver ``update`` and return the messages the bot sent back for it (all of them
        with ``drain``; with many chats at once, at least the first)."""
        before = self.api.count_to(user.id)
        await self.deliver(update)
        await self.api.wait_for(lambda: self.api.count_to(user.id) > before)
        if drain:
            await self.channel.drain()
        return self.api.to_chat(user.id)[before:]

    async def edit(self, update: dict[str, Any]) -> None:
        """Deliver a tap that only edits a message already shown; wait for the edit."""
        edits = ("editMessageText", "editMessageReplyMarkup")
        before = sum(1 for c in self.api.calls if c.method in edits)
        await self.deliver(update)
        await self.api.wait_for(
            lambda: sum(1 for c in self.api.calls if c.method in edits) > before
        )
        await self.channel.drain()


@contextlib.asynccontextmanager
async def running_bot(
    api: FakeBotAPI, db: str | Path, engine: Engine, webhook: bool
) -> AsyncIterator[Bot]:
    """Our server on ``db`` (see :func:`settings_for`; the ``database`` fixture runs a test
    on SQLite and on PostgreSQL)."""
    settings = settings_for(api, db, webhook)
    storage = (
        concrete(build_stores(settings.database_url).core)
        if settings.database_url
        else SqliteStorage(settings.db_path, synchronous="NORMAL")
    )
    app = build_server_app(
        settings, engine, storage=storage, pause=0, poll_timeout=5, retry_delay=0.01
    )
    async with (
        serve(app) as url,
        httpx.AsyncClient(timeout=30) as client,
        WebhookClient(WEBHOOK_SECRET, connections=10) as telegram,
    ):
        yield Bot(api, app.state.telegram, storage, url, webhook, client, telegram)


def last_buttons(messages: list[Sent]) -> Sent:
    return next(m for m in reversed(messages) if m.buttons)


def press_choice(user: FakeUser, messages: list[Sent], choice_id: str) -> dict[str, Any]:
    """Tap the button for engine choice ``choice_id`` on the last keyboard shown."""
    keyboard = last_buttons(messages)
    for _, data in keyboard.buttons:
        if data.endswith("|" + choice_id):
            return user.press(keyboard, data)
    raise AssertionError(f"no button {choice_id} in {keyboard.buttons}")


def msg(engine: Engine, key: str, **values: str) -> str:
    return engine.msg(key, engine.new_session(), **values)


async def begin(bot: Bot, user: FakeUser, engine: Engine, consent: bool = True) -> list[Sent]:
    """/start, then answer the consent question; returns the messages after consent."""
    greeting = await bot.send(user, user.text("/start"))
    assert msg(engine, "welcome")[:40] in greeting[0].text
    consent_msg = last_buttons(greeting)
    assert msg(engine, "consent_question", days="90")[:40] in consent_msg.text
    label = msg(engine, "consent_yes" if consent else "consent_no")
    return await bot.send(user, user.press(consent_msg, consent_msg.data_of(label)))


def write_region_establishment(path: Path, port: int) -> Path:
    path.write_text(
        "establishments:\n"
        "  region-occitanie:\n"
        "    name: Maison des usagers Occitanie\n"
        "    territories: [fr-occitanie]\n"
        "    webhook:\n"
        f"      url: http://127.0.0.1:{port}/hooks/passerelle\n"
        "      secret_env: CHU_A_SECRET\n",
        encoding="utf-8",
    )
    return path


@contextlib.asynccontextmanager
async def full_bot(
    api: FakeBotAPI, tmp_path: Path, engine: Engine, hook_port: int, database: str | None = None
) -> AsyncIterator[Bot]:
    """Telegram by polling, the API and the webhook worker, on one database: as in cmd_serve
    (``database``: a PostgreSQL URL, or by default a SQLite file in ``tmp_path``)."""
    postgres = database is not None and database.startswith("postgresql://")
    settings = Settings(
        telegram_token=TOKEN,
        telegram_api_base_url=api.base_url,
        secret=SECRET,
        db_path=Path(database) if database and not postgres else tmp_path / "passerelle.db",
        database_url=database if postgres else None,
        telegram_rate=0,
        establishments=write_region_establishment(tmp_path / "etab.yaml", hook_port),
        webhook_retry_base=0.05,
    )
    stores = build_stores(database) if postgres and database else None
    storage = (
        concrete(stores.core)
        if stores
        else SqliteStorage(settings.db_path, synchronous="NORMAL", migrations=ALL_MIGRATIONS)
    )
    # As in cmd_serve: the engine offers a hand-off only towards the establishments' webhooks.
    receivers = tuple(establishments_or_exit(settings, engine).values())
    engine = Engine(engine.kb, modes=tuple(engine.modes.values()), receivers=receivers)
    features = Features(engine, stores.features if stores else FeatureStore(settings.db_path))
    parts = build_integration(settings, engine, storage, features=features)
    app = build_server_app(
        settings,
        engine,
        routes=parts.routes,
        lifespans=parts.lifespans,
        storage=storage,
        features=features,
        jobs=jobs_for(settings, storage, conversations=parts.store),
        establishments=parts.establishments,
        integration=parts.store,
        on_events=parts.worker.wake,
        pause=0,
        poll_timeout=5,
        retry_delay=0.01,
    )
    async with serve(app) as url, httpx.AsyncClient(timeout=30) as client:
        yield Bot(api, app.state.telegram, storage, url, False, client)


async def settled(api: FakeBotAPI, channel: TelegramChannel, storage: Storage) -> None:
    """Wait until nothing more can reach Telegram for what was received so far: every update
    applied, the reply outbox empty and no call being answered. After it, a message that did
    not come is proof that it never will (a duplicate, a second question), not luck."""
    deadline = time.monotonic() + DEADLINE
    while True:
        await channel.drain()
        await api.idle()
        if not await storage.replies_pending() and api.busy == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"replies still pending after {DEADLINE:.0f} s")
        await asyncio.sleep(0.01)
