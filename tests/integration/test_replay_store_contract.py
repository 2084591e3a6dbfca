"""One contract for applying replayed events at most once, in memory and in DynamoDB."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from mypy_boto3_dynamodb import DynamoDBClient

from application.ports import MetricStore, ReplayedEvent, ReplayMetricStore
from domain.metrics import Granularity
from infrastructure.aws.dynamodb_codec import Backoff
from infrastructure.aws.dynamodb_metric_store import DynamoDbMetricStore
from infrastructure.aws.dynamodb_replay_store import DynamoDbReplayMetricStore
from infrastructure.aws.provisioning import ensure_aggregation_table
from infrastructure.clock import ManualClock
from infrastructure.in_memory.metric_store import InMemoryMetricStore
from infrastructure.in_memory.replay_store import InMemoryReplayMetricStore
from tests.botocore_faults import LoseResponses
from tests.metric_deltas import Seen, deltas_of

DAY = datetime(2026, 11, 20, tzinfo=UTC)
FAST = Backoff(sleep=lambda _: None)


@dataclass
class Stores:
    replay: ReplayMetricStore
    counters: MetricStore


@pytest.fixture(params=["in_memory", "dynamodb"])
def stores(request: pytest.FixtureRequest) -> Iterator[Stores]:
    if request.param == "in_memory":
        counters = InMemoryMetricStore()
        yield Stores(InMemoryReplayMetricStore(counters), counters)
        return
    client: DynamoDBClient = request.getfixturevalue("dynamodb_client")
    table: str = request.getfixturevalue("unique_name")
    ensure_aggregation_table(client, table)
    metric_store = DynamoDbMetricStore(client, table, max_workers=4, backoff=FAST)
    clock = ManualClock(DAY)
    yield Stores(
        DynamoDbReplayMetricStore(client, table, metric_store, clock, backoff=FAST), metric_store
    )
    metric_store.close()


def replayed(event_id: str, user_id: str, minute: int, value: float | None = None) -> ReplayedEvent:
    seen = Seen(
        sequence=minute + 1,
        user_id=user_id,
        timestamp=DAY + timedelta(hours=10, minutes=minute),
        metric="purchase",
        value=value,
        shard_id="replay",
    )
    return ReplayedEvent(event_id, tuple(deltas_of([seen])))


def daily(stores: Stores) -> list[tuple[int, Decimal, int]]:
    return [
        (s.event_count, s.value_sum, s.unique_users)
        for s in stores.counters.snapshots("exp-1", Granularity.DAY)
    ]


def test_events_replayed_twice_count_once(stores: Stores) -> None:
    events = [replayed("a", "u1", 1, 10.5), replayed("b", "u2", 2, 0.25)]
    first = stores.replay.apply_once(events)
    second = stores.replay.apply_once(events)
    assert first.applied == {"a", "b"}
    assert second.already_applied == {"a", "b"}
    assert second.applied == frozenset()
    assert daily(stores) == [(2, Decimal("10.75"), 2)]


def test_a_mix_of_new_and_already_replayed_events_applies_only_the_new(stores: Stores) -> None:
    stores.replay.apply_once([replayed("a", "u1", 1, 1.0)])
    outcome = stores.replay.apply_once([replayed("a", "u1", 1, 1.0), replayed("c", "u1", 3, 2.0)])
    assert (set(outcome.applied), set(outcome.already_applied)) == ({"c"}, {"a"})
    assert daily(stores) == [(2, Decimal("3.0"), 1)]


def test_more_events_than_one_transaction_holds_are_all_applied_once(stores: Stores) -> None:
    events = [replayed(f"e{i}", f"u{i % 7}", i % 50, 1.0) for i in range(150)]
    assert stores.replay.apply_once(events).applied == {e.event_id for e in events}
    assert stores.replay.apply_once(events).already_applied == {e.event_id for e in events}
    assert daily(stores) == [(150, Decimal("150.0"), 7)]


def test_a_lost_transaction_response_does_not_count_twice(
    dynamodb_client: DynamoDBClient, unique_name: str
) -> None:
    ensure_aggregation_table(dynamodb_client, unique_name)
    metric_store = DynamoDbMetricStore(dynamodb_client, unique_name, max_workers=2, backoff=FAST)
    store = DynamoDbReplayMetricStore(
        dynamodb_client, unique_name, metric_store, ManualClock(DAY), backoff=FAST
    )
    lose = LoseResponses(times=1)
    lose.attach(dynamodb_client, "TransactWriteItems")
    outcome = store.apply_once([replayed("a", "u1", 1, 5.0)])
    assert lose.lost == 1
    assert outcome.applied | outcome.already_applied == {"a"}
    assert [
        (s.event_count, s.value_sum) for s in metric_store.snapshots("exp-1", Granularity.DAY)
    ] == [(1, Decimal("5.0"))]
    metric_store.close()
