"""What a report of a large experiment reads, counted at moto's server.

The table is synthetic (`operations.synthetic.report_table`): the counter items the store would
hold after 14 days of an experiment with 1,000,000 users on 4 Kinesis shards, written straight
in the stored layout, and a few thousand of their first-seen markers. The users exist only in
the counters' numbers; the exact distinct counts are computed here from the generated activity,
apart from the builder's arithmetic.

Measured (moto 5.2): the day report of the 14 days, with or without bounds, makes 34 Queries
(the 16 counter write shards and the legacy partition, for the days and again for the experiment
to date) returning 360 items (336 day counters: 2 variants x 3 metrics x 14 days x 4 write
shards; 24 experiment-to-date counters), and one BatchGetItem of one item (the experiment):
whatever the number of users, and no marker Query.

The same report from user sets (`user_sets=True`) reads every hour and day marker of the range,
64 marker partitions and the legacy one per (variant, metric, day), and the 64 of each variant's
experiment-to-date items: on a table of 200 users holding every marker, 4,047 Queries returning
1,365 items, against 200 items from the stored counts (with 16 marker partitions: 1,071 Queries,
the same items). At 2,000 users (measured once with 16 marker partitions, too slow for the suite:
7 minutes of moto's Queries), 1,445 Queries returning 12,780 items, against 332. About 6.5 items
a user: some 6.5 million for the 1,000,000 users.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.config import Config
from mypy_boto3_dynamodb import DynamoDBClient

from application.reporting import ExperimentReport, UsersCounted, read_report
from domain.metrics import Granularity
from domain.statistics import EXPOSURE_METRIC
from infrastructure.aws.dynamodb_metric_store import DynamoDbMetricStore
from infrastructure.aws.dynamodb_repositories import DynamoDbExperimentRepository
from infrastructure.dynamodb_layout import MARKER_PARTITION_PREFIX
from operations.aws.provisioning import ensure_aggregation_table, ensure_experiments_table
from operations.aws.reference_data import experiment_item
from operations.local_aws import LocalAws
from operations.synthetic.report_table import (
    METRICS,
    VARIANTS,
    Activity,
    ReportTableSpec,
    counter_items,
    generate_activity,
    marker_items,
    write_items,
)
from tests.conftest import REGION

ITEMS_READ_BOUND = 400
"""A few hundred: the report's counters (days x variants x metrics x write shards in use, and the
experiment-to-date ones), never its users."""
MARKER_USERS = 1_000
"""Users whose markers the large table holds (about 3,500 items): enough that a marker Query
would show in the count."""
SMALL_USERS = 200
"""Users of the table that holds every marker, for the user-set report, which makes 1,445
Queries."""


COUNTED_WINDOWS = (Granularity.DAY, Granularity.EXPERIMENT)
"""The counters the tables hold. Not the hours': a day report's sort-key range never reaches them
(DynamoDB neither reads nor bills them; moto's Count leaves them out too), so they would only
slow the writing of the table (about 8,000 items)."""


@dataclass
class ReadCounter:
    """DynamoDB requests a client made, and the items their answers carried, by operation."""

    requests: dict[str, int] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)
    queried_partitions: list[str] = field(default_factory=list)
    marker_items: int = 0
    """Items of the Queries of marker partitions."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, client: DynamoDBClient) -> None:
        client.meta.events.register("before-parameter-build.dynamodb", self._remember_partition)
        client.meta.events.register("after-call.dynamodb", self._count)

    def _remember_partition(
        self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        if model.name == "Query":
            context["queried_partition"] = params["ExpressionAttributeValues"][":pk"]["S"]

    def _count(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        operation = model.name
        if operation == "Query":
            found = int(parsed.get("Count", 0))
        elif operation == "BatchGetItem":
            found = sum(len(items) for items in parsed.get("Responses", {}).values())
        elif operation == "GetItem":
            found = 1 if "Item" in parsed else 0
        else:
            found = 0
        with self._lock:
            self.requests[operation] = self.requests.get(operation, 0) + 1
            self.items[operation] = self.items.get(operation, 0) + found
            partition = context.get("queried_partition")
            if partition is not None:
                self.queried_partitions.append(partition)
                if partition.startswith(MARKER_PARTITION_PREFIX):
                    self.marker_items += found

    @property
    def items_read(self) -> int:
        return sum(self.items.values())

    @property
    def marker_queries(self) -> int:
        return sum(1 for p in self.queried_partitions if p.startswith(MARKER_PARTITION_PREFIX))


@dataclass(frozen=True)
class ReportTable:
    activity: Activity
    aggregation_table: str
    experiments_table: str
    endpoint_url: str

    def read(self, **bounds: Any) -> tuple[ExperimentReport, ReadCounter]:
        """The day report of the experiment, and what reading it took."""
        client: DynamoDBClient = boto3.client(
            "dynamodb",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            # As many connections as the store has workers querying at once.
            config=Config(max_pool_connections=32),
        )
        counter = ReadCounter()
        counter.attach(client)
        store = DynamoDbMetricStore(client, self.aggregation_table)
        try:
            report = read_report(
                store,
                DynamoDbExperimentRepository(client, self.experiments_table),
                self.activity.spec.experiment_id,
                Granularity.DAY,
                **bounds,
            )
        finally:
            store.close()
        return report, counter


def build_table(
    server: LocalAws,
    name: str,
    spec: ReportTableSpec,
    marker_users: int | None,
    granularities: tuple[Granularity, ...] = tuple(Granularity),
) -> ReportTable:
    client: DynamoDBClient = boto3.client(
        "dynamodb", endpoint_url=server.endpoint_url, region_name=REGION
    )
    aggregation_table, experiments_table = f"{name}-aggregations", f"{name}-experiments"
    ensure_aggregation_table(client, aggregation_table)
    ensure_experiments_table(client, experiments_table)
    client.put_item(TableName=experiments_table, Item=experiment_item(spec.experiment()))
    activity = generate_activity(spec)
    write_items(
        client,
        aggregation_table,
        counter_items(activity, granularities) + marker_items(activity, marker_users),
    )
    return ReportTable(activity, aggregation_table, experiments_table, server.endpoint_url)


@pytest.fixture(scope="module")
def million_users(moto_server: LocalAws) -> ReportTable:
    return build_table(moto_server, "scale-1m", ReportTableSpec(), MARKER_USERS, COUNTED_WINDOWS)


@pytest.fixture(scope="module")
def small_experiment(moto_server: LocalAws) -> ReportTable:
    spec = ReportTableSpec(experiment_id="exp-small", users=SMALL_USERS, seed=7)
    return build_table(moto_server, "scale-small", spec, None, COUNTED_WINDOWS)


@dataclass(frozen=True)
class ExactUsers:
    """The distinct users of each (variant, metric) over the whole activity, and those of them
    who were also exposed in the variant: counted from the users' events, not from counters."""

    did: dict[tuple[str, str], int]
    exposed_and_did: dict[tuple[str, str], int]


def exact_users(activity: Activity) -> ExactUsers:
    did_ever = {metric: activity.events[metric].any(axis=1) for metric in METRICS}
    did: dict[tuple[str, str], int] = {}
    exposed_and_did: dict[tuple[str, str], int] = {}
    for index, variant_id in enumerate(VARIANTS):
        in_variant = activity.variant == index
        for metric in METRICS:
            did[(variant_id, metric)] = int(np.count_nonzero(in_variant & did_ever[metric]))
            exposed_and_did[(variant_id, metric)] = int(
                np.count_nonzero(in_variant & did_ever[metric] & did_ever[EXPOSURE_METRIC])
            )
    return ExactUsers(did, exposed_and_did)


def assert_users_are_exact(report: ExperimentReport, activity: Activity) -> None:
    exact = exact_users(activity)
    assert {(t.variant_id, t.metric): t.unique_users for t in report.totals} == exact.did
    assert {(r.variant_id, r.metric): r.users for r in report.rates} == {
        key: users for key, users in exact.exposed_and_did.items() if key[1] != EXPOSURE_METRIC
    }
    assert {(r.variant_id, r.exposed_users) for r in report.rates} == {
        (variant_id, exact.did[(variant_id, EXPOSURE_METRIC)]) for variant_id in VARIANTS
    }


def test_the_generated_experiment_has_a_million_users_some_never_exposed(
    million_users: ReportTable,
) -> None:
    activity = million_users.activity
    exact = exact_users(activity)
    any_event = np.logical_or.reduce([activity.events[m].any(axis=1) for m in METRICS])
    assert int(np.count_nonzero(any_event)) == 1_000_000
    for variant_id in VARIANTS:
        for metric in ("click", "purchase"):
            # Users who did the metric without any exposure: the rates must leave them out.
            assert exact.did[(variant_id, metric)] > exact.exposed_and_did[(variant_id, metric)]
    assert set(np.unique(activity.shard).tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize("bounded", [False, True], ids=["all-time", "the-14-days"])
def test_a_14_day_report_of_a_million_users_reads_a_few_hundred_items_and_counts_them_exactly(
    million_users: ReportTable, bounded: bool
) -> None:
    spec = million_users.activity.spec
    bounds = {"start": spec.first_day, "end": spec.end} if bounded else {}

    report, reads = million_users.read(**bounds)

    print(f"\n1,000,000 users, {bounds or 'no bounds'}: {reads.requests} requests, {reads.items}")
    assert report.users_counted is UsersCounted.STORED
    assert reads.items_read <= ITEMS_READ_BOUND
    assert reads.marker_queries == 0
    assert len(report.windows) == len(VARIANTS) * len(METRICS) * spec.days
    assert_users_are_exact(report, million_users.activity)


def test_the_same_report_from_user_sets_reads_every_marker_of_the_range(
    small_experiment: ReportTable,
) -> None:
    activity = small_experiment.activity

    stored, stored_reads = small_experiment.read()
    from_sets, set_reads = small_experiment.read(user_sets=True)

    print(
        f"\n{activity.spec.users:,} users: stored counts read {stored_reads.items_read} items, "
        f"user sets {set_reads.items_read} items in {set_reads.requests} requests"
    )
    assert stored.users_counted is UsersCounted.STORED
    assert from_sets.users_counted is UsersCounted.USER_SETS
    assert_users_are_exact(stored, activity)
    assert_users_are_exact(from_sets, activity)
    user_days = sum(int(np.count_nonzero(activity.events[m])) for m in METRICS)
    # Every hour and day marker of the range, once: the user-days of each metric, twice.
    assert set_reads.marker_items == 2 * user_days
    assert stored_reads.marker_items == 0
    assert set_reads.items_read > 5 * stored_reads.items_read
