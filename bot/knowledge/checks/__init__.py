"""Cross-reference and flow-graph checks run after schema validation, one module per concern.

Each check returns :class:`~bot.knowledge.problems.Problem` values naming the file and line to
fix; warnings (such as a contact not re-checked for a year) do not make the base invalid.
"""

from __future__ import annotations

import datetime as dt

from bot.knowledge.checks.common import check_feature_messages, known_facts
from bot.knowledge.checks.contacts import check_contact_facts, check_contacts, check_territories
from bot.knowledge.checks.countries import check_countries, check_country_refs
from bot.knowledge.checks.flow import check_flow, check_roles
from bot.knowledge.checks.labels import PLACE_MESSAGES, check_barometer, check_button_labels
from bot.knowledge.checks.lexicon import check_glossary, check_lexicon
from bot.knowledge.model import FOLLOWUP_MESSAGES, KnowledgeBase
from bot.knowledge.problems import Problem


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
