"""The free-text lexicons (``lexique/``, the glossary): every id, category, territory and
source they name exists, and no word means two different things."""

from __future__ import annotations

from bot.knowledge.checks.common import check_feature_messages, problem, question_with_fact
from bot.knowledge.model import UNDERSTANDING_MESSAGES, KnowledgeBase, normalize
from bot.knowledge.problems import Problem


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
                    problem(
                        kb,
                        "glossary.yaml",
                        ("terms", term_id, "aliases", index) if index else ("terms", term_id),
                        f"« {name} » désigne à la fois « {other} » et « {term_id} »",
                        kind="terms",
                    )
                )
            owner[name] = term_id
    return problems


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
                    problem(
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
    experience = question_with_fact(kb, "experience")
    categories = {c.id for c in kb.questions[experience].choices} if experience else set()
    seen_ids: set[str] = set()
    words: dict[str, tuple[str, str]] = {}
    for index, condition in enumerate(lexicon.conditions):
        path: tuple[str | int, ...] = ("conditions", index)
        if condition.id in seen_ids:
            problems.append(
                problem(kb, name, (*path, "id"), f"l'id « {condition.id} » est déjà pris")
            )
        seen_ids.add(condition.id)
        if condition.category not in categories:
            problems.append(
                problem(
                    kb,
                    name,
                    (*path, "category"),
                    f"catégorie « {condition.category} » inconnue : attendu un choix de la "
                    f"question de l'expérience ({', '.join(sorted(categories))})",
                )
            )
        if condition.source not in lexicon.sources:
            problems.append(
                problem(
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
                    problem(
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
            problems.append(problem(kb, name, (*path, "id"), f"l'id « {place.id} » est déjà pris"))
        ids.add(place.id)
        if place.territory not in kb.territories:
            problems.append(
                problem(
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
                    problem(
                        kb,
                        name,
                        (*path, "territory"),
                        f"aucun choix de flow.yaml ne mène au territoire « {place.territory} »",
                        severity="warning",
                    )
                )
        if place.source not in lexicon.sources:
            problems.append(
                problem(
                    kb, name, (*path, "source"), f"la source « {place.source} » n'est pas décrite"
                )
            )
        if place.kind == "departement" and not place.number:
            problems.append(problem(kb, name, path, "un département porte son numéro (« number »)"))
        for word in place.words:
            norm = normalize(word)
            if not norm:
                continue
            other = words.get(norm)
            if other is not None and other != place.id and norm not in ambiguous:
                other_place = next(p for p in lexicon.places if p.id == other)
                if other_place.territory != place.territory:
                    problems.append(
                        problem(
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
                    problem(
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
                problem(kb, name, (*path, "country"), f"le lieu « {rule.country} » n'existe pas")
            )
        if rule.letters and rule.letters_source not in lexicon.sources:
            problems.append(
                problem(kb, name, (*path, "letters_source"), "les lettres doivent citer une source")
            )
        for letter, place_id in rule.letters.items():
            if place_id not in ids:
                problems.append(
                    problem(
                        kb, name, (*path, "letters", letter), f"le lieu « {place_id} » n'existe pas"
                    )
                )
        previous: tuple[int, int] | None = None
        for number, band in enumerate(sorted(rule.ranges, key=lambda b: b.first)):
            where = (*path, "ranges", number)
            if band.place not in ids:
                problems.append(problem(kb, name, where, f"le lieu « {band.place} » n'existe pas"))
            if band.source not in lexicon.sources:
                problems.append(
                    problem(kb, name, where, f"la source « {band.source} » n'est pas décrite")
                )
            if band.last < band.first:
                problems.append(problem(kb, name, where, "« last » est avant « first »"))
            if previous is not None and band.first <= previous[1]:
                problems.append(
                    problem(
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
            problem(kb, name, ("question",), f"la question « {profiles.question} » n'existe pas")
        ]
    choices = {c.id for c in question.choices}
    problems: list[Problem] = []
    for index, words in enumerate(profiles.profiles):
        if words.choice not in choices:
            problems.append(
                problem(
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
                problem(
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
                    problem(
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
                        problem(
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
                problem(
                    kb,
                    name,
                    ("contractions", word),
                    f"« {word} » : une contraction est un seul mot (ce qui est remplacé)",
                )
            )
    overlap = {normalize(w) for w in kb.language.yes} & {normalize(w) for w in kb.language.no}
    for word in sorted(overlap):
        problems.append(
            problem(kb, name, ("yes",), f"« {word} » est à la fois dans « yes » et dans « no »")
        )
    return problems
