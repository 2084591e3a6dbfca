"""X-Ray subsegments around each port call, so a trace shows where a batch spent its time."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from aws_lambda_powertools import Tracer

from application.ports import (
    NO_EARLIER_RECORDS,
    AssignmentRepository,
    DeadLetterQueue,
    Deadline,
    EarlierRecords,
    EventArchive,
    ExperimentRepository,
    MetricSnapshot,
    MetricStore,
    WriteReport,
)
from domain.archiving import ArchiveObject
from domain.experiments import Assignment, Experiment
from domain.metrics import Granularity, MetricDelta, MetricKey
from domain.rejections import DeadLetter


class TracedAssignmentRepository(AssignmentRepository):
    def __init__(self, inner: AssignmentRepository, tracer: Tracer) -> None:
        self._inner = inner
        self._tracer = tracer

    def assignments_for(self, user_ids: Collection[str]) -> dict[str, tuple[Assignment, ...]]:
        with self._tracer.provider.in_subsegment("## assignments_for") as subsegment:
            subsegment.put_metadata("users", len(user_ids))
            return self._inner.assignments_for(user_ids)


class TracedExperimentRepository(ExperimentRepository):
    def __init__(self, inner: ExperimentRepository, tracer: Tracer) -> None:
        self._inner = inner
        self._tracer = tracer

    def experiments(self, experiment_ids: Collection[str]) -> dict[str, Experiment]:
        with self._tracer.provider.in_subsegment("## experiments"):
            return self._inner.experiments(experiment_ids)


class TracedMetricStore(MetricStore):
    def __init__(self, inner: MetricStore, tracer: Tracer) -> None:
        self._inner = inner
        self._tracer = tracer

    def apply(
        self,
        deltas: Sequence[MetricDelta],
        deadline: Deadline,
        earlier_records: EarlierRecords = NO_EARLIER_RECORDS,
    ) -> WriteReport:
        with self._tracer.provider.in_subsegment("## apply_metric_deltas") as subsegment:
            subsegment.put_metadata("deltas", len(deltas))
            return self._inner.apply(deltas, deadline, earlier_records)

    def snapshots(
        self,
        experiment_id: str,
        granularity: Granularity,
        start: datetime | None = None,
        end: datetime | None = None,
        user_sets: bool = False,
    ) -> list[MetricSnapshot]:
        with self._tracer.provider.in_subsegment("## metric_snapshots"):
            return self._inner.snapshots(experiment_id, granularity, start, end, user_sets)

    def watermarks(self, keys: Collection[MetricKey], shard_id: str) -> dict[MetricKey, int]:
        with self._tracer.provider.in_subsegment("## metric_watermarks"):
            return self._inner.watermarks(keys, shard_id)


class TracedEventArchive(EventArchive):
    def __init__(self, inner: EventArchive, tracer: Tracer) -> None:
        self._inner = inner
        self._tracer = tracer

    def store(self, objects: Sequence[ArchiveObject], deadline: Deadline) -> WriteReport:
        with self._tracer.provider.in_subsegment("## archive_objects") as subsegment:
            subsegment.put_metadata("objects", len(objects))
            return self._inner.store(objects, deadline)


class TracedDeadLetterQueue(DeadLetterQueue):
    def __init__(self, inner: DeadLetterQueue, tracer: Tracer) -> None:
        self._inner = inner
        self._tracer = tracer

    def send(self, letters: Sequence[DeadLetter], deadline: Deadline) -> WriteReport:
        with self._tracer.provider.in_subsegment("## dead_letters") as subsegment:
            subsegment.put_metadata("letters", len(letters))
            return self._inner.send(letters, deadline)
