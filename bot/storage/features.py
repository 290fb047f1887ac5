"""The feature store under its former names (callers are moving to
:class:`bot.storage.base.FeatureStore` for the contract and :mod:`bot.storage.sqlite`)."""

from bot.storage.sqlite.features import SqliteFeatureStore as FeatureStore
from bot.storage.sqlite.migrations import FEATURE_MIGRATIONS

__all__ = ["FEATURE_MIGRATIONS", "FeatureStore"]
