"""A batch larger than the invocation's time is made durable segment by segment, so the
checkpoint moves with every invocation and a redelivery repeats only what is not yet durable."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from application.ports import Deadline, EventArchive, MetricStore, WriteReport
from application.process_batch import BatchProcessor, ProcessingSettings
from domain.archiving import ArchiveObject, record_from_archive_line
from domain.metrics import Granularity
from domain.records import RawRecord
from infrastructure.clock import ManualClock
from tests.containers import MemoryBackEnd
from tests.factories import NOW, assignment, event_payload, experiment, record_of
from tests.unit.test_process_batch import FailingMetricStore


class ClockDeadline(Deadline):
    def __init__(self, clock: ManualClock, seconds: float) -> None:
        self._clock = clock
        self._at = clock.monotonic() + seconds

    def remaining_seconds(self) -> float:
        return max(0.0, self._at - self._clock.monotonic())

    def expired(self) -> bool:
        return self.remaining_seconds() <= 0


class SlowArchive(EventArchive):
    """A real archive whose writes take `seconds_per_event` of the clock's time per event."""

    def __init__(self, inner: EventArchive, clock: ManualClock, seconds_per_event: float) -> None:
        self.inner = inner
        self.clock = clock
        self.seconds_per_event = seconds_per_event
        self.calls = 0

    def store(self, objects: Sequence[ArchiveObject], deadline: Deadline) -> WriteReport:
        self.calls += 1
        events = sum(o.event_count for o in objects)
        self.clock.advance(timedelta(seconds=events * self.seconds_per_event))
        return self.inner.store(objects, deadline)


def world(seconds_per_event: float = 0.0) -> tuple[MemoryBackEnd, ManualClock, SlowArchive]:
    store = MemoryBackEnd.empty()
    store.experiments.put_all([experiment("exp-1")])
    store.assignments.put_all([assignment(f"user-{n}", "exp-1", "control") for n in range(5)])
    clock = ManualClock(NOW)
    return store, clock, SlowArchive(store.archive, clock, seconds_per_event)


def processor(
    store: MemoryBackEnd,
    clock: ManualClock,
    archive: EventArchive,
    metrics: MetricStore | None = None,
) -> BatchProcessor:
    faulty = {} if metrics is None else {"metric_store_adapter": metrics}
    return store.processor(
        clock=clock,
        processing_settings=ProcessingSettings(segment_records=1_000),
        event_archive_adapter=archive,
        **faulty,
    )


def clicks(first: int, last: int, user_of: dict[int, str] | None = None) -> list[RawRecord]:
    users = user_of or {}
    return [
        record_of(event_payload(event_id=f"evt-{n}", user_id=users.get(n, f"user-{n % 5}")), n)
        for n in range(first, last + 1)
    ]


def daily_events(store: MemoryBackEnd) -> int:
    return sum(s.measures.event_count for s in store.metrics.snapshots("exp-1", Granularity.DAY))


def archived_sequences(store: MemoryBackEnd) -> set[int]:
    return {record_from_archive_line(line).coordinates.sequence for line in store.archive.lines()}


def test_without_a_time_limit_a_large_batch_is_written_as_one() -> None:
    store, clock, archive = world()
    result = processor(store, clock, archive).process(clicks(1, 2_500))
    assert result.failures == ()
    assert archive.calls == 1
    assert daily_events(store) == 2_500


def test_a_batch_longer_than_the_time_left_makes_a_prefix_durable_and_asks_for_the_rest() -> None:
    store, clock, archive = world(seconds_per_event=0.01)
    batch = clicks(1, 4_000)

    # 1,000 records take 10 s; half of the 30 s left fits 1,500 more; half of the 15 s then
    # left is shorter than that segment took, so the rest is left for the next invocation.
    result = processor(store, clock, archive).process(batch, ClockDeadline(clock, 40.0))

    assert archive.calls == 2
    durable = archived_sequences(store)
    assert durable == set(range(1, 2_501)), "the durable part is not the first two segments"
    assert daily_events(store) == 2_500
    assert [c.sequence for c in result.failures] == list(range(2_501, 4_001))
    assert any("1500 records not begun" in problem for problem in result.problems)
    assert store.telemetry.results() == [result], "telemetry is published once per invocation"

    again = processor(store, clock, archive).process(batch[2_500:])
    assert again.failures == ()
    assert archived_sequences(store) == set(range(1, 4_001))
    assert daily_events(store) == 4_000


def test_no_segment_is_begun_that_the_time_left_cannot_make_durable() -> None:
    store, clock, archive = world(seconds_per_event=0.01)

    result = processor(store, clock, archive).process(clicks(1, 3_000), ClockDeadline(clock, 12.0))

    assert archive.calls == 1, "a segment was begun with too little time left"
    assert archived_sequences(store) == set(range(1, 1_001))
    assert [c.sequence for c in result.failures] == list(range(1_001, 3_001))


def test_after_a_segment_that_is_not_durable_the_rest_is_not_begun() -> None:
    store, clock, archive = world()
    store.experiments.put_all([experiment("exp-2")])
    store.assignments.put_all([assignment("flaky", "exp-2", "control")])
    flaky = FailingMetricStore(store.metrics, failing_experiment="exp-2")
    batch = clicks(1, 1_500, user_of={500: "flaky"})

    result = processor(store, clock, archive, flaky).process(batch, ClockDeadline(clock, 900.0))

    failed = [c.sequence for c in result.failures]
    assert failed[0] == 500
    assert set(range(1_001, 1_501)) <= set(failed)
    assert archive.calls == 1
    assert max(archived_sequences(store)) <= 1_000, "a record of the segment not begun was archived"
