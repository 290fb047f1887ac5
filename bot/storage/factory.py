"""Which implementation of the three stores a deployment uses: SQLite for a file path (the
zero-set-up default), PostgreSQL for a ``postgresql://`` URL (several instances).

Everything returned is typed by its contract (:mod:`bot.storage.base`), so callers never know
which implementation they hold (mypy checks both implement it; tests/postgres/test_schema.py
that they offer the same public methods with the same parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.storage.base import ConversationStore, FeatureStore, IntegrationStore
from bot.storage.sqlite import SqliteStorage
from bot.storage.sqlite.features import SqliteFeatureStore
from bot.storage.sqlite.integration import SqliteIntegrationStore
from bot.storage.sqlite.migrations import ALL_MIGRATIONS

if TYPE_CHECKING:
    from bot.storage.postgres import PostgresStorage

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
#: How long a dead instance's claims last by default (``PASSERELLE_CLAIM_SECONDS``, read by
#: :mod:`bot.config` and passed here by the composition).
CLAIM_SECONDS = 30.0


def is_postgres_url(value: str | Path) -> bool:
    return str(value).startswith(POSTGRES_SCHEMES)


@dataclass(frozen=True)
class Stores:
    core: ConversationStore
    features: FeatureStore

    @property
    def integration(self) -> IntegrationStore:
        return integration_for(self.core)


def build_stores(
    target: str | Path, *, migrate: bool = False, claim_seconds: float = CLAIM_SECONDS
) -> Stores:
    """The core and feature stores on ``target`` (a SQLite file or a PostgreSQL URL), not yet
    opened; open the core first (the feature store shares its database). ``migrate`` brings
    a PostgreSQL schema up to date at open (SQLite always migrates itself); ``claim_seconds``:
    how long a dead PostgreSQL instance's claims last."""
    if is_postgres_url(target):
        from bot.storage.postgres import PostgresFeatureStore, PostgresStorage

        core = PostgresStorage(str(target), migrate=migrate, claim_seconds=claim_seconds)
        return Stores(core, PostgresFeatureStore(core))
    return Stores(SqliteStorage(target, migrations=ALL_MIGRATIONS), SqliteFeatureStore(target))


def _postgres(target: str | Path, claim_seconds: float) -> PostgresStorage:
    from bot.storage.postgres import PostgresStorage

    return PostgresStorage(str(target), claim_seconds=claim_seconds)


def integration_for(core: ConversationStore) -> IntegrationStore:
    """The integration store sharing ``core``'s database (and writer or pool)."""
    from bot.storage.postgres import PostgresIntegrationStore, PostgresStorage

    if isinstance(core, PostgresStorage):
        return PostgresIntegrationStore(core)
    if isinstance(core, SqliteStorage):
        return SqliteIntegrationStore(core)
    raise TypeError(f"no integration store shares a {type(core).__name__}'s database")


def integration_store(
    target: str | Path, *, claim_seconds: float = CLAIM_SECONDS
) -> IntegrationStore:
    """An integration store owning its connection to ``target`` (the command-line tools)."""
    if is_postgres_url(target):
        from bot.storage.postgres import PostgresIntegrationStore

        return PostgresIntegrationStore(_postgres(target, claim_seconds), owned=True)
    return SqliteIntegrationStore(target)


def feature_store(target: str | Path, *, claim_seconds: float = CLAIM_SECONDS) -> FeatureStore:
    """A feature store owning its connection to ``target`` (``passerelle stats``)."""
    if is_postgres_url(target):
        from bot.storage.postgres import PostgresFeatureStore

        return PostgresFeatureStore(_postgres(target, claim_seconds), owned=True)
    return SqliteFeatureStore(target)
