"""Every user-facing text of the base with the countries whose people can read it (for the
rules by country)."""

from __future__ import annotations

from bot.knowledge.checks.common import all_countries
from bot.knowledge.model import COUNTRY_FACT, KnowledgeBase


def _is_text(value: object) -> bool:
    """A user-facing :data:`Text` (language -> string), as opposed to other mappings."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and len(k) == 2 and isinstance(v, str) for k, v in value.items())
    )


def statements(
    kb: KnowledgeBase, states: dict[str, set[frozenset[str]]]
) -> list[tuple[str, tuple[str | int, ...], str, frozenset[str], str]]:
    """Every user-facing text with the countries it can reach: (file, path, kind, reach, text)."""
    everywhere = all_countries(kb)
    out: list[tuple[str, tuple[str | int, ...], str, frozenset[str], str]] = []

    def add(
        file: str, path: tuple[str | int, ...], reach: frozenset[str], value: object, kind: str = ""
    ) -> None:
        if isinstance(value, dict):
            for item in value.values():
                if isinstance(item, str):
                    out.append((file, path, kind, reach, item))

    def marked(countries: list[str], within: frozenset[str] = everywhere) -> frozenset[str]:
        return within.intersection(countries) if countries else within

    for qid, question in kb.questions.items():
        asked = frozenset().union(*states.get(qid, set())) if states.get(qid) else frozenset()
        base = ("questions", qid)
        add("flow.yaml", (*base, "text"), asked, question.text)
        overridden = frozenset(question.help_in)
        if question.help:
            add("flow.yaml", (*base, "help"), asked - overridden, question.help)
        for country, value in question.help_in.items():
            add("flow.yaml", (*base, "help_in", country), asked & {country}, value)
        for field_name, value in question:  # any other text shown with the question (« why »…)
            if field_name not in ("text", "help") and _is_text(value):
                add("flow.yaml", (*base, field_name), asked, value)
        for index, choice in enumerate(question.choices):
            path = (*base, "choices", index)
            shown = marked(choice.countries, asked)
            add("flow.yaml", (*path, "label"), shown - frozenset(choice.label_in), choice.label)
            for country, value in choice.label_in.items():
                add("flow.yaml", (*path, "label_in", country), shown & {country}, value)
            for field_name in ("reason", "carer_reason"):
                add("flow.yaml", (*path, field_name), shown, getattr(choice, field_name))
            for number, extra in enumerate(choice.scores_when):
                when = frozenset(extra.when.get(COUNTRY_FACT, shown))
                for field_name in ("reason", "carer_reason"):
                    add(
                        "flow.yaml",
                        (*path, "scores_when", number),
                        shown & when,
                        getattr(extra, field_name),
                    )
    for role_id, role in kb.roles.items():
        base = ("roles", role_id)
        own = marked(role.countries)
        for field_name in ("title", "definition"):
            add("roles.yaml", (*base, field_name), everywhere, getattr(role, field_name))
        for index, item in enumerate(role.does):
            add("roles.yaml", (*base, "does", index), everywhere, item)
        if role.carer:
            for field_name in ("title", "definition"):
                add("roles.yaml", (*base, "carer"), everywhere, getattr(role.carer, field_name))
            for item in role.carer.does or []:
                add("roles.yaml", (*base, "carer", "does"), everywhere, item)
            for item in role.carer.first_steps or []:
                add("roles.yaml", (*base, "carer", "first_steps"), own, item)
        for index, requirement in enumerate(role.requirements):
            where = marked(requirement.countries)
            add("roles.yaml", (*base, "requirements", index), where, requirement.text)
            add("roles.yaml", (*base, "requirements", index), where, requirement.how_to)
        for field_name in ("training", "time_commitment", "compensation", "caution"):
            add("roles.yaml", (*base, field_name), own, getattr(role, field_name))
        for index, step in enumerate(role.first_steps):
            add("roles.yaml", (*base, "first_steps", index), own, step)
        for index, conditional in enumerate(role.steps_when):
            when = own.intersection(conditional.when.get(COUNTRY_FACT, own))
            for step in conditional.steps:
                add("roles.yaml", (*base, "steps_when", index), when, step)
        if role.testimonial:
            add("roles.yaml", (*base, "testimonial"), own, role.testimonial.quote)
        for key, local in role.local.items():
            # « * » also fills the fields a country's own block leaves out.
            where = frozenset({key}) if key != "*" else everywhere - own
            lpath = (*base, "local", key)
            for index, requirement in enumerate(local.requirements):
                inner = marked(requirement.countries, where)
                add("roles.yaml", (*lpath, "requirements", index), inner, requirement.text)
                add("roles.yaml", (*lpath, "requirements", index), inner, requirement.how_to)
            for index, step in enumerate(local.first_steps):
                add("roles.yaml", (*lpath, "first_steps", index), where, step)
            for index, conditional in enumerate(local.steps_when):
                for step in conditional.steps:
                    add("roles.yaml", (*lpath, "steps_when", index), where, step)
            add("roles.yaml", (*lpath, "caution"), where, local.caution)
    for term_id, term in kb.glossary.items():
        where = marked(term.countries)
        add("glossary.yaml", ("terms", term_id), where, term.term, "terms")
        add("glossary.yaml", ("terms", term_id, "definition"), where, term.definition, "terms")
    for index, section in enumerate(kb.guide.sections):
        where = marked(section.countries)
        spath: tuple[str | int, ...] = ("sections", index)
        add("guide.yaml", spath, where, section.title)
        for number, point in enumerate(section.points):
            add("guide.yaml", (*spath, "points", number), where, point)
        for number, point in enumerate(section.vigilance):
            add("guide.yaml", (*spath, "vigilance", number), where, point)
    add("guide.yaml", ("title",), everywhere, kb.guide.title)
    add("guide.yaml", ("intro",), everywhere, kb.guide.intro)
    for contact_id, contact in kb.contacts.items():
        where = (
            everywhere
            if "*" in contact.territories
            else frozenset(
                kb.territories[t].country for t in contact.territories if t in kb.territories
            )
        )
        base = ("contacts", contact_id)
        for field_name in ("name", "description", "why"):
            add(
                "contacts.yaml",
                (*base, field_name),
                where,
                getattr(contact, field_name),
                "contacts",
            )
    for key, value in kb.messages.items():
        add("messages.yaml", ("messages", key), everywhere, value)
    add("safety.yaml", ("medical_reply",), everywhere, kb.safety.medical_reply)
    add("crisis.yaml", ("intro",), everywhere, kb.crisis.intro)
    return out
