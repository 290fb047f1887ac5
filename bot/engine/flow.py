"""The conversation engine: ``(session, input) -> Turn(replies, new session)``.

Pure: it imports no channel, no storage, no network. Every channel (terminal, Telegram, HTTP)
drives the same :class:`Engine`, so a conversation test written once covers them all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from rapidfuzz import fuzz

from bot.engine import events
from bot.engine.matching import Matcher
from bot.engine.normalize import normalize
from bot.engine.places import (
    Receiver,
    asked_after_the_country,
    country_of,
    country_question,
    handoff_receivers,
    holds,
    holds_in,
    next_target,
    offered,
    territory_chain,
)
from bot.engine.recommendation import facts_of, leads_that_matter, recommend, select_contacts
from bot.engine.replies import (
    CONTACTS,
    GUIDE,
    ROLE,
    STALE,
    Choice,
    ContactInfo,
    Event,
    Recommendation,
    Reply,
    RoleMatch,
)
from bot.engine.safety import Safety, screen
from bot.engine.session import (
    EXITED,
    NOT_STARTED,
    RECOMMENDED,
    UNKNOWN,
    Input,
    Pending,
    Session,
)
from bot.engine.understanding import Reading, Understanding
from bot.knowledge.model import EXIT, RECOMMENDATION, KnowledgeBase, Question, text
from bot.knowledge.model import Choice as Option

#: Messages longer than this are not analysed at all (they are answered kindly).
MAX_TEXT_LENGTH = 2000

CMD = "cmd:"
TERM = "term:"
CONFIRM = "cmd:confirmer"
CANCEL = "cmd:annuler"
RESUME = "cmd:reprendre"
RELATION = "relation"
PLACE = "place:"
NOT_THAT = "cmd:pas_ca"
SKIP = "cmd:passer"
#: « which comes first? » buttons: ``lead:<choice id>``, ``lead:`` for « they weigh the same ».
LEAD = "lead:"
#: How close (rapidfuzz WRatio) a choice must be to be offered as « Vouliez-vous dire … ? ».
CLOSEST_CUTOFF = 60.0
#: Keys of ``session.extra`` that live for one turn only (the next input reads them, then
#: they are gone): what « Ce n'est pas ça » would undo, and an open glossary.
TRANSIENT = ("undo", "glossary")
#: Longest "how to reach me" text kept for a contact request.
MAX_CONTACT_HOW = 500


@dataclass(frozen=True)
class Turn:
    """The engine's answer to one input."""

    replies: tuple[Reply, ...]
    session: Session
    recommendation: Recommendation | None = None
    events: tuple[Event, ...] = field(default=())
    #: The facts the bot holds now (fact name -> value id, plus ``condition`` and ``place``).
    understood: dict[str, str] = field(default_factory=dict)

    @property
    def node(self) -> str:
        return self.session.node

    def to_dict(self) -> dict[str, object]:
        return {
            "replies": [reply.to_dict() for reply in self.replies],
            "node": self.session.node,
            "recommendation": self.recommendation.to_dict() if self.recommendation else None,
            "understood": dict(self.understood),
        }


def _owner(session: Session) -> str | None:
    owner = session.extra.get("owner")
    return str(owner) if owner else None


class Mode(Protocol):
    """A side conversation with its own steps (e.g. the barometer), entered by a command.

    While ``session.extra["mode"] == name`` every input goes to :meth:`handle`; the mode clears
    it to hand the conversation back to the orientation flow.
    """

    name: str
    words: frozenset[str]

    def handle(self, engine: Engine, session: Session, event: Input) -> Turn: ...


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

    def _command_label(self, name: str, session: Session) -> str:
        return text(self.kb.flow.commands[name].label, session.lang)

    def _question_reply(self, session: Session, question_id: str) -> Reply:
        question = self.kb.questions[question_id]
        country = country_of(self.kb, facts_of(self.kb, session.answers))
        choices = [
            Choice(c.id, text(c.label_in.get(country or "") or c.label, session.lang), short)
            for c in question.choices
            if offered(c, country)
            for short in [self._short(c, country, session.lang)]
        ]
        if session.extra.get("offer_skip") == question_id:
            choices.append(Choice(SKIP, self.msg("skip_button", session)))
        if session.extra.get("undo"):
            choices.append(Choice(NOT_THAT, self.msg("not_that", session)))
        if session.answers:
            choices.append(Choice(CMD + "retour", self._command_label("retour", session)))
        return Reply(text(question.text, session.lang), tuple(choices))

    @staticmethod
    def _short(choice: Option, country: str | None, lang: str) -> str | None:
        """The short form of the label shown: a country's own label has its own (``short_in``)."""
        if country and country in choice.label_in:
            short = choice.short_in.get(country)
            return text(short, lang) if short else None
        return text(choice.short, lang) if choice.short else None

    def _actions(self, session: Session) -> tuple[Choice, ...]:
        actions = []
        if self.handoff(session):
            actions.append(Choice(CMD + RELATION, self.msg("relation_button", session)))
        for mode in self.modes.values():
            actions.append(Choice(CMD + mode.name, self.msg(f"{mode.name}_button", session)))
        names = ("contacts", "glossaire", "recommencer")
        actions += [Choice(CMD + n, self._command_label(n, session)) for n in names]
        return tuple(actions)

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

    def understood(self, session: Session) -> dict[str, str]:
        """Every fact held now: answers given, facts read ahead, the named condition and place."""
        facts = {
            fact: value
            for fact, value in facts_of(self.kb, session.answers).items()
            if value != UNKNOWN
        }
        for question_id, choice_id in reversed(session.answers):
            # Several answers to one question (several wishes): name the first one given.
            question = self.kb.questions.get(question_id)
            if question is not None and question.multiple and choice_id != UNKNOWN:
                facts[question.fact] = choice_id
        for question_id, question in self.kb.questions.items():
            given = [c for q, c in session.answers if q == question_id and c != UNKNOWN]
            if question.multiple and len(given) > 1:
                # All of them, in the order given (``wishes: partager,former``).
                facts[_all_key(question.fact)] = ",".join(dict.fromkeys(given))
        lead = self.lead(session)
        if lead is not None:
            facts[self.kb.questions[lead[0]].fact] = lead[1]  # the one that comes first
        ahead: dict[str, str] = {}
        for question_id, choices in dict(session.extra.get("prefill") or {}).items():
            # In flow order, so the more precise territory (a community after a country) wins.
            question = self.kb.questions.get(question_id)
            if question is None or not choices:
                continue
            ahead[question.fact] = str(choices[0])
            if question.multiple and len(choices) > 1:
                ahead[_all_key(question.fact)] = ",".join(str(c) for c in choices)
            for choice in question.choices:
                if choice.id == choices[0]:
                    ahead.update(choice.sets)
        for fact, value in ahead.items():
            facts.setdefault(fact, value)
        for key in ("condition", "place"):
            if session.extra.get(key):
                facts[key] = str(session.extra[key])
        return facts

    # -- entry points --------------------------------------------------------------------
    def new_session(
        self, context: str | None = None, lang: str = "fr", owner: str | None = None
    ) -> Session:
        extra = {"owner": owner} if owner else {}
        return Session(kb_version=self.kb.version, context=context or None, lang=lang, extra=extra)

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
            owner=_owner(session),
        )

    def handle(self, session: Session, event: Input) -> Turn:
        """Apply one input. Never raises on user input: anything odd gets a kind reply."""
        if event.kind == "start":
            return self.start(event.value or session.context, session.lang, _owner(session))
        if session.node == NOT_STARTED:
            return self.start(session.context, session.lang, _owner(session))
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

    def upgrade(self, session: Session) -> tuple[Session, tuple[Reply, ...]]:
        """Carry a session started on another knowledge-base version over to this one.

        Answers whose question or choice no longer exists are dropped; if the current question
        is gone, the person goes back to the nearest earlier question that still exists.
        """
        if session.kb_version == self.kb.version:
            return session, ()
        questions = self.kb.questions
        answers = tuple(
            (q, c)
            for q, c in session.answers
            if q in questions
            and (c == UNKNOWN or any(choice.id == c for choice in questions[q].choices))
        )
        node = session.node
        moved = False
        if (node not in questions and node not in (RECOMMENDED, EXITED)) or (
            len(answers) != len(session.answers) and node == RECOMMENDED
        ):
            moved = True
            node = answers[-1][0] if answers else self.kb.flow.start
            answers = answers[:-1] if answers else answers
        asking = country_question(self.kb)
        if (
            asking is not None
            and node in self._after_country
            and country_of(self.kb, facts_of(self.kb, answers)) is None
        ):
            moved, node = True, asking  # the new flow asks the country before this point
        upgraded = replace(
            session, kb_version=self.kb.version, node=node, answers=answers, pending=None
        )
        return upgraded, ((Reply(self.msg("kb_changed", session)),) if moved else ())

    # -- dispatch ------------------------------------------------------------------------
    def _dispatch(self, session: Session, event: Input) -> Turn:
        carried = {key: session.extra[key] for key in TRANSIENT if key in session.extra}
        if carried:
            session = replace(
                session, extra={k: v for k, v in session.extra.items() if k not in TRANSIENT}
            )
        mode = self.modes.get(str(session.extra.get("mode", "")))
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

    def _stale(self, session: Session) -> Turn:
        stale = Reply(self.msg("stale_button", session), kind=STALE)
        return self.turn(session, stale, self.prompt(session))

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
        if reading.wrong and isinstance(undo, dict):
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

    def _shown_number(self, session: Session, question: Question, norm: str, index: int) -> int:
        """A typed number counts the buttons shown, which leave out the choices that do not
        hold in the person's country (« 1 » in Luxembourg is the first button, « Oui »)."""
        if not norm.isdigit():
            return index
        country = country_of(self.kb, facts_of(self.kb, session.answers))
        shown = [i for i, c in enumerate(question.choices) if offered(c, country)]
        number = int(norm)
        return shown[number - 1] if 1 <= number <= len(shown) else index

    def _note_gender(self, session: Session, norm: str) -> Session:
        """Remember that the person spoke of herself in the feminine (« je suis aidante »,
        « formée ») so role titles agree; a word about someone else (« ma fille est guérie »)
        does not count: only the word alone, or after « suis »."""
        padded = f" {norm} "
        for word in self.kb.flow.feminine_words:
            if norm == word or any(
                f" suis {article}{word} " in padded for article in ("", "une ", "la ")
            ):
                return replace(session, extra={**session.extra, "gender": "f"})
        return session

    def _understand(
        self, session: Session, raw: str, plain: str, undo: object | None = None
    ) -> Turn:
        """A typed message at a question: read it whole, answer what it answers, keep the rest."""
        question = self.kb.questions[session.node]
        reading = self.understanding.read(raw, session.node, self._country(session))
        if reading.wrong:
            return self._not_that(session, undo if isinstance(undo, dict) else None)
        if reading.why:
            why = (
                text(question.why, session.lang)
                if question.why
                else self.msg("why_default", session)
            )
            return self.turn(session, Reply(why), self.prompt(session))
        if reading.skip:
            return self._skip(session, question)
        if reading.smalltalk is not None:
            if plain in self.matcher.yes or plain in self.matcher.no:
                # « ouais », « nan » answer a yes/no question (« oui », « non » choices).
                word = "oui" if plain in self.matcher.yes else "non"
                found = self.matcher.choice(session.node, word)
                if found is not None and found.exact:
                    return self._answer(session, question, found.index, echo=True)
            exact = self.matcher.choice(session.node, plain)
            if exact is None or not exact.exact:
                return self._smalltalk(session, reading.smalltalk)
        elif plain in self.matcher.no and plain not in ("non",):
            found = self.matcher.choice(session.node, "non")
            if found is not None and found.exact:
                return self._answer(session, question, found.index, echo=True)
        place_number = (
            session.node in self.understanding.place_questions
            and reading.place is not None
            and plain.isdigit()
            and len(plain) >= 2
        )
        exact = None if place_number else self.matcher.exact_choice(session.node, plain)
        session = self._note_gender(session, plain)
        if exact is not None:
            index = self._shown_number(session, question, plain, exact.index)
            reading.answers[session.node] = [question.choices[index].id]
            return self._apply(
                session, reading, echo=not reading.empty and _more(reading, session.node)
            )
        if reading.unknown and reading.empty:
            return self._skip(session, question)
        close = (
            None if place_number or not reading.empty else self.matcher.choice(session.node, plain)
        )
        if close is not None and not reading.negated:
            index = self._shown_number(session, question, plain, close.index)
            return self._answer(session, question, index, echo=not close.exact)
        if reading.empty:
            return self._missed(session, question, plain)
        return self._apply(session, reading, echo=True)

    def _apply(self, session: Session, reading: Reading, echo: bool) -> Turn:
        """Keep what ``reading`` says (answer the question, remember the rest), say it back."""
        question_id = session.node
        question = self.kb.questions[question_id]
        before = self._snapshot(session)
        if reading.place is not None:
            for qid, choice_id in self._place_answers(reading.place).items():
                reading.answers[qid] = [choice_id]
        elif reading.ambiguous_place is not None and self.kb.places is not None:
            entry = self.kb.places.ambiguous[reading.ambiguous_place]
            choices = self._place_choices(
                [pid for pid in entry.places if pid in self.understanding.places], session
            )
            session, _ = self._keep(session, reading, exclude=())
            return self.turn(session, Reply(text(entry.question, session.lang), choices))
        elif reading.postal is not None and self.kb.places is not None:
            return self._which_country(session, reading)
        country = country_of(self.kb, facts_of(self.kb, session.answers))
        mine = [
            c
            for c in reading.answers.get(question_id, [])
            if _has(question, c) and offered(_choice(question, c), country)
        ]
        ahead = question_id
        if mine:
            facts = facts_of(self.kb, (*session.answers, (question_id, mine[0])))
            ahead = next_target(question, _choice(question, mine[0]), facts) or question_id
        answered = {q for q, _ in session.answers}
        reachable = self._reachable(ahead) | answered | {question_id}
        if reading.place is not None:
            reachable |= set(self._place_answers(reading.place))  # it may change the path
        for qid in [q for q in reading.answers if q not in reachable]:
            del reading.answers[qid]
        if len(mine) > 1 and not question.multiple:
            first, second = (_choice(question, c) for c in mine[:2])
            session, _ = self._keep(session, reading, exclude=(question_id,))
            body = self.msg(
                "ambiguous",
                session,
                first=self._label(first, session),
                second=self._label(second, session),
            )
            choices = (
                Choice(first.id, self._label(first, session)),
                Choice(second.id, self._label(second, session)),
            )
            return self.turn(session, Reply(body, choices))
        kept, rerouted = self._keep(session, reading, exclude=(question_id,))
        for qid in list(reading.answers):
            # Say back only what was kept (not a fact already answered and left as it was).
            if qid == question_id:
                continue
            now = dict(kept.extra.get("prefill") or {}).get(qid)
            if now is None and (qid, reading.answers[qid][0]) not in set(kept.answers) - set(
                session.answers
            ):
                del reading.answers[qid]
        if rerouted:
            # A clearer answer on another path (« en fait je suis infirmière », « j'habite à
            # Liège » on the France path): the flow follows it, and the say-back tells it.
            said = self._said(kept, reading, question_id)
            line = " ".join(x for x in (said, self.msg("said_changed", session)) if x)
            extra = {**kept.extra, "undo": before}
            if mine:
                prefill = dict(extra.get("prefill") or {})
                extra["prefill"] = {**prefill, question_id: mine}
            moved = replace(kept, extra=extra, stopped_at=None)
            return self._advance(self._settled(moved), moved.node, [Reply(line)])
        if reading.place is not None:
            wanted = self._place_answers(reading.place)
            held = {
                **{q: c for q, c in kept.answers},
                **{q: str(c[0]) for q, c in dict(kept.extra.get("prefill") or {}).items() if c},
            }
            if question_id in wanted:
                held[question_id] = wanted[question_id] if mine[:1] == [wanted[question_id]] else ""
            if any(held.get(q) != c for q, c in wanted.items()):
                # A place on another path (« en Belgique » once France is answered): not kept,
                # not said back; « retour » changes the country.
                reading.place = None
                extra = {k: v for k, v in kept.extra.items() if k != "place"}
                if session.extra.get("place"):
                    extra["place"] = session.extra["place"]
                kept = replace(kept, extra=extra)
        session = kept
        said = self._said(session, reading, question_id) if echo else ""
        if said:
            session = replace(session, extra={**session.extra, "undo": before})
        replies = [Reply(said)] if said else []
        if not mine:
            if question_id in dict(session.extra.get("prefill") or {}):
                # Answered by an earlier message (kept while a place was asked): go on.
                return self._advance(self._settled(session), question_id, replies)
            # Something else was understood, not the answer to this question: ask it again.
            return self.turn(session, *replies, self.prompt(session))
        session = replace(session.answered(question_id, mine[0]), stopped_at=None)
        for extra_choice in mine[1:]:
            session = session.answered(question_id, extra_choice)
        target = next_target(
            question, _choice(question, mine[0]), facts_of(self.kb, session.answers)
        )
        return self._advance(self._settled(session), target, replies)

    @staticmethod
    def _snapshot(session: Session) -> dict[str, object]:
        """What « Ce n'est pas ça » restores."""
        return {
            "node": session.node,
            "answers": [list(pair) for pair in session.answers],
            "prefill": dict(session.extra.get("prefill") or {}),
            "condition": session.extra.get("condition"),
            "place": session.extra.get("place"),
            "relative": session.extra.get("relative"),
        }

    def _late(self, session: Session, reading: Reading) -> Turn | None:
        """After the recommendation, a clearer place or profile (« en fait j'habite à Genève »)
        is applied and the recommendation given again; None when the message changes nothing."""
        if reading.place is None and not reading.profile_said:
            return None
        if reading.place is not None:
            for qid, choice_id in self._place_answers(reading.place).items():
                reading.answers[qid] = [choice_id]
        before = self._snapshot(session)
        kept, rerouted = self._keep(session, reading, exclude=())
        if kept.answers == session.answers:
            return None
        said = self._said(kept, reading, "")
        line = " ".join(x for x in (said, self.msg("said_changed", session)) if x)
        moved = replace(kept, extra={**kept.extra, "undo": before})
        target = moved.node if rerouted else RECOMMENDATION
        return self._advance(self._settled(moved), target, [Reply(line)])

    def _keep(
        self, session: Session, reading: Reading, exclude: tuple[str, ...]
    ) -> tuple[Session, bool]:
        """Remember facts for later questions; replace an earlier answer a clearer one changes.
        True when such a change puts the person on another path (the node is then the first
        question left to ask on it)."""
        rerouted = False
        prefill = {k: list(v) for k, v in dict(session.extra.get("prefill") or {}).items()}
        answers = list(session.answers)
        answered = {q for q, _ in answers}
        for qid, choices in reading.answers.items():
            question = self.kb.questions.get(qid)
            if qid in exclude or question is None:
                continue
            valid = [c for c in choices if _has(question, c)]
            if not valid:
                continue
            if qid in answered:
                old = [c for q, c in answers if q == qid]
                if old == valid[:1] or not self._named(reading, qid):
                    continue
                facts = facts_of(self.kb, session.answers)
                after = next_target(question, _choice(question, valid[0]), facts)
                if old[0] == UNKNOWN or after != next_target(
                    question, _choice(question, old[0]), facts
                ):
                    rerouted = True  # another path: the flow follows it (see :meth:`_walk`)
                answers = [(q, valid[0] if q == qid else c) for q, c in answers]
                answers = [pair for i, pair in enumerate(answers) if pair not in answers[:i]]
                continue
            prefill[qid] = valid if question.multiple else valid[:1]
        extra = {**session.extra, "prefill": prefill}
        if reading.condition:
            extra["condition"] = reading.condition
        if reading.place:
            extra["place"] = reading.place
        if reading.relative:
            extra["relative"] = reading.relative
        if not prefill:
            extra.pop("prefill")
        kept = replace(session, answers=tuple(answers), extra=extra)
        if not rerouted:
            return kept, False
        walked, node = self._walk(kept.answers)
        ahead = self._reachable(node)
        later = {q: [c for q2, c in kept.answers if q2 == q] for q, _ in kept.answers}
        prefill.update({q: cs for q, cs in later.items() if q in ahead and q not in dict(walked)})
        extra = {**kept.extra, "prefill": prefill} if prefill else kept.extra
        return replace(kept, answers=walked, node=str(node or EXITED), extra=extra), True

    def _walk(
        self, answers: Sequence[tuple[str, str]]
    ) -> tuple[tuple[tuple[str, str], ...], str | None]:
        """Follow the flow from its start with ``answers``: the answers on the path (in flow
        order) and the first question left to ask (or ``recommendation``). Answers off the path
        (the patient's experience once the person says she is a nurse) are dropped."""
        given: dict[str, list[str]] = {}
        for qid, choice_id in answers:
            if choice_id not in given.setdefault(qid, []):
                given[qid].append(choice_id)
        kept: list[tuple[str, str]] = []
        node: str | None = self.kb.flow.start
        for _ in range(len(self.kb.questions) + 1):
            question = self.kb.questions.get(node or "")
            if question is None or node not in given:
                break
            choices = given.pop(node)
            kept += [(node, c) for c in choices]
            facts = facts_of(self.kb, kept)
            if choices[0] == UNKNOWN:
                node = next(
                    (b.next for b in question.next_when if holds(b.when, facts)), question.next
                )
            elif _has(question, choices[0]):
                node = next_target(question, _choice(question, choices[0]), facts)
            else:
                break
        return tuple(kept), node

    def _country(self, session: Session) -> str | None:
        return country_of(self.kb, facts_of(self.kb, session.answers))

    def _which_country(self, session: Session, reading: Reading) -> Turn:
        """A four-digit postal code of several countries: ask which, never guess. Each button
        is the place the code means there, labelled with the country's name."""
        postal = self.kb.places.postal_codes if self.kb.places is not None else None
        assert reading.postal is not None and postal is not None
        code, place_ids = reading.postal
        choices = []
        for place_id in place_ids:
            place = self.understanding.places[place_id]
            country = self.kb.territories[place.territory].country
            named = self.understanding.places.get(country, place)
            choices.append(Choice(PLACE + place_id, text(named.name, session.lang)))
        session, _ = self._keep(session, reading, exclude=())
        body = text(postal.question, session.lang).format(code=code)
        return self.turn(session, Reply(body, tuple(choices)))

    def _place_choices(self, place_ids: list[str], session: Session) -> tuple[Choice, ...]:
        """One button per place; places of the same name say their territory (« Saint-Denis
        (La Réunion) », « Saint-Denis (Île-de-France) »)."""
        places = [self.understanding.places[pid] for pid in place_ids]
        names = [text(place.name, session.lang) for place in places]
        choices = []
        for pid, place, name in zip(place_ids, places, names, strict=True):
            territory = self.kb.territories.get(place.territory)
            if names.count(name) > 1 and territory is not None:
                name = f"{name} ({text(territory.name, session.lang)})"
            choices.append(Choice(PLACE + pid, name))
        return tuple(choices)

    def _label(self, choice: Option, session: Session) -> str:
        """A choice's label as shown in the person's country (``label_in``)."""
        country = country_of(self.kb, facts_of(self.kb, session.answers))
        return text(choice.label_in.get(country or "") or choice.label, session.lang)

    def _named(self, reading: Reading, question_id: str) -> bool:
        """Is the fact for ``question_id`` backed by a named condition or place? Only those may
        replace an answer already given (« en fait c'est une sclérose en plaques »)."""
        if reading.condition and question_id == self.understanding.experience_question:
            return True
        if reading.profile_said and question_id == self.understanding.profile_question:
            return True
        return reading.place is not None and question_id in self._place_answers(reading.place)

    def _reachable(self, start: str | None) -> set[str]:
        """Questions that may still be asked from ``start``, following every choice."""
        cached = self._reachable_cache.get(start or "")
        if cached is not None:
            return set(cached)
        seen: set[str] = set()
        todo = [start] if start else []
        while todo:
            current = todo.pop()
            question = self.kb.questions.get(current)
            if question is None or current in seen:
                continue
            seen.add(current)
            todo += [c.next or "" for c in question.choices]
            todo += [branch.next for branch in question.next_when]
            todo.append(question.next or "")
        self._reachable_cache[start or ""] = frozenset(seen)
        return seen

    def _said(self, session: Session, reading: Reading, asked: str) -> str:
        """« J'ai compris : … » in one line, from what ``reading`` brought in this message."""
        lang = session.lang
        items: list[str] = []
        profile_q = self.understanding.profile_question
        experience_q = self.understanding.experience_question
        condition = ""
        if reading.condition and experience_q:
            category = _choice(
                self.kb.questions[experience_q],
                self.understanding.conditions[reading.condition].category,
            )
            phrase = self.understanding.condition_text(reading.condition, lang)
            # « (santé mentale) » would nest inside the say-back's own brackets.
            label = re.sub(r"\s*\([^)]*\)$", "", _lower_first(text(category.label, lang)))
            condition = (
                phrase
                if normalize(phrase) == normalize(label)
                else self.msg("said_condition", session, condition=phrase, category=label)
            )
        profile = (reading.answers.get(profile_q) or [""])[0] if profile_q else ""
        experience = (reading.answers.get(experience_q) or [""])[0] if experience_q else ""
        if not condition and profile and experience and experience != "autre" and experience_q:
            # No condition named, but a category: « vous vivez avec un cancer ».
            label = text(_choice(self.kb.questions[experience_q], experience).label, lang)
            condition = _lower_first(label)
            reading.answers[experience_q] = reading.answers[experience_q][1:]
        relative = reading.relative or ""
        place_answers = self._place_answers(reading.place) if reading.place else {}
        ordered = sorted(reading.answers.items(), key=lambda item: item[0] != profile_q)
        for qid, choices in ordered:
            question = self.kb.questions.get(qid)
            if question is None or qid in place_answers:
                continue
            if qid == profile_q:
                key = {"patient": "said_patient", "proche": "said_proche"}.get(
                    str(profile), "said_pro"
                )
                if key == "said_proche" and relative:
                    key = "said_relative"
                if condition and key != "said_pro":
                    items.append(
                        self.msg(
                            key + "_condition", session, condition=condition, relative=relative
                        )
                    )
                    condition = ""
                else:
                    items.append(self.msg(key, session, relative=relative))
                continue
            if qid == experience_q and reading.condition:
                if condition:
                    items.append(condition)
                    condition = ""
                category_id = self.understanding.conditions[reading.condition].category
                choices = [c for c in choices if c != category_id]
                if not choices:
                    continue
            for choice_id in choices:
                if _has(question, choice_id):
                    label = self._label(_choice(question, choice_id), session)
                    items.append(self.msg("said_choice", session, label=label))
        if condition:
            items.append(condition)
        if reading.place:
            items.append(
                self.msg(
                    "said_place", session, place=self.understanding.place_text(reading.place, lang)
                )
            )
        if not items:
            return ""
        return self.msg("said_intro", session, items=" ; ".join(items))

    def _place_answers(self, place_id: str) -> dict[str, str]:
        """The answers a place gives (``pays: fr, region: bretagne``), found by reverse lookup
        of the choices that set its territory (or a parent territory) and the path to them."""
        place = self.understanding.places.get(place_id)
        if place is None:
            return {}
        cached = self._place_paths.get(place.territory)
        if cached is not None:
            return cached
        questions = self.kb.questions
        found: dict[str, str] = {}
        territory: str | None = place.territory
        while territory and not found:
            for qid, question in questions.items():
                for choice in question.choices:
                    if choice.sets.get("territory") == territory:
                        found = {qid: choice.id}
                        break
                    if (
                        choice.id == territory
                        and qid in self.understanding.place_questions
                        and not choice.sets
                    ):
                        found = {qid: choice.id}
                        break
                if found:
                    break
            parent = self.kb.territories.get(territory)
            territory = parent.parent if parent else None
        # Walk back: which choice leads to the question found (pays: fr -> region)?
        for _ in range(len(questions)):
            first = next(iter(found), None)
            if first is None:
                break
            before = next(
                (
                    (qid, choice.id)
                    for qid, question in questions.items()
                    for choice in question.choices
                    if choice.next == first and qid not in found
                ),
                None,
            )
            if before is None:
                break
            found = {before[0]: before[1], **found}
        self._place_paths[place.territory] = found
        return found

    def _advance(self, session: Session, target: str | None, replies: list[Reply]) -> Turn:
        """Go to ``target``, answering on the way every question already answered in advance."""
        for _ in range(len(self.kb.questions) + 1):
            if target == RECOMMENDATION:
                return self._recommend(session, replies)
            if target == EXIT or target is None or target not in self.kb.questions:
                session = replace(session, node=EXITED)
                return self.turn(session, *replies, self.prompt(session))
            prefill = dict(session.extra.get("prefill") or {})
            question = self.kb.questions[target]
            country = country_of(self.kb, facts_of(self.kb, session.answers))
            ready = [
                c
                for c in prefill.pop(target, [])
                if _has(question, c) and offered(_choice(question, c), country)
            ]
            if not ready:
                break
            extra = {**session.extra, "prefill": prefill}
            if not prefill:
                extra.pop("prefill")
            session = replace(session, extra=extra)
            for choice_id in ready:
                session = session.answered(target, choice_id)
            target = next_target(
                question, _choice(question, ready[0]), facts_of(self.kb, session.answers)
            )
        session = replace(session, node=str(target))
        return self.turn(session, *replies, self.prompt(session))

    def _settled(self, session: Session) -> Session:
        """The question is answered: the repair ladder starts again from the first rung."""
        extra = {
            k: v for k, v in session.extra.items() if k not in ("misses", "offer_skip", "last_miss")
        }
        return replace(session, extra=extra)

    def _skip(self, session: Session, question: Question) -> Turn:
        """« Je ne sais pas » / « passer »: an unknown answer, and the conversation goes on."""
        replies = [Reply(self.msg("skipped", session))]
        session = replace(session.answered(session.node, UNKNOWN), stopped_at=None)
        facts = facts_of(self.kb, session.answers)
        target = next((b.next for b in question.next_when if holds(b.when, facts)), question.next)
        return self._advance(self._settled(session), target, replies)

    def _smalltalk(self, session: Session, index: str) -> Turn:
        talk = self.kb.language.smalltalk[int(index)]
        return self.turn(session, Reply(text(talk.reply, session.lang)), self.prompt(session))

    def _not_that(self, session: Session, undo: object | None) -> Turn:
        """« Ce n'est pas ça »: forget what the last message brought and ask again."""
        if not isinstance(undo, dict):
            return self.turn(
                session, Reply(self.msg("not_that_nothing", session)), self.prompt(session)
            )
        extra = {
            k: v
            for k, v in session.extra.items()
            if k not in ("prefill", "condition", "place", "relative")
        }
        for key in ("prefill", "condition", "place", "relative"):
            if undo.get(key):
                extra[key] = undo[key]
        restored = replace(
            session,
            node=str(undo.get("node") or session.node),
            answers=tuple((str(q), str(c)) for q, c in undo.get("answers") or []),
            extra=extra,
        )
        return self.turn(restored, Reply(self.msg("not_that_done", session)), self.prompt(restored))

    def _missed(self, session: Session, question: Question, plain: str) -> Turn:
        """Nothing understood at a question: climb the repair ladder, never the same line twice."""
        misses = session.extra.get("misses")
        count = 1
        if isinstance(misses, dict) and misses.get("node") == session.node:
            count = int(misses.get("count", 0)) + 1
        last = session.extra.get("last_miss")
        lang = session.lang
        choices: tuple[Choice, ...] = ()
        extra = {**session.extra, "misses": {"node": session.node, "count": count}}
        if count == 1:
            key = "repair_first" if question.example else "repair_first_plain"
            if key == last:
                key = "repair_first_plain" if key == "repair_first" else "repair_first"
                key = (
                    key if question.example or key == "repair_first_plain" else "repair_second_list"
                )
            body = (
                self.msg(key, session, example=text(question.example, lang))
                if question.example
                else self.msg(key, session)
            )
            if question.help:
                body += "\n" + text(question.help, lang)
        elif count == 2:
            country = country_of(self.kb, facts_of(self.kb, session.answers))
            closest = [c for c in self._closest(question, plain) if offered(c, country)]
            if closest:
                key = "repair_second"
                options = " ou ".join(f"« {self._label(c, session)} »" for c in closest)
                body = self.msg(key, session, options=options)
                choices = tuple(Choice(c.id, self._label(c, session)) for c in closest)
            else:
                key = "repair_second_list"
                country = country_of(self.kb, facts_of(self.kb, session.answers))
                shown = [c for c in question.choices if offered(c, country)]
                lines = [
                    f"{number}. {self._label(c, session)}"
                    for number, c in enumerate(shown, start=1)
                ]
                body = "\n".join([self.msg(key, session), *lines])
        else:
            key = "repair_third" if count % 2 else "repair_fourth"
            extra["offer_skip"] = session.node
            body = self.msg(key, session)
        extra["last_miss"] = key
        session = replace(session, extra=extra)
        if choices:
            full = (*choices, Choice(SKIP, self.msg("skip_button", session)))
            return self.turn(session, Reply(body, full))
        return self.turn(session, Reply(body), self.prompt(session))

    def _closest(self, question: Question, plain: str) -> list[Option]:
        """The one or two choices nearest to what was typed, if any is near enough."""
        scored: list[tuple[float, int]] = []
        for index, choice in enumerate(question.choices):
            phrases = [*choice.label.values(), *(w for ws in choice.synonyms.values() for w in ws)]
            best = max(fuzz.WRatio(plain, normalize(p)) for p in phrases)
            scored.append((best, index))
        scored.sort(reverse=True)
        near = [question.choices[i] for score, i in scored[:2] if score >= CLOSEST_CUTOFF]
        return near

    def crisis_reply(self, session: Session) -> Reply:
        """The crisis numbers of the person's country (for channels that screen before the
        engine runs, e.g. Telegram before consent)."""
        territory = facts_of(self.kb, session.answers).get(self.kb.flow.territory_fact)
        country = (
            self.kb.territories[territory].country if territory in self.kb.territories else None
        )
        return Reply(self.safety.crisis_text(country, session.lang))

    def _crisis(self, session: Session) -> Turn:
        """Crisis numbers of the person's country first; then the conversation goes on."""
        body = self.crisis_reply(session).text
        if session.extra.get("mode"):
            resume = Choice(RESUME, self.msg("back_to_question", session))
            return self.turn(session, Reply(body, (resume,)))
        return self.turn(session, Reply(body), self.prompt(session))

    def _not_understood(self, session: Session) -> Turn:
        """Never the same « pas compris » sentence twice in a row."""
        key = "not_understood"
        if session.extra.get("last_miss") == key:
            key = "not_understood_again"
        session = replace(session, extra={**session.extra, "last_miss": key})
        return self.turn(session, Reply(self.msg(key, session)), self.prompt(session))

    def _answer(self, session: Session, question: Question, index: int, echo: bool = False) -> Turn:
        choice = question.choices[index]
        country = country_of(self.kb, facts_of(self.kb, session.answers))
        if not offered(choice, country):
            return self._not_understood(session)  # a choice that does not hold in their country
        replies: list[Reply] = []
        if echo:
            label = text(choice.label_in.get(country or "") or choice.label, session.lang)
            replies.append(Reply(self.msg("understood_as", session, label=label)))
        session = replace(session.answered(session.node, choice.id), stopped_at=None)
        target = next_target(question, choice, facts_of(self.kb, session.answers))
        return self._advance(self._settled(session), target, replies)

    def lead(self, session: Session) -> tuple[str, str] | None:
        """The answer the person said comes first among several (several wishes), while it
        still holds for their answers; None: they all weigh the same."""
        held = session.extra.get("lead")
        if not isinstance(held, dict):
            return None
        question_id, options = leads_that_matter(self.kb, session.answers)
        if list(options) != list(held.get("among") or []) or not held.get("choice"):
            return None
        return question_id, str(held["choice"])

    def _lead_asked(self, session: Session) -> bool:
        """Was « which comes first? » answered for these very wishes (even « autant »)?"""
        held = session.extra.get("lead")
        _, options = leads_that_matter(self.kb, session.answers)
        return isinstance(held, dict) and list(options) == list(held.get("among") or [])

    def _lead_reply(self, session: Session) -> Reply:
        question_id, options = leads_that_matter(self.kb, session.answers)
        question = self.kb.questions[question_id]
        choices = [Choice(LEAD + c, self._label(_choice(question, c), session)) for c in options]
        choices.append(Choice(LEAD, self.msg("wish_lead_equal", session)))
        return Reply(self.msg("wish_lead", session), tuple(choices))

    def _set_lead(self, session: Session, choice_id: str) -> Turn:
        _, options = leads_that_matter(self.kb, session.answers)
        if choice_id and choice_id not in options:
            return self._stale(session)
        lead = {"choice": choice_id, "among": list(options)}
        chosen = replace(session, pending=None, extra={**session.extra, "lead": lead})
        return self._recommend(chosen, [])

    def _typed_lead(self, session: Session, raw: str, plain: str) -> str | None:
        """The wish named in answer to « which comes first? » ("" for « les deux »)."""
        question_id, options = leads_that_matter(self.kb, session.answers)
        if plain in self.understanding.equal:
            return ""
        if plain.isdigit() and 1 <= int(plain) <= len(options):
            return options[int(plain) - 1]
        reading = self.understanding.read(raw, question_id, self._country(session))
        named = [c for c in reading.answers.get(question_id, []) if c in options]
        if len(named) == 1 and not reading.negated:
            return named[0]
        found = self.matcher.choice(question_id, plain)
        if found is not None and self.kb.questions[question_id].choices[found.index].id in options:
            return self.kb.questions[question_id].choices[found.index].id
        return None

    def result(self, session: Session) -> Recommendation:
        """The recommendation for the session's answers, as the person is shown it."""
        gender = session.extra.get("gender")
        return recommend(
            self.kb,
            session.answers,
            session.context,
            session.lang,
            str(gender or "") or None,
            condition=_named_condition(session),
            lead=self.lead(session),
        )

    def _recommend(self, session: Session, replies: list[Reply]) -> Turn:
        if not self._lead_asked(session) and leads_that_matter(self.kb, session.answers)[1]:
            # Which wish comes first changes the first role: ask, once, before recommending.
            asking = replace(session, pending=Pending.WISH_LEAD)
            return self.turn(asking, *replies, self.prompt(asking))
        session = replace(session, node=RECOMMENDED)
        result = self.result(session)
        if result.roles:
            replies.append(Reply(self._intro(session)))
            for rank, role in enumerate(result.roles, start=1):
                replies.append(Reply(self._render_role(session, rank, role), kind=ROLE))
        else:
            replies.append(Reply(self.msg("recommendation_none", session)))
        replies.append(
            self._contacts_reply(
                session, list(result.contacts), result.territory, result.contacts_note
            )
        )
        if result.guide:
            replies.append(Reply(self._render_guide(session), kind=GUIDE))
        replies.append(self.prompt(session))
        event = Event(
            events.CONVERSATION_COMPLETED,
            {
                "roles": [role.id for role in result.roles],
                "territory": result.territory,
                "context": session.context,
                "kb_version": self.kb.version,
            },
        )
        return self.turn(session, *replies, recommendation=result, events=(event,))

    def _intro(self, session: Session) -> str:
        """The recommendation's first line, naming the condition the person named, if any."""
        condition = str(session.extra.get("condition") or "")
        profile = facts_of(self.kb, session.answers).get("profile")
        if condition not in self.understanding.conditions or profile not in ("patient", "proche"):
            return self.msg("recommendation_intro", session)
        phrase = self.understanding.condition_text(condition, session.lang)
        key = "said_patient_condition" if profile == "patient" else "said_proche_condition"
        relative = str(session.extra.get("relative") or "")
        if profile == "proche" and relative:
            key = "said_relative_condition"
        who = self.msg(key, session, condition=phrase, relative=relative)
        return self.msg("recommendation_intro_named", session, who=who[:1].upper() + who[1:])

    # -- rendering -----------------------------------------------------------------------
    def _render_role(self, session: Session, rank: int, role: RoleMatch) -> str:
        lines = [f"{rank}. {role.title}", role.definition]
        if role.reasons:
            lines += ["", self.msg("reasons", session), *(f"• {r}" for r in role.reasons)]
        if role.to_start:
            lines += ["", self.msg("to_start", session), *(f"• {r}" for r in role.to_start)]
        if role.not_yet:
            lines += ["", self.msg("not_yet", session)]
            lines += [f"• {need} {how}" for need, how in role.not_yet]
        if role.first_steps:
            lines += ["", self.msg("first_steps", session), *(f"• {s}" for s in role.first_steps)]
        if role.caution:
            lines += ["", f"{self.msg('caution', session)} {role.caution}"]
        return "\n".join(lines)

    def _render_guide(self, session: Session) -> str:
        guide = self.kb.guide
        country = country_of(self.kb, facts_of(self.kb, session.answers))
        lines = [self.msg("guide_intro", session), "", text(guide.title, session.lang)]
        for section in guide.sections:
            if not holds_in(section.countries, country):
                continue
            lines += ["", text(section.title, session.lang)]
            lines += [f"• {text(point, session.lang)}" for point in section.points]
            lines += [f"⚠ {text(point, session.lang)}" for point in section.vigilance]
        return "\n".join(lines)

    def _contacts_reply(
        self,
        session: Session,
        contacts: list[ContactInfo],
        territory: str | None,
        note: str | None = None,
    ) -> Reply:
        if territory is None:
            return Reply(self.msg("contacts_need_territory", session))
        if not contacts:
            return Reply(self.msg("contacts_none", session))
        place = territory or ""
        if territory in self.kb.territories:
            place = text(self.kb.territories[territory].name, session.lang)
        lines = [self.msg("contacts_intro", session, territory=place)]
        if note:
            lines.append(note)
        for contact in contacts:
            lines += ["", f"• {contact.name} — {contact.website}", f"  {contact.description}"]
            if contact.why:
                lines.append(f"  {self.msg('contact_why', session)} {contact.why}")
            if contact.phone:
                lines.append(f"  ☎ {contact.phone}")
            if contact.email:
                lines.append(f"  ✉ {contact.email}")
        return Reply("\n".join(lines), kind=CONTACTS)

    # -- commands ------------------------------------------------------------------------
    def _command(self, session: Session, name: str) -> Turn:
        if name in ("aide", "help"):
            lines = [self.msg("help", session)]
            question = self.kb.questions.get(session.node)
            if question is not None:
                country = country_of(self.kb, facts_of(self.kb, session.answers))
                help_text = question.help_in.get(country or "") or question.help
                if help_text:
                    lines.insert(0, text(help_text, session.lang))
            return self.turn(session, Reply("\n\n".join(lines)), self.prompt(session))
        if name == "retour":
            return self._back(session)
        if name == "recommencer":
            if not session.answers:
                fresh = replace(session, node=self.kb.flow.start, pending=None, stopped_at=None)
                return self.turn(fresh, Reply(self.msg("restarted", session)), self.prompt(fresh))
            pending = replace(session, pending=Pending.RESTART)
            return self.turn(pending, self.prompt(pending))
        if name == "contacts":
            return self._contacts(session)
        if name in ("glossaire", "glossary"):
            return self._glossary(session)
        if name == "stop":
            stopped = replace(
                session,
                node=EXITED,
                pending=None,
                stopped_at=session.node if session.node in self.kb.questions else None,
            )
            return self.turn(stopped, self.prompt(stopped))
        if name in ("start", "demarrer"):
            return self.start(session.context, session.lang, _owner(session))
        if name == RELATION:
            return self._relation(session)
        if name in self.modes:
            return self.modes[name].handle(self, session, Input.command(name))
        return self._not_understood(session)

    def _confirm(self, session: Session, yes: bool) -> Turn:
        if session.pending == Pending.WISH_LEAD:
            return self.turn(session, self.prompt(session))
        if session.pending in (
            Pending.CONTACT_CONSENT,
            Pending.CONTACT_HOW,
            Pending.CONTACT_CONFIRM,
        ):
            return self._relation_answer(session, yes)
        if not yes:
            cleared = replace(session, pending=None)
            return self.turn(cleared, self.prompt(cleared))
        fresh = replace(
            self.new_session(session.context, session.lang),
            node=self.kb.flow.start,
            turns=session.turns,
            extra=session.extra,
        )
        return self.turn(fresh, Reply(self.msg("restarted", session)), self.prompt(fresh))

    def _back(self, session: Session) -> Turn:
        session = replace(session, pending=None)
        if session.node == EXITED and session.stopped_at in self.kb.questions:
            back = replace(session, node=session.stopped_at, stopped_at=None)
            return self.turn(back, self.prompt(back))
        if not session.answers:
            start = replace(session, node=self.kb.flow.start)
            return self.turn(start, Reply(self.msg("back_at_start", session)), self.prompt(start))
        question_id, _ = session.answers[-1]
        answers = session.answers
        while answers and answers[-1][0] == question_id:
            answers = answers[:-1]
        back = replace(self._settled(session), node=question_id, answers=answers, stopped_at=None)
        return self.turn(back, self.prompt(back))

    def _contacts(self, session: Session) -> Turn:
        facts = facts_of(self.kb, session.answers)
        territory = facts.get(self.kb.flow.territory_fact)
        if territory is None:
            return self.turn(
                session, Reply(self.msg("contacts_need_territory", session)), self.prompt(session)
            )
        roles: list[str] = []
        if session.node == RECOMMENDED:
            result = recommend(self.kb, session.answers, session.context, session.lang)
            roles = [role.id for role in result.roles]
        selection = select_contacts(
            self.kb,
            territory,
            roles,
            session.context,
            session.lang,
            facts=facts,
            condition=_named_condition(session),
        )
        reply = self._contacts_reply(session, list(selection.contacts), territory, selection.note)
        return self.turn(session, reply, self.prompt(session))

    def _glossary(self, session: Session, unknown: bool = False) -> Turn:
        lines = []
        if unknown:
            lines.append(self.msg("glossary_unknown", session))
        lines.append(self.msg("glossary_intro", session))
        country = country_of(self.kb, facts_of(self.kb, session.answers))
        choices = [
            Choice(
                TERM + term_id,
                text(term.term, session.lang),
                text(term.short, session.lang) if term.short else None,
            )
            for term_id, term in self.kb.glossary.items()
            if country is None or holds_in(term.countries, country)  # not another country's
        ]
        choices.append(Choice(RESUME, self.msg("back_to_question", session)))
        session = replace(session, extra={**session.extra, "glossary": True})
        return self.turn(session, Reply("\n".join(lines), tuple(choices)))

    def definition(self, term_id: str, session: Session) -> str | None:
        """« RU : … » for a glossary term, or None if there is no such term."""
        term = self.kb.glossary.get(term_id)
        if term is None:
            return None
        return f"{text(term.term, session.lang)} : {text(term.definition, session.lang)}"

    def _define(self, session: Session, term_id: str) -> Turn:
        body = self.definition(term_id, session)
        if body is None:
            return self._stale(session)
        term = self.kb.glossary[term_id]
        if term.countries:
            country = country_of(self.kb, facts_of(self.kb, session.answers))
            names = [
                text(self.kb.crisis.countries[c].name, session.lang)
                for c in term.countries
                if c in self.kb.crisis.countries
            ]
            if country is None:
                body += "\n" + self.msg("term_where", session, countries=", ".join(names))
            elif not holds_in(term.countries, country):
                body += "\n" + self.msg("term_elsewhere", session, countries=", ".join(names))
        return self.turn(session, Reply(body), self.prompt(session))

    # -- being put in touch ----------------------------------------------------------------
    def _relation_prompt(self, session: Session) -> Reply | None:
        """The step of a contact request the session waits on, if any."""
        if session.pending == Pending.CONTACT_CONSENT:
            names = ", ".join(str(name) for name in session.extra.get("handoff_names", []))
            return Reply(
                self.msg("relation_consent", session, establishments=names),
                (
                    Choice(CONFIRM, self.msg("relation_accept", session)),
                    Choice(CANCEL, self.msg("relation_refuse", session)),
                ),
            )
        if session.pending == Pending.CONTACT_HOW:
            return Reply(
                self.msg("relation_how", session),
                (Choice(CANCEL, self.msg("relation_refuse", session)),),
            )
        if session.pending == Pending.CONTACT_CONFIRM:
            how = str(session.extra.get("contact_how", ""))
            return Reply(
                self.msg("relation_confirm", session, how=how),
                (
                    Choice(CONFIRM, self.msg("relation_send", session)),
                    Choice(CANCEL, self.msg("relation_refuse", session)),
                ),
            )
        return None

    def _relation_how(self, session: Session, raw: str) -> Turn:
        """How the person wants to be reached, as typed (one line, bounded), then confirm."""
        how = " ".join(raw.split())[:MAX_CONTACT_HOW]
        ready = replace(
            session, pending=Pending.CONTACT_CONFIRM, extra={**session.extra, "contact_how": how}
        )
        return self.turn(ready, self.prompt(ready))

    def _relation(self, session: Session) -> Turn:
        """Start a contact request, only if an establishment would receive it: say who, ask
        consent. Otherwise give the contacts' own details and first steps, and promise nothing."""
        if session.node != RECOMMENDED:
            return self.turn(
                session, Reply(self.msg("relation_unavailable", session)), self.prompt(session)
            )
        receivers = self.handoff(session)
        result = recommend(
            self.kb,
            session.answers,
            session.context,
            session.lang,
            condition=_named_condition(session),
        )
        if not receivers:
            lines = [self.msg("relation_nobody", session)]
            steps = [step for role in result.roles for step in role.first_steps]
            if steps:
                lines += ["", self.msg("first_steps", session)]
                lines += [f"• {step}" for step in dict.fromkeys(steps)]
            contacts = self._contacts_reply(
                session, list(result.contacts), result.territory, result.contacts_note
            )
            return self.turn(session, Reply("\n".join(lines)), contacts, self.prompt(session))
        asking = replace(
            session,
            pending=Pending.CONTACT_CONSENT,
            extra={
                **session.extra,
                "handoff_ids": [r.id for r in receivers],
                "handoff_names": [r.name for r in receivers],
            },
        )
        return self.turn(asking, self.prompt(asking))

    def _relation_answer(self, session: Session, yes: bool) -> Turn:
        extra = {
            k: v
            for k, v in session.extra.items()
            if k not in ("handoff_ids", "handoff_names", "contact_how")
        }
        if not yes:
            cleared = replace(session, pending=None, extra=extra)
            return self.turn(
                cleared, Reply(self.msg("relation_cancelled", session)), self.prompt(cleared)
            )
        if session.pending == Pending.CONTACT_CONSENT:
            asking = replace(session, pending=Pending.CONTACT_HOW)
            return self.turn(asking, self.prompt(asking))
        if session.pending == Pending.CONTACT_HOW:
            return self.turn(session, self.prompt(session))
        consented = [str(i) for i in session.extra.get("handoff_ids", [])]
        receivers = [r for r in self.handoff(session) if r.id in consented]
        if not receivers:  # the deployment changed since consent: send nothing, say so
            done = replace(session, pending=None, extra=extra)
            return self.turn(done, Reply(self.msg("relation_gone", session)), self.prompt(done))
        result = recommend(self.kb, session.answers, session.context, session.lang)
        event = Event(
            events.CONTACT_REQUESTED,
            {
                "establishments": [r.id for r in receivers],
                "contacts": [c.id for c in result.contacts],
                "roles": [role.id for role in result.roles],
                "territory": result.territory,
                "context": session.context,
                "how_to_reach": str(session.extra.get("contact_how", "")),
                "consent": True,
                "kb_version": self.kb.version,
            },
        )
        done = replace(session, pending=None, extra=extra)
        names = ", ".join(r.name for r in receivers)
        sent = Reply(self.msg("relation_sent", session, establishments=names))
        return self.turn(done, sent, self.prompt(done), events=(event,))


def _has(question: Question, choice_id: str) -> bool:
    return any(choice.id == choice_id for choice in question.choices)


def _choice(question: Question, choice_id: str) -> Option:
    return next(choice for choice in question.choices if choice.id == choice_id)


def _more(reading: Reading, asked: str) -> bool:
    """Does the reading hold more than the answer to the asked question?"""
    return bool(
        reading.condition
        or reading.place
        or any(q != asked for q in reading.answers)
        or len(reading.answers.get(asked, [])) > 1
    )


def _lower_first(value: str) -> str:
    return value[:1].lower() + value[1:] if value[:2] != value[:2].upper() else value


def _named_condition(session: Session) -> str | None:
    """The condition the person named (an id of ``lexique/conditions.yaml``), if any."""
    value = session.extra.get("condition")
    return str(value) if value else None


def _all_key(fact: str) -> str:
    """The ``understood`` key listing every answer of a multiple-answer fact."""
    return "wishes" if fact == "wish" else f"{fact}_all"
