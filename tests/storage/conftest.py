"""The store implementations every contract suite runs against.

A backend opens the three stores on one database (as a server does) and says what its
conversation store keeps; the suites take ``conversations``, ``integration`` and ``features``
(parametrized over :data:`BACKENDS`) or ``stores`` (the three on one database). Another
implementation is one more :class:`Backend` in :data:`BACKENDS` (PostgreSQL is one: each test
gets a new database on the run's throwaway cluster).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.storage.base import ConversationStore, FeatureStore, IntegrationStore
from bot.storage.memory import MemoryFeatureStore, MemoryIntegrationStore, MemoryStorage
from bot.storage.postgres import PostgresFeatureStore, PostgresIntegrationStore, PostgresStorage
from bot.storage.sqlite import (
    CORE_MIGRATIONS,
    MIGRATIONS,
    SqliteFeatureStore,
    SqliteIntegrationStore,
    SqliteStorage,
)
from bot.storage.sqlite.migrations import INTEGRATION_MIGRATIONS
from bot.storage.sqlite.writer import SqliteWriter


class Clock:
    """A clock the test moves (the stores' notion of now)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Traits:
    """What a conversation store keeps (the contract allows a store for people who did not
    consent to keep less, and to keep sessions without consent)."""

    #: Sessions only with consent; a refusal is not remembered either.
    durable: bool
    #: Replies are recorded until sent (crash recovery).
    replies: bool
    #: Failed applications of an update are counted before it is dead-lettered.
    attempts: bool


@dataclass
class Stores:
    conversations: ConversationStore
    traits: Traits
    integration: IntegrationStore | None = None
    features: FeatureStore | None = None


#: Opens the stores in a test's temporary directory (or, for a backend with a ``fixture``,
#: in what that fixture gives: a PostgreSQL URL).
Opener = Callable[[Any, Clock], contextlib.AbstractAsyncContextManager[Stores]]


ALL = frozenset({"conversations", "integration", "features"})


@dataclass(frozen=True)
class Backend:
    name: str
    open: Opener
    #: The stores it implements.
    kinds: frozenset[str] = ALL
    #: Whether they share one database (a turn's writes in one transaction).
    together: bool = False
    #: A fixture whose value the opener gets instead of the temporary directory.
    fixture: str | None = None


@contextlib.asynccontextmanager
async def _memory(tmp_path: Path, clock: Clock) -> AsyncIterator[Stores]:
    store = MemoryStorage(clock=clock)
    features = MemoryFeatureStore(clock=clock)
    await store.open()
    try:
        yield Stores(
            store,
            Traits(durable=False, replies=False, attempts=False),
            # Its clock is the wall clock, like SQLite's; an API turn's feature rows join it.
            MemoryIntegrationStore(features=features),
            features,
        )
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def _sqlite(tmp_path: Path, clock: Clock) -> AsyncIterator[Stores]:
    """The server's layout: one file, one writer, the whole schema."""
    store = SqliteStorage(
        tmp_path / "one.db", synchronous="NORMAL", migrations=MIGRATIONS, clock=clock
    )
    await store.open()
    try:
        yield Stores(
            store,
            Traits(durable=True, replies=True, attempts=True),
            SqliteIntegrationStore(store),
            SqliteFeatureStore(store, clock=clock),
        )
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def _sqlite_apart(tmp_path: Path, clock: Clock) -> AsyncIterator[Stores]:
    """Each store on its own file with its own writer, the conversations' and the
    integration's without the feature tables (a turn's feature rows cannot join them)."""
    core = SqliteStorage(
        tmp_path / "core.db", synchronous="NORMAL", migrations=CORE_MIGRATIONS, clock=clock
    )
    writer = SqliteWriter(
        tmp_path / "integration.db", synchronous="NORMAL", migrations=INTEGRATION_MIGRATIONS
    )
    integration = SqliteIntegrationStore(writer)
    features = SqliteFeatureStore(tmp_path / "features.db", synchronous="NORMAL", clock=clock)
    for opened in (core, writer, features):
        await opened.open()
    try:
        yield Stores(core, Traits(durable=True, replies=True, attempts=True), integration, features)
    finally:
        for opened in (features, writer, core):
            await opened.close()


@contextlib.asynccontextmanager
async def _postgres(url: str, clock: Clock) -> AsyncIterator[Stores]:
    """Several instances' layout: one PostgreSQL database, one pool, the whole schema."""
    store = PostgresStorage(url, migrate=True, clock=clock)
    await store.open()
    try:
        yield Stores(
            store,
            Traits(durable=True, replies=True, attempts=True),
            PostgresIntegrationStore(store),
            PostgresFeatureStore(store, clock=clock),
        )
    finally:
        await store.close()


BACKENDS: list[Backend] = [
    Backend("memory", _memory),
    Backend("sqlite", _sqlite, together=True),
    Backend("sqlite-apart", _sqlite_apart),
    Backend("postgresql", _postgres, together=True, fixture="pg_url"),
]


def _backends(kind: str, *, together: bool = False) -> list[object]:
    return [
        pytest.param(backend, id=backend.name)
        for backend in BACKENDS
        if kind in backend.kinds and (backend.together or not together)
    ]


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def _opened(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[Stores]:
    backend: Backend = request.param
    where = request.getfixturevalue(backend.fixture) if backend.fixture else tmp_path
    async with backend.open(where, clock) as opened:
        yield opened


@pytest.fixture(params=_backends("conversations"))
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[Stores]:
    """Every backend; ``stores.conversations`` is always there."""
    async for opened in _opened(request, tmp_path, clock):
        yield opened


@pytest.fixture
def conversations(stores: Stores) -> ConversationStore:
    return stores.conversations


@pytest.fixture
def traits(stores: Stores) -> Traits:
    return stores.traits


@pytest.fixture(params=_backends("integration"))
async def integration(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[IntegrationStore]:
    async for opened in _opened(request, tmp_path, clock):
        assert opened.integration is not None
        yield opened.integration


@pytest.fixture(params=_backends("features"))
async def features(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[FeatureStore]:
    async for opened in _opened(request, tmp_path, clock):
        assert opened.features is not None
        yield opened.features


@pytest.fixture(params=_backends("features", together=True))
async def together(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[Stores]:
    """The three stores on one database: a turn's writes share its transaction."""
    async for opened in _opened(request, tmp_path, clock):
        yield opened
