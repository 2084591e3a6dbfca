"""Defence in depth: whatever slips past the contract, one record's data never fails a batch.
A stage that raises on one record's values, or a store that refuses one record's data for good,
costs that record a dead letter with the reason, and the rest of the batch is processed."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import timedelta

import pytest

from application.accumulators import ArchiveAccumulator, MetricAccumulator
from application.ports import (
    NO_EARLIER_RECORDS,
    AssignmentRepository,
    Deadline,
    EarlierRecords,
    WriteReport,
)
from domain.archiving import ArchiveLimits
from domain.attribution import Matches
from domain.errors import InfrastructureConfigurationError
from domain.events import AcceptedColumns, ExperimentEvent
from domain.experiments import Assignment
from domain.metrics import Granularity, MetricDelta
from domain.records import KinesisCoordinates
from domain.rejections import RejectionReason, Stage
from infrastructure.in_memory.metric_store import InMemoryMetricStore
from infrastructure.in_memory.repositories import InMemoryAssignmentRepository
from tests.factories import NOW, SHARD, event_payload, record_of
from tests.unit.test_process_batch import back_end, click, daily, processor_for


def test_a_record_whose_values_make_a_stage_raise_is_dead_lettered_and_the_rest_counted() -> None:
    store = back_end()
    # A value no repository hands out (both skip an assignment with a naive time, as its model
    # refuses it): attribution compares it with the event's aware time and raises.
    broken = Assignment.model_construct(
        user_id="broken",
        experiment_id="exp-1",
        variant_id="control",
        assigned_at=(NOW - timedelta(days=1)).replace(tzinfo=None),
    )
    assignments = _HandingOut(store.assignments, broken)
    records = [click(1), click(2, user_id="broken"), click(3, user_id="user-2")]

    result = processor_for(store, assignments=assignments).process(records)

    assert result.failures == ()
    assert result.processed == 2
    assert result.dead_lettered == {RejectionReason.UNPROCESSABLE: 1}
    [letter] = store.dead_letters.letters()
    assert (letter.sequence, letter.stage) == (2, Stage.PROCESS)
    assert "TypeError" in letter.detail
    assert daily(store, "exp-1") == {("control", "click"): (1, 1), ("treatment", "click"): (1, 1)}
    archived = [line for line in store.archive.lines() if b'"broken"' in line]
    assert archived == []


class _HandingOut(AssignmentRepository):
    """A repository that also hands out one assignment no real repository would."""

    def __init__(self, repository: AssignmentRepository, extra: Assignment) -> None:
        self._repository = repository
        self._extra = extra

    def assignments_for(self, user_ids: Collection[str]) -> dict[str, tuple[Assignment, ...]]:
        found = self._repository.assignments_for(user_ids)
        if self._extra.user_id in user_ids:
            found[self._extra.user_id] = (*found.get(self._extra.user_id, ()), self._extra)
        return found


class _RefusingMetricStore(InMemoryMetricStore):
    """The in-memory store, refusing for good every record of one user as a store refuses
    data it cannot hold (the rest of each delta is applied)."""

    def __init__(self, refused_user: str) -> None:
        super().__init__()
        self._refused_user = refused_user

    def apply(
        self,
        deltas: Sequence[MetricDelta],
        deadline: Deadline,
        earlier_records: EarlierRecords = NO_EARLIER_RECORDS,
    ) -> WriteReport:
        refused: dict[tuple[str, int], str] = {}
        kept: list[MetricDelta] = []
        for delta in deltas:
            rows = [
                row
                for row in zip(delta.sequences, delta.user_ids, delta.values, strict=True)
                if row[1] != self._refused_user
                or refused.setdefault((delta.shard_id, row[0]), "ValidationException: refused")
                is None
            ]
            if rows:
                sequences, users, values = zip(*rows, strict=True)
                kept.append(MetricDelta(delta.key, delta.shard_id, sequences, users, values))
        report = super().apply(kept, deadline, earlier_records)
        return WriteReport(report.cut, report.problems, refused)


def test_a_record_a_store_refuses_for_good_is_dead_lettered_unstorable_and_not_archived() -> None:
    store = back_end()
    metrics = _RefusingMetricStore("user-2")
    records = [click(1), click(2, user_id="user-2"), click(3)]

    result = processor_for(store, metrics=metrics).process(records)

    assert result.failures == ()
    assert result.processed == 2
    assert result.dead_lettered == {RejectionReason.UNSTORABLE: 1}
    [letter] = store.dead_letters.letters()
    assert (letter.sequence, letter.stage, letter.data) == (2, Stage.STORE, records[1].data)
    assert [s.measures.event_count for s in metrics.snapshots("exp-1", Granularity.DAY)] == [2]
    assert not [line for line in store.archive.lines() if b'"user-2"' in line]

    again = processor_for(store, metrics=metrics).process(records)

    assert again.failures == ()
    assert [s.measures.event_count for s in metrics.snapshots("exp-1", Granularity.DAY)] == [2]


def test_records_whose_archive_object_s3_would_refuse_are_dead_lettered_and_the_rest_archived() -> (
    None
):
    store = back_end()
    # No Kinesis shard id is this long (at most 128 characters): the in-memory archive refuses
    # the object's key as S3 does, and the use case dead-letters its records.
    long_shard = "s" * 1_000
    records = [click(1), record_of(event_payload(event_id="evt-2"), 2, long_shard), click(3)]

    result = processor_for(store).process(records)

    assert result.failures == ()
    assert result.dead_lettered == {RejectionReason.UNSTORABLE: 1}
    [letter] = store.dead_letters.letters()
    assert (letter.coordinates.shard_id, letter.sequence) == (long_shard, 2)
    assert "KeyTooLongError" in letter.detail
    assert [o.metadata["shard-id"] for o in store.archive.objects()] == [SHARD]

    again = processor_for(store).process(records)

    assert again.failures == ()
    assert [o.metadata["shard-id"] for o in store.archive.objects()] == [SHARD]


def _columns_at(event_us: int) -> tuple[AcceptedColumns, list[tuple[tuple[str, str], ...]]]:
    event = ExperimentEvent.model_validate_json(
        b'{"event_id":"e","event_type":"click","user_id":"u","timestamp":"2026-11-20T10:00:00Z"}'
    )
    columns = AcceptedColumns(
        [event, event],
        [b"{}", b"{}"],
        [KinesisCoordinates(SHARD, "1", "pk", 1.0), KinesisCoordinates(SHARD, "2", "pk", 1.0)],
        [event_us, 1_795_168_800_000_000],
    )
    return columns, [(("exp-1", "control"),), (("exp-1", "control"),)]


def test_accumulators_hand_back_records_whose_time_has_no_window_or_partition() -> None:
    beyond_the_calendar = 10**18  # microseconds after 1970: far past the year 9999
    columns, variants = _columns_at(beyond_the_calendar)
    metrics = MetricAccumulator()
    metrics.add_columns(columns, variants)
    archive = ArchiveAccumulator(ArchiveLimits())
    archive.add_columns(columns, Matches(variants, [(0.0,), (0.0,)]))

    assert set(metrics.unplaceable()) == {(SHARD, 1)}
    assert set(archive.unplaceable()) == {(SHARD, 1)}
    assert [delta.sequences for delta in metrics.deltas()] == [(2,), (2,), (2,)]
    assert [obj.event_ids for obj in archive.objects()] == [("e",)]


class _MisconfiguredAssignments(InMemoryAssignmentRepository):
    """The repository as a missing table answers: a configuration error for every lookup."""

    def assignments_for(self, user_ids: Collection[str]) -> dict[str, tuple[Assignment, ...]]:
        raise InfrastructureConfigurationError("BatchGetItem", "ResourceNotFoundException")


def test_a_configuration_error_fails_the_batch_loudly_instead_of_dead_lettering_records() -> None:
    store = back_end()

    with pytest.raises(InfrastructureConfigurationError):
        processor_for(store, assignments=_MisconfiguredAssignments()).process([click(1)])

    assert store.dead_letters.letters() == []
