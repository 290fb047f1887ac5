"""The feature store under its former names (callers are moving to
:class:`bot.storage.base.FeatureStore` for the contract and :mod:`bot.storage.sqlite`)."""

from __future__ import annotations

import os
from pathlib import Path

from bot.storage.sqlite.features import SqliteFeatureStore as FeatureStore
from bot.storage.sqlite.migrations import FEATURE_MIGRATIONS

__all__ = ["FEATURE_MIGRATIONS", "FeatureStore", "default_db_path"]


def default_db_path() -> Path:
    """``$PASSERELLE_DB``, else the file ``passerelle serve`` uses by default."""
    from bot.config import DEFAULT_DB

    return Path(os.environ.get("PASSERELLE_DB") or DEFAULT_DB)
