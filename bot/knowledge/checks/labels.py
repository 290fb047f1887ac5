"""What a phone shows: button labels short enough (or a ``short`` form), the barometer's
criteria, and the messages each feature needs."""

from __future__ import annotations

from bot.knowledge.checks.common import check_feature_messages, long_label, problem
from bot.knowledge.model import (
    BAROMETER_MESSAGES,
    BAROMETER_MIN_CRITERIA,
    SHORT_LIMIT,
    KnowledgeBase,
)
from bot.knowledge.problems import Problem

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


#: Messages shown as button labels.
BUTTON_MESSAGES = (
    *("yes", "no", "back_to_question", "relation_button", "relation_accept", "relation_refuse"),
    *("relation_send", "barometre_button", "suivi_button", "barometer_back", "barometer_create"),
    *("barometer_join", "barometer_discard", "barometer_compare", "barometer_quit"),
    *("consent_yes", "consent_no", "forget_yes", "forget_no", "followup_yes", "followup_no"),
    *("followup_reached", "followup_not_reached", "telegram_prev", "telegram_next"),
)


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
                        problem(
                            kb,
                            "flow.yaml",
                            (*path, "short_in", country),
                            f"« short_in » a un libellé court pour « {country} », mais "
                            f"« label_in » n'a pas de libellé pour ce pays",
                        )
                    )
            for country, where, label, short in labels:
                if short is None:
                    field = f"short_in: {{{country}: …}}" if country else "short:"
                    note = ", l'id du choix ne change pas"
                    problems += long_label(kb, "flow.yaml", where, label, field=field, note=note)
    barometer = kb.barometer
    for rater_id, rater in (barometer.raters if barometer is not None else {}).items():
        if rater.short is None:
            where = ("raters", rater_id, "label")
            problems += long_label(kb, "barometer.yaml", where, rater.label)
    for key in BUTTON_MESSAGES:
        long = [label for label in kb.messages.get(key, {}).values() if len(label) > SHORT_LIMIT]
        if long:
            problems.append(
                problem(
                    kb,
                    "messages.yaml",
                    ("messages", key),
                    f"« {long[0]} » ({key}) est le texte d'un bouton : {len(long[0])} "
                    f"caractères, {SHORT_LIMIT} au plus pour tenir sur un téléphone",
                    severity="warning",
                )
            )
    for term_id, term in kb.glossary.items():
        if term.short is None:
            where = ("terms", term_id, "term")
            problems += long_label(kb, "glossary.yaml", where, term.term, kind="terms")
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
                problem(
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
                    problem(
                        kb,
                        name,
                        ("dimensions", dim_id, "criteria", index, "id"),
                        f"l'identifiant « {criterion.id} » est déjà utilisé dans « {other} »",
                    )
                )
            seen[criterion.id] = dim_id
    if len(seen) < BAROMETER_MIN_CRITERIA:
        problems.append(
            problem(
                kb,
                name,
                ("dimensions",),
                f"il faut au moins {BAROMETER_MIN_CRITERIA} critères pour dessiner le baromètre",
            )
        )
    problems += check_feature_messages(kb, BAROMETER_MESSAGES, "du baromètre")
    return problems
