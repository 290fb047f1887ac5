"""Telegram delivery: every outgoing Bot API call, recorded in the reply outbox while an update
is applied and sent after its commit, per chat in order, each forgotten once Telegram accepted it
(or refused it for good). Bounded retries on 5xx and timeouts (429s: the rate limiter waits);
if Telegram stays down, the rest waits in the outbox and is retried later with a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import ParamSpec, TypeVar

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot.app.reload import EngineHolder
from bot.channels.telegram.queues import CURRENT, ChatQueues, Redeliver
from bot.channels.telegram.render import (
    MESSAGE_LIMIT,
    Outgoing,
    encode_choice,
    esc,
    keyboard_rows,
    label,
    render,
)
from bot.engine.flow import Engine
from bot.engine.replies import Choice, Reply
from bot.engine.session import Session
from bot.json_types import JsonObject, loads_object
from bot.storage.base import OutgoingReply, Storage

log = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")

#: Bounded retries of one outgoing call on 5xx answers and timeouts (429 is handled by the
#: rate limiter, which waits as long as Telegram asks).
SEND_ATTEMPTS = 4
RETRY_BASE_DELAY = 0.25
#: Replies that could not be delivered (Telegram down) are retried per chat with this backoff.
REDELIVER_FIRST_DELAY = 0.5
REDELIVER_MAX_DELAY = 30.0
#: Serialised inline keyboards kept (one per question and language, in practice).
KEYBOARD_CACHE = 512
#: Chats whose latest keyboard message is remembered (to remove it once answered by text).
LIVE_KEYBOARDS = 10_000
#: Messages with buttons remembered per chat (the latest ones).
LIVE_PER_CHAT = 4
#: ``reply_markup`` that removes a message's buttons.
NO_KEYBOARD = '{"inline_keyboard": []}'
#: The file name of the ``/mesdonnees`` export.
EXPORT_NAME = "passerelle-mes-donnees.json"
#: The typed Bot API method of each recorded call.
METHODS = {
    "sendMessage": "send_message",
    "sendPhoto": "send_photo",
    "sendDocument": "send_document",
    "editMessageText": "edit_message_text",
    "editMessageReplyMarkup": "edit_message_reply_markup",
}


def _seconds(value: int | float | dt.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


class Delivery:
    """Outgoing calls of the channel; ``bot()`` is PTB's bot, ``queues`` the chats' queues."""

    def __init__(
        self,
        bot: Callable[[], Bot],
        holder: EngineHolder,
        storage: Storage,
        queues: ChatQueues,
        *,
        pause: float = 0.3,
        retry_delay: float = RETRY_BASE_DELAY,
    ) -> None:
        self._bot = bot
        self.holder = holder
        self.storage = storage
        self.queues = queues
        self.pause = pause
        self.retry_delay = retry_delay
        #: Per chat, replies recorded but not yet accepted by Telegram, oldest first.
        self._undelivered: dict[int, deque[OutgoingReply]] = {}
        self._backoff: dict[int, float] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._keyboards: OrderedDict[tuple[str, tuple[Choice, ...], int], str] = OrderedDict()
        #: Per chat, the latest message with buttons, and where the conversation stood then.
        self._live_keyboards: OrderedDict[int, list[int]] = OrderedDict()
        self._keyboard_nodes: OrderedDict[int, str] = OrderedDict()

    @property
    def bot(self) -> Bot:
        return self._bot()

    @property
    def engine(self) -> Engine:
        return self.holder.engine

    def pending(self, replies: Sequence[OutgoingReply]) -> list[int]:
        """Replies found in the outbox at start-up: queued per chat; returns their chats."""
        for reply in replies:
            self._undelivered.setdefault(reply.chat_id, deque()).append(reply)
        return list(self._undelivered)

    def retrying(self, chat_id: int) -> bool:
        """Whether replies of the chat wait for a retry (Telegram was unavailable)."""
        return chat_id in self._backoff

    def stop(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()

    async def call(self, method: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call the Bot API with bounded retries on 5xx answers, timeouts and 429s."""
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                return await method(*args, **kwargs)
            except RetryAfter as exc:
                if attempt == SEND_ATTEMPTS:
                    raise
                delay = _seconds(exc.retry_after) + 0.1
            except BadRequest:
                raise
            except NetworkError as exc:  # 5xx, timeouts, connection errors
                if attempt == SEND_ATTEMPTS:
                    raise
                log.warning("Bot API call failed (%s), retry %d", type(exc).__name__, attempt)
                delay = self.retry_delay * 2 ** (attempt - 1)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _send(self, chat_id: int, messages: Sequence[Outgoing], node: str) -> None:
        if len(messages) > 1:
            with contextlib.suppress(TelegramError):
                await self.call(self.bot.send_chat_action, chat_id, ChatAction.TYPING)
        for index, message in enumerate(messages):
            if index and self.pause:
                await asyncio.sleep(self.pause)
            markup = self._keyboard(message.choices, node) if message.choices else None
            try:
                if message.image is not None:
                    await self.call(
                        self.bot.send_photo,
                        chat_id,
                        message.image.png,
                        caption=message.text,
                        reply_markup=markup,
                        parse_mode=ParseMode.HTML,
                    )
                else:
                    await self.call(
                        self.bot.send_message,
                        chat_id,
                        message.text,
                        reply_markup=markup,
                        parse_mode=ParseMode.HTML,
                    )
            except Forbidden:
                log.info("the person blocked the bot; reply dropped")
                return
            except TelegramError as exc:
                log.error("reply not delivered: %s", type(exc).__name__)
                return

    def _keyboard(
        self, choices: Sequence[Choice], node: str, page: int = 0
    ) -> InlineKeyboardMarkup:
        """Compact rows (see :func:`keyboard_rows`), as Telegram buttons."""
        probe = self.engine.new_session()
        pager = (self.engine.msg("telegram_prev", probe), self.engine.msg("telegram_next", probe))
        rows = keyboard_rows(choices, page, pager)
        return InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(
                        label(choice),
                        callback_data=choice.id
                        if choice.id.startswith("p:")
                        else encode_choice(node, choice.id),
                    )
                    for choice in row
                ]
                for row in rows
            ]
        )

    def keyboard_json(self, choices: tuple[Choice, ...], node: str, page: int = 0) -> str:
        """The ``reply_markup`` parameter, serialised once per question (the same keyboard is
        sent to every person at that question)."""
        key = (node, choices, page)
        cached = self._keyboards.get(key)
        if cached is None:
            cached = json.dumps(self._keyboard(choices, node, page).to_dict(), ensure_ascii=False)
            self._keyboards[key] = cached
            if len(self._keyboards) > KEYBOARD_CACHE:
                self._keyboards.popitem(last=False)
        return cached

    def _headings(self, session: Session) -> tuple[str, ...]:
        """Section labels a line of a role or a contact may start with (shown in bold)."""
        keys = ("reasons", "to_start", "not_yet", "first_steps", "caution", "contact_why")
        messages = self.engine.kb.messages
        return tuple(self.engine.msg(key, session) for key in keys if key in messages)

    def _record(self, chat_id: int, method: str, params: JsonObject, file: bytes | None) -> None:
        turn = CURRENT.get()
        assert turn is not None
        turn.replies.append(
            OutgoingReply(
                update_id=turn.update_id,
                seq=len(turn.replies),
                chat_id=chat_id,
                method=method,
                params=json.dumps(params, ensure_ascii=False),
                photo=file,
            )
        )

    async def edit(
        self, message: Message, text: str | None = None, markup: str = NO_KEYBOARD
    ) -> None:
        """Change a message already shown (the reply outbox keeps it in order with the rest):
        its text (HTML) and buttons, or its buttons only."""
        params: JsonObject = {
            "chat_id": message.chat.id,
            "message_id": message.message_id,
            "reply_markup": markup,
        }
        if CURRENT.get() is None:
            return
        if text is None:
            self._record(message.chat.id, "editMessageReplyMarkup", params, None)
            return
        params |= {"text": text, "parse_mode": ParseMode.HTML}
        self._record(message.chat.id, "editMessageText", params, None)

    async def answered(self, message: Message | None, label: str | None) -> None:
        """The tapped message shows the answer chosen, and its buttons go (PTB's
        ``inlinekeyboard.py``); a stale one just loses its buttons."""
        if message is None:
            return
        live = self._live_keyboards.get(message.chat.id, [])
        if message.message_id in live:
            live.remove(message.message_id)  # edited here: not again in _say
        if label is None or not message.text:
            await self.edit(message)
            return
        line = self.engine.msg("telegram_answered", self.engine.new_session(), label=label)
        body = f"{message.text_html}\n\n<b>{esc(line)}</b>"
        if len(body) > MESSAGE_LIMIT:
            await self.edit(message)
            return
        await self.edit(message, body)

    async def document(self, chat_id: int, body: bytes, caption: str) -> None:
        escaped = esc(caption)
        params: JsonObject = {"chat_id": chat_id, "caption": escaped, "parse_mode": ParseMode.HTML}
        if CURRENT.get() is None:
            await self.call(
                self.bot.send_document,
                chat_id,
                body,
                filename=EXPORT_NAME,
                caption=escaped,
                parse_mode=ParseMode.HTML,
            )
            return
        self._record(chat_id, "sendDocument", params, body)

    async def say(self, chat_id: int, replies: Sequence[Reply], node: str = "") -> None:
        headings = self._headings(self.engine.new_session())
        messages = render(replies, headings=headings)
        if CURRENT.get() is None:  # outside an update (nothing to commit with): send right away
            await self._send(chat_id, messages, node)
            return
        params: JsonObject
        if any(m.choices for m in messages):
            if self._keyboard_nodes.get(chat_id) != node:
                # The conversation moved on (an answer typed, say): the buttons of the question
                # it left go. At the same question they stay: still good, and no extra call.
                for live in self._live_keyboards.pop(chat_id, []):
                    params = {"chat_id": chat_id, "message_id": live, "reply_markup": NO_KEYBOARD}
                    self._record(chat_id, "editMessageReplyMarkup", params, None)
            self._keyboard_nodes[chat_id] = node
            self._keyboard_nodes.move_to_end(chat_id)
            if len(self._keyboard_nodes) > LIVE_KEYBOARDS:
                self._keyboard_nodes.popitem(last=False)
        for message in messages:
            params = {"chat_id": chat_id, "parse_mode": ParseMode.HTML}
            if message.image is not None:
                if message.text:
                    params["caption"] = message.text
            else:
                params["text"] = message.text
            if message.choices:
                params["reply_markup"] = self.keyboard_json(message.choices, node)
            method = "sendPhoto" if message.image is not None else "sendMessage"
            self._record(chat_id, method, params, message.image.png if message.image else None)

    async def deliver(
        self, chat_id: int, replies: Sequence[OutgoingReply], *, fresh: bool = False
    ) -> None:
        """Send a chat's recorded replies in order, each deleted from the outbox once Telegram
        accepted it (or refused it for good). If Telegram stays unavailable past the bounded
        retries, the rest waits in the outbox and is retried later, still in order.

        ``fresh``: ``replies`` are all the chat has left to send, just read from the shared
        store in the chat's turn; what this instance remembered is dropped. A shared store
        remembers nothing between turns either: the retry reads the store again."""
        queue = self._undelivered.get(chat_id)
        if queue is None or fresh:
            queue = self._undelivered[chat_id] = deque()
        queue.extend(replies)
        if len(queue) > 1:
            with contextlib.suppress(TelegramError):
                await self.call(self.bot.send_chat_action, chat_id, ChatAction.TYPING)
        first = True
        while queue:
            reply = queue[0]
            if not first and self.pause:
                await asyncio.sleep(self.pause)
            first = False
            try:
                sent = await self.call(self._post_reply, reply)
                self._remember_keyboard(chat_id, reply, sent)
            except Forbidden:
                log.info("the person blocked the bot; reply dropped")
            except BadRequest as exc:
                # An edit of a message already as asked (a double tap) is refused: expected.
                level = logging.DEBUG if reply.method.startswith("edit") else logging.ERROR
                log.log(level, "reply refused by Telegram: %s", type(exc).__name__)
            except TelegramError as exc:  # still failing after the bounded retries
                log.warning("reply not delivered yet (%s); will retry", type(exc).__name__)
                if self.storage.shared:  # another instance may send them meanwhile
                    del self._undelivered[chat_id]
                self._retry_later(chat_id)
                return
            queue.popleft()
            await self.storage.reply_sent(reply.update_id, reply.seq)
        del self._undelivered[chat_id]
        self._backoff.pop(chat_id, None)

    def _retry_later(self, chat_id: int) -> None:
        delay = self._backoff.get(chat_id, REDELIVER_FIRST_DELAY / 2) * 2
        self._backoff[chat_id] = min(delay, REDELIVER_MAX_DELAY)
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            self.queues.submit(("chat", chat_id), Redeliver(chat_id))

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def _remember_keyboard(self, chat_id: int, reply: OutgoingReply, sent: object) -> None:
        """The chat's latest messages with buttons (in memory: after a restart, none is known)."""
        if not reply.method.startswith("send") or not isinstance(sent, Message):
            return
        if '"reply_markup"' in reply.params:
            live = self._live_keyboards.setdefault(chat_id, [])
            live.append(sent.message_id)
            del live[:-LIVE_PER_CHAT]
            self._live_keyboards.move_to_end(chat_id)
            if len(self._live_keyboards) > LIVE_KEYBOARDS:
                self._live_keyboards.popitem(last=False)

    async def _post_reply(self, reply: OutgoingReply) -> object:
        """One recorded reply through PTB's typed method (rate limiter included). The keyboard
        travels as the JSON recorded (serialised once per question, see
        :meth:`keyboard_json`), which PTB sends as it is."""
        params: dict[str, object] = {**loads_object(reply.params)}
        name = METHODS.get(reply.method)
        if name is None:  # a row of another version: refused for good, as Telegram would
            raise BadRequest(f"unknown method {reply.method!r}")
        if reply.photo is not None and reply.method == "sendDocument":
            params |= {"document": reply.photo, "filename": EXPORT_NAME}
        elif reply.photo is not None:
            params |= {"photo": reply.photo, "filename": "image.png"}
        sent: object = await getattr(self.bot, name)(**params)
        return sent
