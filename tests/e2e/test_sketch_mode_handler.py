"""The Lambda handler with UNIQUE_USERS=sketch against DynamoDB (moto's server): the users go
into `SKETCH#` items, no first-seen marker is written, a redelivery changes no sketch, and the
report's estimates are the distinct users; a report in the other mode than the windows were
counted in says their users are missing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mypy_boto3_dynamodb import DynamoDBClient
from mypy_boto3_kinesis import KinesisClient
from rich.console import Console

from application.reporting import ExperimentReport, UsersCounted, read_report
from domain.metrics import Granularity
from entrypoints import lambda_handler
from entrypoints.lambda_handler import handler
from operations.cli.report_output import render_table, report_document
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
    batch = count_events(deployment, dynamodb_client, kinesis_client)
    table = deployment.names.aggregation_table
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


def count_events(
    deployment: Deployment, dynamodb_client: DynamoDBClient, kinesis_client: KinesisClient
) -> dict[str, Any]:
    """The handler counts `EVENTS`, in the mode the warm container was built with; the batch
    it was handed."""
    seed(dynamodb_client, deployment)
    kinesis_client.put_records(
        StreamName=deployment.names.stream,
        Records=[
            {"Data": event(event_id, user, metric), "PartitionKey": user}
            for event_id, user, metric in EVENTS
        ],
    )
    batch = lambda_event_from_stream(kinesis_client, deployment)
    assert handler(batch, fresh_context()) == {"batchItemFailures": []}
    return batch


def report_in_mode(mode: str, monkeypatch: pytest.MonkeyPatch) -> ExperimentReport:
    """The day report of a container built with UNIQUE_USERS=`mode`."""
    monkeypatch.setenv("UNIQUE_USERS", mode)
    lambda_handler.container.cache_clear()
    container = lambda_handler.container()
    return read_report(
        container.metric_store(),
        container.experiment_repository(),
        "checkout-button",
        Granularity.DAY,
        sketches=container.user_sketches() if mode == "sketch" else None,
    )


EVERY_COUNTER = {
    ("control", "exposure"),
    ("control", "click"),
    ("green", "exposure"),
    ("green", "click"),
}


@pytest.mark.usefixtures("sketch_mode")
def test_an_exact_report_of_windows_counted_in_sketch_mode_says_their_users_are_missing(
    deployment: Deployment,
    dynamodb_client: DynamoDBClient,
    kinesis_client: KinesisClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    count_events(deployment, dynamodb_client, kinesis_client)

    report = report_in_mode("exact", monkeypatch)

    assert report.users_counted is UsersCounted.USER_SETS
    assert {(w.key.variant_id, w.key.metric) for w in report.windows_without_users} == (
        EVERY_COUNTER
    )
    summary = report_document(report)["summary"]
    assert isinstance(summary, dict)
    assert summary["windows_without_unique_users"] == len(EVERY_COUNTER)
    assert summary["unique_users_exact"] is True
    table = Console(record=True, width=200)
    render_table(report, table)
    assert "4 of the 4 counters hold events but no unique users in user sets" in (
        table.export_text()
    )


def test_a_sketch_report_of_windows_counted_in_exact_mode_says_their_users_are_missing(
    deployment: Deployment,
    dynamodb_client: DynamoDBClient,
    kinesis_client: KinesisClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UNIQUE_USERS", "exact")
    lambda_handler.container.cache_clear()
    try:
        count_events(deployment, dynamodb_client, kinesis_client)
        exact = report_in_mode("exact", monkeypatch)
        sketched = report_in_mode("sketch", monkeypatch)
    finally:
        lambda_handler.container.cache_clear()

    assert exact.windows_without_users == ()
    exact_summary = report_document(exact)["summary"]
    assert isinstance(exact_summary, dict)
    assert exact_summary["windows_without_unique_users"] == 0
    assert sketched.users_counted is UsersCounted.SKETCHES
    assert {(w.key.variant_id, w.key.metric) for w in sketched.windows_without_users} == (
        EVERY_COUNTER
    )
    summary = report_document(sketched)["summary"]
    assert isinstance(summary, dict)
    assert summary["unique_users_exact"] is False
