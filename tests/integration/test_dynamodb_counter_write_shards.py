"""The DynamoDB metric store's write-sharded counters (docs/storage.md "Counter items"): a
counter is one item per write shard of the Kinesis shards that wrote it, each with only those
shards' watermarks, and a report sums its items, those of the legacy unsharded layout included."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from mypy_boto3_dynamodb import DynamoDBClient

from application.ports import NoDeadline
from domain.metrics import Granularity, MetricKey
from domain.records import padded_sequence
from infrastructure.aws.dynamodb_codec import Backoff
from infrastructure.aws.dynamodb_metric_store import DynamoDbMetricStore
from infrastructure.dynamodb_layout import (
    WATERMARK_PREFIX,
    counter_partition_key,
    counter_sort_key,
    counter_write_shard,
    legacy_counter_partition_key,
    watermark_attribute,
)
from operations.aws.provisioning import ensure_aggregation_table
from tests.counter_items import counter_items
from tests.metric_deltas import SHARD_A, SHARD_B, Seen, deltas_of

HOUR_10 = datetime(2026, 11, 20, 10, tzinfo=UTC)
SHARD_C = "shardId-000000000016"
"""The write shard of shard A, with a watermark of its own."""


def at(minute: int) -> datetime:
    return HOUR_10 + timedelta(minutes=minute)


def no_sleep(_: float) -> None:
    return None


@pytest.fixture
def table(dynamodb_client: DynamoDBClient, unique_name: str) -> str:
    ensure_aggregation_table(dynamodb_client, unique_name)
    return unique_name


@pytest.fixture
def store(dynamodb_client: DynamoDBClient, table: str) -> Iterator[DynamoDbMetricStore]:
    dynamodb_store = DynamoDbMetricStore(
        dynamodb_client, table, max_workers=4, backoff=Backoff(sleep=no_sleep)
    )
    yield dynamodb_store
    dynamodb_store.close()


def apply(store: DynamoDbMetricStore, *records: Seen) -> None:
    report = store.apply(deltas_of(records), NoDeadline())
    assert report.complete, report


def hourly(
    store: DynamoDbMetricStore, experiment_id: str = "exp-1"
) -> dict[str, tuple[int, Decimal, int]]:
    return {
        snapshot.key.metric: (
            snapshot.measures.event_count,
            snapshot.measures.value_sum,
            snapshot.measures.value_count,
        )
        for snapshot in store.snapshots(experiment_id, Granularity.HOUR)
    }


def hour_key(experiment_id: str = "exp-1", metric: str = "click") -> MetricKey:
    return MetricKey(experiment_id, "control", metric, Granularity.HOUR, HOUR_10)


def put_legacy_counter(
    client: DynamoDBClient,
    table: str,
    key: MetricKey,
    event_count: int,
    value_sum: str,
    watermarks: dict[str, int],
) -> None:
    """A counter item as it was written before counters were write-sharded."""
    client.put_item(
        TableName=table,
        Item={
            "partition_key": {"S": legacy_counter_partition_key(key.experiment_id)},
            "sort_key": {"S": counter_sort_key(key)},
            "event_count": {"N": str(event_count)},
            "value_sum": {"N": value_sum},
            "value_count": {"N": str(event_count)},
            "experiment_id": {"S": key.experiment_id},
            "variant_id": {"S": key.variant_id},
            "metric": {"S": key.metric},
            "granularity": {"S": key.granularity.value},
            "window_start": {"S": key.window_start.isoformat()},
            **{
                watermark_attribute(shard): {"S": padded_sequence(sequence)}
                for shard, sequence in watermarks.items()
            },
        },
    )


def test_two_shards_of_different_write_shards_write_different_items_that_a_snapshot_sums(
    store: DynamoDbMetricStore, dynamodb_client: DynamoDBClient, table: str
) -> None:
    assert counter_write_shard(SHARD_A) != counter_write_shard(SHARD_B)
    apply(
        store,
        Seen(1, "u1", at(1), value=2.5, shard_id=SHARD_A),
        Seen(2, "u2", at(2), value=1.25, shard_id=SHARD_B),
        Seen(3, "u3", at(3), shard_id=SHARD_B),
    )

    [items] = counter_items(dynamodb_client, table, "exp-1", "HOUR#").values()
    assert sorted(item["partition_key"]["S"] for item in items) == sorted(
        counter_partition_key("exp-1", counter_write_shard(shard)) for shard in (SHARD_A, SHARD_B)
    )
    assert hourly(store) == {"click": (3, Decimal("3.75"), 2)}
    [daily] = store.snapshots("exp-1", Granularity.DAY)
    assert daily.measures.event_count == 3


def test_a_redelivery_to_each_shard_is_still_counted_once(store: DynamoDbMetricStore) -> None:
    first = (
        Seen(1, "u1", at(1), value=1, shard_id=SHARD_A),
        Seen(1, "u2", at(2), value=2, shard_id=SHARD_B),
    )
    apply(store, *first)
    apply(store, *first, Seen(2, "u3", at(3), value=4, shard_id=SHARD_A))
    cold = DynamoDbMetricStore(store._client, store._table_name, max_workers=2)  # no memory
    try:
        report = cold.apply(
            deltas_of([*first, Seen(2, "u4", at(4), value=8, shard_id=SHARD_B)]), NoDeadline()
        )
        assert report.complete
    finally:
        cold.close()

    assert hourly(store) == {"click": (4, Decimal(15), 4)}


def test_a_counter_item_holds_only_the_watermarks_of_its_write_shards_kinesis_shards(
    store: DynamoDbMetricStore, dynamodb_client: DynamoDBClient, table: str
) -> None:
    assert counter_write_shard(SHARD_C) == counter_write_shard(SHARD_A)
    apply(
        store,
        Seen(5, "u1", at(1), shard_id=SHARD_A),
        Seen(6, "u2", at(2), shard_id=SHARD_B),
        Seen(7, "u3", at(3), shard_id=SHARD_C),
    )

    [items] = counter_items(dynamodb_client, table, "exp-1", "HOUR#").values()
    watermarks = {
        item["partition_key"]["S"]: {
            name: int(value["S"])
            for name, value in item.items()
            if name.startswith(WATERMARK_PREFIX)
        }
        for item in items
    }
    assert watermarks == {
        counter_partition_key("exp-1", counter_write_shard(SHARD_A)): {
            watermark_attribute(SHARD_A): 5,
            watermark_attribute(SHARD_C): 7,
        },
        counter_partition_key("exp-1", counter_write_shard(SHARD_B)): {
            watermark_attribute(SHARD_B): 6,
        },
    }
    assert store.watermarks([hour_key()], SHARD_C) == {hour_key(): 7}
    assert store.watermarks([hour_key()], SHARD_B) == {hour_key(): 6}


def test_counters_of_the_legacy_layout_are_read_and_summed_with_write_sharded_ones(
    store: DynamoDbMetricStore, dynamodb_client: DynamoDBClient, table: str
) -> None:
    put_legacy_counter(dynamodb_client, table, hour_key(), 3, "10.5", {SHARD_A: 40, SHARD_B: 30})
    put_legacy_counter(dynamodb_client, table, hour_key(metric="view"), 2, "0", {SHARD_B: 31})
    apply(
        store,
        Seen(41, "u1", at(1), value=1.5, shard_id=SHARD_A),
        Seen(32, "u2", at(2), value=2, shard_id=SHARD_B),
    )

    assert hourly(store) == {"click": (5, Decimal(14), 5), "view": (2, Decimal(0), 2)}
    # A replay asks how far a shard reached: before and after the layout changed.
    assert store.watermarks([hour_key(), hour_key(metric="view")], SHARD_B) == {
        hour_key(): 32,
        hour_key(metric="view"): 31,
    }


def test_a_legacy_key_that_spells_another_experiments_write_shard_key_stays_apart(
    store: DynamoDbMetricStore, dynamodb_client: DynamoDBClient, table: str
) -> None:
    # The legacy layout did not escape ids: experiment "exp#W01"'s partition is "EXP#exp#W01",
    # which is also where experiment "exp" keeps the counters of write shard 1. (A counter of
    # both with the same sort key would be one item: docs/storage.md "Counter items".)
    lookalike = MetricKey("exp#W01", "treatment", "click", Granularity.HOUR, HOUR_10)
    assert legacy_counter_partition_key("exp#W01") == counter_partition_key("exp", 1)
    put_legacy_counter(dynamodb_client, table, lookalike, 7, "0", {SHARD_B: 50})
    apply(store, Seen(3, "u1", at(1), shard_id=SHARD_B, experiment_id="exp"))

    assert hourly(store, "exp") == {"click": (1, Decimal(0), 0)}
    [only] = store.snapshots("exp#W01", Granularity.HOUR)
    assert (only.key, only.measures.event_count) == (lookalike, 7)
    assert store.watermarks([lookalike, hour_key(experiment_id="exp")], SHARD_B) == {
        lookalike: 50,
        hour_key(experiment_id="exp"): 3,
    }
