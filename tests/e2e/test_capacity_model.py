"""The cost and capacity model against the real handler at small scale: the requests it predicts
from a workload's structure (counted at the in-memory ports: counter keys, new unique-user
markers, archive objects, dead letters, reference-data lookups) are the requests the handler
sends to moto's server, counted by botocore hooks."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from mypy_boto3_dynamodb import DynamoDBClient

from bench.aws_budget import handler_requests, profile_of, workload_structure
from bench.capacity_model import requests_for
from operations.aws.reference_data import DynamoDbReferenceDataWriter
from operations.synthetic.workload import USER_SESSIONS, WorkloadSpec, generate
from tests.e2e.conftest import Deployment

EVENTS = 300
BATCH_RECORDS = 100
RELATIVE_TOLERANCE = 0.05
"""Counts the model takes straight from the structure (counter updates, archive objects,
reference-data lookups) match exactly; those it packs from averages (markers 25 to a
BatchWriteItem, dead letters 10 to a SendMessageBatch) may differ by one request per batch."""


@pytest.mark.parametrize(
    "spec",
    [WorkloadSpec(events=EVENTS), replace(USER_SESSIONS, events=EVENTS)],
    ids=["reference", "sessions"],
)
def test_the_model_predicts_the_requests_the_handler_sends(
    spec: WorkloadSpec, deployment: Deployment, dynamodb_client: DynamoDBClient
) -> None:
    workload = generate(spec)
    users = {entry.partition_key for entry in workload.entries}
    writer = DynamoDbReferenceDataWriter(
        dynamodb_client, deployment.names.assignments_table, deployment.names.experiments_table
    )
    writer.write_experiments(workload.experiments)
    writer.write_assignments(a for a in workload.assignments if a.user_id in users)

    measured = handler_requests(workload.records(), BATCH_RECORDS, sizer=dynamodb_client)
    structure = workload_structure(workload, BATCH_RECORDS)
    profile = profile_of("small", "", workload, [structure], measured, cpu_seconds_per_event=0.0)
    predicted = requests_for(profile, EVENTS, BATCH_RECORDS)

    batches = math.ceil(EVENTS / BATCH_RECORDS)
    assert set(predicted) == set(measured.calls)
    for operation, count in measured.calls.items():
        allowed = max(RELATIVE_TOLERANCE * count, batches)
        assert abs(predicted[operation] - count) <= allowed, (operation, predicted, measured.calls)
    assert measured.calls["dynamodb.UpdateItem"] == sum(structure.counter_updates)
    assert measured.items_by_prefix["USERS#"] == sum(structure.new_markers)
    assert measured.write_units == sum(measured.write_units_by_prefix.values())
