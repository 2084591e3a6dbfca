"""Fixtures and helpers of the command-line tests: isolated configuration, provisioned resources."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from application.ports import MetricSnapshot
from domain.records import RawRecord

# Imported here so that its Powertools logger binds to the test session's stdout, not to the
# output of the first runner invocation that happens to import it.
from entrypoints import lambda_handler  # noqa: F401
from operations.cli.app import app
from operations.seed_file import dump_seed
from operations.synthetic.workload import Workload, WorkloadSpec, generate
from tests.conftest import REGION

runner = CliRunner()


def environment_named(name: str) -> dict[str, str]:
    """The Lambda's configuration, naming resources after `name`."""
    return {
        "DYNAMODB_TABLE": f"{name}-aggregations",
        "ASSIGNMENTS_TABLE": f"{name}-assignments",
        "EXPERIMENTS_TABLE": f"{name}-experiments",
        "S3_BUCKET": f"{name}-archive",
        "KINESIS_STREAM": f"{name}-events",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }


@pytest.fixture
def environment(unique_name: str) -> dict[str, str]:
    """The Lambda's configuration, naming resources no other test uses."""
    return environment_named(unique_name)


def run(args: list[str], env: Mapping[str, str], endpoint_url: str | None = None) -> Result:
    extra = ["--endpoint-url", endpoint_url] if endpoint_url else []
    return runner.invoke(app, [*args, *extra], env=dict(env))


@pytest.fixture
def workload() -> Workload:
    return generate(WorkloadSpec(events=400, experiments=2, users=120, seed=3))


def provision(env: Mapping[str, str], endpoint_url: str, queue: str) -> dict[str, str]:
    """Provision through the CLI; the environment with the dead-letter queue's URL added."""
    result = run(["provision", "--queue", queue, "--format", "json"], env, endpoint_url)
    assert result.exit_code == 0, result.output
    described = json.loads(result.stdout)
    return {**env, "DLQ_URL": described["dead_letter_queue_url"]}


@pytest.fixture
def provisioned(environment: dict[str, str], endpoint_url: str, unique_name: str) -> dict[str, str]:
    return provision(environment, endpoint_url, f"{unique_name}-dlq")


def kinesis_event(workload: Workload, raw: Iterable[RawRecord] | None = None) -> dict[str, Any]:
    """A Kinesis event of the workload's records (or of `raw`, records of it)."""
    records = []
    for record in workload.records() if raw is None else raw:
        c = record.coordinates
        records.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": c.partition_key,
                    "sequenceNumber": c.sequence_number,
                    "data": record.data,
                    "approximateArrivalTimestamp": c.approximate_arrival_timestamp,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{c.shard_id}:{c.sequence_number}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/event-processor",
                "awsRegion": REGION,
                "eventSourceARN": f"arn:aws:kinesis:{REGION}:123456789012:stream/events",
            }
        )
    return {"Records": records}


def seed_workload(
    env: Mapping[str, str], endpoint_url: str, workload: Workload, tmp_path: Path
) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(dump_seed(workload.experiments, workload.assignments))
    result = run(["seed", str(seed_file)], env, endpoint_url)
    assert result.exit_code == 0, result.output


def same_counts(snapshots: list[MetricSnapshot]) -> list[tuple[object, ...]]:
    """What two runs of the same events must agree on: each counter's key and measures, and per
    experiment, variant and metric the exposed users who did it. Which of a user's two first
    events joined them (so which counter holds the join) depends on the order they were written
    in, so a counter's own `joined` may differ."""
    joined: dict[tuple[str, str, str], int] = {}
    for snapshot in snapshots:
        for metric, users in snapshot.joined.items():
            key = (snapshot.key.experiment_id, snapshot.key.variant_id, metric)
            joined[key] = joined.get(key, 0) + users
    return [(s.key, s.measures) for s in snapshots] + sorted(joined.items())


def counters(
    env: Mapping[str, str], endpoint_url: str, user_sets: bool = False
) -> list[MetricSnapshot]:
    """Every counter of the workload's experiments, of every granularity, as the table holds
    them (with `user_sets`, with their users)."""
    import boto3

    from domain.metrics import Granularity
    from infrastructure.aws.dynamodb_metric_store import DynamoDbMetricStore

    client = boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION)
    store = DynamoDbMetricStore(client, env["DYNAMODB_TABLE"])
    return [
        snapshot
        for experiment_id in ("exp-00", "exp-01")
        for granularity in Granularity
        for snapshot in store.snapshots(experiment_id, granularity, user_sets=user_sets)
    ]
