"""AWS request budget and end-to-end wall time, against moto's server in a separate process.

The real Lambda handler (entrypoints.lambda_handler, wired by entrypoints.container) processes a
10,000-record batch of the reference workload; every request its boto3 clients send is counted
by botocore event hooks registered here (nothing in the product is instrumented for this). The
same events then go through the naive per-record handler a Powertools user would write first,
against the same server, and the two are compared.
"""

from __future__ import annotations

import io
import math
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
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

from application.ports import Deadline
from application.unique_users import MarkerClaims
from bench.capacity_model import (
    BATCH_GET_KEYS,
    BatchCurve,
    WorkloadProfile,
    attribute_value_bytes,
    item_bytes,
    read_units,
    requests_for,
    write_units,
)
from domain.decoding import decode_record
from domain.events import AcceptedEvent, EventLimits
from domain.experiments import Assignment, Experiment, ExperimentStatus, Variant
from domain.metrics import GRANULARITIES, Measures, MetricDelta, MetricKey, to_decimal
from domain.records import KinesisCoordinates, RawRecord
from infrastructure.aws.dynamodb_codec import MEASURES_ADD, measure_values
from infrastructure.dynamodb_layout import (
    WATERMARK_PREFIX,
    counter_partition_key,
    counter_sort_key,
    counter_write_shard,
    marker_key,
)
from infrastructure.in_memory.repositories import (
    InMemoryAssignmentRepository,
    InMemoryExperimentRepository,
)
from infrastructure.in_memory.unique_user_markers import InMemoryUniqueUserMarkers
from operations.aws.provisioning import ResourceNames, ensure_aggregation_table, provision_all
from operations.aws.reference_data import DynamoDbReferenceDataWriter
from operations.event_source_emulator import EmulatedLambdaContext, lambda_context
from operations.synthetic.workload import Workload
from tests.reference_pipeline import reference_attribute

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

REGION = "eu-west-1"


@dataclass
class RequestCounter:
    """Counts the API calls boto3 clients make (per service and operation, and per partition-key
    prefix: counters `EXP#`, markers `USERS#`, event ids `EVENT#`, or the table for reference
    data), and what DynamoDB bills for them: write units per item written, its size rounded up
    to 1 KB (an UpdateItem is billed on the whole item, not the request: with `sizer`, an
    uncounted client, the item is read back after the update; without one, one unit), and read
    units per item read (4 KB, half for eventually consistent reads). Also S3 PUTs and bytes and
    SQS messages. Hooks are botocore's events; the handler's workers call them from several
    threads."""

    sizer: Any = None
    calls: Counter[str] = field(default_factory=Counter)
    write_units: int = 0
    read_units: float = 0.0
    requests_by_prefix: Counter[str] = field(default_factory=Counter)
    items_by_prefix: Counter[str] = field(default_factory=Counter)
    item_bytes_by_prefix: Counter[str] = field(default_factory=Counter)
    write_units_by_prefix: Counter[str] = field(default_factory=Counter)
    write_units_by_key: Counter[str] = field(default_factory=Counter)
    largest_item_by_prefix: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    s3_put_bytes: int = 0
    sqs_messages: int = 0
    _sized: dict[tuple[str, str, str], Mapping[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, client: Any) -> None:
        client.meta.events.register("provide-client-params", self._on_call)
        client.meta.events.register("after-call.dynamodb", self._on_answer)

    def _on_call(
        self, params: Mapping[str, Any], event_name: str, context: dict[str, Any], **_: Any
    ) -> None:
        _hook, service, operation = event_name.split(".", 2)
        context["bench_params"] = params
        with self._lock:
            self.calls[f"{service}.{operation}"] += 1
            if service == "s3" and operation == "PutObject":
                body = params.get("Body", b"")
                self.s3_put_bytes += len(body) if isinstance(body, bytes | bytearray) else 0
            elif service == "sqs" and operation == "SendMessageBatch":
                self.sqs_messages += len(params["Entries"])
            elif service == "sqs" and operation == "SendMessage":
                self.sqs_messages += 1
            if service != "dynamodb":
                return
            if operation == "PutItem":
                self._written(params["Item"])
            elif operation == "BatchWriteItem":
                prefixes = set()
                for requests in params["RequestItems"].values():
                    for request in requests:
                        if "PutRequest" in request:
                            prefixes.add(self._written(request["PutRequest"]["Item"]))
                        else:
                            prefixes.add(self._written(request["DeleteRequest"]["Key"]))
                for prefix in prefixes:
                    self.requests_by_prefix[f"{operation} {prefix}"] += 1
                return
            elif operation == "TransactWriteItems":
                self.write_units += 2 * len(params["TransactItems"])
            if operation not in ("UpdateItem", "BatchGetItem"):
                self.requests_by_prefix[f"{operation} {_prefix_of(params)}"] += 1

    def _written(self, item: Mapping[str, Any]) -> str:
        prefix = _prefix_of({"Key": item})
        size = item_bytes(item)
        units = write_units(size)
        self.write_units += units
        self.items_by_prefix[prefix] += 1
        self.item_bytes_by_prefix[prefix] += size
        self.write_units_by_prefix[prefix] += units
        self.write_units_by_key[_partition_key_of(item)] += units
        largest = self.largest_item_by_prefix.get(prefix)
        if largest is None or item_bytes(largest) < size:
            self.largest_item_by_prefix[prefix] = item
        return prefix

    def _on_answer(
        self, parsed: Mapping[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        params = context.get("bench_params", {})
        operation = model.name
        if operation == "UpdateItem" and "Error" not in parsed:
            item = params["Key"]  # without a sizer: the smallest item, one write unit
            if self.sizer is not None:
                item = self._item_after_update(params)
            with self._lock:
                self.requests_by_prefix[f"UpdateItem {_prefix_of(params)}"] += 1
                self._written(item)
        elif operation == "BatchGetItem":
            with self._lock:
                for table, items in parsed.get("Responses", {}).items():
                    consistent = bool(params["RequestItems"][table].get("ConsistentRead"))
                    self.requests_by_prefix[f"BatchGetItem {_table_role(table)}"] += 1
                    for item in items:
                        self.read_units += read_units(item_bytes(item), consistent)
        elif operation == "GetItem" and "Item" in parsed:
            with self._lock:
                consistent = bool(params.get("ConsistentRead"))
                self.read_units += read_units(item_bytes(parsed["Item"]), consistent)
        elif operation == "Query":
            with self._lock:
                consistent = bool(params.get("ConsistentRead"))
                size = sum(item_bytes(item) for item in parsed.get("Items", []))
                self.read_units += read_units(size, consistent)

    def _item_after_update(self, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """The whole item an UpdateItem left, read back once per key and set of attribute names
        updated (a new shard's watermark is a new name): later updates of the same attributes
        change the item's size by a byte or two (a count gaining a digit), not its units."""
        names = params.get("ExpressionAttributeNames", {})
        sized = (
            params["TableName"],
            repr(sorted(params["Key"].items())),
            repr(sorted(names.items())),
        )
        with self._lock:
            known = self._sized.get(sized)
        if known is not None:
            return known
        answer = self.sizer.get_item(
            TableName=params["TableName"], Key=params["Key"], ConsistentRead=True
        )
        item: Mapping[str, Any] = answer.get("Item", params["Key"])
        with self._lock:
            self._sized[sized] = item
        return item

    def service_total(self, service: str) -> int:
        return sum(n for name, n in self.calls.items() if name.startswith(f"{service}."))

    def per_thousand(self, events: int) -> dict[str, float]:
        return {name: 1000 * n / events for name, n in sorted(self.calls.items())}


def _partition_key_of(item: Mapping[str, Any]) -> str:
    value = item.get("partition_key")
    if value is not None:
        return str(value["S"])
    ((name, first),) = list(item.items())[:1]
    return f"{name}={next(iter(first.values()))}"


def _prefix_of(params: Mapping[str, Any]) -> str:
    key = params.get("Key") or params.get("Item") or {}
    value = key.get("partition_key")
    if value is None:
        return _table_role(str(params.get("TableName", "?")))
    text = str(value["S"])
    head, hash_sign, _rest = text.partition("#")
    return f"{head}#" if hash_sign else text


def _table_role(table: str) -> str:
    return table.rsplit("-", 1)[-1]


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
                        "partition_key": {
                            "S": counter_partition_key(
                                key.experiment_id, counter_write_shard(shard_id)
                            )
                        },
                        "sort_key": {"S": counter_sort_key(key)},
                    },
                    UpdateExpression=MEASURES_ADD,
                    ExpressionAttributeValues=measure_values(Measures.of_records([value])),
                )
                partition, sort = marker_key(key, event.user_id)
                try:
                    self._client.put_item(
                        TableName=self._table,
                        Item={"partition_key": {"S": partition}, "sort_key": {"S": sort}},
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
        session = boto3.session.Session()
        in_batch = {entry.partition_key for entry in workload.entries[:batch_size]}
        names = _deploy(session, "bench", workload, in_batch)
        naive_table = "bench-naive-aggregations"
        ensure_aggregation_table(session.client("dynamodb", region_name=REGION), naive_table)

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


# --- the capacity model's inputs -------------------------------------------------------------


class _CountedMarkers(InMemoryUniqueUserMarkers):
    """The in-memory markers, counting the marker items a warm DynamoDB container would write:
    each (counter window, user) once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()
        self.new_in_batch = 0

    def mark(self, deltas: Sequence[MetricDelta], deadline: Deadline) -> MarkerClaims:
        for delta in deltas:
            for user_id in delta.first_sequence_of_users():
                partition, sort = marker_key(delta.key, user_id)
                marker = (partition, f"{sort}|{delta.key.metric}")
                if marker not in self.seen:
                    self.seen.add(marker)
                    self.new_in_batch += 1
        return super().mark(deltas, deadline)


class _CountedAssignments(InMemoryAssignmentRepository):
    """The in-memory assignments, counting the BatchGetItem requests the DynamoDB repository
    sends for the users the container's cache lets through (100 keys a request)."""

    requests = 0

    def assignments_for(self, user_ids: Collection[str]) -> dict[str, tuple[Assignment, ...]]:
        self.requests += math.ceil(len(user_ids) / BATCH_GET_KEYS)
        return super().assignments_for(user_ids)


class _CountedExperiments(InMemoryExperimentRepository):
    requests = 0

    def experiments(self, experiment_ids: Collection[str]) -> dict[str, Experiment]:
        self.requests += math.ceil(len(experiment_ids) / BATCH_GET_KEYS)
        return super().experiments(experiment_ids)


@dataclass(frozen=True, slots=True)
class WorkloadStructure:
    """What a workload asks of the stores, counted at the ports of the in-memory back end (no
    AWS): per batch, the counter keys (one UpdateItem each), the new unique-user markers, archive
    objects, dead letters, and the reference-data lookups the container's cache lets through."""

    events: int
    batch_records: int
    counter_updates: tuple[int, ...]
    new_markers: tuple[int, ...]
    archive_objects: tuple[int, ...]
    dead_letters: tuple[int, ...]
    enrichment_requests: int
    cpu_seconds: float


def workload_structure(
    workload: Workload, batch_records: int, events: int | None = None
) -> WorkloadStructure:
    from entrypoints.container import Container
    from entrypoints.settings import Settings

    container = Container()
    container.settings.override(Settings(back_end="memory"))
    markers = _CountedMarkers()
    assignments = _CountedAssignments(workload.assignments)
    experiments = _CountedExperiments(workload.experiments)
    container.in_memory_unique_user_markers.override(markers)
    container.in_memory_assignment_repository.override(assignments)
    container.in_memory_experiment_repository.override(experiments)
    processor = container.batch_processor()
    records = workload.records()[: events or len(workload.entries)]
    counters, new_markers, objects, letters = [], [], [], []
    cpu = 0.0
    for start in range(0, len(records), batch_records):
        markers.new_in_batch = 0
        started = time.process_time()
        result = processor.process(records[start : start + batch_records])
        cpu += time.process_time() - started
        counters.append(result.metric_keys_updated)
        new_markers.append(markers.new_in_batch)
        objects.append(result.archived_objects)
        letters.append(result.dead_lettered_total)
    return WorkloadStructure(
        events=len(records),
        batch_records=batch_records,
        counter_updates=tuple(counters),
        new_markers=tuple(new_markers),
        archive_objects=tuple(objects),
        dead_letters=tuple(letters),
        enrichment_requests=assignments.requests + experiments.requests,
        cpu_seconds=cpu,
    )


def profile_of(
    name: str,
    description: str,
    workload: Workload,
    structures: Sequence[WorkloadStructure],
    measured: RequestCounter,
    cpu_seconds_per_event: float,
) -> WorkloadProfile:
    """The model's inputs: request structure counted in memory at several batch sizes (the
    first one's per-event figures), item sizes, read units and hot-key shares measured at
    moto's server by `measured`."""
    base = structures[0]
    valid = [entry.data for entry in workload.entries if entry.valid]
    marker_items = measured.items_by_prefix["USERS#"]
    counter_items = measured.items_by_prefix["EXP#"]
    counter_largest = measured.largest_item_by_prefix.get("EXP#", {})
    watermark = next(
        (
            len(name.encode()) + attribute_value_bytes(value)
            for name, value in counter_largest.items()
            if name.startswith(WATERMARK_PREFIX)
        ),
        0,
    )
    markers_by_key = Counter(
        {k: n for k, n in measured.write_units_by_key.items() if k.startswith("USERS#")}
    )
    counters_by_key = Counter(
        {k: n for k, n in measured.write_units_by_key.items() if k.startswith("EXP#")}
    )
    return WorkloadProfile(
        name=name,
        description=description,
        event_bytes=sum(map(len, valid)) / len(valid),
        archive_bytes_per_event=measured.s3_put_bytes / base.events,
        cpu_seconds_per_event=cpu_seconds_per_event,
        markers_per_event=sum(base.new_markers) / base.events,
        counter_updates=BatchCurve(
            tuple((s.batch_records, _mean(s.counter_updates, s)) for s in structures)
        ),
        archive_objects=BatchCurve(
            tuple((s.batch_records, _mean(s.archive_objects, s)) for s in structures)
        ),
        dead_letters_per_event=sum(base.dead_letters) / base.events,
        enrichment_requests_per_event=base.enrichment_requests / base.events,
        enrichment_read_units_per_event=measured.read_units / base.events,
        marker_item_bytes=measured.item_bytes_by_prefix["USERS#"] / max(1, marker_items),
        counter_item_bytes=measured.item_bytes_by_prefix["EXP#"] / max(1, counter_items),
        watermark_bytes_per_shard=watermark,
        hottest_marker_key_share=max(markers_by_key.values(), default=0)
        / max(1, sum(markers_by_key.values())),
        hottest_counter_key_share=max(counters_by_key.values(), default=0)
        / max(1, sum(counters_by_key.values())),
    )


def _mean(values: Sequence[int], structure: WorkloadStructure) -> float:
    """Full batches only: a short last batch would understate the per-batch count."""
    whole = values[: structure.events // structure.batch_records] or values
    return sum(whole) / len(whole)


def handler_requests(
    records: Sequence[RawRecord], batch_records: int, sizer: Any
) -> RequestCounter:
    """Runs `records` through the real Lambda handler in batches, the environment already naming
    provisioned resources holding the reference data; every request its clients make is counted.
    A fresh container, as after a cold start, kept warm across the batches."""
    from entrypoints import lambda_handler

    lambda_handler.container.cache_clear()
    lambda_handler.logger.setLevel("ERROR")
    root = lambda_handler.container()
    counter = RequestCounter(sizer=sizer)
    for client in (root.dynamodb_client(), root.s3_client(), root.sqs_client()):
        counter.attach(client)
    try:
        for start in range(0, len(records), batch_records):
            batch = records[start : start + batch_records]
            with redirect_stdout(io.StringIO()):  # Powertools prints its metrics (EMF) to stdout
                response = lambda_handler.handler(lambda_event(batch), bench_context())
            if response["batchItemFailures"]:
                raise RuntimeError(f"the handler failed records: {response['batchItemFailures']}")
    finally:
        lambda_handler.container.cache_clear()
    return counter


def _deploy(session: Any, prefix: str, workload: Workload, users: Collection[str]) -> ResourceNames:
    """Provisions a stack's resources named by `prefix`, writes the reference data the users
    need, points the handler's environment at them, and gives their names."""
    names = ResourceNames(
        aggregation_table=f"{prefix}-aggregations",
        archive_bucket=f"{prefix}-archive",
        dead_letter_queue=f"{prefix}-dlq",
        stream=f"{prefix}-events",
        assignments_table=f"{prefix}-assignments",
        experiments_table=f"{prefix}-experiments",
    )
    dynamodb = session.client("dynamodb", region_name=REGION)
    resources = provision_all(
        names,
        dynamodb,
        session.client("s3", region_name=REGION),
        session.client("sqs", region_name=REGION),
        session.client("kinesis", region_name=REGION),
        REGION,
    )
    writer = DynamoDbReferenceDataWriter(dynamodb, names.assignments_table, names.experiments_table)
    writer.write_experiments(workload.experiments)
    writer.write_assignments(a for a in workload.assignments if a.user_id in users)
    os.environ.update(
        {
            "S3_BUCKET": names.archive_bucket,
            "DYNAMODB_TABLE": names.aggregation_table,
            "DLQ_URL": resources.dead_letter_queue_url,
            "ASSIGNMENTS_TABLE": names.assignments_table,
            "EXPERIMENTS_TABLE": names.experiments_table,
        }
    )
    return names


@dataclass(frozen=True, slots=True)
class CapacityMeasurement:
    name: str
    description: str
    workload: Workload
    cpu_seconds_per_event: float


def capacity_figures(
    measurements: Sequence[CapacityMeasurement],
    batch_records: int,
    measured_events: int,
    curve_sizes: Sequence[int] = (100, 1_000, 10_000),
) -> dict[str, Any]:
    """Per workload: the real handler's requests against moto's server for `measured_events`
    events in batches of `batch_records` (per 1,000 events, by operation and key prefix, with
    write and read units as billed), the model's profile built from them and from the
    workload's structure counted in memory, and the model's prediction of the same run's
    requests beside the measured ones."""
    from dataclasses import asdict

    figures: dict[str, Any] = {}
    with moto_server() as endpoint:
        _environment(endpoint)
        session = boto3.session.Session()
        sizer = session.client("dynamodb", region_name=REGION)
        for measurement in measurements:
            workload = measurement.workload
            records = workload.records()[:measured_events]
            users = {entry.partition_key for entry in workload.entries[:measured_events]}
            _deploy(session, f"capacity-{measurement.name}", workload, users)
            started = time.perf_counter()
            counter = handler_requests(records, batch_records, sizer)
            wall = time.perf_counter() - started
            structures = [workload_structure(workload, batch_records, measured_events)]
            structures += [
                workload_structure(workload, size) for size in curve_sizes if size != batch_records
            ]
            profile = profile_of(
                measurement.name,
                measurement.description,
                workload,
                structures,
                counter,
                measurement.cpu_seconds_per_event,
            )
            events = len(records)
            predicted = requests_for(profile, events, batch_records)
            figures[measurement.name] = {
                "description": measurement.description,
                "events": events,
                "batch_records": batch_records,
                "wall_seconds": wall,
                "requests_per_1000_events": counter.per_thousand(events),
                "requests_by_key_prefix_per_1000_events": {
                    name: 1000 * n / events
                    for name, n in sorted(counter.requests_by_prefix.items())
                },
                "write_units_per_1000_events": 1000 * counter.write_units / events,
                "write_units_by_key_prefix_per_1000_events": {
                    name: 1000 * n / events
                    for name, n in sorted(counter.write_units_by_prefix.items())
                },
                "read_units_per_1000_events": 1000 * counter.read_units / events,
                "s3_put_bytes_per_1000_events": 1000 * counter.s3_put_bytes / events,
                "sqs_messages_per_1000_events": 1000 * counter.sqs_messages / events,
                "model_requests_for_this_run": predicted,
                "measured_requests": dict(sorted(counter.calls.items())),
                "profile": asdict(profile),
            }
    return figures


def profile_from_figures(figures: Mapping[str, Any]) -> WorkloadProfile:
    """A profile as bench/results.json holds it."""
    fields = dict(figures["profile"])
    for curve in ("counter_updates", "archive_objects"):
        fields[curve] = BatchCurve(tuple((int(n), float(v)) for n, v in fields[curve]["points"]))
    return WorkloadProfile(**fields)
