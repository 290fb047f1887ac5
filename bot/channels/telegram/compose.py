"""Building the Telegram channel: PTB's application (rate limiter, timeouts, pool), the channel
over it, and running it (webhook or long polling; ``passerelle telegram`` composes it in
``bot.cli.serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import TYPE_CHECKING, TypedDict

from telegram.ext import AIORateLimiter, Application

from bot.app.outbox import EventRouter
from bot.app.privacy import OutboxAbout
from bot.app.reload import EngineHolder, holder_of
from bot.app.scheduler import Scheduler
from bot.channels.telegram.channel import TelegramChannel
from bot.channels.telegram.delivery import RETRY_BASE_DELAY
from bot.channels.telegram.request import AiohttpRequest
from bot.config import Settings
from bot.engine.flow import Engine
from bot.logging_setup import quiet_libraries
from bot.storage.base import Storage

if TYPE_CHECKING:
    from bot.app.features import Features
    from bot.knowledge.establishments import Establishment

log = logging.getLogger(__name__)

#: Seconds to wait for Telegram's answer to one call before retrying it.
READ_TIMEOUT = 10.0
#: Connections to the Bot API at most. Telegram lets a bot send about 30 messages a second;
#: 16 calls in flight carry that with round trips up to half a second, and a small pool is
#: cheaper to manage per call than a large one.
POOL_SIZE = 16


class ChannelOptions(TypedDict, total=False):
    """Keyword options of :func:`build` a composition passes on as they are: the world's
    share (establishments, outbox, worker) and how the channel waits and polls."""

    contexts: Collection[str] | None
    pause: float
    poll_timeout: int
    retry_delay: float
    read_timeout: float
    establishments: Mapping[str, Establishment] | None
    integration: OutboxAbout | None
    on_events: Callable[[], None] | None


class BuildOptions(ChannelOptions, total=False):
    """Every keyword option of :func:`build`: also the stores and the scheduler it shares."""

    memory: Storage | None
    features: Features | None
    scheduler: Scheduler | None


def router_for(
    establishments: Mapping[str, Establishment], holder: EngineHolder
) -> EventRouter | None:
    """Event routing towards ``establishments`` (the webhook adapter's rule), if any."""
    if not establishments:
        return None
    from bot.adapters.webhooks import route

    return EventRouter(establishments, route, lambda: holder.engine.kb)


def build(
    engine: Engine | EngineHolder,
    storage: Storage,
    settings: Settings,
    *,
    memory: Storage | None = None,
    contexts: Collection[str] | None = None,
    pause: float = 0.3,
    poll_timeout: int = 25,
    retry_delay: float = RETRY_BASE_DELAY,
    read_timeout: float = READ_TIMEOUT,
    features: Features | None = None,
    establishments: Mapping[str, Establishment] | None = None,
    integration: OutboxAbout | None = None,
    on_events: Callable[[], None] | None = None,
    scheduler: Scheduler | None = None,
) -> TelegramChannel:
    """The PTB application wired to ``engine`` and ``storage``, wrapped in a channel
    (``scheduler``: the composition's one scheduler, see :class:`TelegramChannel`).

    Outgoing calls go through :class:`AIORateLimiter` (``settings.telegram_rate`` messages per
    second overall; 0 disables the cap, for a local fake server) which waits on 429s, and
    :class:`AiohttpRequest` (at most :data:`POOL_SIZE` connections; one more for long polling).
    """
    if settings.telegram_token is None:
        raise ValueError("the Telegram channel needs settings.telegram_token")
    quiet_libraries()
    base = settings.telegram_api_base_url
    request = AiohttpRequest(
        POOL_SIZE,
        read_timeout=read_timeout,
        write_timeout=10,
        connect_timeout=5,
        pool_timeout=10,
    )
    application = (
        Application.builder()
        .token(settings.telegram_token)
        .base_url(base)
        .base_file_url(base[: -len("bot")] + "file/bot")
        .updater(None)
        .job_queue(None)  # timed jobs run on bot.app.scheduler
        .rate_limiter(
            AIORateLimiter(
                overall_max_rate=settings.telegram_rate,
                overall_time_period=1,
                max_retries=3,
            )
        )
        .request(request)
        .get_updates_request(AiohttpRequest(1, read_timeout=read_timeout, connect_timeout=5))
        .build()
    )
    holder = holder_of(engine)
    channel = TelegramChannel(
        application,
        holder,
        storage,
        settings,
        memory=memory,
        contexts=contexts,
        pause=pause,
        poll_timeout=poll_timeout,
        retry_delay=retry_delay,
        features=features,
        establishments=establishments,
        integration=integration,
        on_events=on_events,
        router=router_for(establishments or {}, holder),
        scheduler=scheduler,
    )
    channel.install()
    return channel


@contextlib.asynccontextmanager
async def running(channel: TelegramChannel, *, webhook: bool | None = None) -> AsyncIterator[None]:
    """Start ``channel``; in webhook mode set the webhook, else poll in the background."""
    use_webhook = channel.settings.webhook_url is not None if webhook is None else webhook
    await channel.start()
    stop = asyncio.Event()
    poller: asyncio.Task[None] | None = None
    if use_webhook:
        await channel.set_webhook()
    else:
        poller = asyncio.create_task(channel.poll(stop), name="telegram-polling")
    try:
        yield
    finally:
        stop.set()
        if poller is not None:
            await poller
        await channel.stop()
