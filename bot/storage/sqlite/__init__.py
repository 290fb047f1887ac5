"""SQLite, the zero-set-up default: one file in WAL mode, one group-commit writer shared by the
stores on it (:mod:`.writer`), one migration list (:mod:`.migrations`), and one module per table
family: consent and sessions, inbox and replies, the integration tables, the feature tables."""

from bot.storage.sqlite.features import SqliteFeatureStore
from bot.storage.sqlite.integration import SqliteIntegrationStore
from bot.storage.sqlite.migrations import ALL_MIGRATIONS, CORE_MIGRATIONS, MIGRATIONS, Migration
from bot.storage.sqlite.store import SqliteStorage
from bot.storage.sqlite.writer import SqliteWriter, checkpoint, create_private_file

__all__ = [
    "ALL_MIGRATIONS",
    "CORE_MIGRATIONS",
    "MIGRATIONS",
    "Migration",
    "SqliteFeatureStore",
    "SqliteIntegrationStore",
    "SqliteStorage",
    "SqliteWriter",
    "checkpoint",
    "create_private_file",
]
