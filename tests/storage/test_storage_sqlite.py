"""The stores: the SQLite one on real files, and the in-memory one on the same contract."""

from __future__ import annotations

import contextlib
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app.identity import pseudonym
from bot.json_types import at
from bot.storage.base import OutgoingReply, Storage, UserChange
from bot.storage.memory import MemoryStorage
from bot.storage.postgres import PostgresStorage
from bot.storage.sqlite import SqliteStorage
from bot.storage.sqlite.migrations import CORE_MIGRATIONS, migrate


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "memory", "postgresql"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[Storage]:
    storage: Storage
    if request.param == "sqlite":
        storage = SqliteStorage(tmp_path / "p.db", clock=clock)
    elif request.param == "postgresql":
        storage = PostgresStorage(request.getfixturevalue("pg_url"), migrate=True, clock=clock)
    else:
        storage = MemoryStorage(clock=clock)
    await storage.open()
    yield storage
    await storage.close()


def test_pseudonym_is_keyed_and_stable() -> None:
    a = pseudonym(b"secret-one-0123456789", "telegram", 42)
    assert a == pseudonym(b"secret-one-0123456789", "telegram", "42")
    assert a != pseudonym(b"secret-two-0123456789", "telegram", 42)
    assert "42" not in a and a.startswith("te_")


async def test_session_round_trip_and_consent(store: Storage) -> None:
    user = "te_x"
    assert await store.get_consent(user) is None
    await store.set_consent(user, True)
    await store.save_session(user, {"node": "profil", "answers": [["a", "b"]]})
    assert await store.get_consent(user) is True
    assert await store.load_session(user) == {"node": "profil", "answers": [["a", "b"]]}
    exported = await store.export_user(user)
    assert at(exported, "session", "node") == "profil" and at(exported, "consent", "granted")
    await store.erase_user(user)
    assert await store.load_session(user) is None
    assert await store.export_user(user) == {}


async def test_sqlite_never_stores_a_session_without_consent(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "p.db")
    await store.open()
    await store.save_session("te_nobody", {"node": "profil"})
    assert await store.load_session("te_nobody") is None
    assert (await store.counts())["sessions"] == 0
    await store.close()


async def test_inbox_dedupes_and_commit_update_is_atomic(store: Storage) -> None:
    assert await store.inbox_add(7, b'{"update_id": 7}')
    assert not await store.inbox_add(7, b'{"update_id": 7}')
    assert await store.inbox_add(5, b'{"update_id": 5}')
    assert [i.update_id for i in await store.inbox_pending()] == [5, 7]
    change = UserChange(consent=True, session={"node": "q"})
    await store.commit_update(5, "te_u", change)
    assert [i.update_id for i in await store.inbox_pending()] == [7]
    assert await store.load_session("te_u") == {"node": "q"}
    await store.inbox_done(7)
    assert await store.inbox_pending() == []
    assert not await store.inbox_add(7, b"again")  # still recognised once applied


async def test_purge_idle_and_prune(store: Storage, clock: Clock) -> None:
    await store.commit_update(None, "te_old", UserChange(consent=True, session={"n": 1}))
    clock.now += 50 * 86400
    await store.commit_update(None, "te_new", UserChange(consent=True, session={"n": 2}))
    await store.inbox_add(1, b"{}")
    await store.inbox_done(1)
    clock.now += 45 * 86400
    assert await store.purge_idle(90) == 1
    assert await store.load_session("te_old") is None
    assert await store.load_session("te_new") == {"n": 2}
    assert await store.inbox_prune(86400) == 1


async def test_file_is_private_wal_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "p.db"
    store = SqliteStorage(path)
    await store.open()
    await store.commit_update(None, "te_a", UserChange(consent=True, session={"x": 1}))
    await store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [row[0] for row in db.execute("SELECT version FROM schema_version")]
        assert versions == [v for v, _ in CORE_MIGRATIONS]
    # Re-opening migrates nothing twice and keeps the data.
    store = SqliteStorage(path)
    await store.open()
    assert await store.load_session("te_a") == {"x": 1}
    await store.close()


def test_migration_runner_is_generic(tmp_path: Path) -> None:
    """Another module's migrations (100+) run on the same file with the same runner."""
    extra = [(100, "CREATE TABLE other (id INTEGER PRIMARY KEY)"), (101, "ALTER TABLE other ADD x")]
    with contextlib.closing(sqlite3.connect(tmp_path / "m.db", isolation_level=None)) as db:
        assert migrate(db, CORE_MIGRATIONS) == [v for v, _ in CORE_MIGRATIONS]
        assert migrate(db, extra[:1]) == [100]
        assert migrate(db, extra) == [101]
        assert migrate(db, [*CORE_MIGRATIONS, *extra]) == []
        with pytest.raises(ValueError):
            migrate(db, [(3, "SELECT 1"), (3, "SELECT 2")])
        with pytest.raises(sqlite3.OperationalError):
            migrate(db, [(102, "CREATE TABLE broken (")])
        assert db.execute("SELECT MAX(version) FROM schema_version").fetchone() == (101,)


async def test_many_concurrent_writes_are_grouped(tmp_path: Path) -> None:
    import asyncio

    store = SqliteStorage(tmp_path / "p.db")
    await store.open()
    added = await asyncio.gather(*(store.inbox_add(i, b"{}") for i in range(500)))
    assert all(added)
    await asyncio.gather(
        *(
            store.commit_update(i, f"te_{i}", UserChange(consent=True, session={"i": i}))
            for i in range(500)
        )
    )
    assert (await store.counts()) == {"consents": 500, "sessions": 500, "inbox": 500}
    assert await store.inbox_pending() == []
    await store.close()


async def test_erasure_drops_unsent_replies_but_sends_its_confirmation(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "p.db")
    await storage.open()
    user = pseudonym(b"k" * 32, "telegram", 42)
    old = OutgoingReply(1, 0, 42, "sendMessage", '{"text": "votre réponse : diabète"}')
    other = OutgoingReply(2, 0, 43, "sendMessage", '{"text": "autre personne"}')
    await storage.inbox_add(1, b"{}")
    await storage.inbox_add(2, b"{}")
    await storage.commit_update(1, user, UserChange(consent=True, replies=(old,)))
    await storage.commit_update(2, "other", UserChange(consent=True, replies=(other,)))
    confirmation = OutgoingReply(3, 0, 42, "sendMessage", '{"text": "tout est effacé"}')
    await storage.inbox_add(3, b"{}")
    await storage.commit_update(3, user, UserChange(erase=True, replies=(confirmation,)))
    pending = {(r.chat_id, r.params) for r in await storage.replies_pending()}
    await storage.close()
    assert pending == {(42, confirmation.params), (43, other.params)}
