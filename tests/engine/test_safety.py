"""The safety net: distress answered first with crisis numbers; near-misses left alone."""

from __future__ import annotations

import pytest

from bot.engine.flow import Engine, Turn
from bot.engine.normalize import normalize
from bot.engine.session import Input
from tests.harness.phrases import DISTRESS, NEAR_MISSES


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
    assert not engine.is_distress(phrase), phrase


@pytest.mark.parametrize("phrase", NEAR_MISSES)
def test_near_misses_get_no_crisis_numbers_in_a_conversation(engine: Engine, phrase: str) -> None:
    turn = engine.handle(engine.start().session, Input.text(phrase))
    assert "3114" not in all_text(turn), phrase


def test_medical_question_about_a_named_condition_is_redirected(engine: Engine) -> None:
    turn = engine.start()
    turn = engine.handle(turn.session, Input.choice("patient", turn.node))
    answer = engine.handle(turn.session, Input.text("quel traitement pour mon diabète ?"))
    assert "avis médical" in all_text(answer)
    assert answer.node == "experience", "not taken as the answer « maladie chronique »"
    assert answer.session.answers == turn.session.answers


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


def test_distress_in_the_barometer_and_a_contact_request(engine: Engine) -> None:
    from bot.engine.barometer import BarometerMode

    with_modes = Engine(engine.kb, modes=(BarometerMode(),))
    turn = with_modes.handle(with_modes.start().session, Input.command("barometre"))
    crisis = with_modes.handle(turn.session, Input.text("jveux mourir"))
    assert "3114" in crisis.replies[0].text
    assert crisis.session.mode == turn.session.mode is not None, "mode kept"
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Hospital:
        id: str = "chu-test"
        name: str = "CHU de test"
        contexts: tuple[str, ...] = ()
        territories: tuple[str, ...] = ("fr-occitanie",)
        webhook_url: str | None = "https://chu.test/hook"

    receiving = Engine(engine.kb, receivers=(Hospital(),))
    turn = receiving.start()
    for choice in ("patient", "chronique", "stabilise", "partager", "fr", "occitanie",
                   "aucune", "aucune", "ponctuel"):  # fmt: skip
        turn = receiving.handle(turn.session, Input.choice(choice, turn.node))
    assert turn.node == "recommendation"
    asking = receiving.handle(turn.session, Input.command("relation"))
    asking = receiving.handle(asking.session, Input.text("oui"))
    assert asking.session.pending == "contact_how"
    crisis = receiving.handle(asking.session, Input.text("chui a bout"))
    assert "3114" in crisis.replies[0].text
    assert crisis.session.pending == "contact_how", "the crisis text is not sent as a contact"
