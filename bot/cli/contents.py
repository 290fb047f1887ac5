"""Where the commands find the knowledge base, and loading it with a clean exit on error."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bot.knowledge.loader import KnowledgeBaseError, load
from bot.knowledge.model import KnowledgeBase

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SCRIPTS = REPO_ROOT / "tests" / "conversations"
DEFAULT_CORPUS = REPO_ROOT / "tests" / "understanding"


def default_contenus() -> Path:
    """``$PASSERELLE_CONTENUS``, else ``./contenus``, else the one beside the package."""
    configured = os.environ.get("PASSERELLE_CONTENUS")
    if configured:
        return Path(configured)
    local = Path("contenus")
    return local if local.is_dir() else REPO_ROOT / "contenus"


def extra_contenus(configured: Path | None = None) -> Path | None:
    """An establishment's local contents: ``configured``, else ``$PASSERELLE_CONTENUS_EXTRA``."""
    if configured is None and os.environ.get("PASSERELLE_CONTENUS_EXTRA"):
        return Path(os.environ["PASSERELLE_CONTENUS_EXTRA"])
    return configured


def load_or_exit(directory: Path | None, extra: Path | None = None) -> KnowledgeBase:
    """Load the base or stop with the validator's message (never a traceback)."""
    try:
        return load(directory or default_contenus(), extra_contenus(extra))
    except KnowledgeBaseError as exc:
        print("La base de contenus est invalide, Passerelle ne démarre pas :", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        raise SystemExit(1) from None


def optional_path(value: str | None) -> Path | None:
    """A command-line path option, ``None`` when not given."""
    return Path(value) if value else None
