"""The MetricStore contract, held by the in-memory and the DynamoDB store alike; then the faults
only the DynamoDB store meets (lost responses, throttling, unprocessed items, missing tables)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from mypy_boto3_dynamodb import DynamoDBClient
from pydantic import ValidationError

from application.ports import Deadline, MetricSnapshot, MetricStore, NoDeadline
from application.shard_cut import ShardCut
from domain.errors import InfrastructureConfigurationError
from domain.events import IDENTIFIER_MAX_BYTES
from domain.metrics import Granularity
from infrastructure.aws.client_config import _retry_quota_checker, client_config
from infrastructure.aws.dynamodb_codec import Backoff
from infrastructure.aws.dynamodb_metric_store import DynamoDbMetricStore
from infrastructure.aws.dynamodb_unique_user_markers import DynamoDbUniqueUserMarkers
from infrastructure.aws.permissions import (
    LAMBDA_PARTITION_KEY_PREFIXES,
    LAMBDA_PERMISSIONS,
    Resource,
)
from infrastructure.in_memory.metric_store import InMemoryMetricStore
from operations.aws.provisioning import ensure_aggregation_table
from tests.aws_calls import CallRecorder
from tests.botocore_faults import LoseResponses, RefuseRequests
from tests.conftest import REGION
from tests.dynamodb_limits import DynamoDbNumberLimits
from tests.metric_deltas import SHARD_A, SHARD_B, Seen, deltas_of

DAY = datetime(2026, 11, 20, tzinfo=UTC)
HOUR = Granularity.HOUR
DAILY = Granularity.DAY


def at(hour: int, minute: int = 0, day: int = 0) -> datetime:
    return DAY + timedelta(days=day, hours=hour, minutes=minute)


class Expired(Deadline):
    def expired(self) -> bool:
        return True


def no_sleep(_: float) -> None:
    return None


FAST_BACKOFF = Backoff(sleep=no_sleep)


@pytest.fixture
def aggregation_table(dynamodb_client: DynamoDBClient, unique_name: str) -> str:
    ensure_aggregation_table(dynamodb_client, unique_name)
    return unique_name


@pytest.fixture(params=["in_memory", "dynamodb"])
def store(request: pytest.FixtureRequest) -> Iterator[MetricStore]:
    if request.param == "in_memory":
        yield InMemoryMetricStore()
        return
    endpoint_url: str = request.getfixturevalue("endpoint_url")
    reader: DynamoDBClient = request.getfixturevalue("dynamodb_client")
    table: str = request.getfixturevalue("aggregation_table")
    client: DynamoDBClient = boto3.client(
        "dynamodb", endpoint_url=endpoint_url, region_name=REGION, config=client_config()
    )
    DynamoDbNumberLimits(reader).attach(client)  # moto takes any number; DynamoDB does not
    dynamodb_store = DynamoDbMetricStore(client, table, max_workers=8, backoff=FAST_BACKOFF)
    yield dynamodb_store
    dynamodb_store.close()


def apply(store: MetricStore, *records: Seen, deadline: Deadline | None = None) -> None:
    report = store.apply(deltas_of(records), deadline or NoDeadline())
    assert report.complete, report


def by_window(
    store: MetricStore,
    granularity: Granularity = HOUR,
    experiment_id: str = "exp-1",
    user_sets: bool = False,
) -> dict[tuple[str, str, datetime], MetricSnapshot]:
    return {
        (s.key.variant_id, s.key.metric, s.key.window_start): s
        for s in store.snapshots(experiment_id, granularity, user_sets=user_sets)
    }


def counts(snapshot: MetricSnapshot) -> tuple[int, Decimal, int, int]:
    return (
        snapshot.measures.event_count,
        snapshot.measures.value_sum,
        snapshot.measures.value_count,
        snapshot.unique_users,
    )


# -- the contract ---------------------------------------------------------------------------


def test_deltas_of_successive_batches_add_up(store: MetricStore) -> None:
    apply(store, Seen(1, "u1", at(10, 5), value=2.5), Seen(2, "u2", at(10, 6)))
    apply(store, Seen(3, "u1", at(10, 7), value=1.5), Seen(4, "u3", at(10, 8)))

    assert counts(by_window(store)[("control", "click", at(10))]) == (4, Decimal("4.0"), 2, 3)
    assert counts(by_window(store, DAILY)[("control", "click", DAY)]) == (4, Decimal("4.0"), 2, 3)


def test_applying_the_same_records_twice_counts_them_once(store: MetricStore) -> None:
    records = (Seen(1, "u1", at(10, 5), value=3.0), Seen(2, "u2", at(11, 5)))
    apply(store, *records)
    apply(store, *records)

    hourly = by_window(store)
    assert counts(hourly[("control", "click", at(10))]) == (1, Decimal("3.0"), 1, 1)
    assert counts(hourly[("control", "click", at(11))]) == (1, Decimal(0), 0, 1)
    assert counts(by_window(store, DAILY)[("control", "click", DAY)]) == (2, Decimal(3), 1, 2)


def test_a_redelivered_suffix_counts_only_the_records_not_applied_yet(store: MetricStore) -> None:
    apply(store, *(Seen(n, f"u{n}", at(10, n)) for n in (1, 2, 3)))
    apply(store, *(Seen(n, f"u{n}", at(10, n)) for n in (2, 3, 4, 5, 6)))

    assert counts(by_window(store)[("control", "click", at(10))]) == (6, Decimal(0), 0, 6)


def test_two_shards_keep_independent_watermarks(store: MetricStore) -> None:
    apply(store, Seen(100, "u1", at(10, 1), shard_id=SHARD_A), Seen(101, "u2", at(10, 2)))
    # Shard B's sequence numbers are lower than shard A's watermark: they still count.
    apply(
        store,
        Seen(5, "u3", at(10, 3), shard_id=SHARD_B),
        Seen(6, "u1", at(10, 4), shard_id=SHARD_B),
    )
    apply(
        store,
        Seen(6, "u1", at(10, 4), shard_id=SHARD_B),
        Seen(7, "u4", at(10, 5), shard_id=SHARD_B),
    )

    assert counts(by_window(store)[("control", "click", at(10))]) == (5, Decimal(0), 0, 4)


def test_unique_users_are_exact_across_batches_windows_and_redeliveries(
    store: MetricStore,
) -> None:
    first_batch = (
        Seen(1, "u1", at(10, 1)),
        Seen(2, "u2", at(10, 2)),
        Seen(3, "u2", at(11, 3)),
        Seen(4, "u1", at(10, 4), metric="purchase", value=10),
    )
    apply(store, *first_batch)
    apply(store, *first_batch)
    apply(store, Seen(5, "u3", at(11, 5)), Seen(6, "u1", at(10, 6)), Seen(7, "u2", at(11, 7)))
    apply(store, Seen(8, "u4", at(9, day=1)))

    hourly = by_window(store)
    assert hourly[("control", "click", at(10))].unique_users == 2
    assert hourly[("control", "click", at(11))].unique_users == 2
    assert hourly[("control", "purchase", at(10))].unique_users == 1
    assert hourly[("control", "click", at(9, day=1))].unique_users == 1
    daily = by_window(store, DAILY)
    assert counts(daily[("control", "click", DAY)]) == (6, Decimal(0), 0, 3)
    assert daily[("control", "purchase", DAY)].unique_users == 1
    assert daily[("control", "click", DAY + timedelta(days=1))].unique_users == 1


def test_snapshots_name_the_distinct_users_of_their_window(store: MetricStore) -> None:
    apply(
        store,
        Seen(1, "u1", at(10, 1)),
        Seen(2, "u2", at(10, 2)),
        Seen(3, "u1", at(11, 3)),
        Seen(4, "u3", at(9, day=1)),
    )
    apply(store, Seen(5, "u2", at(11, 5)), Seen(6, "u1", at(10, 6)))

    hourly = by_window(store, user_sets=True)
    assert hourly[("control", "click", at(10))].user_ids == frozenset({"u1", "u2"})
    assert hourly[("control", "click", at(11))].user_ids == frozenset({"u1", "u2"})
    daily = by_window(store, DAILY, user_sets=True)
    assert daily[("control", "click", DAY)].user_ids == frozenset({"u1", "u2"})
    assert daily[("control", "click", DAY + timedelta(days=1))].user_ids == frozenset({"u3"})
    [to_date] = by_window(store, Granularity.EXPERIMENT, user_sets=True).values()
    assert to_date.user_ids == frozenset({"u1", "u2", "u3"})
    assert to_date.measures.unique_users == 3
    assert [s.measures.unique_users for s in by_window(store).values()] == [2, 2, 1]


def test_snapshots_filter_by_granularity_and_time_range(store: MetricStore) -> None:
    apply(
        store,
        Seen(1, "u1", at(10, 1)),
        Seen(2, "u1", at(11, 1)),
        Seen(3, "u1", at(12, 1)),
        Seen(4, "u1", at(9, day=1)),
        Seen(5, "u1", at(10, 1), experiment_id="exp-2"),
    )

    def windows(
        granularity: Granularity, start: datetime | None, end: datetime | None
    ) -> list[datetime]:
        return [s.key.window_start for s in store.snapshots("exp-1", granularity, start, end)]

    assert windows(HOUR, None, None) == [at(10), at(11), at(12), at(9, day=1)]
    assert windows(HOUR, at(11), at(12)) == [at(11)]
    assert windows(HOUR, at(10, 30), None) == [at(11), at(12), at(9, day=1)]
    assert windows(HOUR, None, at(11, 30)) == [at(10), at(11)]
    assert windows(DAILY, None, None) == [DAY, DAY + timedelta(days=1)]
    assert windows(DAILY, DAY + timedelta(hours=1), None) == [DAY + timedelta(days=1)]
    assert [s.key.experiment_id for s in store.snapshots("exp-2", DAILY)] == ["exp-2"]
    assert store.snapshots("exp-unknown", HOUR) == []


def test_value_sums_are_exact_decimals(store: MetricStore) -> None:
    apply(
        store,
        Seen(1, "u1", at(10, 1), metric="purchase", value=0.1),
        Seen(2, "u2", at(10, 2), metric="purchase", value=0.2),
        Seen(3, "u3", at(10, 3), metric="purchase", value=19.99),
        Seen(4, "u4", at(10, 4), metric="purchase", value=1e-7),
        Seen(5, "u5", at(10, 5), metric="purchase"),
    )
    apply(store, Seen(6, "u1", at(10, 6), metric="purchase", value=123456789.01))

    snapshot = by_window(store)[("control", "purchase", at(10))]
    assert snapshot.measures.value_sum == Decimal("123456809.3000001")
    assert (snapshot.measures.event_count, snapshot.measures.value_count) == (6, 5)


def test_identifiers_containing_key_separators_stay_apart(store: MetricStore) -> None:
    apply(
        store,
        Seen(1, "u1", at(10, 1), experiment_id="exp#1", variant_id="a"),
        Seen(2, "u2", at(10, 2), experiment_id="exp", variant_id="1#a"),
        Seen(3, "u3", at(10, 3), experiment_id="exp", variant_id="1#a"),
    )

    assert counts(by_window(store, experiment_id="exp#1")[("a", "click", at(10))]) == (
        1,
        Decimal(0),
        0,
        1,
    )
    assert counts(by_window(store, experiment_id="exp")[("1#a", "click", at(10))]) == (
        2,
        Decimal(0),
        0,
        2,
    )


def test_past_the_deadline_nothing_is_applied_and_all_is_reported_unfinished(
    store: MetricStore,
) -> None:
    deltas = deltas_of(
        [
            Seen(7, "u1", at(10, 1)),
            Seen(9, "u2", at(11, 1)),
            Seen(3, "u3", at(10, 1), shard_id=SHARD_B),
        ]
    )

    report = store.apply(deltas, Expired())

    assert report.cut == ShardCut({SHARD_A: 7, SHARD_B: 3})
    assert store.snapshots("exp-1", HOUR) == []


def test_successive_deltas_of_one_counter_and_shard_in_one_call_all_count(
    store: MetricStore,
) -> None:
    # Sent concurrently, the later delta could raise the watermark above the earlier's records.
    deltas = [
        delta
        for first in range(1, 40, 3)
        for delta in deltas_of([Seen(n, f"u{n}", at(10, n)) for n in (first, first + 1)])
    ]

    report = store.apply(deltas, NoDeadline())

    assert report.complete
    assert by_window(store)[("control", "click", at(10))].measures.event_count == 26
    assert by_window(store, DAILY)[("control", "click", DAY)].measures.event_count == 26


def test_an_empty_batch_is_complete(store: MetricStore) -> None:
    assert store.apply([], NoDeadline()).complete


# -- DynamoDB only: faults and costs ---------------------------------------------------------


@pytest.fixture
def recorder() -> CallRecorder:
    return CallRecorder()


def dynamodb_store(client: DynamoDBClient, table: str, **options: Any) -> DynamoDbMetricStore:
    options.setdefault("backoff", FAST_BACKOFF)
    return DynamoDbMetricStore(client, table, **options)


def single_try_client(endpoint_url: str) -> DynamoDBClient:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name=REGION,
        config=client_config(max_attempts=1),  # one try in all
    )


def test_a_lost_update_response_is_not_counted_twice(
    dynamodb_client: DynamoDBClient, aggregation_table: str
) -> None:
    faults = LoseResponses(times=1)
    faults.attach(dynamodb_client, "UpdateItem")
    store = dynamodb_store(dynamodb_client, aggregation_table, max_workers=1)

    report = store.apply(
        deltas_of([Seen(1, "u1", at(10, 1), value=5), Seen(2, "u2", at(10, 2))]), NoDeadline()
    )

    assert faults.lost == 1
    assert report.complete
    assert counts(by_window(store)[("control", "click", at(10))]) == (2, Decimal(5), 1, 2)
    assert counts(by_window(store, DAILY)[("control", "click", DAY)]) == (2, Decimal(5), 1, 2)


def test_lost_responses_of_every_update_still_count_each_record_once(
    dynamodb_client: DynamoDBClient, aggregation_table: str
) -> None:
    faults = LoseResponses(times=1_000)
    faults.attach(dynamodb_client, "UpdateItem")
    store = dynamodb_store(dynamodb_client, aggregation_table)

    apply(store, *(Seen(n, f"u{n % 3}", at(10 + n % 2, n)) for n in range(1, 9)))
    apply(store, *(Seen(n, f"u{n % 3}", at(10 + n % 2, n)) for n in range(5, 13)))

    assert faults.lost >= 4
    hourly = by_window(store)
    assert hourly[("control", "click", at(10))].measures.event_count == 6
    assert hourly[("control", "click", at(11))].measures.event_count == 6


def test_a_throttled_update_is_reported_from_its_first_unapplied_record_and_redelivery_heals(
    endpoint_url: str, aggregation_table: str
) -> None:
    client = single_try_client(endpoint_url)
    throttle = RefuseRequests(matches=lambda body: b"HOUR#2026-11-20T11" in body)
    throttle.attach(client, "UpdateItem")
    store = dynamodb_store(client, aggregation_table)
    batch = deltas_of(
        [
            Seen(1, "u1", at(10, 1)),
            Seen(2, "u2", at(11, 1)),
            Seen(3, "u3", at(11, 2)),
            Seen(4, "u4", at(10, 3), shard_id=SHARD_B),
        ]
    )

    report = store.apply(batch, NoDeadline())

    assert throttle.refused >= 1
    assert report.cut == ShardCut({SHARD_A: 2})
    assert any("ProvisionedThroughputExceededException" in p for p in report.problems)
    throttle.matches = lambda body: False
    assert store.apply(batch, NoDeadline()).complete
    hourly = by_window(store)
    assert counts(hourly[("control", "click", at(10))]) == (2, Decimal(0), 0, 2)
    assert counts(hourly[("control", "click", at(11))]) == (2, Decimal(0), 0, 2)
    assert by_window(store, DAILY)[("control", "click", DAY)].measures.event_count == 4


def test_throttled_markers_are_reported_from_the_first_record_of_their_users(
    endpoint_url: str, aggregation_table: str
) -> None:
    client = single_try_client(endpoint_url)
    throttle = RefuseRequests(matches=lambda body: b'"10#a29"' in body)
    throttle.attach(client, "UpdateItem")
    store = dynamodb_store(client, aggregation_table)
    records = [Seen(100 + n, f"a{n:02d}", at(10, n)) for n in range(30)]
    records += [Seen(200 + n, f"a{n:02d}", at(10, 30 + n)) for n in range(30)]

    report = store.apply(deltas_of(records), NoDeadline())

    assert throttle.refused >= 1
    # a29's hour marker is not known to be written: no counter of the shard passes its first
    # record, which a redelivery brings back with the user.
    assert report.cut == ShardCut({SHARD_A: 129})
    snapshot = by_window(store)[("control", "click", at(10))]
    assert (snapshot.measures.event_count, snapshot.unique_users) == (29, 29)


def test_a_marker_refused_for_a_while_is_written_on_retry_and_counted(
    dynamodb_client: DynamoDBClient, aggregation_table: str
) -> None:
    tries = itertools.count()
    throttle = RefuseRequests(matches=lambda body: b'"10#u3"' in body and next(tries) < 2)
    throttle.attach(dynamodb_client, "UpdateItem")
    store = dynamodb_store(dynamodb_client, aggregation_table)

    apply(store, *(Seen(n, f"u{n}", at(10, n)) for n in range(1, 11)))

    assert throttle.refused == 2
    assert by_window(store)[("control", "click", at(10))].unique_users == 10


def test_a_marker_still_refused_after_retries_leaves_its_users_first_record_unfinished(
    endpoint_url: str, aggregation_table: str
) -> None:
    client = single_try_client(endpoint_url)
    throttle = RefuseRequests(matches=lambda body: b'"10#u3"' in body)
    throttle.attach(client, "UpdateItem")
    store = dynamodb_store(client, aggregation_table)

    report = store.apply(
        deltas_of(
            [Seen(11, "u1", at(10, 1)), Seen(12, "u3", at(10, 2)), Seen(13, "u2", at(10, 3))]
        ),
        NoDeadline(),
    )

    assert report.cut == ShardCut({SHARD_A: 12})
    snapshot = by_window(store)[("control", "click", at(10))]
    assert (snapshot.measures.event_count, snapshot.unique_users) == (1, 1)
    redelivered = store.apply(
        deltas_of([Seen(12, "u3", at(10, 2)), Seen(13, "u2", at(10, 3))]), NoDeadline()
    )
    assert redelivered.cut == ShardCut({SHARD_A: 12})


def test_a_missing_table_fails_loudly(dynamodb_client: DynamoDBClient, unique_name: str) -> None:
    store = dynamodb_store(dynamodb_client, f"{unique_name}-missing")

    with pytest.raises(InfrastructureConfigurationError, match="ResourceNotFoundException"):
        store.apply(deltas_of([Seen(1, "u1", at(10, 1))]), NoDeadline())


def test_a_batch_of_200_counters_is_written_concurrently_and_exactly(
    dynamodb_client: DynamoDBClient, aggregation_table: str
) -> None:
    # The first two updates wait for each other: done one after the other, the barrier breaks.
    barrier = threading.Barrier(2, timeout=10)
    lock = threading.Lock()
    arrived: list[int] = []

    def meet(**_: Any) -> None:
        with lock:
            arrived.append(1)
            first_two = len(arrived) <= 2
        if first_two:
            barrier.wait()

    dynamodb_client.meta.events.register("before-send.dynamodb.UpdateItem", meet)
    store = dynamodb_store(dynamodb_client, aggregation_table, max_workers=8)
    records = [
        Seen(
            n,
            f"u{n % 7}",
            at((n // 10) % 20, n % 60),
            metric=f"m{(n // 2) % 5}",
            variant_id=f"v{n % 2}",
        )
        for n in range(400)
    ]
    deltas = deltas_of(records)
    hourly_keys = {d.key for d in deltas if d.key.granularity is HOUR}

    apply(store, *records)

    assert len(hourly_keys) == 200
    assert not barrier.broken
    snapshots = store.snapshots("exp-1", HOUR)
    assert {s.key for s in snapshots} == hourly_keys
    for snapshot in snapshots:
        mine = [
            r
            for r in records
            if (r.variant_id, r.metric, r.timestamp.hour)
            == (snapshot.key.variant_id, snapshot.key.metric, snapshot.key.window_start.hour)
        ]
        assert snapshot.measures.event_count == len(mine)
        assert snapshot.unique_users == len({r.user_id for r in mine})


def test_markers_this_container_wrote_are_not_written_again(
    dynamodb_client: DynamoDBClient, aggregation_table: str, recorder: CallRecorder
) -> None:
    store = dynamodb_store(dynamodb_client, aggregation_table)
    apply(store, Seen(1, "u1", at(10, 1)), Seen(2, "u2", at(10, 2)))
    recorder.attach(dynamodb_client)

    apply(store, Seen(3, "u1", at(10, 3)), Seen(4, "u2", at(10, 4)))
    apply(store, Seen(5, "u3", at(10, 5)))

    assert recorder.updates("USERS#") == 3  # u3's hour, day and experiment-to-date markers
    assert counts(by_window(store)[("control", "click", at(10))]) == (5, Decimal(0), 0, 3)


def test_markers_carry_an_expiry_when_a_retention_is_set(
    dynamodb_client: DynamoDBClient, aggregation_table: str
) -> None:
    retained = DynamoDbUniqueUserMarkers(dynamodb_client, aggregation_table, ttl_days=30)
    store = dynamodb_store(dynamodb_client, aggregation_table, markers=retained)
    apply(store, Seen(1, "u1", at(10, 1)))

    items = dynamodb_client.scan(TableName=aggregation_table)["Items"]
    markers = {
        i["sort_key"]["S"]: int(i["expires_at"]["N"])
        for i in items
        if i["partition_key"]["S"].startswith("USERS#")
    }
    assert set(markers) == {"10#u1", "D#u1", "u1"}
    end_of_day_and_30 = int((DAY + timedelta(days=31)).timestamp())
    assert markers["10#u1"] == markers["D#u1"] == end_of_day_and_30
    # The experiment to date has no end: its markers are kept 30 days from their writing.
    written_and_30 = datetime.now(UTC) + timedelta(days=30)
    assert abs(markers["u1"] - written_and_30.timestamp()) < 600
    assert all("expires_at" not in i for i in items if i["partition_key"]["S"].startswith("EXP#"))


def test_the_lambda_path_calls_only_what_the_function_is_granted(
    dynamodb_client: DynamoDBClient, aggregation_table: str, recorder: CallRecorder
) -> None:
    recorder.attach(dynamodb_client)
    store = dynamodb_store(dynamodb_client, aggregation_table)

    apply(store, Seen(1, "u1", at(10, 1), value=1), Seen(2, "u2", at(11, 1)))
    apply(store, Seen(1, "u1", at(10, 1), value=1), Seen(2, "u2", at(11, 1)))

    assert recorder.actions <= LAMBDA_PERMISSIONS[Resource.AGGREGATION_TABLE]
    for action, partition_keys in recorder.partition_keys.items():
        prefixes = tuple(LAMBDA_PARTITION_KEY_PREFIXES[action])
        assert all(key.startswith(prefixes) for key in partition_keys), action
    tables = {
        table
        for _, _, params in recorder.operations
        for table in (params.get("TableName"), *params.get("RequestItems", {}))
        if table is not None
    }
    assert tables == {aggregation_table}
    recorder.operations.clear()
    store.snapshots("exp-1", HOUR)
    assert recorder.actions == {"dynamodb:Query"}


# -- what DynamoDB refuses, both stores refuse alike ----------------------------------------


@pytest.mark.parametrize("value", [1e200, 1e-200])
def test_a_record_whose_number_dynamodb_cannot_store_is_refused_and_the_rest_applied(
    store: MetricStore, value: float
) -> None:
    records = [
        Seen(1, "u1", at(10, 1), value=2.5),
        Seen(2, "u2", at(10, 2), value=value),
        Seen(3, "u3", at(10, 3), value=1.5),
        Seen(4, "u4", at(10, 4)),
    ]

    report = store.apply(deltas_of(records), NoDeadline())

    assert report.complete
    assert set(report.refused) == {(SHARD_A, 2)}
    assert "magnitude" in report.refused[(SHARD_A, 2)]
    # The refused record's user is marked: markers are written apart from the counters.
    assert counts(by_window(store)[("control", "click", at(10))]) == (3, Decimal("4.0"), 2, 4)
    assert counts(by_window(store, DAILY)[("control", "click", DAY)]) == (3, Decimal("4.0"), 2, 4)


def test_a_sum_beyond_dynamodb_range_is_refused_for_the_record_that_would_overflow_it(
    store: MetricStore,
) -> None:
    apply(store, Seen(1, "u1", at(10, 1), value=5e125))

    report = store.apply(deltas_of([Seen(2, "u2", at(10, 2), value=5e125)]), NoDeadline())

    assert set(report.refused) == {(SHARD_A, 2)}
    assert "overflow" in report.refused[(SHARD_A, 2)].lower()
    assert counts(by_window(store)[("control", "click", at(10))]) == (1, Decimal("5E+125"), 1, 2)


def test_a_sum_that_would_need_more_than_38_digits_is_refused_not_rounded(
    store: MetricStore,
) -> None:
    apply(store, Seen(1, "u1", at(10, 1), value=1e30))

    report = store.apply(deltas_of([Seen(2, "u2", at(10, 2), value=1e-10)]), NoDeadline())

    assert set(report.refused) == {(SHARD_A, 2)}
    assert counts(by_window(store)[("control", "click", at(10))])[1] == Decimal("1E+30")


def test_a_user_whose_marker_key_dynamodb_cannot_hold_is_refused_and_counted_nowhere_else(
    store: MetricStore,
) -> None:
    too_long = "\U0001f600" * 256  # 1,024 bytes: the marker's sort key is over DynamoDB's limit
    report = store.apply(
        deltas_of([Seen(1, "u1", at(10, 1)), Seen(2, too_long, at(10, 2))]), NoDeadline()
    )

    assert report.complete
    assert set(report.refused) == {(SHARD_A, 2)}
    hourly = by_window(store)[("control", "click", at(10))]
    assert hourly.unique_users == 1


def test_the_longest_identifiers_the_contract_accepts_make_keys_the_store_holds(
    store: MetricStore,
) -> None:
    # Worst cases of the contract: 256 UTF-8 bytes that the key layout escapes threefold ('%'),
    # a user id of 256 bytes, and the longest metric name (64 characters).
    escaped = "%" * IDENTIFIER_MAX_BYTES
    longest_user = "\U0001f600" * (IDENTIFIER_MAX_BYTES // 4)
    metric = "m" * 64
    with pytest.raises(ValidationError):
        Seen(9, "u", at(10), metric="m" * 65).event()
    seen = [
        Seen(1, longest_user, at(10, 1), metric, experiment_id=escaped, variant_id=escaped),
        Seen(2, escaped, at(10, 2), metric, experiment_id=escaped, variant_id=escaped),
    ]

    report = store.apply(deltas_of(seen), NoDeadline())

    assert report.complete
    assert report.refused == {}
    [hourly] = store.snapshots(escaped, Granularity.HOUR)
    assert (hourly.key.variant_id, hourly.key.metric) == (escaped, metric)
    assert (hourly.measures.event_count, hourly.unique_users) == (2, 2)


# -- forward progress: a redelivery costs requests only for what is not yet durable ---------


def test_a_redelivery_to_a_warm_container_sends_no_update_for_counters_already_applied(
    dynamodb_client: DynamoDBClient, aggregation_table: str, recorder: CallRecorder
) -> None:
    recorder.attach(dynamodb_client)
    store = dynamodb_store(dynamodb_client, aggregation_table)
    first = [Seen(n, f"u{n}", at(10 + n % 2, n)) for n in range(1, 7)]
    apply(store, *first)
    counters, markers = recorder.updates("EXP#"), recorder.updates("USERS#")

    apply(store, *first, Seen(7, "u7", at(11, 7)))

    assert counters == 4  # hour 10, hour 11, the day and the experiment to date
    assert markers == 6 * 3
    # The redelivery brings one new record: only its three counters and markers are sent.
    assert recorder.updates("EXP#") - counters == 3
    assert recorder.updates("USERS#") - markers == 3
    assert counts(by_window(store, DAILY)[("control", "click", DAY)]) == (7, Decimal(0), 0, 7)


def test_an_update_refused_for_a_while_is_retried_within_the_call_until_it_lands(
    endpoint_url: str, aggregation_table: str
) -> None:
    client = single_try_client(endpoint_url)
    refusals = iter(range(3))
    throttle = RefuseRequests(matches=lambda body: next(refusals, None) is not None)
    throttle.attach(client, "UpdateItem")
    store = dynamodb_store(client, aggregation_table, max_workers=1)

    report = store.apply(deltas_of([Seen(1, "u1", at(10, 1))]), NoDeadline())

    assert throttle.refused == 3
    assert report.complete
    assert by_window(store, DAILY)[("control", "click", DAY)].measures.event_count == 1


def test_an_expected_conditional_failure_after_a_retry_gives_the_retry_quota_back(
    endpoint_url: str, dynamodb_client: DynamoDBClient, aggregation_table: str
) -> None:
    records = [Seen(1, "u1", at(10, 1))]
    apply(dynamodb_store(dynamodb_client, aggregation_table), *records)
    client: DynamoDBClient = boto3.client(
        "dynamodb", endpoint_url=endpoint_url, region_name=REGION, config=client_config()
    )
    first_attempts = iter(range(1))  # the first try of the first update: a 500, then a retry
    RefuseRequests(
        matches=lambda body: next(first_attempts, None) is not None,
        code="InternalServerError",
        status=500,
    ).attach(client, "UpdateItem")
    cold = dynamodb_store(client, aggregation_table, max_workers=1)
    quota = _retry_quota_checker(client, "dynamodb")._quota  # type: ignore[attr-defined]

    apply(cold, *records)  # each retry is answered ConditionalCheckFailed: already applied

    assert quota.available_capacity == quota._max_capacity


def test_watermarks_say_how_far_each_shard_reached_on_each_counter(store: MetricStore) -> None:
    apply(
        store, Seen(3, "u1", at(10)), Seen(9, "u2", at(10)), Seen(4, "u1", at(11), shard_id=SHARD_B)
    )
    deltas = deltas_of([Seen(1, "u1", at(10)), Seen(1, "u1", at(11)), Seen(1, "u1", at(12))])
    hour_10, hour_11, hour_12 = sorted(
        {d.key for d in deltas if d.key.granularity is Granularity.HOUR}
    )
    [day] = {d.key for d in deltas if d.key.granularity is Granularity.DAY}

    assert store.watermarks([hour_10, hour_11, hour_12, day], SHARD_A) == {hour_10: 9, day: 9}
    assert store.watermarks([hour_10, hour_11, day], SHARD_B) == {hour_11: 4, day: 4}
    assert store.watermarks([], SHARD_A) == {}
