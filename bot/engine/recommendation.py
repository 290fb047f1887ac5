"""From the person's answers to ranked roles, reasons, requirements and contacts.

Everything here is traceable: a role's score is the sum of the points its chosen answers give
(``flow.yaml``), and each reason is the ``reason`` text of one of those answers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from bot.engine.replies import ContactInfo, Recommendation, RoleMatch
from bot.knowledge.model import Condition, KnowledgeBase, Role, text

MAX_CONTACTS = 6


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


def holds(condition: Condition | None, facts: dict[str, str]) -> bool:
    return all(facts.get(fact) in values for fact, values in (condition or {}).items())


def territory_chain(kb: KnowledgeBase, territory: str | None) -> list[str]:
    """``fr-occitanie`` -> ``["fr-occitanie", "fr"]``: most specific first."""
    chain: list[str] = []
    while territory and territory in kb.territories and territory not in chain:
        chain.append(territory)
        territory = kb.territories[territory].parent
    return chain


def contacts_for(
    kb: KnowledgeBase,
    territory: str | None,
    roles: Iterable[str] = (),
    context: str | None = None,
    lang: str = "fr",
    limit: int = MAX_CONTACTS,
    facts: dict[str, str] | None = None,
) -> list[ContactInfo]:
    """Contacts serving the territory (and, if given, the roles), the establishment's first;
    a contact with ``only_when`` conditions is kept only if the person's answers meet one."""
    chain = territory_chain(kb, territory)
    wanted = set(roles)
    ranked: list[tuple[tuple[int, int, int], int, ContactInfo]] = []
    for order, (contact_id, contact) in enumerate(kb.contacts.items()):
        places = [chain.index(t) for t in contact.territories if t in chain]
        if "*" in contact.territories:
            places.append(len(chain))
        if not places:
            continue
        served = wanted.intersection(contact.roles)
        if wanted and not served:
            continue
        if contact.only_when and not any(holds(c, facts or {}) for c in contact.only_when):
            continue
        own = 0 if context and contact.establishment == context else 1
        info = ContactInfo(
            id=contact_id,
            name=text(contact.name, lang),
            description=text(contact.description, lang),
            website=contact.website,
            territories=tuple(contact.territories),
            roles=tuple(contact.roles),
            phone=contact.phone,
            email=contact.email,
        )
        ranked.append(((own, min(places), -len(served)), order, info))
    ranked.sort(key=lambda item: (item[0], item[1]))
    return [info for _, _, info in ranked[:limit]]


def role_title(kb: KnowledgeBase, role: Role, facts: dict[str, str], lang: str) -> str:
    if role.carer and role.carer.title and holds(kb.flow.carer_when, facts):
        return text(role.carer.title, lang)
    return text(role.title, lang)


def role_definition(kb: KnowledgeBase, role: Role, facts: dict[str, str], lang: str) -> str:
    if role.carer and role.carer.definition and holds(kb.flow.carer_when, facts):
        return text(role.carer.definition, lang)
    return text(role.definition, lang)


def recommend(
    kb: KnowledgeBase,
    answers: tuple[tuple[str, str], ...],
    context: str | None = None,
    lang: str = "fr",
) -> Recommendation:
    facts = facts_of(kb, answers)
    scores: dict[str, int] = defaultdict(int)
    reasons: dict[str, list[str]] = defaultdict(list)
    for question_id, choice_id in answers:
        question = kb.questions.get(question_id)
        choice = (
            next((c for c in question.choices if c.id == choice_id), None) if question else None
        )
        if choice is None:
            continue
        for role_id, points in choice.scores.items():
            scores[role_id] += points
            if points > 0 and choice.reason:
                reason = text(choice.reason, lang)
                if reason not in reasons[role_id]:
                    reasons[role_id].append(reason)
    order = {role_id: index for index, role_id in enumerate(kb.roles)}
    eligible = [
        role_id
        for role_id, role in kb.roles.items()
        if holds(role.only_when, facts) and scores[role_id] > 0
    ]
    eligible.sort(key=lambda role_id: (-scores[role_id], order[role_id]))
    rules = kb.flow.recommendation
    chosen = [r for r in eligible if scores[r] >= rules.min_score][: rules.max_roles]
    if not chosen:
        chosen = eligible[:1]
    matches = []
    for role_id in chosen:
        role = kb.roles[role_id]
        to_start: list[str] = []
        not_yet: list[tuple[str, str]] = []
        for requirement in role.requirements:
            if requirement.met_when is None or holds(requirement.met_when, facts):
                to_start.append(text(requirement.text, lang))
            else:
                not_yet.append((text(requirement.text, lang), text(requirement.how_to, lang)))
        matches.append(
            RoleMatch(
                id=role_id,
                title=role_title(kb, role, facts, lang),
                definition=role_definition(kb, role, facts, lang),
                score=scores[role_id],
                reasons=tuple(reasons[role_id]),
                to_start=tuple(to_start),
                not_yet=tuple(not_yet),
                first_steps=tuple(text(step, lang) for step in role.first_steps),
                caution=text(role.caution, lang) if role.caution else None,
            )
        )
    territory = facts.get(kb.flow.territory_fact)
    return Recommendation(
        roles=tuple(matches),
        contacts=tuple(contacts_for(kb, territory, chosen, context, lang, facts=facts)),
        territory=territory,
        guide=any(kb.roles[r].show_guide for r in chosen),
    )
