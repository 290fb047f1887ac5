"""Understanding people in their own words: the corpus of ``tests/understanding/`` and the
behaviours around it (say-back and « Ce n'est pas ça », repair ladder, unknown answers)."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from bot.channels.corpus import describe, load_corpus, play_corpus
from bot.engine.flow import Engine, Turn
from bot.engine.session import UNKNOWN, Input
from bot.knowledge.model import KnowledgeBase

CORPUS = Path(__file__).resolve().parents[1] / "understanding"
FILES = sorted(CORPUS.glob("*.yaml"))


@pytest.fixture(scope="module")
def lexicon_engine(kb: KnowledgeBase) -> Engine:
    """The shipped base, with its lexicons (``contenus/lexique/``)."""
    return Engine(kb)


def test_the_corpus_is_large_enough() -> None:
    tuned = [p for p in FILES if not p.name.startswith("holdout")]
    assert sum(len(load_corpus(path).utterances) for path in tuned) >= 400


def test_the_held_out_set_is_large_enough() -> None:
    held_out = [p for p in FILES if p.name.startswith("holdout")]
    assert sum(len(load_corpus(path).utterances) for path in held_out) >= 60


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_corpus(lexicon_engine: Engine, path: Path) -> None:
    report = play_corpus(lexicon_engine, path)
    assert not report.failures, "\n".join(describe(r) for r in report.failures)
    assert not [r for r in report.results if r.silently_wrong]


def say(engine: Engine, turn: Turn, *texts: str) -> Turn:
    for value in texts:
        turn = engine.handle(turn.session, Input.text(value))
    return turn


def body(turn: Turn) -> str:
    return "\n".join(reply.text for reply in turn.replies)


def ids(turn: Turn) -> list[str]:
    return [c.id for reply in turn.replies for c in reply.choices]


def test_a_story_is_said_back_in_one_line_with_a_way_to_correct_it(lexicon_engine: Engine) -> None:
    engine = lexicon_engine
    turn = say(engine, engine.start(), "je suis la maman d'un garçon autiste, on habite à Quimper")
    first = turn.replies[0].text
    assert first.startswith("J'ai compris : vous accompagnez un proche")
    assert "autisme" in first and "à Quimper" in first
    assert turn.node == "recul", "profile and experience are answered, their questions skipped"
    assert "cmd:pas_ca" in ids(turn)
    assert turn.understood["territory"] == "fr-bretagne"


def test_not_that_forgets_what_was_just_understood(lexicon_engine: Engine) -> None:
    engine = lexicon_engine
    start = engine.start()
    turn = say(engine, start, "j'ai la maladie de Crohn")
    assert turn.node == "recul"
    undone = engine.handle(turn.session, Input.choice("cmd:pas_ca", turn.node))
    assert undone.node == "profil"
    assert undone.understood == {}
    assert "cmd:pas_ca" not in ids(undone)
    typed = say(engine, turn, "non c'est pas ça")
    assert typed.node == "profil" and typed.session.answers == ()


def test_facts_given_early_skip_their_questions_and_are_kept(lexicon_engine: Engine) -> None:
    engine = lexicon_engine
    turn = say(engine, engine.start(), "je veux témoigner, j'habite à Toulouse")
    assert turn.node == "profil", "the profile is still unknown: it is asked"
    assert turn.understood["wish"] == "partager"
    turn = say(engine, turn, "je suis patient", "diabète", "j'ai pris du recul")
    assert turn.node == "association", "the wish question is skipped"
    for choice in ("aucune", "aucune", "mensuel"):
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    assert turn.node == "recommendation", "country and region were given at the start"
    assert turn.recommendation is not None
    assert turn.recommendation.territory == "fr-occitanie"


def test_a_later_named_condition_replaces_the_earlier_answer(lexicon_engine: Engine) -> None:
    engine = lexicon_engine
    turn = engine.start()
    for choice in ("patient", "chronique"):
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    turn = say(engine, turn, "en fait c'est une leucémie, j'ai pris du recul")
    assert ("experience", "cancer") in turn.session.answers
    assert ("experience", "chronique") not in turn.session.answers
    assert "J'ai compris" in body(turn)


def test_the_repair_ladder_never_repeats_and_ends_with_skip(lexicon_engine: Engine) -> None:
    engine = lexicon_engine
    turn = engine.start()
    for choice in ("patient", "chronique"):
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    seen: list[str] = []
    for _ in range(5):
        turn = say(engine, turn, "zorglub")
        seen.append(turn.replies[0].text)
        assert turn.node == "recul"
    assert all(a != b for a, b in pairwise(seen)), seen
    assert "par exemple" in seen[0]
    assert "1. J'ai pris du recul" in seen[1]
    assert "cmd:passer" in ids(turn)
    skipped = engine.handle(turn.session, Input.choice("cmd:passer", turn.node))
    assert skipped.node == "envie"
    assert ("recul", UNKNOWN) in skipped.session.answers
    assert "recul" not in skipped.understood


def test_second_miss_offers_the_closest_choices(lexicon_engine: Engine) -> None:
    engine = lexicon_engine
    turn = engine.start()
    for choice in ("patient", "chronique", "stabilise"):
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    turn = say(engine, turn, "histwar")
    turn = say(engine, turn, "histwar")
    assert turn.replies[0].text.startswith("Vouliez-vous dire")
    offered = ids(turn)
    assert "partager" in offered and len(offered) <= 3


def test_two_choices_at_once_are_asked_about_never_picked(lexicon_engine: Engine) -> None:
    engine = lexicon_engine
    turn = engine.start()
    turn = say(engine, turn, "je suis infirmière et ma fille a un cancer")
    assert turn.node == "profil"
    assert set(ids(turn)) == {"professionnel", "proche"}
    assert turn.replies[0].text.startswith("Vous voulez dire")


def test_an_ambiguous_place_is_asked_about(lexicon_engine: Engine) -> None:
    engine = lexicon_engine
    turn = engine.start()
    turn = say(engine, turn, "j'habite à Saint-Denis")
    assert "Saint-Denis de La Réunion ou Saint-Denis (Seine-Saint-Denis) ?" in body(turn)
    picked = engine.handle(turn.session, Input.choice("place:saint-denis-reunion", turn.node))
    assert picked.understood["territory"] == "fr-reunion"


def test_several_wishes_are_all_kept(lexicon_engine: Engine) -> None:
    engine = lexicon_engine
    turn = engine.start()
    for choice in ("patient", "chronique", "stabilise"):
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    turn = say(engine, turn, "témoigner et former les soignants")
    assert ("envie", "partager") in turn.session.answers
    assert ("envie", "former") in turn.session.answers
    back = engine.handle(turn.session, Input.command("retour"))
    assert back.node == "envie"
    assert not [a for a in back.session.answers if a[0] == "envie"]


def test_a_glossary_term_typed_after_glossaire_is_shown(lexicon_engine: Engine) -> None:
    engine = lexicon_engine
    turn = engine.start()
    for choice in ("patient", "chronique", "stabilise"):
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    opened = engine.handle(turn.session, Input.command("glossaire"))
    shown = say(engine, opened, "RU")
    assert shown.replies[0].text.startswith("Représentant")
    assert shown.session.answers == turn.session.answers, "not taken as the « RU » wish"
    later = say(engine, shown, "RU")
    assert ("envie", "representer") in later.session.answers


def test_why_and_small_talk_then_the_question_again(lexicon_engine: Engine) -> None:
    engine = lexicon_engine
    turn = engine.start()
    why = say(engine, turn, "pourquoi vous demandez ça ?")
    question = engine.kb.questions["profil"]
    assert why.replies[0].text == (question.why or {}).get("fr")
    assert why.replies[-1].text == question.text["fr"]
    hello = say(engine, turn, "coucou")
    assert hello.replies[-1].text == question.text["fr"] and hello.node == "profil"


def test_natural_commands(lexicon_engine: Engine) -> None:
    engine = lexicon_engine
    turn = engine.start()
    for choice in ("patient", "chronique"):
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    assert say(engine, turn, "on peut revenir en arrière ?").node == "experience"
    assert say(engine, turn, "je me suis trompée").node == "experience"
    assert say(engine, turn, "on recommence").session.pending == "restart"
    restart = say(engine, turn, "on recommence", "ouais")
    assert restart.node == "profil" and restart.session.answers == ()
    assert say(engine, turn, "je veux arrêter").node == "exit"


def test_a_question_about_a_word_is_not_a_barometer_score(kb_with_barometer: Engine) -> None:
    engine = kb_with_barometer
    turn = engine.handle(engine.start().session, Input.command("barometre"))
    rater = next(c.id for r in turn.replies for c in r.choices)
    turn = engine.handle(turn.session, Input.choice(rater, turn.node))
    before = dict(turn.session.mode_state)
    asked = engine.handle(turn.session, Input.text("c koi un RU"))
    assert asked.replies[0].text.startswith("Représentant")
    assert asked.session.mode_state == before, "no score was recorded"


@pytest.fixture
def kb_with_barometer(lexicon_engine: Engine) -> Engine:
    from bot.engine.barometer import BarometerMode

    return Engine(lexicon_engine.kb, modes=(BarometerMode(),))


def test_the_recommendation_names_the_condition_the_person_named(lexicon_engine: Engine) -> None:
    engine = lexicon_engine
    turn = say(engine, engine.start(), "j'ai une sclérose en plaques depuis 10 ans")
    for choice in ("stabilise", "partager", "fr", "bretagne", "aucune", "aucune", "ponctuel"):
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    assert turn.node == "recommendation"
    assert "Vous vivez avec une sclérose en plaques : voici les rôles" in body(turn)


def test_never_the_same_not_understood_twice_after_the_recommendation(
    lexicon_engine: Engine,
) -> None:
    engine = lexicon_engine
    turn = engine.start()
    for choice in ("patient", "chronique", "stabilise", "partager", "lu", "aucune",
                   "aucune", "ponctuel"):  # fmt: skip
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    assert turn.node == "recommendation"
    first = say(engine, turn, "zorglub")
    second = say(engine, first, "zorglub")
    third = say(engine, second, "zorglub")
    assert first.replies[0].text != second.replies[0].text != third.replies[0].text


def test_a_later_profile_on_another_path_is_followed_and_can_be_undone(
    lexicon_engine: Engine,
) -> None:
    engine = lexicon_engine
    turn = engine.start()
    for choice in ("patient", "chronique", "stabilise", "partager", "fr", "bretagne"):
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    assert turn.node == "association"
    changed = say(engine, turn, "en fait je suis infirmière")
    assert changed.node == "pro_projet", "the professional path is followed"
    assert changed.understood["profile"] == "professionnel"
    assert "experience" not in changed.understood, "a patient's answers no longer apply"
    assert changed.understood["territory"] == "fr-bretagne", "the place still applies"
    assert "Je remplace votre réponse" in body(changed)
    undone = engine.handle(changed.session, Input.choice("cmd:pas_ca", changed.node))
    assert undone.node == "association"
    assert undone.session.answers == turn.session.answers


def test_a_later_place_in_another_country_updates_country_and_territory(
    lexicon_engine: Engine,
) -> None:
    engine = lexicon_engine
    turn = engine.start()
    for choice in ("patient", "chronique", "stabilise", "partager", "fr", "bretagne"):
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    moved = say(engine, turn, "je vis à Genève")
    assert moved.understood["country"] == "ch" and moved.understood["territory"] == "ch"
    assert "region" not in moved.understood, "the French region is dropped"
    assert "vous vivez à Genève" in body(moved)
    assert moved.node == "association"


def test_a_new_place_after_the_recommendation_gives_it_again(lexicon_engine: Engine) -> None:
    engine = lexicon_engine
    turn = engine.start()
    for choice in ("patient", "chronique", "stabilise", "partager", "fr", "bretagne"):
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    for choice in ("aucune", "aucune", "ponctuel"):
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    assert turn.recommendation is not None and turn.recommendation.territory == "fr-bretagne"
    again = say(engine, turn, "en fait j'habite à Liège")
    assert again.recommendation is not None
    assert again.recommendation.territory == "be-wallonie-bruxelles"
    assert "vous vivez à Liège" in body(again)


def test_a_four_digit_code_of_several_countries_is_asked_never_guessed(
    lexicon_engine: Engine,
) -> None:
    engine = lexicon_engine
    turn = engine.start()
    for choice in ("patient", "chronique", "stabilise", "partager"):
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    asked = say(engine, turn, "1000")
    assert "1000" in asked.replies[0].text
    labels = {c.label for c in asked.replies[0].choices}
    assert labels == {"Belgique", "Suisse", "Luxembourg"}
    assert "country" not in asked.understood, "nothing is taken before the person says which"
    belgium = next(c.id for c in asked.replies[0].choices if c.label == "Belgique")
    chosen = engine.handle(asked.session, Input.choice(belgium, asked.node))
    assert chosen.understood["territory"] == "be-wallonie-bruxelles"
    assert chosen.node == "association"


def test_a_year_is_not_a_postal_code(lexicon_engine: Engine) -> None:
    engine = lexicon_engine
    turn = say(engine, engine.start(), "j'ai un cancer depuis 2010")
    assert "country" not in turn.understood and "territory" not in turn.understood
    assert turn.node == "recul"


def _to_the_end(engine: Engine, wishes: str) -> Turn:
    turn = engine.start()
    for choice in ("patient", "chronique", "stabilise"):
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    turn = say(engine, turn, wishes)
    for choice in ("fr", "bretagne", "aucune", "aucune", "ponctuel"):
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    return turn


def test_several_wishes_are_all_kept_and_weigh_the_same(lexicon_engine: Engine) -> None:
    turn = say(lexicon_engine, lexicon_engine.start(), "je veux témoigner et aider les autres")
    assert turn.understood["wishes"] == "partager,soutenir_pairs"
    end = _to_the_end(lexicon_engine, "je veux témoigner et aider les autres")
    assert end.session.pending is None, "the order changes nothing: never asked"
    assert end.recommendation is not None
    reasons = [r for role in end.recommendation.roles for r in role.reasons]
    assert any("témoign" in r or "histoire" in r for r in reasons)
    assert any("soutenir des personnes" in r for r in reasons), reasons


def test_which_wish_comes_first_is_asked_only_when_it_changes_the_first_role(
    lexicon_engine: Engine,
) -> None:
    engine = lexicon_engine
    asked = _to_the_end(engine, "je veux témoigner et former les soignants")
    assert asked.recommendation is None and asked.session.pending == "wish_lead"
    assert ids(asked) == ["lead:partager", "lead:former", "lead:"]
    first = {}
    for button in ("lead:partager", "lead:former"):
        chosen = engine.handle(asked.session, Input.choice(button, asked.node))
        assert chosen.recommendation is not None and chosen.node == "recommendation"
        first[button] = chosen.recommendation.roles[0].id
    assert first["lead:partager"] != first["lead:former"]
    typed = say(engine, asked, "plutôt former")
    assert typed.recommendation is not None
    assert typed.recommendation.roles[0].id == first["lead:former"]
    assert typed.understood["wish"] == "former"
    same = say(engine, asked, "les deux")
    assert same.recommendation is not None, "« les deux »: they weigh the same"
    yes = say(engine, asked, "oui")
    assert yes.session.answers == asked.session.answers, "« oui » never restarts here"
    assert yes.session.pending == "wish_lead"
