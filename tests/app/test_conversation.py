"""The conversation service as a person meets it, whatever the channel: consent refused keeps
nothing durable, one commit per turn, erasure reaches every store."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app.consent import Consent
from bot.app.conversation import ConversationService, DirectTransaction
from bot.app.features import Features
from bot.app.identity import Identity, pseudonym
from bot.app.privacy import Privacy
from bot.engine.flow import Engine
from bot.engine.session import Input
from bot.json_types import as_int, at
from bot.storage.base import Storage, UserChange
from bot.storage.features import FeatureStore
from bot.storage.memory import MemoryStorage
from bot.storage.sqlite import ALL_MIGRATIONS, SqliteStorage

PERSON = Identity("telegram", pseudonym(b"service-tests-secret-0123456789", "telegram", 7), "7")


class Counting:
    """A transaction that commits at once and counts its commits."""

    def __init__(self, storage: Storage) -> None:
        self.inner = DirectTransaction(storage)
        self.changes: list[tuple[str, UserChange]] = []

    async def commit(self, user: str, change: UserChange) -> None:
        self.changes.append((user, change))
        await self.inner.commit(user, change)


def first_choice(result_replies: list[object]) -> str:
    for reply in reversed(result_replies):
        choices = getattr(reply, "choices", ())
        if choices:
            return str(choices[0].id)
    raise AssertionError("no question with choices")


async def test_consent_refused_keeps_nothing_durable(engine: Engine, tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "p.db")
    await storage.open()
    memory = MemoryStorage()
    service = ConversationService(engine, storage, consent=Consent(storage, memory))
    try:
        started = await service.start(PERSON, Counting(storage))
        assert {c.id for c in started.replies[-1].choices} == {"p:c1", "p:c0"}
        refused = await service.answer_consent(PERSON, Counting(storage), False)
        assert refused.session is not None
        moved = await service.turn(
            PERSON,
            Input.choice(first_choice(list(refused.replies)), refused.session.node),
            Counting(storage),
        )
        assert moved.session is not None and moved.session.answers  # the conversation goes on
        assert await storage.export_user(PERSON.user) == {}
        assert await storage.load_session(PERSON.user) is None
        kept = await memory.load_session(PERSON.user)
        assert kept is not None and kept["answers"] == moved.session.to_dict()["answers"]
    finally:
        await storage.close()


async def test_each_turn_commits_once(engine: Engine, tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "p.db")
    await storage.open()
    service = ConversationService(engine, storage, consent=Consent(storage, MemoryStorage()))
    try:
        tx = Counting(storage)
        await service.start(PERSON, tx)
        given = await service.answer_consent(PERSON, tx, True)
        assert given.session is not None
        session = given.session
        for _ in range(3):
            before = len(tx.changes)
            result = await service.turn(
                PERSON, Input.choice(first_choice(list(given.replies)), session.node), tx
            )
            assert len(tx.changes) == before + 1
            assert result.session is not None
            given, session = result, result.session
        stored = await storage.load_session(PERSON.user)
        assert stored is not None and stored["answers"] == session.to_dict()["answers"]
    finally:
        await storage.close()


async def test_erasure_reaches_every_store(engine: Engine, tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "p.db")
    await storage.open()
    memory = MemoryStorage()
    features = Features(engine, FeatureStore(tmp_path / "p.db"))
    await features.open()
    privacy = Privacy(storage, memory, features=features)
    service = ConversationService(
        engine, storage, consent=Consent(storage, memory), features=features
    )
    try:
        tx = Counting(storage)
        await service.start(PERSON, tx)
        await service.answer_consent(PERSON, tx, True)
        await features.followups.schedule(PERSON.user, "7", ["patient-partenaire"])
        await memory.save_session(PERSON.user, engine.new_session().to_dict())
        before = await privacy.export(PERSON.user)
        assert at(before, "conversation", "session") and before["followups"]
        await tx.commit(PERSON.user, await privacy.erase(PERSON.user))
        after = await privacy.export(PERSON.user)
        assert after == {"conversation": {}, "barometer_ratings": [], "followups": []}
        assert await memory.load_session(PERSON.user) is None
        assert (await service.state(PERSON.user)).session is None
    finally:
        await features.close()
        await storage.close()


class Crashing:
    """A transaction that fails as a crash before the commit would."""

    def __init__(self) -> None:
        self.tried = 0

    async def commit(self, user: str, change: UserChange) -> None:
        self.tried += 1
        raise OSError("disk gone")


async def test_a_crash_before_the_commit_leaves_no_statistics_row(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "p.db"
    storage = SqliteStorage(path, migrations=ALL_MIGRATIONS)
    await storage.open()
    feature_store = FeatureStore(path)
    features = Features(engine, feature_store)
    await features.open()
    service = ConversationService(
        engine, storage, consent=Consent(storage, MemoryStorage()), features=features
    )

    async def conversations() -> int:
        [(count,)] = await feature_store.read("SELECT COUNT(*) FROM stats_conversations")
        return as_int(count)

    try:
        crashing = Crashing()
        with pytest.raises(OSError):
            await service.start(PERSON, crashing)
        assert crashing.tried == 1
        assert await conversations() == 0  # the turn never happened: not counted either
        await service.start(PERSON, Counting(storage))
        assert await conversations() == 1
    finally:
        await features.close()
        await storage.close()
