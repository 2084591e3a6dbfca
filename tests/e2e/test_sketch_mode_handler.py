"""The Lambda handler with UNIQUE_USERS=sketch against DynamoDB (moto's server): the users go
into `SKETCH#` items, no first-seen marker is written, a redelivery changes no sketch, and the
report's estimates are the distinct users."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mypy_boto3_dynamodb import DynamoDBClient
from mypy_boto3_kinesis import KinesisClient

from application.reporting import UsersCounted, read_report
from domain.metrics import Granularity
from entrypoints import lambda_handler
from entrypoints.lambda_handler import handler
from tests.e2e.conftest import Deployment
from tests.e2e.test_lambda_handler import event, lambda_event_from_stream, seed
from tests.lambda_support import fresh_context

EVENTS = [
    ("e1", "alice", "exposure"),
    ("e2", "alice", "click"),
    ("e3", "bob", "exposure"),
    ("e4", "carol", "exposure"),
    ("e5", "carol", "click"),
    ("e6", "carol", "click"),
]


def items_by_prefix(client: DynamoDBClient, table: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for page in client.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            prefix = item["partition_key"]["S"].split("#", 1)[0]
            found[prefix] = found.get(prefix, 0) + 1
    return found


@pytest.fixture
def sketch_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The warm container of this test is built with UNIQUE_USERS=sketch, and dropped after."""
    monkeypatch.setenv("UNIQUE_USERS", "sketch")
    lambda_handler.container.cache_clear()
    yield
    lambda_handler.container.cache_clear()


@pytest.mark.usefixtures("sketch_mode")
def test_sketch_mode_counts_users_in_sketches_and_writes_no_markers(
    deployment: Deployment,
    dynamodb_client: DynamoDBClient,
    kinesis_client: KinesisClient,
) -> None:
    seed(dynamodb_client, deployment)
    kinesis_client.put_records(
        StreamName=deployment.names.stream,
        Records=[
            {"Data": event(event_id, user, metric), "PartitionKey": user}
            for event_id, user, metric in EVENTS
        ],
    )
    batch = lambda_event_from_stream(kinesis_client, deployment)
    table = deployment.names.aggregation_table

    assert handler(batch, fresh_context()) == {"batchItemFailures": []}
    stored = items_by_prefix(dynamodb_client, table)
    assert handler(batch, fresh_context()) == {"batchItemFailures": []}  # redelivered

    assert "USERS" not in stored
    assert stored["SKETCH"] > 0
    assert items_by_prefix(dynamodb_client, table) == stored
    container = lambda_handler.container()
    report = read_report(
        container.metric_store(),
        container.experiment_repository(),
        "checkout-button",
        Granularity.DAY,
        sketches=container.user_sketches(),
    )
    assert report.users_counted is UsersCounted.SKETCHES
    totals = {
        (t.variant_id, t.metric): (t.measures.event_count, t.unique_users) for t in report.totals
    }
    assert totals == {
        ("control", "exposure"): (1, 1),
        ("control", "click"): (1, 1),
        ("green", "exposure"): (2, 2),
        ("green", "click"): (2, 1),
    }
    rates = {(r.variant_id, r.metric): (r.users, r.exposed_users) for r in report.rates}
    assert rates == {("control", "click"): (1, 1), ("green", "click"): (1, 2)}
