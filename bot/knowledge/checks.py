"""Cross-reference and flow-graph checks run after schema validation.

Each check returns :class:`Problem` values naming the file and line to fix; warnings (such as a
contact not re-checked for a year) do not make the base invalid.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from bot.engine.normalize import normalize
from bot.knowledge.loader import Problem
from bot.knowledge.model import (
    BAROMETER_MESSAGES,
    BAROMETER_MIN_CRITERIA,
    FOLLOWUP_MESSAGES,
    SHORT_LIMIT,
    SPECIAL_TARGETS,
    Condition,
    KnowledgeBase,
)

STALE_AFTER = dt.timedelta(days=365)
#: Messages shown as button labels.
BUTTON_MESSAGES = (
    *("yes", "no", "back_to_question", "relation_button", "relation_accept", "relation_refuse"),
    *("relation_send", "barometre_button", "suivi_button", "barometer_back", "barometer_create"),
    *("barometer_join", "barometer_discard", "barometer_compare", "barometer_quit"),
    *("consent_yes", "consent_no", "forget_yes", "forget_no", "followup_yes", "followup_no"),
    *("followup_reached", "followup_not_reached", "telegram_prev", "telegram_next"),
)


def _at(kb: KnowledgeBase, name: str, path: tuple[str | int, ...], kind: str = "") -> str:
    key = str(path[1]) if kind and len(path) > 1 else ""
    return kb.file(name, kind, key)


def _problem(
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


def _check_condition(
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
                _problem(
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
                    _problem(
                        kb,
                        name,
                        (*path, fact),
                        f"« {fact} » ne peut pas valoir « {value} » "
                        f"(valeurs possibles : {', '.join(sorted(facts[fact]))})",
                    )
                )
    return problems


def check_roles(kb: KnowledgeBase, facts: dict[str, set[str]]) -> list[Problem]:
    problems = []
    for role_id, role in kb.roles.items():
        base = ("roles", role_id)
        problems += _check_condition(kb, role.only_when, facts, "roles.yaml", (*base, "only_when"))
        for index, requirement in enumerate(role.requirements):
            problems += _check_condition(
                kb,
                requirement.met_when,
                facts,
                "roles.yaml",
                (*base, "requirements", index, "met_when"),
            )
            if requirement.met_when and not requirement.how_to:
                problems.append(
                    _problem(
                        kb,
                        "roles.yaml",
                        (*base, "requirements", index),
                        "ajoutez « how_to » : comment remplir cette condition quand elle manque",
                    )
                )
    return problems


def check_flow(kb: KnowledgeBase) -> list[Problem]:
    problems: list[Problem] = []
    flow = kb.flow
    problems += _check_condition(kb, flow.carer_when, known_facts(kb), "flow.yaml", ("carer_when",))
    questions = flow.questions
    if flow.start not in questions:
        problems.append(
            _problem(
                kb, "flow.yaml", ("start",), f"la question de départ « {flow.start} » n'existe pas"
            )
        )
        return problems
    edges: dict[str, set[str]] = {}
    for qid, question in questions.items():
        targets: set[str] = set()
        seen_ids: set[str] = set()
        seen_words: dict[str, str] = {}
        for index, choice in enumerate(question.choices):
            path = ("questions", qid, "choices", index)
            if choice.id in seen_ids:
                problems.append(
                    _problem(
                        kb, "flow.yaml", (*path, "id"), f"deux choix portent l'id « {choice.id} »"
                    )
                )
            seen_ids.add(choice.id)
            target = choice.next or question.next
            if target is None:
                problems.append(
                    _problem(
                        kb,
                        "flow.yaml",
                        path,
                        f"le choix « {choice.id} » ne mène nulle part : ajoutez « next » au choix "
                        "ou à la question",
                    )
                )
            elif target not in questions and target not in SPECIAL_TARGETS:
                problems.append(
                    _problem(
                        kb,
                        "flow.yaml",
                        (*path, "next") if choice.next else ("questions", qid, "next"),
                        f"« {target} » n'est ni une question ni « recommendation » ni « exit »",
                    )
                )
            else:
                targets.add(target)
            for role_id in choice.scores:
                if role_id not in kb.roles:
                    problems.append(
                        _problem(
                            kb,
                            "flow.yaml",
                            (*path, "scores", role_id),
                            f"le rôle « {role_id} » n'existe pas dans roles.yaml",
                        )
                    )
            if any(points > 0 for points in choice.scores.values()) and choice.reason is None:
                problems.append(
                    _problem(
                        kb,
                        "flow.yaml",
                        path,
                        f"le choix « {choice.id} » donne des points sans « reason » : "
                        "ajoutez la raison montrée à la personne",
                    )
                )
            if choice.sets.get("territory") and choice.sets["territory"] not in kb.territories:
                problems.append(
                    _problem(
                        kb,
                        "flow.yaml",
                        (*path, "sets", "territory"),
                        f"le territoire « {choice.sets['territory']} » n'existe pas dans "
                        "territories.yaml",
                    )
                )
            words = [normalize(label) for label in choice.label.values()]
            for synonyms in choice.synonyms.values():
                words += [normalize(word) for word in synonyms]
            for word in dict.fromkeys(words):
                if not word:
                    continue
                other = seen_words.get(word)
                if other is not None and other != choice.id:
                    problems.append(
                        _problem(
                            kb,
                            "flow.yaml",
                            (*path, "synonyms"),
                            f"« {word} » désigne à la fois « {other} » et « {choice.id} » : "
                            "gardez-le pour un seul choix",
                        )
                    )
                seen_words[word] = choice.id
        edges[qid] = targets

    reachable: set[str] = set()
    todo = [flow.start]
    while todo:
        current = todo.pop()
        if current in reachable or current not in questions:
            continue
        reachable.add(current)
        todo += [t for t in edges.get(current, ()) if t in questions]
    for qid in questions:
        if qid not in reachable:
            problems.append(
                _problem(
                    kb,
                    "flow.yaml",
                    ("questions", qid),
                    f"la question « {qid} » n'est jamais posée : aucun choix n'y mène depuis "
                    f"« {flow.start} »",
                )
            )

    ends: set[str] = set()
    changed = True
    while changed:
        changed = False
        for qid, targets in edges.items():
            if qid not in ends and any(t in SPECIAL_TARGETS or t in ends for t in targets):
                ends.add(qid)
                changed = True
    for qid in sorted(reachable - ends):
        problems.append(
            _problem(
                kb,
                "flow.yaml",
                ("questions", qid),
                f"depuis « {qid} », aucun chemin ne mène à une recommandation ni à une sortie "
                "(boucle sans issue ou impasse)",
            )
        )
    return problems


def check_contacts(kb: KnowledgeBase, today: dt.date, facts: dict[str, set[str]]) -> list[Problem]:
    problems = []
    for contact_id, contact in kb.contacts.items():
        base = ("contacts", contact_id)
        for index, condition in enumerate(contact.only_when):
            file = kb.file("contacts.yaml", "contacts", contact_id)
            problems += _check_condition(kb, condition, facts, file, (*base, "only_when", index))
        for index, territory in enumerate(contact.territories):
            if territory != "*" and territory not in kb.territories:
                problems.append(
                    _problem(
                        kb,
                        "contacts.yaml",
                        (*base, "territories", index),
                        f"le territoire « {territory} » n'existe pas dans territories.yaml "
                        "(ou « * » pour partout)",
                        kind="contacts",
                    )
                )
        for index, role_id in enumerate(contact.roles):
            if role_id not in kb.roles:
                problems.append(
                    _problem(
                        kb,
                        "contacts.yaml",
                        (*base, "roles", index),
                        f"le rôle « {role_id} » n'existe pas dans roles.yaml",
                        kind="contacts",
                    )
                )
        if today - contact.checked > STALE_AFTER:
            problems.append(
                _problem(
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
                _problem(
                    kb,
                    "contacts.yaml",
                    (*base, "checked"),
                    "la date de vérification est dans le futur",
                    kind="contacts",
                )
            )
    return problems


def check_territories(kb: KnowledgeBase) -> list[Problem]:
    problems = []
    for territory_id, territory in kb.territories.items():
        if territory.parent and territory.parent not in kb.territories:
            problems.append(
                _problem(
                    kb,
                    "territories.yaml",
                    ("territories", territory_id, "parent"),
                    f"le territoire parent « {territory.parent} » n'existe pas",
                )
            )
        if territory.country not in kb.crisis.countries:
            problems.append(
                _problem(
                    kb,
                    "territories.yaml",
                    ("territories", territory_id, "country"),
                    f"aucun numéro d'urgence pour le pays « {territory.country} » dans crisis.yaml",
                    severity="warning",
                )
            )
    return problems


def check_glossary(kb: KnowledgeBase) -> list[Problem]:
    problems = []
    owner: dict[str, str] = {}
    for term_id, term in kb.glossary.items():
        names = [normalize(value) for value in term.term.values()]
        names += [normalize(alias) for alias in term.aliases]
        for index, name in enumerate(dict.fromkeys(names)):
            other = owner.get(name)
            if other is not None and other != term_id:
                problems.append(
                    _problem(
                        kb,
                        "glossary.yaml",
                        ("terms", term_id, "aliases", index) if index else ("terms", term_id),
                        f"« {name} » désigne à la fois « {other} » et « {term_id} »",
                        kind="terms",
                    )
                )
            owner[name] = term_id
    return problems


def check_button_labels(kb: KnowledgeBase) -> list[Problem]:
    """Warns of a button label too long for a phone (Telegram cuts it) with no ``short``."""
    problems = []
    for qid, question in kb.questions.items():
        for index, choice in enumerate(question.choices):
            long = [label for label in choice.label.values() if len(label) > SHORT_LIMIT]
            if long and choice.short is None:
                problems.append(
                    _problem(
                        kb,
                        "flow.yaml",
                        ("questions", qid, "choices", index, "label"),
                        f"« {long[0]} » a {len(long[0])} caractères : trop long pour un bouton "
                        f"de téléphone ; ajoutez un libellé court « short: » ({SHORT_LIMIT} au "
                        "plus, l'id du choix ne change pas)",
                        severity="warning",
                    )
                )
    barometer = kb.barometer
    for rater_id, rater in (barometer.raters if barometer is not None else {}).items():
        long = [label for label in rater.label.values() if len(label) > SHORT_LIMIT]
        if long and rater.short is None:
            problems.append(
                _problem(
                    kb,
                    "barometer.yaml",
                    ("raters", rater_id, "label"),
                    f"« {long[0]} » a {len(long[0])} caractères : trop long pour un bouton de "
                    f"téléphone ; ajoutez un libellé court « short: » ({SHORT_LIMIT} au plus)",
                    severity="warning",
                )
            )
    for key in BUTTON_MESSAGES:
        long = [label for label in kb.messages.get(key, {}).values() if len(label) > SHORT_LIMIT]
        if long:
            problems.append(
                _problem(
                    kb,
                    "messages.yaml",
                    ("messages", key),
                    f"« {long[0]} » ({key}) est le texte d'un bouton : {len(long[0])} "
                    f"caractères, {SHORT_LIMIT} au plus pour tenir sur un téléphone",
                    severity="warning",
                )
            )
    for term_id, term in kb.glossary.items():
        long = [name for name in term.term.values() if len(name) > SHORT_LIMIT]
        if long and term.short is None:
            problems.append(
                _problem(
                    kb,
                    "glossary.yaml",
                    ("terms", term_id, "term"),
                    f"« {long[0]} » a {len(long[0])} caractères : trop long pour un bouton de "
                    f"téléphone ; ajoutez un libellé court « short: » ({SHORT_LIMIT} au plus)",
                    kind="terms",
                    severity="warning",
                )
            )
    return problems


def check_barometer(kb: KnowledgeBase) -> list[Problem]:
    """Criteria ids unique, enough spokes for a chart, empty dimensions explained, messages."""
    barometer = kb.barometer
    if barometer is None:
        return []
    name = "barometer.yaml"
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for dim_id, dimension in barometer.dimensions.items():
        if not dimension.criteria and not dimension.notes.strip():
            problems.append(
                _problem(
                    kb,
                    name,
                    ("dimensions", dim_id),
                    f"la dimension « {dim_id} » n'a aucun critère : ajoutez des critères tirés "
                    "de la source, ou une note (« notes: ») qui explique pourquoi",
                )
            )
        for index, criterion in enumerate(dimension.criteria):
            other = seen.get(criterion.id)
            if other is not None:
                problems.append(
                    _problem(
                        kb,
                        name,
                        ("dimensions", dim_id, "criteria", index, "id"),
                        f"l'identifiant « {criterion.id} » est déjà utilisé dans « {other} »",
                    )
                )
            seen[criterion.id] = dim_id
    if len(seen) < BAROMETER_MIN_CRITERIA:
        problems.append(
            _problem(
                kb,
                name,
                ("dimensions",),
                f"il faut au moins {BAROMETER_MIN_CRITERIA} critères pour dessiner le baromètre",
            )
        )
    problems += check_feature_messages(kb, BAROMETER_MESSAGES, "du baromètre")
    return problems


def check_feature_messages(kb: KnowledgeBase, keys: tuple[str, ...], what: str) -> list[Problem]:
    missing = [key for key in keys if key not in kb.messages]
    if not missing:
        return []
    message = f"messages {what} manquants : {', '.join(missing)}"
    return [_problem(kb, "messages.yaml", ("messages",), message)]


def check(kb: KnowledgeBase, today: dt.date | None = None) -> list[Problem]:
    """Every cross-reference and flow problem of ``kb``, errors and warnings."""
    facts = known_facts(kb)
    return [
        *check_flow(kb),
        *check_roles(kb, facts),
        *check_contacts(kb, today or dt.date.today(), facts),
        *check_territories(kb),
        *check_glossary(kb),
        *check_button_labels(kb),
        *check_barometer(kb),
        *check_feature_messages(kb, FOLLOWUP_MESSAGES, "de la relance"),
    ]
