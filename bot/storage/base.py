"""The storage contracts, as Protocols: what the application layer and the channels type
against. (Longer than 400 lines on purpose: the three stores' contracts and the records they
exchange, in one file an implementer reads top to bottom.) The engine never imports this:
channels load a session, hand it to the engine, and save what comes back. Implementations:
:mod:`bot.storage.memory`, :mod:`bot.storage.sqlite` (and PostgreSQL); everything here is
dialect-neutral.

Users are known only by a pseudonymous key (:func:`bot.app.identity.pseudonym`); nothing here
ever receives a raw Telegram id or a username. Conversation state is kept durably only with
consent: without it, channels keep the session in memory (:mod:`bot.storage.memory`).

Incoming updates go through an *inbox*: recorded (committed) before they are acknowledged, then
applied; :meth:`ConversationStore.commit_update` saves the effect of an update and marks it
applied in one transaction, so a crash at any point loses nothing and applies nothing twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from bot.json_types import JsonObject


# -- conversation store records ------------
@dataclass(frozen=True)
class InboxItem:
    """A raw update recorded before it is applied, so a crash loses nothing."""

    update_id: int
    payload: bytes
    #: How many times applying it failed already.
    attempts: int = 0


@dataclass(frozen=True)
class OutgoingReply:
    """One message to send for an applied update, recorded in the same transaction as the
    state change (the *reply outbox*) and deleted once Telegram accepted it.

    ``params`` is the JSON of the Bot API call's parameters (``photo`` travels apart)."""

    update_id: int
    seq: int
    chat_id: int
    method: str
    params: str
    photo: bytes | None = None


# -- feature writes: what a turn changes in the feature tables, applied with the turn -------------
@dataclass(frozen=True)
class StatsStarted:
    """A conversation's statistics row (random ``conversation`` id, never derived from a user);
    kept if it exists already."""

    conversation: str
    day: str
    channel: str
    context: str | None = None
    establishment: str | None = None


@dataclass(frozen=True)
class StatsReached:
    """The conversation reached question ``node`` (it is also where it stands now)."""

    conversation: str
    node: str


@dataclass(frozen=True)
class StatsCompleted:
    """The conversation ended with a recommendation of ``roles`` in ``territory``."""

    conversation: str
    territory: str | None
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class StatsOutcome:
    """One outcome per ``kind`` (``contact``, ``barometer``, ``followup``): the last one wins.
    ``value`` is a fixed word, never text a person typed."""

    conversation: str
    kind: str
    value: str


@dataclass(frozen=True)
class StatsForgotten:
    """Every statistics row of the conversation goes (an erased API conversation)."""

    conversation: str


@dataclass(frozen=True)
class BarometerRating:
    """``member``'s rating kept in group ``code`` (the person asked for it). ``create``: the
    group is new (a code already taken fails the write); otherwise a member who already rated
    in the current round starts the next one, and an unknown code writes nothing."""

    code: str
    member: str
    rater: str
    scores: dict[str, int]
    kb_version: str
    create: bool = False
    context: str | None = None


@dataclass(frozen=True)
class FollowUpScheduled:
    """One follow-up for ``user`` (who consented); an open one is kept, not doubled."""

    user: str
    address: str
    roles: tuple[str, ...]
    due_at: float
    context: str | None = None
    conversation: str | None = None


@dataclass(frozen=True)
class FollowUpCancelled:
    """Every open follow-up of ``user`` is cancelled (its address forgotten)."""

    user: str


@dataclass(frozen=True)
class FollowUpAnswered:
    """The answer to follow-up ``followup`` (recorded once); with ``stats`` it also becomes
    the ``followup`` outcome of the conversation that led to it."""

    followup: int
    reached: bool
    stats: bool = True


FeatureWrite = (
    StatsStarted
    | StatsReached
    | StatsCompleted
    | StatsOutcome
    | StatsForgotten
    | BarometerRating
    | FollowUpScheduled
    | FollowUpCancelled
    | FollowUpAnswered
)


@dataclass(frozen=True)
class UserChange:
    """What applying one update changes about one user (all fields optional).

    ``consent=True`` records consent before ``session`` is saved; ``consent=False`` or ``erase``
    removes every row about the user (and ``session`` is then ignored).

    ``outbox``: webhook events (:class:`OutboxEvent`) produced by the same update, written in
    the same transaction as the state change (stores without an outbox table ignore them).
    ``erase`` also removes undelivered events whose ``subject`` is the user.
    """

    session: JsonObject | None = None
    consent: bool | None = None
    erase: bool = False
    outbox: tuple[OutboxEvent, ...] = ()
    #: Replies of the update (:class:`OutgoingReply`), kept until sent (stores without a reply
    #: table ignore them: the channel still sends them, without crash recovery).
    replies: tuple[OutgoingReply, ...] = ()
    #: A due follow-up (``followups.id``) whose question this change carries: it is marked
    #: sent in the same transaction, and if it is no longer pending (already sent, cancelled,
    #: erased) nothing is committed and :class:`FollowUpTaken` is raised. Only for stores
    #: whose :meth:`ConversationStore.holds_followups` is true.
    followup: int | None = None
    #: Feature rows of the turn (:data:`FeatureWrite`), applied in the same transaction. Only
    #: for stores whose :meth:`ConversationStore.holds_features` is true; others must be given
    #: them through :meth:`FeatureStore.apply` instead.
    features: tuple[FeatureWrite, ...] = ()


class FollowUpTaken(Exception):
    """The follow-up of a :class:`UserChange` was no longer pending: nothing was committed."""


# -- the conversation store ------------
@runtime_checkable
class ConversationStore(Protocol):
    """Consent, sessions, the inbox and the reply outbox. All methods are safe to call
    concurrently. Implementations may subclass it to inherit the derived methods."""

    @abstractmethod
    async def open(self) -> None:
        """Create or migrate the schema. Called once at start-up."""

    @abstractmethod
    async def close(self) -> None:
        """Flush and release resources."""

    # -- sessions and consent --------------------------------------------------------------
    @abstractmethod
    async def load_session(self, user: str) -> JsonObject | None:
        """The stored session of ``user``, or ``None``."""

    @abstractmethod
    async def get_consent(self, user: str) -> bool | None:
        """``True``/``False`` once the user answered, ``None`` if never asked (or forgotten)."""

    async def load_state(self, user: str) -> tuple[bool | None, JsonObject | None]:
        """``(consent, session)`` of ``user`` (durable stores answer in one read)."""
        consent = await self.get_consent(user)
        return consent, (await self.load_session(user) if consent else None)

    @abstractmethod
    async def commit_update(self, update_id: int | None, user: str, change: UserChange) -> None:
        """Apply ``change`` and mark ``update_id`` applied (if given), all or nothing."""

    async def save_session(self, user: str, session: JsonObject) -> None:
        """Store ``user``'s session (durable stores keep it only if the user consented)."""
        await self.commit_update(None, user, UserChange(session=session))

    async def set_consent(self, user: str, granted: bool) -> None:
        """Record the user's answer; refusing erases anything kept so far."""
        await self.commit_update(None, user, UserChange(consent=granted))

    async def erase_user(self, user: str) -> None:
        """Remove every row about ``user`` in every table."""
        await self.commit_update(None, user, UserChange(erase=True))

    @abstractmethod
    async def export_user(self, user: str) -> JsonObject:
        """Everything stored about ``user``, as JSON-safe data (empty if nothing)."""

    @abstractmethod
    async def purge_idle(self, idle_days: float) -> int:
        """Erase users idle for more than ``idle_days``; return how many."""

    # -- inbox: durable, exactly-once processing of incoming updates -----------------------
    @abstractmethod
    async def inbox_add(self, update_id: int, payload: bytes, chat: str | None = None) -> bool:
        """Durably record an update; ``False`` if this ``update_id`` was already seen.
        ``chat`` names whose turn it is (shared stores apply a chat's updates in order)."""

    # -- health: what ``/healthz`` checks -------------------------------------------------
    #: Where the store lives, for the health check's disk watch: a file, or ``":memory:"``
    #: or ``":postgresql:"`` when there is no local file to watch.
    path: str = ":memory:"

    async def probe(self) -> None:
        """Commit one small write: raises if the store cannot be written now (a store in
        memory always can)."""
        return None

    # -- several instances on one store (PostgreSQL); no-ops for a store of one process ---
    #: Whether several processes share this store (then the channels take the per-chat
    #: turn below, and sweep what a dead instance left).
    shared: bool = False
    #: How long this instance's claims (replies, webhook events) last unrenewed before
    #: another instance takes them over (``PASSERELLE_CLAIM_SECONDS``).
    claim_seconds: float = 30.0

    async def lease(self, name: str, seconds: float = 30.0) -> bool:
        """Take or renew the lease ``name`` for ``seconds``: ``True`` for exactly one process
        at a time (the holder renews; another takes it once it lapsed). One process: its own."""
        return True

    async def renew_claims(self) -> None:
        """Extend this instance's claims while it lives, so no other takes over what it is
        sending."""
        return None

    async def replies_orphaned(self) -> list[OutgoingReply]:
        """Unsent replies whose claim lapsed (their instance died), claimed for this one."""
        return []

    async def replies_of_chat(self, chat_id: int) -> list[OutgoingReply]:
        """Under :meth:`chat_turn`: the chat's replies not sent yet, by whichever instance
        recorded them, in recorded order, claimed for this one. Read under the turn, it is
        what is left to send: a live instance sends a chat's replies only in the chat's turn,
        so none of these is being sent by another (one process: nothing shared to read)."""
        return []

    async def inbox_stale_chats(self, older_than: float, limit: int = 100) -> list[str]:
        """Chats with an update recorded more than ``older_than`` seconds ago and still not
        applied (its instance died): any instance may apply them, under :meth:`chat_turn`."""
        return []

    def chat_turn(self, chat: str) -> AbstractAsyncContextManager[None]:
        """Hold ``chat``'s turn across every process sharing the store (one process: its own
        per-chat queue suffices)."""
        return contextlib.nullcontext()

    async def inbox_pending_of(self, chat: str, up_to: int) -> list[InboxItem] | None:
        """Under :meth:`chat_turn`: ``chat``'s unapplied updates up to ``up_to``, oldest first
        (``None``: this store is not shared, apply just the one in hand)."""
        return None

    @abstractmethod
    async def inbox_pending(self, limit: int = 1000) -> list[InboxItem]:
        """Recorded updates not yet applied, oldest first."""

    async def inbox_done(self, update_id: int) -> None:
        """Mark an update applied without any other change (its payload is dropped)."""
        await self.commit_update(update_id, "", UserChange())

    async def inbox_dead(self, update_id: int) -> None:
        """Dead-letter an update that cannot be applied: its payload is dropped and it is
        never tried again (durable stores also record when)."""
        await self.inbox_done(update_id)

    async def inbox_failed(self, update_id: int, max_attempts: int) -> bool:
        """Count one failed application; dead-letter the update (and return ``True``) once it
        failed ``max_attempts`` times. Stores that keep no count dead-letter it at once."""
        await self.inbox_dead(update_id)
        return True

    @abstractmethod
    async def inbox_prune(self, older_than_seconds: float) -> int:
        """Forget ids of updates applied longer ago than this (Telegram stops retrying within
        a day); return how many."""

    # -- reply outbox: replies recorded with the state change, sent afterwards -------------
    async def replies_pending(self) -> list[OutgoingReply]:
        """Recorded replies not yet sent, in the order they were recorded (per chat, the order
        of its updates and follow-ups), then message order."""
        return []

    async def reply_sent(self, update_id: int, seq: int, *, wait: bool = True) -> None:
        """Forget a reply Telegram accepted (or refused for good). With ``wait=False`` the
        deletion joins the next transaction instead of costing one of its own."""
        return None

    async def holds_followups(self) -> bool:
        """Whether the follow-ups live in this store's database, so that
        :attr:`UserChange.followup` can be claimed in the same transaction as the replies."""
        return False

    async def holds_features(self) -> bool:
        """Whether the feature tables live in this store's database, so that
        :attr:`UserChange.features` are applied in the turn's transaction."""
        return False


#: The name the channels knew the conversation store by.
Storage = ConversationStore


# -- the integration store (hospital API, web chat, webhooks) ------------
KeyKind = Literal["api", "widget"]
KEY_PREFIXES: dict[str, str] = {"api": "psk_", "widget": "pwk_"}


def key_kind(value: object) -> KeyKind:
    """The :data:`KeyKind` of a stored key row."""
    if value == "api":
        return "api"
    if value == "widget":
        return "widget"
    raise ValueError(f"unknown key kind {value!r}")


def hash_key(key: str) -> str:
    """Keys are 256-bit random strings, so a plain SHA-256 is enough to store them safely."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def new_key_secret(kind: KeyKind) -> str:
    """A fresh API or widget key (shown once; stores keep only :func:`hash_key` of it)."""
    return KEY_PREFIXES[kind] + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ApiKey:
    id: str
    establishment: str
    kind: KeyKind
    prefix: str
    created_at: float
    revoked_at: float | None = None


@dataclass(frozen=True)
class OutboxEvent:
    """One webhook delivery to one establishment (``id`` is the ``webhook-id``)."""

    id: str
    establishment: str
    event_type: str
    payload: str
    subject: str | None = None


@dataclass(frozen=True)
class OutboxItem:
    id: str
    establishment: str
    event_type: str
    payload: str
    status: str
    attempts: int
    created_at: float
    next_attempt_at: float
    last_error: str | None


@dataclass(frozen=True)
class Conversation:
    id: str
    key_id: str
    establishment: str
    session: JsonObject
    offered: tuple[str, ...]
    created_at: float
    updated_at: float
    #: SHA-256 of the conversation's own secret (widget conversations), else ``None``.
    secret_hash: str | None = None


@dataclass(frozen=True)
class TranscriptLine:
    at: float
    author: str
    body: JsonObject = field(default_factory=dict)


@runtime_checkable
class IntegrationStore(Protocol):
    """API keys (hashed), API conversations with their transcript, and the webhook outbox.
    A turn's state, transcript lines, events and feature rows are written all or nothing
    (:meth:`save_turn`), so an event or a statistics row exists if and only if the state
    change that caused it was committed."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def create_key(self, establishment: str, kind: KeyKind = "api") -> tuple[str, ApiKey]:
        """A new key: the secret (shown once) and its record; only the hash is kept."""
        ...

    async def find_key(self, secret: str) -> ApiKey | None:
        """The key whose secret this is, unless revoked."""
        ...

    async def list_keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        ...

    async def revoke_key(self, key_id: str) -> bool:
        """``False`` if no such key or already revoked."""
        ...

    def conversation_turn(self, conversation_id: str) -> AbstractAsyncContextManager[None]:
        """Serialise a conversation's turns across processes sharing the store (one process:
        the API's own ordering suffices)."""
        return contextlib.nullcontext()

    async def load_conversation(
        self, conversation_id: str, establishment: str
    ) -> Conversation | None:
        """The conversation if it belongs to ``establishment`` (whatever key of it created
        it); the caller still checks a widget conversation's own secret."""
        ...

    async def transcript(self, conversation_id: str) -> list[TranscriptLine]:
        """The conversation's lines in the order they were saved."""
        ...

    async def save_turn(
        self,
        conversation: Conversation,
        *,
        created: bool,
        lines: Iterable[TranscriptLine],
        events: Iterable[OutboxEvent] = (),
        features: Sequence[FeatureWrite] = (),
    ) -> None:
        """The conversation's new state, its new lines, the turn's events and its feature rows
        (:data:`FeatureWrite`; only for stores whose :meth:`holds_features` is true, others
        raise :class:`ValueError`), all or nothing: a :class:`BarometerRating` with ``create``
        on a taken code raises :class:`CodeTaken` and nothing of the turn is written."""
        ...

    async def holds_features(self) -> bool:
        """Whether the feature tables live with this store's (one database, or one set of
        dictionaries), so that :meth:`save_turn` can take the turn's feature rows; otherwise
        the caller writes them through :meth:`FeatureStore.apply`."""
        return False

    async def delete_conversation(self, conversation_id: str, establishment: str) -> bool:
        """Erase a conversation of ``establishment``, its transcript and its undelivered
        events (gone from the disk before this returns)."""
        ...

    async def purge_idle_conversations(self, idle_days: int) -> int:
        """Erase conversations idle for more than ``idle_days``; return how many."""
        ...

    async def enqueue(self, events: Iterable[OutboxEvent]) -> None:
        """Add events alone (when no state change goes with them); an id seen already is
        ignored."""
        ...

    async def outbox_due(
        self, now: float, limit: int = 50, skip_establishments: Sequence[str] = ()
    ) -> list[OutboxItem]:
        """Pending events due by ``now``, only the oldest pending one per subject and
        establishment (a conversation's events go out in order), none for
        ``skip_establishments``; soonest due first."""
        ...

    async def outbox_next_due(self) -> float | None:
        """When the next pending event is due (``None``: none pending)."""
        ...

    async def outbox_list(self) -> list[OutboxItem]:
        """Every event kept (pending and dead)."""
        ...

    async def outbox_about(self, subject: str) -> list[JsonObject]:
        """Undelivered events about one person or conversation (for their data export)."""
        ...

    async def outbox_delivered(self, event_id: str) -> None:
        """Acknowledged: the event (and its payload, maybe personal) is deleted."""
        ...

    async def outbox_failed(
        self, event_id: str, attempts: int, next_attempt_at: float, error: str
    ) -> None:
        """A failed attempt of a pending event: tried again at ``next_attempt_at``."""
        ...

    async def outbox_dead(self, event_id: str, attempts: int, error: str) -> None:
        """Given up: kept as dead until retried by an operator."""
        ...

    async def outbox_retry(self, event_id: str) -> bool:
        """Put a pending or dead event back in line for an immediate attempt (as the newest
        of its subject)."""
        ...


# -- the feature store (statistics, barometer groups, follow-ups) ------------
@dataclass(frozen=True)
class FollowUp:
    id: int
    user: str
    address: str
    conversation: str | None
    context: str | None
    roles: tuple[str, ...]
    due_at: float

    @property
    def job_name(self) -> str:
        return f"followup:{self.id}"


@dataclass(frozen=True)
class StatsScope:
    """Which conversations a statistics query covers. ``establishment``: those its API keys
    created and those from elsewhere (``establishment`` unset) whose context is in
    ``contexts``; its own are counted apart (``own``)."""

    since: str | None = None
    context: str | None = None
    establishment: str | None = None
    contexts: tuple[str, ...] = ()


#: key -> (count, how many of them the scope's establishment created).
Counts = dict[str, tuple[int, int]]


@dataclass(frozen=True)
class StatsCounts:
    """Raw counts for a report (suppression of small counts is the caller's)."""

    started: tuple[int, int]
    completed: tuple[int, int]
    reached: Counts
    #: Not completed, by last question reached ('' before the first).
    left: Counts
    roles: Counts
    #: Completed, by territory ('' when none).
    territories: Counts
    #: ``kind:value``.
    outcomes: Counts
    #: role -> value ('reached' / 'not_reached') -> counts, from follow-up outcomes.
    followups_by_role: dict[str, Counts]
    followups_by_context: dict[str, Counts]


@runtime_checkable
class FeatureStore(Protocol):
    """Usage statistics (anonymous), barometer groups and follow-ups. Writes are
    :data:`FeatureWrite` values: through :meth:`apply` alone, or in a turn's
    :class:`UserChange` when the conversation store holds these tables."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def apply(self, writes: Sequence[FeatureWrite]) -> list[int]:
        """Apply ``writes`` in one transaction; each one's number of rows changed (a
        :class:`BarometerRating` with ``create`` on a taken code raises :class:`CodeTaken`,
        nothing written)."""
        ...

    # -- statistics -------------------------------------------------------------------------
    async def stats_counts(self, scope: StatsScope) -> StatsCounts:
        """The raw figures of the conversations in ``scope``."""
        ...

    # -- barometer groups -------------------------------------------------------------------
    async def barometer_round(self, code: str) -> int | None:
        """The group's current round (``None``: no such group)."""
        ...

    async def barometer_rated(self, code: str, round_: int, member: str) -> bool:
        """Whether ``member`` rated in that round of that group."""
        ...

    async def barometer_groups_of(self, member: str) -> list[str]:
        """Codes of the groups ``member`` belongs to, most recently rated last."""
        ...

    async def barometer_is_member(self, code: str, member: str) -> bool: ...

    async def barometer_ratings(self, code: str, round_: int) -> list[tuple[str, dict[str, int]]]:
        """``(rater, scores)`` of one round, in the order they were kept."""
        ...

    # -- follow-ups -------------------------------------------------------------------------
    async def followups_pending(self) -> list[FollowUp]:
        """Follow-ups not yet sent nor cancelled, soonest first."""
        ...

    async def followup_claim(self, followup_id: int, now: float) -> bool:
        """Mark as sent; ``True`` only for the one caller that should send it."""
        ...

    async def followup_release(self, followup_id: int) -> None:
        """The send failed: pending again (unless answered)."""
        ...

    # -- the person's rights ----------------------------------------------------------------
    async def export_user(self, user: str) -> JsonObject:
        """Rows about ``user`` (barometer ratings, follow-ups); statistics are anonymous."""
        ...

    async def erase_user(self, user: str) -> None:
        """Remove ``user``'s ratings and follow-ups (groups left empty go too)."""
        ...


class CodeTaken(Exception):
    """A new barometer group's code is in use already (draw another): nothing was written."""
