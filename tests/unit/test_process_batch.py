from __future__ import annotations

import gzip
import json
from collections.abc import Collection, Sequence
from datetime import timedelta

from application.ports import (
    NO_EARLIER_RECORDS,
    AssignmentRepository,
    DeadLetterQueue,
    Deadline,
    EarlierRecords,
    EventArchive,
    MetricStore,
    WriteReport,
)
from application.process_batch import BatchProcessor, ProcessingSettings
from application.shard_cut import ShardCut
from domain.archiving import ArchiveLimits
from domain.errors import TransientInfrastructureError
from domain.experiments import Assignment, ExperimentStatus
from domain.metrics import Granularity, MetricDelta
from domain.records import RawRecord
from domain.rejections import DeadLetter, RejectionReason
from infrastructure.clock import ManualClock
from tests.containers import MemoryBackEnd
from tests.factories import NOW, SHARD, assignment, event_payload, experiment, record_of
from tests.faults.ports import MetricStoreInFront


def back_end() -> MemoryBackEnd:
    store = MemoryBackEnd.empty()
    store.experiments.put_all(
        [experiment("exp-1"), experiment("exp-2"), experiment("exp-off", ExperimentStatus.PAUSED)]
    )
    store.assignments.put_all(
        [
            assignment("user-1", "exp-1", "control"),
            assignment("user-1", "exp-2", "treatment"),
            assignment("user-1", "exp-off", "control"),
            assignment("user-2", "exp-1", "treatment"),
            assignment("late", "exp-1", "control", assigned_at=NOW + timedelta(minutes=30)),
        ]
    )
    return store


def processor_for(
    store: MemoryBackEnd,
    *,
    assignments: AssignmentRepository | None = None,
    metrics: MetricStore | None = None,
    archive: EventArchive | None = None,
    dead_letters: DeadLetterQueue | None = None,
    archive_limits: ArchiveLimits | None = None,
) -> BatchProcessor:
    replaced = {
        name: adapter
        for name, adapter in (
            ("assignment_repository_adapter", assignments),
            ("metric_store_adapter", metrics),
            ("event_archive_adapter", archive),
            ("dead_letter_queue_adapter", dead_letters),
        )
        if adapter is not None
    }
    return store.processor(
        clock=ManualClock(NOW),
        processing_settings=ProcessingSettings(archive_limits=archive_limits or ArchiveLimits()),
        **replaced,
    )


def click(sequence: int, user_id: str = "user-1", **fields: object) -> RawRecord:
    return record_of(event_payload(event_id=f"evt-{sequence}", user_id=user_id, **fields), sequence)


def daily(store: MemoryBackEnd, experiment_id: str) -> dict[tuple[str, str], tuple[int, int]]:
    return {
        (s.key.variant_id, s.key.metric): (s.measures.event_count, s.unique_users)
        for s in store.metrics.snapshots(experiment_id, Granularity.DAY)
    }


def test_attributes_an_event_to_every_running_experiment_the_user_is_in() -> None:
    store = back_end()
    result = processor_for(store).process([click(1)])
    assert result.processed == 1
    assert result.attributions == 2
    assert daily(store, "exp-1") == {("control", "click"): (1, 1)}
    assert daily(store, "exp-2") == {("treatment", "click"): (1, 1)}
    assert daily(store, "exp-off") == {}


def test_an_event_naming_an_experiment_counts_only_for_it() -> None:
    store = back_end()
    processor_for(store).process([click(1, experiment_id="exp-2")])
    assert daily(store, "exp-1") == {}
    assert daily(store, "exp-2") == {("treatment", "click"): (1, 1)}


def test_events_before_the_assignment_or_of_unknown_users_are_archived_but_unattributed() -> None:
    store = back_end()
    result = processor_for(store).process([click(1, user_id="late"), click(2, user_id="stranger")])
    assert result.processed == 2
    assert result.unattributed == 2
    assert daily(store, "exp-1") == {}
    assert len(list(store.archive.lines())) == 2


def test_hourly_and_daily_counters_with_unique_users_and_exact_value_sums() -> None:
    store = back_end()
    records = [
        click(1, event_type="purchase", value=19.99, timestamp="2026-11-20T10:15:00Z"),
        click(2, event_type="purchase", value=0.01, timestamp="2026-11-20T11:45:00+01:00"),
        click(
            3, event_type="purchase", value=5.0, user_id="user-2", timestamp="2026-11-20T11:05:00Z"
        ),
    ]
    processor_for(store).process(records)
    hourly = {
        (s.key.variant_id, s.key.window_label): (
            s.measures.event_count,
            s.unique_users,
            str(s.measures.value_sum),
        )
        for s in store.metrics.snapshots("exp-1", Granularity.HOUR)
    }
    assert hourly == {
        ("control", "2026-11-20T10"): (2, 1, "20.00"),
        ("treatment", "2026-11-20T11"): (1, 1, "5.0"),
    }
    days = store.metrics.snapshots("exp-1", Granularity.DAY)
    assert [(s.key.variant_id, s.measures.event_count, s.unique_users) for s in days] == [
        ("control", 2, 1),
        ("treatment", 1, 1),
    ]


def test_the_same_event_id_twice_in_a_batch_is_processed_once() -> None:
    store = back_end()
    first = record_of(event_payload(event_id="same"), 1)
    again = record_of(event_payload(event_id="same"), 2)
    result = processor_for(store).process([first, again])
    assert (result.processed, result.duplicates) == (1, 1)
    assert daily(store, "exp-1") == {("control", "click"): (1, 1)}
    assert store.dead_letters.letters() == []


def test_a_duplicate_arriving_in_a_later_batch_is_dropped_but_a_redelivery_is_not_double_counted() -> (
    None
):
    store = back_end()
    processor = processor_for(store)
    original = record_of(event_payload(event_id="same"), 1)
    processor.process([original])
    redelivered = processor.process([original])
    copy = processor.process([record_of(event_payload(event_id="same"), 9)])
    assert redelivered.duplicates == 0
    assert copy.duplicates == 1
    assert daily(store, "exp-1") == {("control", "click"): (1, 1)}


def test_invalid_records_are_dead_lettered_with_reasons_and_acknowledged() -> None:
    store = back_end()
    records = [
        click(1),
        record_of(b"{oops", 2),
        record_of("***", 3),
        record_of(event_payload(user_id=""), 4),
    ]
    result = processor_for(store).process(records)
    assert result.failures == ()
    assert result.dead_lettered == {
        RejectionReason.INVALID_JSON: 1,
        RejectionReason.INVALID_BASE64: 1,
        RejectionReason.INVALID_FIELD: 1,
    }
    assert [letter.sequence for letter in store.dead_letters.letters()] == [2, 3, 4]


def test_archive_lines_keep_the_event_as_received_plus_enrichment_and_coordinates() -> None:
    store = back_end()
    processor_for(store).process([click(1, campaign={"id": 7}, properties={"名": "✓"})])
    [line] = list(store.archive.lines())
    archived = json.loads(line)
    assert archived["campaign"] == {"id": 7}
    assert archived["properties"] == {"名": "✓"}
    assert archived["_pipeline"]["kinesis"]["sequence_number"] == "1"
    assert archived["_pipeline"]["kinesis"]["shard_id"] == SHARD
    assert {a["experiment_id"] for a in archived["_pipeline"]["attributions"]} == {"exp-1", "exp-2"}
    assert (
        archived["_pipeline"]["attributions"][0]["time_since_assignment_seconds"] == 86_400 - 1_800
    )


def test_archive_objects_are_split_by_event_hour_and_size_limit() -> None:
    store = back_end()
    records = [click(i, timestamp=f"2026-11-20T{10 + i % 2}:00:00Z") for i in range(1, 8)]
    processor_for(store, archive_limits=ArchiveLimits(max_events_per_object=2)).process(records)
    keys = [o.key for o in store.archive.objects()]
    assert len(keys) == 4  # hour 10: 3 events -> 2 objects; hour 11: 4 events -> 2 objects
    assert sum(k.startswith("year=2026/month=11/day=20/hour=10/") for k in keys) == 2
    assert sum(k.startswith("year=2026/month=11/day=20/hour=11/") for k in keys) == 2
    for stored in store.archive.objects():
        assert len(gzip.decompress(stored.blob).splitlines()) == int(stored.metadata["event-count"])


class FailingMetricStore(MetricStoreInFront):
    """Applies deltas through a real store, except that keys of one experiment fail transiently."""

    def __init__(self, inner: MetricStore, failing_experiment: str) -> None:
        super().__init__(inner)
        self.failing_experiment = failing_experiment

    def apply(
        self,
        deltas: Sequence[MetricDelta],
        deadline: Deadline,
        earlier_records: EarlierRecords = NO_EARLIER_RECORDS,
    ) -> WriteReport:
        good = [d for d in deltas if d.key.experiment_id != self.failing_experiment]
        bad = [d for d in deltas if d.key.experiment_id == self.failing_experiment]
        self.inner.apply(good, deadline, earlier_records)
        unfinished = ShardCut.of((delta.shard_id, delta.first_sequence) for delta in bad)
        return WriteReport(unfinished, ("throttled",) if bad else ())


def test_a_transient_metric_failure_reports_the_suffix_from_the_first_unfinished_record() -> None:
    store = back_end()
    flaky = FailingMetricStore(store.metrics, failing_experiment="exp-2")
    records = [click(1, user_id="user-2"), click(2, user_id="user-1"), click(3, user_id="user-2")]
    result = processor_for(store, metrics=flaky).process(records)
    assert [c.sequence for c in result.failures] == [2, 3]
    assert result.batch_item_failures() == [{"itemIdentifier": "2"}, {"itemIdentifier": "3"}]
    assert result.processed == 1


def test_redelivery_after_a_partial_failure_counts_every_event_exactly_once() -> None:
    store = back_end()
    records = [click(1, user_id="user-2"), click(2, user_id="user-1"), click(3, user_id="user-2")]
    flaky = FailingMetricStore(store.metrics, failing_experiment="exp-2")
    first = processor_for(store, metrics=flaky).process(records)
    redelivery = [r for r in records if r.sequence >= first.failures[0].sequence]
    second = processor_for(store).process(redelivery)
    assert second.failures == ()
    assert daily(store, "exp-1") == {("treatment", "click"): (2, 1), ("control", "click"): (1, 1)}
    assert daily(store, "exp-2") == {("treatment", "click"): (1, 1)}


class UnavailableAssignments(AssignmentRepository):
    def assignments_for(self, user_ids: Collection[str]) -> dict[str, tuple[Assignment, ...]]:
        raise TransientInfrastructureError("BatchGetItem", "throttled")


def test_when_enrichment_is_unavailable_every_valid_record_is_redelivered_and_bad_ones_still_dead_lettered() -> (
    None
):
    store = back_end()
    records = [record_of(b"{bad", 1), click(2), click(3)]
    result = processor_for(store, assignments=UnavailableAssignments()).process(records)
    assert [c.sequence for c in result.failures] == [2, 3]
    assert [d.sequence for d in store.dead_letters.letters()] == [1]
    assert list(store.archive.lines()) == []
    assert daily(store, "exp-1") == {}


class BrokenDeadLetterQueue(DeadLetterQueue):
    def send(self, letters: Sequence[DeadLetter], deadline: Deadline) -> WriteReport:
        if not letters:
            return WriteReport()
        return WriteReport(
            ShardCut({letters[0].coordinates.shard_id: min(d.sequence for d in letters)}),
            ("down",),
        )


def test_a_record_that_cannot_be_dead_lettered_is_reported_as_a_batch_failure() -> None:
    store = back_end()
    result = processor_for(store, dead_letters=BrokenDeadLetterQueue()).process(
        [click(1), record_of(b"x", 2), click(3)]
    )
    assert [c.sequence for c in result.failures] == [2, 3]
    assert result.dead_lettered == {}
    assert result.problems == ("down",)


class ExpiredDeadline(Deadline):
    def expired(self) -> bool:
        return True


def test_a_batch_out_of_time_writes_nothing_and_asks_for_everything_again() -> None:
    store = back_end()
    result = processor_for(store).process([click(1), click(2)], deadline=ExpiredDeadline())
    assert [c.sequence for c in result.failures] == [1, 2]
    assert daily(store, "exp-1") == {}


def test_failures_are_tracked_per_shard() -> None:
    store = back_end()
    flaky = FailingMetricStore(store.metrics, failing_experiment="exp-2")
    records = [
        record_of(event_payload(event_id="a", user_id="user-2"), 5, shard_id="shard-a"),
        record_of(event_payload(event_id="b", user_id="user-1"), 7, shard_id="shard-b"),
    ]
    result = processor_for(store, metrics=flaky).process(records)
    assert [(c.shard_id, c.sequence) for c in result.failures] == [("shard-b", 7)]


def test_telemetry_receives_every_batch_result() -> None:
    store = back_end()
    result = processor_for(store).process([click(1)])
    assert store.telemetry.results() == [result]
    assert set(result.stage_seconds) >= {"decode", "enrich", "aggregate", "archive", "dead_letter"}


def test_an_archive_line_gives_back_the_record_exactly_as_received() -> None:
    from domain.archiving import record_from_archive_line

    store = back_end()
    original = click(41, campaign={"note": 'a "_pipeline": trick'}, properties={"名": "✓"})
    processor_for(store).process([original])
    [line] = list(store.archive.lines())
    restored = record_from_archive_line(line)
    assert restored.data == original.data
    assert restored.coordinates == original.coordinates
