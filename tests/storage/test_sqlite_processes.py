"""One SQLite file, two processes: what another process commits while ``passerelle serve`` holds
the file open (a key made with ``passerelle keys create``, a row written by hand) is seen by the
server's next read, and what the server commits afterwards reaches the file for everyone.

Stores are opened as ``serve`` opens them (:func:`bot.storage.factory.build_stores`: the core,
then the feature store on the same path), the other process is a real one."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bot.storage.base import Conversation
from bot.storage.factory import build_stores, integration_for

#: Another process: one plain ``sqlite3`` connection, opened, written, committed and closed.
OTHER_PROCESS = """
import contextlib, sqlite3, sys
with contextlib.closing(sqlite3.connect(sys.argv[1])) as db, db:
    db.execute(sys.argv[2], sys.argv[3:])
"""


def other_process(db: Path, sql: str, *params: str) -> None:
    subprocess.run([sys.executable, "-c", OTHER_PROCESS, str(db), sql, *params], check=True)


def conversation(conversation_id: str, key_id: str) -> Conversation:
    now = time.time()
    return Conversation(conversation_id, key_id, "chu-a", {}, (), now, now)


async def test_a_row_committed_by_another_process_is_seen_and_nothing_written_after_is_lost(
    tmp_path: Path,
) -> None:
    db = tmp_path / "passerelle.db"
    stores = build_stores(db)
    await stores.core.open()
    await stores.features.open()
    integration = integration_for(stores.core)
    try:
        _, key = await integration.create_key("chu-a")
        # The server's write-ahead log now holds the conversations table's page.
        await integration.save_turn(conversation("conv_served", key.id), created=True, lines=())
        other_process(
            db,
            "INSERT INTO api_conversations (id, key_id, establishment, session, offered, "
            "created_at, updated_at) VALUES ('conv_other', ?, 'chu-a', '{}', '[]', 0, 0)",
            key.id,
        )
        seen = await integration.load_conversation("conv_other", "chu-a")
        assert seen is not None, "a row another process committed is seen by the next read"
        secret, _ = await integration.create_key("chu-a")  # as `passerelle keys create` would
        assert await integration.find_key(secret) is not None
        await integration.save_turn(conversation("conv_after", key.id), created=True, lines=())
    finally:
        await stores.features.close()
        await stores.core.close()
    reopened = build_stores(db)
    await reopened.core.open()
    try:
        store = integration_for(reopened.core)
        for conversation_id in ("conv_served", "conv_other", "conv_after"):
            found = await store.load_conversation(conversation_id, "chu-a")
            assert found is not None, f"{conversation_id} is still in the file after a restart"
    finally:
        await reopened.core.close()
