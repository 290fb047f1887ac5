"""The conversation engine: ``(session, input) -> Turn(replies, new session)``.

Pure: it imports no channel, no storage, no network. Every channel (terminal, Telegram, HTTP)
drives the same :class:`Engine`, so a conversation test written once covers them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from bot.engine.matching import MAX_MATCH_LENGTH, Matcher
from bot.engine.normalize import normalize
from bot.engine.places import (
    Receiver,
    asked_after_the_country,
    country_of,
    country_question,
    handoff_receivers,
    holds_in,
    next_target,
    offered,
    territory_chain,
)
from bot.engine.recommendation import facts_of, recommend, select_contacts
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
from bot.engine.session import EXITED, NOT_STARTED, RECOMMENDED, Input, Session
from bot.knowledge.model import EXIT, RECOMMENDATION, KnowledgeBase, Question, text
from bot.knowledge.model import Choice as QuestionChoice

#: Messages longer than this are not analysed at all (they are answered kindly).
MAX_TEXT_LENGTH = 2000

CMD = "cmd:"
TERM = "term:"
CONFIRM = "cmd:confirmer"
CANCEL = "cmd:annuler"
RESUME = "cmd:reprendre"
RELATION = "relation"
#: Longest "how to reach me" text kept for a contact request.
MAX_CONTACT_HOW = 500


@dataclass(frozen=True)
class Turn:
    """The engine's answer to one input."""

    replies: tuple[Reply, ...]
    session: Session
    recommendation: Recommendation | None = None
    events: tuple[Event, ...] = field(default=())

    @property
    def node(self) -> str:
        return self.session.node

    def to_dict(self) -> dict[str, object]:
        return {
            "replies": [reply.to_dict() for reply in self.replies],
            "node": self.session.node,
            "recommendation": self.recommendation.to_dict() if self.recommendation else None,
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
        if session.answers:
            choices.append(Choice(CMD + "retour", self._command_label("retour", session)))
        return Reply(text(question.text, session.lang), tuple(choices))

    @staticmethod
    def _short(choice: QuestionChoice, country: str | None, lang: str) -> str | None:
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
        if session.pending == "restart":
            return Reply(self.msg("restart_confirm", session), yes_no)
        if session.pending == "contact_consent":
            names = ", ".join(str(name) for name in session.extra.get("handoff_names", []))
            return Reply(
                self.msg("relation_consent", session, establishments=names),
                (
                    Choice(CONFIRM, self.msg("relation_accept", session)),
                    Choice(CANCEL, self.msg("relation_refuse", session)),
                ),
            )
        if session.pending == "contact_how":
            return Reply(
                self.msg("relation_how", session),
                (Choice(CANCEL, self.msg("relation_refuse", session)),),
            )
        if session.pending == "contact_confirm":
            how = str(session.extra.get("contact_how", ""))
            return Reply(
                self.msg("relation_confirm", session, how=how),
                (
                    Choice(CONFIRM, self.msg("relation_send", session)),
                    Choice(CANCEL, self.msg("relation_refuse", session)),
                ),
            )
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
        return Turn(tuple(replies), session, recommendation, events)

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
        if event.kind == "text" and self.safety.is_distress(screen(event.value)):
            turn = self._crisis(session)
        else:
            turn = self._dispatch(session, event)
        if notes:
            turn = replace(turn, replies=(*notes, *turn.replies))
        return turn

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
            if q in questions and any(choice.id == c for choice in questions[q].choices)
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
        mode = self.modes.get(str(session.extra.get("mode", "")))
        if mode is not None:
            return mode.handle(self, session, event)
        if event.kind == "command":
            return self._command(session, event.value.lstrip("/").strip().lower())
        if event.kind == "choice":
            return self._choice(session, event)
        return self._text(session, event.value)

    def _choice(self, session: Session, event: Input) -> Turn:
        value = event.value
        if value in (CONFIRM, CANCEL):
            if session.pending:
                return self._confirm(session, value == CONFIRM)
            return self._stale(session)
        if value == RESUME:
            return self.turn(session, self.prompt(session))
        if value.startswith(CMD):
            return self._command(session, value[len(CMD) :])
        if value.startswith(TERM):
            return self._define(session, value[len(TERM) :])
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

    def _text(self, session: Session, raw: str) -> Turn:
        if len(raw) > MAX_TEXT_LENGTH:
            return self.turn(session, Reply(self.msg("too_long", session)), self.prompt(session))
        norm = normalize(raw)
        if not norm:
            return self._not_understood(session)
        if session.pending:
            answer = self.matcher.confirmation(norm)
            if answer is not None and session.pending != "contact_how":
                return self._confirm(session, answer)
            if answer is False:
                return self._confirm(session, False)
        command = self.matcher.command(norm)
        if command is None and session.pending == "contact_how":
            how = " ".join(raw.split())[:MAX_CONTACT_HOW]
            ready = replace(
                session, pending="contact_confirm", extra={**session.extra, "contact_how": how}
            )
            return self.turn(ready, self.prompt(ready))
        for mode in self.modes.values():
            if norm in mode.words:
                return mode.handle(self, session, Input.command(mode.name))
        if command is not None:
            return self._command(session, command)
        asked, term_id = self.matcher.glossary_question(norm)
        if term_id is not None:
            return self._define(session, term_id)
        if asked:
            return self._glossary(session, unknown=True)
        if session.pending:
            return self._not_understood(session)
        if session.node in self.kb.questions and len(norm) <= MAX_MATCH_LENGTH:
            match = self.matcher.choice(session.node, norm)
            if match is not None:
                session = self._note_gender(session, norm)
                question = self.kb.questions[session.node]
                index = self._shown_number(session, question, norm, match.index)
                return self._answer(session, question, index, echo=not match.exact)
        if session.node == RECOMMENDED:
            action = self.matcher.term(norm)
            if action is not None:
                return self._define(session, action)
        if self.safety.is_medical(norm):
            reply = Reply(text(self.kb.safety.medical_reply, session.lang))
            return self.turn(session, reply, self.prompt(session))
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

    def _crisis(self, session: Session) -> Turn:
        """Crisis numbers of the person's country first; then the conversation goes on."""
        territory = facts_of(self.kb, session.answers).get(self.kb.flow.territory_fact)
        country = (
            self.kb.territories[territory].country if territory in self.kb.territories else None
        )
        body = self.safety.crisis_text(country, session.lang)
        if session.extra.get("mode"):
            resume = Choice(RESUME, self.msg("back_to_question", session))
            return self.turn(session, Reply(body, (resume,)))
        return self.turn(session, Reply(body), self.prompt(session))

    def _not_understood(self, session: Session) -> Turn:
        return self.turn(session, Reply(self.msg("not_understood", session)), self.prompt(session))

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
        if target == RECOMMENDATION:
            return self._recommend(session, replies)
        if target == EXIT or target is None or target not in self.kb.questions:
            session = replace(session, node=EXITED)
            return self.turn(session, *replies, self.prompt(session))
        session = replace(session, node=target)
        return self.turn(session, *replies, self.prompt(session))

    def _recommend(self, session: Session, replies: list[Reply]) -> Turn:
        session = replace(session, node=RECOMMENDED)
        gender = session.extra.get("gender")
        result = recommend(
            self.kb, session.answers, session.context, session.lang, str(gender or "") or None
        )
        if result.roles:
            replies.append(Reply(self.msg("recommendation_intro", session)))
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
            "conversation.completed",
            {
                "roles": [role.id for role in result.roles],
                "territory": result.territory,
                "context": session.context,
                "kb_version": self.kb.version,
            },
        )
        return self.turn(session, *replies, recommendation=result, events=(event,))

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
            pending = replace(session, pending="restart")
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
        if session.pending in ("contact_consent", "contact_how", "contact_confirm"):
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
        back = replace(session, node=question_id, answers=session.answers[:-1], stopped_at=None)
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
            self.kb, territory, roles, session.context, session.lang, facts=facts
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
        return self.turn(session, Reply("\n".join(lines), tuple(choices)))

    def _define(self, session: Session, term_id: str) -> Turn:
        term = self.kb.glossary.get(term_id)
        if term is None:
            return self._stale(session)
        body = f"{text(term.term, session.lang)} : {text(term.definition, session.lang)}"
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
    def _relation(self, session: Session) -> Turn:
        """Start a contact request, only if an establishment would receive it: say who, ask
        consent. Otherwise give the contacts' own details and first steps, and promise nothing."""
        if session.node != RECOMMENDED:
            return self.turn(
                session, Reply(self.msg("relation_unavailable", session)), self.prompt(session)
            )
        receivers = self.handoff(session)
        result = recommend(self.kb, session.answers, session.context, session.lang)
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
            pending="contact_consent",
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
        if session.pending == "contact_consent":
            asking = replace(session, pending="contact_how")
            return self.turn(asking, self.prompt(asking))
        if session.pending == "contact_how":
            return self.turn(session, self.prompt(session))
        consented = [str(i) for i in session.extra.get("handoff_ids", [])]
        receivers = [r for r in self.handoff(session) if r.id in consented]
        if not receivers:  # the deployment changed since consent: send nothing, say so
            done = replace(session, pending=None, extra=extra)
            return self.turn(done, Reply(self.msg("relation_gone", session)), self.prompt(done))
        result = recommend(self.kb, session.answers, session.context, session.lang)
        event = Event(
            "contact.requested",
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
