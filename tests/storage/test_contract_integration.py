"""The integration store's contract (API keys, API conversations, the webhook outbox), run
against every implementation in :data:`tests.storage.conftest.BACKENDS`."""

from __future__ import annotations

import time

import pytest

from bot.storage.base import (
    BarometerRating,
    CodeTaken,
    Conversation,
    FeatureWrite,
    IntegrationStore,
    OutboxEvent,
    StatsReached,
    StatsScope,
    StatsStarted,
    TranscriptLine,
    hash_key,
)
from tests.storage.conftest import Stores


def conversation(
    cid: str = "conv_1", establishment: str = "chu-a", at: float = 1000.0
) -> Conversation:
    return Conversation(cid, "key_1", establishment, {"node": "start"}, ("a", "b"), at, at)


def event(eid: str, subject: str | None = "conv_1", establishment: str = "chu-a") -> OutboxEvent:
    return OutboxEvent(eid, establishment, "contact.requested", f'{{"id": "{eid}"}}', subject)


# -- API keys ----------------------------------------------------------------------------------
async def test_a_key_works_until_revoked_and_only_its_hash_is_kept(
    integration: IntegrationStore,
) -> None:
    secret, record = await integration.create_key("chu-a")
    widget, widget_record = await integration.create_key("chu-a", "widget")
    assert secret.startswith("psk_") and widget.startswith("pwk_") and secret != widget
    assert await integration.find_key(secret) == record
    assert (await integration.find_key(widget)) == widget_record
    assert record.establishment == "chu-a" and record.kind == "api"
    assert await integration.find_key(secret + "x") is None
    listed = await integration.list_keys()
    assert [k.id for k in listed] == [record.id, widget_record.id]
    assert all(secret not in repr(k) and hash_key(secret) not in repr(k) for k in listed)
    assert await integration.revoke_key(record.id) is True
    assert await integration.find_key(secret) is None
    assert await integration.revoke_key(record.id) is False
    [revoked] = [k for k in await integration.list_keys() if k.id == record.id]
    assert revoked.revoked_at is not None
    assert await integration.find_key(widget) == widget_record


# -- conversations -----------------------------------------------------------------------------
async def test_a_conversation_belongs_to_its_establishment(integration: IntegrationStore) -> None:
    first = conversation()
    lines = [TranscriptLine(1000.0, "user", {"text": "bonjour"}), TranscriptLine(1000.5, "bot")]
    await integration.save_turn(first, created=True, lines=lines)
    assert await integration.load_conversation("conv_1", "chu-a") == first
    assert await integration.load_conversation("conv_1", "chu-b") is None
    later = Conversation(**{**first.__dict__, "session": {"node": "end"}, "updated_at": 2000.0})
    await integration.save_turn(later, created=False, lines=[TranscriptLine(2000.0, "user")])
    assert await integration.load_conversation("conv_1", "chu-a") == later
    transcript = await integration.transcript("conv_1")
    assert [(line.at, line.author) for line in transcript] == [
        (1000.0, "user"),
        (1000.5, "bot"),
        (2000.0, "user"),
    ]
    assert transcript[0].body == {"text": "bonjour"}


async def test_deleting_a_conversation_takes_its_transcript_and_events(
    integration: IntegrationStore,
) -> None:
    await integration.save_turn(
        conversation(), created=True, lines=[TranscriptLine(1.0, "user")], events=[event("e1")]
    )
    await integration.save_turn(
        conversation("conv_2"), created=True, lines=[], events=[event("e2", "conv_2")]
    )
    assert await integration.delete_conversation("conv_1", "chu-b") is False  # not theirs
    assert await integration.load_conversation("conv_1", "chu-a") is not None
    assert await integration.delete_conversation("conv_1", "chu-a") is True
    assert await integration.load_conversation("conv_1", "chu-a") is None
    assert await integration.transcript("conv_1") == []
    assert await integration.outbox_about("conv_1") == []
    assert [e.id for e in await integration.outbox_list()] == ["e2"]
    assert await integration.delete_conversation("conv_1", "chu-a") is False


async def test_idle_conversations_are_purged(integration: IntegrationStore) -> None:
    now = time.time()
    await integration.save_turn(conversation("old", at=now - 40 * 86400), created=True, lines=[])
    await integration.save_turn(conversation("new", at=now), created=True, lines=[])
    assert await integration.purge_idle_conversations(30) == 1
    assert await integration.load_conversation("old", "chu-a") is None
    assert await integration.load_conversation("new", "chu-a") is not None


# -- webhook outbox ----------------------------------------------------------------------------
async def test_a_subjects_events_go_out_one_at_a_time_in_order(
    integration: IntegrationStore,
) -> None:
    await integration.enqueue([event("a1", "conv_a"), event("a2", "conv_a")])
    await integration.enqueue([event("b1", "conv_b"), event("n1", None)])
    await integration.enqueue([event("a1", "conv_a")])  # the same id again: ignored
    later = time.time() + 60
    due = await integration.outbox_due(later)
    assert [e.id for e in due] == ["a1", "b1", "n1"]
    assert due[0].payload == '{"id": "a1"}' and due[0].status == "pending"
    assert [e.id for e in await integration.outbox_due(later, limit=1)] == ["a1"]
    await integration.outbox_delivered("a1")
    assert [e.id for e in await integration.outbox_due(later)] == ["a2", "b1", "n1"]
    assert "a1" not in [e.id for e in await integration.outbox_list()]


async def test_a_failed_event_waits_then_is_retried_and_can_die(
    integration: IntegrationStore,
) -> None:
    await integration.enqueue([event("e1"), event("e2")])  # same subject: e2 waits for e1
    now = time.time() + 1
    await integration.outbox_failed("e1", 1, now + 30, "ConnectError")
    assert await integration.outbox_due(now) == []  # e1 not yet due, e2 behind it
    assert await integration.outbox_next_due() is not None
    [retried] = await integration.outbox_due(now + 31)
    assert (retried.id, retried.attempts, retried.last_error) == ("e1", 1, "ConnectError")
    await integration.outbox_dead("e1", 8, "HTTP 500")
    # Dead: kept for the operator, no longer blocking its subject.
    assert [e.id for e in await integration.outbox_due(now + 31)] == ["e2"]
    [dead] = [e for e in await integration.outbox_list() if e.id == "e1"]
    assert (dead.status, dead.attempts) == ("dead", 8)
    assert await integration.outbox_retry("e1") is True
    assert await integration.outbox_retry("nope") is False
    # Back in line, behind what its subject had pending.
    assert [e.id for e in await integration.outbox_due(time.time() + 60)] == ["e2"]
    await integration.outbox_delivered("e2")
    [again] = await integration.outbox_due(time.time() + 60)
    assert (again.id, again.status) == ("e1", "pending")


async def test_full_lanes_are_skipped(integration: IntegrationStore) -> None:
    await integration.enqueue([event("a", "s1", "chu-a"), event("b", "s2", "chu-b")])
    due = await integration.outbox_due(time.time() + 60, skip_establishments=["chu-a"])
    assert [e.id for e in due] == ["b"]


async def test_a_turns_events_exist_only_with_its_state(integration: IntegrationStore) -> None:
    await integration.save_turn(conversation(), created=True, lines=[], events=[event("e1")])
    with pytest.raises(Exception):  # noqa: B017 (each database names it its own way)
        # Created twice: the turn fails as a whole, its event with it.
        await integration.save_turn(conversation(), created=True, lines=[], events=[event("e2")])
    assert [e["id"] for e in await integration.outbox_about("conv_1")] == ["e1"]
    [about] = await integration.outbox_about("conv_1")
    assert about["payload"] == {"id": "e1"} and about["establishment"] == "chu-a"


# -- a turn's feature rows ---------------------------------------------------------------------
async def _started(stores: Stores) -> int:
    assert stores.features is not None
    return (await stores.features.stats_counts(StatsScope())).started[0]


async def test_a_turns_feature_rows_exist_only_with_its_state(stores: Stores) -> None:
    """Statistics and barometer rows of an API turn commit with its conversation row, its
    transcript and its events: a failing turn leaves none of them, a good one all."""
    integration, features = stores.integration, stores.features
    assert integration is not None and features is not None
    if not await integration.holds_features():  # the feature tables on another database
        with pytest.raises(ValueError):
            await integration.save_turn(
                conversation(), created=True, lines=[], features=[StatsStarted("s1", "d", "api")]
            )
        assert await integration.load_conversation("conv_1", "chu-a") is None
        assert await _started(stores) == 0
        return
    rows: list[FeatureWrite] = [StatsStarted("s1", "2026-12-01", "api"), StatsReached("s1", "x")]
    first = conversation()
    await integration.save_turn(
        first, created=True, lines=[TranscriptLine(1.0, "bot")], events=[event("e1")], features=rows
    )
    assert await integration.load_conversation("conv_1", "chu-a") == first
    counts = await features.stats_counts(StatsScope())
    assert counts.started == (1, 0) and counts.reached == {"x": (1, 0)}

    # Created twice: the whole turn fails, its statistics row with it.
    with pytest.raises(Exception):  # noqa: B017 (each database names it its own way)
        await integration.save_turn(
            first, created=True, lines=[], features=[StatsStarted("s2", "2026-12-01", "api")]
        )
    assert await _started(stores) == 1

    # A group code taken meanwhile: nothing of the turn is written, not even its other rows.
    await features.apply([BarometerRating("ABCD2345", "m0", "usager", {"c": 1}, "1", True)])
    later = Conversation(**{**first.__dict__, "session": {"node": "fin"}, "updated_at": 2000.0})
    with pytest.raises(CodeTaken):
        await integration.save_turn(
            later,
            created=False,
            lines=[TranscriptLine(2000.0, "person", {"text": "créer"})],
            events=[event("e2")],
            features=[
                StatsStarted("s3", "2026-12-01", "api"),
                BarometerRating("ABCD2345", "m1", "professionnel", {"c": 4}, "1", True),
            ],
        )
    assert await integration.load_conversation("conv_1", "chu-a") == first
    assert [line.at for line in await integration.transcript("conv_1")] == [1.0]
    assert [e["id"] for e in await integration.outbox_about("conv_1")] == ["e1"]
    assert await _started(stores) == 1
    assert not await features.barometer_is_member("ABCD2345", "m1")

    # A rating kept in an existing group, with the turn.
    joined = BarometerRating("ABCD2345", "m1", "professionnel", {"c": 4}, "1")
    await integration.save_turn(later, created=False, lines=[], features=[joined])
    assert await integration.load_conversation("conv_1", "chu-a") == later
    assert await features.barometer_ratings("ABCD2345", 1) == [
        ("usager", {"c": 1}),
        ("professionnel", {"c": 4}),
    ]
