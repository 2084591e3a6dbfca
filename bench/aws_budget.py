"""AWS request budget and end-to-end wall time, against moto's server in a separate process.

The real Lambda handler (entrypoints.lambda_handler, wired by entrypoints.container) processes a
10,000-record batch of the reference workload; every request its boto3 clients send is counted
by botocore event hooks registered here (nothing in the product is instrumented for this). The
same events then go through the naive per-record handler a Powertools user would write first,
against the same server, and the two are compared.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import (
    KinesisStreamRecord,
)
from botocore.exceptions import ClientError

from domain.decoding import decode_record
from domain.events import AcceptedEvent, EventLimits
from domain.experiments import Assignment, Experiment, ExperimentStatus, Variant
from domain.metrics import GRANULARITIES, Measures, MetricKey, to_decimal
from domain.records import KinesisCoordinates, RawRecord
from infrastructure.aws.dynamodb_codec import MEASURES_ADD, measure_values
from infrastructure.dynamodb_layout import (
    counter_partition_key,
    counter_sort_key,
    marker_partition_key,
    marker_sort_key,
)
from operations.aws.provisioning import ResourceNames, ensure_aggregation_table, provision_all
from operations.aws.reference_data import DynamoDbReferenceDataWriter
from operations.event_source_emulator import EmulatedLambdaContext, lambda_context
from operations.synthetic.workload import Workload
from tests.reference_pipeline import reference_attribute

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

REGION = "eu-west-1"
DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}


@dataclass
class RequestCounter:
    """Counts the API calls a boto3 client makes (per service and operation), and DynamoDB's
    write units as billed for items under 1 KB: one per item written, two per item written in
    a transaction."""

    calls: Counter[str] = field(default_factory=Counter)
    write_units: int = 0

    def attach(self, client: Any) -> None:
        client.meta.events.register("provide-client-params", self._on_call)

    def _on_call(self, params: Mapping[str, Any], event_name: str, **_: Any) -> None:
        _hook, service, operation = event_name.split(".", 2)
        self.calls[f"{service}.{operation}"] += 1
        if service != "dynamodb":
            return
        if operation in DYNAMODB_WRITES:
            self.write_units += 1
        elif operation == "BatchWriteItem":
            self.write_units += sum(len(items) for items in params["RequestItems"].values())
        elif operation == "TransactWriteItems":
            self.write_units += 2 * len(params["TransactItems"])

    def service_total(self, service: str) -> int:
        return sum(n for name, n in self.calls.items() if name.startswith(f"{service}."))

    def per_thousand(self, events: int) -> dict[str, float]:
        return {name: 1000 * n / events for name, n in sorted(self.calls.items())}


# --- moto's server, as its own process -------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def moto_server() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("moto server did not start")
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


def _environment(endpoint: str) -> None:
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "Benchmark",
            "POWERTOOLS_LOG_LEVEL": "ERROR",
        }
    )
    os.environ.pop("AWS_PROFILE", None)


# --- the naive per-record handler ------------------------------------------------------------


class NaiveRecordHandler:
    """What one writes first with Powertools' BatchProcessor: each record looks up its user's
    assignments and each experiment with GetItem, then updates every hourly and daily counter
    with its own UpdateItem and puts a conditional unique-user marker. No archive, no dead
    letters (which only flatters it)."""

    def __init__(self, client: DynamoDBClient, names: ResourceNames, table: str) -> None:
        self._client = client
        self._names = names
        self._table = table
        self._limits = EventLimits()

    def __call__(self, record: KinesisStreamRecord) -> None:
        shard_id, _, _ = record.event_id.partition(":")
        raw = RawRecord(
            KinesisCoordinates(
                shard_id,
                record.kinesis.sequence_number,
                record.kinesis.partition_key,
                float(record.kinesis.approximate_arrival_timestamp),
            ),
            record.kinesis.data or "",
        )
        outcome = decode_record(raw, self._limits, datetime.now(UTC))
        if not isinstance(outcome, AcceptedEvent):
            raise ValueError(outcome.reason.value)
        event = outcome.event
        item = self._client.get_item(
            TableName=self._names.assignments_table, Key={"user_id": {"S": event.user_id}}
        ).get("Item", {})
        assignments = [
            Assignment(
                user_id=event.user_id,
                experiment_id=experiment_id,
                variant_id=entry["M"]["variant_id"]["S"],
                assigned_at=entry["M"]["assigned_at"]["S"],
            )
            for experiment_id, entry in item.get("assignments", {}).get("M", {}).items()
        ]
        experiments: dict[str, Experiment] = {}
        for assignment in assignments:
            found = self._client.get_item(
                TableName=self._names.experiments_table,
                Key={"experiment_id": {"S": assignment.experiment_id}},
            ).get("Item")
            if found:
                experiments[assignment.experiment_id] = Experiment(
                    experiment_id=assignment.experiment_id,
                    name=found["name"]["S"],
                    status=ExperimentStatus(found["status"]["S"]),
                    variants=tuple(
                        Variant(variant_id=v["M"]["variant_id"]["S"])
                        for v in found["variants"]["L"]
                    ),
                )
        value = None if event.value is None else to_decimal(event.value)
        for attribution in reference_attribute(outcome, assignments, experiments).attributions:
            for granularity in GRANULARITIES:
                key = MetricKey(
                    attribution.experiment_id,
                    attribution.variant_id,
                    event.event_type,
                    granularity,
                    granularity.window_start(event.timestamp),
                )
                self._client.update_item(
                    TableName=self._table,
                    Key={
                        "partition_key": {"S": counter_partition_key(key.experiment_id)},
                        "sort_key": {"S": counter_sort_key(key)},
                    },
                    UpdateExpression=MEASURES_ADD,
                    ExpressionAttributeValues=measure_values(Measures.of_records([value])),
                )
                if granularity is GRANULARITIES[0]:
                    try:
                        self._client.put_item(
                            TableName=self._table,
                            Item={
                                "partition_key": {
                                    "S": marker_partition_key(
                                        key.experiment_id,
                                        key.variant_id,
                                        key.metric,
                                        key.window_start,
                                    )
                                },
                                "sort_key": {"S": marker_sort_key(key.window_start, event.user_id)},
                            },
                            ConditionExpression="attribute_not_exists(sort_key)",
                        )
                    except ClientError as error:
                        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                            raise


# --- the run ---------------------------------------------------------------------------------


def lambda_event(records: Sequence[RawRecord]) -> dict[str, Any]:
    """The records as the Lambda service hands a Kinesis batch to the function."""
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.coordinates.partition_key,
                    "sequenceNumber": r.coordinates.sequence_number,
                    "data": r.data,
                    "approximateArrivalTimestamp": r.coordinates.approximate_arrival_timestamp,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{r.coordinates.shard_id}:{r.coordinates.sequence_number}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/event-processor",
                "awsRegion": "eu-west-1",
                "eventSourceARN": "arn:aws:kinesis:eu-west-1:123456789012:stream/experiment-events",
            }
            for r in records
        ]
    }


def bench_context() -> EmulatedLambdaContext:
    """A 15-minute invocation with 1,769 MB (one full vCPU), starting now."""
    return lambda_context(timeout_seconds=900, memory_limit_in_mb=1769)


def aws_figures(workload: Workload, batch_size: int, naive_records: int) -> dict[str, Any]:
    from entrypoints import lambda_handler

    records = workload.records()
    batch = records[:batch_size]
    with moto_server() as endpoint:
        _environment(endpoint)
        names = ResourceNames(
            aggregation_table="bench-aggregations",
            archive_bucket="bench-archive",
            dead_letter_queue="bench-dlq",
            stream="bench-events",
            assignments_table="bench-assignments",
            experiments_table="bench-experiments",
        )
        session = boto3.session.Session()
        dynamodb = session.client("dynamodb", region_name=REGION)
        resources = provision_all(
            names,
            dynamodb,
            session.client("s3", region_name=REGION),
            session.client("sqs", region_name=REGION),
            session.client("kinesis", region_name=REGION),
            REGION,
        )
        naive_table = "bench-naive-aggregations"
        ensure_aggregation_table(dynamodb, naive_table)
        in_batch = {entry.partition_key for entry in workload.entries[:batch_size]}
        writer = DynamoDbReferenceDataWriter(
            dynamodb, names.assignments_table, names.experiments_table
        )
        writer.write_experiments(workload.experiments)
        writer.write_assignments(a for a in workload.assignments if a.user_id in in_batch)
        os.environ.update(
            {
                "S3_BUCKET": names.archive_bucket,
                "DYNAMODB_TABLE": names.aggregation_table,
                "DLQ_URL": resources.dead_letter_queue_url,
                "ASSIGNMENTS_TABLE": names.assignments_table,
                "EXPERIMENTS_TABLE": names.experiments_table,
            }
        )

        lambda_handler.container.cache_clear()
        lambda_handler.logger.setLevel("ERROR")
        root = lambda_handler.container()
        ours = RequestCounter()
        for client in (root.dynamodb_client(), root.s3_client(), root.sqs_client()):
            ours.attach(client)
        started = time.perf_counter()
        with redirect_stdout(io.StringIO()):  # Powertools prints its metrics (EMF) to stdout
            response = lambda_handler.handler(lambda_event(batch), bench_context())
        ours_seconds = time.perf_counter() - started
        failures = len(response["batchItemFailures"])

        naive_client = session.client("dynamodb", region_name=REGION)
        naive = RequestCounter()
        naive.attach(naive_client)
        handler = NaiveRecordHandler(naive_client, names, naive_table)
        sample = batch[:naive_records]
        started = time.perf_counter()
        process_partial_response(
            event=lambda_event(sample),
            record_handler=handler,
            processor=BatchProcessor(event_type=EventType.KinesisDataStreams),
            context=bench_context(),  # type: ignore[arg-type]
        )
        naive_seconds = time.perf_counter() - started
        lambda_handler.container.cache_clear()

    naive_per_record = naive_seconds / len(sample)
    naive_batch_seconds = naive_per_record * len(batch)
    ours_dynamodb = ours.service_total("dynamodb")
    naive_dynamodb_per_event = naive.service_total("dynamodb") / len(sample)
    return {
        "records": len(batch),
        "reported_failures": failures,
        "requests_per_1000_events": ours.per_thousand(len(batch)),
        "requests_total": dict(sorted(ours.calls.items())),
        "dynamodb_write_units_per_1000_events": 1000 * ours.write_units / len(batch),
        "wall_seconds": ours_seconds,
        "naive": {
            "records_measured": len(sample),
            "requests_per_1000_events": naive.per_thousand(len(sample)),
            "dynamodb_write_units_per_1000_events": 1000 * naive.write_units / len(sample),
            "wall_seconds_measured": naive_seconds,
            "wall_seconds_for_batch": naive_batch_seconds,
            "extrapolated": len(sample) < len(batch),
        },
        "ratios": {
            "dynamodb_requests": naive_dynamodb_per_event * len(batch) / ours_dynamodb,
            "dynamodb_write_units": (naive.write_units / len(sample))
            / (ours.write_units / len(batch)),
            "wall_time": naive_batch_seconds / ours_seconds,
        },
    }
