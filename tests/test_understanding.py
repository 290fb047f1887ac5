"""Understanding people in their own words: the corpus of ``tests/understanding/`` and the
behaviours around it (say-back and « Ce n'est pas ça », repair ladder, unknown answers)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.channels.corpus import describe, load_corpus, play_corpus
from bot.engine.flow import Engine, Turn
from bot.engine.session import Input
from bot.knowledge.loader import load
from tests.conftest import CONTENUS

CORPUS = Path(__file__).resolve().parent / "understanding"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lexique"
FILES = sorted(CORPUS.glob("*.yaml"))


@pytest.fixture(scope="module")
def lexicon_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The shipped base; the conditions and places lexicons of ``tests/fixtures/`` stand in
    for the shipped ones only while ``contenus/lexique/`` has none."""
    base = tmp_path_factory.mktemp("base") / "contenus"
    shutil.copytree(CONTENUS, base)
    for name in ("conditions.yaml", "lieux.yaml"):
        if not (base / "lexique" / name).exists():
            shutil.copy(FIXTURES / name, base / "lexique" / name)
    yield Engine(load(base))


def test_the_corpus_is_large_enough() -> None:
    assert sum(len(load_corpus(path).utterances) for path in FILES) >= 400


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
