"""Shared fixtures: the shipped knowledge base, an engine over it, and copies to break."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bot.engine.flow import Engine
from bot.knowledge.loader import load
from bot.knowledge.model import KnowledgeBase

ROOT = Path(__file__).resolve().parent.parent
CONTENUS = ROOT / "contenus"
CONVERSATIONS = Path(__file__).resolve().parent / "conversations"

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
