"""How updates reach the channel: long polling, or the webhook Telegram posts to. Both hand
the raw bytes to the channel's ``receive`` (record first, then apply) and confirm an update
to Telegram only once it is recorded.

Its own module because it is the channel's only HTTP side (Starlette) and the only loop on
Telegram's ``getUpdates``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import Bot, Update
from telegram.error import NetworkError, RetryAfter, TelegramError

from bot.channels.telegram.delivery import Delivery
from bot.config import Settings

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20

#: The channel's intake: ``False`` for a duplicate or a dropped update; :class:`ValueError`
#: for what is not an update at all.
Receive = Callable[[bytes], Awaitable[bool]]


async def poll(
    bot: Bot, delivery: Delivery, receive: Receive, stop: asyncio.Event, poll_timeout: int
) -> None:
    """Long polling until ``stop`` is set. An offset is confirmed to Telegram (by asking
    for the next one) only after its update was committed to the inbox."""
    await delivery.call(bot.delete_webhook, False)
    offset: int | None = None
    failures = 0
    while not stop.is_set():
        fetch = asyncio.ensure_future(
            bot.get_updates(offset=offset, timeout=poll_timeout, allowed_updates=Update.ALL_TYPES)
        )
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not fetch.done():
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError, TelegramError):
                await fetch
            break
        stopping.cancel()
        try:
            updates = fetch.result()
        except (NetworkError, RetryAfter) as exc:
            failures += 1
            log.warning("getUpdates failed (%s), retrying", type(exc).__name__)
            with contextlib.suppress(TimeoutError):  # not wait_for: see WebhookWorker.run
                async with asyncio.timeout(min(30.0, 0.5 * 2**failures)):
                    await stop.wait()
            continue
        failures = 0
        for update in updates:
            raw = json.dumps(update.to_dict(), ensure_ascii=False).encode()
            await receive(raw)
            offset = update.update_id + 1


async def set_webhook(bot: Bot, delivery: Delivery, settings: Settings) -> None:
    """Point Telegram at ``PASSERELLE_WEBHOOK_URL`` with the secret header."""
    assert settings.webhook_url is not None
    await delivery.call(
        bot.set_webhook,
        url=settings.webhook_url,
        secret_token=settings.webhook_secret,
        allowed_updates=Update.ALL_TYPES,
    )


def webhook_route(settings: Settings, receive: Receive) -> Route:
    """The Starlette route Telegram posts updates to (path of ``PASSERELLE_WEBHOOK_URL``):
    403 without the secret header, 413 past :data:`MAX_BODY`, 408 for a body too slow to
    come, 400 for what is not an update, else 200 once it is recorded."""
    secret = (settings.webhook_secret or "").encode()

    async def webhook(request: Request) -> Response:
        given = request.headers.get("x-telegram-bot-api-secret-token", "").encode()
        if not secret or not hmac.compare_digest(given, secret):
            return Response(status_code=403)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return Response(status_code=413)  # refused before reading any of it
        body = bytearray()
        try:
            async with asyncio.timeout(settings.body_timeout):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > MAX_BODY:
                        return Response(status_code=413)
        except TimeoutError:
            return Response(status_code=408, headers={"connection": "close"})
        try:
            await receive(bytes(body))
        except ValueError:
            return Response(status_code=400)
        return Response(status_code=200)

    return Route(settings.webhook_path, webhook, methods=["POST"])
