"""One object for the conversation service: statistics, barometer charts and groups,
follow-ups.

:class:`bot.app.conversation.ConversationService` calls :meth:`Features.plan` after every
engine turn: the turn comes back with what the features show (charts, group codes,
comparisons) and the feature rows to commit with it, in the turn's one transaction (the
conversation store's :attr:`~bot.storage.base.UserChange.features`, or the API's
:meth:`~bot.storage.base.IntegrationStore.save_turn`); :meth:`Features.committed` follows the
commit. Where the feature tables live in another database than the turn's state,
:meth:`Features.after_turn` writes the rows itself, before the commit::

    turn, writes = await features.plan(turn, channel="telegram", member=user, address=chat)
    commit(turn.session, features=writes); await features.committed(writes)
    send(turn.replies)   # replies may now carry an Image (the chart)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from bot.app.barometer import BarometerGroups, BarometerService
from bot.app.followups import FollowUps, Scheduler
from bot.app.stats import StatsRecorder
from bot.app.stats_report import DEFAULT_K, ReportJson, Scope, StatsReader
from bot.engine.flow import Engine, Turn
from bot.json_types import JsonObject, JsonValue
from bot.storage.base import FeatureStore, FeatureWrite, FollowUpScheduled


class Features:
    def __init__(self, engine: Engine, store: FeatureStore) -> None:
        self.engine = engine
        self.store = store
        self.stats = StatsRecorder(store)
        self.groups = BarometerGroups(store)
        self.barometer = BarometerService(engine, self.groups)
        self.followups = FollowUps(store, self.stats)
        self.scheduler: Scheduler | None = None

    def set_engine(self, engine: Engine) -> None:
        """Use the engine of a reloaded knowledge base (see :mod:`bot.app.reload`)."""
        self.engine = engine
        self.barometer.engine = engine

    async def open(self) -> None:
        await self.store.open()

    async def close(self) -> None:
        await self.store.close()

    async def after_turn(
        self,
        turn: Turn,
        *,
        channel: str,
        member: str | None = None,
        address: str | None = None,
        establishment: str | None = None,
    ) -> Turn:
        """Statistics first (gives the session its random statistics id, tagged with the
        ``establishment`` whose API key created the conversation), then the barometer
        (charts, groups; ``member`` is the pseudonymous user key, ``None`` = no groups), then
        follow-ups (only when the channel can write first: ``address`` given)."""
        turn = await self.stats.record(turn, channel, establishment=establishment)
        turn = await self.barometer.apply(member, turn)
        if member is not None and address is not None:
            turn = await self.followups.apply(member, address, turn, self.scheduler)
        return turn

    async def plan(
        self,
        turn: Turn,
        *,
        channel: str,
        member: str | None = None,
        address: str | None = None,
        establishment: str | None = None,
    ) -> tuple[Turn, tuple[FeatureWrite, ...]]:
        """As :meth:`after_turn`, but the statistics, barometer and follow-up rows come back
        as writes for the turn's one commit instead of being written now; call
        :meth:`committed` once they are. A new barometer group's code is claimed by that
        commit: it raises :class:`~bot.storage.base.CodeTaken` (nothing written) if another
        turn took the code since it was drawn, and the turn is then planned again."""
        turn, writes = self.stats.plan(turn, channel, establishment=establishment)
        turn, kept = await self.barometer.plan(member, turn)
        writes += kept
        if member is not None and address is not None:
            writes += self.followups.plan(member, address, turn)
        return turn, writes

    async def committed(self, writes: Sequence[FeatureWrite]) -> None:
        """The turn's writes are committed: a new follow-up gets its job."""
        if self.scheduler is not None and any(isinstance(w, FollowUpScheduled) for w in writes):
            await self.followups.rebuild(self.scheduler)

    async def stats_json(
        self,
        establishment: str,
        since: dt.date | None = None,
        k: int = DEFAULT_K,
        *,
        contexts: tuple[str, ...] = (),
    ) -> ReportJson:
        """The body of ``GET /api/v1/stats``: the caller's establishment only (conversations
        its keys created, and Telegram ones with its id or ``contexts`` as deep link), with
        its own conversations unable to lift a hidden count (see :mod:`bot.app.stats_report`)."""
        scope = Scope(establishment, contexts)
        report = await StatsReader(self.store, self.engine.kb).report(since, k=k, scope=scope)
        return report.to_dict()

    async def erase_user(self, member: str) -> None:
        """Call from the channel's « forget me » with the same pseudonymous key."""
        await self.followups.cancel(member)
        await self.store.erase_user(member)

    async def erase_conversation(
        self, member: str, session: Mapping[str, JsonValue] | None
    ) -> None:
        """An API conversation erased: its member's rows and its statistics rows."""
        await self.erase_user(member)
        await self.stats.forget(session)

    async def export_user(self, member: str) -> JsonObject:
        return await self.store.export_user(member)
