"""The proof of exactly-once: a seeded stream with duplicates and every kind of bad record is
drained from Kinesis (moto) through the event-source-mapping emulator while writes are refused,
acknowledgements lost, the function crashes between writes and runs out of time. Afterwards every
counter equals what the generator's own list says, every valid event is archived and every bad
record is dead-lettered with its reason.

The larger runs are selected with FAULT_INJECTION_LARGE=1 (or `-m slow`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from decimal import Decimal

import pytest
from mypy_boto3_kinesis import KinesisClient

from application.process_batch import BatchProcessor, ProcessingSettings
from domain.metrics import Granularity
from domain.rejections import RejectionReason
from entrypoints.event_source_emulator import (
    EmulatorStats,
    EventSourceMappingEmulator,
    EventSourceMappingSettings,
    Outcome,
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
from infrastructure.synthetic.stream import GeneratedStream, StreamSpec, generate_stream
from tests.faults.clock import SteppingClock
from tests.faults.expectations import (
    AggregateKey,
    expected_aggregates,
    expected_dead_letters,
    expected_event_ids,
)
from tests.faults.handlers import use_case_handler
from tests.faults.ports import (
    FaultyDeadLetterQueue,
    FaultyEventArchive,
    FaultyMetricStore,
    PortFaults,
)

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
        refused=scenario.fault_rate / 2,
        lost=scenario.fault_rate / 2,
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
