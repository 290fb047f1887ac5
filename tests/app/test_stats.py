"""Usage statistics: recorded conversations give hand-computed figures; small counts are hidden."""

from __future__ import annotations

import csv
import datetime as dt
import io
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.adapters.charts import FUNNEL_SIZE
from bot.app.engines import build_engine
from bot.app.stats import StatsRecorder
from bot.app.stats_output import funnel_chart, render_csv
from bot.app.stats_report import Report, StatsReader, hide_partition, question_order
from bot.cli import main
from bot.engine.flow import Engine, Turn
from bot.engine.session import Input
from bot.knowledge.establishments import Establishment
from bot.knowledge.model import KnowledgeBase
from bot.storage.features import FeatureStore

DAY = dt.date(2026, 11, 20)
TYPED = "Je m'appelle Marie Dupont"
HOW = "marie.dupont@example.org 06 12 34 56 78"


@pytest.fixture
async def store() -> AsyncIterator[FeatureStore]:
    async with FeatureStore(":memory:") as opened:
        yield opened


class Recorder:
    def __init__(self, engine: Engine, recorder: StatsRecorder, day: dt.date = DAY) -> None:
        self.engine, self.recorder, self.day = engine, recorder, day

    async def start(self, context: str) -> Turn:
        return await self.recorder.record(self.engine.start(context), "test", self.day)

    async def send(self, turn: Turn, event: Input) -> Turn:
        return await self.recorder.record(self.engine.handle(turn.session, event), "test", self.day)

    async def answer(self, turn: Turn, pick: int, count: int | None = None) -> Turn:
        answered = 0
        while turn.node in self.engine.kb.questions and (count is None or answered < count):
            question = self.engine.kb.questions[turn.node]
            choice = question.choices[min(pick, len(question.choices) - 1)]
            turn = await self.send(turn, Input.choice(choice.id, turn.node))
            answered += 1
        return turn


async def record_set(engine: Engine, store: FeatureStore) -> None:
    """13 conversations; the expected figures below are counted by hand from this set."""
    r = Recorder(engine, StatsRecorder(store))
    for index in range(6):  # A: full path, Occitanie; five ask to be put in touch
        turn = await r.answer(await r.start("chu-a"), pick=0)
        assert turn.node == "recommendation"
        if index < 5:
            turn = await r.send(turn, Input.choice("cmd:relation"))
            turn = await r.send(turn, Input.choice("cmd:confirmer"))
            turn = await r.send(turn, Input.text(HOW))
            turn = await r.send(turn, Input.choice("cmd:confirmer"))
            assert any(e.kind == "contact.requested" for e in turn.events)
    for _ in range(2):  # B: full path, Luxembourg
        assert (await r.answer(await r.start("chu-a"), pick=1)).node == "recommendation"
    for _ in range(3):  # C: one answer, then gone
        await r.answer(await r.start("petit"), pick=0, count=1)
    await r.start("chu-a")  # D: opened, never answered
    turn = await r.answer(await r.start("petit"), pick=0, count=2)  # E: two answers, text, stop
    turn = await r.send(turn, Input.text(TYPED))
    assert (await r.send(turn, Input.text("stop"))).node == "exit"


def counts(rows: tuple[object, ...]) -> dict[str, object]:
    return {row.key: row.count for row in rows}  # type: ignore[attr-defined]


def engine_with_chu_a(kb: KnowledgeBase) -> Engine:
    """CHU A receives the contact requests of its context, so the bot may offer them."""
    chu_a = Establishment(
        "chu-a", "CHU A", contexts=("chu-a",), webhook_url="https://chu-a.example/hook",
        secret=b"s" * 32,
    )  # fmt: skip
    return build_engine(kb, receivers=(chu_a,))


@pytest.fixture
def engine_b(kb: KnowledgeBase) -> Engine:
    return engine_with_chu_a(kb)


async def test_figures_match_hand_computed_counts(
    engine_b: Engine, kb: KnowledgeBase, store: FeatureStore
) -> None:
    await record_set(engine_b, store)
    report = await StatsReader(store, kb).report(k=2)
    assert report.started == 13
    assert report.completed == 8
    assert report.completion_rate == round(8 / 13, 3)
    funnel = counts(report.funnel)
    assert funnel["_started"] == 13
    assert funnel["profil"] == 13
    assert funnel["experience"] == 12  # A6 + B2 + C3 + E1
    assert funnel["recul"] == 9  # A6 + B2 + E1
    assert funnel["envie"] == 8
    assert funnel["pays"] == 8
    assert funnel["region"] == 6  # only the French path asks the region
    assert funnel["recommendation"] == 8
    # In the order people meet the questions: the patients' path, then the professionals'
    # question, then the questions both paths share; never bars going 13 → 7 → 5 → 7 because
    # two branches are interleaved.
    assert list(funnel) == [
        "_started",
        *("profil", "experience", "recul", "envie", "pays", "region", "association"),
        *("formation", "disponibilite", "recommendation"),
    ]
    # Down one path (no professional among these), the region being France's branch only.
    path = [
        c for k, c in funnel.items() if isinstance(c, int) and k not in ("region", "recommendation")
    ]
    assert path == sorted(path, reverse=True)
    # Where people left: C at "experience" (3), D at "profil" (1), E at "exit" (1); k=2.
    assert counts(report.dropoff) == {"experience": 3, "profil": None, "exit": None}
    assert counts(report.roles) == {
        "benevole_associatif": 8,
        "patient_partenaire": 8,
        "patient_partenaire_formateur": 6,
        "patient_intervenant_etp": 2,
    }
    assert counts(report.territories) == {"fr-occitanie": 6, "lu": 2}
    assert counts(report.outcomes) == {"contact:1": 5}


async def test_small_counts_are_hidden_with_the_default_threshold(
    engine_b: Engine, kb: KnowledgeBase, store: FeatureStore
) -> None:
    await record_set(engine_b, store)
    report = await StatsReader(store, kb).report()
    assert report.k == 5
    assert counts(report.dropoff) == {"experience": None, "profil": None, "exit": None}
    assert counts(report.roles)["patient_intervenant_etp"] is None
    # "lu" (2) is hidden; "fr-occitanie" too, or it would give lu = 8 - 6.
    assert counts(report.territories) == {"fr-occitanie": None, "lu": None}
    # A context with only four conversations shows nothing at all.
    small = await StatsReader(store, kb).report(context="petit")
    assert small.started is None and small.completed is None and small.funnel == ()
    chu = await StatsReader(store, kb).report(context="chu-a")
    assert (chu.started, chu.completed) == (9, 8)
    data = chu.to_dict()
    assert data["conversations"] == 9 and data["context"] == "chu-a"


async def test_no_typed_text_is_kept(engine_b: Engine, store: FeatureStore) -> None:
    await record_set(engine_b, store)
    tables = [
        str(row[0])
        for row in await store.read("SELECT name FROM sqlite_master WHERE type = 'table'")
        if str(row[0]).startswith("stats_")
    ]
    assert len(tables) == 4
    for table in tables:
        for row in await store.read(f"SELECT * FROM {table}"):
            flat = " ".join(str(value) for value in row).lower()
            assert "marie" not in flat and "dupont" not in flat and "06 12" not in flat


async def test_since_filters_by_day(
    engine_b: Engine, kb: KnowledgeBase, store: FeatureStore
) -> None:
    old = Recorder(engine_b, StatsRecorder(store), day=dt.date(2026, 1, 1))
    for _ in range(5):
        await old.start("chu-a")
    await record_set(engine_b, store)
    reader = StatsReader(store, kb)
    assert (await reader.report(k=2)).started == 18
    assert (await reader.report(since=DAY, k=2)).started == 13


def test_one_hidden_cell_in_a_partition_hides_a_second() -> None:
    assert hide_partition({"a": 10, "b": 7, "c": 2}, 5, total_shown=True) == {
        "a": 10,
        "b": None,
        "c": None,
    }
    assert hide_partition({"a": 10, "b": 7, "c": 2}, 5, total_shown=False) == {
        "a": 10,
        "b": 7,
        "c": None,
    }
    assert hide_partition({"a": 10, "b": 0, "c": 2}, 5, total_shown=True)["a"] is None


async def test_csv_and_funnel_chart(
    engine_b: Engine, kb: KnowledgeBase, store: FeatureStore
) -> None:
    await record_set(engine_b, store)
    report: Report = await StatsReader(store, kb).report()
    rows = list(csv.reader(io.StringIO(render_csv(report))))
    assert rows[0] == ["section", "id", "label", "count"]
    assert ["total", "conversations", "Conversations", "13"] in rows
    assert any(r[0] == "dropoff" and r[1] == "experience" and r[3] == "" for r in rows)
    png = funnel_chart(report)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == FUNNEL_SIZE


def test_stats_command(
    tmp_path: Path, kb: KnowledgeBase, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    db = tmp_path / "p.sqlite3"

    async def fill() -> None:
        async with FeatureStore(db) as store:
            await record_set(engine_with_chu_a(kb), store)

    asyncio.run(fill())
    out_csv, out_png = tmp_path / "s.csv", tmp_path / "s.png"
    code = main(
        [
            "stats",
            "--db",
            str(db),
            "--csv",
            str(out_csv),
            "--chart",
            str(out_png),
            "--since",
            "2026-11-01",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Conversations : 13" in printed
    assert "Taux de complétion : 62%" in printed
    assert "< 5" in printed
    assert out_csv.read_text(encoding="utf-8").startswith("section,id,label,count")
    assert out_png.read_bytes()[:4] == b"\x89PNG"
    assert main(["stats", "--db", str(tmp_path / "missing.sqlite3")]) == 1


async def test_features_after_turn_records_and_draws(kb: KnowledgeBase) -> None:
    from bot.app.features import Features
    from bot.engine.barometer import RATER

    engine = build_engine(kb)
    features = Features(engine, FeatureStore(":memory:"))
    await features.open()
    try:
        turn = await features.after_turn(engine.start("chu-a"), channel="web", member="m1")
        turn = await features.after_turn(
            engine.handle(turn.session, Input.choice("cmd:barometre")), channel="web", member="m1"
        )
        turn = engine.handle(turn.session, Input.choice(RATER + "usager"))
        for _ in range(11):
            turn = engine.handle(turn.session, Input.text("2"))
        turn = await features.after_turn(turn, channel="web", member="m1")
        assert [r.image for r in turn.replies if r.image is not None]
        data = await features.stats_json("chu-a", k=1)
        assert data["conversations"] == 1 and data["context"] == "chu-a"
        assert data["outcomes"] == [
            {
                "id": "barometer:usager",
                "label": "Baromètres remplis par des patients, proches-aidants, RU",
                "count": 1,
            }
        ]
        assert (await features.stats_json("other", k=1))["conversations"] == 0
    finally:
        await features.close()


def test_every_question_comes_after_those_that_lead_to_it(kb: KnowledgeBase) -> None:
    order = question_order(kb)
    assert sorted(order) == sorted(kb.questions)
    for question_id, question in kb.questions.items():
        targets = {c.next or question.next for c in question.choices}
        targets |= {branch.next for branch in question.next_when}
        for target in targets:
            if target in kb.questions:
                assert order.index(question_id) < order.index(target), (question_id, target)
    # One branch to its end before the next: the professionals' question is not wedged
    # between the patients' own questions.
    patients = order[order.index("experience") : order.index("envie") + 1]
    assert patients == ["experience", "recul", "envie"]
    assert order.index("pro_projet") < order.index("pays")
