"""The UniqueUserMarkers contract, held by the in-memory and the DynamoDB markers alike, refusals
of the keys DynamoDB cannot hold included."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from mypy_boto3_dynamodb import DynamoDBClient

from application.ports import Deadline, NoDeadline
from application.shard_cut import ShardCut
from application.unique_users import MarkerClaims, UniqueUserMarkers
from domain.metrics import EXPERIMENT_WINDOW_START, Granularity, MetricKey
from infrastructure.aws.dynamodb_codec import Backoff
from infrastructure.aws.dynamodb_unique_user_markers import DynamoDbUniqueUserMarkers
from infrastructure.in_memory.unique_user_markers import InMemoryUniqueUserMarkers
from operations.aws.provisioning import ensure_aggregation_table
from tests.botocore_faults import LoseResponses
from tests.metric_deltas import SHARD_A, SHARD_B, Seen, deltas_of

DAY = datetime(2026, 11, 20, tzinfo=UTC)


def at(hour: int, minute: int = 0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute)


def hour(start: int, metric: str = "click", variant_id: str = "control") -> MetricKey:
    return MetricKey("exp-1", variant_id, metric, Granularity.HOUR, at(start))


def day(metric: str = "click", variant_id: str = "control") -> MetricKey:
    return MetricKey("exp-1", variant_id, metric, Granularity.DAY, DAY)


class Expired(Deadline):
    def expired(self) -> bool:
        return True


def no_sleep(_: float) -> None:
    return None


@pytest.fixture(params=["in_memory", "dynamodb"])
def markers(request: pytest.FixtureRequest) -> Iterator[UniqueUserMarkers]:
    if request.param == "in_memory":
        yield InMemoryUniqueUserMarkers()
        return
    client: DynamoDBClient = request.getfixturevalue("dynamodb_client")
    table: str = request.getfixturevalue("unique_name")
    ensure_aggregation_table(client, table)
    dynamodb_markers = DynamoDbUniqueUserMarkers(
        client, table, max_workers=4, backoff=Backoff(sleep=no_sleep)
    )
    yield dynamodb_markers
    dynamodb_markers.close()


def mark(markers: UniqueUserMarkers, *records: Seen) -> MarkerClaims:
    claims = markers.mark(deltas_of(records), NoDeadline())
    assert claims.report.complete, claims.report
    assert claims.report.refused == {}
    return claims


def to_date(metric: str = "click", variant_id: str = "control") -> MetricKey:
    return MetricKey("exp-1", variant_id, metric, Granularity.EXPERIMENT, EXPERIMENT_WINDOW_START)


def first_records(claims: MarkerClaims, key: MetricKey, shard_id: str = SHARD_A) -> set[int]:
    return set(claims.first_records.get((key, shard_id), frozenset()))


def test_the_users_of_an_hour_are_the_users_marked_in_it(markers: UniqueUserMarkers) -> None:
    mark(markers, Seen(1, "u1", at(10, 1)), Seen(2, "u2", at(10, 2)), Seen(3, "u3", at(11, 1)))

    assert markers.users([hour(10), hour(11)]) == {
        hour(10): frozenset({"u1", "u2"}),
        hour(11): frozenset({"u3"}),
    }


def test_the_users_of_a_day_and_of_the_experiment_are_marked_once_each(
    markers: UniqueUserMarkers,
) -> None:
    claims = mark(
        markers, Seen(1, "u1", at(10, 1)), Seen(2, "u2", at(11, 2)), Seen(3, "u1", at(23, 59))
    )

    assert markers.users([day(), to_date()]) == {
        day(): frozenset({"u1", "u2"}),
        to_date(): frozenset({"u1", "u2"}),
    }
    assert first_records(claims, day()) == {1, 2}
    assert first_records(claims, to_date()) == {1, 2}
    assert first_records(claims, hour(23)) == {3}


def test_a_daily_delta_marks_the_day_and_not_its_hours(markers: UniqueUserMarkers) -> None:
    deltas = deltas_of([Seen(1, "u1", at(10, 1))])
    daily = [delta for delta in deltas if delta.key.granularity is Granularity.DAY]

    assert markers.mark(daily, NoDeadline()).report.complete
    assert markers.users([day(), hour(10)]) == {day(): frozenset({"u1"}), hour(10): frozenset()}


def test_the_record_that_wrote_a_marker_holds_it_on_every_retry_and_no_other_record_does(
    markers: UniqueUserMarkers,
) -> None:
    records = [Seen(1, "u1", at(10, 1)), Seen(2, "u2", at(10, 2)), Seen(3, "u1", at(10, 3))]
    first = mark(markers, *records)

    again = mark(markers, *records)
    later = mark(markers, Seen(7, "u1", at(10, 30), shard_id=SHARD_B))

    assert first_records(first, hour(10)) == first_records(again, hour(10)) == {1, 2}
    assert first_records(later, hour(10), SHARD_B) == set()
    assert markers.users([hour(10), day()]) == {
        hour(10): frozenset({"u1", "u2"}),
        day(): frozenset({"u1", "u2"}),
    }


def test_of_two_shards_marking_one_user_at_once_exactly_one_record_holds_the_marker(
    markers: UniqueUserMarkers,
) -> None:
    claims = mark(markers, Seen(4, "u1", at(10, 1)), Seen(9, "u1", at(10, 2), shard_id=SHARD_B))

    held = [(shard, first_records(claims, hour(10), shard)) for shard in (SHARD_A, SHARD_B)]
    assert sorted(len(sequences) for _, sequences in held) == [0, 1]


def test_an_exposure_after_a_metric_joins_the_metric_and_a_metric_after_an_exposure_joins_itself(
    markers: UniqueUserMarkers,
) -> None:
    clicked_first = mark(markers, Seen(1, "u1", at(10, 1)))
    exposed_later = mark(markers, Seen(2, "u1", at(10, 2), metric="exposure"))
    exposed_first = mark(markers, Seen(3, "u2", at(10, 3), metric="exposure"))
    clicked_later = mark(markers, Seen(4, "u2", at(10, 4)), Seen(5, "u2", at(10, 5)))

    assert dict(clicked_first.joins.get((to_date(), SHARD_A), {})) == {}
    assert dict(exposed_later.joins[(to_date("exposure"), SHARD_A)]) == {2: ("click",)}
    assert dict(exposed_first.joins.get((to_date("exposure"), SHARD_A), {})) == {}
    assert dict(clicked_later.joins[(to_date(), SHARD_A)]) == {4: ("click",)}


def test_a_retry_of_the_later_first_event_joins_the_same_metrics_again(
    markers: UniqueUserMarkers,
) -> None:
    mark(markers, Seen(1, "u1", at(10, 1)), Seen(2, "u1", at(10, 2), metric="purchase"))
    exposure = Seen(3, "u1", at(10, 3), metric="exposure")
    first = mark(markers, exposure)
    mark(markers, Seen(4, "u1", at(10, 4), metric="conversion"))

    again = mark(markers, exposure)

    expected = {3: ("click", "purchase")}
    assert dict(first.joins[(to_date("exposure"), SHARD_A)]) == expected
    assert dict(again.joins[(to_date("exposure"), SHARD_A)]) == expected


def test_counters_of_other_variants_and_metrics_keep_their_own_users(
    markers: UniqueUserMarkers,
) -> None:
    mark(
        markers,
        Seen(1, "u1", at(10, 1)),
        Seen(2, "u2", at(10, 2), variant_id="treatment"),
        Seen(3, "u3", at(10, 3), metric="purchase"),
        Seen(4, "u4", at(10, 4), variant_id="a#b"),
    )

    assert markers.users(
        [
            hour(10),
            hour(10, variant_id="treatment"),
            hour(10, "purchase"),
            hour(10, "click", "a#b"),
            to_date(),
            to_date("purchase"),
        ]
    ) == {
        hour(10): frozenset({"u1"}),
        hour(10, variant_id="treatment"): frozenset({"u2"}),
        hour(10, "purchase"): frozenset({"u3"}),
        hour(10, "click", "a#b"): frozenset({"u4"}),
        to_date(): frozenset({"u1"}),
        to_date("purchase"): frozenset({"u3"}),
    }


def test_a_window_without_markers_has_no_users(markers: UniqueUserMarkers) -> None:
    assert markers.users([hour(3), day(), to_date()]) == {
        hour(3): frozenset(),
        day(): frozenset(),
        to_date(): frozenset(),
    }


def test_a_user_whose_marker_key_dynamodb_cannot_hold_is_refused_through_their_first_record(
    markers: UniqueUserMarkers,
) -> None:
    too_long = "\U0001f600" * 256  # 1,024 bytes: the marker's sort key is over DynamoDB's limit

    claims = markers.mark(
        deltas_of(
            [Seen(1, "u1", at(10, 1)), Seen(2, too_long, at(10, 2)), Seen(3, too_long, at(10, 3))]
        ),
        NoDeadline(),
    )

    assert claims.report.complete
    assert set(claims.report.refused) == {(SHARD_A, 2)}
    assert "unique-user marker" in claims.report.refused[(SHARD_A, 2)]
    assert markers.users([hour(10)]) == {hour(10): frozenset({"u1"})}
    assert first_records(claims, hour(10)) == {1}


def test_past_the_deadline_no_one_is_marked_and_each_shard_is_unfinished_from_its_first_user(
    markers: UniqueUserMarkers,
) -> None:
    claims = markers.mark(
        deltas_of(
            [
                Seen(5, "u1", at(10, 1)),
                Seen(6, "u2", at(11, 2)),
                Seen(3, "u3", at(10, 3), shard_id=SHARD_B),
            ]
        ),
        Expired(),
    )

    assert claims.report.cut == ShardCut({SHARD_A: 5, SHARD_B: 3})
    assert claims.first_records == {}
    assert markers.users([hour(10), hour(11)]) == {hour(10): frozenset(), hour(11): frozenset()}


def test_a_marker_whose_answer_was_lost_is_recognised_as_written_by_its_own_record(
    dynamodb_client: DynamoDBClient, unique_name: str
) -> None:
    ensure_aggregation_table(dynamodb_client, unique_name)
    faults = LoseResponses(times=1_000)
    faults.attach(dynamodb_client, "UpdateItem")
    markers = DynamoDbUniqueUserMarkers(dynamodb_client, unique_name, max_workers=2)
    try:
        claims = mark(
            markers,
            Seen(1, "u1", at(10, 1)),
            Seen(2, "u1", at(10, 2), metric="exposure"),
            Seen(3, "u2", at(10, 3)),
        )
    finally:
        markers.close()

    assert faults.lost >= 6
    assert first_records(claims, hour(10)) == {1, 3}
    assert first_records(claims, to_date("exposure")) == {2}
    assert dict(claims.joins[(to_date("exposure"), SHARD_A)]) == {2: ("click",)}


# -- a replayed event taken over: its earlier holders' markers are its own ----------------------

REPLAY_A = "replay-a"
REPLAY_B = "replay-b"
REPLAY_C = "replay-c"


def test_a_marker_held_by_an_earlier_record_of_the_record_counts_as_its_own(
    markers: UniqueUserMarkers,
) -> None:
    # Run A wrote the markers of its record 1 and died; run B took the event over as its 5.
    mark(markers, Seen(1, "u1", at(10, 1), shard_id=REPLAY_A))

    taken_over = markers.mark(
        deltas_of([Seen(5, "u1", at(10, 1), shard_id=REPLAY_B)]),
        NoDeadline(),
        {(REPLAY_B, 5): frozenset({(REPLAY_A, 1)})},
    )

    assert taken_over.report.complete
    for key in (hour(10), day(), to_date()):
        assert first_records(taken_over, key, REPLAY_B) == {5}
    assert markers.users([hour(10)]) == {hour(10): frozenset({"u1"})}


def test_a_later_record_of_the_user_counts_them_when_it_was_taken_over_from_the_marker_writer(
    markers: UniqueUserMarkers,
) -> None:
    # Run B's first record of the user is a new event (3): its marker write finds run A's
    # marker, which belongs to the event B took over as its 8.
    mark(markers, Seen(2, "u1", at(10, 5), shard_id=REPLAY_A))

    claims = markers.mark(
        deltas_of(
            [
                Seen(3, "u1", at(10, 1), shard_id=REPLAY_B),
                Seen(8, "u1", at(10, 5), shard_id=REPLAY_B),
            ]
        ),
        NoDeadline(),
        {(REPLAY_B, 8): frozenset({(REPLAY_A, 2)})},
    )

    for key in (hour(10), day(), to_date()):
        assert first_records(claims, key, REPLAY_B) == {8}


def test_a_takeover_of_a_takeover_recognises_the_first_runs_marker_and_its_joins(
    markers: UniqueUserMarkers,
) -> None:
    mark(markers, Seen(1, "u1", at(10, 1), shard_id=REPLAY_A))
    exposure = Seen(2, "u1", at(10, 2), metric="exposure", shard_id=REPLAY_A)
    written = mark(markers, exposure)
    earlier = {(REPLAY_B, 2): frozenset({(REPLAY_A, 2)})}
    # Run B found A's markers (and did not count them: it died before its counters too).
    markers.mark(
        deltas_of([Seen(2, "u1", at(10, 2), "exposure", shard_id=REPLAY_B)]), NoDeadline(), earlier
    )

    claims = markers.mark(
        deltas_of([Seen(4, "u1", at(10, 2), metric="exposure", shard_id=REPLAY_C)]),
        NoDeadline(),
        {(REPLAY_C, 4): frozenset({(REPLAY_A, 2), (REPLAY_B, 2)})},
    )

    assert first_records(claims, to_date("exposure"), REPLAY_C) == {4}
    assert dict(claims.joins[(to_date("exposure"), REPLAY_C)]) == {4: ("click",)}
    assert dict(written.joins[(to_date("exposure"), REPLAY_A)]) == {2: ("click",)}


def test_a_marker_held_by_a_record_that_is_not_among_the_earlier_records_counts_no_one(
    markers: UniqueUserMarkers,
) -> None:
    mark(markers, Seen(1, "u1", at(10, 1), shard_id=REPLAY_A))
    mark(markers, Seen(6, "u2", at(10, 6), shard_id=REPLAY_A))

    claims = markers.mark(
        deltas_of(
            [
                Seen(5, "u1", at(10, 1), shard_id=REPLAY_B),
                Seen(7, "u1", at(10, 7), shard_id=REPLAY_B),
                Seen(9, "u2", at(10, 9), shard_id=REPLAY_B),
            ]
        ),
        NoDeadline(),
        # Record 7 was taken over from run A's record 6: that is u2's marker, not u1's.
        {(REPLAY_B, 7): frozenset({(REPLAY_A, 6)}), (REPLAY_B, 9): frozenset({(REPLAY_A, 2)})},
    )

    for key in (hour(10), day(), to_date()):
        assert first_records(claims, key, REPLAY_B) == set()


def test_a_cold_container_recognises_an_earlier_records_marker_from_dynamodbs_answer(
    dynamodb_client: DynamoDBClient, unique_name: str
) -> None:
    ensure_aggregation_table(dynamodb_client, unique_name)

    def container() -> DynamoDbUniqueUserMarkers:
        return DynamoDbUniqueUserMarkers(
            dynamodb_client, unique_name, max_workers=2, backoff=Backoff(sleep=no_sleep)
        )

    dying_run = container()
    mark(dying_run, Seen(1, "u1", at(10, 1)), Seen(2, "u1", at(10, 2), metric="exposure"))
    dying_run.close()
    stranger, taking_over = container(), container()

    other = mark(stranger, Seen(3, "u1", at(10, 2), metric="exposure", shard_id=REPLAY_B))
    claims = taking_over.mark(
        deltas_of([Seen(4, "u1", at(10, 2), metric="exposure", shard_id=REPLAY_C)]),
        NoDeadline(),
        {(REPLAY_C, 4): frozenset({(SHARD_A, 2)})},
    )
    stranger.close()
    taking_over.close()

    assert claims.report.complete
    for key in (hour(10, "exposure"), day("exposure"), to_date("exposure")):
        assert first_records(other, key, REPLAY_B) == set()
        assert first_records(claims, key, REPLAY_C) == {4}
    assert dict(claims.joins[(to_date("exposure"), REPLAY_C)]) == {4: ("click",)}
