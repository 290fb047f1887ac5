"""A local fake of the Telegram Bot API, for tests and benchmarks (no internet).

It serves ``/bot<token>/<method>`` on 127.0.0.1 with a small Starlette app under uvicorn, in the
caller's event loop: the real python-telegram-bot ``Application`` talks to it over HTTP through
``base_url``. It records every call and every delivered message, builds updates as Telegram
would, serves them to ``getUpdates`` (long polling with offsets), and can inject faults
(429 with ``retry_after``, 500, slow answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default as email_policy
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.harness.wait import DEADLINE

TOKEN = "123456789:TEST-token_for-the-fake-bot-api-000"
BOT_USER = {
    "id": 123456789,
    "is_bot": True,
    "first_name": "Passerelle",
    "username": "passerelle_test_bot",
    "can_join_groups": False,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
MESSAGE_METHODS = ("sendMessage", "sendPhoto", "sendDocument")
#: Tags Telegram's HTML parse mode accepts (https://core.telegram.org/bots/api#html-style).
HTML_TAGS = ("b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
             "tg-spoiler", "span", "blockquote")  # fmt: skip
_TAG = re.compile(r"</?([a-z-]+)(?:\s[^<>]*)?>")
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")
BOLD = ("b", "strong")


class EntityError(ValueError):
    """What Telegram answers with 400 « can't parse entities »."""


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text = ""
        self.stack: list[tuple[str, int]] = []
        self.entities: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack.append((tag, _utf16(self.text)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1][0] != tag:
            raise EntityError(f"unexpected end tag {tag}")
        _, start = self.stack.pop()
        if tag in BOLD and _utf16(self.text) > start:
            length = _utf16(self.text) - start
            self.entities.append({"type": "bold", "offset": start, "length": length})

    def handle_data(self, data: str) -> None:
        self.text += data


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse_html(body: str) -> tuple[str, list[dict[str, Any]]]:
    """What a person sees for an HTML message, and its bold entities, as Telegram parses it:
    an unknown tag, an unbalanced one, or a bare ``<`` or ``&`` is refused."""
    for match in re.finditer(r"<", body):
        tag = _TAG.match(body, match.start())
        if tag is None or tag.group(1) not in HTML_TAGS:
            raise EntityError(f"unsupported start tag at {match.start()}")
    for match in re.finditer(r"&", body):
        if not _ENTITY.match(body, match.start()):
            raise EntityError(f"bare & at {match.start()}")
    if ">" in _TAG.sub("", body):
        raise EntityError("bare >")
    reader = _Reader()
    reader.feed(body)
    reader.close()
    if reader.stack:
        raise EntityError("unclosed tag")
    return reader.text, reader.entities


@dataclass
class Fault:
    status: int
    retry_after: int | None = None
    delay: float = 0.0


@dataclass
class Call:
    """One request the bot made: method and parameters (JSON values decoded)."""

    method: str
    params: dict[str, Any]
    status: int = 200


@dataclass
class Sent:
    """A message the fake Telegram accepted (delivered to the chat)."""

    message_id: int
    chat_id: int
    method: str
    text: str
    buttons: list[tuple[str, str]] = field(default_factory=list)  # (label, callback_data)
    params: dict[str, Any] = field(default_factory=dict)
    #: The keyboard as sent (rows of buttons), for the callback queries Telegram builds.
    markup: dict[str, Any] | None = None
    #: Spans shown in bold (``parse_mode`` HTML), as the person sees them.
    bold: list[str] = field(default_factory=list)
    entities: list[dict[str, Any]] = field(default_factory=list)
    #: Earlier versions of the text, oldest first, when the bot edited the message.
    edits: list[str] = field(default_factory=list)
    document: bytes | None = None
    filename: str = ""

    @property
    def rows(self) -> list[list[str]]:
        """Button labels row by row, as laid out on the screen."""
        rows = (self.markup or {}).get("inline_keyboard", [])
        return [[button["text"] for button in row] for row in rows]

    def data_of(self, label: str) -> str:
        for shown, data in self.buttons:
            if shown == label:
                return data
        raise KeyError(f"no button {label!r} in {[b[0] for b in self.buttons]}")


def _decode(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


class FakeBotAPI:
    """The fake server. Use ``async with FakeBotAPI() as api:``; ``api.base_url`` for PTB."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.sent: list[Sent] = []
        self._by_chat: dict[int, list[Sent]] = {}
        self.updates: list[dict[str, Any]] = []
        self.offsets: list[int | None] = []
        self.webhook: dict[str, Any] | None = None
        self.commands: list[dict[str, Any]] = []
        self._filenames: list[str] = []
        self.faults: dict[str, deque[Fault]] = {}
        self.port = 0
        self._closing = False
        self._ids = itertools.count(1)
        self._update_ids = itertools.count(10_000)
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        #: Calls being answered right now, long polls (``getUpdates``) aside.
        self.busy = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    async def __aenter__(self) -> FakeBotAPI:
        app = Starlette(routes=[Route("/bot{token}/{method}", self._endpoint, methods=["POST"])])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        # Keep-alive longer than any idle gap: a client reusing a kept-alive connection never
        # races uvicorn closing it (httpx.ReadError in PTB with the 5 s default).
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            backlog=2048,
            timeout_keep_alive=int(DEADLINE),
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:  # noqa: ASYNC110 (uvicorn offers no event)
            await asyncio.sleep(0.005)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None and self._task is not None
        self._closing = True  # release pending long polls
        self._notify()
        self._server.should_exit = True
        await self._task

    # -- faults ----------------------------------------------------------------------------
    def fail(
        self,
        method: str,
        status: int,
        *,
        retry_after: int | None = None,
        delay: float = 0.0,
        times: int = 1,
    ) -> None:
        """The next ``times`` calls of ``method`` answer ``status`` (after ``delay`` s)."""
        queue = self.faults.setdefault(method, deque())
        queue.extend(Fault(status, retry_after, delay) for _ in range(times))

    # -- the API ---------------------------------------------------------------------------
    async def _params(self, request: Request) -> dict[str, Any]:
        kind = request.headers.get("content-type", "")
        body = await request.body()
        raw: list[tuple[str, Any]] = []
        if kind.startswith("application/json"):
            data: dict[str, Any] = json.loads(body or b"{}")
            return data
        if kind.startswith("multipart/form-data"):
            message = BytesParser(policy=email_policy).parsebytes(
                f"Content-Type: {kind}\r\n\r\n".encode() + body
            )
            for part in message.iter_parts():
                name = str(part.get_param("name", header="content-disposition"))
                payload = part.get_payload(decode=True)
                is_file = part.get_filename() is not None
                if is_file:
                    self._filenames.append(str(part.get_filename()))
                content = bytes(payload or b"")
                # Files (photos, documents) keep their bytes, so tests can check them.
                raw.append((name, content if is_file else content.decode()))
        else:
            raw = parse_qsl(body.decode(), keep_blank_values=True)
        return {k: v if k in ("text", "caption") else _decode(v) for k, v in raw}

    async def _endpoint(self, request: Request) -> JSONResponse:
        polling = request.path_params["method"] == "getUpdates"
        self.busy += not polling
        try:
            return await self._answer(request)
        finally:
            self.busy -= not polling
            self._notify()

    async def _answer(self, request: Request) -> JSONResponse:
        method = request.path_params["method"]
        if request.path_params["token"] != self.token:
            return JSONResponse(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, 401
            )
        params = await self._params(request)
        queue = self.faults.get(method)
        fault = queue.popleft() if queue else None
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status != 200:
                await self._record(Call(method, params, fault.status))
                body: dict[str, Any] = {
                    "ok": False,
                    "error_code": fault.status,
                    "description": "Too Many Requests: retry later"
                    if fault.status == 429
                    else "Internal Server Error",
                }
                if fault.retry_after is not None:
                    body["parameters"] = {"retry_after": fault.retry_after}
                return JSONResponse(body, fault.status)
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            await self._record(Call(method, params, 404))
            return JSONResponse(
                {"ok": False, "error_code": 404, "description": "Not Found: method not found"},
                404,
            )
        try:
            result = await handler(params)
        except EntityError as exc:
            return await self._bad_request(method, params, f"can't parse entities: {exc}")
        except LookupError as exc:
            return await self._bad_request(method, params, str(exc))
        await self._record(Call(method, params))
        return JSONResponse({"ok": True, "result": result})

    async def _bad_request(self, method: str, params: dict[str, Any], why: str) -> JSONResponse:
        await self._record(Call(method, params, 400))
        body = {"ok": False, "error_code": 400, "description": f"Bad Request: {why}"}
        return JSONResponse(body, 400)

    async def _record(self, call: Call) -> None:
        self.calls.append(call)
        self._notify()

    def _notify(self) -> None:
        """Wake the waiters whose condition now holds (cheap: no task switch per waiter)."""
        still = []
        for predicate, future in self._waiters:
            if future.done():
                continue
            if predicate():
                future.set_result(None)
            else:
                still.append((predicate, future))
        self._waiters = still

    def _message(self, chat_id: int, **extra: Any) -> dict[str, Any]:
        return {
            "message_id": next(self._ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": BOT_USER,
            **extra,
        }

    @staticmethod
    def _shown(params: dict[str, Any], body: str) -> tuple[str, list[dict[str, Any]]]:
        if str(params.get("parse_mode", "")).upper() == "HTML":
            return parse_html(body)
        return body, []

    @staticmethod
    def _buttons(markup: Any) -> list[tuple[str, str]]:
        buttons: list[tuple[str, str]] = []
        if isinstance(markup, dict):
            for row in markup.get("inline_keyboard", []):
                buttons += [(b["text"], b.get("callback_data", "")) for b in row]
        return buttons

    async def _deliver(self, method: str, params: dict[str, Any], body: str) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        shown, entities = self._shown(params, body)
        message = self._message(chat_id, text=shown)
        markup = params.get("reply_markup")
        if isinstance(markup, dict):
            message["reply_markup"] = markup
        sent = Sent(
            message["message_id"],
            chat_id,
            method,
            shown,
            self._buttons(markup),
            params,
            markup if isinstance(markup, dict) else None,
            _bold(shown, entities),
            entities,
        )
        self.sent.append(sent)
        self._by_chat.setdefault(chat_id, []).append(sent)
        self._notify()
        return message

    def _find(self, params: dict[str, Any]) -> Sent:
        chat_id, message_id = int(params.get("chat_id", 0)), int(params.get("message_id", 0))
        for sent in self._by_chat.get(chat_id, ()):
            if sent.message_id == message_id:
                return sent
        raise LookupError("message to edit not found")

    async def _m_getMe(self, params: dict[str, Any]) -> Any:
        return BOT_USER

    async def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        return await self._deliver("sendMessage", params, str(params.get("text", "")))

    async def _m_sendPhoto(self, params: dict[str, Any]) -> Any:
        message = await self._deliver("sendPhoto", params, str(params.get("caption", "")))
        message["photo"] = [{"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}]
        return message

    async def _m_sendChatAction(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        return True

    async def _m_setMyCommands(self, params: dict[str, Any]) -> Any:
        self.commands = list(params.get("commands", []))
        return True

    async def _m_setWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = params
        return True

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = None
        return True

    async def _m_sendDocument(self, params: dict[str, Any]) -> Any:
        message = await self._deliver("sendDocument", params, str(params.get("caption", "")))
        sent = self.sent[-1]
        document = params.get("document")
        sent.document = document if isinstance(document, bytes) else None
        sent.filename = self._filenames.pop() if self._filenames else ""
        message["document"] = {"file_id": "d", "file_unique_id": "d", "file_name": sent.filename}
        return message

    def _edited(self, sent: Sent, text: str, entities: list[dict[str, Any]], markup: Any) -> Any:
        buttons = self._buttons(markup)
        if (text, entities, buttons) == (sent.text, sent.entities, sent.buttons):
            raise LookupError("message is not modified")
        if text != sent.text:
            sent.edits.append(sent.text)
        sent.text, sent.entities, sent.bold = text, entities, _bold(text, entities)
        sent.buttons, sent.markup = buttons, markup if isinstance(markup, dict) else None
        self._notify()
        return self._message(sent.chat_id, message_id=sent.message_id, text=text)

    async def _m_editMessageReplyMarkup(self, params: dict[str, Any]) -> Any:
        sent = self._find(params)
        return self._edited(sent, sent.text, sent.entities, params.get("reply_markup"))

    async def _m_editMessageText(self, params: dict[str, Any]) -> Any:
        sent = self._find(params)
        shown, entities = self._shown(params, str(params.get("text", "")))
        return self._edited(sent, shown, entities, params.get("reply_markup"))

    async def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        offset = params.get("offset")
        offset = int(offset) if offset is not None else None
        self.offsets.append(offset)
        if offset is not None:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        timeout = float(params.get("timeout", 0) or 0)
        with contextlib.suppress(TimeoutError):
            await self.wait_for(lambda: bool(self.updates) or self._closing, timeout)
        return list(self.updates[:100])

    # -- simulating people -----------------------------------------------------------------
    def user(self, user_id: int, first_name: str = "Camille") -> FakeUser:
        return FakeUser(self, user_id, first_name)

    def next_update_id(self) -> int:
        return next(self._update_ids)

    async def push(self, update: dict[str, Any]) -> None:
        """Make an update available to ``getUpdates``."""
        self.updates.append(update)
        self._notify()

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = DEADLINE,  # noqa: ASYNC109 (long polls wait for a given time)
        what: str = "",
    ) -> None:
        """Wait until ``predicate()`` holds (checked after each call); ``TimeoutError`` saying
        ``what`` after ``timeout`` (generous: a passing test never waits that long)."""
        if predicate():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        try:
            async with asyncio.timeout(timeout):  # not wait_for: see WebhookWorker.run
                await future
        except TimeoutError:
            raise TimeoutError(
                f"fake Bot API: still waiting after {timeout:.0f} s: {what}"
            ) from None
        finally:
            future.cancel()

    async def idle(self) -> None:
        """Wait until no call is being answered (long polls aside)."""
        await self.wait_for(lambda: self.busy == 0)

    def to_chat(self, chat_id: int) -> list[Sent]:
        return list(self._by_chat.get(chat_id, ()))

    def count_to(self, chat_id: int) -> int:
        return len(self._by_chat.get(chat_id, ()))

    def called(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]


@dataclass
class FakeUser:
    """Builds the updates one person would cause (private chat: chat id = user id)."""

    api: FakeBotAPI
    id: int
    first_name: str = "Camille"

    def _from(self) -> dict[str, Any]:
        return {"id": self.id, "is_bot": False, "first_name": self.first_name}

    def _message(self, **content: Any) -> dict[str, Any]:
        return {
            "message_id": next(self.api._ids),
            "date": int(time.time()),
            "chat": {"id": self.id, "type": "private", "first_name": self.first_name},
            "from": self._from(),
            **content,
        }

    def text(self, body: str) -> dict[str, Any]:
        content: dict[str, Any] = {"text": body}
        if body.startswith("/"):
            length = len(body.split()[0])
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return {"update_id": self.api.next_update_id(), "message": self._message(**content)}

    def message(self, **content: Any) -> dict[str, Any]:
        return {"update_id": self.api.next_update_id(), "message": self._message(**content)}

    def edited(self, body: str) -> dict[str, Any]:
        message = self._message(text=body)
        message["edit_date"] = int(time.time())
        return {"update_id": self.api.next_update_id(), "edited_message": message}

    def press(self, sent: Sent, data: str) -> dict[str, Any]:
        """Tapping the button with callback ``data`` under the bot's message ``sent`` (the
        message as it is now, with its text, bold parts and keyboard, as Telegram sends it)."""
        message: dict[str, Any] = {
            "message_id": sent.message_id,
            "date": int(time.time()),
            "chat": {"id": self.id, "type": "private"},
            "from": BOT_USER,
            "text": sent.text,
        }
        if sent.entities:
            message["entities"] = sent.entities
        if sent.markup is not None:
            message["reply_markup"] = sent.markup
        return {
            "update_id": self.api.next_update_id(),
            "callback_query": {
                "id": str(next(self.api._ids)),
                "from": self._from(),
                "chat_instance": f"ci{self.id}",
                "data": data,
                "message": message,
            },
        }


def _bold(text: str, entities: list[dict[str, Any]]) -> list[str]:
    units = text.encode("utf-16-le")
    return [
        units[2 * e["offset"] : 2 * (e["offset"] + e["length"])].decode("utf-16-le")
        for e in entities
        if e["type"] == "bold"
    ]
