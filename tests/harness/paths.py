"""Where the repository's pieces are, for tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTENUS = ROOT / "contenus"
TESTS = ROOT / "tests"
CONVERSATIONS = TESTS / "conversations"
UNDERSTANDING = TESTS / "understanding"
