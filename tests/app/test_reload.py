"""A conversation open across a knowledge-base reload (:class:`bot.app.reload.Reloader`): the
person goes on where they were, pending question included."""

from __future__ import annotations

import re
from pathlib import Path

from bot.app.engines import build_engine
from bot.app.reload import EngineHolder, Reloader
from bot.engine.flow import Engine, Turn
from bot.engine.session import Input
from bot.knowledge.loader import load
from tests.harness.knowledge import version_b

WISHES = "je veux témoigner et former les soignants"


def at_which_comes_first(engine: Engine) -> Turn:
    """A patient whose two wishes lead to different first roles: « Lequel passe en premier ? »."""
    turn = engine.start()
    for choice in ("patient", "chronique", "stabilise"):
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    turn = engine.handle(turn.session, Input.text(WISHES))
    for choice in ("fr", "bretagne", "aucune", "aucune", "ponctuel"):
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
    return turn


def buttons(turn: Turn) -> list[str]:
    return [choice.id for reply in turn.replies for choice in reply.choices]


def texts(turn: Turn) -> str:
    return "\n".join(reply.text for reply in turn.replies)


async def reloaded(base: Path, holder: EngineHolder) -> Engine:
    meta = base / "meta.yaml"
    meta.write_text(re.sub(r"version: \S+", "version: 9.9.9", meta.read_text("utf-8")), "utf-8")
    result = await Reloader(base, [holder]).reload()
    assert result.ok and holder.engine.kb.version == "9.9.9", result.problems
    return holder.engine


async def test_which_comes_first_stays_open_across_a_reload(base_copy: Path) -> None:
    holder = EngineHolder(build_engine(load(base_copy)), build_engine)
    before = holder.engine
    asked = at_which_comes_first(before)
    question = before.msg("wish_lead", asked.session)
    assert asked.session.pending == "wish_lead" and question in texts(asked)
    wanted = before.handle(asked.session, Input.choice("lead:former", asked.node))
    assert wanted.recommendation is not None

    engine = await reloaded(base_copy, holder)
    # Something not understood: the same question again, with its buttons.
    again = engine.handle(asked.session, Input.text("euh"))
    assert again.session.pending == "wish_lead"
    assert question in texts(again)
    assert buttons(again)[-3:] == ["lead:partager", "lead:former", "lead:"]
    # The button of the message shown before the reload still answers it.
    chosen = engine.handle(again.session, Input.choice("lead:former", asked.node))
    assert chosen.recommendation is not None and chosen.node == "recommendation"
    assert [r.id for r in chosen.recommendation.roles] == [
        r.id for r in wanted.recommendation.roles
    ]
    # Typed, straight after the reload, it is understood too.
    typed = engine.handle(asked.session, Input.text("plutôt former"))
    assert typed.recommendation is not None
    assert typed.recommendation.roles[0].id == wanted.recommendation.roles[0].id


async def test_which_comes_first_is_dropped_when_an_answer_no_longer_holds(
    base_copy: Path,
) -> None:
    """The new base renamed a question answered before (``recul``): the person is asked where
    they stand, not asked to rank wishes on a path that no longer holds."""
    holder = EngineHolder(build_engine(load(base_copy)), build_engine)
    asked = at_which_comes_first(holder.engine)
    version_b(base_copy)
    result = await Reloader(base_copy, [holder]).reload()
    assert result.ok, result.problems
    engine = holder.engine
    after = engine.handle(asked.session, Input.text("euh"))
    assert after.session.pending is None
    assert engine.msg("wish_lead", after.session) not in texts(after)
