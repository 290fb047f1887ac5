"""PostgreSQL implementations of the storage contracts, for several instances on one database
(``PASSERELLE_DB=postgresql://…``). psycopg 3 and its async pool (see README, design notes)."""

from bot.storage.postgres.core import PostgresStorage
from bot.storage.postgres.features import PostgresFeatureStore
from bot.storage.postgres.integration import PostgresIntegrationStore
from bot.storage.postgres.schema import DatabaseUnavailable, SchemaMismatch

__all__ = [
    "DatabaseUnavailable",
    "PostgresFeatureStore",
    "PostgresIntegrationStore",
    "PostgresStorage",
    "SchemaMismatch",
]
