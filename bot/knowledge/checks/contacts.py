"""``contacts.yaml`` and ``territories.yaml``: every reference exists, every contact names its
public source and why it is proposed, is re-checked within a year, and every territory the
flow sets has a contact of its own."""

from __future__ import annotations

import datetime as dt
import re

from bot.knowledge.checks.common import check_condition, problem, unknown_role
from bot.knowledge.model import KnowledgeBase
from bot.knowledge.problems import Problem

STALE_AFTER = dt.timedelta(days=365)


#: Territories whose contacts are those of another question (an alias asking which one) or
#: of nobody in particular: they need no contact of their own.
NO_OWN_CONTACT = frozenset({"autre"})


def check_contacts(kb: KnowledgeBase, today: dt.date, facts: dict[str, set[str]]) -> list[Problem]:
    problems = []
    for contact_id, contact in kb.contacts.items():
        base = ("contacts", contact_id)
        for index, condition in enumerate(contact.only_when):
            file = kb.file("contacts.yaml", "contacts", contact_id)
            problems += check_condition(kb, condition, facts, file, (*base, "only_when", index))
        known = {c.id for c in kb.conditions.conditions} if kb.conditions else set()
        for index, condition_id in enumerate(contact.conditions):
            if condition_id not in known:
                problems.append(
                    problem(
                        kb,
                        "contacts.yaml",
                        (*base, "conditions", index),
                        f"la maladie « {condition_id} » n'existe pas dans lexique/conditions.yaml",
                        kind="contacts",
                    )
                )
        for index, territory in enumerate(contact.territories):
            if territory != "*" and territory not in kb.territories:
                problems.append(
                    problem(
                        kb,
                        "contacts.yaml",
                        (*base, "territories", index),
                        f"le territoire « {territory} » n'existe pas dans territories.yaml "
                        "(ou « * » pour partout)",
                        kind="contacts",
                    )
                )
        for index, role_id in enumerate(contact.roles):
            where = (*base, "roles", index)
            problems += unknown_role(kb, "contacts.yaml", where, role_id, kind="contacts")
        if today - contact.checked > STALE_AFTER:
            problems.append(
                problem(
                    kb,
                    "contacts.yaml",
                    (*base, "checked"),
                    f"« {contact_id} » a été vérifié le {contact.checked.isoformat()}, il y a plus "
                    "de 12 mois : revérifiez le site puis mettez la date à jour",
                    kind="contacts",
                    severity="warning",
                )
            )
        if contact.checked > today:
            problems.append(
                problem(
                    kb,
                    "contacts.yaml",
                    (*base, "checked"),
                    "la date de vérification est dans le futur",
                    kind="contacts",
                )
            )
    return problems


def check_contact_facts(kb: KnowledgeBase) -> list[Problem]:
    """Each contact names the page it was checked on and says why it is proposed; each
    territory the flow can set has at least one contact of its own."""
    problems: list[Problem] = []
    for contact_id, contact in kb.contacts.items():
        base = ("contacts", contact_id)
        if not any(re.match(r"^https?://", source) for source in contact.sources):
            problems.append(
                problem(
                    kb,
                    "contacts.yaml",
                    (*base, "sources"),
                    f"« {contact_id} » : nommez la page publique (https://…) où ce contact et son "
                    "adresse ont été vus",
                    kind="contacts",
                )
            )
        if contact.why is None:
            problems.append(
                problem(
                    kb,
                    "contacts.yaml",
                    base,
                    f"« {contact_id} » : ajoutez « why », une phrase « pourquoi ce contact » "
                    "montrée à la personne",
                    kind="contacts",
                )
            )
    covered = {t for contact in kb.contacts.values() for t in contact.territories}
    for qid, question in kb.questions.items():
        for index, choice in enumerate(question.choices):
            territory = choice.sets.get(kb.flow.territory_fact)
            if territory is None or territory in NO_OWN_CONTACT or territory in covered:
                continue
            problems.append(
                problem(
                    kb,
                    "flow.yaml",
                    ("questions", qid, "choices", index, "sets"),
                    f"le territoire « {territory} » n'a aucun contact à lui dans contacts.yaml",
                )
            )
    return problems


def check_territories(kb: KnowledgeBase) -> list[Problem]:
    problems = []
    for territory_id, territory in kb.territories.items():
        if territory.parent and territory.parent not in kb.territories:
            problems.append(
                problem(
                    kb,
                    "territories.yaml",
                    ("territories", territory_id, "parent"),
                    f"le territoire parent « {territory.parent} » n'existe pas",
                )
            )
        if territory.country not in kb.crisis.countries:
            problems.append(
                problem(
                    kb,
                    "territories.yaml",
                    ("territories", territory_id, "country"),
                    f"aucun numéro d'urgence pour le pays « {territory.country} » dans crisis.yaml",
                    severity="warning",
                )
            )
    return problems
