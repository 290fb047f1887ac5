"""Reply layout: questions and their buttons, the say-back line (« J'ai compris : … »), roles, the
guide and contacts.

Functions of the :class:`~bot.engine.flow.Engine` (their ``self``), bound there as methods.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bot.engine.base import (
    CMD,
    NOT_THAT,
    PLACE,
    RELATION,
    SKIP,
    choice_of,
    has_choice,
    lower_first,
)
from bot.engine.normalize import normalize
from bot.engine.places import (
    country_of,
    holds_in,
    offered,
)
from bot.engine.recommendation import facts_of
from bot.engine.replies import (
    CONTACTS,
    Choice,
    ContactInfo,
    Reply,
    RoleMatch,
)
from bot.engine.session import (
    Session,
)
from bot.engine.understanding import Reading
from bot.knowledge.model import Choice as Option
from bot.knowledge.model import text

if TYPE_CHECKING:
    from bot.engine.flow import Engine


def question_reply(self: Engine, session: Session, question_id: str) -> Reply:
    question = self.kb.questions[question_id]
    country = country_of(self.kb, facts_of(self.kb, session.answers))
    choices = [
        Choice(c.id, text(c.label_in.get(country or "") or c.label, session.lang), short)
        for c in question.choices
        if offered(c, country)
        for short in [self._short(c, country, session.lang)]
    ]
    if session.offer_skip == question_id:
        choices.append(Choice(SKIP, self.msg("skip_button", session)))
    if session.undo is not None:
        choices.append(Choice(NOT_THAT, self.msg("not_that", session)))
    if session.answers:
        choices.append(Choice(CMD + "retour", self._command_label("retour", session)))
    return Reply(text(question.text, session.lang), tuple(choices))


def short(choice: Option, country: str | None, lang: str) -> str | None:
    """The short form of the label shown: a country's own label has its own (``short_in``)."""
    if country and country in choice.label_in:
        short = choice.short_in.get(country)
        return text(short, lang) if short else None
    return text(choice.short, lang) if choice.short else None


def actions(self: Engine, session: Session) -> tuple[Choice, ...]:
    actions = []
    if self.handoff(session):
        actions.append(Choice(CMD + RELATION, self.msg("relation_button", session)))
    for mode in self.modes.values():
        actions.append(Choice(CMD + mode.name, self.msg(f"{mode.name}_button", session)))
    names = ("contacts", "glossaire", "recommencer")
    actions += [Choice(CMD + n, self._command_label(n, session)) for n in names]
    return tuple(actions)


def label(self: Engine, choice: Option, session: Session) -> str:
    """A choice's label as shown in the person's country (``label_in``)."""
    country = country_of(self.kb, facts_of(self.kb, session.answers))
    return text(choice.label_in.get(country or "") or choice.label, session.lang)


def place_choices(self: Engine, place_ids: list[str], session: Session) -> tuple[Choice, ...]:
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


def said(self: Engine, session: Session, reading: Reading, asked: str) -> str:
    """« J'ai compris : … » in one line, from what ``reading`` brought in this message."""
    lang = session.lang
    items: list[str] = []
    profile_q = self.understanding.profile_question
    experience_q = self.understanding.experience_question
    condition = ""
    if reading.condition and experience_q:
        category = choice_of(
            self.kb.questions[experience_q],
            self.understanding.conditions[reading.condition].category,
        )
        phrase = self.understanding.condition_text(reading.condition, lang)
        # « (santé mentale) » would nest inside the say-back's own brackets.
        label = re.sub(r"\s*\([^)]*\)$", "", lower_first(text(category.label, lang)))
        condition = (
            phrase
            if normalize(phrase) == normalize(label)
            else self.msg("said_condition", session, condition=phrase, category=label)
        )
    profile = (reading.answers.get(profile_q) or [""])[0] if profile_q else ""
    experience = (reading.answers.get(experience_q) or [""])[0] if experience_q else ""
    if not condition and profile and experience and experience != "autre" and experience_q:
        # No condition named, but a category: « vous vivez avec un cancer ».
        label = text(choice_of(self.kb.questions[experience_q], experience).label, lang)
        condition = lower_first(label)
        reading.answers[experience_q] = reading.answers[experience_q][1:]
    relative = reading.relative or ""
    place_answers = self._place_answers(reading.place) if reading.place else {}
    ordered = sorted(reading.answers.items(), key=lambda item: item[0] != profile_q)
    for qid, choices in ordered:
        question = self.kb.questions.get(qid)
        if question is None or qid in place_answers:
            continue
        if qid == profile_q:
            key = {"patient": "said_patient", "proche": "said_proche"}.get(str(profile), "said_pro")
            if key == "said_proche" and relative:
                key = "said_relative"
            if condition and key != "said_pro":
                items.append(
                    self.msg(key + "_condition", session, condition=condition, relative=relative)
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
            if has_choice(question, choice_id):
                label = self._label(choice_of(question, choice_id), session)
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


def intro(self: Engine, session: Session) -> str:
    """The recommendation's first line, naming the condition the person named, if any."""
    condition = session.condition or ""
    profile = facts_of(self.kb, session.answers).get("profile")
    if condition not in self.understanding.conditions or profile not in ("patient", "proche"):
        return self.msg("recommendation_intro", session)
    phrase = self.understanding.condition_text(condition, session.lang)
    key = "said_patient_condition" if profile == "patient" else "said_proche_condition"
    relative = session.relative or ""
    if profile == "proche" and relative:
        key = "said_relative_condition"
    who = self.msg(key, session, condition=phrase, relative=relative)
    return self.msg("recommendation_intro_named", session, who=who[:1].upper() + who[1:])


def render_role(self: Engine, session: Session, rank: int, role: RoleMatch) -> str:
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


def render_guide(self: Engine, session: Session) -> str:
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


def contacts_reply(
    self: Engine,
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
