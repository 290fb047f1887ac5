"""The engine's behaviour a person notices, on the shipped knowledge base."""

from __future__ import annotations

import json
from dataclasses import replace

from bot.engine.flow import Engine, Turn
from bot.engine.session import Input, Session
from bot.json_types import JsonObject
from bot.knowledge.establishments import Establishment
from bot.knowledge.model import KnowledgeBase


def choose(engine: Engine, turn: Turn, *choices: str) -> Turn:
    for choice in choices:
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    return turn


def say(engine: Engine, turn: Turn, *texts: str) -> Turn:
    for value in texts:
        turn = engine.handle(turn.session, Input.text(value))
    return turn


def ids(turn: Turn) -> list[str]:
    return [c.id for reply in turn.replies for c in reply.choices]


def all_text(turn: Turn) -> str:
    return "\n".join(reply.text for reply in turn.replies)


PATIENT_TRAINER = ("patient", "chronique", "stabilise", "former", "fr", "occitanie", "aucune",
                   "aucune", "mensuel")  # fmt: skip


def test_start_greets_and_asks_first_question(engine: Engine, kb: KnowledgeBase) -> None:
    turn = engine.start()
    assert turn.node == kb.flow.start
    assert "pas un service d'urgence" in all_text(turn)
    assert {"patient", "proche", "professionnel"} <= set(ids(turn))
    assert turn.session.kb_version == kb.version


def test_buttons_reach_a_recommendation_with_reasons_and_contacts(engine: Engine) -> None:
    turn = choose(engine, engine.start(), *PATIENT_TRAINER)
    assert turn.node == "recommendation"
    reco = turn.recommendation
    assert reco is not None
    assert 1 <= len(reco.roles) <= 3
    assert reco.roles[0].id == "patient_partenaire_formateur"
    assert reco.roles[0].reasons, "each role says why, from the person's answers"
    assert reco.contacts, "contacts of the territory are given"
    assert reco.territory == "fr-occitanie"
    assert any(e.kind == "conversation.completed" for e in turn.events)
    assert "Pourquoi" in all_text(turn)


def test_free_text_with_typos_and_no_accents(engine: Engine) -> None:
    turn = engine.start()
    turn = say(engine, turn, "je suis patiante")
    assert turn.node == "experience"
    assert "J'ai compris" in all_text(turn)
    turn = say(engine, turn, "maladie chronik")
    assert turn.node == "recul"


def test_answer_by_number(engine: Engine, kb: KnowledgeBase) -> None:
    turn = say(engine, engine.start(), "2")
    second = kb.questions[kb.flow.start].choices[1].id
    assert turn.session.answers == ((kb.flow.start, second),)


def test_gibberish_is_not_guessed(engine: Engine, kb: KnowledgeBase) -> None:
    start = engine.start()
    turn = say(engine, start, "zorglub wxq")
    assert turn.node == kb.flow.start
    assert turn.session.answers == ()
    assert "pas bien compris" in all_text(turn)
    assert ids(turn), "the choices are offered again"


def test_stale_button_from_an_older_message(engine: Engine) -> None:
    start = engine.start()
    turn = choose(engine, start, "patient")
    old = engine.handle(turn.session, Input.choice("proche", start.node))
    assert old.session.answers == turn.session.answers
    assert "message précédent" in all_text(old)
    assert old.node == "experience"


def test_unknown_button_id_from_an_old_version(engine: Engine) -> None:
    turn = engine.handle(engine.start().session, Input.choice("choix_disparu"))
    assert "message précédent" in all_text(turn)
    assert ids(turn)


def test_back_and_restart(engine: Engine, kb: KnowledgeBase) -> None:
    turn = choose(engine, engine.start(), "patient", "chronique")
    back = say(engine, turn, "retour")
    assert back.node == "experience"
    assert back.session.answers == ((kb.flow.start, "patient"),)
    asked = say(engine, back, "recommencer")
    assert asked.session.pending == "restart"
    assert asked.session.answers, "nothing is lost before confirming"
    fresh = say(engine, asked, "oui")
    assert fresh.node == kb.flow.start
    assert fresh.session.answers == ()


def test_back_at_first_question(engine: Engine) -> None:
    turn = say(engine, engine.start(), "retour")
    assert "première question" in all_text(turn)


def test_glossary_question_anywhere(engine: Engine) -> None:
    turn = choose(engine, engine.start(), "patient")
    answer = say(engine, turn, "c'est quoi un RU ?")
    assert "association agréée" in all_text(answer)
    assert "France" in all_text(answer), "a French rule says it is French"
    assert answer.node == "experience", "the conversation goes on where it was"
    assert answer.session.answers == turn.session.answers
    etp = say(engine, turn, "définition ETP")
    assert "éducation thérapeutique" in all_text(etp).lower()


def test_glossary_unknown_word_offers_the_list(engine: Engine) -> None:
    turn = say(engine, engine.start(), "c'est quoi un zorglub")
    assert "ne connais pas" in all_text(turn)
    assert any(i.startswith("term:") for i in ids(turn))


def test_contacts_before_territory_is_known(engine: Engine) -> None:
    turn = say(engine, engine.start(), "contacts")
    assert "pays" in all_text(turn).lower()


def test_stop_then_back(engine: Engine) -> None:
    turn = choose(engine, engine.start(), "patient")
    stopped = say(engine, turn, "stop")
    assert stopped.node == "exit"
    resumed = say(engine, stopped, "retour")
    assert resumed.node == "experience"


def test_very_long_message_is_answered_kindly(engine: Engine) -> None:
    start = engine.start()
    turn = say(engine, start, "a" * 10_000)
    assert turn.node == start.node
    assert "très long" in all_text(turn)


def test_empty_and_punctuation_only(engine: Engine) -> None:
    start = engine.start()
    for value in ("", "   ", "?!…", "\u200b"):
        turn = say(engine, start, value)
        assert turn.node == start.node
        assert ids(turn)


def test_session_survives_serialisation(engine: Engine) -> None:
    turn = choose(engine, engine.start(), "patient", "chronique")
    stored = json.loads(json.dumps(turn.session.to_dict()))
    restored = Session.from_dict(stored)
    assert restored == turn.session
    after = engine.handle(restored, Input.choice("stabilise", "recul"))
    assert after.node == "envie"


def test_professional_gets_partner_role_and_guide(engine: Engine) -> None:
    turn = choose(engine, engine.start(), "professionnel")
    question = engine.kb.questions[turn.node]
    turn = choose(engine, turn, question.choices[0].id, "fr", "idf")
    assert turn.recommendation is not None
    assert turn.recommendation.roles[0].id == "professionnel_partenaire"
    assert turn.recommendation.guide
    patient_roles = {r.id for r in turn.recommendation.roles} - {"professionnel_partenaire"}
    assert not patient_roles


def test_carer_reads_carer_wording(engine: Engine, kb: KnowledgeBase) -> None:
    turn = choose(engine, engine.start(), "proche", "maladie_rare", "stabilise", "partager", "fr",
                  "bretagne", "aucune", "aucune", "ponctuel")  # fmt: skip
    assert turn.recommendation is not None
    carer_titles = {
        role_id: role.carer.title["fr"]
        for role_id, role in kb.roles.items()
        if role.carer and role.carer.title
    }
    shown = {r.id: r.title for r in turn.recommendation.roles}
    assert any(shown[r] == carer_titles[r] for r in shown if r in carer_titles), shown


def test_ru_without_association_says_how_to_get_there(engine: Engine) -> None:
    turn = choose(engine, engine.start(), "patient", "chronique", "stabilise", "representer",
                  "fr", "idf", "aucune", "aucune", "mensuel")  # fmt: skip
    assert turn.recommendation is not None
    ru = next(r for r in turn.recommendation.roles if r.id == "representant_usagers")
    assert ru.not_yet, "membership of an association agréée is not yet within reach"
    assert any("association" in need.lower() for need, _ in ru.not_yet)


def test_contact_request_needs_explicit_consent(kb: KnowledgeBase) -> None:
    chu = Establishment(
        "chu-toulouse", "CHU de Toulouse", territories=("fr-occitanie",),
        webhook_url="https://chu.example/hook", secret=b"s" * 32,
    )  # fmt: skip
    engine = Engine(kb, receivers=(chu,))
    done = choose(engine, engine.start(), *PATIENT_TRAINER)
    assert "cmd:relation" in ids(done)
    asked = engine.handle(done.session, Input.choice("cmd:relation"))
    assert "Ce qui sera envoyé" in all_text(asked)
    assert "CHU de Toulouse" in all_text(asked), "consent names who receives the request"
    refused = engine.handle(asked.session, Input.choice("cmd:annuler"))
    assert not refused.events
    assert "rien n'a été envoyé" in all_text(refused)
    assert refused.session.answers == done.session.answers

    asked = engine.handle(done.session, Input.choice("cmd:relation"))
    how = engine.handle(asked.session, Input.choice("cmd:confirmer"))
    typed = engine.handle(how.session, Input.text("par e-mail le matin"))
    assert "par e-mail le matin" in all_text(typed)
    assert not typed.events
    sent = engine.handle(typed.session, Input.choice("cmd:confirmer"))
    (event,) = [e for e in sent.events if e.kind == "contact.requested"]
    assert event.data["how_to_reach"] == "par e-mail le matin"
    assert event.data["consent"] is True
    assert event.data["establishments"] == ["chu-toulouse"]
    assert "CHU de Toulouse" in all_text(sent)
    assert sent.session.contact_how is None


def test_session_from_older_version_resumes_at_nearest_question(engine: Engine) -> None:
    turn = choose(engine, engine.start(), "patient", "chronique")
    old = replace(turn.session, kb_version="0.0.1", node="question_supprimee")
    resumed = engine.handle(old, Input.text("aide"))
    assert resumed.session.kb_version == engine.kb.version
    assert resumed.node == "experience"
    assert "mis à jour" in all_text(resumed)


def test_every_reply_offers_buttons(engine: Engine) -> None:
    turn = engine.start()
    for step in ("patient", "aide", "glossaire", "cmd:reprendre", "zzz", "stop"):
        event = Input.choice(step) if step.startswith("cmd:") else Input.text(step)
        turn = engine.handle(turn.session, event)
        assert turn.replies[-1].choices, step


def test_contacts_only_for_the_people_they_concern(engine: Engine) -> None:
    rare = choose(engine, engine.start(), "proche", "maladie_rare", "stabilise", "soutenir_pairs",
                  "fr", "bretagne", "aucune", "aucune", "ponctuel")  # fmt: skip
    mental = choose(engine, engine.start(), "patient", "sante_mentale", "stabilise",
                    "soutenir_pairs", "fr", "bretagne", "aucune", "aucune", "ponctuel")  # fmt: skip
    assert rare.recommendation is not None and mental.recommendation is not None
    assert "pair_aidant" in {r.id for r in rare.recommendation.roles}
    rare_contacts = {c.id for c in rare.recommendation.contacts}
    mental_contacts = {c.id for c in mental.recommendation.contacts}
    assert "ccoms_msp" not in rare_contacts and "psycom" not in rare_contacts
    assert {"ccoms_msp", "psycom"} <= mental_contacts


def test_a_name_shared_by_two_places_gets_buttons_that_differ(engine: Engine) -> None:
    """« Saint-Denis » asks which one, and each button says where it is."""
    turn = engine.handle(engine.start().session, Input.text("j'habite à Saint-Denis"))
    labels = [choice.label for reply in turn.replies for choice in reply.choices]
    assert "Saint-Denis (La Réunion)" in labels
    assert "Saint-Denis (Île-de-France)" in labels
    reunion = next(c.id for r in turn.replies for c in r.choices if "Réunion" in c.label)
    chosen = engine.handle(turn.session, Input.choice(reunion, turn.node))
    assert chosen.understood.get("territory") == "fr-reunion"


def test_a_named_condition_is_said_back_without_nested_brackets(engine: Engine) -> None:
    turn = engine.handle(engine.start().session, Input.text("mon fils est schizophrène"))
    said = turn.replies[0].text
    assert "schizophrénie" in said
    assert "((" not in said and "))" not in said


#: A session as an older version stored it: the engine's state as plain keys of ``extra``.
OLD_SESSION: JsonObject = {
    "kb_version": "old",
    "node": "recul",
    "answers": [["profil", "patient"], ["experience", "chronique"]],
    "context": None,
    "lang": "fr",
    "pending": None,
    "stopped_at": None,
    "turns": 3,
    "extra": {
        "owner": "chu-exemple",
        "stats_id": "s-123",
        "prefill": {"envie": ["partager", "former"], "pays": ["fr"]},
        "condition": "diabete",
        "place": "quimper",
        "gender": "f",
        "misses": {"node": "recul", "count": 2},
        "last_miss": "repair_second",
        "offer_skip": "recul",
        "handoff_ids": ["chu-exemple"],
        "handoff_names": ["CHU Exemple"],
    },
}


def test_an_old_stored_session_loads_into_typed_fields_and_keeps_its_form() -> None:
    session = Session.from_dict(OLD_SESSION)
    assert session.owner == "chu-exemple" and session.condition == "diabete"
    assert session.prefill == {"envie": ("partager", "former"), "pays": ("fr",)}
    assert (session.misses, session.missed_at, session.offer_skip) == (2, "recul", "recul")
    assert session.handoff == (("chu-exemple", "CHU Exemple"),)
    assert session.gender == "f" and session.place == "quimper"
    assert session.extra == {"stats_id": "s-123"}, "what the engine does not own stays as is"
    assert session.to_dict() == OLD_SESSION, "stored again in the same readable form"


def test_an_old_stored_session_goes_on_where_it_was(engine: Engine) -> None:
    old = dict(OLD_SESSION, kb_version=engine.kb.version)
    turn = engine.handle(Session.from_dict(old), Input.choice("stabilise", "recul"))
    assert turn.node == "region", "the wishes and the country read ahead are used"
    assert turn.understood["wishes"] == "partager,former"
    assert turn.understood["condition"] == "diabete"
    assert turn.session.misses == 0, "the repair ladder starts again once answered"
    assert Session.from_dict(turn.session.to_dict()) == turn.session


def test_an_unknown_pending_step_from_another_version_is_dropped() -> None:
    session = Session.from_dict({**OLD_SESSION, "pending": "something_new"})
    assert session.pending is None
    assert Session.from_dict({**OLD_SESSION, "pending": "restart"}).pending == "restart"


def test_engine_modules_are_short_or_say_why() -> None:
    """No engine module over about 400 lines without a one-line reason at its top."""
    from pathlib import Path

    import bot.engine

    long = []
    for path in sorted(Path(bot.engine.__file__).parent.glob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > 400 and not lines[0].startswith("# Over 400 lines"):
            long.append(f"{path.name}: {len(lines)}")
    assert long == []


def test_event_kinds_are_spelled_only_in_events() -> None:
    """The engine names event kinds through ``bot.engine.events`` only."""
    import re
    from pathlib import Path

    import bot.engine
    from bot.engine import events

    literal = re.compile("|".join(re.escape(f'"{kind}"') for kind in events.ALL))
    found = [
        path.name
        for path in Path(bot.engine.__file__).parent.glob("*.py")
        if path.name != "events.py" and literal.search(path.read_text(encoding="utf-8"))
    ]
    assert found == []
