"""Markers stored under the previous bucket count (`PREVIOUS_MARKER_WRITE_SHARDS`) after the
change to `MARKER_WRITE_SHARDS` (docs/storage.md "Marker buckets"): user sets still read them,
erasure still finds and deletes them, and the deploy step moves them to their current key, where
the writers find them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from mypy_boto3_dynamodb import DynamoDBClient

from application.ports import NoDeadline
from domain.erasure import PersonalItem, UniqueUserMarker
from domain.metrics import EXPERIMENT_WINDOW_START, Granularity, MetricDelta, MetricKey
from infrastructure.aws.dynamodb_personal_items import DynamoDbPersonalItemStore
from infrastructure.aws.dynamodb_unique_user_markers import DynamoDbUniqueUserMarkers
from infrastructure.dynamodb_layout import (
    experiment_marker_attributes,
    marker_key,
    previous_marker_key,
)
from operations.aws.marker_buckets import MovedMarkers, move_markers_to_current_buckets
from operations.aws.provisioning import ensure_aggregation_table

HOUR_10 = datetime(2026, 11, 20, 10, tzinfo=UTC)
KEYS = (
    MetricKey("exp-1", "control", "click", Granularity.HOUR, HOUR_10),
    MetricKey("exp-1", "control", "click", Granularity.DAY, HOUR_10.replace(hour=0)),
    MetricKey("exp-1", "control", "click", Granularity.EXPERIMENT, EXPERIMENT_WINDOW_START),
)
RECORD = "shardId-000000000000/1"


def moved_users(count: int) -> list[str]:
    """Users whose marker key changed with the bucket count."""
    candidates = (f"user-{n}" for n in range(1_000))
    moved = (u for u in candidates if marker_key(KEYS[0], u) != previous_marker_key(KEYS[0], u))
    return [next(moved) for _ in range(count)]


@pytest.fixture
def table(dynamodb_client: DynamoDBClient, unique_name: str) -> str:
    ensure_aggregation_table(dynamodb_client, unique_name)
    return unique_name


@pytest.fixture
def markers(dynamodb_client: DynamoDBClient, table: str) -> Iterator[DynamoDbUniqueUserMarkers]:
    dynamodb_markers = DynamoDbUniqueUserMarkers(dynamodb_client, table, max_workers=4)
    yield dynamodb_markers
    dynamodb_markers.close()


def store_previous_markers(client: DynamoDBClient, table: str, user_id: str) -> None:
    """The user's hour, day and experiment-to-date markers as the previous layout wrote them."""
    for key in KEYS:
        partition, sort = previous_marker_key(key, user_id)
        item = {"partition_key": {"S": partition}, "sort_key": {"S": sort}}
        if key.granularity is Granularity.EXPERIMENT:
            marker, order = experiment_marker_attributes(key.metric)
            item |= {marker: {"S": RECORD}, order: {"N": "1"}, "n": {"N": "1"}}
        else:
            item["by"] = {"S": RECORD}
        client.put_item(TableName=table, Item=item)


def test_user_sets_read_the_markers_stored_under_the_previous_buckets(
    dynamodb_client: DynamoDBClient, table: str, markers: DynamoDbUniqueUserMarkers
) -> None:
    users = moved_users(2)
    for user_id in users:
        store_previous_markers(dynamodb_client, table, user_id)

    assert markers.users(KEYS) == {key: frozenset(users) for key in KEYS}


def test_erasure_finds_and_deletes_the_markers_stored_under_the_previous_buckets(
    dynamodb_client: DynamoDBClient, table: str, markers: DynamoDbUniqueUserMarkers
) -> None:
    [user_id] = moved_users(1)
    store_previous_markers(dynamodb_client, table, user_id)
    store = DynamoDbPersonalItemStore(dynamodb_client, table)
    personal: set[PersonalItem] = {
        UniqueUserMarker(
            key.experiment_id,
            key.variant_id,
            key.metric,
            key.granularity,
            key.window_start,
            user_id,
        )
        for key in KEYS
    }

    assert store.present(personal) == personal
    store.delete(personal)

    assert store.present(personal) == set()
    assert markers.users(KEYS) == {key: frozenset() for key in KEYS}


def kept_user() -> str:
    """A user whose marker keys are the same under both bucket counts."""
    candidates = (f"user-{n}" for n in range(1_000))
    return next(u for u in candidates if marker_key(KEYS[0], u) == previous_marker_key(KEYS[0], u))


def test_after_the_deploy_step_a_users_later_event_finds_their_marker_and_counts_no_one(
    dynamodb_client: DynamoDBClient, table: str, markers: DynamoDbUniqueUserMarkers
) -> None:
    users = [*moved_users(2), kept_user()]
    for user_id in users:
        store_previous_markers(dynamodb_client, table, user_id)

    summary = move_markers_to_current_buckets(dynamodb_client, table)

    assert summary == MovedMarkers(moved=6, kept=3, conflicts=0)
    assert move_markers_to_current_buckets(dynamodb_client, table).moved == 0
    assert markers.users(KEYS) == {key: frozenset(users) for key in KEYS}
    later = [
        MetricDelta(key, "shardId-000000000001", (7,), (user_id,), (None,))
        for key in KEYS
        for user_id in users
    ]
    claims = markers.mark(later, NoDeadline())
    assert claims.report.complete
    assert claims.report.refused == {}
    assert claims.first_records == {}  # every user was counted by the previous record
    for user_id in users:
        for key in KEYS:
            partition, sort = marker_key(key, user_id)
            item = dynamodb_client.get_item(
                TableName=table,
                Key={"partition_key": {"S": partition}, "sort_key": {"S": sort}},
                ConsistentRead=True,
            )["Item"]
            assert RECORD in {value.get("S") for value in item.values()}


def test_the_deploy_step_leaves_an_item_whose_current_key_is_taken(
    dynamodb_client: DynamoDBClient, table: str, markers: DynamoDbUniqueUserMarkers
) -> None:
    [user_id] = moved_users(1)
    store_previous_markers(dynamodb_client, table, user_id)
    markers.mark(
        [MetricDelta(KEYS[1], "shardId-000000000001", (7,), (user_id,), (None,))], NoDeadline()
    )

    summary = move_markers_to_current_buckets(dynamodb_client, table)

    assert summary == MovedMarkers(moved=2, kept=1, conflicts=1)
    assert markers.users(KEYS) == {key: frozenset({user_id}) for key in KEYS}


def test_a_deploy_step_interrupted_between_copy_and_delete_finishes_the_move_when_run_again(
    dynamodb_client: DynamoDBClient, table: str, markers: DynamoDbUniqueUserMarkers
) -> None:
    [user_id] = moved_users(1)
    store_previous_markers(dynamodb_client, table, user_id)
    for key in KEYS:  # the copies an interrupted run made, before it deleted anything
        partition, sort = previous_marker_key(key, user_id)
        item = dynamodb_client.get_item(
            TableName=table,
            Key={"partition_key": {"S": partition}, "sort_key": {"S": sort}},
            ConsistentRead=True,
        )["Item"]
        current_partition, current_sort = marker_key(key, user_id)
        dynamodb_client.put_item(
            TableName=table,
            Item={
                **item,
                "partition_key": {"S": current_partition},
                "sort_key": {"S": current_sort},
            },
        )

    summary = move_markers_to_current_buckets(dynamodb_client, table)

    assert summary == MovedMarkers(moved=3, kept=3, conflicts=0)
    assert move_markers_to_current_buckets(dynamodb_client, table) == MovedMarkers(0, 3, 0)
    assert markers.users(KEYS) == {key: frozenset({user_id}) for key in KEYS}
