"""The arrows point inward: the engine imports no channel, no storage, no network library."""

from __future__ import annotations

import subprocess
import sys

from tests.harness.paths import ROOT

FORBIDDEN = ("telegram", "starlette", "uvicorn", "httpx", "aiosqlite", "sqlite3", "matplotlib",
             "bot.channels", "bot.storage", "bot.server", "bot.adapters.webhooks")  # fmt: skip


def test_engine_imports_nothing_outside_the_core() -> None:
    code = (
        "import sys, pkgutil, importlib, bot.engine\n"
        "for m in pkgutil.iter_modules(bot.engine.__path__): "
        "importlib.import_module('bot.engine.' + m.name)\n"
        "print('\\n'.join(sorted(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    loaded = result.stdout.split()
    assert "bot.engine.flow" in loaded
    leaks = [m for m in loaded if m.split(".")[0] in FORBIDDEN or m.startswith(FORBIDDEN)]
    assert leaks == []
