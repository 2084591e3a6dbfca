"""Processing a batch chunk by chunk has exactly the outcome of processing it at once."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.ports import AssignmentRepository, Deadline, MetricStore
from application.process_batch import ProcessingSettings
from application.results import BatchResult
from domain.errors import TransientInfrastructureError
from domain.experiments import Assignment
from domain.metrics import Granularity
from domain.records import KinesisCoordinates, RawRecord
from infrastructure.clock import ManualClock
from tests.containers import MemoryBackEnd
from tests.factories import NOW
from tests.unit.test_batch_properties import (
    EXPERIMENTS,
    SometimesFailingStore,
    batches,
    seeded_back_end,
)

WHOLE_BATCH = 1_000_000
OTHER_SHARD = "shardId-000000000002"


@st.composite
def mixed_batches(draw: st.DrawFn) -> list[RawRecord]:
    """Batches over two shards, in any arrival order (Lambda delivers one shard in order; the
    use case must not depend on it)."""
    records = draw(batches())
    moved = [
        RawRecord(
            KinesisCoordinates(
                OTHER_SHARD if draw(st.booleans()) else r.coordinates.shard_id,
                r.coordinates.sequence_number,
                r.coordinates.partition_key,
                r.coordinates.approximate_arrival_timestamp,
            ),
            r.data,
        )
        for r in records
    ]
    return list(draw(st.permutations(moved)))


class ExpiredDeadline(Deadline):
    def expired(self) -> bool:
        return True


class AssignmentsFailingOnCall(AssignmentRepository):
    """Real assignments, except that one call (counted from 1) fails transiently."""

    def __init__(self, inner: AssignmentRepository, failing_call: int) -> None:
        self.inner = inner
        self.failing_call = failing_call
        self.calls = 0

    def assignments_for(self, user_ids: Collection[str]) -> dict[str, tuple[Assignment, ...]]:
        self.calls += 1
        if self.calls == self.failing_call:
            raise TransientInfrastructureError("BatchGetItem", "assignments unavailable")
        return self.inner.assignments_for(user_ids)


def run(
    records: Sequence[RawRecord],
    chunk_records: int,
    refuse: frozenset[int] = frozenset(),
    deadline: Deadline | None = None,
    failing_enrichment_call: int = 0,
    calls: list[int] | None = None,
) -> tuple[BatchResult, MemoryBackEnd]:
    """One run on a fresh back end; the number of enrichment calls made is appended to
    `calls` when given."""
    store = seeded_back_end()
    metrics: MetricStore = SometimesFailingStore(store.metrics, refuse)
    assignments = AssignmentsFailingOnCall(store.assignments, failing_enrichment_call)
    processor = store.processor(
        clock=ManualClock(NOW),
        processing_settings=ProcessingSettings(chunk_records=chunk_records),
        assignment_repository_adapter=assignments,
        metric_store_adapter=metrics,
    )
    result = processor.process(records, deadline)
    if calls is not None:
        calls.append(assignments.calls)
    return result, store


def outcome(
    result: BatchResult, store: MemoryBackEnd, records: Sequence[RawRecord]
) -> tuple[object, ...]:
    """Everything observable of one run, timings aside."""
    event_ids = {f"e-{r.coordinates.sequence}" for r in records}
    return (
        replace(result, stage_seconds={}),
        [(o.key, o.blob, o.metadata) for o in store.archive.objects()],
        store.dead_letters.letters(),
        [
            (
                s.key,
                s.measures.event_count,
                s.measures.value_sum,
                s.measures.value_count,
                s.unique_users,
            )
            for granularity in Granularity
            for experiment_id in EXPERIMENTS
            for s in store.metrics.snapshots(experiment_id, granularity)
        ],
        store.recent_events.lookup(event_ids),
    )


@given(mixed_batches(), st.integers(1, 7), st.sets(st.integers(0, 30), max_size=4))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_chunk_size_gives_the_outcome_of_the_whole_batch_at_once(
    records: list[RawRecord], chunk_records: int, refuse: set[int]
) -> None:
    at_once = outcome(*run(records, WHOLE_BATCH, frozenset(refuse)), records)
    chunked = outcome(*run(records, chunk_records, frozenset(refuse)), records)
    assert chunked == at_once


@given(mixed_batches(), st.integers(1, 7))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_batch_out_of_time_has_the_same_outcome_in_chunks(
    records: list[RawRecord], chunk_records: int
) -> None:
    at_once = outcome(*run(records, WHOLE_BATCH, deadline=ExpiredDeadline()), records)
    chunked = outcome(*run(records, chunk_records, deadline=ExpiredDeadline()), records)
    assert chunked == at_once


@given(mixed_batches(), st.integers(1, 7), st.integers(1, 8))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_enrichment_failing_for_any_chunk_redelivers_like_a_failure_of_the_whole_batch(
    records: list[RawRecord], chunk_records: int, failing_call: int
) -> None:
    calls: list[int] = []
    run(records, chunk_records, calls=calls)
    failing_call = min(failing_call, calls[0]) or 1
    at_once = outcome(*run(records, WHOLE_BATCH, failing_enrichment_call=1), records)
    chunked = outcome(*run(records, chunk_records, failing_enrichment_call=failing_call), records)
    assert chunked == at_once
