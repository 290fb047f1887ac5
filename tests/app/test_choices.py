"""One set of valid choice ids for every channel (:mod:`bot.app.choices`): commands at any
step, otherwise only what the last message offered; rebuilt when the contents are reloaded."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.app.choices import ChoiceIds
from bot.app.engines import build_engine
from bot.app.reload import EngineHolder, Reloader
from bot.channels.telegram.render import choice_hash
from bot.engine.flow import TERM
from bot.knowledge.loader import load
from bot.knowledge.model import KnowledgeBase

LONG_TERM = "terme_ajoute_pendant_que_le_bot_tourne"


def test_commands_at_any_step_otherwise_what_was_offered(kb: KnowledgeBase) -> None:
    api = ChoiceIds(build_engine(kb))
    telegram = ChoiceIds(build_engine(kb, followup=True))
    for choices in (api, telegram):
        assert choices.accepts("cmd:aide", offered=())
        assert choices.accepts("cmd:relation", offered=())
        assert choices.accepts("cmd:barometre", offered=())  # the barometer mode
        assert choices.accepts("patient", offered=("patient", "proche"))
        assert not choices.accepts("patient", offered=("chronique",))  # an old button
        assert not choices.accepts("cmd:inconnu", offered=())
        assert not choices.accepts("n'importe quoi", offered=())
    # The follow-up is a mode only where the channel can write first.
    assert telegram.accepts("cmd:suivi", offered=()) and not api.accepts("cmd:suivi", offered=())
    question_ids = {c.id for q in kb.questions.values() for c in q.choices}
    assert question_ids <= api.known and api.anytime <= api.known


def test_a_reload_brings_the_new_ids(base_copy: Path) -> None:
    holder = EngineHolder(build_engine(load(base_copy)), build_engine)
    choices = ChoiceIds(holder, key=choice_hash)
    long_id = TERM + LONG_TERM
    assert choices.lookup(choice_hash(long_id)) is None
    glossary = base_copy / "glossary.yaml"
    glossary.write_text(
        glossary.read_text(encoding="utf-8")
        + f"\n  {LONG_TERM}:\n"
        + "    term: Terme ajouté\n"
        + "    definition: >-\n"
        + "      Un terme ajouté au glossaire pendant que le bot tourne.\n"
        + '    sources: ["has-sante.fr/jcms/p_3201812"]\n',
        encoding="utf-8",
    )
    result = asyncio.run(Reloader(base_copy, [holder]).reload())
    assert result.ok, result.problems
    assert choices.lookup(choice_hash(long_id)) == long_id
    assert long_id in choices.known
