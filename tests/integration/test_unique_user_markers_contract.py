"""The UniqueUserMarkers contract, held by the in-memory and the DynamoDB markers alike, refusals
of the keys DynamoDB cannot hold included."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from mypy_boto3_dynamodb import DynamoDBClient

from application.ports import Deadline, NoDeadline, UniqueUserMarkers
from application.shard_cut import ShardCut
from domain.metrics import Granularity, MetricKey
from infrastructure.aws.dynamodb_codec import Backoff
from infrastructure.aws.dynamodb_unique_user_markers import DynamoDbUniqueUserMarkers
from infrastructure.in_memory.unique_user_markers import InMemoryUniqueUserMarkers
from operations.aws.provisioning import ensure_aggregation_table
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


def mark(markers: UniqueUserMarkers, *records: Seen) -> None:
    report = markers.mark(deltas_of(records), NoDeadline())
    assert report.complete, report
    assert report.refused == {}


def test_the_users_of_an_hour_are_the_users_marked_in_it(markers: UniqueUserMarkers) -> None:
    mark(markers, Seen(1, "u1", at(10, 1)), Seen(2, "u2", at(10, 2)), Seen(3, "u3", at(11, 1)))

    assert markers.users([hour(10), hour(11)]) == {
        hour(10): frozenset({"u1", "u2"}),
        hour(11): frozenset({"u3"}),
    }


def test_the_users_of_a_day_are_those_of_its_hours_each_counted_once(
    markers: UniqueUserMarkers,
) -> None:
    mark(markers, Seen(1, "u1", at(10, 1)), Seen(2, "u2", at(11, 2)), Seen(3, "u1", at(23, 59)))

    assert markers.users([day()]) == {day(): frozenset({"u1", "u2"})}


def test_marking_the_same_users_again_changes_nothing(markers: UniqueUserMarkers) -> None:
    records = [Seen(1, "u1", at(10, 1)), Seen(2, "u2", at(10, 2))]
    mark(markers, *records)

    mark(markers, *records)
    mark(markers, Seen(7, "u1", at(10, 30), shard_id=SHARD_B))

    assert markers.users([hour(10), day()]) == {
        hour(10): frozenset({"u1", "u2"}),
        day(): frozenset({"u1", "u2"}),
    }


def test_a_daily_delta_marks_no_one_by_itself(markers: UniqueUserMarkers) -> None:
    deltas = deltas_of([Seen(1, "u1", at(10, 1))])
    daily = [delta for delta in deltas if delta.key.granularity is Granularity.DAY]

    assert markers.mark(daily, NoDeadline()).complete
    assert markers.users([day(), hour(10)]) == {day(): frozenset(), hour(10): frozenset()}


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
        [hour(10), hour(10, variant_id="treatment"), hour(10, "purchase"), hour(10, "click", "a#b")]
    ) == {
        hour(10): frozenset({"u1"}),
        hour(10, variant_id="treatment"): frozenset({"u2"}),
        hour(10, "purchase"): frozenset({"u3"}),
        hour(10, "click", "a#b"): frozenset({"u4"}),
    }


def test_a_window_without_markers_has_no_users(markers: UniqueUserMarkers) -> None:
    assert markers.users([hour(3), day()]) == {hour(3): frozenset(), day(): frozenset()}


def test_a_user_whose_marker_key_dynamodb_cannot_hold_is_refused_through_their_first_record(
    markers: UniqueUserMarkers,
) -> None:
    too_long = "\U0001f600" * 256  # 1,024 bytes: the marker's sort key is over DynamoDB's limit

    report = markers.mark(
        deltas_of(
            [Seen(1, "u1", at(10, 1)), Seen(2, too_long, at(10, 2)), Seen(3, too_long, at(10, 3))]
        ),
        NoDeadline(),
    )

    assert report.complete
    assert set(report.refused) == {(SHARD_A, 2)}
    assert "unique-user marker" in report.refused[(SHARD_A, 2)]
    assert markers.users([hour(10)]) == {hour(10): frozenset({"u1"})}


def test_past_the_deadline_no_one_is_marked_and_each_shard_is_unfinished_from_its_first_user(
    markers: UniqueUserMarkers,
) -> None:
    report = markers.mark(
        deltas_of(
            [
                Seen(5, "u1", at(10, 1)),
                Seen(6, "u2", at(11, 2)),
                Seen(3, "u3", at(10, 3), shard_id=SHARD_B),
            ]
        ),
        Expired(),
    )

    assert report.cut == ShardCut({SHARD_A: 5, SHARD_B: 3})
    assert markers.users([hour(10), hour(11)]) == {hour(10): frozenset(), hour(11): frozenset()}
