"""The conversation store's contract (consent, sessions, the inbox, the reply outbox), run
against every implementation in :data:`tests.storage.conftest.BACKENDS`."""

from __future__ import annotations

import pytest

from bot.json_types import as_object
from bot.storage.base import (
    BarometerRating,
    CodeTaken,
    ConversationStore,
    FollowUpScheduled,
    FollowUpTaken,
    OutgoingReply,
    StatsScope,
    StatsStarted,
    UserChange,
)
from tests.storage.conftest import Clock, Stores, Traits

ALICE, BRUNO = "te_alice", "te_bruno"
DAY = 86400.0


def reply(update_id: int, seq: int, chat_id: int = 7, text: str = "Bonjour") -> OutgoingReply:
    return OutgoingReply(update_id, seq, chat_id, "sendMessage", f'{{"text": "{text}"}}')


# -- consent and sessions ----------------------------------------------------------------------
async def test_a_consenting_person_finds_their_session_again(
    conversations: ConversationStore,
) -> None:
    await conversations.commit_update(None, ALICE, UserChange(consent=True, session={"n": 1}))
    assert await conversations.get_consent(ALICE) is True
    assert await conversations.load_session(ALICE) == {"n": 1}
    assert await conversations.load_state(ALICE) == (True, {"n": 1})
    await conversations.save_session(ALICE, {"n": 2, "extra": {"mode": "suivi"}})
    assert await conversations.load_state(ALICE) == (True, {"n": 2, "extra": {"mode": "suivi"}})
    # Someone else is untouched.
    assert await conversations.load_state(BRUNO) == (None, None)


async def test_refusing_consent_keeps_nothing(conversations: ConversationStore) -> None:
    await conversations.commit_update(None, ALICE, UserChange(consent=True, session={"n": 1}))
    await conversations.set_consent(ALICE, False)
    assert await conversations.load_session(ALICE) is None
    consent, session = await conversations.load_state(ALICE)
    assert consent is not True and session is None
    exported = await conversations.export_user(ALICE)
    assert "session" not in exported
    assert as_object(exported.get("consent")).get("granted") in (None, False)


async def test_without_consent_a_durable_store_keeps_no_session(
    conversations: ConversationStore, traits: Traits
) -> None:
    await conversations.save_session(ALICE, {"n": 1})
    if traits.durable:
        assert await conversations.load_session(ALICE) is None
        assert await conversations.export_user(ALICE) == {}
    else:  # the store for people who did not consent keeps their session for this process
        assert await conversations.load_session(ALICE) == {"n": 1}


async def test_erasure_removes_everything_about_the_person(
    conversations: ConversationStore,
) -> None:
    for user in (ALICE, BRUNO):
        await conversations.commit_update(None, user, UserChange(consent=True, session={"u": user}))
    await conversations.erase_user(ALICE)
    assert await conversations.export_user(ALICE) == {}
    assert await conversations.load_state(ALICE) == (None, None)
    assert await conversations.load_state(BRUNO) == (True, {"u": BRUNO})


async def test_export_holds_the_consent_and_the_session(
    conversations: ConversationStore, clock: Clock
) -> None:
    assert await conversations.export_user(ALICE) == {}
    await conversations.commit_update(None, ALICE, UserChange(consent=True, session={"n": 1}))
    exported = await conversations.export_user(ALICE)
    assert exported["consent"] == {"granted": True, "at": clock.now}
    assert exported["session"] == {"n": 1}
    assert exported["updated_at"] == clock.now


async def test_purge_idle_erases_only_the_idle(
    conversations: ConversationStore, clock: Clock
) -> None:
    await conversations.commit_update(None, ALICE, UserChange(consent=True, session={"n": 1}))
    clock.advance(20 * DAY)
    await conversations.commit_update(None, BRUNO, UserChange(consent=True, session={"n": 2}))
    clock.advance(11 * DAY)
    assert await conversations.purge_idle(30) == 1
    assert await conversations.load_state(ALICE) == (None, None)
    assert await conversations.load_state(BRUNO) == (True, {"n": 2})
    assert await conversations.purge_idle(30) == 0


# -- inbox -------------------------------------------------------------------------------------
async def test_an_update_is_recorded_once_and_applied_once(
    conversations: ConversationStore, clock: Clock
) -> None:
    assert await conversations.inbox_add(11, b'{"update_id": 11}') is True
    assert await conversations.inbox_add(11, b'{"update_id": 11}') is False  # a retry
    [item] = await conversations.inbox_pending()
    assert (item.update_id, item.payload) == (11, b'{"update_id": 11}')
    await conversations.commit_update(11, ALICE, UserChange(consent=True, session={"n": 1}))
    assert await conversations.inbox_pending() == []
    # Telegram retrying an applied update: still known, not applied again.
    assert await conversations.inbox_add(11, b'{"update_id": 11}') is False
    assert await conversations.inbox_pending() == []
    # Forgotten once Telegram has stopped retrying.
    clock.advance(2 * DAY)
    assert await conversations.inbox_prune(DAY) == 1
    assert await conversations.inbox_add(11, b"again") is True


async def test_pending_updates_come_oldest_first(conversations: ConversationStore) -> None:
    for update_id in (30, 10, 20):
        await conversations.inbox_add(update_id, str(update_id).encode())
    assert [i.update_id for i in await conversations.inbox_pending()] == [10, 20, 30]
    assert [i.update_id for i in await conversations.inbox_pending(limit=2)] == [10, 20]
    await conversations.inbox_done(10)
    assert [i.update_id for i in await conversations.inbox_pending()] == [20, 30]


async def test_a_poison_update_is_dead_lettered(
    conversations: ConversationStore, traits: Traits
) -> None:
    await conversations.inbox_add(5, b"poison")
    if traits.attempts:
        assert await conversations.inbox_failed(5, max_attempts=3) is False
        assert await conversations.inbox_failed(5, max_attempts=3) is False
        assert [i.attempts for i in await conversations.inbox_pending()] == [2]
    assert await conversations.inbox_failed(5, max_attempts=3) is True
    assert await conversations.inbox_pending() == []
    assert await conversations.inbox_add(5, b"poison") is False  # never tried again


# -- reply outbox ------------------------------------------------------------------------------
async def test_replies_wait_in_the_order_they_were_recorded(
    conversations: ConversationStore, traits: Traits, clock: Clock
) -> None:
    for update_id in (3, 1, 2):  # recorded in this order (a follow-up may come in between)
        await conversations.inbox_add(update_id, b"{}")
        change = UserChange(replies=(reply(update_id, 1), reply(update_id, 0)))
        await conversations.commit_update(update_id, "", change)
        clock.advance(1)
    pending = await conversations.replies_pending()
    if not traits.replies:  # the channel sends them at once, without crash recovery
        assert pending == []
        return
    assert [(r.update_id, r.seq) for r in pending] == [
        (3, 0),
        (3, 1),
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
    ]
    assert pending[0] == reply(3, 0)
    await conversations.reply_sent(3, 0)
    await conversations.reply_sent(3, 1, wait=False)  # joins the next transaction
    await conversations.inbox_add(99, b"{}")
    assert [(r.update_id, r.seq) for r in await conversations.replies_pending()] == [
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
    ]


async def test_erasure_drops_replies_not_yet_sent_to_that_chat(
    conversations: ConversationStore, traits: Traits
) -> None:
    await conversations.commit_update(None, ALICE, UserChange(consent=True))
    await conversations.commit_update(1, ALICE, UserChange(replies=(reply(1, 0, chat_id=7),)))
    await conversations.commit_update(2, BRUNO, UserChange(replies=(reply(2, 0, chat_id=8),)))
    done = reply(3, 0, chat_id=7, text="C'est fait")
    await conversations.commit_update(3, ALICE, UserChange(erase=True, replies=(done,)))
    pending = await conversations.replies_pending()
    if traits.replies:
        assert pending == [reply(2, 0, chat_id=8), done]
    else:
        assert pending == []
    assert await conversations.load_state(ALICE) == (None, None)


# -- one transaction per turn ------------------------------------------------------------------
async def test_feature_writes_join_the_turn_or_are_refused(stores: Stores) -> None:
    """A store holding the feature tables writes a turn's statistics with its session; one that
    does not refuses the whole change (nothing is lost silently)."""
    store = stores.conversations
    write = StatsStarted("conv1", "2026-12-01", "telegram")
    change = UserChange(consent=True, session={"n": 1}, features=(write,))
    if await store.holds_features():
        await store.commit_update(None, ALICE, change)
        assert stores.features is not None
        counts = await stores.features.stats_counts(StatsScope())
        assert counts.started == (1, 0)
        assert await store.load_session(ALICE) == {"n": 1}
    else:
        with pytest.raises(ValueError):
            await store.commit_update(None, ALICE, change)
        assert await store.load_state(ALICE) == (None, None)


async def test_a_failing_feature_write_leaves_neither_the_state_nor_the_statistics(
    together: Stores,
) -> None:
    """A barometer group whose code another turn took meanwhile fails the whole turn: the
    session, the statistics row and the inbox mark stay as they were; a rating kept in an
    existing group commits with the session."""
    store, features = together.conversations, together.features
    assert features is not None and await store.holds_features()
    await store.commit_update(None, ALICE, UserChange(consent=True, session={"n": 0}))
    await features.apply([BarometerRating("ABCD2345", BRUNO, "usager", {"c": 1}, "1", True)])
    await store.inbox_add(5, b"{}")
    taken = BarometerRating("ABCD2345", ALICE, "professionnel", {"c": 4}, "1", True)
    change = UserChange(
        session={"n": 1}, features=(StatsStarted("conv1", "2026-12-01", "telegram"), taken)
    )
    with pytest.raises(CodeTaken):
        await store.commit_update(5, ALICE, change)
    assert await store.load_session(ALICE) == {"n": 0}
    assert (await features.stats_counts(StatsScope())).started == (0, 0)
    assert not await features.barometer_is_member("ABCD2345", ALICE)
    assert [i.update_id for i in await store.inbox_pending()] == [5]
    joined = BarometerRating("ABCD2345", ALICE, "professionnel", {"c": 4}, "1")
    await store.commit_update(5, ALICE, UserChange(session={"n": 1}, features=(joined,)))
    assert await store.load_session(ALICE) == {"n": 1}
    assert await features.barometer_is_member("ABCD2345", ALICE)
    assert await store.inbox_pending() == []


async def test_a_follow_up_no_longer_pending_commits_nothing(together: Stores) -> None:
    """The question of a due follow-up is recorded with its claim: a second claim (another
    process, a restart) raises and leaves the session, the replies and the inbox as they were."""
    store, features = together.conversations, together.features
    assert features is not None and await store.holds_followups()
    await store.commit_update(None, ALICE, UserChange(consent=True, session={"n": 0}))
    await features.apply([FollowUpScheduled(ALICE, "7", ("r",), due_at=0.0)])
    [due] = await features.followups_pending()
    asked = UserChange(session={"n": 1}, replies=(reply(-1, 0),), followup=due.id)
    await store.commit_update(None, ALICE, asked)
    assert await features.followups_pending() == []
    await store.inbox_add(9, b"{}")
    again = UserChange(session={"n": 2}, replies=(reply(-2, 0),), followup=due.id)
    with pytest.raises(FollowUpTaken):
        await store.commit_update(9, ALICE, again)
    assert await store.load_session(ALICE) == {"n": 1}
    assert [(r.update_id, r.seq) for r in await store.replies_pending()] == [(-1, 0)]
    assert [i.update_id for i in await store.inbox_pending()] == [9]


async def test_alone_on_the_store_the_lease_is_ours_and_nothing_is_left_to_take_over(
    conversations: ConversationStore,
) -> None:
    """What the retention and the sweeper ask of every store (PostgreSQL answers for several
    instances, the others for their one process): a process alone holds the retention lease
    and renews it, and finds no reply nor update left behind by a dead instance."""
    assert await conversations.lease("retention", 60)
    assert await conversations.lease("retention", 60)
    await conversations.inbox_add(1, b"{}", chat="chat:7")
    await conversations.renew_claims()
    assert await conversations.replies_orphaned() == []
    assert await conversations.inbox_stale_chats(older_than=3600) == []
    assert conversations.claim_seconds > 0
