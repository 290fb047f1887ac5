"""From the person's answers to ranked roles, reasons, requirements and contacts.

Everything here is traceable: a role's score is the sum of the points its chosen answers give
(``flow.yaml``), and each reason is the ``reason`` text of one of those answers. What is said
depends on the person's country: a rule marked for one country (``countries: [fr]``) is never
told to a person of another; there, the role's ``local`` rules, or an honest « demandez à … ».
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from bot.engine.places import country_of, holds, holds_in, territory_chain
from bot.engine.replies import ContactInfo, Recommendation, RoleMatch
from bot.knowledge.model import (
    Choice,
    ConditionalScores,
    Contact,
    KnowledgeBase,
    LocalRules,
    Requirement,
    Role,
    text,
)

T = TypeVar("T")

__all__ = [
    "MAX_CONTACTS",
    "ContactSelection",
    "contacts_for",
    "facts_of",
    "holds",
    "leads_that_matter",
    "recommend",
    "select_contacts",
    "territory_chain",
]

MAX_CONTACTS = 7


def facts_of(kb: KnowledgeBase, answers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The facts (``profile=patient``, ``territory=fr-occitanie``…) set by the answers."""
    facts: dict[str, str] = {}
    for question_id, choice_id in answers:
        question = kb.questions.get(question_id)
        if question is None:
            continue
        facts[question.fact] = choice_id
        for choice in question.choices:
            if choice.id == choice_id:
                facts.update(choice.sets)
    return facts


def is_carer(kb: KnowledgeBase, facts: dict[str, str]) -> bool:
    return holds(kb.flow.carer_when, facts)


@dataclass(frozen=True)
class ContactSelection:
    contacts: tuple[ContactInfo, ...]
    #: Set when the list had to fall back to a wider level (or to other roles): say so.
    note: str | None = None


def _info(
    kb: KnowledgeBase, contact_id: str, contact: Contact, lang: str, own: bool
) -> ContactInfo:
    return ContactInfo(
        id=contact_id,
        name=text(contact.name, lang),
        description=text(contact.description, lang),
        website=contact.website,
        territories=tuple(contact.territories),
        roles=tuple(contact.roles),
        phone=contact.phone,
        email=contact.email,
        why=text(contact.why, lang) if contact.why else "",
        own=own,
    )


def own_levels(chain: list[str]) -> list[str]:
    """The person's own territory: the region below a country, or the country alone."""
    return chain[:-1] if len(chain) > 1 else chain


def select_contacts(
    kb: KnowledgeBase,
    territory: str | None,
    roles: Iterable[str] = (),
    context: str | None = None,
    lang: str = "fr",
    limit: int = MAX_CONTACTS,
    facts: dict[str, str] | None = None,
    condition: str | None = None,
) -> ContactSelection:
    """Contacts serving the territory (and, if given, the roles), the establishment's first.

    A contact with ``only_when`` conditions is kept only if the person's answers meet one, and
    one for given diseases (``conditions``) is not shown to a person who named another. The
    list is never empty when the territory has contacts: without one for these roles, it falls
    back to the nearest level, then to the territory's other contacts, and ``note`` says so.
    At least one contact of the person's own territory is always included when one exists."""
    chain = territory_chain(kb, territory)
    if not chain:
        return ContactSelection(())
    own = own_levels(chain)
    ordered = list(roles)
    wanted = set(ordered)
    known = dict(facts or {})
    candidates: list[tuple[tuple[int, int, int, int, int], int, str, Contact]] = []
    for order, (contact_id, contact) in enumerate(kb.contacts.items()):
        places = [chain.index(t) for t in contact.territories if t in chain]
        if "*" in contact.territories:
            places.append(len(chain))
        if not places:
            continue
        if contact.only_when and not any(holds(c, known) for c in contact.only_when):
            continue
        if condition and contact.conditions and condition not in contact.conditions:
            continue
        first = 0 if context and contact.establishment == context else 1
        specific = 0 if condition in contact.conditions else 1 if contact.only_when else 2
        served = len(wanted.intersection(contact.roles))
        # The person's first role matters most, then the nearest level, then contacts for
        # their own condition (``only_when``), then how many of their roles it serves.
        top = 0 if ordered and ordered[0] in contact.roles else 1
        key = (first, top, min(places), specific, -served)
        candidates.append((key, order, contact_id, contact))
    candidates.sort(key=lambda item: (item[0], item[1]))

    def is_own(contact: Contact) -> bool:
        return any(t in own for t in contact.territories)

    relevant = [c for c in candidates if not wanted or wanted.intersection(c[3].roles)]
    note: str | None = None
    place = text(kb.territories[chain[0]].name, lang)
    chosen = relevant[:limit]
    if not relevant:
        chosen = candidates[:limit]
        if chosen:
            note = text(kb.messages.get("contacts_fallback_roles"), lang).format(territory=place)
    elif not any(is_own(c[3]) for c in relevant):
        general = [c for c in candidates if is_own(c[3])]
        if general:
            chosen = [general[0], *relevant[: limit - 1]]
        note = text(kb.messages.get("contacts_fallback_level"), lang).format(territory=place)
    elif not any(is_own(c[3]) for c in chosen):
        chosen = [next(c for c in relevant if is_own(c[3])), *chosen[: limit - 1]]
    contacts = tuple(
        _info(kb, cid, contact, lang, is_own(contact)) for _, _, cid, contact in chosen
    )
    return ContactSelection(contacts, note or None)


def contacts_for(
    kb: KnowledgeBase,
    territory: str | None,
    roles: Iterable[str] = (),
    context: str | None = None,
    lang: str = "fr",
    limit: int = MAX_CONTACTS,
    facts: dict[str, str] | None = None,
) -> list[ContactInfo]:
    """The contacts of :func:`select_contacts`, without the note."""
    return list(select_contacts(kb, territory, roles, context, lang, limit, facts).contacts)


def role_title(
    kb: KnowledgeBase, role: Role, facts: dict[str, str], lang: str, gender: str | None = None
) -> str:
    """The role's title, in carer wording for a proche-aidant, and in the feminine for a
    person who spoke of herself so (``gender == "f"``)."""
    feminine = gender == "f"
    if role.carer and role.carer.title and is_carer(kb, facts):
        if feminine and role.carer.title_f:
            return text(role.carer.title_f, lang)
        return text(role.carer.title, lang)
    if feminine and role.title_f:
        return text(role.title_f, lang)
    return text(role.title, lang)


def role_definition(kb: KnowledgeBase, role: Role, facts: dict[str, str], lang: str) -> str:
    if role.carer and role.carer.definition and is_carer(kb, facts):
        return text(role.carer.definition, lang)
    return text(role.definition, lang)


def _reason(
    kb: KnowledgeBase, choice: Choice | ConditionalScores, facts: dict[str, str], lang: str
) -> str:
    """The reason an answer gives, in a proche-aidant's words when there are some."""
    if choice.carer_reason and is_carer(kb, facts):
        return text(choice.carer_reason, lang)
    return text(choice.reason, lang) if choice.reason else ""


@dataclass(frozen=True)
class RoleRules:
    """What the person is told about starting a role, for their country."""

    requirements: tuple[Requirement, ...]
    first_steps: tuple[str, ...]
    caution: str | None


def rules_for(
    kb: KnowledgeBase, role_id: str, facts: dict[str, str], lang: str = "fr"
) -> RoleRules:
    """The role's requirements, first steps and caution where the person lives.

    Requirements marked for other countries are left out; if the role's own first steps and
    caution hold elsewhere only, the role's ``local`` rules for this country (or ``"*"``) are
    used, and where they are silent an honest « les conditions dépendent de votre pays »."""
    role = kb.roles[role_id]
    country = country_of(kb, facts)
    carer = is_carer(kb, facts)
    requirements = [r for r in role.requirements if holds_in(r.countries, country)]
    if holds_in(role.countries, country):
        steps = list(role.first_steps)
        if carer and role.carer and role.carer.first_steps:
            steps = list(role.carer.first_steps)
        for extra in role.steps_when:
            if holds(extra.when, facts):
                steps += extra.steps
        caution = text(role.caution, lang) if role.caution else None
        return RoleRules(tuple(requirements), tuple(text(s, lang) for s in steps), caution)
    # The country's own block first, then « * » for what it leaves out.
    blocks = [b for b in (role.local.get(country or ""), role.local.get("*")) if b is not None]

    def first(get: Callable[[LocalRules], T | None]) -> T | None:
        return next((value for value in map(get, blocks) if value), None)

    local_requirements = first(lambda b: b.requirements) or []
    requirements += [r for r in local_requirements if holds_in(r.countries, country)]
    steps_out = [text(s, lang) for s in first(lambda b: b.first_steps) or []]
    for conditional in first(lambda b: b.steps_when) or []:
        if holds(conditional.when, facts):
            steps_out += [text(s, lang) for s in conditional.steps]
    local_caution = first(lambda b: b.caution)
    caution = text(local_caution, lang) if local_caution else None
    ask = [
        text(kb.contacts[c].name, lang) for c in first(lambda b: b.ask) or [] if c in kb.contacts
    ]
    if not steps_out or ask:
        who = ", ".join(ask) if ask else text(kb.messages.get("rules_ask_default"), lang)
        steps_out.append(text(kb.messages.get("rules_elsewhere"), lang).format(who=who))
    return RoleRules(tuple(requirements), tuple(steps_out), caution)


#: How much more the wish that comes first counts (see :func:`leads_that_matter`).
LEAD_WEIGHT = 2


def _ranked(
    kb: KnowledgeBase,
    answers: tuple[tuple[str, str], ...],
    lang: str,
    lead: tuple[str, str] | None = None,
) -> tuple[list[str], dict[str, int], dict[str, list[str]]]:
    """Eligible roles, best first, with their scores and reasons. Every answer counts the
    same (several wishes weigh equally), except ``lead`` — the wish the person said comes
    first — which counts :data:`LEAD_WEIGHT` times."""
    facts = facts_of(kb, answers)
    scores: dict[str, int] = defaultdict(int)
    reasons: dict[str, list[str]] = defaultdict(list)

    def add(role_id: str, points: int, reason: str) -> None:
        scores[role_id] += points
        if points > 0 and reason and reason not in reasons[role_id]:
            reasons[role_id].append(reason)

    for question_id, choice_id in answers:
        question = kb.questions.get(question_id)
        choice = (
            next((c for c in question.choices if c.id == choice_id), None) if question else None
        )
        if choice is None:
            continue
        weight = LEAD_WEIGHT if lead == (question_id, choice_id) else 1
        for role_id, points in choice.scores.items():
            add(role_id, points * weight, _reason(kb, choice, facts, lang))
        for extra in choice.scores_when:
            if holds(extra.when, facts):
                for role_id, points in extra.scores.items():
                    add(role_id, points * weight, _reason(kb, extra, facts, lang))
    order = {role_id: index for index, role_id in enumerate(kb.roles)}
    eligible = [
        role_id
        for role_id, role in kb.roles.items()
        if holds(role.only_when, facts) and scores[role_id] > 0
    ]
    eligible.sort(key=lambda role_id: (-scores[role_id], order[role_id]))
    return eligible, scores, reasons


def leads_that_matter(
    kb: KnowledgeBase, answers: tuple[tuple[str, str], ...]
) -> tuple[str, tuple[str, ...]]:
    """Several answers to one question (several wishes) whose order changes the first role
    recommended: (question id, those answers). ``("", ())`` when the order changes nothing —
    then the bot never asks which comes first."""
    for question_id, question in kb.questions.items():
        if not question.multiple:
            continue
        given = list(dict.fromkeys(c for q, c in answers if q == question_id))
        if len(given) < 2:
            continue
        firsts = {
            choice_id: next(iter(_ranked(kb, answers, "fr", (question_id, choice_id))[0]), None)
            for choice_id in given
        }
        if len(set(firsts.values())) > 1:
            return question_id, tuple(given)
    return "", ()


def recommend(
    kb: KnowledgeBase,
    answers: tuple[tuple[str, str], ...],
    context: str | None = None,
    lang: str = "fr",
    gender: str | None = None,
    condition: str | None = None,
    lead: tuple[str, str] | None = None,
) -> Recommendation:
    """The roles for these answers, best first, with contacts. ``lead``: the answer the
    person said comes first among several (it counts more)."""
    facts = facts_of(kb, answers)
    eligible, scores, reasons = _ranked(kb, answers, lang, lead)
    rules = kb.flow.recommendation
    chosen = [r for r in eligible if scores[r] >= rules.min_score][: rules.max_roles]
    if not chosen:
        chosen = eligible[:1]
    matches = []
    for role_id in chosen:
        role = kb.roles[role_id]
        local = rules_for(kb, role_id, facts, lang)
        to_start: list[str] = []
        not_yet: list[tuple[str, str]] = []
        for requirement in local.requirements:
            if requirement.met_when is None or holds(requirement.met_when, facts):
                to_start.append(text(requirement.text, lang))
            else:
                not_yet.append((text(requirement.text, lang), text(requirement.how_to, lang)))
        matches.append(
            RoleMatch(
                id=role_id,
                title=role_title(kb, role, facts, lang, gender),
                definition=role_definition(kb, role, facts, lang),
                score=scores[role_id],
                reasons=tuple(reasons[role_id]),
                to_start=tuple(to_start),
                not_yet=tuple(not_yet),
                first_steps=local.first_steps,
                caution=local.caution,
            )
        )
    territory = facts.get(kb.flow.territory_fact)
    selection = select_contacts(
        kb, territory, chosen, context, lang, facts=facts, condition=condition
    )
    country = country_of(kb, facts)
    return Recommendation(
        roles=tuple(matches),
        contacts=selection.contacts,
        territory=territory,
        guide=any(kb.roles[r].show_guide for r in chosen),
        contacts_note=selection.note,
        country=country,
    )
