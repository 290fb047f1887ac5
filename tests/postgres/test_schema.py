"""PostgreSQL as an operator meets it: ``passerelle db migrate``, and one French line (never a
traceback) when the database is unreachable, older or newer than the code."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from bot.cli.compose import build_world
from bot.config import load_settings
from bot.knowledge.model import KnowledgeBase
from bot.storage.features import FeatureStore
from bot.storage.integration import IntegrationStore
from bot.storage.postgres import (
    PostgresFeatureStore,
    PostgresIntegrationStore,
    PostgresStorage,
    SchemaMismatch,
)
from bot.storage.postgres.schema import LATEST, MIGRATIONS, ensure_current, to_postgres
from bot.storage.sqlite import SqliteStorage

ROOT = Path(__file__).resolve().parents[2]
SECRET = "secret-for-tests-0123456789abcdef"


def passerelle(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PASSERELLE_DB": db, "PASSERELLE_SECRET": SECRET}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def versions(url: str) -> set[int]:
    with psycopg.connect(url) as conn:
        return {int(r[0]) for r in conn.execute("SELECT version FROM schema_version")}


def test_db_migrate_creates_every_table_once_and_twice_is_harmless(pg_url: str) -> None:
    first = passerelle("db", "migrate", db=pg_url)
    assert first.returncode == 0, first.stderr
    assert "Base de données à jour" in first.stdout and "***" not in first.stdout
    assert versions(pg_url) == {v for v, _ in MIGRATIONS}
    again = passerelle("db", "migrate", db=pg_url)
    assert again.returncode == 0, again.stderr
    with psycopg.connect(pg_url) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
    assert {"sessions", "consents", "inbox", "replies", "webhook_outbox", "followups"} <= tables


async def test_a_database_not_migrated_is_refused_with_the_command_to_run(pg_url: str) -> None:
    with pytest.raises(SchemaMismatch, match="passerelle db migrate"):
        await PostgresStorage(pg_url).open()
    result = passerelle("keys", "list", db=pg_url)
    assert result.returncode == 1
    assert "lancez « passerelle db migrate »" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_newer_database_is_refused(pg_url: str) -> None:
    assert passerelle("db", "migrate", db=pg_url).returncode == 0
    with psycopg.connect(pg_url) as conn:
        conn.execute("INSERT INTO schema_version VALUES (%s, 0)", (LATEST + 1,))
    for command in (("db", "migrate"), ("keys", "list")):
        result = passerelle(*command, db=pg_url)
        assert result.returncode == 1
        assert "version plus récente" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_unreachable_server_is_one_french_line_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql://someone:hunter2@/nothing?host={tmp_path}"  # no server on that socket
    result = passerelle("db", "migrate", db=url)
    assert result.returncode == 1
    assert "Impossible de joindre PostgreSQL" in result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_postgres_requires_a_shared_pseudonym_secret(pg_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PASSERELLE_SECRET"}
    env["PASSERELLE_DB"] = pg_url
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "PASSERELLE_SECRET" in result.stderr and "toutes les instances" in result.stderr


def test_translation_keeps_timestamps_exact_and_ids_wide() -> None:
    sql = to_postgres(1, dict(MIGRATIONS)[1])
    assert "REAL" not in sql.replace("DOUBLE PRECISION", "")
    assert '"user" TEXT PRIMARY KEY' in sql and "update_id BIGINT" in sql


@pytest.mark.parametrize(
    ("sqlite", "postgres"),
    [
        (SqliteStorage, PostgresStorage),
        (IntegrationStore, PostgresIntegrationStore),
        (FeatureStore, PostgresFeatureStore),
    ],
)
def test_postgres_stores_offer_every_public_method_with_the_same_parameters(
    sqlite: type, postgres: type
) -> None:
    """Beyond the Protocols mypy checks (bot/storage/factory.py returns them): every public
    method of a SQLite store, contract or helper, exists on the PostgreSQL one, taking the
    same arguments (PostgreSQL may add optional ones)."""
    for name, member in inspect.getmembers(sqlite, inspect.isfunction):
        if name.startswith("_") and name not in ("__aenter__", "__aexit__"):
            continue
        assert hasattr(postgres, name), f"{postgres.__name__} lacks {name}"
        mine = inspect.signature(getattr(postgres, name)).parameters
        for parameter in inspect.signature(member).parameters:
            assert parameter in mine, f"{postgres.__name__}.{name} lacks {parameter}"


def test_the_claim_period_of_the_settings_reaches_every_store(
    pg_url: str, kb: KnowledgeBase
) -> None:
    """``PASSERELLE_CLAIM_SECONDS`` decides how soon another instance relays a dead one: the
    composition gives the settings' value to the conversation store and the outbox."""
    asyncio.run(ensure_current(pg_url, upgrade=True))
    env = {"PASSERELLE_DB": pg_url, "PASSERELLE_SECRET": SECRET, "PASSERELLE_CLAIM_SECONDS": "4"}
    world = build_world(load_settings(env), kb)
    assert isinstance(world.storage, PostgresStorage)
    assert world.storage.claim_seconds == 4.0
    assert isinstance(world.outbox, PostgresIntegrationStore)
    assert world.outbox.core.claim_seconds == 4.0
