"""The proof of exactly-once: a seeded stream with duplicates and every kind of bad record is
drained from Kinesis (moto) through the event-source-mapping emulator while writes are refused,
acknowledgements lost, the function crashes between writes and runs out of time. Afterwards every
counter equals what the generator's own list says, every valid event is archived and every bad
record is dead-lettered with its reason.

The larger runs are selected with FAULT_INJECTION_LARGE=1 (or `-m slow`).
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import unquote

import boto3
import pytest
from mypy_boto3_dynamodb import DynamoDBClient
from mypy_boto3_kinesis import KinesisClient
from mypy_boto3_s3 import S3Client
from mypy_boto3_sqs import SQSClient

from application.process_batch import BatchProcessor, ProcessingSettings
from domain.metrics import Granularity
from domain.rejections import RejectionReason
from entrypoints import lambda_handler
from entrypoints.event_source_emulator import (
    EmulatedLambdaContext,
    EmulatorStats,
    EventSourceMappingEmulator,
    EventSourceMappingSettings,
    Outcome,
)
from infrastructure.aws.client_config import client_config
from infrastructure.aws.provisioning import ResourceNames, provision_all
from infrastructure.aws.reference_data import DynamoDbReferenceDataWriter
from infrastructure.aws.sqs_dead_letters import SqsDeadLetterReader
from infrastructure.clock import SystemClock
from infrastructure.in_memory.archive import InMemoryEventArchive
from infrastructure.in_memory.dead_letters import InMemoryDeadLetterQueue
from infrastructure.in_memory.metric_store import InMemoryMetricStore
from infrastructure.in_memory.recent_events import InMemoryRecentEventIndex
from infrastructure.in_memory.repositories import (
    InMemoryAssignmentRepository,
    InMemoryExperimentRepository,
)
from infrastructure.in_memory.telemetry import InMemoryTelemetry
from infrastructure.synthetic.bad_records import SQS_MESSAGE_LIMIT, bad_record_catalogue
from infrastructure.synthetic.stream import (
    DEFAULT_STREAM_START,
    EntryKind,
    GeneratedStream,
    StreamSpec,
    generate_stream,
)
from tests.conftest import REGION
from tests.e2e.conftest import point_the_service_at
from tests.faults.botocore_hooks import attach_request_faults
from tests.faults.clock import SteppingClock
from tests.faults.expectations import (
    AggregateKey,
    expected_aggregates,
    expected_dead_letters,
    expected_event_ids,
)
from tests.faults.handlers import use_case_handler
from tests.faults.invocation import InvocationFaults
from tests.faults.plan import DROPS, LOSSES, REFUSALS, FaultPlan, FaultRates
from tests.faults.ports import (
    FaultyDeadLetterQueue,
    FaultyEventArchive,
    FaultyMetricStore,
    PortFaults,
)
from tests.faults.proxy import lossy_proxy

LARGE = os.environ.get("FAULT_INJECTION_LARGE") == "1"
FUNCTION_TIMEOUT = 60.0
MAX_RETRIES = 200


@dataclass(frozen=True, slots=True)
class Scenario:
    seed: int
    fault_rate: float
    valid_events: int
    shards: int = 2
    batch_size: int = 100
    max_attempts: int = 2
    experiments: int = 4
    users: int = 400
    """botocore's attempts in all, for the faulty AWS clients."""


DEFAULT_SCENARIOS = [
    Scenario(seed=1, fault_rate=0.05, valid_events=2_000),
    Scenario(seed=2, fault_rate=0.2, valid_events=2_000, shards=3, batch_size=250),
]
LARGE_SCENARIOS = [
    Scenario(seed=11, fault_rate=0.1, valid_events=20_000, shards=4, batch_size=500),
    Scenario(seed=12, fault_rate=0.2, valid_events=30_000, shards=2, batch_size=1_000),
]


def make_stream(kinesis: KinesisClient, name: str, scenario: Scenario) -> GeneratedStream:
    kinesis.create_stream(StreamName=name, ShardCount=scenario.shards)
    return generate_stream(
        StreamSpec(valid_events=scenario.valid_events, seed=scenario.seed, bad_record_copies=2)
    )


def assert_progress_without_loss(
    stats: EmulatorStats, emulator: EventSourceMappingEmulator
) -> None:
    assert emulator.drained()
    assert stats.discarded_batches == [], "a batch was given up: its records were never counted"
    assert stats.records_checkpointed == stats.records_read
    assert stats.retries > 0, "the faults never made Lambda redeliver anything"


def in_memory_observed(
    metrics: InMemoryMetricStore, experiment_ids: list[str]
) -> dict[AggregateKey, tuple[int, Decimal, int, int]]:
    observed = {}
    for experiment_id in experiment_ids:
        for granularity in Granularity:
            for s in metrics.snapshots(experiment_id, granularity):
                key = (
                    s.key.experiment_id,
                    s.key.variant_id,
                    s.key.metric,
                    granularity.name,
                    s.key.window_label,
                )
                observed[key] = (s.event_count, s.value_sum, s.value_count, s.unique_users)
    return observed


def run_on_in_memory_back_end(kinesis: KinesisClient, name: str, scenario: Scenario) -> None:
    stream = make_stream(kinesis, name, scenario)
    placed = stream.put_into(kinesis, name)
    clock = SteppingClock()
    faults = PortFaults(
        seed=scenario.seed,
        refused=scenario.fault_rate / 4,
        lost=scenario.fault_rate / 4,
        crash_per_call=scenario.fault_rate / 3,
        timeout_per_call=scenario.fault_rate / 3,
        clock=clock,
        function_timeout_seconds=FUNCTION_TIMEOUT,
    )
    metrics = InMemoryMetricStore()
    archive = InMemoryEventArchive()
    dead_letters = InMemoryDeadLetterQueue()
    processor = BatchProcessor(
        InMemoryAssignmentRepository(stream.assignments),
        InMemoryExperimentRepository(stream.experiments),
        FaultyMetricStore(metrics, faults),
        FaultyEventArchive(archive, faults),
        FaultyDeadLetterQueue(dead_letters, faults),
        InMemoryRecentEventIndex(),
        SystemClock(),
        InMemoryTelemetry(),
        ProcessingSettings(),
    )
    emulator = EventSourceMappingEmulator(
        kinesis,
        use_case_handler(processor),
        EventSourceMappingSettings(
            stream_name=name,
            batch_size=scenario.batch_size,
            function_timeout_seconds=FUNCTION_TIMEOUT,
            bisect_batch_on_function_error=True,
            maximum_retry_attempts=MAX_RETRIES,
        ),
        clock=clock,
    )

    stats = emulator.run(until_drained=True)

    assert_progress_without_loss(stats, emulator)
    assert {"refused", "lost", "crash", "timeout"} <= set(faults.injected)
    assert stats.count(Outcome.FUNCTION_ERROR) > 0
    assert stats.count(Outcome.TIMEOUT) > 0
    assert stats.count(Outcome.PARTIAL_FAILURE) > 0

    experiment_ids = [e.experiment_id for e in stream.experiments]
    assert in_memory_observed(metrics, experiment_ids) == expected_aggregates(stream)

    archived = {json.loads(line)["event_id"] for line in archive.lines()}
    assert archived == expected_event_ids(stream)

    letters: dict[tuple[str, int], set[RejectionReason]] = {}
    for letter in dead_letters.letters():
        letters.setdefault((letter.coordinates.shard_id, letter.sequence), set()).add(letter.reason)
    expected = expected_dead_letters(stream, placed)
    assert letters == {where: {reason} for where, reason in expected.items()}


@pytest.mark.parametrize(
    "scenario", DEFAULT_SCENARIOS, ids=lambda s: f"seed{s.seed}-faults{s.fault_rate:.0%}"
)
def test_counters_are_exact_and_nothing_is_lost_under_faults_on_the_in_memory_back_end(
    kinesis_client: KinesisClient, unique_name: str, scenario: Scenario
) -> None:
    run_on_in_memory_back_end(kinesis_client, unique_name, scenario)


@pytest.mark.slow
@pytest.mark.skipif(not LARGE, reason="set FAULT_INJECTION_LARGE=1 for the large runs")
@pytest.mark.parametrize(
    "scenario", LARGE_SCENARIOS, ids=lambda s: f"seed{s.seed}-faults{s.fault_rate:.0%}"
)
def test_large_streams_stay_exact_under_faults_on_the_in_memory_back_end(
    kinesis_client: KinesisClient, unique_name: str, scenario: Scenario
) -> None:
    run_on_in_memory_back_end(kinesis_client, unique_name, scenario)


# -- The real Lambda handler on the AWS adapters, under every kind of fault -------------------


@dataclass(slots=True)
class FaultyAws:
    """Clients for the faulted services, pointed at the lossy proxy, with every fault attached.

    Two attempts in all: most faults reach the pipeline and are healed by Kinesis redelivering
    through the emulator (the path under proof), and botocore's backoff stays cheap."""

    dynamodb: DynamoDBClient
    s3: S3Client
    sqs: SQSClient


def faulty_clients(
    proxy_url: str, plan: FaultPlan, invocation_faults: InvocationFaults, max_attempts: int
) -> FaultyAws:
    config = client_config(max_attempts=max_attempts, connect_timeout=2, read_timeout=10)
    dynamodb: DynamoDBClient = boto3.client(
        "dynamodb", endpoint_url=proxy_url, region_name=REGION, config=config
    )
    s3: S3Client = boto3.client("s3", endpoint_url=proxy_url, region_name=REGION, config=config)
    sqs: SQSClient = boto3.client("sqs", endpoint_url=proxy_url, region_name=REGION, config=config)
    for client in (dynamodb, s3, sqs):
        attach_request_faults(client, plan)
        invocation_faults.attach(client)
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
) -> dict[AggregateKey, tuple[int, Decimal, int, int]]:
    """The aggregation table read back item by item, by its documented layout (docs/storage.md):
    counters `EXP#<experiment>` / `<HOUR|DAY>#<window>#<variant>#<metric>`, unique-user markers
    `USERS#<experiment>#<variant>#<metric>#<day>` / `<HH>#<user>`. Hourly unique users are the
    markers of that hour; daily ones the distinct users over the day's markers."""
    counters: dict[AggregateKey, tuple[int, Decimal, int]] = {}
    hourly_users: dict[AggregateKey, set[str]] = {}
    daily_users: dict[AggregateKey, set[str]] = {}
    for page in dynamodb.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            partition, sort = item["partition_key"]["S"], item["sort_key"]["S"]
            if partition.startswith("EVENT#") and sort == "EVENT":
                continue  # the event-id index (EVENT_ID_INDEX=dynamodb), not an aggregate
            if partition.startswith("EXP#"):
                granularity, label, variant, metric = (unquote(p) for p in sort.split("#"))
                key = (unquote(partition[4:]), variant, metric, granularity, label)
                counters[key] = (
                    int(item["event_count"]["N"]),
                    Decimal(item["value_sum"]["N"]),
                    int(item["value_count"]["N"]),
                )
            else:
                kind, experiment, variant, metric, day = (unquote(p) for p in partition.split("#"))
                assert kind == "USERS", f"unexpected item {partition} / {sort}"
                hour, user = sort.split("#", 1)
                base = (experiment, variant, metric)
                hourly_users.setdefault((*base, "HOUR", f"{day}T{hour}"), set()).add(user)
                daily_users.setdefault((*base, "DAY", day), set()).add(user)
    users = hourly_users | daily_users
    assert set(users) <= set(counters), "unique-user markers without a counter"
    return {key: (*counters[key], len(users.get(key, ()))) for key in counters}


def run_on_real_handler(
    moto_endpoint: str,
    admin: AdminClients,
    name: str,
    scenario: Scenario,
    monkeypatch: pytest.MonkeyPatch,
) -> EmulatorStats:
    """The stream drained through `entrypoints.lambda_handler.handler`, whose container's
    DynamoDB, S3 and SQS clients go through the lossy proxy and the before-send faults."""
    names = ResourceNames(
        aggregation_table=f"{name}-aggregations",
        archive_bucket=f"{name}-archive",
        dead_letter_queue=f"{name}-dlq",
        stream=f"{name}-events",
        assignments_table=f"{name}-assignments",
        experiments_table=f"{name}-experiments",
        stream_shards=scenario.shards,
    )
    resources = provision_all(names, admin.dynamodb, admin.s3, admin.sqs, admin.kinesis, REGION)
    stream = generate_stream(
        StreamSpec(
            valid_events=scenario.valid_events,
            seed=scenario.seed,
            bad_record_copies=2,
            time_ordered=True,
            experiments=scenario.experiments,
            users=scenario.users,
        )
    )
    writer = DynamoDbReferenceDataWriter(
        admin.dynamodb, names.assignments_table, names.experiments_table
    )
    writer.write_experiments(stream.experiments)
    writer.write_assignments(stream.assignments)
    placed = stream.put_into(admin.kinesis, names.stream)
    assert len({p.shard_id for p in placed}) == scenario.shards

    point_the_service_at(resources, moto_endpoint, monkeypatch)

    clock = SteppingClock()
    plan = FaultPlan(seed=scenario.seed, rates=FaultRates.evenly(scenario.fault_rate))
    invocation_faults = InvocationFaults(
        seed=scenario.seed,
        # Per invocation, at the fault rate itself: few invocations, and each must be able to die.
        crash_rate=scenario.fault_rate,
        timeout_rate=scenario.fault_rate,
        clock=clock,
        function_timeout_seconds=FUNCTION_TIMEOUT,
        max_writes_before_fault=10,
    )
    lambda_handler.container.cache_clear()
    root = lambda_handler.container()
    try:
        with lossy_proxy(moto_endpoint, plan) as proxy:
            aws = faulty_clients(proxy.endpoint_url, plan, invocation_faults, scenario.max_attempts)
            with (
                root.dynamodb_client.override(aws.dynamodb),
                root.s3_client.override(aws.s3),
                root.sqs_client.override(aws.sqs),
            ):
                emulator = EventSourceMappingEmulator(
                    admin.kinesis,
                    invocation_faults.wrap(lambda_handler.handler),
                    EventSourceMappingSettings(
                        stream_name=names.stream,
                        batch_size=scenario.batch_size,
                        function_timeout_seconds=FUNCTION_TIMEOUT,
                        bisect_batch_on_function_error=True,
                        maximum_retry_attempts=MAX_RETRIES,
                    ),
                    clock=clock,
                )
                stats = emulator.run(until_drained=True)
                plan.enabled = False
                # The handler's writers really were the faulty clients.
                assert root.dynamodb_client() is aws.dynamodb
    finally:
        plan.enabled = False
        root.dynamodb_metric_store().close()
        lambda_handler.container.cache_clear()

    assert_progress_without_loss(stats, emulator)
    assert plan.total(*REFUSALS) > 0
    assert plan.total(*DROPS) > 0
    assert plan.total(*LOSSES) > 0
    assert {service for (service, _), n in plan.injected.items() if n} == {"dynamodb", "s3", "sqs"}
    lost_dynamodb = sum(
        n for (where, kind), n in plan.injected.items() if where == "dynamodb" and kind in LOSSES
    )
    assert lost_dynamodb > 0, "no counter update took effect behind a lost response"
    assert invocation_faults.injected["crash"] > 0
    assert invocation_faults.injected["timeout"] > 0
    assert stats.count(Outcome.FUNCTION_ERROR) > 0
    assert stats.count(Outcome.TIMEOUT) > 0
    assert stats.count(Outcome.PARTIAL_FAILURE) > 0

    assert stored_aggregates(admin.dynamodb, names.aggregation_table) == expected_aggregates(stream)
    assert archived_event_ids(admin.s3, names.archive_bucket) == expected_event_ids(stream)

    reasons, overflowed = dead_lettered(admin.sqs, resources.dead_letter_queue_url, admin.s3)
    expected = expected_dead_letters(stream, placed)
    assert reasons == {where: {reason} for where, reason in expected.items()}
    oversize = {
        (placed[i].shard_id, int(placed[i].sequence_number))
        for i, entry in stream.of_kind(EntryKind.BAD)
        if entry.bad is not None and len(entry.bad.payload) > SQS_MESSAGE_LIMIT
    }
    assert oversize
    assert oversize <= overflowed
    return stats


@dataclass(frozen=True, slots=True)
class AdminClients:
    """Fault-free clients straight to moto: provisioning, feeding the stream, reading back."""

    dynamodb: DynamoDBClient
    s3: S3Client
    sqs: SQSClient
    kinesis: KinesisClient


@pytest.fixture
def admin(
    dynamodb_client: DynamoDBClient,
    s3_client: S3Client,
    sqs_client: SQSClient,
    kinesis_client: KinesisClient,
) -> AdminClients:
    return AdminClients(dynamodb_client, s3_client, sqs_client, kinesis_client)


HANDLER_SCENARIOS = [
    Scenario(seed=3, fault_rate=0.1, valid_events=150, batch_size=50, experiments=3, users=60),
    Scenario(
        seed=4,
        fault_rate=0.2,
        valid_events=150,
        shards=3,
        batch_size=50,
        max_attempts=3,
        experiments=3,
        users=60,
    ),
]
"""Sized for moto's ~150 requests a second on 2 cores: every record costs about one request, and
each redelivery costs them again."""
LARGE_HANDLER_SCENARIOS = [
    Scenario(seed=5, fault_rate=0.1, valid_events=800, batch_size=100, experiments=3, users=120),
    Scenario(
        seed=6,
        fault_rate=0.2,
        valid_events=800,
        shards=3,
        batch_size=100,
        max_attempts=3,
        experiments=3,
        users=120,
    ),
]


@pytest.mark.parametrize(
    "scenario", HANDLER_SCENARIOS, ids=lambda s: f"seed{s.seed}-faults{s.fault_rate:.0%}"
)
def test_the_lambda_handler_counts_exactly_and_loses_nothing_under_faults_on_aws(
    endpoint_url: str,
    admin: AdminClients,
    unique_name: str,
    scenario: Scenario,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_on_real_handler(endpoint_url, admin, unique_name, scenario, monkeypatch)


@pytest.mark.slow
@pytest.mark.skipif(not LARGE, reason="set FAULT_INJECTION_LARGE=1 for the large runs")
@pytest.mark.parametrize(
    "scenario", LARGE_HANDLER_SCENARIOS, ids=lambda s: f"seed{s.seed}-faults{s.fault_rate:.0%}"
)
def test_large_streams_stay_exact_under_faults_through_the_lambda_handler_on_aws(
    endpoint_url: str,
    admin: AdminClients,
    unique_name: str,
    scenario: Scenario,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_on_real_handler(endpoint_url, admin, unique_name, scenario, monkeypatch)


def test_a_record_whose_data_is_not_base64_is_dead_lettered_not_retried() -> None:
    """Only a hand-built event can carry invalid base64 (Kinesis encodes what it is given)."""
    invalid = next(b for b in bad_record_catalogue(DEFAULT_STREAM_START) if not b.stream_safe)
    dead_letters = InMemoryDeadLetterQueue()
    processor = BatchProcessor(
        InMemoryAssignmentRepository(),
        InMemoryExperimentRepository(),
        InMemoryMetricStore(),
        InMemoryEventArchive(),
        dead_letters,
        InMemoryRecentEventIndex(),
        SystemClock(),
        InMemoryTelemetry(),
        ProcessingSettings(),
    )
    event = {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "pk",
                    "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                    "data": invalid.data,
                    "approximateArrivalTimestamp": 1_763_000_000.5,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": "shardId-000000000000:49590338271490256608559692538361571095921575989136588898",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/fn-role",
                "awsRegion": REGION,
                "eventSourceARN": "arn:aws:kinesis:eu-west-1:123456789012:stream/s",
            }
        ]
    }
    context = EmulatedLambdaContext(
        "fn", "$LATEST", "arn", 128, "req", "/aws/lambda/fn", "s", deadline=1e12, clock=lambda: 0.0
    )

    response = use_case_handler(processor)(event, context)

    assert response == {"batchItemFailures": []}
    [letter] = dead_letters.letters()
    assert letter.reason is RejectionReason.INVALID_BASE64
    assert letter.data == invalid.data
