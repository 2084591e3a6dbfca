"""A user's experiment-to-date marker item holds every metric's marker of theirs: DynamoDB refuses
an `UpdateItem` that would take it past 400 KB (`ValidationException`, "Item size to update has
exceeded the maximum allowed size"), the DynamoDB markers report that as a refusal of the
record, and the in-memory markers refuse the same record with the same words.

moto enforces the limit too, but from 405,000 bytes (its own margin below AWS's 409,600, and it
counts an attribute an update replaces twice), so it refuses a little earlier than AWS: the
contract below asserts outside that gap, and the in-memory markers' boundary, AWS's, is checked
against the item's size computed independently (`bench.capacity_model.item_bytes`, DynamoDB's
documented formula). The item is seeded close to the limit (a `PutItem` of the item the adapter
would have written, for DynamoDB; the same markers, for the in-memory markers) so that the test
sends a few dozen requests, not a thousand."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest
from mypy_boto3_dynamodb import DynamoDBClient

from application.ports import NoDeadline, RecordId
from application.unique_users import UniqueUserMarkers
from bench.capacity_model import item_bytes
from domain.limits import DYNAMODB_ITEM_BYTES
from domain.metrics import EXPERIMENT_WINDOW_START, Granularity, MetricDelta, MetricKey
from infrastructure.aws.dynamodb_unique_user_markers import DynamoDbUniqueUserMarkers
from infrastructure.dynamodb_layout import (
    EXPERIMENT_MARKER_COUNT_ATTRIBUTE,
    experiment_marker_attributes,
    marker_key,
    marker_writer,
)
from infrastructure.in_memory.unique_user_markers import InMemoryUniqueUserMarkers
from operations.aws.provisioning import ensure_aggregation_table

USER = "u1"
REFUSAL = (
    "UpdateItem (unique-user marker): Item size to update has exceeded the maximum allowed size"
)
MOTO_ITEM_BYTES = 405_000
Marker = tuple[str, RecordId]
"""A metric's marker: the metric and the record that wrote it."""


def metric_name(number: int) -> str:
    """A metric name of the longest length events may carry (64), so that few markers fill an
    item."""
    return f"m{number:05d}_".ljust(64, "x")


def to_date(metric: str) -> MetricKey:
    return MetricKey("exp-1", "control", metric, Granularity.EXPERIMENT, EXPERIMENT_WINDOW_START)


def delta(marker: Marker) -> MetricDelta:
    metric, (shard_id, sequence) = marker
    return MetricDelta(to_date(metric), shard_id, (sequence,), (USER,), (None,))


def stored_item(markers: Sequence[Marker]) -> dict[str, dict[str, str]]:
    """The user's experiment-to-date item as the DynamoDB markers write it."""
    partition, sort = marker_key(to_date(markers[0][0]), USER)
    item = {
        "partition_key": {"S": partition},
        "sort_key": {"S": sort},
        EXPERIMENT_MARKER_COUNT_ATTRIBUTE: {"N": str(len(markers))},
    }
    for place, (metric, record) in enumerate(markers, start=1):
        attribute, place_attribute = experiment_marker_attributes(metric)
        item[attribute] = {"S": marker_writer(record)}
        item[place_attribute] = {"N": str(place)}
    return item


def markers_up_to(size: int) -> list[Marker]:
    """The most markers of new metrics whose item stays within `size` bytes (an item grows with
    each marker: a binary search)."""
    fits, too_many = 1, 4_000
    while too_many - fits > 1:
        middle = (fits + too_many) // 2
        if item_bytes(stored_item([new_marker(n) for n in range(middle)])) <= size:
            fits = middle
        else:
            too_many = middle
    return [new_marker(n) for n in range(fits)]


LONG_SHARD = "shardId-".ljust(128, "0")
"""Kinesis's longest shard id; with sequence numbers of 100 digits, a marker of ~360 bytes."""


def new_marker(number: int) -> Marker:
    return metric_name(number), (LONG_SHARD, 10**99 + number)


@dataclass
class Seeded:
    markers: UniqueUserMarkers
    seed: Callable[[Sequence[Marker]], None]


@pytest.fixture(params=["in_memory", "dynamodb"])
def seeded(request: pytest.FixtureRequest) -> Iterator[Seeded]:
    if request.param == "in_memory":
        in_memory = InMemoryUniqueUserMarkers()

        def mark_each(markers: Sequence[Marker]) -> None:
            claims = in_memory.mark([delta(marker) for marker in markers], NoDeadline())
            assert claims.report.refused == {}

        yield Seeded(in_memory, mark_each)
        return
    client: DynamoDBClient = request.getfixturevalue("dynamodb_client")
    table: str = request.getfixturevalue("unique_name")
    ensure_aggregation_table(client, table)
    # One worker: the markers of a batch are written one after the other, in record order, so
    # the item grows in the same order as the in-memory one.
    dynamodb = DynamoDbUniqueUserMarkers(client, table, max_workers=1)

    def put(markers: Sequence[Marker]) -> None:
        client.put_item(TableName=table, Item=stored_item(markers))

    yield Seeded(dynamodb, put)
    dynamodb.close()


def test_the_markers_that_would_take_a_users_experiment_item_past_400_kb_are_refused_by_record(
    seeded: Seeded,
) -> None:
    margin = 400  # below moto's limit by more than one marker and a replaced count
    held = markers_up_to(MOTO_ITEM_BYTES - margin)
    seeded.seed(held)
    batch = [new_marker(len(held) + n) for n in range(18)]
    assert item_bytes(stored_item([*held, *batch])) > DYNAMODB_ITEM_BYTES + 2 * margin

    claims = seeded.markers.mark([delta(marker) for marker in batch], NoDeadline())

    refused = claims.report.refused
    assert claims.report.complete
    assert batch[0][1] not in refused  # fits both AWS's limit and moto's
    assert batch[-1][1] in refused  # past both
    assert set(refused.values()) == {REFUSAL}
    # The refused records are the batch's last ones: every marker before them was written.
    first_refused = min(refused)
    assert set(refused) == {record for _, record in batch if record >= first_refused}
    written = [marker for marker in batch if marker[1] not in refused]
    for metric, (shard_id, sequence) in written:
        assert claims.first_records[(to_date(metric), shard_id)] == {sequence}
    users = seeded.markers.users([to_date(batch[0][0]), to_date(batch[-1][0])])
    assert users == {to_date(batch[0][0]): {USER}, to_date(batch[-1][0]): frozenset()}


def test_the_in_memory_markers_refuse_exactly_past_dynamodbs_documented_item_size() -> None:
    markers = InMemoryUniqueUserMarkers()
    held = markers_up_to(DYNAMODB_ITEM_BYTES)
    markers.mark([delta(marker) for marker in held[:-1]], NoDeadline())

    last = markers.mark([delta(held[-1])], NoDeadline())
    over = markers.mark([delta(new_marker(len(held)))], NoDeadline())

    assert last.report.refused == {}
    assert item_bytes(stored_item(held)) <= DYNAMODB_ITEM_BYTES
    assert item_bytes(stored_item([*held, new_marker(len(held))])) > DYNAMODB_ITEM_BYTES
    assert over.report.refused == {new_marker(len(held))[1]: REFUSAL}
    # A retry of a marker the item holds does not grow it, and is not refused.
    again = markers.mark([delta(held[-1])], NoDeadline())
    assert again.report.refused == {}
    assert again.first_records[(to_date(held[-1][0]), LONG_SHARD)] == {held[-1][1][1]}
