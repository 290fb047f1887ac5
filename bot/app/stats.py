"""Anonymous usage statistics for establishments.

What is recorded, per conversation (a random id kept in ``session.extra["stats_id"]``, never
derived from a user id): the day it started, its context (deep link / API key's establishment),
the establishment whose API key created it (none on Telegram), the channel, the questions it
reached, where it stopped, whether it ended with a recommendation, the roles recommended and the
territory, and outcomes (contact requested, barometer done, follow-up answered). Nothing a person
typed is ever read here: only node ids from the knowledge base and event fields chosen below.

How it is shown (``k``-anonymity, padding): :mod:`bot.app.stats_report`.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Mapping
from dataclasses import replace

from bot.engine import events
from bot.engine.flow import Turn
from bot.json_types import JsonValue, as_list, as_text
from bot.storage.base import (
    FeatureStore,
    FeatureWrite,
    StatsCompleted,
    StatsForgotten,
    StatsOutcome,
    StatsReached,
    StatsStarted,
)

log = logging.getLogger(__name__)

STATS_ID = "stats_id"

#: Outcomes kept per conversation (kind -> the event field giving its value).
OUTCOMES = {events.CONTACT_REQUESTED: "contact", events.BAROMETER_COMPLETED: "barometer"}


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class StatsRecorder:
    """What the conversation service asks after each engine turn: ``turn, writes =
    stats.plan(turn, "telegram")``, the rows committed with the turn.

    The turn comes back with the conversation's random statistics id in its session (saved
    with it). Never raises: statistics must not break a conversation. :meth:`record` writes
    the rows at once, where the statistics tables live in another database than the turn's.
    """

    def __init__(self, store: FeatureStore) -> None:
        self.store = store

    async def record(
        self,
        turn: Turn,
        channel: str,
        day: dt.date | None = None,
        *,
        establishment: str | None = None,
    ) -> Turn:
        """``establishment``: whose API key created the conversation (kept with its row)."""
        try:
            turn, writes = plan(turn, channel, day or today(), establishment)
            if writes:
                await self.store.apply(writes)
        except Exception:
            log.exception("statistics not recorded")
        return turn

    def plan(
        self,
        turn: Turn,
        channel: str,
        day: dt.date | None = None,
        *,
        establishment: str | None = None,
    ) -> tuple[Turn, tuple[FeatureWrite, ...]]:
        """The turn (with its statistics id) and the rows to write with it; never raises."""
        try:
            return plan(turn, channel, day or today(), establishment)
        except Exception:
            log.exception("statistics not recorded")
            return turn, ()

    async def forget(self, session: Mapping[str, JsonValue] | None) -> None:
        """Drop the statistics rows of the conversation whose session this is (API erasure:
        nothing of it, not even an anonymous row, is left to pad a count)."""
        write = forget(session)
        if write is not None:
            await self.store.apply([write])

    async def record_followup(self, conversation: str | None, reached: bool) -> None:
        """The answer to a follow-up (« could you reach the contact? »)."""
        if conversation:
            await self.store.apply([followup_outcome(conversation, reached)])


def plan(
    turn: Turn, channel: str, day: dt.date, establishment: str | None = None
) -> tuple[Turn, tuple[FeatureWrite, ...]]:
    """The statistics rows of one turn, and the turn with the conversation's random id in its
    session (drawn at its first turn)."""
    session = turn.session
    sid = session.extra.get(STATS_ID)
    writes: list[FeatureWrite] = []
    if not isinstance(sid, str) or not sid:
        sid = secrets.token_hex(12)
        session = replace(session, extra={**session.extra, STATS_ID: sid})
        turn = replace(turn, session=session)
        writes.append(
            StatsStarted(sid, day.isoformat(), channel[:32], session.context, establishment)
        )
    node = session.node
    if node and not session.mode:
        writes.append(StatsReached(sid, node))
    for event in turn.events:
        data = event.data
        if event.kind == events.CONVERSATION_COMPLETED:
            roles = tuple(str(role) for role in as_list(data.get("roles")))
            writes.append(StatsCompleted(sid, as_text(data.get("territory")), roles))
        elif event.kind in OUTCOMES:
            # The value is a fixed word, never a field a person typed.
            value = str(data.get("rater", "1")) if event.kind == events.BAROMETER_COMPLETED else "1"
            writes.append(StatsOutcome(sid, OUTCOMES[event.kind], value))
    return turn, tuple(writes)


def forget(session: Mapping[str, JsonValue] | None) -> StatsForgotten | None:
    """The write dropping the statistics rows of the conversation whose session this is."""
    extra = (session or {}).get("extra") or {}
    sid = extra.get(STATS_ID) if isinstance(extra, dict) else None
    if not isinstance(sid, str) or not sid:
        return None
    return StatsForgotten(sid)


def followup_outcome(conversation: str, reached: bool) -> StatsOutcome:
    return StatsOutcome(conversation, "followup", "reached" if reached else "not_reached")
