"""Producer re-sends are dropped across cold starts when the event-id index is durable, and the
batch stays exactly once when that index cannot be read or written."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import pytest

from application.ports import (
    Deadline,
    EventArchive,
    MetricStore,
    RecentEventIndex,
    SeenEvent,
    WriteReport,
)
from application.process_batch import BatchProcessor, ProcessingSettings
from domain.archiving import ArchiveObject
from domain.errors import TransientInfrastructureError
from domain.records import RawRecord
from infrastructure.clock import ManualClock
from infrastructure.in_memory.recent_events import InMemoryRecentEventIndex
from tests.containers import MemoryBackEnd, memory_settings
from tests.factories import NOW, event_payload, record_of
from tests.unit.test_process_batch import FailingMetricStore, back_end, click, daily

OTHER_SHARD = "shardId-000000000007"


class DurableEventIds(RecentEventIndex):
    """An index that outlives containers, and whose reads or writes can be made to fail as a
    throttled or unreachable table would (nothing of a failed call takes effect)."""

    def __init__(self) -> None:
        self.held = InMemoryRecentEventIndex(capacity=1_000_000)
        self.failing_lookups: set[int] = set()
        """Calls to `lookup` (counted from 1) that fail."""
        self.lookups = 0
        self.remember_fails = False
        self.remembered: list[dict[str, SeenEvent]] = []

    def lookup(self, event_ids: Collection[str]) -> dict[str, SeenEvent]:
        self.lookups += 1
        if self.lookups in self.failing_lookups:
            raise TransientInfrastructureError("BatchGetItem", "event ids unavailable")
        return self.held.lookup(event_ids)

    def remember(self, events: Mapping[str, SeenEvent]) -> None:
        if self.remember_fails:
            raise TransientInfrastructureError("BatchWriteItem", "event ids not written")
        self.remembered.append(dict(events))
        self.held.remember(events)


def container(
    store: MemoryBackEnd,
    durable: RecentEventIndex,
    *,
    metrics: MetricStore | None = None,
    archive: EventArchive | None = None,
    chunk_records: int = 2_500,
) -> BatchProcessor:
    """A freshly started container: its memory of event ids is empty, the durable index and
    the counters, archive and dead letters are the deployment's."""
    replaced = {
        name: adapter
        for name, adapter in (("metric_store_adapter", metrics), ("event_archive_adapter", archive))
        if adapter is not None
    }
    return store.processor(
        memory_settings(event_id_index="dynamodb"),
        recent_events_in_memory=InMemoryRecentEventIndex(),
        durable_event_ids_adapter=durable,
        clock=ManualClock(NOW),
        processing_settings=ProcessingSettings(chunk_records=chunk_records),
        **replaced,
    )


def resent(event_id: str, sequence: int, shard_id: str = OTHER_SHARD) -> RawRecord:
    """The same event put again by its producer (a retry after a lost PutRecords response):
    another record, maybe in another shard."""
    return record_of(event_payload(event_id=event_id), sequence, shard_id=shard_id)


def test_a_re_send_arriving_after_a_cold_start_is_dropped_and_the_event_counted_once() -> None:
    store, durable = back_end(), DurableEventIds()
    container(store, durable).process([record_of(event_payload(event_id="same"), 1)])

    after_cold_start = container(store, durable).process([resent("same", 9)])

    assert (after_cold_start.processed, after_cold_start.duplicates) == (0, 1)
    assert daily(store, "exp-1") == {("control", "click"): (1, 1)}
    assert len(list(store.archive.lines())) == 1


def test_without_a_durable_index_a_cold_start_forgets_and_the_re_send_counts_again() -> None:
    # The gap the durable index closes, shown with the default (memory only) index.
    store = back_end()
    for records in ([record_of(event_payload(event_id="same"), 1)], [resent("same", 9)]):
        store.processor(recent_events_in_memory=InMemoryRecentEventIndex()).process(records)

    assert daily(store, "exp-1") == {("control", "click"): (2, 1)}


def test_a_redelivery_of_the_same_record_after_a_cold_start_is_no_duplicate_and_counts_once() -> (
    None
):
    store, durable = back_end(), DurableEventIds()
    original = record_of(event_payload(event_id="same"), 1)
    container(store, durable).process([original])

    redelivered = container(store, durable).process([original])

    assert (redelivered.processed, redelivered.duplicates, redelivered.failures) == (1, 0, ())
    assert daily(store, "exp-1") == {("control", "click"): (1, 1)}


def test_when_the_index_cannot_be_read_nothing_is_counted_and_every_valid_record_comes_again() -> (
    None
):
    store, durable = back_end(), DurableEventIds()
    durable.failing_lookups = {1}
    records = [record_of(b"{bad", 1), click(2), click(3, user_id="user-2")]

    result = container(store, durable).process(records)

    assert [c.sequence for c in result.failures] == [2, 3]
    assert result.processed == 0
    assert [d.sequence for d in store.dead_letters.letters()] == [1]
    assert result.stage_errors == {"deduplicate": 1}
    assert result.problems == ("BatchGetItem: event ids unavailable",)
    assert list(store.archive.lines()) == []
    assert daily(store, "exp-1") == {}
    assert durable.remembered == []

    retry = container(store, durable).process([r for r in records if r.sequence >= 2])

    assert (retry.processed, retry.failures) == (2, ())
    assert daily(store, "exp-1") == {("control", "click"): (1, 1), ("treatment", "click"): (1, 1)}


def test_a_read_failure_in_a_later_chunk_sends_back_what_earlier_chunks_kept_or_dropped() -> None:
    store, durable = back_end(), DurableEventIds()
    durable.failing_lookups = {3}
    records = [
        click(1),
        record_of(event_payload(event_id="evt-1"), 2),  # the same event again: a duplicate
        click(3),
        record_of(b"{bad", 4),
        click(5),
    ]

    result = container(store, durable, chunk_records=1).process(records)

    assert [c.sequence for c in result.failures] == [1, 2, 3, 4, 5]
    assert (result.processed, result.duplicates) == (0, 0)
    assert store.dead_letters.letters() == []
    assert daily(store, "exp-1") == {}

    retry = container(store, durable, chunk_records=1).process(records)

    assert (retry.processed, retry.duplicates, retry.dead_lettered_total) == (3, 1, 1)
    assert daily(store, "exp-1") == {("control", "click"): (3, 1)}


def test_when_the_index_cannot_be_written_nothing_is_written_and_every_record_comes_again() -> None:
    store, durable = back_end(), DurableEventIds()
    durable.remember_fails = True
    records = [record_of(b"{bad", 1), click(2), click(3, user_id="user-2")]

    result = container(store, durable).process(records)

    assert [c.sequence for c in result.failures] == [1, 2, 3]
    assert (result.processed, result.dead_lettered) == (0, {})
    assert result.stage_errors == {"deduplicate": 1}
    assert result.problems == ("BatchWriteItem: event ids not written",)
    assert store.dead_letters.letters() == []
    assert list(store.archive.lines()) == []
    assert daily(store, "exp-1") == {}

    durable.remember_fails = False
    retry = container(store, durable).process(records)
    again = container(store, durable).process(records)

    assert (retry.processed, retry.dead_lettered_total, retry.failures) == (2, 1, ())
    assert (again.processed, again.duplicates) == (2, 0)
    assert daily(store, "exp-1") == {("control", "click"): (1, 1), ("treatment", "click"): (1, 1)}
    assert len(set(store.archive.lines())) == 2


def test_a_write_failure_in_one_shard_cuts_only_that_shard_and_remembers_below_the_cut() -> None:
    store, durable = back_end(), DurableEventIds()
    flaky = FailingMetricStore(store.metrics, failing_experiment="exp-2")
    records = [
        record_of(event_payload(event_id="a", user_id="user-2"), 5, shard_id="shard-a"),
        record_of(event_payload(event_id="b", user_id="user-1"), 7, shard_id="shard-b"),
    ]

    result = container(store, durable, metrics=flaky).process(records)

    assert [(c.shard_id, c.sequence) for c in result.failures] == [("shard-b", 7)]
    # Remembered before the writes: the redelivered record is known as itself.
    assert durable.remembered == [{"a": ("shard-a", 5), "b": ("shard-b", 7)}]
    redelivered = container(store, durable).process([records[1]])
    assert (redelivered.processed, redelivered.duplicates) == (1, 0)
    assert daily(store, "exp-2") == {("treatment", "click"): (1, 1)}


class SimulatedCrash(BaseException):
    """The process is gone: nothing after it runs, nothing catches it."""


class CrashingArchive(EventArchive):
    """The process dies after the counters were written, before the archive is."""

    def store(self, objects: Sequence[ArchiveObject], deadline: Deadline) -> WriteReport:
        raise SimulatedCrash


def test_a_crash_after_the_counters_were_written_leaves_the_ids_known_to_the_next_container() -> (
    None
):
    store, durable = back_end(), DurableEventIds()
    original = record_of(event_payload(event_id="same"), 1)
    with pytest.raises(SimulatedCrash):
        container(store, durable, archive=CrashingArchive()).process([original])
    assert daily(store, "exp-1") == {("control", "click"): (1, 1)}

    # Another shard's batch carries the producer's re-send before the crashed one comes again.
    re_send = container(store, durable).process([resent("same", 9)])
    redelivery = container(store, durable).process([original])

    assert (re_send.processed, re_send.duplicates) == (0, 1)
    assert (redelivery.processed, redelivery.duplicates) == (1, 0)
    assert daily(store, "exp-1") == {("control", "click"): (1, 1)}
    assert len(list(store.archive.lines())) == 1
