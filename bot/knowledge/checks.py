"""Cross-reference and flow-graph checks run after schema validation.

Each check returns :class:`Problem` values naming the file and line to fix; warnings (such as a
contact not re-checked for a year) do not make the base invalid.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict

from bot.engine.normalize import normalize
from bot.knowledge.loader import Problem
from bot.knowledge.model import (
    BAROMETER_MESSAGES,
    BAROMETER_MIN_CRITERIA,
    FOLLOWUP_MESSAGES,
    RECOMMENDATION,
    SHORT_LIMIT,
    SPECIAL_TARGETS,
    UNDERSTANDING_MESSAGES,
    Choice,
    Condition,
    KnowledgeBase,
    Question,
)

#: Keys of ``messages.yaml`` used for contacts, rules by country and the hand-off.
PLACE_MESSAGES = (
    "contact_why",
    "contacts_fallback_level",
    "contacts_fallback_roles",
    "rules_elsewhere",
    "rules_ask_default",
    "term_where",
    "term_elsewhere",
    "relation_nobody",
    "relation_gone",
)

#: The answer of the ``pays`` question (see ``bot.engine.places``).
COUNTRY_FACT = "country"

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
            if target is None and question.next_when:
                target = question.next_when[0].next
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
        for number, branch in enumerate(question.next_when):
            where = ("questions", qid, "next_when", number)
            problems += _check_condition(kb, branch.when, known_facts(kb), "flow.yaml", where)
            if branch.next not in questions and branch.next not in SPECIAL_TARGETS:
                problems.append(
                    _problem(
                        kb,
                        "flow.yaml",
                        where,
                        f"« {branch.next} » n'est ni une question ni « recommendation » "
                        "ni « exit »",
                    )
                )
            elif any(not c.next for c in question.choices):
                targets.add(branch.next)
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
        known = {c.id for c in kb.conditions.conditions} if kb.conditions else set()
        for index, condition_id in enumerate(contact.conditions):
            if condition_id not in known:
                problems.append(
                    _problem(
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
            path: tuple[str | int, ...] = ("questions", qid, "choices", index)
            labels = [("", (*path, "label"), choice.label, choice.short)]
            labels += [
                (country, (*path, "label_in", country), label, choice.short_in.get(country))
                for country, label in choice.label_in.items()
            ]
            for country in choice.short_in:
                if country not in choice.label_in:
                    problems.append(
                        _problem(
                            kb,
                            "flow.yaml",
                            (*path, "short_in", country),
                            f"« short_in » a un libellé court pour « {country} », mais "
                            f"« label_in » n'a pas de libellé pour ce pays",
                        )
                    )
            for country, where, label, short in labels:
                long = [value for value in label.values() if len(value) > SHORT_LIMIT]
                if long and short is None:
                    field = f"short_in: {{{country}: …}}" if country else "short:"
                    problems.append(
                        _problem(
                            kb,
                            "flow.yaml",
                            where,
                            f"« {long[0]} » a {len(long[0])} caractères : trop long pour un "
                            f"bouton de téléphone ; ajoutez un libellé court « {field} » "
                            f"({SHORT_LIMIT} au plus, l'id du choix ne change pas)",
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
        *check_lexicon(kb),
        *check_contact_facts(kb),
        *check_countries(kb),
        *check_country_refs(kb),
        *check_feature_messages(kb, PLACE_MESSAGES, "des contacts et des règles par pays"),
    ]


def _question_with_fact(kb: KnowledgeBase, fact: str) -> str | None:
    return next((qid for qid, q in kb.questions.items() if q.fact == fact), None)


def check_lexicon(kb: KnowledgeBase) -> list[Problem]:
    """The free-text lexicons of ``lexique/``: every id, category, territory and source they
    name exists, and no word means two different things."""
    problems: list[Problem] = []
    problems += _check_conditions(kb)
    problems += _check_places(kb)
    problems += _check_profiles(kb)
    problems += _check_fact_words(kb)
    problems += _check_language(kb)
    if kb.profiles is not None or kb.fact_words is not None or kb.conditions is not None:
        problems += check_feature_messages(kb, UNDERSTANDING_MESSAGES, "de la compréhension")
        for qid, question in kb.questions.items():
            if question.why is None:
                problems.append(
                    _problem(
                        kb,
                        "flow.yaml",
                        ("questions", qid),
                        f"la question « {qid} » n'a pas de « why » : ajoutez pourquoi elle est "
                        "posée (réponse à « pourquoi vous demandez ça ? »)",
                        severity="warning",
                    )
                )
    return problems


def _check_conditions(kb: KnowledgeBase) -> list[Problem]:
    lexicon = kb.conditions
    if lexicon is None:
        return []
    name = "lexique/conditions.yaml"
    problems: list[Problem] = []
    experience = _question_with_fact(kb, "experience")
    categories = {c.id for c in kb.questions[experience].choices} if experience else set()
    seen_ids: set[str] = set()
    words: dict[str, tuple[str, str]] = {}
    for index, condition in enumerate(lexicon.conditions):
        path: tuple[str | int, ...] = ("conditions", index)
        if condition.id in seen_ids:
            problems.append(
                _problem(kb, name, (*path, "id"), f"l'id « {condition.id} » est déjà pris")
            )
        seen_ids.add(condition.id)
        if condition.category not in categories:
            problems.append(
                _problem(
                    kb,
                    name,
                    (*path, "category"),
                    f"catégorie « {condition.category} » inconnue : attendu un choix de la "
                    f"question de l'expérience ({', '.join(sorted(categories))})",
                )
            )
        if condition.source not in lexicon.sources:
            problems.append(
                _problem(
                    kb,
                    name,
                    (*path, "source"),
                    f"la source « {condition.source} » n'est pas décrite dans « sources »",
                )
            )
        for word in condition.words:
            norm = normalize(word)
            if not norm:
                continue
            other = words.get(norm)
            if other is not None and other[0] != condition.id and other[1] != condition.category:
                problems.append(
                    _problem(
                        kb,
                        name,
                        (*path, "words"),
                        f"« {word} » désigne déjà « {other[0]} » ({other[1]}) : un mot ne peut "
                        "mener qu'à une catégorie",
                    )
                )
            words.setdefault(norm, (condition.id, condition.category))
    return problems


def _check_places(kb: KnowledgeBase) -> list[Problem]:
    lexicon = kb.places
    if lexicon is None:
        return []
    name = "lexique/lieux.yaml"
    problems: list[Problem] = []
    reachable = {
        c.sets["territory"]
        for q in kb.questions.values()
        for c in q.choices
        if "territory" in c.sets
    }
    reachable |= {c.id for q in kb.questions.values() for c in q.choices}
    ids: set[str] = set()
    words: dict[str, str] = {}
    ambiguous = {normalize(w) for entry in lexicon.ambiguous for w in entry.words}
    for index, place in enumerate(lexicon.places):
        path: tuple[str | int, ...] = ("places", index)
        if place.id in ids:
            problems.append(_problem(kb, name, (*path, "id"), f"l'id « {place.id} » est déjà pris"))
        ids.add(place.id)
        if place.territory not in kb.territories:
            problems.append(
                _problem(
                    kb,
                    name,
                    (*path, "territory"),
                    f"le territoire « {place.territory} » n'existe pas dans territories.yaml",
                )
            )
        else:
            chain, territory = [], place.territory
            while territory and territory in kb.territories and territory not in chain:
                chain.append(territory)
                territory = kb.territories[territory].parent or ""
            if not reachable.intersection(chain):
                problems.append(
                    _problem(
                        kb,
                        name,
                        (*path, "territory"),
                        f"aucun choix de flow.yaml ne mène au territoire « {place.territory} »",
                        severity="warning",
                    )
                )
        if place.source not in lexicon.sources:
            problems.append(
                _problem(
                    kb, name, (*path, "source"), f"la source « {place.source} » n'est pas décrite"
                )
            )
        if place.kind == "departement" and not place.number:
            problems.append(
                _problem(kb, name, path, "un département porte son numéro (« number »)")
            )
        for word in place.words:
            norm = normalize(word)
            if not norm:
                continue
            other = words.get(norm)
            if other is not None and other != place.id and norm not in ambiguous:
                other_place = next(p for p in lexicon.places if p.id == other)
                if other_place.territory != place.territory:
                    problems.append(
                        _problem(
                            kb,
                            name,
                            (*path, "words"),
                            f"« {word} » désigne déjà « {other} » : mettez ce mot dans "
                            "« ambiguous » pour que le bot demande lequel",
                        )
                    )
            words.setdefault(norm, place.id)
    problems += _check_postal_codes(kb, ids)
    for index, entry in enumerate(lexicon.ambiguous):
        for place_id in entry.places:
            if place_id not in ids:
                problems.append(
                    _problem(
                        kb,
                        name,
                        ("ambiguous", index, "places"),
                        f"le lieu « {place_id} » n'existe pas dans « places »",
                    )
                )
    return problems


def _check_postal_codes(kb: KnowledgeBase, ids: set[str]) -> list[Problem]:
    """Each range and letter leads to a known place, names its source, and ranges of one
    country never overlap (a code means one place per country)."""
    lexicon = kb.places
    postal = lexicon.postal_codes if lexicon is not None else None
    if lexicon is None or postal is None:
        return []
    name = "lexique/lieux.yaml"
    problems: list[Problem] = []
    for index, rule in enumerate(postal.rules):
        path: tuple[str | int, ...] = ("postal_codes", "rules", index)
        if rule.country not in ids:
            problems.append(
                _problem(kb, name, (*path, "country"), f"le lieu « {rule.country} » n'existe pas")
            )
        if rule.letters and rule.letters_source not in lexicon.sources:
            problems.append(
                _problem(
                    kb, name, (*path, "letters_source"), "les lettres doivent citer une source"
                )
            )
        for letter, place_id in rule.letters.items():
            if place_id not in ids:
                problems.append(
                    _problem(
                        kb, name, (*path, "letters", letter), f"le lieu « {place_id} » n'existe pas"
                    )
                )
        previous: tuple[int, int] | None = None
        for number, band in enumerate(sorted(rule.ranges, key=lambda b: b.first)):
            where = (*path, "ranges", number)
            if band.place not in ids:
                problems.append(_problem(kb, name, where, f"le lieu « {band.place} » n'existe pas"))
            if band.source not in lexicon.sources:
                problems.append(
                    _problem(kb, name, where, f"la source « {band.source} » n'est pas décrite")
                )
            if band.last < band.first:
                problems.append(_problem(kb, name, where, "« last » est avant « first »"))
            if previous is not None and band.first <= previous[1]:
                problems.append(
                    _problem(
                        kb,
                        name,
                        where,
                        f"{band.first}–{band.last} recouvre {previous[0]}–{previous[1]}",
                    )
                )
            previous = (band.first, band.last)
    return problems


def _check_profiles(kb: KnowledgeBase) -> list[Problem]:
    profiles = kb.profiles
    if profiles is None:
        return []
    name = "lexique/profils.yaml"
    question = kb.questions.get(profiles.question)
    if question is None:
        return [
            _problem(kb, name, ("question",), f"la question « {profiles.question} » n'existe pas")
        ]
    choices = {c.id for c in question.choices}
    problems: list[Problem] = []
    for index, words in enumerate(profiles.profiles):
        if words.choice not in choices:
            problems.append(
                _problem(
                    kb,
                    name,
                    ("profiles", index, "choice"),
                    f"« {words.choice} » n'est pas un choix de la question « {profiles.question} »"
                    f" ({', '.join(sorted(choices))})",
                )
            )
    return problems


def _check_fact_words(kb: KnowledgeBase) -> list[Problem]:
    facts = kb.fact_words
    if facts is None:
        return []
    name = "lexique/faits.yaml"
    problems: list[Problem] = []
    for qid, choices in facts.questions.items():
        question = kb.questions.get(qid)
        if question is None:
            # A renamed question leaves its phrases unused, nothing breaks: say so, gently.
            problems.append(
                _problem(
                    kb,
                    name,
                    ("questions", qid),
                    f"la question « {qid} » n'existe pas dans flow.yaml : ces tournures sont "
                    "ignorées (renommez la clé comme la question)",
                    severity="warning",
                )
            )
            continue
        known = {c.id for c in question.choices}
        seen: dict[str, str] = {}
        for choice_id, phrases in choices.items():
            if choice_id not in known:
                problems.append(
                    _problem(
                        kb,
                        name,
                        ("questions", qid, choice_id),
                        f"« {choice_id} » n'est pas un choix de « {qid} » "
                        f"({', '.join(sorted(known))}) : ces tournures sont ignorées",
                        severity="warning",
                    )
                )
            for phrase in phrases:
                norm = normalize(phrase)
                other = seen.get(norm)
                if other is not None and other != choice_id:
                    problems.append(
                        _problem(
                            kb,
                            name,
                            ("questions", qid, choice_id),
                            f"« {phrase} » désigne à la fois « {other} » et « {choice_id} »",
                        )
                    )
                seen.setdefault(norm, choice_id)
    return problems


def _check_language(kb: KnowledgeBase) -> list[Problem]:
    if "lexique/langage.yaml" not in kb.extra:
        return []
    name = "lexique/langage.yaml"
    problems: list[Problem] = []
    for word in kb.language.contractions:
        if len(normalize(word).split()) != 1:
            problems.append(
                _problem(
                    kb,
                    name,
                    ("contractions", word),
                    f"« {word} » : une contraction est un seul mot (ce qui est remplacé)",
                )
            )
    overlap = {normalize(w) for w in kb.language.yes} & {normalize(w) for w in kb.language.no}
    for word in sorted(overlap):
        problems.append(
            _problem(kb, name, ("yes",), f"« {word} » est à la fois dans « yes » et dans « no »")
        )
    return problems


# -- countries: each statement holds where it is marked, and reaches no one else -----------

#: Territories whose contacts are those of another question (an alias asking which one) or
#: of nobody in particular: they need no contact of their own.
NO_OWN_CONTACT = frozenset({"autre"})


def all_countries(kb: KnowledgeBase) -> frozenset[str]:
    return frozenset(t.country for t in kb.territories.values())


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


def _is_text(value: object) -> bool:
    """A user-facing :data:`Text` (language -> string), as opposed to other mappings."""
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and len(k) == 2 and isinstance(v, str) for k, v in value.items())
    )


def _statements(
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
                        _problem(
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
                _problem(
                    kb,
                    "flow.yaml",
                    ("start",),
                    "un chemin mène à la recommandation sans demander le pays : les règles "
                    "et les contacts dépendent du pays",
                )
            )
            break
    names = {c: _words_pattern(words) for c, words in kb.country_words.items()}
    for file, path, kind, reach, value in _statements(kb, states):
        for country, pattern in names.items():
            if pattern is None:
                continue
            found = pattern.search(value)
            if found is None:
                continue
            others = sorted(reach - {country})
            if others:
                problems.append(
                    _problem(
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


def check_contact_facts(kb: KnowledgeBase) -> list[Problem]:
    """Each contact names the page it was checked on and says why it is proposed; each
    territory the flow can set has at least one contact of its own."""
    problems: list[Problem] = []
    for contact_id, contact in kb.contacts.items():
        base = ("contacts", contact_id)
        if not any(re.match(r"^https?://", source) for source in contact.sources):
            problems.append(
                _problem(
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
                _problem(
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
                _problem(
                    kb,
                    "flow.yaml",
                    ("questions", qid, "choices", index, "sets"),
                    f"le territoire « {territory} » n'a aucun contact à lui dans contacts.yaml",
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
                    _problem(
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
                        problems.append(
                            _problem(
                                kb,
                                "flow.yaml",
                                where,
                                f"le rôle « {role_id} » n'existe pas dans roles.yaml",
                            )
                        )
                    elif points > 0 and extra.reason is None:
                        problems.append(
                            _problem(
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
                        _problem(
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
