"""In-memory stores: the conversation store for people who did not consent to keep their
answers, and every store for tests and demos. Everything vanishes when the process stops."""

from bot.storage.memory.conversations import MemoryStorage
from bot.storage.memory.features import MemoryFeatureStore
from bot.storage.memory.integration import MemoryIntegrationStore

__all__ = ["MemoryFeatureStore", "MemoryIntegrationStore", "MemoryStorage"]
