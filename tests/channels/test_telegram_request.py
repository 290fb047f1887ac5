"""The Telegram channel's HTTP client (aiohttp behind PTB's ``BaseRequest``): what reaches
Telegram is what PTB's own client sends, a Bot API that is down or late is PTB's ``NetworkError``
or ``TimedOut`` (so replies are retried, never lost), and no more than the pool's connections
are used at once."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, HTTPXRequest

from bot.channels.telegram.request import AiohttpRequest
from tests.harness.fakebotapi import TOKEN, FakeBotAPI

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.usefixtures("no_network")


async def calls_of(api: FakeBotAPI, request: BaseRequest) -> list[tuple[str, dict[str, object]]]:
    """A message with HTML and buttons, then a photo, sent by a PTB bot on ``request``."""
    bot = Bot(TOKEN, base_url=api.base_url, request=request)
    async with bot:
        yes = InlineKeyboardButton("Oui", callback_data="q:yes")
        no = InlineKeyboardButton("Non", callback_data="q:no")
        markup = InlineKeyboardMarkup([[yes], [no]])
        await bot.send_message(
            42, "<b>Bonjour</b> &amp; bienvenue, Zoé", parse_mode="HTML", reply_markup=markup
        )
        await bot.send_photo(42, PNG_MAGIC + b"\x00" * 64, caption="Votre baromètre")
    return [(c.method, c.params) for c in api.calls if c.method in ("sendMessage", "sendPhoto")]


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as fake:
        yield fake


async def test_what_reaches_telegram_is_what_ptbs_own_client_sends(api: FakeBotAPI) -> None:
    ours = await calls_of(api, AiohttpRequest(4))
    api.calls.clear()
    theirs = await calls_of(api, HTTPXRequest(4))
    assert [method for method, _ in ours] == ["sendMessage", "sendPhoto"]
    assert ours == theirs
    photo = ours[1][1]["photo"]
    assert isinstance(photo, bytes) and photo.startswith(PNG_MAGIC)


async def test_a_bot_api_that_is_down_is_a_network_error() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    request = AiohttpRequest(2, connect_timeout=2)
    await request.initialize()
    try:
        with pytest.raises(NetworkError):
            await request.post(f"http://127.0.0.1:{port}/bot{TOKEN}/getMe")
    finally:
        await request.shutdown()


async def test_an_answer_later_than_the_read_timeout_is_timed_out(api: FakeBotAPI) -> None:
    request = AiohttpRequest(2, read_timeout=0.2)
    await request.initialize()
    try:
        api.fail("getMe", 200, delay=2.0)
        with pytest.raises(TimedOut):
            await request.post(f"{api.base_url}{TOKEN}/getMe")
        me = await request.post(f"{api.base_url}{TOKEN}/getMe")  # the next call is answered
        assert isinstance(me, dict) and me["is_bot"] is True
    finally:
        await request.shutdown()


async def test_no_more_calls_at_once_than_the_pool_allows(api: FakeBotAPI) -> None:
    most = 0
    stop = asyncio.Event()

    async def watch() -> None:
        nonlocal most
        while not stop.is_set():
            most = max(most, api.busy)
            await asyncio.sleep(0)

    request = AiohttpRequest(3)
    bot = Bot(TOKEN, base_url=api.base_url, request=request)
    watcher = asyncio.create_task(watch())
    async with bot:
        api.fail("sendMessage", 200, delay=0.05, times=30)  # each call stays open a while
        await asyncio.gather(*(bot.send_message(1000 + n, "Bonjour") for n in range(30)))
    stop.set()
    await watcher
    assert sum(c.method == "sendMessage" for c in api.calls) == 30
    assert 1 < most <= 3
