"""Shared fixtures: the shipped knowledge base, an engine over it, copies to break, the network
guard and the fake Bot API."""

from __future__ import annotations

import asyncio
import compileall
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
from tests.harness.paths import CONTENUS, ROOT
from tests.harness.postgres import Cluster, cluster

# The commands the tests start read no .env (a developer's own would change their settings).
os.environ["PASSERELLE_ENV_FILE"] = ""

#: The longest tests (10 s and more on the 2-core machine, longest first): they start first, so
#: none of them starts near the end and keeps the suite waiting for it alone. ``make test``
#: has xdist hand tests out one at a time (``--maxschedchunk 1``), so each worker takes the next
#: long test as soon as it is free. A missing or renamed entry only costs time.
LONGEST = (
    "tests/e2e/test_instances_postgres.py::test_one_instance_killed_five_times_under_load",
    "tests/e2e/test_reliability.py::test_load_run_300_people_loses_and_duplicates_no_reply",
    "tests/channels/test_channels_telegram.py::test_two_hundred_chats_at_once",
    "tests/e2e/test_crash.py::test_sigkill_mid_conversation",
    "tests/engine/test_properties.py::test_mutated_yaml",
    "tests/e2e/test_instances_postgres.py::test_a_paused_instance",
    "tests/e2e/test_instances_postgres.py::test_two_instances",
    "tests/channels/test_api_schema.py::test_api_matches_its_openapi_document",
    "tests/e2e/test_operators.py::test_polling_delivers_a_contact_request",
    "tests/e2e/test_reliability.py::test_small_load_run",
    "tests/e2e/test_operations.py::test_serve_without_a_secret_keeps_the_api_pseudonyms",
)


def pytest_configure(config: pytest.Config) -> None:
    """Once, before the workers start: byte-compile ``bot/``, so that the workers and the ~100
    ``passerelle`` processes the tests start read it compiled instead of each compiling it
    again (about 0.2 s of CPU a process) where ``PYTHONDONTWRITEBYTECODE`` is set."""
    if not hasattr(config, "workerinput"):
        compileall.compile_dir(ROOT / "bot", quiet=1)


def _rank(item: pytest.Item) -> int | None:
    return next((i for i, p in enumerate(LONGEST) if item.nodeid.startswith(p)), None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first, each followed by a short one (xdist gives a worker two tests
    at the start: never two long ones), then the others in their usual order."""
    ranked = sorted((i for i in items if _rank(i) is not None), key=lambda i: _rank(i) or 0)
    rest = [i for i in items if _rank(i) is None]
    ordered: list[pytest.Item] = []
    for long in ranked:
        ordered += [long, *rest[:1]]
        rest = rest[1:]
    items[:] = ordered + rest


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
