"""The feature store's contract (statistics rows, barometer groups, follow-ups, the person's
rights), run against every implementation in :data:`tests.storage.conftest.BACKENDS`; and
erasure across every table of one database."""

from __future__ import annotations

import pytest

from bot.json_types import as_list, at
from bot.storage.base import (
    BarometerRating,
    CodeTaken,
    FeatureStore,
    FollowUpAnswered,
    FollowUpCancelled,
    FollowUpScheduled,
    OutboxEvent,
    StatsCompleted,
    StatsForgotten,
    StatsOutcome,
    StatsReached,
    StatsScope,
    StatsStarted,
    UserChange,
)
from tests.storage.conftest import Clock, Stores

ALICE, BRUNO = "te_alice", "te_bruno"
SCORES = {"c1": 3, "c2": 4}


# -- statistics --------------------------------------------------------------------------------
async def test_statistics_rows_add_up_per_conversation(features: FeatureStore) -> None:
    await features.apply(
        [
            StatsStarted("c1", "2026-11-01", "telegram", "chu-a"),
            StatsReached("c1", "q1"),
            StatsReached("c1", "q2"),
            StatsReached("c1", "q1"),  # back to an earlier question: counted once
            StatsCompleted("c1", "occitanie", ("patient_partenaire", "representant")),
            StatsOutcome("c1", "contact", "1"),
            StatsStarted("c2", "2026-12-01", "api", "chu-a", establishment="chu-a"),
            StatsReached("c2", "q1"),
        ]
    )
    await features.apply([StatsStarted("c1", "2026-12-24", "api")])  # kept as first recorded
    counts = await features.stats_counts(StatsScope())
    assert (counts.started, counts.completed) == ((2, 0), (1, 0))
    assert counts.reached == {"q1": (2, 0), "q2": (1, 0)}
    assert counts.left == {"q1": (1, 0)}  # c2 stopped at q1; c1 completed
    assert counts.roles == {"patient_partenaire": (1, 0), "representant": (1, 0)}
    assert counts.territories == {"occitanie": (1, 0)}
    assert counts.outcomes == {"contact:1": (1, 0)}

    since = await features.stats_counts(StatsScope(since="2026-11-15"))
    assert since.started == (1, 0)
    # An establishment's own conversations are counted apart (they may not lift a cell).
    own = await features.stats_counts(StatsScope(establishment="chu-a"))
    assert own.started == (2, 1) and own.reached["q1"] == (2, 1)
    assert (await features.stats_counts(StatsScope(establishment="chu-b"))).started == (0, 0)

    await features.apply([StatsForgotten("c2")])
    after = await features.stats_counts(StatsScope())
    assert after.started == (1, 0) and after.reached == {"q1": (1, 0), "q2": (1, 0)}


async def test_a_follow_up_answer_becomes_an_outcome(features: FeatureStore) -> None:
    await features.apply(
        [
            StatsStarted("c1", "2026-12-01", "telegram", "chu-a"),
            StatsCompleted("c1", None, ("r",)),
            FollowUpScheduled(ALICE, "7", ("r",), due_at=0.0, conversation="c1"),
        ]
    )
    [followup] = await features.followups_pending()
    assert await features.apply([FollowUpAnswered(followup.id, reached=True)]) == [1]
    assert await features.apply([FollowUpAnswered(followup.id, reached=False)]) == [0]  # once
    counts = await features.stats_counts(StatsScope())
    assert counts.outcomes == {"followup:reached": (1, 0)}
    assert counts.followups_by_role == {"r": {"reached": (1, 0)}}
    assert counts.followups_by_context == {"chu-a": {"reached": (1, 0)}}


# -- barometer groups --------------------------------------------------------------------------
async def test_a_group_keeps_its_members_ratings_round_by_round(features: FeatureStore) -> None:
    create = BarometerRating("ABCD2345", ALICE, "usager", SCORES, "v1", create=True)
    assert await features.apply([create]) == [1]
    with pytest.raises(CodeTaken):
        await features.apply([BarometerRating("ABCD2345", BRUNO, "usager", SCORES, "v1", True)])
    assert await features.barometer_groups_of(BRUNO) == []
    assert await features.apply(
        [BarometerRating("ABCD2345", BRUNO, "professionnel", SCORES, "v1")]
    ) == [1]
    assert await features.barometer_round("ABCD2345") == 1
    assert await features.barometer_ratings("ABCD2345", 1) == [
        ("usager", SCORES),
        ("professionnel", SCORES),
    ]
    # Alice rates again: the group's next round.
    assert await features.apply(
        [BarometerRating("ABCD2345", ALICE, "usager", {"c1": 1}, "v1")]
    ) == [2]
    assert await features.barometer_round("ABCD2345") == 2
    assert await features.barometer_rated("ABCD2345", 2, ALICE)
    assert not await features.barometer_rated("ABCD2345", 2, BRUNO)
    assert await features.barometer_ratings("ABCD2345", 2) == [("usager", {"c1": 1})]
    # An unknown code keeps nothing.
    assert await features.apply([BarometerRating("ZZZZ9999", BRUNO, "usager", SCORES, "v1")]) == [0]
    assert await features.barometer_round("ZZZZ9999") is None
    assert await features.barometer_is_member("ABCD2345", BRUNO)
    assert not await features.barometer_is_member("ZZZZ9999", BRUNO)
    await features.apply([BarometerRating("EFGH6789", BRUNO, "professionnel", SCORES, "v1", True)])
    assert await features.barometer_groups_of(BRUNO) == ["ABCD2345", "EFGH6789"]


# -- follow-ups --------------------------------------------------------------------------------
async def test_one_open_follow_up_per_person_asked_once(features: FeatureStore) -> None:
    await features.apply(
        [
            FollowUpScheduled(ALICE, "7", ("r1",), due_at=200.0),
            FollowUpScheduled(ALICE, "7", ("r2",), due_at=300.0),  # kept, not doubled
            FollowUpScheduled(BRUNO, "8", ("r1",), due_at=100.0),
        ]
    )
    pending = await features.followups_pending()
    assert [(f.user, f.roles, f.due_at) for f in pending] == [
        (BRUNO, ("r1",), 100.0),
        (ALICE, ("r1",), 200.0),
    ]
    bruno, alice = pending
    assert await features.followup_claim(bruno.id, 150.0) is True
    assert await features.followup_claim(bruno.id, 151.0) is False  # another process, a restart
    assert [f.user for f in await features.followups_pending()] == [ALICE]
    await features.followup_release(bruno.id)  # the send failed
    assert [f.user for f in await features.followups_pending()] == [BRUNO, ALICE]
    assert await features.apply([FollowUpCancelled(ALICE)]) == [1]
    assert await features.followup_claim(alice.id, 250.0) is False
    assert [f.user for f in await features.followups_pending()] == [BRUNO]


# -- the person's rights -----------------------------------------------------------------------
async def test_export_and_erase_cover_ratings_and_follow_ups(features: FeatureStore) -> None:
    await features.apply(
        [
            BarometerRating("ABCD2345", ALICE, "usager", SCORES, "v1", create=True),
            BarometerRating("EFGH6789", ALICE, "usager", SCORES, "v1", create=True),
            BarometerRating("EFGH6789", BRUNO, "professionnel", SCORES, "v1"),
            FollowUpScheduled(ALICE, "7", ("r",), due_at=100.0),
        ]
    )
    exported = await features.export_user(ALICE)
    assert [at(r, "group") for r in as_list(exported["barometer_ratings"])] == [
        "ABCD2345",
        "EFGH6789",
    ]
    assert [at(f, "due_at") for f in as_list(exported["followups"])] == [100.0]
    await features.erase_user(ALICE)
    assert await features.export_user(ALICE) == {"barometer_ratings": [], "followups": []}
    assert await features.followups_pending() == []
    assert await features.barometer_round("ABCD2345") is None  # left empty: gone
    assert await features.barometer_ratings("EFGH6789", 1) == [("professionnel", SCORES)]


async def test_erasure_reaches_every_table_of_the_database(together: Stores, clock: Clock) -> None:
    """« Forget me » in one turn: consent, session, undelivered events about the person,
    their ratings and follow-ups; someone else's rows stay."""
    store, integration, features = together.conversations, together.integration, together.features
    assert integration is not None and features is not None
    for user in (ALICE, BRUNO):
        await store.commit_update(
            None,
            user,
            UserChange(
                consent=True,
                session={"u": user},
                outbox=(OutboxEvent(f"ev_{user}", "chu-a", "contact.requested", "{}", user),),
                features=(
                    BarometerRating(f"G{user[-4:]}", user, "usager", SCORES, "v1", create=True),
                    FollowUpScheduled(user, "7", ("r",), due_at=clock.now + 100),
                ),
            ),
        )
    await store.erase_user(ALICE)
    assert await store.export_user(ALICE) == {}
    assert await integration.outbox_about(ALICE) == []
    assert await features.export_user(ALICE) == {"barometer_ratings": [], "followups": []}
    assert await store.load_state(BRUNO) == (True, {"u": BRUNO})
    assert [e["id"] for e in await integration.outbox_about(BRUNO)] == [f"ev_{BRUNO}"]
    assert len(as_list((await features.export_user(BRUNO))["barometer_ratings"])) == 1
    assert [f.user for f in await features.followups_pending()] == [BRUNO]
