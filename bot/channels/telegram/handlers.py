"""Telegram handlers: each PTB update translated into the conversation service's input, and its
result into replies (recorded by :class:`~bot.channels.telegram.delivery.Delivery`). Consent,
the engine, features, routing and the commit live in :mod:`bot.app`; what is Telegram's own
here is the buttons (callback data, the answer shown on the tapped message, glossary pages),
the deep links of ``/start``, and what cannot be read (stickers, edits).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Collection, Sequence

from telegram import Message, Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.app.choices import ChoiceIds
from bot.app.consent import CONSENT_NO, CONSENT_YES
from bot.app.conversation import ConversationService, Result, Transaction
from bot.app.identity import Identity, Pseudonyms
from bot.app.privacy import Privacy
from bot.channels.telegram.delivery import Delivery
from bot.channels.telegram.render import PAGE_PREFIX, node_tag
from bot.engine.flow import RESUME, TERM, Engine
from bot.engine.replies import Choice, Reply
from bot.engine.session import Input, Session
from bot.knowledge.model import text

log = logging.getLogger(__name__)

CHANNEL = "telegram"
DEEP_LINK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Our own buttons (not the engine's): erasure confirmations.
FORGET_YES, FORGET_NO = "p:f1", "p:f0"
#: What a message the bot cannot read holds, in the order it is looked for.
MEDIA = ("photo", "voice", "audio", "video", "sticker", "document", "location", "contact")


class Handlers:
    """The PTB handlers of the channel; ``transaction(update)`` gives the update's commit."""

    def __init__(
        self,
        service: ConversationService,
        privacy: Privacy,
        delivery: Delivery,
        pseudonyms: Pseudonyms,
        *,
        contexts: Callable[[], Collection[str]],
        choices: ChoiceIds,
        transaction: Callable[[Update], Transaction],
    ) -> None:
        self.service = service
        self.privacy = privacy
        self.delivery = delivery
        self.pseudonyms = pseudonyms
        self.contexts = contexts
        self.choices = choices
        self.transaction = transaction

    @property
    def engine(self) -> Engine:
        return self.service.engine

    def install(self, app: Application) -> None:  # type: ignore[type-arg]
        """Register the handlers on the PTB application (order matters)."""
        app.add_handler(MessageHandler(filters.UpdateType.EDITED, self.on_edited))
        app.add_handler(CommandHandler("start", self.on_start))
        app.add_handler(CommandHandler("mesdonnees", self.on_my_data))
        app.add_handler(CommandHandler("oubli", self.on_forget))
        app.add_handler(CallbackQueryHandler(self.on_button))
        app.add_handler(MessageHandler(filters.COMMAND, self.on_command))
        app.add_handler(MessageHandler(filters.TEXT, self.on_text))
        app.add_handler(MessageHandler(filters.ALL, self.on_other))
        app.add_error_handler(self.on_error)

    # -- translation -----------------------------------------------------------------------
    def identity(self, update: Update) -> Identity:
        person = update.effective_user or update.effective_chat
        assert person is not None
        chat = update.effective_chat
        address = str(chat.id) if chat is not None else None
        return Identity(CHANNEL, self.pseudonyms.of(CHANNEL, person.id), address)

    async def _say_result(self, chat_id: int, result: Result) -> None:
        for batch in result.batches:
            await self.delivery.say(chat_id, batch.replies, batch.node)

    async def _probe(self, user: str) -> Session:
        session = (await self.service.state(user)).session
        return session or self.engine.new_session()

    # -- handlers --------------------------------------------------------------------------
    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        error = context.error
        log.error("handler failed: %s", type(error).__name__ if error else "unknown")

    async def on_start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._begin(update, context.args or [])

    async def _begin(self, update: Update, args: Sequence[str]) -> None:
        """Greet, then ask for consent (first time) or go straight to the first question."""
        chat = update.effective_chat
        assert chat is not None
        payload = args[0] if len(args) == 1 else None
        known = payload is not None and DEEP_LINK.match(payload) and payload in self.contexts()
        result = await self.service.start(
            self.identity(update),
            self.transaction(update),
            context=payload if known else None,
            notes=("deeplink_unknown",) if args and not known else (),
        )
        await self._say_result(chat.id, result)

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
        """One input through the service. ``tapped``: the message whose button was tapped and
        the button's text, edited to show the answer."""
        chat = update.effective_chat
        assert chat is not None
        result = await self.service.turn(self.identity(update), event, self.transaction(update))
        if tapped is not None and not result.gated:
            message, label = tapped
            chosen = None if result.stale else self._full_label(result.previous, event.value, label)
            await self.delivery.answered(message, chosen)
        await self._say_result(chat.id, result)

    def _full_label(self, session: Session | None, choice_id: str, shown: str) -> str:
        """The whole label of the answer chosen (the button may show its short form; a score
        of the barometer reads « 3 — Souvent »)."""
        if session is None:
            return shown
        engine = self.engine
        mode = engine.modes.get(session.mode or "")
        prompt = getattr(mode, "prompt", None) if mode is not None else None
        asked = engine.prompt(session) if mode is None else None
        if callable(prompt):
            asked = prompt(engine, session)
        for choice in asked.choices if isinstance(asked, Reply) else ():
            if choice.id == choice_id:
                label = choice.label
                levels = engine.kb.barometer.levels if engine.kb.barometer else {}
                if mode is not None and label in levels:
                    label = f"{label} — {text(levels[label], session.lang).split(' : ')[0]}"
                return label
        return shown

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        # Answer first so the button never spins, whatever happens next.
        with contextlib.suppress(TelegramError):
            await self.delivery.call(query.answer)
        data = query.data or ""
        identity = self.identity(update)
        chat = update.effective_chat
        message = query.message if isinstance(query.message, Message) else None
        shown = button_text(message, data)
        if data.startswith(PAGE_PREFIX):
            await self._page(update, identity.user, message, data)
            return
        if data in (CONSENT_YES, CONSENT_NO, FORGET_YES, FORGET_NO):
            await self.delivery.answered(message, shown)
        if data in (FORGET_YES, FORGET_NO):
            await self._forget_answer(update, identity.user, data == FORGET_YES)
            return
        if data in (CONSENT_YES, CONSENT_NO):
            assert chat is not None
            tx = self.transaction(update)
            result = await self.service.answer_consent(identity, tx, data == CONSENT_YES)
            await self._say_result(chat.id, result)
            return
        event = self._decode(data, (await self.service.state(identity.user)).session)
        await self._converse(update, event, (message, shown))

    async def _page(self, update: Update, user: str, message: Message | None, data: str) -> None:
        """« Précédents » / « Suivants » under the glossary: the same message, another page."""
        await self.service.touch(self.transaction(update))
        session = (await self.service.state(user)).session
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
        choices.append(Choice(RESUME, self.engine.msg("back_to_question", session)))
        markup = self.delivery.keyboard_json(tuple(choices), session.node, int(page))
        await self.delivery.edit(message, None, markup)

    def _decode(self, data: str, session: Session | None) -> Input:
        """A button's input; an unreadable or foreign one becomes a stale choice, which the
        engine answers by saying where the conversation stands."""
        current = session.node if session is not None else ""
        for separator in ("|", "#"):
            tag, found, value = data.partition(separator)
            if not found:
                continue
            if separator == "#":
                value = self.choices.lookup(value) or ""
            if self.choices.unknown_command(value):
                value = ""  # refused as on the API: the current question is asked again
            node = current if tag == node_tag(current) else f"~{tag}"
            return Input.choice(value or "~", node)
        return Input.choice("~", "~")

    async def on_my_data(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A summary in plain French, then everything kept as a JSON file (dates readable)."""
        chat = update.effective_chat
        assert chat is not None
        user = self.identity(update).user
        probe = await self._probe(user)
        await self.service.touch(self.transaction(update))
        summary = await self.privacy.summary(self.engine, user, probe)
        await self.delivery.say(chat.id, [Reply(line) for line in summary.lines])
        if summary.document is not None:
            caption = self.engine.msg("mydata_json", probe)
            await self.delivery.document(chat.id, summary.document, caption)

    async def on_forget(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = update.effective_chat
        assert chat is not None
        probe = await self._probe(self.identity(update).user)
        await self.service.touch(self.transaction(update))
        msg = self.engine.msg
        choices = (
            Choice(FORGET_YES, msg("forget_yes", probe)),
            Choice(FORGET_NO, msg("forget_no", probe)),
        )
        await self.delivery.say(chat.id, [Reply(msg("forget_confirm", probe), choices)])

    async def _forget_answer(self, update: Update, user: str, yes: bool) -> None:
        chat = update.effective_chat
        assert chat is not None
        session = (await self.service.state(user)).session
        probe = session or self.engine.new_session()
        tx = self.transaction(update)
        if yes:
            erased = await self.privacy.erase(user, session.to_dict() if session else None)
            await tx.commit(user, erased)
            await self.delivery.say(chat.id, [Reply(self.engine.msg("forget_done", probe))])
            return
        await self.service.touch(tx)
        replies = [Reply(self.engine.msg("forget_cancelled", probe))]
        if session is not None:
            replies.append(self.engine.prompt(session))
        await self.delivery.say(chat.id, replies, probe.node)

    async def on_edited(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._notice(update, "edited_message")

    async def on_other(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        kind = "other"
        if message is not None:
            kind = next((a for a in MEDIA if getattr(message, a, None)), kind)
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
        probe = await self._probe(self.identity(update).user)
        await self.service.touch(self.transaction(update))
        values = {"kind": self.engine.msg(f"kind_{kind}", probe)} if kind else {}
        # One line: the question and its buttons are just above, no need to show them again.
        await self.delivery.say(chat.id, [Reply(self.engine.msg(key, probe, **values))], probe.node)


def button_text(message: Message | None, data: str) -> str:
    """The text of the button with callback ``data`` under ``message`` (what was tapped)."""
    markup = message.reply_markup if message is not None else None
    if markup is not None:
        for row in markup.inline_keyboard:
            for button in row:
                if button.callback_data == data:
                    return button.text
    return ""
