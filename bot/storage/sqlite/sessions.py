"""Consent and sessions: the SQL of the ``consents`` and ``sessions`` tables.

Sessions are only ever stored for users whose consent is recorded: saving one without consent
is a no-op, enforced in SQL. Functions of the writer's (or reader's) connection, run inside the
caller's transaction.
"""

from __future__ import annotations

import sqlite3

from bot.json_types import JsonObject, loads, loads_object

#: ``(consent, session)`` in one point read.
LOAD_STATE = (
    "SELECT s.data FROM consents c LEFT JOIN sessions s ON s.user = c.user WHERE c.user = ?"
)


def forget(db: sqlite3.Connection, user: str) -> None:
    """Every consent and session row of ``user``."""
    db.execute("DELETE FROM sessions WHERE user = ?", (user,))
    db.execute("DELETE FROM consents WHERE user = ?", (user,))


def grant(db: sqlite3.Connection, user: str, now: float) -> None:
    """Record consent (the first date is kept)."""
    db.execute(
        "INSERT INTO consents (user, granted_at) VALUES (?, ?) ON CONFLICT (user) DO NOTHING",
        (user, now),
    )


def save(db: sqlite3.Connection, user: str, session: str, now: float) -> None:
    """Store the session's JSON, only if ``user`` consented."""
    db.execute(
        "INSERT INTO sessions (user, data, updated_at) SELECT ?, ?, ? "
        "WHERE EXISTS (SELECT 1 FROM consents WHERE user = ?) "
        "ON CONFLICT (user) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
        (user, session, now, user),
    )


def load(db: sqlite3.Connection, user: str) -> JsonObject | None:
    row = db.execute("SELECT data FROM sessions WHERE user = ?", (user,)).fetchone()
    if row is None:
        return None
    return loads_object(row[0])


def consented(db: sqlite3.Connection, user: str) -> bool:
    return db.execute("SELECT 1 FROM consents WHERE user = ?", (user,)).fetchone() is not None


def export(db: sqlite3.Connection, user: str) -> JsonObject:
    data: JsonObject = {}
    consent = db.execute("SELECT granted_at FROM consents WHERE user = ?", (user,)).fetchone()
    if consent:
        data["consent"] = {"granted": True, "at": consent[0]}
    session = db.execute("SELECT data, updated_at FROM sessions WHERE user = ?", (user,)).fetchone()
    if session:
        data["session"] = loads(session[0])
        data["updated_at"] = session[1]
    return data


def purge_idle(db: sqlite3.Connection, cutoff: float) -> int:
    """Forget users whose last write is older than ``cutoff``; how many."""
    users = [
        (row[0],)
        for row in db.execute(
            "SELECT user FROM consents c WHERE COALESCE("
            "(SELECT updated_at FROM sessions s WHERE s.user = c.user), c.granted_at) < ? "
            "UNION SELECT user FROM sessions WHERE updated_at < ? "
            "AND user NOT IN (SELECT user FROM consents)",
            (cutoff, cutoff),
        )
    ]
    db.executemany("DELETE FROM sessions WHERE user = ?", users)
    db.executemany("DELETE FROM consents WHERE user = ?", users)
    return len(users)


def count(db: sqlite3.Connection, table: str) -> int:
    return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
