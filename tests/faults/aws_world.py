"""The real Lambda handler's world at moto's server, under faults.

A proof stream provisioned in the documented layout, drained through
`entrypoints.lambda_handler.handler` by the event-source-mapping emulator with the container's
AWS clients replaced by faulty ones, and the stores read back to compare with the generator's
own expectation. `drain_in_own_process` does the same in a fresh interpreter: its own container,
caches and botocore retry quotas, as a shard's warm Lambda container has.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import unquote

import boto3
from mypy_boto3_dynamodb import DynamoDBClient
from mypy_boto3_kinesis import KinesisClient
from mypy_boto3_s3 import S3Client
from mypy_boto3_sqs import SQSClient

from domain.rejections import RejectionReason
from entrypoints import lambda_handler
from infrastructure.aws.client_config import client_config
from operations.aws.dead_letter_readers import SqsDeadLetterReader
from operations.aws.provisioning import ProvisionedResources, ResourceNames, provision_all
from operations.aws.reference_data import DynamoDbReferenceDataWriter
from operations.event_source_emulator import (
    EmulatorStats,
    EventSourceMappingEmulator,
    EventSourceMappingSettings,
    Handler,
    Invocation,
    LambdaContextLike,
)
from operations.synthetic.bad_records import SQS_MESSAGE_LIMIT
from operations.synthetic.stream import (
    EntryKind,
    GeneratedStream,
    PutResult,
    StreamSpec,
    generate_stream,
)
from tests.conftest import REGION
from tests.faults.botocore_hooks import attach_request_faults
from tests.faults.clock import RequestThroughput, SteppingClock, charge_retry_pauses
from tests.faults.expectations import (
    AggregateKey,
    VariantMetricKey,
    expected_aggregates,
    expected_dead_letters,
    expected_event_ids,
    expected_exposed_users_who_did,
)
from tests.faults.invocation import InvocationFaults
from tests.faults.plan import FaultKind, FaultPlan, FaultRates
from tests.faults.proxy import lossy_proxy


@dataclass(frozen=True, slots=True)
class AdminClients:
    """Fault-free clients straight to moto: provisioning, feeding the stream, reading back."""

    dynamodb: DynamoDBClient
    s3: S3Client
    sqs: SQSClient
    kinesis: KinesisClient

    @classmethod
    def at(cls, endpoint_url: str) -> AdminClients:
        return cls(
            boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION),
            boto3.client("s3", endpoint_url=endpoint_url, region_name=REGION),
            boto3.client("sqs", endpoint_url=endpoint_url, region_name=REGION),
            boto3.client("kinesis", endpoint_url=endpoint_url, region_name=REGION),
        )


def service_environment(resources: ProvisionedResources, endpoint_url: str) -> dict[str, str]:
    """The environment the Lambda would be deployed with, naming these resources."""
    names = resources.names
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "S3_BUCKET": names.archive_bucket,
        "DYNAMODB_TABLE": names.aggregation_table,
        "DLQ_URL": resources.dead_letter_queue_url,
        "ASSIGNMENTS_TABLE": names.assignments_table,
        "EXPERIMENTS_TABLE": names.experiments_table,
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


@dataclass(frozen=True, slots=True)
class ProofStream:
    """Resources provisioned for one run, the stream generated for it, and where it landed."""

    resources: ProvisionedResources
    stream: GeneratedStream
    placed: list[PutResult]

    @property
    def names(self) -> ResourceNames:
        return self.resources.names


def provision_proof_stream(
    admin: AdminClients, name: str, spec: StreamSpec, shards: int
) -> ProofStream:
    """Fresh resources named after `name`, the reference data written, the stream put."""
    names = ResourceNames(
        aggregation_table=f"{name}-aggregations",
        archive_bucket=f"{name}-archive",
        dead_letter_queue=f"{name}-dlq",
        stream=f"{name}-events",
        assignments_table=f"{name}-assignments",
        experiments_table=f"{name}-experiments",
        stream_shards=shards,
    )
    resources = provision_all(names, admin.dynamodb, admin.s3, admin.sqs, admin.kinesis, REGION)
    stream = generate_stream(spec)
    writer = DynamoDbReferenceDataWriter(
        admin.dynamodb, names.assignments_table, names.experiments_table
    )
    writer.write_experiments(stream.experiments)
    writer.write_assignments(stream.assignments, replace=True)  # tables of its own
    placed = stream.put_into(admin.kinesis, names.stream)
    assert len({p.shard_id for p in placed}) == shards, "a shard got no record"
    return ProofStream(resources, stream, placed)


@dataclass(frozen=True, slots=True)
class DrainPlan:
    """How one emulated event-source mapping drains the stream, and what goes wrong meanwhile.
    Plain values only: a plan crosses into another process."""

    moto_endpoint: str
    stream_name: str
    seed: int
    fault_rate: float
    """Of every DynamoDB, S3 and SQS attempt: a third refused, a third dropped, a third taking
    effect with its response lost."""
    batch_size: int
    function_timeout_seconds: float
    maximum_retry_attempts: int | None
    max_attempts: int = 4
    """botocore's attempts in all (the product's default)."""
    crash_rate: float = 0.0
    """Per invocation: the function dies after one of its first writes."""
    timeout_rate: float = 0.0
    """Per invocation: the function's time runs out after one of its first writes."""
    max_writes_before_fault: int = 10
    requests_per_second: float | None = None
    """The back end's throughput, charged to the invocation's clock (None: moto's own)."""
    shard_ids: frozenset[str] | None = None


@dataclass(slots=True)
class Drained:
    """What a drain did: the emulator's statistics, the faults injected, each record's
    deliveries (by `eventID`) and the handler's AWS attempts."""

    stats: EmulatorStats
    injected: Counter[tuple[str, FaultKind]]
    invocation_faults: Counter[str]
    deliveries: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    starts: list[str] = field(default_factory=list)
    """The `eventID` of each invocation's first record, in invocation order."""
    invocations: list[Invocation] = field(default_factory=list)
    """Each invocation as the emulator saw it end, in order (its simulated `seconds` among)."""

    def stalls(self) -> int:
        """Invocations that began at the same record as the shard's invocation before them:
        the checkpoint did not move in between."""
        last: dict[str, str] = {}
        stalled = 0
        for event_id in self.starts:
            shard = event_id.partition(":")[0]
            stalled += last.get(shard) == event_id
            last[shard] = event_id
        return stalled

    @property
    def most_deliveries(self) -> int:
        """The most times any one record was handed to the function."""
        return max(self.deliveries.values(), default=0)

    def injected_total(self, *kinds: FaultKind) -> int:
        return sum(n for (_, kind), n in self.injected.items() if not kinds or kind in kinds)


def counting_deliveries(
    handler: Handler, deliveries: Counter[str], starts: list[str] | None = None
) -> Handler:
    def counted(event: dict[str, object], context: LambdaContextLike) -> object:
        records = event["Records"]
        assert isinstance(records, list)
        deliveries.update(record["eventID"] for record in records)
        if starts is not None and records:
            starts.append(records[0]["eventID"])
        return handler(event, context)

    return counted


def drain_through_handler(plan: DrainPlan, kinesis: KinesisClient) -> Drained:
    """Drain through `entrypoints.lambda_handler.handler`, whose container's DynamoDB, S3 and
    SQS clients go through the lossy proxy and the before-send faults. The service's
    environment must already name the resources."""
    clock = SteppingClock()
    faults = FaultPlan(seed=plan.seed, rates=FaultRates.evenly(plan.fault_rate))
    invocation_faults = InvocationFaults(
        seed=plan.seed,
        crash_rate=plan.crash_rate,
        timeout_rate=plan.timeout_rate,
        clock=clock,
        function_timeout_seconds=plan.function_timeout_seconds,
        max_writes_before_fault=plan.max_writes_before_fault,
    )
    throughput = (
        None
        if plan.requests_per_second is None
        else RequestThroughput(clock, plan.requests_per_second)
    )
    deliveries: Counter[str] = Counter()
    starts: list[str] = []
    invocations: list[Invocation] = []
    lambda_handler.container.cache_clear()
    root = lambda_handler.container()
    try:
        with lossy_proxy(plan.moto_endpoint, faults) as proxy:
            aws = faulty_clients(
                proxy.endpoint_url,
                faults,
                invocation_faults,
                plan.max_attempts,
                clock,
                plan.seed,
                throughput,
            )
            with (
                root.clock.override(clock.as_clock()),
                root.dynamodb_client.override(aws.dynamodb),
                root.s3_client.override(aws.s3),
                root.sqs_client.override(aws.sqs),
            ):
                emulator = EventSourceMappingEmulator(
                    kinesis,
                    counting_deliveries(
                        invocation_faults.wrap(lambda_handler.handler), deliveries, starts
                    ),
                    EventSourceMappingSettings(
                        stream_name=plan.stream_name,
                        batch_size=plan.batch_size,
                        function_timeout_seconds=plan.function_timeout_seconds,
                        bisect_batch_on_function_error=True,
                        maximum_retry_attempts=plan.maximum_retry_attempts,
                        shard_ids=plan.shard_ids,
                    ),
                    on_invocation=invocations.append,
                    clock=clock,
                )
                stats = emulator.run(until_drained=True)
                faults.enabled = False
                # The handler's writers really were the faulty clients.
                assert root.dynamodb_client() is aws.dynamodb
                assert emulator.drained()
    finally:
        faults.enabled = False
        root.dynamodb_metric_store().close()
        lambda_handler.container.cache_clear()
    return Drained(
        stats,
        faults.injected,
        invocation_faults.injected,
        deliveries,
        sum(faults.calls.values()),
        starts,
        invocations,
    )


def drain_in_own_process(plan: DrainPlan, environment: dict[str, str]) -> Drained:
    """`drain_through_handler` in a fresh interpreter (run by a spawning process pool)."""
    os.environ.update(environment)
    kinesis: KinesisClient = boto3.client(
        "kinesis", endpoint_url=plan.moto_endpoint, region_name=REGION
    )
    return drain_through_handler(plan, kinesis)


@dataclass(slots=True)
class FaultyAws:
    """Clients for the faulted services, pointed at the lossy proxy, with every fault attached,
    the pauses between their attempts charged to the invocation's clock (and, when a throughput
    is given, every attempt too)."""

    dynamodb: DynamoDBClient
    s3: S3Client
    sqs: SQSClient


def faulty_clients(
    proxy_url: str,
    plan: FaultPlan,
    invocation_faults: InvocationFaults,
    max_attempts: int,
    clock: SteppingClock,
    seed: int,
    throughput: RequestThroughput | None = None,
) -> FaultyAws:
    config = client_config(max_attempts=max_attempts, connect_timeout=2, read_timeout=10)
    dynamodb: DynamoDBClient = boto3.client(
        "dynamodb", endpoint_url=proxy_url, region_name=REGION, config=config
    )
    s3: S3Client = boto3.client("s3", endpoint_url=proxy_url, region_name=REGION, config=config)
    sqs: SQSClient = boto3.client("sqs", endpoint_url=proxy_url, region_name=REGION, config=config)
    for client in (dynamodb, s3, sqs):
        if throughput is not None:
            throughput.attach(client)  # first: a refused attempt costs the back end's time too
        attach_request_faults(client, plan)
        invocation_faults.attach(client)
        charge_retry_pauses(client, clock, seed)
    return FaultyAws(dynamodb, s3, sqs)


def archived_event_ids(s3: S3Client, bucket: str) -> set[str]:
    ids = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="events/"):
        for entry in page.get("Contents", []):
            blob = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
            for line in gzip.decompress(blob).splitlines():
                ids.add(json.loads(line)["event_id"])
    return ids


def dead_lettered(
    sqs: SQSClient, queue_url: str, s3: S3Client
) -> tuple[dict[tuple[str, int], set[RejectionReason]], set[tuple[str, int]]]:
    """Every dead letter in the queue (with its S3 overflow): reasons by coordinates, and the
    coordinates of the letters whose data had to live in S3."""
    reader = SqsDeadLetterReader(sqs, queue_url, s3, wait_seconds=0, visibility_timeout=600)
    reasons: dict[tuple[str, int], set[RejectionReason]] = {}
    overflowed: set[tuple[str, int]] = set()
    while not (received := reader.receive()).empty:
        assert received.unreadable == ()
        for item in received.letters:
            where = (item.letter.coordinates.shard_id, item.letter.sequence)
            reasons.setdefault(where, set()).add(item.letter.reason)
            if item.data_location is not None:
                overflowed.add(where)
    return reasons, overflowed


def stored_aggregates(
    dynamodb: DynamoDBClient, table: str
) -> tuple[dict[AggregateKey, tuple[int, Decimal, int, int]], dict[VariantMetricKey, int]]:
    """The aggregation table read back item by item, by its documented layout (docs/storage.md):
    counters `EXP#<experiment>#W<write shard>` / `<HOUR|DAY|EXPERIMENT>#<window>#<variant>#<metric>`
    (a counter's items summed over its write shards, its stored `unique_users` included), and
    per experiment, variant and metric the exposed users who did it (the `joined#<metric>`
    attributes of the experiment-to-date counters). The first-seen markers (`USERS#…`) are read
    too, and each window's must name exactly as many users as its counter stores."""
    counters: dict[AggregateKey, tuple[int, Decimal, int, int]] = {}
    joined: dict[VariantMetricKey, int] = {}
    marked: dict[AggregateKey, set[str]] = {}
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            partition, sort = item["partition_key"]["S"], item["sort_key"]["S"]
            if partition.startswith("EVENT#") and sort == "EVENT":
                continue  # the event-id index (EVENT_ID_INDEX=dynamodb), not an aggregate
            if partition.startswith("EXP#"):
                granularity, label, variant, metric = (unquote(p) for p in sort.split("#"))
                experiment, _, _write_shard = partition[4:].rpartition("#W")
                key = (unquote(experiment), variant, metric, granularity, label)
                # A counter is one item per write shard: its value is their sum.
                count, value_sum, value_count, users = counters.get(key, (0, Decimal(0), 0, 0))
                counters[key] = (
                    count + int(item["event_count"]["N"]),
                    value_sum + Decimal(item["value_sum"]["N"]),
                    value_count + int(item["value_count"]["N"]),
                    users + int(item["unique_users"]["N"]),
                )
                for name, value in item.items():
                    if name.startswith("joined#"):
                        of = (unquote(experiment), variant, name.removeprefix("joined#"))
                        joined[of] = joined.get(of, 0) + int(value["N"])
                continue
            kind, experiment, variant, *rest = (unquote(p) for p in partition.split("#"))
            assert kind == "USERS", f"unexpected item {partition} / {sort}"
            if rest[0] == "ALL":  # one item per user and variant: a marker per metric
                for name in item:
                    if name.startswith("m#"):
                        key = (experiment, variant, name[2:], "EXPERIMENT", "ALL")
                        marked.setdefault(key, set()).add(sort)
                continue
            metric, day = rest[0], rest[1]
            hour, user = sort.split("#", 1)
            if hour == "D":
                marked.setdefault((experiment, variant, metric, "DAY", day), set()).add(user)
            else:
                key = (experiment, variant, metric, "HOUR", f"{day}T{hour}")
                marked.setdefault(key, set()).add(user)
    assert set(marked) <= set(counters), "first-seen markers without a counter"
    assert {key: len(users) for key, users in marked.items()} == {
        key: value[3] for key, value in counters.items() if value[3] or key in marked
    }, "a counter's stored unique users differ from its markers"
    return counters, joined


def assert_stores_hold_exactly_the_stream(admin: AdminClients, proof: ProofStream) -> None:
    """Counters and unique users exactly as expected, every valid event archived, every bad
    record dead-lettered with exactly its reason (oversize letters through S3)."""
    names, stream = proof.names, proof.stream
    counters, joined = stored_aggregates(admin.dynamodb, names.aggregation_table)
    assert counters == expected_aggregates(stream)
    assert {key: users for key, users in joined.items() if users} == {
        key: users for key, users in expected_exposed_users_who_did(stream).items() if users
    }
    assert archived_event_ids(admin.s3, names.archive_bucket) == expected_event_ids(stream)
    reasons, overflowed = dead_lettered(admin.sqs, proof.resources.dead_letter_queue_url, admin.s3)
    expected = expected_dead_letters(stream, proof.placed)
    assert reasons == {where: {reason} for where, reason in expected.items()}
    oversize = {
        (proof.placed[i].shard_id, int(proof.placed[i].sequence_number))
        for i, entry in stream.of_kind(EntryKind.BAD)
        if entry.bad is not None and len(entry.bad.payload) > SQS_MESSAGE_LIMIT
    }
    assert oversize
    assert oversize <= overflowed
