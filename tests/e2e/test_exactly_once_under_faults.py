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

import boto3
import pytest
from mypy_boto3_kinesis import KinesisClient
from mypy_boto3_s3 import S3Client
from mypy_boto3_sqs import SQSClient

from application.process_batch import BatchProcessor, ProcessingSettings
from domain.metrics import Granularity
from domain.rejections import RejectionReason
from entrypoints.event_source_emulator import (
    EmulatedLambdaContext,
    EmulatorStats,
    EventSourceMappingEmulator,
    EventSourceMappingSettings,
    Outcome,
)
from infrastructure.aws.client_config import client_config
from infrastructure.aws.s3_archive import S3EventArchive
from infrastructure.aws.sqs_dead_letters import (
    S3DeadLetterStore,
    SqsDeadLetterQueue,
    SqsDeadLetterReader,
)
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


# -- The AWS adapters under botocore faults, lost responses, crashes and timeouts ---------------


@dataclass(slots=True)
class FaultyAws:
    """Clients for the faulted services, pointed at the lossy proxy, with every fault attached."""

    s3: S3Client
    sqs: SQSClient
    plan: FaultPlan
    invocation_faults: InvocationFaults


def faulty_clients(
    proxy_url: str, plan: FaultPlan, invocation_faults: InvocationFaults
) -> FaultyAws:
    config = client_config(max_attempts=4, connect_timeout=2, read_timeout=10)
    s3: S3Client = boto3.client("s3", endpoint_url=proxy_url, region_name=REGION, config=config)
    sqs: SQSClient = boto3.client("sqs", endpoint_url=proxy_url, region_name=REGION, config=config)
    for client in (s3, sqs):
        attach_request_faults(client, plan)
        invocation_faults.attach(client)
    return FaultyAws(s3, sqs, plan, invocation_faults)


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


def run_on_aws_adapters(
    moto_endpoint: str,
    kinesis: KinesisClient,
    s3_admin: S3Client,
    sqs_admin: SQSClient,
    name: str,
    scenario: Scenario,
) -> None:
    stream = make_stream(kinesis, name, scenario)
    placed = stream.put_into(kinesis, name)
    s3_admin.create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    queue_url = sqs_admin.create_queue(QueueName=name)["QueueUrl"]

    clock = SteppingClock()
    plan = FaultPlan(
        seed=scenario.seed,
        rates=FaultRates.evenly(scenario.fault_rate),
        services=frozenset({"s3", "sqs"}),
    )
    invocation_faults = InvocationFaults(
        seed=scenario.seed,
        crash_rate=scenario.fault_rate / 2,
        timeout_rate=scenario.fault_rate / 2,
        clock=clock,
        function_timeout_seconds=FUNCTION_TIMEOUT,
        max_writes_before_fault=4,
    )
    # Until the DynamoDB metric store is on main, the counters live in memory behind port faults.
    port_faults = PortFaults(
        seed=scenario.seed,
        refused=scenario.fault_rate / 4,
        lost=scenario.fault_rate / 4,
        crash_per_call=scenario.fault_rate / 3,
        timeout_per_call=scenario.fault_rate / 3,
        clock=clock,
        function_timeout_seconds=FUNCTION_TIMEOUT,
    )
    metrics = InMemoryMetricStore()
    with lossy_proxy(moto_endpoint, plan) as proxy:
        aws = faulty_clients(proxy.endpoint_url, plan, invocation_faults)
        processor = BatchProcessor(
            InMemoryAssignmentRepository(stream.assignments),
            InMemoryExperimentRepository(stream.experiments),
            FaultyMetricStore(metrics, port_faults),
            S3EventArchive(aws.s3, name),
            SqsDeadLetterQueue(aws.sqs, queue_url, S3DeadLetterStore(aws.s3, name), SystemClock()),
            InMemoryRecentEventIndex(),
            SystemClock(),
            InMemoryTelemetry(),
            ProcessingSettings(),
        )
        emulator = EventSourceMappingEmulator(
            kinesis,
            invocation_faults.wrap(use_case_handler(processor)),
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
        plan.enabled = False

    assert_progress_without_loss(stats, emulator)
    assert plan.total(*REFUSALS) > 0
    assert plan.total(*DROPS) > 0
    assert plan.total(*LOSSES) > 0
    assert invocation_faults.injected["crash"] > 0
    assert invocation_faults.injected["timeout"] > 0

    experiment_ids = [e.experiment_id for e in stream.experiments]
    assert in_memory_observed(metrics, experiment_ids) == expected_aggregates(stream)
    assert archived_event_ids(s3_admin, name) == expected_event_ids(stream)

    reasons, overflowed = dead_lettered(sqs_admin, queue_url, s3_admin)
    expected = expected_dead_letters(stream, placed)
    assert reasons == {where: {reason} for where, reason in expected.items()}
    oversize = {
        (placed[i].shard_id, int(placed[i].sequence_number))
        for i, entry in stream.of_kind(EntryKind.BAD)
        if entry.bad is not None and len(entry.bad.payload) > SQS_MESSAGE_LIMIT
    }
    assert oversize
    assert oversize <= overflowed


AWS_SCENARIOS = [Scenario(seed=3, fault_rate=0.1, valid_events=200, shards=2, batch_size=200)]
if LARGE:
    AWS_SCENARIOS += [
        Scenario(seed=4, fault_rate=0.2, valid_events=600, shards=2, batch_size=200),
        Scenario(seed=5, fault_rate=0.1, valid_events=3_000, shards=3, batch_size=500),
    ]


@pytest.mark.parametrize(
    "scenario", AWS_SCENARIOS, ids=lambda s: f"seed{s.seed}-faults{s.fault_rate:.0%}"
)
def test_archive_and_dead_letters_lose_nothing_under_faults_on_the_aws_adapters(
    endpoint_url: str,
    kinesis_client: KinesisClient,
    s3_client: S3Client,
    sqs_client: SQSClient,
    unique_name: str,
    scenario: Scenario,
) -> None:
    run_on_aws_adapters(endpoint_url, kinesis_client, s3_client, sqs_client, unique_name, scenario)


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
