"""The conversation engine: ``(session, input) -> Turn(replies, new session)``.

Pure: it imports no channel, no storage, no network. Every channel (terminal, Telegram, HTTP)
drives the same :class:`Engine`, so a conversation test written once covers them all. Its
parts live in their own modules (render, relation, repair, commands, reading, paths, results)
and are bound here as methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from bot.engine import commands, paths, reading, relation, render, repair, results
from bot.engine.base import (
    CANCEL,
    CMD,
    CONFIRM,
    LEAD,
    MAX_TEXT_LENGTH,
    NOT_THAT,
    PLACE,
    RESUME,
    SKIP,
    TERM,
    Mode,
    Turn,
    owner_of,
)
from bot.engine.matching import Matcher
from bot.engine.normalize import normalize
from bot.engine.places import (
    Receiver,
    asked_after_the_country,
    handoff_receivers,
    territory_chain,
)
from bot.engine.recommendation import facts_of
from bot.engine.replies import (
    Choice,
    Event,
    Recommendation,
    Reply,
)
from bot.engine.safety import Safety, screen
from bot.engine.session import (
    NOT_STARTED,
    RECOMMENDED,
    Input,
    Pending,
    Session,
    Undo,
)
from bot.engine.understanding import Reading, Understanding
from bot.knowledge.model import KnowledgeBase, text

#: What callers import from here (the engine, its turn, its mode contract, button ids).
__all__ = [
    "CANCEL",
    "CMD",
    "CONFIRM",
    "LEAD",
    "MAX_TEXT_LENGTH",
    "NOT_THAT",
    "PLACE",
    "RESUME",
    "SKIP",
    "TERM",
    "Engine",
    "Mode",
    "Turn",
]


class Engine:
    """One engine per knowledge base; stateless between calls, safe to share across chats."""

    def __init__(
        self, kb: KnowledgeBase, modes: tuple[Mode, ...] = (), receivers: Sequence[Receiver] = ()
    ) -> None:
        self.kb = kb
        self.matcher = Matcher(kb)
        self.modes = {mode.name: mode for mode in modes}
        self.safety = Safety(kb)
        self.understanding = Understanding(kb)
        self._place_paths: dict[str, dict[str, str]] = {}
        self._reachable_cache: dict[str, frozenset[str]] = {}
        #: The establishments that can receive a contact request (webhook ``contact.requested``).
        self.receivers: tuple[Receiver, ...] = tuple(receivers)
        self._after_country = asked_after_the_country(kb)

    # -- helpers -------------------------------------------------------------------------
    def msg(self, key: str, session: Session, **values: str) -> str:
        template = text(self.kb.messages.get(key), session.lang)
        return template.format(**values) if values else template

    def prompt(self, session: Session) -> Reply:
        """What to show to invite the next answer where the session stands."""
        yes_no = (
            Choice(CONFIRM, self.msg("yes", session)),
            Choice(CANCEL, self.msg("no", session)),
        )
        if session.pending == Pending.RESTART:
            return Reply(self.msg("restart_confirm", session), yes_no)
        if session.pending == Pending.WISH_LEAD:
            return self._lead_reply(session)
        asking = self._relation_prompt(session)
        if asking is not None:
            return asking
        if session.node in self.kb.questions:
            return self._question_reply(session, session.node)
        if session.node == RECOMMENDED:
            return Reply(self.msg("after_recommendation", session), self._actions(session))
        return Reply(
            self.msg("stopped", session),
            (
                Choice(CMD + "recommencer", self._command_label("recommencer", session)),
                *(
                    (Choice(CMD + "retour", self._command_label("retour", session)),)
                    if session.stopped_at
                    else ()
                ),
            ),
        )

    def turn(
        self,
        session: Session,
        *replies: Reply,
        recommendation: Recommendation | None = None,
        events: tuple[Event, ...] = (),
    ) -> Turn:
        """Build the answer to one input, counting the turn (modes use it too)."""
        session = replace(session, turns=session.turns + 1)
        return Turn(tuple(replies), session, recommendation, events, self.understood(session))

    # -- entry points --------------------------------------------------------------------
    def new_session(
        self, context: str | None = None, lang: str = "fr", owner: str | None = None
    ) -> Session:
        return Session(
            kb_version=self.kb.version, context=context or None, lang=lang, owner=owner or None
        )

    def start(self, context: str | None = None, lang: str = "fr", owner: str | None = None) -> Turn:
        """A new conversation; ``owner`` is the establishment whose API key created it."""
        session = replace(self.new_session(context, lang, owner), node=self.kb.flow.start)
        return self.turn(session, Reply(self.msg("welcome", session)), self.prompt(session))

    def handoff(self, session: Session) -> tuple[Receiver, ...]:
        """Who would receive a request to be put in touch from this conversation (nobody: the
        bot offers none and promises none)."""
        territory = facts_of(self.kb, session.answers).get(self.kb.flow.territory_fact)
        return handoff_receivers(
            self.receivers,
            context=session.context,
            territories=territory_chain(self.kb, territory),
            owner=owner_of(session),
        )

    def handle(self, session: Session, event: Input) -> Turn:
        """Apply one input. Never raises on user input: anything odd gets a kind reply."""
        if event.kind == "start":
            return self.start(event.value or session.context, session.lang, owner_of(session))
        if session.node == NOT_STARTED:
            return self.start(session.context, session.lang, owner_of(session))
        session, notes = self.upgrade(session)
        if event.kind == "text" and self.is_distress(event.value):
            turn = self._crisis(session)
        else:
            turn = self._dispatch(session, event)
        if notes:
            turn = replace(turn, replies=(*notes, *turn.replies))
        return turn

    def is_distress(self, raw: str) -> bool:
        """Distress in a typed message, read with SMS contractions expanded (« chui à bout »)."""
        screened = screen(raw)
        if self.safety.is_distress(screened):
            return True
        expanded = self.understanding.expand(screened)
        return expanded != screened and self.safety.is_distress(expanded)

    # -- dispatch ------------------------------------------------------------------------
    def _dispatch(self, session: Session, event: Input) -> Turn:
        # What « Ce n'est pas ça » would undo, and an open glossary, live for one turn only.
        carried: dict[str, object] = {}
        if session.undo is not None:
            carried["undo"] = session.undo
        if session.glossary:
            carried["glossary"] = True
        if carried:
            session = replace(session, undo=None, glossary=False)
        mode = self.modes.get(session.mode or "")
        if mode is not None:
            return mode.handle(self, session, event)
        if event.kind == "command":
            return self._command(session, event.value.lstrip("/").strip().lower())
        if event.kind == "choice":
            if event.value == NOT_THAT:
                return self._not_that(session, carried.get("undo"))
            return self._choice(session, event)
        return self._text(session, event.value, carried)

    def _choice(self, session: Session, event: Input) -> Turn:
        value = event.value
        if value in (CONFIRM, CANCEL):
            if session.pending:
                return self._confirm(session, value == CONFIRM)
            return self._stale(session)
        if value == RESUME:
            return self.turn(session, self.prompt(session))
        if value.startswith(LEAD) and session.pending == Pending.WISH_LEAD:
            return self._set_lead(session, value[len(LEAD) :])
        if value == SKIP:
            question = self.kb.questions.get(session.node)
            if question is None or session.pending:
                return self._stale(session)
            return self._skip(session, question)
        if value.startswith(CMD):
            return self._command(session, value[len(CMD) :])
        if value.startswith(TERM):
            return self._define(session, value[len(TERM) :])
        if value.startswith(PLACE):
            place = value[len(PLACE) :]
            if place not in self.understanding.places or session.node not in self.kb.questions:
                return self._stale(session)
            reading = Reading(place=place)
            return self._apply(session, reading, echo=True)
        if event.node is not None and event.node != session.node:
            return self._stale(session)
        if session.pending:
            return self._stale(session)
        question = self.kb.questions.get(session.node)
        if question is None:
            return self._stale(session)
        for index, choice in enumerate(question.choices):
            if choice.id == value:
                return self._answer(session, question, index)
        return self._stale(session)

    def _text(self, session: Session, raw: str, carried: dict[str, object] | None = None) -> Turn:
        carried = carried or {}
        if len(raw) > MAX_TEXT_LENGTH:
            return self.turn(session, Reply(self.msg("too_long", session)), self.prompt(session))
        plain = self.understanding.plain(raw)
        norm = normalize(raw)
        if not norm:
            return self._not_understood(session)
        core = self.understanding.strip_fillers(plain)
        if session.pending == Pending.WISH_LEAD:
            lead = self._typed_lead(session, raw, core or plain)
            if lead is not None:
                return self._set_lead(session, lead)
        elif session.pending:
            answer = self.matcher.confirmation(plain)
            if answer is None:
                answer = self.matcher.confirmation(core)
            if answer is not None and session.pending != Pending.CONTACT_HOW:
                return self._confirm(session, answer)
            if answer is False:
                return self._confirm(session, False)
        command = self.matcher.command(norm)
        if command is None:
            command = self.matcher.command(plain) if plain != norm else None
        if command is None and core and core != plain and " " in plain:
            command = self.matcher.command(core)
        if command is None and session.pending == Pending.CONTACT_HOW:
            return self._relation_how(session, raw)
        for mode in self.modes.values():
            if norm in mode.words or plain in mode.words:
                return mode.handle(self, session, Input.command(mode.name))
        if command is not None:
            return self._command(session, command)
        asked, term_id = self.matcher.glossary_question(plain)
        if term_id is not None:
            return self._define(session, term_id)
        if asked:
            return self._glossary(session, unknown=True)
        if carried.get("glossary"):
            term = self.matcher.term(plain)
            if term is not None:
                return self._define(session, term)
        if session.pending:
            return self._not_understood(session)
        if self.safety.is_medical(plain):
            reply = Reply(text(self.kb.safety.medical_reply, session.lang))
            return self.turn(session, reply, self.prompt(session))
        undo = carried.get("undo")
        if session.node in self.kb.questions:
            return self._understand(session, raw, plain, undo)
        reading = self.understanding.read(raw, None, self._country(session))
        if reading.wrong and isinstance(undo, Undo):
            return self._not_that(session, undo)
        if session.node == RECOMMENDED:
            late = self._late(session, reading)
            if late is not None:
                return late
        if session.node == RECOMMENDED:
            action = self.matcher.term(norm)
            if action is not None:
                return self._define(session, action)
        if reading.smalltalk is not None:
            return self._smalltalk(session, reading.smalltalk)
        return self._not_understood(session)

    # -- the parts of the engine, defined in their own modules ----------------------------
    _question_reply = render.question_reply
    _short = staticmethod(render.short)
    _actions = render.actions
    _label = render.label
    _place_choices = render.place_choices
    _said = render.said
    _intro = render.intro
    _render_role = render.render_role
    _render_guide = render.render_guide
    _contacts_reply = render.contacts_reply
    _relation_prompt = relation.relation_prompt
    _relation_how = relation.relation_how
    _relation = relation.relation
    _relation_answer = relation.relation_answer
    _stale = repair.stale
    _skip = repair.skip
    _smalltalk = repair.smalltalk
    _not_that = repair.not_that
    _missed = repair.missed
    _closest = repair.closest
    crisis_reply = repair.crisis_reply
    _crisis = repair.crisis
    _not_understood = repair.not_understood
    _command = commands.command
    _command_label = commands.command_label
    _confirm = commands.confirm
    _back = commands.back
    _contacts = commands.contacts
    _glossary = commands.glossary
    definition = commands.definition
    _define = commands.define
    _understand = reading.understand
    _apply = reading.apply
    _snapshot = staticmethod(reading.snapshot)
    _late = reading.late
    _keep = reading.keep
    _which_country = reading.which_country
    _named = reading.named
    _shown_number = reading.shown_number
    _note_gender = reading.note_gender
    _walk = paths.walk
    _reachable = paths.reachable
    _place_answers = paths.place_answers
    _advance = paths.advance
    _settled = paths.settled
    _answer = paths.answer
    _country = paths.country
    lead = results.lead
    _lead_asked = results.lead_asked
    _lead_reply = results.lead_reply
    _set_lead = results.set_lead
    _typed_lead = results.typed_lead
    result = results.result
    _recommend = results.recommend_turn
    upgrade = paths.upgrade
    understood = results.understood
