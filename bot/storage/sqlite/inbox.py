"""The inbox of incoming updates and the reply outbox: the SQL of ``inbox`` and ``replies``.

An update is recorded before it is acknowledged and marked applied (its payload dropped) in
the transaction that saves its effect; its replies are recorded in that same transaction and
deleted once Telegram accepted them.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable

from bot.storage.base import InboxItem, OutgoingReply

log = logging.getLogger(__name__)

METHODS = ("sendMessage", "sendPhoto")


def add(db: sqlite3.Connection, update_id: int, payload: bytes, now: float) -> bool:
    cursor = db.execute(
        "INSERT OR IGNORE INTO inbox (update_id, payload, received_at) VALUES (?, ?, ?)",
        (update_id, payload, now),
    )
    return cursor.rowcount == 1


def done(db: sqlite3.Connection, update_id: int, now: float) -> None:
    db.execute(
        "UPDATE inbox SET done_at = ?, payload = NULL WHERE update_id = ? AND done_at IS NULL",
        (now, update_id),
    )


def dead(db: sqlite3.Connection, update_id: int, now: float) -> None:
    db.execute(
        "UPDATE inbox SET done_at = ?, failed_at = ?, payload = NULL "
        "WHERE update_id = ? AND done_at IS NULL",
        (now, now, update_id),
    )


def failed(db: sqlite3.Connection, update_id: int) -> int:
    """Count one failure; how many so far (0: not pending)."""
    db.execute(
        "UPDATE inbox SET attempts = attempts + 1 WHERE update_id = ? AND done_at IS NULL",
        (update_id,),
    )
    found = db.execute("SELECT attempts FROM inbox WHERE update_id = ?", (update_id,)).fetchone()
    return int(found[0]) if found else 0


def pending(db: sqlite3.Connection, limit: int) -> list[InboxItem]:
    items = []
    for update_id, payload, attempts in db.execute(
        "SELECT update_id, payload, attempts FROM inbox WHERE done_at IS NULL "
        "ORDER BY update_id LIMIT ?",
        (limit,),
    ):
        if isinstance(payload, str):
            payload = payload.encode("utf-8", "replace")
        items.append(InboxItem(int(update_id), bytes(payload or b""), int(attempts or 0)))
    return items


def prune(db: sqlite3.Connection, cutoff: float) -> int:
    cursor = db.execute("DELETE FROM inbox WHERE done_at IS NOT NULL AND done_at < ?", (cutoff,))
    return cursor.rowcount


def record_replies(db: sqlite3.Connection, replies: Iterable[OutgoingReply], now: float) -> None:
    db.executemany(
        "INSERT OR IGNORE INTO replies "
        "(update_id, seq, chat_id, method, params, photo, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(r.update_id, r.seq, r.chat_id, r.method, r.params, r.photo, now) for r in replies],
    )


def drop_chats(db: sqlite3.Connection, chats: set[int]) -> None:
    """Replies not yet sent to these chats (an erasure)."""
    db.executemany("DELETE FROM replies WHERE chat_id = ?", [(chat,) for chat in chats])


def sent(db: sqlite3.Connection, keys: Iterable[tuple[int, int]]) -> None:
    db.executemany("DELETE FROM replies WHERE update_id = ? AND seq = ?", list(keys))


def replies(db: sqlite3.Connection) -> tuple[list[OutgoingReply], list[tuple[int, int]]]:
    """Recorded replies in order, and the keys of rows that cannot be a Bot API call (written
    by an older version from a malformed update)."""
    good, bad = [], []
    for update_id, seq, chat_id, method, params, photo in db.execute(
        "SELECT update_id, seq, chat_id, method, params, photo FROM replies "
        "ORDER BY created_at, update_id, seq"
    ):
        if (
            type(chat_id) is not int
            or method not in METHODS
            or not isinstance(params, str)
            or not (photo is None or isinstance(photo, bytes))
        ):
            bad.append((update_id, seq))
            continue
        good.append(OutgoingReply(int(update_id), int(seq), chat_id, method, params, photo))
    return good, bad
