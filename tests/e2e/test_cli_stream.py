"""`consume` drains a stream through the real handler; `demo` runs the whole pipeline end to end."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import boto3
import pytest

from domain.metrics import Granularity
from infrastructure.aws.dynamodb_metric_store import DynamoDbMetricStore
from operations.cli.stream import put_entries
from operations.synthetic.workload import Workload
from tests.conftest import REGION
from tests.e2e import cli_support
from tests.e2e.cli_support import run, seed_workload

# The shared fixtures of the command-line tests.
environment = cli_support.environment
provisioned = cli_support.provisioned
workload = cli_support.workload

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _expected_events(workload: Workload, experiment_id: str) -> int:
    """Valid, distinct events of users assigned to the experiment before the event happened."""
    assigned = {a.user_id: a for a in workload.assignments if a.experiment_id == experiment_id}
    seen: set[str] = set()
    count = 0
    for entry in workload.entries:
        if not entry.valid:
            continue
        event = json.loads(entry.data)
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        if event.get("experiment_id", experiment_id) != experiment_id:
            continue  # the event names another experiment: only that one counts it
        assignment = assigned.get(event["user_id"])
        moment = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        if assignment is not None and assignment.assigned_at <= moment:
            count += 1
    return count


def test_consume_until_drained_counts_every_event_once(
    provisioned: dict[str, str], endpoint_url: str, workload: Workload, tmp_path: Path
) -> None:
    seed_workload(provisioned, endpoint_url, workload, tmp_path)
    kinesis = boto3.client("kinesis", endpoint_url=endpoint_url, region_name=REGION)
    put_entries(kinesis, provisioned["KINESIS_STREAM"], workload.entries)

    result = run(
        ["consume", "--until-drained", "--batch-size", "150", "--format", "json"],
        {**provisioned, "PROGRESS_HEARTBEAT_SECONDS": "0.2"},
        endpoint_url,
    )

    assert result.exit_code == 0, result.output
    # Off a terminal: whole heartbeat lines on stderr, nothing redrawn, stdout only the result.
    beats = [line for line in result.stderr.splitlines() if "consume " in line]
    assert beats, result.stderr
    assert all(re.fullmatch(r"\[ *\d+\.\d s\] consume \S+: .+", line) for line in beats), beats
    assert "\r" not in result.stderr
    summary = json.loads(result.stdout)
    assert summary["records_done"] == len(workload.entries)
    assert summary["outcomes"] == {"success": summary["invocations"]}
    assert summary["invocations"] == 3
    client = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION)
    store = DynamoDbMetricStore(client, provisioned["DYNAMODB_TABLE"])
    for experiment in workload.experiments:
        daily = store.snapshots(experiment.experiment_id, Granularity.DAY)
        assert sum(s.measures.event_count for s in daily) == _expected_events(
            workload, experiment.experiment_id
        )


def test_consume_stops_with_exit_code_1_when_a_batch_keeps_failing(
    provisioned: dict[str, str], endpoint_url: str, workload: Workload
) -> None:
    kinesis = boto3.client("kinesis", endpoint_url=endpoint_url, region_name=REGION)
    put_entries(kinesis, provisioned["KINESIS_STREAM"], workload.entries[:20])
    missing_table = {**provisioned, "ASSIGNMENTS_TABLE": "no-such-table"}

    result = run(["consume", "--until-drained", "--max-retries", "1"], missing_table, endpoint_url)

    assert result.exit_code == 1
    assert "failed 2 times" in result.stderr


@pytest.mark.parametrize("position", ["trim_horizon", "EARLIEST"])
def test_consume_refuses_an_unknown_starting_position(
    environment: dict[str, str], position: str
) -> None:
    result = run(["consume", "--starting-position", position], environment)

    assert result.exit_code == 2
    assert "TRIM_HORIZON" in result.stderr


def test_the_demo_runs_the_whole_pipeline_and_writes_a_chart(
    environment: dict[str, str], tmp_path: Path
) -> None:
    chart = tmp_path / "demo.png"

    result = run(
        ["demo", "--events", "300", "--users", "200", "--experiments", "2", "--chart", str(chart)],
        environment,
    )

    assert result.exit_code == 0, result.output
    assert "drained through the Lambda handler: 300 records done" in result.stdout
    assert "sample ratio:" in result.stdout
    assert "Counters per variant and metric" in result.stdout
    assert chart.read_bytes().startswith(PNG_MAGIC)
