"""The conversation service: one turn of any channel, in one place.

``turn(identity, input)``: the person's state (durable or in memory, :mod:`bot.app.consent`)
→ the consent gate → the engine → the features (statistics, barometer, follow-ups) → event
routing to establishments (:mod:`bot.app.outbox`) → ONE commit of everything the turn changes
→ the replies, for the channel to translate. Channels only translate platform input into an
:class:`~bot.app.identity.Identity` and an :class:`~bot.engine.session.Input`, and the
:class:`Result` back into platform output.

The commit goes through a :class:`Transaction` the channel hands in: Telegram stages it and
commits it with the update's inbox mark and its rendered replies (the reply outbox), others
commit it at once (:class:`DirectTransaction`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol, TypedDict

from bot.app.consent import Consent, State
from bot.app.identity import Identity
from bot.app.outbox import EventRouter
from bot.app.reload import EngineHolder, holder_of
from bot.engine.flow import Engine, Turn
from bot.engine.normalize import normalize
from bot.engine.replies import STALE, Event, Reply
from bot.engine.session import Input, Session
from bot.storage.base import FeatureWrite, OutboxEvent, Storage, UserChange
from bot.storage.memory import MemoryStorage

if TYPE_CHECKING:
    from bot.app.features import Features


class HoldsFeatures(Protocol):
    """A store a turn commits to, asked whether the feature tables live with it."""

    async def holds_features(self) -> bool: ...


class Transaction(Protocol):
    """Where a turn's one change goes (``user`` is ``""`` for a change about nobody durable)."""

    async def commit(self, user: str, change: UserChange) -> None: ...


class DirectTransaction:
    """Commits each change at once (with ``update_id``'s inbox mark when given)."""

    def __init__(
        self,
        storage: Storage,
        update_id: int | None = None,
        on_events: Callable[[], None] | None = None,
        features: Features | None = None,
    ) -> None:
        self.storage = storage
        self.update_id = update_id
        self.on_events = on_events
        self.features = features

    async def commit(self, user: str, change: UserChange) -> None:
        await self.storage.commit_update(self.update_id, user, change)
        if change.outbox and self.on_events is not None:
            self.on_events()
        if change.features and self.features is not None:
            await self.features.committed(change.features)


@dataclass(frozen=True)
class Batch:
    """Replies said together (one rendering), and the question they were shown at."""

    replies: tuple[Reply, ...]
    node: str = ""


@dataclass
class Result:
    """What a turn says, in order, and where the conversation stands."""

    batches: list[Batch] = field(default_factory=list)
    #: The session before the turn (``None``: there was none) and after it.
    previous: Session | None = None
    session: Session | None = None
    #: The engine's turn when the engine ran (after the features).
    turn: Turn | None = None
    #: The consent gate answered instead of the engine (the input was not for it).
    gated: bool = False

    def say(self, replies: Sequence[Reply], node: str = "") -> None:
        self.batches.append(Batch(tuple(replies), node))

    @property
    def replies(self) -> list[Reply]:
        return [reply for batch in self.batches for reply in batch.replies]

    @property
    def stale(self) -> bool:
        """The input answered a question no longer asked (or there was no conversation)."""
        return self.previous is None or any(r.kind == STALE for r in self.replies)


class _FeatureOptions(TypedDict):
    """Who a turn's feature rows are about (:meth:`bot.app.features.Features.plan`)."""

    channel: str
    member: str
    address: str | None
    establishment: str | None


@dataclass(frozen=True)
class Step:
    """The engine's turn after the features, its events routed to the outbox, and the
    feature rows to commit with it (empty when the features wrote them already)."""

    turn: Turn
    outbox: tuple[OutboxEvent, ...]
    features: tuple[FeatureWrite, ...] = ()


class ConversationService:
    """Consent, engine, features, routing and the commit of one turn, for every channel."""

    def __init__(
        self,
        engine: Engine | EngineHolder,
        storage: Storage | None = None,
        *,
        consent: Consent | None = None,
        features: Features | None = None,
        router: EventRouter | None = None,
        commits_to: HoldsFeatures | None = None,
    ) -> None:
        """``commits_to``: the store the channel commits a :class:`Step` to when it keeps its
        own state (the API's integration store); ``storage`` otherwise."""
        self.holder = holder_of(engine)
        # No store: a channel that keeps its own state (the API's conversation rows).
        self.storage: Storage = storage if storage is not None else MemoryStorage()
        self.consent = consent or Consent(self.storage)
        self.features = features
        self.router = router
        self.commits_to: HoldsFeatures = commits_to if commits_to is not None else self.storage
        self._holds_features: bool | None = None

    @classmethod
    def in_memory(cls, engine: Engine | EngineHolder) -> ConversationService:
        """A service whose state lives in this process only, and asks nobody for consent
        since nothing outlives the process (the terminal)."""
        store = MemoryStorage()
        return cls(engine, store, consent=Consent(store, required=False))

    @property
    def engine(self) -> Engine:
        """The engine of the current knowledge base (swapped on reload): read it per turn."""
        return self.holder.engine

    async def state(self, user: str) -> State:
        return await self.consent.state(user)

    # -- the shared core: engine → features → routing (no commit) --------------------------
    async def advance(self, identity: Identity, turn: Turn) -> Step:
        """Features then routing for an engine ``turn``; the caller commits :class:`Step`.
        Feature rows (statistics, barometer ratings and group codes, follow-ups) join the
        turn's commit when the store holds them (one transaction: a crash or a failed write
        leaves no statistics row nor rating of a turn that never happened); otherwise the
        features write them themselves, before the commit."""
        writes: tuple[FeatureWrite, ...] = ()
        if self.features is not None:
            options: _FeatureOptions = {
                "channel": identity.channel,
                "member": identity.user,
                "address": identity.address,
                "establishment": identity.owner,
            }
            if await self._joins_features():
                turn, writes = await self.features.plan(turn, **options)
            else:
                turn = await self.features.after_turn(turn, **options)
        return Step(turn, self.route(identity, turn.events), writes)

    async def _joins_features(self) -> bool:
        if self._holds_features is None:
            self._holds_features = await self.commits_to.holds_features()
        return self._holds_features

    async def begin(self, identity: Identity, context: str | None = None) -> Step:
        """A new conversation at ``context``, owned by ``identity.owner`` (no commit)."""
        return await self.advance(identity, self.engine.start(context, owner=identity.owner))

    async def step(self, identity: Identity, session: Session, event: Input) -> Step:
        """One input to a conversation whose state the channel holds itself (no commit: the
        HTTP API saves its conversation row, transcript, ``Step.outbox`` and
        ``Step.features`` in one, then calls :meth:`committed`)."""
        return await self.advance(identity, self.engine.handle(session, event))

    async def committed(self, step: Step) -> None:
        """A :class:`Step` the channel committed itself: what follows its feature rows (a new
        follow-up's job)."""
        if step.features and self.features is not None:
            await self.features.committed(step.features)

    def route(self, identity: Identity, events: Sequence[Event]) -> tuple[OutboxEvent, ...]:
        if self.router is None:
            return ()
        return self.router.route(
            events,
            owner=identity.owner,
            subject=identity.erasure_key,
            conversation=identity.subject,
        )

    async def _keep(
        self,
        identity: Identity,
        tx: Transaction,
        consent: bool | None,
        session: Session | None,
        outbox: tuple[OutboxEvent, ...] = (),
        features: tuple[FeatureWrite, ...] = (),
    ) -> None:
        """The turn's one commit: the session durable with consent (else in memory), its
        events for the establishments and its feature rows in the same transaction."""
        user, change = await self.consent.keep(identity.user, consent, session, outbox)
        if features:
            change = replace(change, features=features)
        await tx.commit(user, change)

    async def touch(self, tx: Transaction) -> None:
        """An input that changes nothing (a notice, a menu): still marked done."""
        await tx.commit("", UserChange())

    # -- turns -----------------------------------------------------------------------------
    async def start(
        self,
        identity: Identity,
        tx: Transaction,
        *,
        context: str | None = None,
        notes: Sequence[str] = (),
    ) -> Result:
        """A new conversation (at ``context``); ``notes`` (message keys) are said before the
        first question. Asked for consent first if the person never answered: the session
        stays in memory."""
        state = await self.state(identity.user)
        step = await self.begin(identity, context)
        turn = step.turn
        said = [Reply(self.engine.msg(key, turn.session)) for key in notes]
        result = Result(previous=state.session, session=turn.session, turn=turn)
        if state.consent is None and self.consent.required:
            await self.consent.remember_unconsented(identity.user, turn.session)
            await self._keep(identity, tx, None, None, step.outbox, step.features)
            question = self.consent.question(self.engine, turn.session)
            result.gated = True
            result.say([*turn.replies[:-1], *said, question])
            return result
        await self._keep(identity, tx, state.consent, turn.session, step.outbox, step.features)
        result.say([*said, *turn.replies], turn.node)
        return result

    async def turn(self, identity: Identity, event: Input, tx: Transaction) -> Result:
        """One input. Before consent, distress is answered first (before the consent
        question); a typed yes/no answers the question; anything else asks it again."""
        engine = self.engine
        state = await self.state(identity.user)
        consent, session = state.consent, state.session
        if consent is None and self.consent.required:
            if event.kind == "text" and engine.is_distress(event.value):
                crisis = Result(previous=session, session=session, gated=True)
                crisis.say([engine.crisis_reply(session or engine.new_session())])
                if session is None:
                    started = await self.start(identity, tx)
                    crisis.batches += started.batches
                    crisis.session, crisis.turn = started.session, started.turn
                    return crisis
                await self.touch(tx)
                crisis.say([self.consent.question(engine, session, reminder=True)])
                return crisis
            if session is None:
                started = await self.start(identity, tx)
                started.gated = True
                return started
            answer = None
            if event.kind == "text":
                answer = engine.matcher.confirmation(normalize(event.value))
            if answer is None:
                await self.touch(tx)
                reminder = Result(previous=session, session=session, gated=True)
                reminder.say([self.consent.question(engine, session, reminder=True)])
                return reminder
            answered = await self.answer_consent(identity, tx, answer, state)
            answered.gated = True
            return answered
        raw = engine.start(None) if session is None else engine.handle(session, event)
        step = await self.advance(identity, raw)
        await self._keep(identity, tx, consent, step.turn.session, step.outbox, step.features)
        result = Result(previous=session, session=step.turn.session, turn=step.turn)
        result.say(step.turn.replies, step.turn.node)
        return result

    async def answer_consent(
        self, identity: Identity, tx: Transaction, yes: bool, state: State | None = None
    ) -> Result:
        """The consent question answered (a button or a typed yes/no). Answered already (an
        old consent message): the current question is asked again, nothing changes."""
        engine = self.engine
        state = state or await self.state(identity.user)
        session = state.session
        if state.consent is not None and session is not None:
            await self._keep(identity, tx, state.consent, session)  # saved as it is
            result = Result(previous=session, session=session)
            result.say([engine.prompt(session)], session.node)
            return result
        session = session or engine.start(None).session
        await tx.commit(identity.user, await self.consent.answer(identity.user, session, yes))
        note = Reply(engine.msg("consent_given" if yes else "consent_refused", session))
        result = Result(previous=state.session, session=session)
        result.say([note, engine.prompt(session)], session.node)
        return result
