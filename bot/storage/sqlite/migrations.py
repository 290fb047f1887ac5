"""The one migration list of the SQLite database, forward-only, run at start-up.

A migration is ``(version, sql)``; :func:`migrate` applies, in version order, those not yet
recorded in ``schema_version``, each in its own transaction. Versions 1–99 are the
conversation store's tables, 100–199 the integration's, 200–299 the features'; every store
opened on a file runs the whole :data:`MIGRATIONS`, so one file has one schema.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

Migration = tuple[int, str]

#: The core store: consent, sessions, the inbox of incoming updates and the reply outbox.
CORE_MIGRATIONS: list[Migration] = [
    (
        1,
        """
        CREATE TABLE IF NOT EXISTS consents (
            user TEXT PRIMARY KEY,
            granted_at REAL NOT NULL
        );
        CREATE TABLE IF NOT EXISTS sessions (
            user TEXT PRIMARY KEY,
            data TEXT NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX IF NOT EXISTS sessions_updated ON sessions (updated_at);
        CREATE TABLE IF NOT EXISTS inbox (
            update_id INTEGER PRIMARY KEY,
            payload BLOB,
            received_at REAL NOT NULL,
            done_at REAL
        );
        CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (update_id) WHERE done_at IS NULL;
        CREATE INDEX IF NOT EXISTS inbox_done ON inbox (done_at) WHERE done_at IS NOT NULL;
        """,
    ),
    (
        2,
        # The reply outbox: replies written in the same transaction as the state change that
        # produced them, deleted once Telegram accepted them (see docs/reliability.md).
        """
        CREATE TABLE IF NOT EXISTS replies (
            update_id INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            chat_id INTEGER NOT NULL,
            method TEXT NOT NULL,
            params TEXT NOT NULL,
            photo BLOB,
            created_at REAL NOT NULL,
            PRIMARY KEY (update_id, seq)
        );
        """,
    ),
    (
        3,
        # Poison updates: how many times applying one failed; past a few it is dead-lettered
        # (payload dropped, ``failed_at`` set) instead of failing again at every start.
        """
        ALTER TABLE inbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE inbox ADD COLUMN failed_at REAL;
        """,
    ),
    (
        4,
        # /healthz commits a write here: a full disk or a read-only database shows at once.
        """
        CREATE TABLE IF NOT EXISTS health (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            checked_at REAL NOT NULL
        );
        """,
    ),
]

#: The integration tables: API keys, API conversations and transcripts, the webhook outbox.
INTEGRATION_MIGRATIONS: list[Migration] = [
    (
        100,
        """
        CREATE TABLE IF NOT EXISTS api_keys (
            id TEXT PRIMARY KEY,
            establishment TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('api', 'widget')),
            hash TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,
            created_at REAL NOT NULL,
            revoked_at REAL
        );
        CREATE TABLE IF NOT EXISTS api_conversations (
            id TEXT PRIMARY KEY,
            key_id TEXT NOT NULL,
            establishment TEXT NOT NULL,
            session TEXT NOT NULL,
            offered TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX IF NOT EXISTS api_conversations_updated ON api_conversations (updated_at);
        CREATE TABLE IF NOT EXISTS api_messages (
            conversation_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            at REAL NOT NULL,
            author TEXT NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (conversation_id, seq)
        );
        """,
    ),
    (
        101,
        """
        CREATE TABLE IF NOT EXISTS webhook_outbox (
            id TEXT PRIMARY KEY,
            establishment TEXT NOT NULL,
            event_type TEXT NOT NULL,
            payload TEXT NOT NULL,
            subject TEXT,
            status TEXT NOT NULL CHECK (status IN ('pending', 'dead')),
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            next_attempt_at REAL NOT NULL,
            last_error TEXT
        );
        CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (status, next_attempt_at);
        CREATE INDEX IF NOT EXISTS webhook_outbox_subject ON webhook_outbox (subject);
        """,
    ),
    (
        102,
        # Ownership: a conversation belongs to an establishment; one created with a public
        # widget key also needs its own secret (only its hash is kept), handed to that browser.
        """
        ALTER TABLE api_conversations ADD COLUMN secret_hash TEXT;
        """,
    ),
]

#: Barometer groups, usage statistics and follow-ups.
FEATURE_MIGRATIONS: list[Migration] = [
    (
        200,
        """
        CREATE TABLE IF NOT EXISTS barometer_groups (
            code TEXT PRIMARY KEY,
            created_at REAL NOT NULL,
            context TEXT,
            current_round INTEGER NOT NULL DEFAULT 1
        );
        CREATE TABLE IF NOT EXISTS barometer_ratings (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            code TEXT NOT NULL REFERENCES barometer_groups (code),
            round INTEGER NOT NULL,
            member TEXT NOT NULL,
            rater TEXT NOT NULL,
            scores TEXT NOT NULL,
            kb_version TEXT NOT NULL,
            created_at REAL NOT NULL,
            UNIQUE (code, round, member)
        );
        CREATE INDEX IF NOT EXISTS barometer_ratings_member ON barometer_ratings (member)
        """,
    ),
    (
        201,
        """
        CREATE TABLE IF NOT EXISTS stats_conversations (
            id TEXT PRIMARY KEY,
            day TEXT NOT NULL,
            context TEXT,
            channel TEXT NOT NULL,
            last_node TEXT,
            completed INTEGER NOT NULL DEFAULT 0,
            territory TEXT
        );
        CREATE INDEX IF NOT EXISTS stats_conversations_day ON stats_conversations (day);
        CREATE TABLE IF NOT EXISTS stats_nodes (
            conversation TEXT NOT NULL,
            node TEXT NOT NULL,
            PRIMARY KEY (conversation, node)
        );
        CREATE TABLE IF NOT EXISTS stats_roles (
            conversation TEXT NOT NULL,
            role TEXT NOT NULL,
            PRIMARY KEY (conversation, role)
        );
        CREATE TABLE IF NOT EXISTS stats_outcomes (
            conversation TEXT NOT NULL,
            kind TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (conversation, kind)
        )
        """,
    ),
    (
        202,
        """
        CREATE TABLE IF NOT EXISTS followups (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user TEXT NOT NULL,
            address TEXT NOT NULL DEFAULT '',
            conversation TEXT,
            context TEXT,
            roles TEXT NOT NULL,
            due_at REAL NOT NULL,
            created_at REAL NOT NULL,
            sent_at REAL,
            answered_at REAL,
            answer TEXT,
            cancelled_at REAL
        );
        CREATE UNIQUE INDEX IF NOT EXISTS followups_one_open
            ON followups (user) WHERE sent_at IS NULL AND cancelled_at IS NULL;
        CREATE INDEX IF NOT EXISTS followups_due ON followups (due_at)
            WHERE sent_at IS NULL AND cancelled_at IS NULL
        """,
    ),
    (
        203,
        # Statistics are tagged with the establishment whose API key created the conversation
        # (NULL on Telegram): an establishment's report never counts another's conversations,
        # and its own never lift a hidden count over the threshold (see bot/app/stats.py).
        """
        ALTER TABLE stats_conversations ADD COLUMN establishment TEXT;
        CREATE INDEX IF NOT EXISTS stats_conversations_establishment
            ON stats_conversations (establishment)
        """,
    ),
]


#: The whole schema: what a server opens its database with.
MIGRATIONS: list[Migration] = [*CORE_MIGRATIONS, *INTEGRATION_MIGRATIONS, *FEATURE_MIGRATIONS]
#: The name servers knew the whole schema by.
ALL_MIGRATIONS = MIGRATIONS

SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at REAL)"
)


def check(migrations: Sequence[Migration]) -> None:
    """Refuse a list with duplicate or non-positive versions (a programming error)."""
    versions = [version for version, _ in migrations]
    if len(set(versions)) != len(versions) or any(v <= 0 for v in versions):
        raise ValueError(f"migration versions must be positive and unique: {versions}")


def statements(script: str) -> list[str]:
    """A migration's statements (no migration has a ``;`` inside a literal)."""
    return [statement for statement in script.split(";") if statement.strip()]


def migrate(db: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply the migrations not yet applied, lowest version first, each atomically.

    ``db`` must be in autocommit mode (``isolation_level=None``). Returns the versions applied.
    """
    check(migrations)
    db.execute(SCHEMA_VERSION_TABLE)
    done = {int(row[0]) for row in db.execute("SELECT version FROM schema_version")}
    ran: list[int] = []
    for version, script in sorted(migrations):
        if version in done:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            # Re-check under the write lock: another process may have migrated meanwhile.
            found = db.execute("SELECT 1 FROM schema_version WHERE version = ?", (version,))
            if found.fetchone() is not None:
                db.execute("COMMIT")
                continue
            for statement in statements(script):
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (version, time.time()),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        ran.append(version)
    return ran
