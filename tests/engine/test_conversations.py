"""The persona conversations of ``tests/conversations/``, played against the engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.channels.script import load_script, play
from bot.engine.flow import Engine
from tests.harness.paths import CONVERSATIONS

SCRIPTS = sorted(CONVERSATIONS.glob("*.yaml"))


def test_there_are_at_least_twelve_personas() -> None:
    assert len(SCRIPTS) >= 12


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_persona(engine: Engine, path: Path) -> None:
    outcome = play(engine, load_script(path))
    assert outcome.ok, "\n".join([*outcome.failures, "--- transcript ---", *outcome.transcript])


def test_a_wrong_expectation_is_reported(engine: Engine, tmp_path: Path) -> None:
    script = tmp_path / "faux.yaml"
    script.write_text(
        "name: attente fausse\nsteps:\n  - {choice: professionnel}\n"
        "expect: {node: recommendation, roles_first: pair_aidant}\n",
        encoding="utf-8",
    )
    outcome = play(engine, load_script(script))
    assert not outcome.ok
    assert any("recommendation" in failure for failure in outcome.failures)
