"""The cost and capacity model against the real handler at small scale, in both unique-user
modes: the requests it predicts from a workload's structure (counted at the in-memory ports:
counter keys, new first-seen markers, sketch items read and written, archive objects, dead
letters, reference-data lookups) are the requests the handler sends to moto's server, counted
by botocore hooks."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from mypy_boto3_dynamodb import DynamoDBClient

from bench.aws_budget import handler_requests, profile_of, workload_structure
from bench.capacity_model import BATCH_GET_KEYS, EXACT, SKETCH, Mode, requests_for
from operations.aws.reference_data import DynamoDbReferenceDataWriter
from operations.synthetic.workload import USER_SESSIONS, WorkloadSpec, generate
from tests.e2e.conftest import Deployment

EVENTS = 200
BATCH_RECORDS = 100
"""Small: every new first-seen marker is a request of its own (about 7 per event of the
reference workload), and each costs moto a few milliseconds."""
RELATIVE_TOLERANCE = 0.05
"""Counts the model takes straight from the structure (counter updates, markers, sketch items,
archive objects, reference-data lookups) match exactly; dead letters, which it packs 10 to a
SendMessageBatch from an average, may differ by one request per batch."""


@pytest.mark.parametrize("mode", [EXACT, SKETCH])
@pytest.mark.parametrize(
    "spec",
    [WorkloadSpec(events=EVENTS), replace(USER_SESSIONS, events=EVENTS)],
    ids=["reference", "sessions"],
)
def test_the_model_predicts_the_requests_the_handler_sends(
    spec: WorkloadSpec,
    mode: Mode,
    deployment: Deployment,
    dynamodb_client: DynamoDBClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UNIQUE_USERS", mode)
    workload = generate(spec)
    users = {entry.partition_key for entry in workload.entries}
    writer = DynamoDbReferenceDataWriter(
        dynamodb_client, deployment.names.assignments_table, deployment.names.experiments_table
    )
    writer.write_experiments(workload.experiments)
    writer.write_assignments(a for a in workload.assignments if a.user_id in users)

    measured = handler_requests(workload.records(), BATCH_RECORDS, sizer=dynamodb_client)
    structure = workload_structure(workload, BATCH_RECORDS, mode=mode)
    profile = profile_of("small", "", workload, [structure], measured, cpu_seconds_per_event=0.0)
    predicted = requests_for(profile, EVENTS, BATCH_RECORDS)

    batches = math.ceil(EVENTS / BATCH_RECORDS)
    assert set(predicted) == set(measured.calls)
    for operation, count in measured.calls.items():
        allowed = max(RELATIVE_TOLERANCE * count, batches)
        assert abs(predicted[operation] - count) <= allowed, (operation, predicted, measured.calls)
    by_prefix = measured.requests_by_prefix
    assert by_prefix["UpdateItem EXP#"] == sum(structure.counter_updates)
    assert by_prefix["UpdateItem USERS#"] == sum(structure.new_markers)
    assert measured.items_by_prefix["USERS#"] == sum(structure.new_markers)
    assert by_prefix["UpdateItem SKETCH#"] == sum(structure.sketch_items_written)
    assert by_prefix["BatchGetItem SKETCH#"] == sum(
        math.ceil(items / BATCH_GET_KEYS) for items in structure.sketch_items_read
    )
    assert measured.write_units == sum(measured.write_units_by_prefix.values())
    if mode == EXACT:
        assert sum(structure.new_markers) > 0
        marker_keys = [key for key in measured.write_units_by_key if key.startswith("USERS#")]
        assert any("#ALL#B" in key for key in marker_keys)  # experiment-to-date markers too
        assert 0 < profile.hottest_marker_key_share < 1
    else:
        assert sum(structure.new_markers) == 0
        assert sum(structure.sketch_items_written) > 0
        assert profile.sketch_write_units_per_item >= 1
        assert profile.sketch_read_units_per_item > 0
