"""Shared fixtures: the shipped knowledge base, an engine over it, copies to break, the network
guard and the fake Bot API."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.engine.flow import Engine
from bot.knowledge.loader import load
from bot.knowledge.model import KnowledgeBase
from bot.storage.postgres.schema import ensure_current
from tests.harness.fakebotapi import FakeBotAPI
from tests.harness.network import offline
from tests.harness.paths import CONTENUS
from tests.harness.postgres import Cluster, cluster

# The commands the tests start read no .env (a developer's own would change their settings).
os.environ["PASSERELLE_ENV_FILE"] = ""


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return load(CONTENUS)


@pytest.fixture(scope="session")
def engine(kb: KnowledgeBase) -> Engine:
    return Engine(kb)


@pytest.fixture
def base_copy(tmp_path: Path) -> Path:
    """A writable copy of ``contenus/`` to break on purpose."""
    target = tmp_path / "contenus"
    shutil.copytree(CONTENUS, target)
    return target


@pytest.fixture
def no_network() -> Iterator[None]:
    """Refuse every connection but loopback (modules opt in with ``pytestmark``)."""
    with offline():
        yield


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    """A fake Telegram Bot API on 127.0.0.1."""
    async with FakeBotAPI() as fake:
        yield fake


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One throwaway PostgreSQL cluster per test process (each xdist worker its own, in its own
    temporary directory: tests/harness/postgres.py). Missing
    PostgreSQL is an error of every test that needs it, never a skip."""
    with cluster() as running:
        yield running


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    with pg_cluster.database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A ``PASSERELLE_DB`` value: a new SQLite file, or a new PostgreSQL database migrated
    the way ``passerelle db migrate`` does. Suites using it run on both."""
    if request.param == "sqlite":
        return str(tmp_path / "passerelle.db")
    url: str = request.getfixturevalue("pg_url")
    asyncio.run(ensure_current(url, upgrade=True))
    return url
