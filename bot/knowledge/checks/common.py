"""What every check shares: the problem at a file and line, the facts the flow can set,
the countries of the base, and the messages a feature needs."""

from __future__ import annotations

from collections import defaultdict

from bot.knowledge.model import SHORT_LIMIT, Condition, KnowledgeBase, Text
from bot.knowledge.problems import Problem


def _at(kb: KnowledgeBase, name: str, path: tuple[str | int, ...], kind: str = "") -> str:
    key = str(path[1]) if kind and len(path) > 1 else ""
    return kb.file(name, kind, key)


def problem(
    kb: KnowledgeBase,
    name: str,
    path: tuple[str | int, ...],
    message: str,
    *,
    kind: str = "",
    severity: str = "error",
) -> Problem:
    file = _at(kb, name, path, kind)
    return Problem(kb.source_map.locate(file, path), message, severity)


def known_facts(kb: KnowledgeBase) -> dict[str, set[str]]:
    """Every fact the flow can set, with the values it can take."""
    facts: dict[str, set[str]] = defaultdict(set)
    for question in kb.questions.values():
        for choice in question.choices:
            facts[question.fact].add(choice.id)
            for fact, value in choice.sets.items():
                facts[fact].add(value)
    return facts


def check_condition(
    kb: KnowledgeBase,
    condition: Condition | None,
    facts: dict[str, set[str]],
    name: str,
    path: tuple[str | int, ...],
) -> list[Problem]:
    problems: list[Problem] = []
    for fact, values in (condition or {}).items():
        if fact not in facts:
            problems.append(
                problem(
                    kb,
                    name,
                    (*path, fact),
                    f"la condition porte sur « {fact} », qu'aucune question ne renseigne "
                    f"(connues : {', '.join(sorted(facts))})",
                )
            )
            continue
        for value in values:
            if value not in facts[fact]:
                problems.append(
                    problem(
                        kb,
                        name,
                        (*path, fact),
                        f"« {fact} » ne peut pas valoir « {value} » "
                        f"(valeurs possibles : {', '.join(sorted(facts[fact]))})",
                    )
                )
    return problems


def all_countries(kb: KnowledgeBase) -> frozenset[str]:
    return frozenset(t.country for t in kb.territories.values())


def question_with_fact(kb: KnowledgeBase, fact: str) -> str | None:
    return next((qid for qid, q in kb.questions.items() if q.fact == fact), None)


def check_feature_messages(kb: KnowledgeBase, keys: tuple[str, ...], what: str) -> list[Problem]:
    missing = [key for key in keys if key not in kb.messages]
    if not missing:
        return []
    message = f"messages {what} manquants : {', '.join(missing)}"
    return [problem(kb, "messages.yaml", ("messages",), message)]


def unknown_role(
    kb: KnowledgeBase, name: str, path: tuple[str | int, ...], role_id: str, kind: str = ""
) -> list[Problem]:
    """A role named in ``name`` that ``roles.yaml`` does not define (none if it does)."""
    if role_id in kb.roles:
        return []
    message = f"le rôle « {role_id} » n'existe pas dans roles.yaml"
    return [problem(kb, name, path, message, kind=kind)]


def long_label(
    kb: KnowledgeBase,
    name: str,
    path: tuple[str | int, ...],
    label: Text,
    *,
    field: str = "short:",
    note: str = "",
    kind: str = "",
) -> list[Problem]:
    """A warning when a button label is too long for a phone (Telegram cuts it); the caller
    skips it when a ``short`` form exists."""
    long = [value for value in label.values() if len(value) > SHORT_LIMIT]
    if not long:
        return []
    message = (
        f"« {long[0]} » a {len(long[0])} caractères : trop long pour un bouton de téléphone ; "
        f"ajoutez un libellé court « {field} » ({SHORT_LIMIT} au plus{note})"
    )
    return [problem(kb, name, path, message, kind=kind, severity="warning")]
