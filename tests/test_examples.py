"""The client example of docs/integration.md runs as documented against a real local server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from bot.channels.http import ConversationApi, create_app
from bot.engine.flow import Engine
from bot.storage.integration import IntegrationStore
from tests.live import serve

ROOT = Path(__file__).resolve().parent.parent
PATIENT_TRAINER = ["patient", "chronique", "stabilise", "former", "aucune", "aucune", "mensuel",
                   "fr", "occitanie"]  # fmt: skip


async def make_key(db: Path) -> str:
    store = IntegrationStore(db)
    await store.open()
    key, _ = await store.create_key("chu-a")
    await store.close()
    return key


def test_the_client_example_runs_a_conversation_to_a_contact_request(
    engine: Engine, tmp_path: Path
) -> None:
    db = tmp_path / "passerelle.db"
    key = asyncio.run(make_key(db))
    with serve(create_app(ConversationApi(engine, IntegrationStore(db)))) as url:
        result = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "client.py"), *PATIENT_TRAINER],
            env={"PATH": os.environ["PATH"], "PASSERELLE_URL": url, "PASSERELLE_KEY": key},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert "Rôle recommandé : Patient partenaire formateur" in out
        assert "Contact : " in out and "https://" in out
        assert "camille@example.org" in out  # shown back before it is sent
        assert "C'est envoyé" in out
        assert "Conversation effacée." in out
    with contextlib.closing(sqlite3.connect(db)) as connection:
        (left,) = connection.execute("SELECT COUNT(*) FROM api_conversations").fetchone()
    assert left == 0, "the example erased its conversation"
