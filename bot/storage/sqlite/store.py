"""The conversation store in SQLite: consent, sessions, the inbox and the reply outbox, written
through the file's group-commit writer (:class:`~bot.storage.sqlite.writer.SqliteWriter`).

:meth:`SqliteStorage.commit_update` writes a turn all or nothing: its session and consent, its
replies, its webhook events and feature rows when those tables share the file, the claim of a
due follow-up, and the update marked applied. An erasure is scrubbed from the WAL before the
call returns.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bot.json_types import JsonObject, loads_object
from bot.storage.base import (
    ConversationStore,
    FollowUpTaken,
    InboxItem,
    OutgoingReply,
    UserChange,
)
from bot.storage.sqlite import features, inbox, sessions
from bot.storage.sqlite.integration import outbox_changes
from bot.storage.sqlite.migrations import CORE_MIGRATIONS, Migration
from bot.storage.sqlite.writer import SCRUB_DELAY, SqliteWriter, has_table

log = logging.getLogger(__name__)


class SqliteStorage(ConversationStore):
    """A :class:`ConversationStore` in one SQLite file. Sessions are only ever stored for
    users whose consent is recorded: saving one without consent is a no-op, enforced in SQL."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        migrations: Sequence[Migration] = CORE_MIGRATIONS,
        clock: Callable[[], float] = time.time,
        max_batch: int = 512,
        scrub_delay: float = SCRUB_DELAY,
    ) -> None:
        self._writer = SqliteWriter(
            path,
            synchronous=synchronous,
            migrations=migrations,
            max_batch=max_batch,
            scrub_delay=scrub_delay,
        )
        self.path = self._writer.path
        self._clock = clock

    @property
    def writer(self) -> SqliteWriter:
        """The file's writer, for the other stores on the same file to share."""
        return self._writer

    @property
    def scrubs(self) -> int:
        """Checkpoints that truncated the WAL (tests, health)."""
        return self._writer.scrubs

    async def open(self) -> None:
        await self._writer.open()

    async def close(self) -> None:
        await self._writer.close()

    async def scrub(self) -> None:
        """Truncate the WAL after every write queued so far (see :mod:`.writer`)."""
        await self._writer.scrub()

    # -- sessions and consent --------------------------------------------------------------
    async def load_session(self, user: str) -> JsonObject | None:
        return await self._writer.read_with(lambda db: sessions.load(db, user))

    async def get_consent(self, user: str) -> bool | None:
        found = await self._writer.read_with(lambda db: sessions.consented(db, user))
        return True if found else None

    async def load_state(self, user: str) -> tuple[bool | None, JsonObject | None]:
        rows = await self._writer.lookup(sessions.LOAD_STATE, (user,))
        if not rows:
            return None, None
        return True, (loads_object(rows[0][0]) if rows[0][0] else None)

    async def commit_update(self, update_id: int | None, user: str, change: UserChange) -> None:
        now = self._clock()
        session = None if change.session is None else json.dumps(change.session)
        forget = bool(user) and (change.erase or change.consent is False)

        def operation(db: sqlite3.Connection) -> None:
            if change.followup is not None and not features.claim_followup(
                db, change.followup, now
            ):
                # Claimed with the question and the session, all or nothing (savepoint).
                raise FollowUpTaken(change.followup)
            if change.features:
                if not features.holds_features(db):
                    raise ValueError("this database has no feature tables: use FeatureStore")
                for write in change.features:
                    features.apply_write(db, write, now)
            if change.outbox or (user and change.erase):
                outbox_changes(db, user if change.erase else "", change.outbox, now)
            if forget:
                sessions.forget(db, user)
            elif user:
                if change.consent:
                    sessions.grant(db, user, now)
                if session is not None:
                    sessions.save(db, user, session, now)
            if user and change.erase:
                if features.holds_features(db):
                    features.erase(db, user)
                # Replies not yet sent to this person's chat go too (the new ones below stay).
                inbox.drop_chats(db, {r.chat_id for r in change.replies})
            if change.replies:
                inbox.record_replies(db, change.replies, now)
            if update_id is not None:
                inbox.done(db, update_id, now)

        await self._writer.write(operation)
        if forget:
            await self._writer.scrub()  # the erased rows leave the WAL too, before the answer

    async def export_user(self, user: str) -> JsonObject:
        return await self._writer.read_with(lambda db: sessions.export(db, user))

    async def purge_idle(self, idle_days: float) -> int:
        cutoff = self._clock() - idle_days * 86400
        count = await self._writer.write(lambda db: sessions.purge_idle(db, cutoff))
        if count:
            await self._writer.scrub()
        return count

    # -- inbox -----------------------------------------------------------------------------
    async def inbox_add(self, update_id: int, payload: bytes, chat: str | None = None) -> bool:
        now = self._clock()
        return await self._writer.write(lambda db: inbox.add(db, update_id, payload, now))

    async def inbox_pending(self, limit: int = 1000) -> list[InboxItem]:
        return await self._writer.read_with(lambda db: inbox.pending(db, limit))

    async def inbox_dead(self, update_id: int) -> None:
        now = self._clock()
        await self._writer.write(lambda db: inbox.dead(db, update_id, now))

    async def inbox_failed(self, update_id: int, max_attempts: int) -> bool:
        attempts = await self._writer.write(lambda db: inbox.failed(db, update_id))
        if attempts >= max_attempts:
            await self.inbox_dead(update_id)
            return True
        return False

    async def inbox_prune(self, older_than_seconds: float) -> int:
        cutoff = self._clock() - older_than_seconds
        return await self._writer.write(lambda db: inbox.prune(db, cutoff))

    # -- reply outbox ----------------------------------------------------------------------
    async def replies_pending(self) -> list[OutgoingReply]:
        """Recorded replies, in order; a row that cannot be a Bot API call (written by an older
        version from a malformed update) is deleted with a log line instead of stopping the
        start-up."""
        replies, bad = await self._writer.read_with(inbox.replies)
        if bad:
            log.warning("%d unreadable recorded reply(ies) dropped", len(bad))
            await self._writer.write(lambda db: inbox.sent(db, bad))
        return replies

    async def reply_sent(self, update_id: int, seq: int, *, wait: bool = True) -> None:
        def operation(db: sqlite3.Connection) -> None:
            inbox.sent(db, [(update_id, seq)])

        if wait:
            await self._writer.write(operation)
        else:
            self._writer.write_later(operation)

    async def holds_followups(self) -> bool:
        return await self._writer.read_with(lambda db: has_table(db, "followups"))

    async def holds_features(self) -> bool:
        return await self._writer.read_with(features.holds_features)

    # -- introspection (health, benchmarks, tests) -----------------------------------------
    async def probe(self) -> None:
        """Commit one small write (``/healthz``): raises if the database cannot be written
        (disk full, file read-only or locked for too long)."""
        now = self._clock()
        await self._writer.execute(
            [
                (
                    "INSERT INTO health (id, checked_at) VALUES (1, ?) "
                    "ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
                    (now,),
                )
            ]
        )

    async def counts(self) -> dict[str, int]:
        """Rows per core table."""

        def count(db: sqlite3.Connection) -> dict[str, int]:
            return {table: sessions.count(db, table) for table in ("consents", "sessions", "inbox")}

        return await self._writer.read_with(count)
