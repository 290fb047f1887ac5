"""Rules by country: a text using one country's words reaches people of that country only,
a choice marked for some countries comes after the country is known, and every country id
named exists."""

from __future__ import annotations

import re
from collections import defaultdict

from bot.knowledge.checks.common import all_countries, problem, unknown_role
from bot.knowledge.checks.texts import statements
from bot.knowledge.model import COUNTRY_FACT, RECOMMENDATION, Choice, KnowledgeBase, Question
from bot.knowledge.problems import Problem


def _targets(question: Question, choice: Choice) -> set[str]:
    if choice.next:
        return {choice.next}
    targets = {branch.next for branch in question.next_when}
    if question.next:
        targets.add(question.next)
    return targets


def country_states(kb: KnowledgeBase) -> dict[str, set[frozenset[str]]]:
    """For each question (and ``recommendation``), the sets of countries a person asked it may
    be from: the whole set while the country is unknown, one country once it is known."""
    everywhere = all_countries(kb)
    states: dict[str, set[frozenset[str]]] = defaultdict(set)
    todo: list[tuple[str, frozenset[str]]] = [(kb.flow.start, everywhere)]
    while todo:
        node, state = todo.pop()
        if state in states[node]:
            continue
        states[node].add(state)
        question = kb.questions.get(node)
        if question is None:
            continue
        for choice in question.choices:
            reach = state.intersection(choice.countries) if choice.countries else state
            if len(state) == 1 and not reach:
                continue  # hidden from this country by the engine
            after = _state_after(kb, question, choice, reach or state)
            for target in _targets(question, choice):
                if target in kb.questions or target == RECOMMENDATION:
                    todo.append((target, after))
    return states


def _state_after(
    kb: KnowledgeBase, question: Question, choice: Choice, state: frozenset[str]
) -> frozenset[str]:
    territory = choice.sets.get(kb.flow.territory_fact)
    if territory in kb.territories:
        return frozenset({kb.territories[str(territory)].country})
    country = choice.sets.get(COUNTRY_FACT) or (
        choice.id if question.fact == COUNTRY_FACT else None
    )
    if country in all_countries(kb):
        return frozenset({str(country)})
    return state


def _words_pattern(words: list[str]) -> re.Pattern[str] | None:
    if not words:
        return None
    parts = []
    for word in sorted(words, key=len, reverse=True):
        escaped = re.escape(word)
        # Acronyms (ARS, CDU, AAH) match case-sensitively; other words in any case.
        parts.append(escaped if word.isupper() else f"(?i:{escaped})")
    return re.compile(r"(?<!\w)(" + "|".join(parts) + r")(?!\w)")


def check_countries(kb: KnowledgeBase) -> list[Problem]:
    """A text using a word of one country's rules (``country_words``) must reach people of
    that country only; a choice marked for some countries must come after the country is
    known; the recommendation must know the country."""
    problems: list[Problem] = []
    states = country_states(kb)
    for qid, question in kb.questions.items():
        for index, choice in enumerate(question.choices):
            if not choice.countries:
                continue
            for state in states.get(qid, set()):
                if len(state) > 1 and not state.issubset(choice.countries):
                    problems.append(
                        problem(
                            kb,
                            "flow.yaml",
                            ("questions", qid, "choices", index, "countries"),
                            f"le choix « {choice.id} » ne vaut qu'en {', '.join(choice.countries)}"
                            f", mais « {qid} » peut être posée avant que le pays soit connu : "
                            "posez la question du pays plus tôt",
                        )
                    )
                    break
    for state in states.get(RECOMMENDATION, set()):
        if len(state) > 1:
            problems.append(
                problem(
                    kb,
                    "flow.yaml",
                    ("start",),
                    "un chemin mène à la recommandation sans demander le pays : les règles "
                    "et les contacts dépendent du pays",
                )
            )
            break
    names = {c: _words_pattern(words) for c, words in kb.country_words.items()}
    for file, path, kind, reach, value in statements(kb, states):
        for country, pattern in names.items():
            if pattern is None:
                continue
            found = pattern.search(value)
            if found is None:
                continue
            others = sorted(reach - {country})
            if others:
                problems.append(
                    problem(
                        kb,
                        file,
                        path,
                        f"« {found.group(0)} » ne vaut qu'en {country}, mais ce texte peut être "
                        f"lu par une personne de : {', '.join(others)}. Marquez-le pour "
                        f"{country} (« countries: [{country}] ») et donnez l'équivalent local "
                        "ailleurs, ou posez la question du pays plus tôt",
                        kind=kind,
                    )
                )
    return problems


def check_country_refs(kb: KnowledgeBase) -> list[Problem]:
    """Country ids in ``countries``, ``label_in``, ``help_in`` and ``local`` exist; ``ask``
    names existing contacts; ``scores_when`` gives points to existing roles, with a reason."""
    problems: list[Problem] = []
    known = all_countries(kb)

    def countries(file: str, path: tuple[str | int, ...], values: object) -> None:
        for value in values if isinstance(values, list | dict) else []:
            if value != "*" and value not in known:
                problems.append(
                    problem(
                        kb,
                        file,
                        path,
                        f"le pays « {value} » n'existe pas dans territories.yaml "
                        f"(connus : {', '.join(sorted(known))})",
                    )
                )

    for qid, question in kb.questions.items():
        base = ("questions", qid)
        countries("flow.yaml", (*base, "help_in"), question.help_in)
        for index, choice in enumerate(question.choices):
            path = (*base, "choices", index)
            countries("flow.yaml", (*path, "countries"), choice.countries)
            countries("flow.yaml", (*path, "label_in"), choice.label_in)
            for number, extra in enumerate(choice.scores_when):
                where = (*path, "scores_when", number)
                for role_id, points in extra.scores.items():
                    if role_id not in kb.roles:
                        problems += unknown_role(kb, "flow.yaml", where, role_id)
                    elif points > 0 and extra.reason is None:
                        problems.append(
                            problem(
                                kb,
                                "flow.yaml",
                                where,
                                "ces points sont donnés sans « reason » : ajoutez la raison",
                            )
                        )
    for role_id, role in kb.roles.items():
        base = ("roles", role_id)
        countries("roles.yaml", (*base, "countries"), role.countries)
        countries("roles.yaml", (*base, "local"), role.local)
        for index, requirement in enumerate(role.requirements):
            countries("roles.yaml", (*base, "requirements", index), requirement.countries)
        for key, local in role.local.items():
            for contact_id in local.ask:
                if contact_id not in kb.contacts:
                    problems.append(
                        problem(
                            kb,
                            "roles.yaml",
                            (*base, "local", key, "ask"),
                            f"le contact « {contact_id} » n'existe pas dans contacts.yaml",
                        )
                    )
    for term_id, term in kb.glossary.items():
        countries(kb.file("glossary.yaml", "terms", term_id), ("terms", term_id), term.countries)
    for index, section in enumerate(kb.guide.sections):
        countries("guide.yaml", ("sections", index), section.countries)
    return problems
