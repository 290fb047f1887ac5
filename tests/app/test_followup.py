"""Follow-ups: asked with consent, kept in SQLite, rebuilt after a restart, never doubled."""

from __future__ import annotations

import time
from pathlib import Path

from bot.app.engines import build_engine
from bot.app.followups import FollowUp, FollowUps
from bot.app.stats import StatsRecorder
from bot.app.stats_report import StatsReader
from bot.engine import followup as mode
from bot.engine.flow import Engine, Turn
from bot.engine.session import Input
from bot.json_types import as_list
from bot.knowledge.model import KnowledgeBase
from bot.storage.features import FeatureStore


class FakeScheduler:
    """An in-memory job queue, lost on restart exactly like PTB's."""

    def __init__(self) -> None:
        self.jobs: dict[str, tuple[float, FollowUp]] = {}

    def scheduled(self) -> set[str]:
        return set(self.jobs)

    def schedule(self, name: str, when: float, followup: FollowUp) -> None:
        assert name not in self.jobs, "scheduled twice"
        self.jobs[name] = (when, followup)


def recommended(engine: Engine) -> Turn:
    turn = engine.start("chu-a")
    while turn.node in engine.kb.questions:
        choice = engine.kb.questions[turn.node].choices[0]
        turn = engine.handle(turn.session, Input.choice(choice.id, turn.node))
    assert turn.node == "recommendation"
    return turn


async def test_consent_schedules_one_follow_up(kb: KnowledgeBase, tmp_path: Path) -> None:
    engine = build_engine(kb, followup=True)
    turn = recommended(engine)
    assert "cmd:suivi" in [c.id for c in turn.replies[-1].choices]
    asked = engine.handle(turn.session, Input.choice("cmd:suivi"))
    assert "14 jours" in asked.replies[-1].text
    refused = engine.handle(asked.session, Input.text("non merci"))
    assert refused.events == () and refused.session.mode is None
    agreed = engine.handle(asked.session, Input.choice(mode.YES))
    [event] = agreed.events
    assert event.kind == mode.REQUESTED and event.data["consent"] is True
    assert event.data["roles"] and event.data["days"] == 14

    async with FeatureStore(tmp_path / "db.sqlite3") as store:
        followups, scheduler = FollowUps(store), FakeScheduler()
        before = time.time()
        await followups.apply("u1", "telegram:1", agreed, scheduler)
        await followups.apply("u1", "telegram:1", agreed, scheduler)  # asked twice: still one
        [pending] = await followups.pending()
        assert pending.roles == tuple(as_list(event.data["roles"]))
        assert pending.due_at >= before + 14 * 86400 - 1
        assert list(scheduler.jobs) == [pending.job_name]


def test_follow_up_is_offered_only_after_a_recommendation(kb: KnowledgeBase) -> None:
    engine = build_engine(kb, followup=True)
    turn = engine.handle(engine.start().session, Input.choice("cmd:suivi"))
    assert "après vous avoir proposé des rôles" in turn.replies[0].text
    assert "cmd:suivi" not in [
        c.id for c in build_engine(kb).prompt(recommended(engine).session).choices
    ]


async def test_restart_neither_loses_nor_doubles(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite3"
    now = time.time()
    async with FeatureStore(db) as store:
        followups = FollowUps(store)
        due = await followups.schedule("u1", "telegram:1", ["ru"], days=0, now=now - 10)
        later = await followups.schedule("u2", "telegram:2", ["pair_aidant"], now=now)
        first = FakeScheduler()
        assert await followups.rebuild(first, now=now) == 2
        assert await followups.rebuild(first, now=now) == 0  # nothing doubled
    # Restart: the job queue is empty again, SQLite still has both.
    async with FeatureStore(db) as store:
        followups = FollowUps(store)
        second = FakeScheduler()
        assert await followups.rebuild(second, now=now) == 2
        assert second.jobs[due.job_name][0] == now  # overdue: at once
        assert second.jobs[later.job_name][0] == later.due_at
        # Two jobs firing for the same follow-up (e.g. two processes): only one sends.
        assert await followups.claim(due.id) is True
        assert await followups.claim(due.id) is False
        assert [f.id for f in await followups.due(now)] == []
        # A failed send is released and tried again.
        assert await followups.claim(later.id)
        await followups.release(later.id)
        assert [f.id for f in await followups.pending()] == [later.id]
    async with FeatureStore(db) as store:
        third = FakeScheduler()
        assert await FollowUps(store).rebuild(third, now=now) == 1  # the sent one is not resent
        assert list(third.jobs) == [later.job_name]


async def test_answer_helps_and_feeds_statistics(kb: KnowledgeBase) -> None:
    engine = build_engine(kb, followup=True)
    async with FeatureStore() as store:
        recorder = StatsRecorder(store)
        followups = FollowUps(store, recorder)
        results = []
        for index, reached in enumerate([True, True, False, True, True, False]):
            turn = await recorder.record(recommended(engine), "test")
            turn = engine.handle(turn.session, Input.choice("cmd:suivi"))
            turn = await followups.apply(
                f"u{index}", "x", engine.handle(turn.session, Input.choice(mode.YES))
            )
            [pending] = [f for f in await followups.pending() if f.user == f"u{index}"]
            assert pending.conversation == turn.session.extra["stats_id"]
            assert await followups.claim(pending.id)
            session, reply = mode.asking(engine, turn.session, pending.id)
            assert [c.id for c in reply.choices] == [mode.YES, mode.NO]
            answer = engine.handle(session, Input.text("oui" if reached else "non"))
            answer = await followups.apply(f"u{index}", "x", answer)
            results.append(answer)
            assert answer.session.mode is None
        helped = results[2]
        text = "\n".join(r.text for r in helped.replies)
        assert "d'autres contacts" in text and "pas à pas" in text and "1. " in text
        assert await store.read("SELECT address FROM followups WHERE address != ''") == []
        report = await StatsReader(store, kb).report(k=2)
        [role] = [r for r in report.followup_by_role if r.key == "patient_partenaire"]
        assert (role.answered, role.reached, role.share) == (6, 4, round(4 / 6, 3))
        [context] = report.followup_by_context
        assert (context.key, context.answered, context.reached) == ("chu-a", 6, 4)
        hidden = await StatsReader(store, kb).report(k=5)
        assert hidden.followup_by_role[0].reached is None  # 4 < 5
