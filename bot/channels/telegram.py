"""Telegram channel: the engine behind python-telegram-bot 22, with durable, ordered processing.

Every update goes through the store's *inbox* first (:meth:`TelegramChannel.receive`): recorded
and committed, then applied by PTB handlers, which save the new state and mark the update done
in one transaction. The webhook answers 200 only after the recording; polling confirms an offset
only after it. Updates of one chat are applied in order, different chats concurrently.

Nothing about a person is stored before they consent; without consent the session lives in
memory only. Users are keyed by a pseudonym (keyed hash of the Telegram id); logs carry no
message text, no Telegram id and no token.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import html
import json
import logging
import os
import re
import time
from collections import OrderedDict, deque
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Hashable,
    Mapping,
    Sequence,
)
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    Update,
)
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.app.reload import EngineHolder, holder_of
from bot.config import Settings, quiet_libraries
from bot.engine.barometer import choice_ids as barometer_choice_ids
from bot.engine.flow import CANCEL, CMD, CONFIRM, NOT_THAT, RESUME, SKIP, TERM, Engine, Turn
from bot.engine.followup import NO as FOLLOWUP_NO
from bot.engine.followup import YES as FOLLOWUP_YES
from bot.engine.followup import asking
from bot.engine.normalize import normalize
from bot.engine.recommendation import territory_chain
from bot.engine.replies import CONTACTS, GUIDE, ROLE, STALE, Choice, Event, Image, Reply
from bot.engine.session import EXITED, RECOMMENDED, Input, Session
from bot.knowledge.model import COMMANDS, text
from bot.storage.base import FollowUpTaken, OutgoingReply, Storage, UserChange, pseudonym
from bot.storage.memory import MemoryStorage

if TYPE_CHECKING:
    from bot.app.features import Features
    from bot.app.followups import FollowUp
    from bot.knowledge.establishments import Establishment
    from bot.storage.integration import IntegrationStore

# Opt in to PTB's coming behaviour (durations as ``timedelta``): without it, PTB 22 warns on
# every RetryAfter, and ``retry_after`` would change type under our feet in PTB 23.
os.environ.setdefault("PTB_TIMEDELTA", "true")

log = logging.getLogger(__name__)

T = TypeVar("T")
CHANNEL = "telegram"
#: Telegram refuses messages over 4096 characters; keep a margin.
MESSAGE_LIMIT = 4000
CAPTION_LIMIT = 1000
CALLBACK_LIMIT = 64
DEEP_LINK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Commands of the channel itself, after the engine's and its modes' in the menu.
OWN_COMMANDS = ("mesdonnees", "oubli")
#: The file name of the ``/mesdonnees`` export.
EXPORT_NAME = "passerelle-mes-donnees.json"
#: Our own buttons (not the engine's): consent and erasure confirmations.
CONSENT_YES, CONSENT_NO = "p:c1", "p:c0"
FORGET_YES, FORGET_NO = "p:f1", "p:f0"
#: Bounded retries of one outgoing call on 5xx answers and timeouts (429 is handled by the
#: rate limiter, which waits as long as Telegram asks).
SEND_ATTEMPTS = 4
#: Seconds to wait for Telegram's answer to one call before retrying it.
READ_TIMEOUT = 10.0
RETRY_BASE_DELAY = 0.25
#: How long ids of applied updates are kept to recognise a re-delivery (Telegram retries
#: a webhook for about a day).
PROCESSED_IDS_SECONDS = 2 * 86400
#: Sessions of people who did not consent are dropped from memory after this much idleness.
MEMORY_IDLE_DAYS = 1.0
MAX_BODY = 1 << 20
#: Replies that could not be delivered (Telegram down) are retried per chat with this backoff.
REDELIVER_FIRST_DELAY = 0.5
REDELIVER_MAX_DELAY = 30.0
#: Serialised inline keyboards kept (one per question and language, in practice).
KEYBOARD_CACHE = 512
#: Buttons that go on last rows of their own (back, resume, « not that », « skip »).
NAVIGATION = frozenset({CMD + "retour", RESUME, NOT_THAT, SKIP})
#: A scale (0–4) fits on one row: labels this short, this many buttons at most.
SCALE_WIDTH, SCALE_MAX = 3, 6
#: Labels up to this many characters go two per row on a phone.
TWO_COLUMNS_WIDTH = 20
#: Glossary terms shown per page (the rest behind « Suivant »).
GLOSSARY_PAGE = 8
#: Our own glossary paging buttons: ``p:g:<page>``.
PAGE_PREFIX = "p:g:"
#: Chats whose latest keyboard message is remembered (to remove it once answered by text).
LIVE_KEYBOARDS = 10_000
#: Messages with buttons remembered per chat (the latest ones).
LIVE_PER_CHAT = 4
#: ``reply_markup`` that removes a message's buttons.
NO_KEYBOARD = '{"inline_keyboard": []}'
#: Intake checks (:func:`update_problem`): Telegram's ids fit in 52 bits, callback data in 64
#: bytes; updates are a few levels deep. Texts (4096 characters on Telegram) are allowed up to
#: 32 Kio, so that a too long one still gets the engine's kind « too long » answer.
MAX_ID = 2**53
MAX_INT = 2**63
MAX_DEPTH = 24
TEXT_LIMITS = {"text": 32_768, "caption": 32_768, "data": 64, "query": 4096}
#: Objects whose ``id`` identifies a person or a chat, and must be an integer.
ID_OBJECTS = ("chat", "from", "sender_chat", "user", "forward_from", "forward_from_chat")
#: An update whose application failed this many times is dead-lettered (payload dropped).
MAX_APPLY_ATTEMPTS = 3


# -- callback data --------------------------------------------------------------------------
def node_tag(node: str) -> str:
    """Short fingerprint of the question a button was shown with (for stale detection)."""
    return hashlib.blake2s(node.encode(), digest_size=4).hexdigest()


def _choice_hash(choice_id: str) -> str:
    return hashlib.blake2s(choice_id.encode(), digest_size=8).hexdigest()


def encode_choice(node: str, choice_id: str) -> str:
    """``tag|choice`` when it fits Telegram's 64 bytes, else ``tag#hash-of-choice``."""
    data = f"{node_tag(node)}|{choice_id}"
    if len(data.encode()) <= CALLBACK_LIMIT:
        return data
    return f"{node_tag(node)}#{_choice_hash(choice_id)}"


@dataclass(frozen=True)
class Outgoing:
    """One Telegram message: HTML text (or a photo with its caption) and its buttons."""

    text: str
    choices: tuple[Choice, ...] = ()
    image: Image | None = None


def esc(value: str) -> str:
    """Text for Telegram's HTML parse mode: whatever a person or a content file holds is shown
    as typed, never read as markup."""
    return html.escape(value, quote=False)


def split_text(body: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Cut ``body`` into pieces of at most ``limit`` characters, at paragraph, line or word
    boundaries when there is one."""
    pieces: list[str] = []
    rest = body
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind("\n\n"), window.rfind("\n"), window.rfind(" "))
        if cut < limit // 2:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not pieces:
        pieces.append(rest)
    return pieces


def _is_heading(line: str) -> bool:
    stripped = line.strip()
    return stripped.endswith(":") and not stripped.startswith(("•", "⚠", "-"))


def format_text(body: str, kind: str, *, first: bool = True, headings: Collection[str] = ()) -> str:
    """One reply's plain text as HTML: escaped everywhere; for roles, contacts and the guide,
    the title, the section headings and the contacts' names in bold."""
    if kind not in (ROLE, CONTACTS, GUIDE):
        return esc(body)
    out: list[str] = []
    previous = ""
    for index, line in enumerate(body.split("\n")):
        indent = line[: len(line) - len(line.lstrip())]
        prefix = next((h for h in headings if h and line.lstrip().startswith(h + " ")), None)
        if line and (
            (first and index == 0)
            or _is_heading(line)
            or (kind == GUIDE and not previous and not line.startswith(("•", "⚠")))
        ):
            out.append(f"<b>{esc(line)}</b>")
        elif kind == CONTACTS and line.startswith("• ") and " — " in line:
            name, rest = line[2:].split(" — ", 1)
            out.append(f"• <b>{esc(name)}</b> — {esc(rest)}")
        elif prefix is not None:
            rest = line.lstrip()[len(prefix) + 1 :]
            out.append(f"{indent}<b>{esc(prefix)}</b> {esc(rest)}")
        else:
            out.append(esc(line))
        previous = line
    return "\n".join(out)


def render(
    replies: Sequence[Reply], limit: int = MESSAGE_LIMIT, headings: Collection[str] = ()
) -> list[Outgoing]:
    """The engine's replies as Telegram messages (HTML). Plain consecutive texts are joined;
    each role, the contacts and the guide get a message of their own with bold headings;
    buttons go on the last piece. A picture is shown with its text alternative once: as its
    caption when it fits, otherwise as the message just before it (the reply announcing the
    picture is then redundant). Stale-button notes are dropped: the question is asked again."""
    messages: list[Outgoing] = []
    buffer: list[str] = []  # plain texts waiting to be joined

    def flush(choices: tuple[Choice, ...] = ()) -> None:
        if not buffer and not choices:
            return
        pieces = split_text("\n\n".join(buffer) or "…", limit)
        messages.extend(Outgoing(esc(piece)) for piece in pieces[:-1])
        messages.append(Outgoing(esc(pieces[-1]), choices))
        buffer.clear()

    for reply in replies:
        if reply.kind == STALE:
            continue
        if reply.image is not None:
            alt = reply.image.alt
            said = bool(buffer) and buffer[-1] == alt
            caption = ""
            if len(alt) <= CAPTION_LIMIT:
                caption = esc(alt)
                if said:
                    buffer.pop()
            elif not said:
                buffer.append(alt)
            flush()
            messages.append(Outgoing(caption, reply.choices, reply.image))
            continue
        if reply.kind in (ROLE, CONTACTS, GUIDE):
            flush()
            pieces = split_text(reply.text, limit - 200)  # room for the markup
            for index, piece in enumerate(pieces):
                body = format_text(piece, reply.kind, first=index == 0, headings=headings)
                last = index == len(pieces) - 1
                messages.append(Outgoing(body, reply.choices if last else ()))
            continue
        if buffer and len("\n\n".join([*buffer, reply.text])) > limit:
            flush()
        buffer.append(reply.text)
        if reply.choices:
            flush(reply.choices)
    flush()
    return messages


def _label(choice: Choice) -> str:
    return choice.short or choice.label


def _columns(widest: int) -> int:
    return 3 if widest <= 12 else 2 if widest <= TWO_COLUMNS_WIDTH else 1


def layout(
    choices: Sequence[Choice], navigation: Collection[str] = NAVIGATION
) -> list[list[Choice]]:
    """Rows of buttons as good bots lay them out: a 0–4 scale on one row, short labels in three
    or two columns, long ones alone; « back », « resume », « skip » and « not that » last."""
    main = [c for c in choices if c.id not in navigation]
    nav = [c for c in choices if c.id in navigation]
    rows: list[list[Choice]] = []
    if main:
        widest = max(len(_label(c)) for c in main)
        if widest <= SCALE_WIDTH and len(main) <= SCALE_MAX:
            rows = [main]
        elif widest <= TWO_COLUMNS_WIDTH:  # even columns, as a question reads best
            columns = _columns(widest)
            rows = [main[i : i + columns] for i in range(0, len(main), columns)]
        else:  # some labels are long: those alone, the short ones side by side, in order
            rows = _packed(main)
    return [*rows, *_packed(nav)]


def _packed(choices: Sequence[Choice]) -> list[list[Choice]]:
    """Rows in order: a long label alone, short ones side by side (two, or three if tiny)."""
    rows: list[list[Choice]] = []
    row: list[Choice] = []
    for choice in choices:
        trial = [*row, choice]
        if row and len(trial) <= _columns(max(len(_label(c)) for c in trial)):
            row = trial
            continue
        if row:
            rows.append(row)
        row = [choice]
    if row:
        rows.append(row)
    return rows


def keyboard_rows(
    choices: Sequence[Choice], page: int = 0, pager: tuple[str, str] = ("◀", "▶")
) -> list[list[Choice]]:
    """The rows of a keyboard (see :func:`layout`); a long glossary is paged: ``page`` of it,
    with « previous » / « next » buttons (labels ``pager``) that edit the keyboard in place."""
    terms = [c for c in choices if c.id.startswith(TERM)]
    if len(terms) <= GLOSSARY_PAGE:
        return layout(choices)
    pages = -(-len(terms) // GLOSSARY_PAGE)
    page = min(max(page, 0), pages - 1)
    turns = []
    if page > 0:
        turns.append(Choice(f"{PAGE_PREFIX}{page - 1}", pager[0]))
    if page < pages - 1:
        turns.append(Choice(f"{PAGE_PREFIX}{page + 1}", pager[1]))
    shown = terms[page * GLOSSARY_PAGE : (page + 1) * GLOSSARY_PAGE]
    others = [c for c in choices if not c.id.startswith(TERM)]
    return [*layout(shown), *([turns] if turns else []), *layout(others)]


# -- what one update produces ----------------------------------------------------------------
@dataclass
class PendingTurn:
    """The state change and the replies of the update being applied. Handlers record them
    (:meth:`TelegramChannel._save`, :meth:`TelegramChannel._say`); :meth:`TelegramChannel._apply`
    commits both with the inbox mark in one transaction, then sends the replies (reply outbox)."""

    update_id: int
    user: str = ""
    change: UserChange | None = None
    replies: list[OutgoingReply] = field(default_factory=list)
    events: bool = False


@dataclass(frozen=True)
class Redeliver:
    """A job of a chat's queue: send that chat's replies still in the outbox."""

    chat_id: int


@dataclass(frozen=True)
class FollowUpDue:
    """A job of a chat's queue: ask a due follow-up (see :meth:`TelegramChannel.send_followup`)."""

    followup: FollowUp


_TURN: ContextVar[PendingTurn | None] = ContextVar("passerelle_turn", default=None)


# -- per-chat ordering ----------------------------------------------------------------------
class ChatQueues:
    """Runs jobs of one key one after the other, and jobs of different keys concurrently."""

    def __init__(self, run: Callable[[Any], Awaitable[None]], max_concurrency: int = 256) -> None:
        self._run = run
        self._queues: dict[Hashable, deque[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_concurrency)
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, key: Hashable, job: Any) -> None:
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(job)
            return
        self._queues[key] = deque([job])
        self._idle.clear()
        task = asyncio.create_task(self._drain(key))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    async def _drain(self, key: Hashable) -> None:
        queue = self._queues[key]
        try:
            while queue:
                job = queue.popleft()
                async with self._slots:
                    try:
                        await self._run(job)
                    except Exception as exc:  # one bad update must not stop its chat
                        log.error("update failed: %s", type(exc).__name__)
        finally:
            del self._queues[key]

    async def join(self) -> None:
        """Wait until every submitted job has run."""
        await self._idle.wait()

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _json_object(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ValueError("not JSON") from None


def _chat_key(update: Update) -> tuple[str, int]:
    if update.effective_chat is not None:
        return ("chat", update.effective_chat.id)
    if update.effective_user is not None:
        return ("user", update.effective_user.id)
    return ("update", update.update_id)


def _chat_name(key: tuple[str, int]) -> str:
    """The key of a chat's turn in a shared store (``chat:42``)."""
    return f"{key[0]}:{key[1]}"


def _chat_of(name: str) -> tuple[str, int]:
    kind, _, number = name.partition(":")
    return (kind, int(number))


@dataclass(frozen=True)
class CatchUp:
    """Apply a chat's updates recorded by an instance that did not apply them (it died)."""

    chat: str


def _seconds(value: int | float | dt.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def update_problem(data: Any) -> str | None:
    """Why ``data`` is not an update we can safely record and apply, or ``None``.

    Checked before anything is recorded: ``update_id`` and every integer in range (SQLite
    stores 64 bits), the ids of chats and people integers of at most 53 bits, texts within
    Telegram's limits, a shallow structure, and PTB able to read it."""
    if not isinstance(data, dict) or type(data.get("update_id")) is not int:
        return "not a Telegram update"
    if not 0 <= data["update_id"] < MAX_INT:
        return "update_id out of range"
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return "too deeply nested"
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ID_OBJECTS:
                    if not isinstance(item, dict):
                        return f"{key} is not an object"
                    ident = item.get("id")
                    if type(ident) is not int or not -MAX_ID < ident < MAX_ID:
                        return f"{key}.id is not a Telegram id"
                limit = TEXT_LIMITS.get(key)
                if limit is not None and isinstance(item, str):
                    size = len(item.encode("utf-8", "replace")) if key == "data" else len(item)
                    if size > limit:
                        return f"{key} too long"
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif type(value) is int and not -MAX_INT <= value < MAX_INT:
            return "integer out of range"
    return None


# -- the channel ----------------------------------------------------------------------------
class TelegramChannel:
    """The Telegram side of Passerelle. Build it with :func:`build`; ``start`` before use."""

    def __init__(
        self,
        application: Application[Any, Any, Any, Any, Any, Any],
        engine: Engine | EngineHolder,
        storage: Storage,
        settings: Settings,
        *,
        memory: MemoryStorage | None = None,
        contexts: Collection[str] | None = None,
        pause: float = 0.3,
        poll_timeout: int = 25,
        retry_delay: float = RETRY_BASE_DELAY,
        features: Features | None = None,
        establishments: Mapping[str, Establishment] | None = None,
        integration: IntegrationStore | None = None,
        on_events: Callable[[], None] | None = None,
    ) -> None:
        if settings.secret is None:
            raise ValueError("the Telegram channel needs settings.secret (PASSERELLE_SECRET)")
        self.application = application
        self.holder = holder_of(engine)
        self.features = features
        self.establishments = dict(establishments or {})
        self.integration = integration
        self.on_events = on_events
        self.storage = storage
        self.memory = memory or MemoryStorage()
        self.settings = settings
        self.contexts = frozenset(
            contexts
            if contexts is not None
            else {c.establishment for c in self.engine.kb.contacts.values() if c.establishment}
        )
        self.pause = pause
        self.poll_timeout = poll_timeout
        self.retry_delay = retry_delay
        self._secret = settings.secret
        self._queues = ChatQueues(self._apply, max_concurrency=64)
        #: Per chat, replies recorded but not yet accepted by Telegram, oldest first.
        self._undelivered: dict[int, deque[OutgoingReply]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._backoff: dict[int, float] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._keyboards: OrderedDict[tuple[str, tuple[Choice, ...], int], str] = OrderedDict()
        #: Per chat, the latest message with buttons, and where the conversation stood then.
        self._live_keyboards: OrderedDict[int, list[int]] = OrderedDict()
        self._keyboard_nodes: OrderedDict[int, str] = OrderedDict()
        self._choice_ids = self._known_choice_ids()
        self.holder.on_swap(lambda _: setattr(self, "_choice_ids", self._known_choice_ids()))
        self._started = False

    @property
    def engine(self) -> Engine:
        """The engine of the current knowledge base (swapped on reload): read it per update."""
        return self.holder.engine

    @property
    def bot(self) -> Any:
        return self.application.bot

    def _known_choice_ids(self) -> dict[str, str]:
        kb = self.engine.kb
        ids = [c.id for q in kb.questions.values() for c in q.choices]
        ids += [CMD + name for name in (*COMMANDS, "relation", *self.engine.modes)]
        ids += [TERM + term for term in kb.glossary]
        ids += [CONFIRM, CANCEL, RESUME]
        ids += [*barometer_choice_ids(kb), CMD + "suivi", FOLLOWUP_YES, FOLLOWUP_NO]
        return {_choice_hash(choice_id): choice_id for choice_id in ids}

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Initialise PTB (getMe), register the command menu, start the retention job, and
        apply whatever the inbox holds from before a crash or restart."""
        await self.application.initialize()
        await self.application.start()
        self._started = True
        await self._call(self.bot.set_my_commands, self._menu())
        queue = self.application.job_queue
        if queue is not None:
            queue.run_repeating(self._retention_job, interval=6 * 3600, first=30)
            if self.features is not None:
                from bot.app.followups import JobQueueScheduler

                self.features.scheduler = JobQueueScheduler(queue, self.send_followup)
                await self.features.followups.rebuild(self.features.scheduler)
        await self.resume_inbox()
        if self.storage.shared:
            self._sweeper = asyncio.create_task(self._sweep(), name="telegram-sweeper")

    async def _sweep(self) -> None:
        """Several instances: what another instance left behind when it died, taken over
        once its claims lapsed (replies recorded and not sent, updates recorded and not
        applied), and follow-ups due (each claimed once, by whichever instance asks first)."""
        interval = max(0.2, getattr(self.storage, "claim_seconds", 30.0) / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep_once(older_than=interval * 3)
            except Exception as exc:
                log.warning("sweep failed: %s", type(exc).__name__)

    async def sweep_once(self, older_than: float) -> None:
        renew = getattr(self.storage, "renew_claims", None)
        if renew is not None:
            await renew()  # what this instance is sending stays its own while it lives
        orphaned = getattr(self.storage, "replies_orphaned", None)
        for reply in await orphaned() if orphaned is not None else ():
            queue = self._undelivered.setdefault(reply.chat_id, deque())
            if all((r.update_id, r.seq) != (reply.update_id, reply.seq) for r in queue):
                queue.append(reply)
                self._queues.submit(("chat", reply.chat_id), Redeliver(reply.chat_id))
        stale = getattr(self.storage, "inbox_stale_chats", None)
        if stale is not None:
            for chat in await stale(older_than):
                self._queues.submit(_chat_of(chat), CatchUp(chat))
        if self.features is not None:
            for followup in await self.features.followups.due():
                await self.send_followup(followup)

    async def stop(self) -> None:
        """Finish what is under way, then stop PTB (the store is closed by its owner).
        Replies Telegram did not accept yet stay in the outbox for the next start."""
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await self._queues.join()
        if self._started:
            self._started = False
            await self.application.stop()
            await self.application.shutdown()

    async def resume_inbox(self) -> int:
        """Send the replies recorded but not sent before a crash, then apply every recorded
        update not yet applied, in update order (per chat: old replies first).

        A row that cannot be read (recorded by an older version, or damaged) never stops the
        start: a reply is dropped, an update dead-lettered (its payload nulled), with a log
        line each; so is an update that already failed :data:`MAX_APPLY_ATTEMPTS` times."""
        for reply in await self.storage.replies_pending():
            self._undelivered.setdefault(reply.chat_id, deque()).append(reply)
        for chat_id in self._undelivered:
            self._queues.submit(("chat", chat_id), Redeliver(chat_id))
        pending = await self.storage.inbox_pending(limit=100_000)
        resumed = 0
        for item in pending:
            update = None
            if item.attempts < MAX_APPLY_ATTEMPTS:
                with contextlib.suppress(ValueError):
                    update = self._parse(_json_object(item.payload))
            if update is None:
                log.warning("recorded update dead-lettered at start-up (unreadable or failing)")
                await self.storage.inbox_dead(item.update_id)
                continue
            self._queues.submit(_chat_key(update), update)
            resumed += 1
        return resumed

    async def drain(self) -> None:
        """Wait until every update received so far has been applied (tests, shutdown)."""
        await self._queues.join()

    def menu(self) -> list[str]:
        """Every command a person can type, in the menu's order: the engine's, its modes' (the
        barometer, follow-ups), then the channel's own."""
        names = [*COMMANDS, *self.engine.modes, *OWN_COMMANDS]
        return [name for name in names if f"telegram_cmd_{name}" in self.engine.kb.messages]

    def _menu(self) -> list[BotCommand]:
        session = self.engine.new_session()
        return [
            BotCommand(name, self._msg(f"telegram_cmd_{name}", session)) for name in self.menu()
        ]

    async def _retention_job(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.purge()

    async def purge(self) -> int:
        """Erase people idle past the retention period; forget ids of old applied updates.
        Several instances: only the one holding the retention lease runs it."""
        lease = getattr(self.storage, "lease", None)
        if lease is not None and not await lease("telegram-retention", 3 * 3600):
            return 0
        erased = await self.storage.purge_idle(self.settings.retention_days)
        await self.memory.purge_idle(MEMORY_IDLE_DAYS)
        await self.storage.inbox_prune(PROCESSED_IDS_SECONDS)
        log.info("retention: %d idle person(s) erased", erased)
        return erased

    # -- intake ----------------------------------------------------------------------------
    async def receive(self, payload: bytes) -> bool:
        """Check a raw update, durably record it, then schedule it. ``False`` for a duplicate
        or for an update that fails the checks (:func:`update_problem`): that one is dropped
        with a log line and never recorded (the webhook still answers 200, so Telegram does
        not send it again).

        Raises :class:`ValueError` if ``payload`` is not an update at all (not JSON, no
        ``update_id``): nothing is recorded."""
        data = _json_object(payload)
        if not isinstance(data, dict) or type(data.get("update_id")) is not int:
            raise ValueError("not a Telegram update")
        update_id: int = data["update_id"]
        if not 0 <= update_id < MAX_INT:
            raise ValueError("update_id out of range")
        try:
            update = self._parse(data)
        except ValueError as exc:
            log.warning("invalid update dropped before recording: %s", exc)
            return False
        added = await self.storage.inbox_add(update_id, payload, chat=_chat_name(_chat_key(update)))
        if added:
            self._queues.submit(_chat_key(update), update)
        return added

    def _parse(self, data: Any) -> Update:
        """The PTB update of checked ``data``; :class:`ValueError` if it fails a check."""
        problem = update_problem(data)
        if problem is not None:
            raise ValueError(problem)
        try:
            update = Update.de_json(data, self.bot)
        except Exception as exc:
            raise ValueError(f"unreadable by PTB ({type(exc).__name__})") from None
        if update is None:
            raise ValueError("unreadable by PTB")
        return update

    async def _apply(self, job: Update | Redeliver | FollowUpDue | CatchUp) -> None:
        if isinstance(job, Redeliver):
            await self._deliver(job.chat_id, ())
            return
        if isinstance(job, FollowUpDue):
            await self._ask_followup(job.followup)
            return
        if isinstance(job, CatchUp):
            await self._apply_in_turn(job.chat, MAX_INT, None)
            return
        if self.storage.shared:
            await self._apply_in_turn(_chat_name(_chat_key(job)), job.update_id, job)
            return
        await self._apply_update(job)

    async def _apply_in_turn(self, chat: str, up_to: int, current: Update | None) -> None:
        """Several instances on one store: under the chat's turn (a lock in the database),
        apply the chat's updates still pending up to ``up_to``, oldest first, wherever they
        were recorded, and send their replies; one applied by another instance meanwhile is
        no longer pending, so none is applied twice and the chat's order holds."""
        async with self.storage.chat_turn(chat):
            for item in await self.storage.inbox_pending_of(chat, up_to) or ():
                update = current if current and item.update_id == current.update_id else None
                if update is None:
                    try:
                        update = self._parse(_json_object(item.payload))
                    except ValueError:
                        log.warning("recorded update dead-lettered (unreadable)")
                        await self.storage.inbox_dead(item.update_id)
                        continue
                await self._apply_update(update)

    async def _apply_update(self, job: Update) -> None:
        started = time.perf_counter()
        turn = PendingTurn(job.update_id)
        token = _TURN.set(turn)
        try:
            await self.application.process_update(job)
        finally:
            _TURN.reset(token)
            # State, inbox mark and replies in one transaction (the reply outbox).
            change = replace(turn.change or UserChange(), replies=tuple(turn.replies))
            try:
                await self.storage.commit_update(job.update_id, turn.user, change)
            except Exception as exc:
                # Left pending for the next start, up to MAX_APPLY_ATTEMPTS times.
                dead = await self.storage.inbox_failed(job.update_id, MAX_APPLY_ATTEMPTS)
                log.warning(
                    "update not applied (%s)%s",
                    type(exc).__name__,
                    ": dead-lettered" if dead else "; retried at the next start",
                )
                raise
        if turn.events and self.on_events is not None:
            self.on_events()
        chats: dict[int, list[OutgoingReply]] = {}
        for reply in turn.replies:
            chats.setdefault(reply.chat_id, []).append(reply)
        for chat_id, replies in chats.items():
            await self._deliver(chat_id, replies)
        log.debug("update applied in %.1f ms", (time.perf_counter() - started) * 1000)

    async def poll(self, stop: asyncio.Event) -> None:
        """Long polling until ``stop`` is set. An offset is confirmed to Telegram (by asking
        for the next one) only after its update was committed to the inbox."""
        await self._call(self.bot.delete_webhook, False)
        offset: int | None = None
        failures = 0
        while not stop.is_set():
            fetch = asyncio.ensure_future(
                self.bot.get_updates(
                    offset=offset, timeout=self.poll_timeout, allowed_updates=Update.ALL_TYPES
                )
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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), min(30.0, 0.5 * 2**failures))
                continue
            failures = 0
            for update in updates:
                raw = json.dumps(update.to_dict(), ensure_ascii=False).encode()
                await self.receive(raw)
                offset = update.update_id + 1

    async def send_followup(self, followup: FollowUp) -> None:
        """A due follow-up (JobQueue): queued behind the updates of its chat, so it never
        interleaves with one (:meth:`drain` waits for it too)."""
        if self.features is not None:
            self._queues.submit(("chat", int(followup.address)), FollowUpDue(followup))

    async def _ask_followup(self, followup: FollowUp) -> None:
        """The follow-up's turn, its saved session, its question (reply outbox) and its claim
        are committed in one transaction, then the question is sent like any reply.

        A crash before that commit leaves the follow-up pending (start-up schedules it
        again); after it, the question waits in the outbox (start-up sends it) and the
        follow-up is no longer pending: asked once either way. Only when the follow-ups live
        in another database than the store (not as ``passerelle serve`` runs) is it claimed
        first, in its own transaction: a crash before the commit then loses it."""
        features = self.features
        assert features is not None
        together = await self.storage.holds_followups()
        if not together and not await features.followups.claim(followup.id):
            return
        chat_id = int(followup.address)
        turn = PendingTurn(-followup.id)  # never a Telegram update id (those are >= 0)
        try:
            engine = self.engine
            consent, session = await self._state(followup.user)
            session, reply = asking(engine, session or engine.new_session(), followup.id)
            token = _TURN.set(turn)
            try:
                await self._say(chat_id, [reply], session.node)
            finally:
                _TURN.reset(token)
            change = UserChange(
                session=session.to_dict() if consent else None,
                replies=tuple(turn.replies),
                followup=followup.id if together else None,
            )
            await self.storage.commit_update(None, followup.user if consent else "", change)
        except FollowUpTaken:
            return  # already asked (or cancelled, or erased) by someone else
        except Exception as exc:
            log.error("follow-up not sent: %s", type(exc).__name__)
            if not together:
                await features.followups.release(followup.id)
            return
        if not consent:
            await self.memory.save_session(followup.user, session.to_dict())
        await self._deliver(chat_id, turn.replies)

    async def _features(self, update: Update, user: str, turn: Turn) -> Turn:
        """Statistics, barometer charts and groups, follow-ups (see :class:`Features`)."""
        if self.features is None:
            return turn
        chat = update.effective_chat
        address = str(chat.id) if chat is not None else None
        return await self.features.after_turn(turn, channel=CHANNEL, member=user, address=address)

    def _outbox(self, user: str, events: Sequence[Event]) -> tuple[Any, ...]:
        """Webhook events for the establishments concerned; ``subject`` is the person's
        pseudonym (never sent: it only lets their erasure remove undelivered payloads)."""
        if not self.establishments or not events:
            return ()
        from bot.adapters.webhooks import route

        entries: list[Any] = []
        for event in events:
            chain = territory_chain(self.engine.kb, event.data.get("territory"))
            for entry in route(event, self.establishments, territories=chain):
                entries.append(replace(entry, subject=user))
        return tuple(entries)

    async def set_webhook(self) -> None:
        """Point Telegram at ``PASSERELLE_WEBHOOK_URL`` with the secret header."""
        assert self.settings.webhook_url is not None
        await self._call(
            self.bot.set_webhook,
            url=self.settings.webhook_url,
            secret_token=self.settings.webhook_secret,
            allowed_updates=Update.ALL_TYPES,
        )

    def webhook_route(self) -> Route:
        """The Starlette route Telegram posts updates to (path of ``PASSERELLE_WEBHOOK_URL``)."""
        secret = (self.settings.webhook_secret or "").encode()

        async def webhook(request: Request) -> Response:
            given = request.headers.get("x-telegram-bot-api-secret-token", "").encode()
            if not secret or not hmac.compare_digest(given, secret):
                return Response(status_code=403)
            length = request.headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                return Response(status_code=413)  # refused before reading any of it
            body = bytearray()
            try:
                async with asyncio.timeout(self.settings.body_timeout):
                    async for chunk in request.stream():
                        body += chunk
                        if len(body) > MAX_BODY:
                            return Response(status_code=413)
            except TimeoutError:
                return Response(status_code=408, headers={"connection": "close"})
            try:
                await self.receive(bytes(body))
            except ValueError:
                return Response(status_code=400)
            return Response(status_code=200)

        return Route(self.settings.webhook_path, webhook, methods=["POST"])

    # -- outgoing calls --------------------------------------------------------------------
    async def _call(self, method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
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
                await self._call(self.bot.send_chat_action, chat_id, ChatAction.TYPING)
        for index, message in enumerate(messages):
            if index and self.pause:
                await asyncio.sleep(self.pause)
            markup = self._keyboard(message.choices, node) if message.choices else None
            try:
                if message.image is not None:
                    await self._call(
                        self.bot.send_photo,
                        chat_id,
                        message.image.png,
                        caption=message.text,
                        reply_markup=markup,
                        parse_mode=ParseMode.HTML,
                    )
                else:
                    await self._call(
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
        pager = (self._msg("telegram_prev", probe), self._msg("telegram_next", probe))
        rows = keyboard_rows(choices, page, pager)
        return InlineKeyboardMarkup(
            [
                [
                    InlineKeyboardButton(
                        _label(choice),
                        callback_data=choice.id
                        if choice.id.startswith("p:")
                        else encode_choice(node, choice.id),
                    )
                    for choice in row
                ]
                for row in rows
            ]
        )

    def _keyboard_json(self, choices: tuple[Choice, ...], node: str, page: int = 0) -> str:
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
        return tuple(self._msg(key, session) for key in keys if key in messages)

    def _record(
        self, chat_id: int, method: str, params: dict[str, Any], file: bytes | None
    ) -> None:
        turn = _TURN.get()
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

    async def _edit(
        self, message: Message, text: str | None = None, markup: str = NO_KEYBOARD
    ) -> None:
        """Change a message already shown (the reply outbox keeps it in order with the rest):
        its text (HTML) and buttons, or its buttons only."""
        params: dict[str, Any] = {
            "chat_id": message.chat.id,
            "message_id": message.message_id,
            "reply_markup": markup,
        }
        if _TURN.get() is None:
            return
        if text is None:
            self._record(message.chat.id, "editMessageReplyMarkup", params, None)
            return
        params |= {"text": text, "parse_mode": ParseMode.HTML}
        self._record(message.chat.id, "editMessageText", params, None)

    async def _answered(self, message: Message | None, label: str | None) -> None:
        """The tapped message shows the answer chosen, and its buttons go (PTB's
        ``inlinekeyboard.py``); a stale one just loses its buttons."""
        if message is None:
            return
        live = self._live_keyboards.get(message.chat.id, [])
        if message.message_id in live:
            live.remove(message.message_id)  # edited here: not again in _say
        if label is None or not message.text:
            await self._edit(message)
            return
        line = self._msg("telegram_answered", self.engine.new_session(), label=label)
        body = f"{message.text_html}\n\n<b>{esc(line)}</b>"
        if len(body) > MESSAGE_LIMIT:
            await self._edit(message)
            return
        await self._edit(message, body)

    async def _document(self, chat_id: int, body: bytes, caption: str) -> None:
        params = {"chat_id": chat_id, "caption": esc(caption), "parse_mode": ParseMode.HTML}
        if _TURN.get() is None:
            await self._call(
                self.bot.send_document,
                chat_id,
                body,
                filename=EXPORT_NAME,
                caption=params["caption"],
                parse_mode=ParseMode.HTML,
            )
            return
        self._record(chat_id, "sendDocument", params, body)

    async def _say(self, chat_id: int, replies: Sequence[Reply], node: str = "") -> None:
        headings = self._headings(self.engine.new_session())
        messages = render(replies, headings=headings)
        if _TURN.get() is None:  # outside an update (nothing to commit with): send right away
            await self._send(chat_id, messages, node)
            return
        params: dict[str, Any]
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
                params["reply_markup"] = self._keyboard_json(message.choices, node)
            method = "sendPhoto" if message.image is not None else "sendMessage"
            self._record(chat_id, method, params, message.image.png if message.image else None)

    async def _deliver(self, chat_id: int, replies: Sequence[OutgoingReply]) -> None:
        """Send a chat's recorded replies in order, each deleted from the outbox once Telegram
        accepted it (or refused it for good). If Telegram stays unavailable past the bounded
        retries, the rest waits in the outbox and is retried later, still in order."""
        queue = self._undelivered.get(chat_id)
        if queue is None:
            queue = self._undelivered[chat_id] = deque()
        queue.extend(replies)
        if len(queue) > 1:
            with contextlib.suppress(TelegramError):
                await self._call(self.bot.send_chat_action, chat_id, ChatAction.TYPING)
        first = True
        while queue:
            reply = queue[0]
            if not first and self.pause:
                await asyncio.sleep(self.pause)
            first = False
            try:
                sent = await self._call(self._post_reply, reply)
                self._remember_keyboard(chat_id, reply, sent)
            except Forbidden:
                log.info("the person blocked the bot; reply dropped")
            except BadRequest as exc:
                # An edit of a message already as asked (a double tap) is refused: expected.
                level = logging.DEBUG if reply.method.startswith("edit") else logging.ERROR
                log.log(level, "reply refused by Telegram: %s", type(exc).__name__)
            except TelegramError as exc:  # still failing after the bounded retries
                log.warning("reply not delivered yet (%s); will retry", type(exc).__name__)
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
            self._queues.submit(("chat", chat_id), Redeliver(chat_id))

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def _remember_keyboard(self, chat_id: int, reply: OutgoingReply, sent: Any) -> None:
        """The chat's latest messages with buttons (in memory: after a restart, none is known)."""
        if not reply.method.startswith("send") or not isinstance(sent, dict):
            return
        if '"reply_markup"' in reply.params and isinstance(sent.get("message_id"), int):
            live = self._live_keyboards.setdefault(chat_id, [])
            live.append(sent["message_id"])
            del live[:-LIVE_PER_CHAT]
            self._live_keyboards.move_to_end(chat_id)
            if len(self._live_keyboards) > LIVE_KEYBOARDS:
                self._live_keyboards.popitem(last=False)

    async def _post_reply(self, reply: OutgoingReply) -> Any:
        """One recorded reply to the Bot API. The parameters are already serialised (cached
        keyboards), so this goes straight to PTB's request layer (rate limiter included)
        without building or parsing Telegram objects."""
        params: dict[str, Any] = json.loads(reply.params)
        if reply.photo is not None and reply.method == "sendDocument":
            params["document"] = InputFile(reply.photo, filename=EXPORT_NAME)
        elif reply.photo is not None:
            params["photo"] = InputFile(reply.photo, filename="image.png")
        return await self.bot._post(reply.method, params)

    # -- state -----------------------------------------------------------------------------
    def _user(self, update: Update) -> str:
        person = update.effective_user or update.effective_chat
        assert person is not None
        return pseudonym(self._secret, CHANNEL, person.id)

    async def _state(self, user: str) -> tuple[bool | None, Session | None]:
        """(consent, session): durable if consent was given, else from memory."""
        stored, data = await self.storage.load_state(user)
        if stored:
            return True, Session.from_dict(data) if data else None
        consent = await self.memory.get_consent(user)
        data = await self.memory.load_session(user)
        return consent, Session.from_dict(data) if data else None

    async def _save(
        self,
        update: Update,
        user: str,
        consent: bool | None,
        session: Session | None,
        events: Sequence[Event] = (),
    ) -> None:
        data = session.to_dict() if session is not None else None
        # Webhook events go in the same transaction as the state change (durable outbox).
        outbox = self._outbox(user, events)
        if consent:
            await self._commit(update, user, UserChange(session=data, outbox=outbox))
        else:
            if data is not None:
                await self.memory.save_session(user, data)
            await self._commit(update, "", UserChange(outbox=outbox))

    async def _commit(self, update: Update, user: str, change: UserChange) -> None:
        """Record what applying ``update`` changes: committed with the inbox mark and the
        replies at the end of :meth:`_apply` (right away outside of it)."""
        turn = _TURN.get()
        if turn is None or turn.update_id != update.update_id:
            await self.storage.commit_update(update.update_id, user, change)
            if change.outbox and self.on_events is not None:
                self.on_events()
            return
        if turn.change is not None:  # a second change in one update: keep both, in order
            await self.storage.commit_update(None, turn.user, turn.change)
        turn.user, turn.change = user, change
        turn.events = turn.events or bool(change.outbox)

    def _msg(self, key: str, session: Session, **values: str) -> str:
        return self.engine.msg(key, session, **values)

    def _consent_reply(self, session: Session, reminder: bool = False) -> Reply:
        body = self._msg("consent_question", session, days=str(self.settings.retention_days))
        if reminder:
            body = f"{self._msg('consent_reminder', session)}\n{body}"
        return Reply(
            body,
            (
                Choice(CONSENT_YES, self._msg("consent_yes", session)),
                Choice(CONSENT_NO, self._msg("consent_no", session)),
            ),
        )

    # -- handlers --------------------------------------------------------------------------
    def install(self) -> None:
        """Register the handlers on the PTB application (order matters)."""
        app = self.application
        app.add_handler(MessageHandler(filters.UpdateType.EDITED, self.on_edited))
        app.add_handler(CommandHandler("start", self.on_start))
        app.add_handler(CommandHandler("mesdonnees", self.on_my_data))
        app.add_handler(CommandHandler("oubli", self.on_forget))
        app.add_handler(CallbackQueryHandler(self.on_button))
        app.add_handler(MessageHandler(filters.COMMAND, self.on_command))
        app.add_handler(MessageHandler(filters.TEXT, self.on_text))
        app.add_handler(MessageHandler(filters.ALL, self.on_other))
        app.add_error_handler(self.on_error)

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        error = context.error
        log.error("handler failed: %s", type(error).__name__ if error else "unknown")

    async def on_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._begin(update, context.args or [])

    async def _begin(self, update: Update, args: Sequence[str]) -> None:
        """Greet, then ask for consent (first time) or go straight to the first question."""
        chat = update.effective_chat
        assert chat is not None
        user = self._user(update)
        payload = args[0] if len(args) == 1 else None
        known = payload is not None and DEEP_LINK.match(payload) and payload in self.contexts
        notes: list[Reply] = []
        consent, _ = await self._state(user)
        turn = await self._features(update, user, self.engine.start(payload if known else None))
        if args and not known:
            notes.append(Reply(self._msg("deeplink_unknown", turn.session)))
        if consent is None:
            # Nothing is stored before the person answers: keep the new session in memory.
            await self.memory.save_session(user, turn.session.to_dict())
            await self._save(update, user, None, None, turn.events)
            replies = [*turn.replies[:-1], *notes, self._consent_reply(turn.session)]
            await self._say(chat.id, replies)
            return
        await self._save(update, user, consent, turn.session, turn.events)
        await self._say(chat.id, [*notes, *turn.replies], turn.node)

    async def on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None and message.text is not None
        name = message.text.split()[0].lstrip("/").split("@")[0].lower()
        await self._converse(update, Input.command(name))

    async def on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None and message.text is not None
        await self._converse(update, Input.text(message.text))

    async def _converse(
        self, update: Update, event: Input, tapped: tuple[Message | None, str] | None = None
    ) -> None:
        """Hand one input to the engine, save the new state, then send the replies. ``tapped``:
        the message whose button was tapped and the button's text, edited to show the answer."""
        chat = update.effective_chat
        assert chat is not None
        user = self._user(update)
        consent, session = await self._state(user)
        if consent is None and event.kind == "text" and self.engine.is_distress(event.value):
            # Distress comes before everything, the consent question included.
            probe = session or self.engine.new_session()
            await self._say(chat.id, [self.engine.crisis_reply(probe)])
            if session is None:
                await self._begin(update, ())
            else:
                await self._save(update, user, None, None)
                await self._say(chat.id, [self._consent_reply(session, reminder=True)])
            return
        if consent is None:
            if session is None:
                await self._begin(update, ())
                return
            answer = None
            if event.kind == "text":
                answer = self.engine.matcher.confirmation(normalize(event.value))
            if answer is None:
                await self._save(update, user, None, None)
                await self._say(chat.id, [self._consent_reply(session, reminder=True)])
                return
            await self._consent(update, user, session, answer)
            return
        turn: Turn = (
            self.engine.start(None) if session is None else self.engine.handle(session, event)
        )
        turn = await self._features(update, user, turn)
        await self._save(update, user, consent, turn.session, turn.events)
        if tapped is not None:
            message, label = tapped
            stale = session is None or any(r.kind == STALE for r in turn.replies)
            chosen = None if stale else self._full_label(session, event.value, label)
            await self._answered(message, chosen)
        await self._say(chat.id, turn.replies, turn.node)

    def _full_label(self, session: Session | None, choice_id: str, shown: str) -> str:
        """The whole label of the answer chosen (the button may show its short form; a score
        of the barometer reads « 3 — Souvent »)."""
        if session is None:
            return shown
        mode = self.engine.modes.get(session.mode or "")
        prompt = getattr(mode, "prompt", None) if mode is not None else None
        asked = self.engine.prompt(session) if mode is None else None
        if callable(prompt):
            asked = prompt(self.engine, session)
        for choice in asked.choices if isinstance(asked, Reply) else ():
            if choice.id == choice_id:
                label = choice.label
                levels = self.engine.kb.barometer.levels if self.engine.kb.barometer else {}
                if mode is not None and label in levels:
                    label = f"{label} — {text(levels[label], session.lang).split(' : ')[0]}"
                return label
        return shown

    async def _consent(self, update: Update, user: str, session: Session, yes: bool) -> None:
        chat = update.effective_chat
        assert chat is not None
        data = session.to_dict()
        if yes:
            await self._commit(update, user, UserChange(consent=True, session=data))
            await self.memory.erase_user(user)
        else:
            await self._commit(update, user, UserChange(erase=True))
            await self.memory.set_consent(user, False)
            await self.memory.save_session(user, data)
        note = Reply(self._msg("consent_given" if yes else "consent_refused", session))
        await self._say(chat.id, [note, self.engine.prompt(session)], session.node)

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        # Answer first so the button never spins, whatever happens next.
        with contextlib.suppress(TelegramError):
            await self._call(query.answer)
        data = query.data or ""
        user = self._user(update)
        chat = update.effective_chat
        message = query.message if isinstance(query.message, Message) else None
        shown = _button_text(message, data)
        if data.startswith(PAGE_PREFIX):
            await self._page(update, user, message, data)
            return
        if data in (CONSENT_YES, CONSENT_NO, FORGET_YES, FORGET_NO):
            await self._answered(message, shown)
        if data in (FORGET_YES, FORGET_NO):
            await self._forget_answer(update, user, data == FORGET_YES)
            return
        if data in (CONSENT_YES, CONSENT_NO):
            consent, session = await self._state(user)
            if consent is None or session is None:
                session = session or self.engine.start(None).session
                await self._consent(update, user, session, data == CONSENT_YES)
                return
            # Already answered (an old consent message): ask the current question again.
            assert chat is not None
            await self._save(update, user, consent, session)
            await self._say(chat.id, [self.engine.prompt(session)], session.node)
            return
        event = self._decode(data, await self._state(user))
        await self._converse(update, event, (message, shown))

    async def _page(self, update: Update, user: str, message: Message | None, data: str) -> None:
        """« Précédents » / « Suivants » under the glossary: the same message, another page."""
        await self._save(update, user, None, None)
        _, session = await self._state(user)
        page = data[len(PAGE_PREFIX) :]
        if message is None or session is None or not page.isdigit():
            return
        lang = session.lang
        choices = [
            Choice(
                TERM + term_id,
                text(term.term, lang),
                text(term.short, lang) if term.short else None,
            )
            for term_id, term in self.engine.kb.glossary.items()
        ]
        choices.append(Choice(RESUME, self._msg("back_to_question", session)))
        markup = self._keyboard_json(tuple(choices), session.node, int(page))
        await self._edit(message, None, markup)

    def _decode(self, data: str, state: tuple[bool | None, Session | None]) -> Input:
        """A button's input; an unreadable or foreign one becomes a stale choice, which the
        engine answers by saying where the conversation stands."""
        _, session = state
        current = session.node if session is not None else ""
        for separator in ("|", "#"):
            tag, found, value = data.partition(separator)
            if not found:
                continue
            if separator == "#":
                value = self._choice_ids.get(value, "")
            node = current if tag == node_tag(current) else f"~{tag}"
            return Input.choice(value or "~", node)
        return Input.choice("~", "~")

    async def on_my_data(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A summary in plain French, then everything kept as a JSON file (dates readable)."""
        chat = update.effective_chat
        assert chat is not None
        user = self._user(update)
        stored = await self.storage.export_user(user)
        _, session = await self._state(user)
        probe = session or self.engine.new_session()
        await self._save(update, user, None, None)
        export = await self.export(user)
        if not any(export.values()):
            await self._say(chat.id, [Reply(self._msg("mydata_none", probe))])
            return
        lines = [self._msg("mydata_intro", probe)]
        if "consent" in stored:
            lines.append(self._msg("mydata_consent", probe, date=_date(stored["consent"]["at"])))
        if "session" in stored:
            lines += self._describe(Session.from_dict(stored["session"]))
        lines += self._describe_features(probe, export)
        if "session" in stored:
            lines.append(
                self._msg(
                    "mydata_retention",
                    probe,
                    date=_date(stored.get("updated_at", time.time())),
                    days=str(self.settings.retention_days),
                )
            )
        await self._say(chat.id, [Reply("\n".join(lines))])
        body = json.dumps(self._readable(export), ensure_ascii=False, indent=2, sort_keys=True)
        await self._document(chat.id, body.encode(), self._msg("mydata_json", probe))

    async def export(self, user: str) -> dict[str, Any]:
        """Everything stored about ``user``, as JSON-safe data (what ``/mesdonnees`` sends)."""
        export: dict[str, Any] = {"conversation": await self.storage.export_user(user)}
        if self.features is not None:
            export.update(await self.features.export_user(user))
        if self.integration is not None:
            export["webhooks_pending"] = await self.integration.outbox_about(user)
        return export

    def _readable(self, export: dict[str, Any]) -> Any:
        """The export file: all of it, with the conversation's place and answers in words
        (question and answer as the person read them, beside their ids) and readable dates."""
        conversation = dict(export.get("conversation") or {})
        data = conversation.get("session")
        if isinstance(data, dict):
            session = Session.from_dict(data)
            kb = self.engine.kb
            answers = []
            for question_id, choice_id in session.answers:
                asked = kb.questions.get(question_id)
                chosen = (
                    next((c for c in asked.choices if c.id == choice_id), None) if asked else None
                )
                answers.append(
                    {
                        "question": text(asked.text, session.lang) if asked else None,
                        "answer": text(chosen.label, session.lang) if chosen else None,
                        "question_id": question_id,
                        "answer_id": choice_id,
                    }
                )
            readable_session = {k: v for k, v in data.items() if k not in ("node", "answers")}
            readable_session |= {"where": self._where(session), "answers": answers}
            stopped = kb.questions.get(session.stopped_at or "")
            if stopped is not None:
                readable_session["stopped_at"] = text(stopped.text, session.lang)
            conversation["session"] = readable_session
        return readable({**export, "conversation": conversation})

    def _where(self, session: Session) -> str:
        kb = self.engine.kb
        if session.mode:
            return self._msg("mydata_node_mode", session)
        question = kb.questions.get(session.node)
        if question is not None:
            return self._msg(
                "mydata_node_question", session, question=text(question.text, session.lang)
            )
        if session.node == RECOMMENDED:
            return self._msg("mydata_node_recommended", session)
        if session.node == EXITED:
            return self._msg("mydata_node_exited", session)
        return self._msg("mydata_node_start", session)

    def _describe(self, session: Session) -> list[str]:
        kb = self.engine.kb
        lines = [self._msg("mydata_where", session, node=self._where(session))]
        if session.answers:
            lines.append(self._msg("mydata_answers", session))
        for question_id, choice_id in session.answers:
            asked = kb.questions.get(question_id)
            if asked is None:
                continue  # from an older version of the questions: in the file only
            label = next(
                (text(c.label, session.lang) for c in asked.choices if c.id == choice_id),
                choice_id,
            )
            lines.append(f"• {text(asked.text, session.lang)} → {label}")
        if session.context:
            name = session.context
            if session.context in self.establishments:
                name = self.establishments[session.context].name
            lines.append(self._msg("mydata_context", session, name=name))
        return lines

    def _describe_features(self, session: Session, export: Mapping[str, Any]) -> list[str]:
        lines: list[str] = []
        ratings = export.get("barometer_ratings") or []
        if ratings:
            groups = ", ".join(sorted({str(r.get("group")) for r in ratings if r.get("group")}))
            lines.append(
                self._msg("mydata_barometer", session, count=str(len(ratings)), groups=groups)
            )
        for followup in export.get("followups") or []:
            if followup.get("sent_at"):
                continue
            due = followup.get("due_at")
            if isinstance(due, int | float):
                lines.append(self._msg("mydata_followup", session, date=_date(due)))
        pending = [e for e in export.get("webhooks_pending") or [] if e.get("type")]
        if pending:
            lines.append(self._msg("mydata_pending", session, count=str(len(pending))))
        return lines

    async def on_forget(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = update.effective_chat
        assert chat is not None
        user = self._user(update)
        _, session = await self._state(user)
        probe = session or self.engine.new_session()
        await self._save(update, user, None, None)
        choices = (
            Choice(FORGET_YES, self._msg("forget_yes", probe)),
            Choice(FORGET_NO, self._msg("forget_no", probe)),
        )
        await self._say(chat.id, [Reply(self._msg("forget_confirm", probe), choices)])

    async def _forget_answer(self, update: Update, user: str, yes: bool) -> None:
        chat = update.effective_chat
        assert chat is not None
        _, session = await self._state(user)
        probe = session or self.engine.new_session()
        if yes:
            if self.features is not None:
                await self.features.erase_user(user)
            await self._commit(update, user, UserChange(erase=True))
            await self.memory.erase_user(user)
            await self._say(chat.id, [Reply(self._msg("forget_done", probe))])
            return
        await self._save(update, user, None, None)
        replies = [Reply(self._msg("forget_cancelled", probe))]
        if session is not None:
            replies.append(self.engine.prompt(session))
        await self._say(chat.id, replies, probe.node)

    async def on_edited(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._notice(update, "edited_message")

    async def on_other(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        kind = "other"
        if message is not None:
            for attribute in (
                "photo",
                "voice",
                "audio",
                "video",
                "sticker",
                "document",
                "location",
                "contact",
            ):
                if getattr(message, attribute, None):
                    kind = attribute
                    break
            if message.video_note:
                kind = "video"
            if message.venue:
                kind = "location"
        await self._notice(update, "non_text", kind)

    async def _notice(self, update: Update, key: str, kind: str | None = None) -> None:
        """A short kind reply to something the bot cannot read, then where we stand."""
        chat = update.effective_chat
        if chat is None or update.effective_user is None:
            return  # channel posts and the like: nothing to answer
        user = self._user(update)
        _, session = await self._state(user)
        probe = session or self.engine.new_session()
        await self._save(update, user, None, None)
        values = {"kind": self._msg(f"kind_{kind}", probe)} if kind else {}
        # One line: the question and its buttons are just above, no need to show them again.
        await self._say(chat.id, [Reply(self._msg(key, probe, **values))], probe.node)


def _date(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%d/%m/%Y")


def _is_time_key(key: str) -> bool:
    return key == "at" or key.endswith("_at")


def readable(value: Any, key: str = "") -> Any:
    """The export as a person can read it: dates in ISO 8601 (UTC) instead of Unix seconds,
    JSON held as text (scores, roles) unfolded."""
    if isinstance(value, dict):
        return {k: readable(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [readable(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool) and _is_time_key(key):
        moment = dt.datetime.fromtimestamp(value, dt.UTC).replace(microsecond=0)
        return moment.isoformat().replace("+00:00", "Z")
    if isinstance(value, str) and value[:1] in "[{":
        with contextlib.suppress(ValueError):
            return readable(json.loads(value), key)
    return value


def _button_text(message: Message | None, data: str) -> str:
    """The text of the button with callback ``data`` under ``message`` (what was tapped)."""
    markup = message.reply_markup if message is not None else None
    if markup is not None:
        for row in markup.inline_keyboard:
            for button in row:
                if button.callback_data == data:
                    return button.text
    return ""


# -- construction ---------------------------------------------------------------------------
def build(
    engine: Engine | EngineHolder,
    storage: Storage,
    settings: Settings,
    *,
    memory: MemoryStorage | None = None,
    contexts: Collection[str] | None = None,
    pause: float = 0.3,
    poll_timeout: int = 25,
    retry_delay: float = RETRY_BASE_DELAY,
    read_timeout: float = READ_TIMEOUT,
    features: Features | None = None,
    establishments: Mapping[str, Establishment] | None = None,
    integration: IntegrationStore | None = None,
    on_events: Callable[[], None] | None = None,
) -> TelegramChannel:
    """The PTB application wired to ``engine`` and ``storage``, wrapped in a channel.

    Outgoing calls go through :class:`AIORateLimiter` (``settings.telegram_rate`` messages per
    second overall; 0 disables the cap, for a local fake server) which waits on 429s.
    """
    if settings.telegram_token is None:
        raise ValueError("the Telegram channel needs settings.telegram_token")
    quiet_libraries()
    base = settings.telegram_api_base_url
    application = (
        Application.builder()
        .token(settings.telegram_token)
        .base_url(base)
        .base_file_url(base[: -len("bot")] + "file/bot")
        .updater(None)
        .rate_limiter(
            AIORateLimiter(
                overall_max_rate=settings.telegram_rate,
                overall_time_period=1,
                max_retries=3,
            )
        )
        .connection_pool_size(64)
        .pool_timeout(10)
        .connect_timeout(5)
        .read_timeout(read_timeout)
        .write_timeout(10)
        .build()
    )
    channel = TelegramChannel(
        application,
        engine,
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


async def run_polling(settings: Settings, engine: Engine) -> int:
    """``passerelle telegram``: long polling with the SQLite store until SIGINT/SIGTERM.

    Composed as ``passerelle serve`` composes Telegram, minus the web server: same store,
    features, establishments, webhook outbox and worker, so a conversation's events reach the
    same establishments whichever command runs the bot."""
    import signal

    from bot.adapters import charts
    from bot.adapters.webhooks import RetryPolicy, WebhookWorker
    from bot.app.features import Features
    from bot.cli.compose import establishments_or_exit
    from bot.server import startup_line
    from bot.storage.factory import build_stores

    establishments = establishments_or_exit(settings, engine)
    stores = build_stores(settings.database_url or settings.db_path)
    storage = stores.core
    await storage.open()
    features = Features(engine, stores.features)
    await features.open()
    integration = stores.integration
    worker = WebhookWorker(
        integration, establishments, policy=RetryPolicy(base=settings.webhook_retry_base)
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await worker.start()
        charts.prestart()
        channel = build(
            engine,
            storage,
            settings,
            features=features,
            establishments=establishments,
            integration=integration,
            on_events=worker.wake,
        )
        async with running(channel, webhook=False):
            line = startup_line(
                settings,
                mode="Telegram par long polling, sans serveur web",
                kb_version=engine.kb.version,
                establishments=establishments,
            )
            if settings.log_format == "json":
                log.info("%s", line)  # JSON logs: every line is JSON
            else:
                print(f"{line} Ctrl+C pour arrêter.", flush=True)
            await stop.wait()
    finally:
        await asyncio.to_thread(charts.shutdown)
        await worker.stop()
        await features.close()
        await storage.close()
    return 0
