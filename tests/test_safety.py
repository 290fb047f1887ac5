"""The safety net: distress answered first with crisis numbers; near-misses left alone."""

from __future__ import annotations

import pytest

from bot.engine.flow import Engine, Turn
from bot.engine.normalize import normalize
from bot.engine.session import Input

DISTRESS = [
    "j'ai envie de mourir",
    "Je veux en finir",
    "je veux en finir avec la vie",
    "suicide",
    "je pense au suicide",
    "je n'en peux plus",
    "j'en peux plus de tout ça",
    "urgence",
    "c'est une urgence",
    "envi de mourrir",
    "je veux me suicidé",
    "jai des idees noires",
    "je ne veux plus vivre, plus envie de vivre",
    "au secours",
    "je vais me tuer",
    "je voudrais mourir",
    "JE N EN PEUX PLUS",
    "j'ai envie d'en finir",
    "je suis suicidaire depuis des semaines",
    "je veux mettre fin à mes jours",
    "je veux me faire du mal",
    "c'est urgent aidez moi vite",
]

NEAR_MISSES = [
    "je veux finir le questionnaire",
    "je veux en finir avec ce questionnaire",
    "je travaille aux urgences",
    "j'ai été soigné aux urgences",
    "le service des urgences m'a bien accueilli",
    "je suis bénévole en prévention du suicide",
    "ce n'est pas urgent",
    "rien d'urgent",
    "je veux soutenir des personnes",
    "j'ai fini mon traitement",
    "je peux plus tard",
    "mourir de rire",
    "je suis mordu de randonnée",
    "je veux finir ma formation",
    "la fin du parcours",
    "je veux partager mon histoire",
    "je suis passionnée",
    "sans urgence",
    "on peut continuer",
    "je ne sais pas",
]


def all_text(turn: Turn) -> str:
    return "\n".join(reply.text for reply in turn.replies)


def test_the_list_is_large_enough() -> None:
    assert len(DISTRESS) + len(NEAR_MISSES) >= 40
    assert len(NEAR_MISSES) >= 20


@pytest.mark.parametrize("phrase", DISTRESS)
def test_distress_gets_crisis_numbers_first(engine: Engine, phrase: str) -> None:
    start = engine.start()
    turn = engine.handle(start.session, Input.text(phrase))
    first = turn.replies[0].text
    assert "3114" in first and "112" in first
    assert turn.node == start.node, "never blocks: the question is still there"
    assert turn.session.answers == start.session.answers
    assert turn.replies[-1].choices, "buttons to continue"


@pytest.mark.parametrize("phrase", NEAR_MISSES)
def test_near_misses_do_not_trigger(engine: Engine, phrase: str) -> None:
    assert not engine.safety.is_distress(normalize(phrase)), phrase


def test_crisis_numbers_follow_the_country(engine: Engine) -> None:
    turn = engine.start()
    for choice in ("patient", "chronique", "stabilise", "partager", "be", "wallonie_bruxelles"):
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    crisis = engine.handle(turn.session, Input.text("je n'en peux plus"))
    body = crisis.replies[0].text
    assert "0800 32 123" in body
    assert "3114" not in body


def test_distress_at_a_later_step_keeps_the_answers(engine: Engine) -> None:
    turn = engine.start()
    for choice in ("proche", "cancer"):
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    crisis = engine.handle(turn.session, Input.text("envie de mourir"))
    assert crisis.session.answers == turn.session.answers
    resumed = engine.handle(crisis.session, Input.choice("stabilise", "recul"))
    assert resumed.node == "envie"


def test_medical_question_is_redirected(engine: Engine) -> None:
    turn = engine.start()
    answer = engine.handle(turn.session, Input.text("quelle dose de metformine dois-je prendre ?"))
    assert "avis médical" in all_text(answer)
    assert answer.node == turn.node


def test_medical_words_in_an_answer_are_still_an_answer(engine: Engine) -> None:
    turn = engine.start()
    turn = engine.handle(turn.session, Input.choice("patient", turn.node))
    turn = engine.handle(turn.session, Input.text("cancer du sein, chimiotherapie"))
    assert turn.node == "recul"
