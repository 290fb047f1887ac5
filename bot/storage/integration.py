"""The integration store under its former names (callers are moving to :mod:`bot.storage.base`
for the records and the contract, and :mod:`bot.storage.sqlite` for the implementation)."""

from bot.storage.base import (
    KEY_PREFIXES,
    ApiKey,
    Conversation,
    KeyKind,
    OutboxEvent,
    OutboxItem,
    TranscriptLine,
    hash_key,
    new_id,
)
from bot.storage.sqlite.integration import SqliteIntegrationStore as IntegrationStore
from bot.storage.sqlite.migrations import ALL_MIGRATIONS, INTEGRATION_MIGRATIONS

__all__ = [
    "ALL_MIGRATIONS",
    "INTEGRATION_MIGRATIONS",
    "KEY_PREFIXES",
    "ApiKey",
    "Conversation",
    "IntegrationStore",
    "KeyKind",
    "OutboxEvent",
    "OutboxItem",
    "TranscriptLine",
    "hash_key",
    "new_id",
]
