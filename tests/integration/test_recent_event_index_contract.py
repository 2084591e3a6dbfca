"""One contract for the index of committed event ids: in memory, in DynamoDB, and layered."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from mypy_boto3_dynamodb import DynamoDBClient

from application.ports import RecentEventIndex
from domain.errors import InfrastructureConfigurationError, TransientInfrastructureError
from infrastructure.aws.client_config import client_config
from infrastructure.aws.dynamodb_codec import Backoff
from infrastructure.aws.dynamodb_recent_events import (
    EVENT_PREFIX,
    DynamoDbRecentEventIndex,
)
from infrastructure.aws.permissions import (
    LAMBDA_PARTITION_KEY_PREFIXES,
    LAMBDA_PERMISSIONS,
    Resource,
)
from infrastructure.clock import ManualClock
from infrastructure.dynamodb_layout import TTL_ATTRIBUTE
from infrastructure.in_memory.recent_events import InMemoryRecentEventIndex
from infrastructure.layered_recent_events import LayeredRecentEventIndex
from operations.aws.provisioning import ensure_aggregation_table
from tests.aws_calls import CallRecorder
from tests.botocore_faults import RefuseRequests, WithholdBatchItems
from tests.conftest import REGION

NOW = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
FAST = Backoff(sleep=lambda _: None)
LONG_SEQUENCE = 49_656_195_000_123_456_789_012_345_678_901_234_567_890_123_456_789_012
"""A Kinesis sequence number is up to 56 digits and more: far beyond a float's 17."""


@pytest.fixture
def aggregation_table(dynamodb_client: DynamoDBClient, unique_name: str) -> str:
    ensure_aggregation_table(dynamodb_client, unique_name)
    return unique_name


def dynamodb_index(
    client: DynamoDBClient, table: str, ttl_days: int = 7
) -> DynamoDbRecentEventIndex:
    return DynamoDbRecentEventIndex(
        client, table, ManualClock(NOW), ttl_days=ttl_days, backoff=FAST
    )


@pytest.fixture(params=["in_memory", "dynamodb", "layered"])
def index(request: pytest.FixtureRequest) -> Iterator[RecentEventIndex]:
    if request.param == "in_memory":
        yield InMemoryRecentEventIndex()
        return
    client: DynamoDBClient = request.getfixturevalue("dynamodb_client")
    table: str = request.getfixturevalue("aggregation_table")
    durable = dynamodb_index(client, table)
    yield (
        durable
        if request.param == "dynamodb"
        else LayeredRecentEventIndex(InMemoryRecentEventIndex(), durable)
    )


def test_remembers_the_record_that_carried_each_id(index: RecentEventIndex) -> None:
    index.remember({"a": ("shardId-000000000001", 5), "b": ("shardId-000000000002", 7)})

    assert index.lookup(["a", "b"]) == {
        "a": ("shardId-000000000001", 5),
        "b": ("shardId-000000000002", 7),
    }


def test_unknown_ids_are_absent_from_a_lookup(index: RecentEventIndex) -> None:
    index.remember({"a": ("s", 1)})

    assert index.lookup(["never-seen", "nor-this"]) == {}
    assert index.lookup([]) == {}
    assert index.lookup(["a", "unknown"]) == {"a": ("s", 1)}


def test_an_id_asked_for_twice_in_one_lookup_is_answered_once(index: RecentEventIndex) -> None:
    index.remember({"a": ("s", 1)})

    assert index.lookup(["a", "a", "b", "b"]) == {"a": ("s", 1)}


def test_a_redelivered_record_remembered_again_keeps_its_entry(index: RecentEventIndex) -> None:
    index.remember({"a": ("s", 1), "b": ("s", 2)})
    index.remember({"a": ("s", 1), "c": ("s", 3)})

    assert index.lookup(["a", "b", "c"]) == {"a": ("s", 1), "b": ("s", 2), "c": ("s", 3)}


def test_sequence_numbers_of_any_length_and_ids_of_any_characters_round_trip(
    index: RecentEventIndex,
) -> None:
    events = {
        "plain": ("shardId-000000000000", LONG_SEQUENCE),
        "with#hash#signs": ("shardId-000000000001", 0),
        "EVENT#looks-like-a-key": ("s", 1),
        "ünïcødé-✓": ("s", LONG_SEQUENCE + 1),
        "x" * 256: ("s", 2),
    }
    index.remember(events)

    assert index.lookup(list(events)) == events


def test_more_ids_than_one_request_holds_are_remembered_and_found(index: RecentEventIndex) -> None:
    events = {f"evt-{n}": ("s", 1_000 + n) for n in range(130)}  # > 100 reads, > 25 writes
    index.remember(events)

    assert index.lookup([*events, "unknown"]) == events


# -- the first record of an id --------------------------------------------------------------


@pytest.mark.parametrize("index", ["in_memory", "layered"], indirect=True)
def test_an_id_keeps_the_record_it_was_first_remembered_with(index: RecentEventIndex) -> None:
    index.remember({"a": ("s", 1)})
    index.remember({"a": ("s", 9)})

    assert index.lookup(["a"]) == {"a": ("s", 1)}


def test_alone_the_durable_index_keeps_the_last_record_remembered_for_an_id(
    dynamodb_client: DynamoDBClient, aggregation_table: str
) -> None:
    # BatchWriteItem has no condition: the use case never remembers an id found under another
    # record (that record is a duplicate), and the layered index sends only ids it does not hold.
    index = dynamodb_index(dynamodb_client, aggregation_table)
    index.remember({"a": ("s", 1)})
    index.remember({"a": ("s", 9)})

    assert index.lookup(["a"]) == {"a": ("s", 9)}


# -- DynamoDB: layout, requests, faults -----------------------------------------------------


def test_each_id_is_one_item_with_its_record_and_an_expiry_after_the_retention(
    dynamodb_client: DynamoDBClient, aggregation_table: str
) -> None:
    dynamodb_index(dynamodb_client, aggregation_table, ttl_days=3).remember(
        {"a": ("shardId-000000000001", LONG_SEQUENCE)}
    )

    [item] = dynamodb_client.scan(TableName=aggregation_table)["Items"]
    assert item == {
        "partition_key": {"S": f"{EVENT_PREFIX}a"},
        "sort_key": {"S": "EVENT"},
        "shard_id": {"S": "shardId-000000000001"},
        "sequence": {"S": str(LONG_SEQUENCE)},
        TTL_ATTRIBUTE: {"N": str(int((NOW + timedelta(days=3)).timestamp()))},
    }


def test_the_table_expires_items_by_the_attribute_the_index_sets(
    dynamodb_client: DynamoDBClient, aggregation_table: str
) -> None:
    described = dynamodb_client.describe_time_to_live(TableName=aggregation_table)
    assert described["TimeToLiveDescription"]["AttributeName"] == TTL_ATTRIBUTE


def test_reads_take_100_ids_a_request_and_writes_25_on_the_granted_actions_only(
    dynamodb_client: DynamoDBClient, aggregation_table: str
) -> None:
    index = dynamodb_index(dynamodb_client, aggregation_table)
    recorder = CallRecorder()
    recorder.attach(dynamodb_client)
    events = {f"evt-{n}": ("s", n) for n in range(130)}

    index.remember(events)
    found = index.lookup(list(events))

    assert found == events
    assert recorder.count("dynamodb", "BatchWriteItem") == 6
    assert recorder.count("dynamodb", "BatchGetItem") == 2
    assert recorder.actions <= LAMBDA_PERMISSIONS[Resource.AGGREGATION_TABLE]
    for action, partition_keys in recorder.partition_keys.items():
        prefixes = tuple(LAMBDA_PARTITION_KEY_PREFIXES[action])
        assert all(key.startswith(prefixes) for key in partition_keys), action
    reads = [params for _, operation, params in recorder.operations if operation == "BatchGetItem"]
    for params in reads:
        request = params["RequestItems"][aggregation_table]
        assert request["ConsistentRead"] is True
        assert set(request["ExpressionAttributeNames"].values()) == {
            "partition_key",
            "shard_id",
            "sequence",
        }


def test_ids_dynamodb_hands_back_unprocessed_are_retried(
    dynamodb_client: DynamoDBClient, aggregation_table: str
) -> None:
    index = dynamodb_index(dynamodb_client, aggregation_table)
    withheld_writes, withheld_reads = WithholdBatchItems(), WithholdBatchItems()
    withheld_writes.attach(dynamodb_client, "BatchWriteItem")
    withheld_reads.attach(dynamodb_client, "BatchGetItem")
    events = {f"evt-{n}": ("s", n) for n in range(10)}

    index.remember(events)
    found = index.lookup(list(events))

    assert withheld_writes.withheld
    assert withheld_reads.withheld
    assert found == events


def test_ids_still_unprocessed_after_the_retries_are_a_transient_failure(
    dynamodb_client: DynamoDBClient, aggregation_table: str
) -> None:
    index = dynamodb_index(dynamodb_client, aggregation_table)
    index.remember({"a": ("s", 1), "b": ("s", 2)})
    for operation in ("BatchGetItem", "BatchWriteItem"):
        WithholdBatchItems(withhold=lambda _index, _entry: True, times=None).attach(
            dynamodb_client, operation
        )

    with pytest.raises(TransientInfrastructureError, match="BatchGetItem"):
        index.lookup(["a", "b"])
    with pytest.raises(TransientInfrastructureError, match="BatchWriteItem"):
        index.remember({"c": ("s", 3), "d": ("s", 4)})


def test_throttling_that_outlasts_botocores_retries_is_a_transient_failure(
    endpoint_url: str, aggregation_table: str
) -> None:
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name=REGION,
        config=client_config(max_attempts=1),
    )
    RefuseRequests(lambda _: True).attach(client, "BatchGetItem")
    RefuseRequests(lambda _: True).attach(client, "BatchWriteItem")
    index = dynamodb_index(client, aggregation_table)

    with pytest.raises(TransientInfrastructureError):
        index.lookup([f"evt-{n}" for n in range(150)])  # two requests, in parallel
    with pytest.raises(TransientInfrastructureError):
        index.remember({f"evt-{n}": ("s", n) for n in range(60)})


def test_a_missing_table_is_a_configuration_error(
    dynamodb_client: DynamoDBClient, unique_name: str
) -> None:
    index = dynamodb_index(dynamodb_client, f"{unique_name}-missing")

    with pytest.raises(InfrastructureConfigurationError):
        index.lookup(["a"])
    with pytest.raises(InfrastructureConfigurationError):
        index.remember({"a": ("s", 1)})


# -- layered: what a warm container saves -----------------------------------------------------


def test_a_warm_container_answers_ids_it_remembered_without_a_request(
    dynamodb_client: DynamoDBClient, aggregation_table: str
) -> None:
    index = LayeredRecentEventIndex(
        InMemoryRecentEventIndex(), dynamodb_index(dynamodb_client, aggregation_table)
    )
    index.remember({"a": ("s", 1), "b": ("s", 2)})
    recorder = CallRecorder()
    recorder.attach(dynamodb_client)

    assert index.lookup(["a", "b"]) == {"a": ("s", 1), "b": ("s", 2)}
    index.remember({"a": ("s", 1), "b": ("s", 2)})  # a redelivered batch

    assert recorder.operations == []


def test_a_cold_container_finds_what_an_earlier_one_remembered_and_then_keeps_it(
    dynamodb_client: DynamoDBClient, aggregation_table: str
) -> None:
    durable = dynamodb_index(dynamodb_client, aggregation_table)
    LayeredRecentEventIndex(InMemoryRecentEventIndex(), durable).remember({"a": ("s", 1)})
    cold = LayeredRecentEventIndex(InMemoryRecentEventIndex(), durable)
    recorder = CallRecorder()
    recorder.attach(dynamodb_client)

    assert cold.lookup(["a", "new"]) == {"a": ("s", 1)}
    assert cold.lookup(["a"]) == {"a": ("s", 1)}

    assert recorder.count("dynamodb", "BatchGetItem") == 1


def test_when_the_durable_write_fails_the_memory_learns_nothing(
    dynamodb_client: DynamoDBClient, unique_name: str
) -> None:
    memory = InMemoryRecentEventIndex()
    index = LayeredRecentEventIndex(memory, dynamodb_index(dynamodb_client, unique_name))

    with pytest.raises(InfrastructureConfigurationError):
        index.remember({"a": ("s", 1)})

    assert memory.lookup(["a"]) == {}
