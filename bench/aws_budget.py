"""AWS request budget and end-to-end wall time, against moto's server in a separate process.

The real Lambda handler (entrypoints.lambda_handler, wired by entrypoints.container) processes a
10,000-record batch of the reference workload; every request its boto3 clients send is counted
by botocore event hooks registered here (nothing in the product is instrumented for this). The
same events then go through the naive per-record handler a Powertools user would write first,
against the same server, and the two are compared.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
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

from application.ports import NO_EARLIER_RECORDS, Deadline, EarlierRecords, WriteReport
from application.unique_users import MarkerClaims
from bench.capacity_model import (
    BATCH_GET_KEYS,
    EXACT,
    MODES,
    BatchCurve,
    Mode,
    WorkloadProfile,
    attribute_value_bytes,
    item_bytes,
    read_units,
    requests_by_kind,
    requests_for,
    write_units,
)
from domain.attribution import match_columns, running_candidates
from domain.decoding import decode_record
from domain.events import AcceptedEvent, EventLimits
from domain.experiments import Assignment, Experiment, ExperimentStatus, Variant
from domain.metrics import GRANULARITIES, Measures, MetricDelta, MetricKey, to_decimal
from domain.records import KinesisCoordinates, RawRecord
from domain.time import epoch_microseconds
from infrastructure.aws.dynamodb_codec import MEASURES_ADD, measure_values
from infrastructure.dynamodb_layout import (
    COUNTER_PARTITION_PREFIX,
    MARKER_PARTITION_PREFIX,
    SKETCH_ATTRIBUTE,
    SKETCH_PARTITION_PREFIX,
    WATERMARK_PREFIX,
    counter_partition_key,
    counter_sort_key,
    counter_write_shard,
    marker_key,
    sketch_partition_key,
)
from infrastructure.in_memory.repositories import (
    InMemoryAssignmentRepository,
    InMemoryExperimentRepository,
)
from infrastructure.in_memory.unique_user_markers import InMemoryUniqueUserMarkers
from infrastructure.in_memory.user_sketches import InMemoryUserSketches
from operations.aws.provisioning import ResourceNames, ensure_aggregation_table, provision_all
from operations.aws.reference_data import DynamoDbReferenceDataWriter
from operations.event_source_emulator import EmulatedLambdaContext, lambda_context
from operations.synthetic.workload import Workload

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

REGION = "eu-west-1"


@dataclass
class RequestCounter:
    """Counts the API calls boto3 clients make (per service and operation, and per partition-key
    prefix: counters `EXP#`, markers `USERS#`, sketches `SKETCH#`, event ids `EVENT#`, or the
    table for reference data), and what DynamoDB bills for them: write units per item written,
    its size rounded up to 1 KB, and read units per item read (4 KB, half for eventually
    consistent reads), by prefix. An UpdateItem is billed on the whole item it leaves, not on
    the request: a marker's is its item as the answer returned it (ALL_OLD) with the attributes
    the update sets, a sketch's its key and the attributes it sets (the whole item); a counter's
    (ADD) is read back with `sizer`, an uncounted client (without one, one unit). An update
    whose condition fails is billed too (DynamoDB charges the write). Also S3 PUTs and bytes and
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
    conditions_failed_by_prefix: Counter[str] = field(default_factory=Counter)
    read_units_by_prefix: defaultdict[str, float] = field(
        default_factory=lambda: defaultdict(float)
    )
    items_read_by_prefix: Counter[str] = field(default_factory=Counter)
    largest_item_by_prefix: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    s3_put_bytes: int = 0
    sqs_messages: int = 0
    handler_cpu_seconds: float = 0.0
    """The process's CPU time while the handler ran the batches (every thread's)."""
    own_cpu_seconds: float = 0.0
    """Of it, this counter's hooks' (and the items they read back)."""
    _sized: dict[tuple[str, str, str], Mapping[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, client: Any) -> None:
        client.meta.events.register("provide-client-params", self._timed(self._on_call))
        client.meta.events.register("after-call.dynamodb", self._timed(self._on_answer))

    def _timed(self, hook: Callable[..., None]) -> Callable[..., None]:
        """The hook, its CPU time (its thread's: an item read back included) added to
        `own_cpu_seconds`, which is not the handler's."""

        def timed(**kwargs: Any) -> None:
            started = time.thread_time()
            try:
                hook(**kwargs)
            finally:
                spent = time.thread_time() - started
                with self._lock:
                    self.own_cpu_seconds += spent

        return timed

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
        if operation == "UpdateItem":
            prefix = _prefix_of(params)
            if "Error" in parsed:
                with self._lock:
                    self.requests_by_prefix[f"UpdateItem {prefix}"] += 1
                    if parsed["Error"].get("Code") == "ConditionalCheckFailedException":
                        self.conditions_failed_by_prefix[prefix] += 1
                        self._billed(params.get("Key", {}) | parsed.get("Item", {}))
                return
            item = self._item_after_update(params, parsed)
            with self._lock:
                self.requests_by_prefix[f"UpdateItem {prefix}"] += 1
                self._written(item)
        elif operation == "BatchGetItem":
            with self._lock:
                for table, items in parsed.get("Responses", {}).items():
                    requested = params["RequestItems"][table]
                    consistent = bool(requested.get("ConsistentRead"))
                    keys = requested.get("Keys", [])
                    prefix = _prefix_of({"Key": keys[0], "TableName": table}) if keys else "?"
                    self.requests_by_prefix[f"BatchGetItem {prefix}"] += 1
                    for item in items:
                        units = read_units(item_bytes(item), consistent)
                        self.read_units += units
                        self.read_units_by_prefix[prefix] += units
                        self.items_read_by_prefix[prefix] += 1
        elif operation == "GetItem" and "Item" in parsed:
            with self._lock:
                consistent = bool(params.get("ConsistentRead"))
                self.read_units += read_units(item_bytes(parsed["Item"]), consistent)
        elif operation == "Query":
            with self._lock:
                consistent = bool(params.get("ConsistentRead"))
                size = sum(item_bytes(item) for item in parsed.get("Items", []))
                self.read_units += read_units(size, consistent)

    def _billed(self, item: Mapping[str, Any]) -> None:
        """A write that left no item of its own (a failed condition): billed, not counted."""
        units = write_units(item_bytes(item))
        prefix = _prefix_of({"Key": item})
        self.write_units += units
        self.write_units_by_prefix[prefix] += units
        self.write_units_by_key[_partition_key_of(item)] += units

    def _item_after_update(
        self, params: Mapping[str, Any], parsed: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """The whole item an UpdateItem left. An update that only SETs is known from the
        request: the item before it as the answer returned it (ALL_OLD: markers), or nothing
        else (sketches: their updates set every attribute). Otherwise (counters' ADD) the item
        is read back once per key and set of attribute names updated (a new shard's watermark
        is a new name): later updates of the same attributes change its size by a byte or two
        (a count gaining a digit), not its units."""
        assigned = _assigned_values(params)
        if assigned is not None and params.get("ReturnValues") == "ALL_OLD":
            return {**params["Key"], **parsed.get("Attributes", {}), **assigned}
        if assigned is not None and _prefix_of(params) == SKETCH_PARTITION_PREFIX:
            return {**params["Key"], **assigned}
        if self.sizer is None:
            return dict(params["Key"])  # the smallest item, one write unit
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


def _assigned_values(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The attributes an update of only `SET name = value, …` clauses writes, by name: a
    placeholder's value, or a number for a computed one (a marker's place among its item's, a
    digit or two). None for any other update."""
    expression = str(params.get("UpdateExpression", "")).strip()
    if not expression.upper().startswith("SET "):
        return None
    names = params.get("ExpressionAttributeNames", {})
    values = params.get("ExpressionAttributeValues", {})
    clauses, depth, current = [], 0, ""
    for character in expression[4:]:
        depth += {"(": 1, ")": -1}.get(character, 0)
        if character == "," and depth == 0:
            clauses.append(current)
            current = ""
        else:
            current += character
    clauses.append(current)
    assigned: dict[str, Any] = {}
    for clause in clauses:
        target, equals, value = clause.partition("=")
        if not equals or any(word in value.upper().split() for word in ("ADD", "REMOVE")):
            return None
        name = target.strip()
        assigned[names.get(name, name)] = values.get(value.strip(), {"N": "1"})
    return assigned


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
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            # A loaded machine may take longer to stop it; the measurements are done, so they
            # are kept rather than lost to the shutdown.
            process.kill()
            process.wait()


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
        # The product's attribution rule, one event at a time (what a per-record handler does).
        candidates = {event.user_id: running_candidates(assignments, experiments)}
        matches = match_columns([event], [epoch_microseconds(event.timestamp)], candidates)
        for experiment_id, variant_id in matches.variants[0]:
            for granularity in GRANULARITIES:
                key = MetricKey(
                    experiment_id,
                    variant_id,
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

    def mark(
        self,
        deltas: Sequence[MetricDelta],
        deadline: Deadline,
        earlier_records: EarlierRecords = NO_EARLIER_RECORDS,
    ) -> MarkerClaims:
        for delta in deltas:
            for user_id in delta.first_sequence_of_users():
                partition, sort = marker_key(delta.key, user_id)
                marker = (partition, f"{sort}|{delta.key.metric}")
                if marker not in self.seen:
                    self.seen.add(marker)
                    self.new_in_batch += 1
        return super().mark(deltas, deadline, earlier_records)


class _CountedSketches(InMemoryUserSketches):
    """The in-memory sketches, counting per batch the sketch items the DynamoDB adapter reads
    (one per counter and counter write shard the batch adds users to) and those it writes (the
    ones whose sketch the batch's users change: a batch whose users are all in an item already
    writes nothing to it)."""

    def __init__(self) -> None:
        super().__init__()
        self.read_in_batch: set[tuple[str, str]] = set()
        self.written_in_batch: set[tuple[str, str]] = set()

    def add(self, deltas: Sequence[MetricDelta], deadline: Deadline) -> WriteReport:
        items = {
            (
                sketch_partition_key(delta.key.experiment_id, counter_write_shard(delta.shard_id)),
                counter_sort_key(delta.key),
            )
            for delta in deltas
        }
        before = {item: self._version_of(item) for item in items}
        report = super().add(deltas, deadline)
        self.read_in_batch |= items
        self.written_in_batch |= {item for item in items if self._version_of(item) != before[item]}
        return report

    def _version_of(self, item: tuple[str, str]) -> int:
        stored = self._items.get(item)
        return 0 if stored is None else stored[1]


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
    """What a workload asks of the stores in one unique-user mode, counted at the ports of the
    in-memory back end (no AWS): per batch, the counter keys (one UpdateItem each), the new
    first-seen markers (exact mode: one conditional UpdateItem each), the sketch items read and
    written (sketch mode), archive objects, dead letters, and the reference-data lookups the
    container's cache lets through."""

    events: int
    batch_records: int
    counter_updates: tuple[int, ...]
    new_markers: tuple[int, ...]
    archive_objects: tuple[int, ...]
    dead_letters: tuple[int, ...]
    enrichment_requests: int
    cpu_seconds: float
    mode: Mode = EXACT
    sketch_items_read: tuple[int, ...] = ()
    sketch_items_written: tuple[int, ...] = ()


def workload_structure(
    workload: Workload, batch_records: int, events: int | None = None, mode: Mode = EXACT
) -> WorkloadStructure:
    from entrypoints.container import Container
    from entrypoints.settings import Settings

    container = Container()
    container.settings.override(Settings(back_end="memory", unique_users=mode))
    markers = _CountedMarkers()
    sketches = _CountedSketches()
    assignments = _CountedAssignments(workload.assignments)
    experiments = _CountedExperiments(workload.experiments)
    container.in_memory_unique_user_markers.override(markers)
    container.in_memory_user_sketches.override(sketches)
    container.in_memory_assignment_repository.override(assignments)
    container.in_memory_experiment_repository.override(experiments)
    processor = container.batch_processor()
    records = workload.records()[: events or len(workload.entries)]
    counters, new_markers, objects, letters = [], [], [], []
    sketches_read, sketches_written = [], []
    cpu = 0.0
    for start in range(0, len(records), batch_records):
        markers.new_in_batch = 0
        sketches.read_in_batch, sketches.written_in_batch = set(), set()
        started = time.process_time()
        result = processor.process(records[start : start + batch_records])
        cpu += time.process_time() - started
        counters.append(result.metric_keys_updated)
        new_markers.append(markers.new_in_batch)
        sketches_read.append(len(sketches.read_in_batch))
        sketches_written.append(len(sketches.written_in_batch))
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
        mode=mode,
        sketch_items_read=tuple(sketches_read),
        sketch_items_written=tuple(sketches_written),
    )


def profile_of(
    name: str,
    description: str,
    workload: Workload,
    structures: Sequence[WorkloadStructure],
    measured: RequestCounter,
    cpu_seconds_per_event: float,
    client_cpu_seconds_per_request: float = 0.0,
) -> WorkloadProfile:
    """The model's inputs: request structure counted in memory at several batch sizes (the
    first one's per-event figures), in the structures' unique-user mode; item sizes, write and
    read units and hot-key shares measured at moto's server by `measured`, in the same mode."""
    base = structures[0]
    valid = [entry.data for entry in workload.entries if entry.valid]
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
    reference_reads = sum(
        units for prefix, units in measured.read_units_by_prefix.items() if "#" not in prefix
    )

    def per_item(units_or_bytes: Counter[str], prefix: str) -> float:
        return units_or_bytes[prefix] / max(1, measured.items_by_prefix[prefix])

    return WorkloadProfile(
        name=name,
        description=description,
        event_bytes=sum(map(len, valid)) / len(valid),
        archive_bytes_per_event=measured.s3_put_bytes / base.events,
        cpu_seconds_per_event=cpu_seconds_per_event,
        markers_per_event=sum(base.new_markers) / base.events if base.mode == EXACT else 0.0,
        counter_updates=BatchCurve(
            tuple((s.batch_records, _mean(s.counter_updates, s)) for s in structures)
        ),
        archive_objects=BatchCurve(
            tuple((s.batch_records, _mean(s.archive_objects, s)) for s in structures)
        ),
        dead_letters_per_event=sum(base.dead_letters) / base.events,
        enrichment_requests_per_event=base.enrichment_requests / base.events,
        enrichment_read_units_per_event=reference_reads / base.events,
        marker_item_bytes=per_item(measured.item_bytes_by_prefix, MARKER_PARTITION_PREFIX),
        counter_item_bytes=measured.item_bytes_by_prefix["EXP#"] / max(1, counter_items),
        watermark_bytes_per_shard=watermark,
        hottest_marker_key_share=_hottest_share(measured, MARKER_PARTITION_PREFIX),
        hottest_counter_key_share=_hottest_share(measured, COUNTER_PARTITION_PREFIX),
        mode=base.mode,
        marker_write_units_per_item=per_item(
            measured.write_units_by_prefix, MARKER_PARTITION_PREFIX
        ),
        sketch_reads=_curve(structures, "sketch_items_read"),
        sketch_writes=_curve(structures, "sketch_items_written"),
        sketch_item_bytes=per_item(measured.item_bytes_by_prefix, SKETCH_PARTITION_PREFIX),
        sketch_write_units_per_item=per_item(
            measured.write_units_by_prefix, SKETCH_PARTITION_PREFIX
        ),
        sketch_read_units_per_item=measured.read_units_by_prefix[SKETCH_PARTITION_PREFIX]
        / max(1, measured.items_read_by_prefix[SKETCH_PARTITION_PREFIX]),
        hottest_sketch_key_share=_hottest_share(measured, SKETCH_PARTITION_PREFIX),
        sketch_overhead_bytes=_overhead_beside_sketch(measured),
        client_cpu_seconds_per_request=client_cpu_seconds_per_request,
    )


def _overhead_beside_sketch(measured: RequestCounter) -> float:
    """The largest sketch item's bytes other than its sketch's."""
    largest = measured.largest_item_by_prefix.get(SKETCH_PARTITION_PREFIX)
    if largest is None:
        return 0.0
    sketch = largest.get(SKETCH_ATTRIBUTE, {}).get("B", b"")
    return float(item_bytes(largest) - len(sketch))


def _hottest_share(measured: RequestCounter, prefix: str) -> float:
    """Of the write units of items under `prefix`, the share of the partition key with the
    most."""
    by_key = [n for key, n in measured.write_units_by_key.items() if key.startswith(prefix)]
    return max(by_key, default=0) / max(1, sum(by_key))


def _curve(structures: Sequence[WorkloadStructure], counts: str) -> BatchCurve:
    """A per-batch count of the structures as a curve; none where the mode makes none."""
    points = tuple(
        (s.batch_records, _mean(getattr(s, counts), s)) for s in structures if getattr(s, counts)
    )
    return BatchCurve(points if any(value > 0 for _, value in points) else ())


def _mean(values: Sequence[int], structure: WorkloadStructure) -> float:
    """Full batches only: a short last batch would understate the per-batch count."""
    whole = values[: structure.events // structure.batch_records] or values
    return sum(whole) / len(whole) if whole else 0.0


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
            started = time.process_time()
            with redirect_stdout(io.StringIO()):  # Powertools prints its metrics (EMF) to stdout
                response = lambda_handler.handler(lambda_event(batch), bench_context())
            counter.handler_cpu_seconds += time.process_time() - started
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
    cpu_seconds_per_event: Mapping[Mode, float]
    """The pipeline's, in each unique-user mode, measured in memory at one full vCPU."""


def capacity_figures(
    measurements: Sequence[CapacityMeasurement],
    batch_records: int,
    measured_events: int,
    curve_sizes: Sequence[int] = (100, 1_000, 10_000),
    modes: Sequence[Mode] = MODES,
) -> dict[str, dict[str, Any]]:
    """Per workload and unique-user mode (`UNIQUE_USERS`): the real handler's requests against
    moto's server for `measured_events` events in batches of `batch_records` (per 1,000
    events, by operation and key prefix, with write and read units as billed), the model's
    profile built from them and from the workload's structure counted in memory, and the
    model's prediction of the same run's requests beside the measured ones. Each run has a
    stack of its own, so every run starts from an empty table."""
    from dataclasses import asdict

    figures: dict[str, dict[str, Any]] = {}
    with moto_server() as endpoint:
        _environment(endpoint)
        session = boto3.session.Session()
        sizer = session.client("dynamodb", region_name=REGION)
        for measurement, mode in itertools.product(measurements, modes):
            workload = measurement.workload
            records = workload.records()[:measured_events]
            users = {entry.partition_key for entry in workload.entries[:measured_events]}
            _deploy(session, f"capacity-{measurement.name}-{mode}", workload, users)
            os.environ["UNIQUE_USERS"] = mode
            try:
                started = time.perf_counter()
                counter = handler_requests(records, batch_records, sizer)
                wall = time.perf_counter() - started
            finally:
                os.environ.pop("UNIQUE_USERS", None)
            structures = [workload_structure(workload, batch_records, measured_events, mode)]
            structures += [
                workload_structure(workload, size, mode=mode)
                for size in curve_sizes
                if size != batch_records
            ]
            events = len(records)
            requests = sum(counter.calls.values())
            # What the handler's process spent beyond the pipeline itself (the same batches in
            # memory) and the counter's hooks: botocore and the adapters around the requests.
            handler_cpu = counter.handler_cpu_seconds - counter.own_cpu_seconds
            client_cpu = max(0.0, handler_cpu - structures[0].cpu_seconds) / max(1, requests)
            profile = profile_of(
                measurement.name,
                measurement.description,
                workload,
                structures,
                counter,
                measurement.cpu_seconds_per_event[mode],
                client_cpu,
            )
            figures.setdefault(measurement.name, {})[mode] = {
                "description": measurement.description,
                "mode": mode,
                "events": events,
                "batch_records": batch_records,
                "wall_seconds": wall,
                "handler_cpu_seconds": counter.handler_cpu_seconds,
                "counting_cpu_seconds": counter.own_cpu_seconds,
                "in_memory_cpu_seconds": structures[0].cpu_seconds,
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
                "read_units_by_key_prefix_per_1000_events": {
                    name: 1000 * n / events
                    for name, n in sorted(counter.read_units_by_prefix.items())
                },
                "conditions_failed": dict(counter.conditions_failed_by_prefix),
                "s3_put_bytes_per_1000_events": 1000 * counter.s3_put_bytes / events,
                "sqs_messages_per_1000_events": 1000 * counter.sqs_messages / events,
                "model_requests_for_this_run": requests_for(profile, events, batch_records),
                "model_requests_by_kind_for_this_run": requests_by_kind(
                    profile, events, batch_records
                ),
                "measured_requests": dict(sorted(counter.calls.items())),
                "profile": asdict(profile),
            }
    return figures


def profile_from_figures(figures: Mapping[str, Any]) -> WorkloadProfile:
    """A profile as bench/results.json holds it."""
    fields = dict(figures["profile"])
    for curve in ("counter_updates", "archive_objects", "sketch_reads", "sketch_writes"):
        fields[curve] = BatchCurve(tuple((int(n), float(v)) for n, v in fields[curve]["points"]))
    return WorkloadProfile(**fields)
