"""The use case: process one batch of Kinesis records through the ports."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from application.ports import (
    COMPLETE,
    AssignmentRepository,
    Clock,
    DeadLetterQueue,
    Deadline,
    EventArchive,
    ExperimentRepository,
    MetricStore,
    NoDeadline,
    RecentEventIndex,
    SeenEvent,
    Telemetry,
    merge_unfinished,
)
from application.results import BatchResult
from domain.archiving import ArchiveLimits, build_archive_objects
from domain.attribution import CandidateMemo, EnrichedEvent, attribute_batch
from domain.decoding import decode_record
from domain.errors import TransientInfrastructureError
from domain.events import AcceptedEvent, EventLimits
from domain.metrics import aggregate
from domain.records import KinesisCoordinates, RawRecord
from domain.rejections import DeadLetter


@dataclass(frozen=True, slots=True)
class ProcessingSettings:
    event_limits: EventLimits = field(default_factory=EventLimits)
    archive_limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    archive_events: bool = True
    """False only when replaying the archive itself: those events are archived already."""


class BatchProcessor:
    """Parse, validate, enrich, aggregate, archive and dead-letter one batch.

    Failure contract: a permanently invalid record is dead-lettered and acknowledged. When a
    port reports work it could not make durable, every record of that shard from the lowest such
    sequence number on is reported as a failure, so Kinesis redelivers exactly that suffix; all
    records below it have every effect durable. Redelivered records are never counted twice
    because the metric store skips records at or below its per-shard watermark.
    """

    def __init__(
        self,
        assignments: AssignmentRepository,
        experiments: ExperimentRepository,
        metrics: MetricStore,
        archive: EventArchive,
        dead_letters: DeadLetterQueue,
        recent_events: RecentEventIndex,
        clock: Clock,
        telemetry: Telemetry,
        settings: ProcessingSettings,
    ) -> None:
        self._assignments = assignments
        self._experiments = experiments
        self._metrics = metrics
        self._archive = archive
        self._dead_letters = dead_letters
        self._recent_events = recent_events
        self._clock = clock
        self._telemetry = telemetry
        self._settings = settings
        self._candidates = CandidateMemo()

    def process(
        self, records: Sequence[RawRecord], deadline: Deadline | None = None
    ) -> BatchResult:
        deadline = deadline or NoDeadline()
        timings: dict[str, float] = {}
        problems: list[str] = []

        with self._timed("decode", timings):
            now = self._clock.now()
            limits = self._settings.event_limits
            accepted: list[AcceptedEvent] = []
            rejected: list[DeadLetter] = []
            for record in records:
                outcome = decode_record(record, limits, now)
                if isinstance(outcome, AcceptedEvent):
                    accepted.append(outcome)
                else:
                    rejected.append(outcome)

        with self._timed("deduplicate", timings):
            unique, duplicates = self._drop_duplicates(accepted)

        unfinished: dict[str, int] = {}
        stage_errors: dict[str, int] = {}
        with self._timed("enrich", timings):
            try:
                enriched = self._enrich(unique)
            except TransientInfrastructureError as error:
                problems.append(str(error))
                stage_errors["enrich"] = 1
                enriched = []
                unfinished = merge_unfinished(unfinished, _lowest_per_shard(unique))

        if deadline.expired():
            problems.append("deadline reached before writing")
            unfinished = merge_unfinished(
                unfinished, _lowest_per_shard([*enriched_records(enriched), *rejected])
            )

        def in_scope(shard_id: str, sequence: int) -> bool:
            cut = unfinished.get(shard_id)
            return cut is None or sequence < cut

        if unfinished:
            enriched = [
                e
                for e in enriched
                if in_scope(e.accepted.coordinates.shard_id, e.accepted.sequence)
            ]
            letters = [d for d in rejected if in_scope(d.coordinates.shard_id, d.sequence)]
        else:
            letters = rejected

        with self._timed("aggregate", timings):
            deltas = aggregate(enriched)
        with self._timed("write_metrics", timings):
            metric_report = self._metrics.apply(deltas, deadline)
        with self._timed("archive", timings):
            if self._settings.archive_events:
                objects = build_archive_objects(enriched, self._settings.archive_limits)
                archive_report = self._archive.store(objects, deadline)
            else:
                objects, archive_report = [], COMPLETE
        with self._timed("dead_letter", timings):
            dead_letter_report = self._dead_letters.send(letters, deadline)

        for stage, report in (
            ("write_metrics", metric_report),
            ("archive", archive_report),
            ("dead_letter", dead_letter_report),
        ):
            problems.extend(report.problems)
            if not report.complete:
                stage_errors[stage] = 1
        unfinished = merge_unfinished(
            unfinished,
            metric_report.unfinished_from,
            archive_report.unfinished_from,
            dead_letter_report.unfinished_from,
        )

        def committed(shard_id: str, sequence: int) -> bool:
            cut = unfinished.get(shard_id)
            return cut is None or sequence < cut

        failures: tuple[KinesisCoordinates, ...] = ()
        done_enriched = enriched
        if unfinished:
            done_enriched = [
                e
                for e in enriched
                if committed(e.accepted.coordinates.shard_id, e.accepted.sequence)
            ]
            failures = tuple(
                record.coordinates
                for record in records
                if not committed(record.coordinates.shard_id, record.sequence)
            )
            duplicates = [d for d in duplicates if committed(d.coordinates.shard_id, d.sequence)]
            letters = [d for d in letters if committed(d.coordinates.shard_id, d.sequence)]
        self._recent_events.remember(
            {
                e.accepted.event.event_id: SeenEvent(
                    e.accepted.coordinates.shard_id, e.accepted.coordinates.sequence
                )
                for e in done_enriched
            }
        )
        result = BatchResult(
            records=len(records),
            processed=len(done_enriched),
            duplicates=len(duplicates),
            dead_lettered=dict(Counter(d.reason for d in letters)),
            unattributed=sum(1 for e in done_enriched if not e.attributions),
            attributions=sum(len(e.attributions) for e in done_enriched),
            archived_objects=len(objects),
            metric_keys_updated=len(deltas),
            failures=failures,
            problems=tuple(problems),
            stage_seconds=timings,
            stage_errors=stage_errors,
        )
        self._telemetry.publish(result)
        return result

    def _drop_duplicates(
        self, accepted: list[AcceptedEvent]
    ) -> tuple[list[AcceptedEvent], list[AcceptedEvent]]:
        """Keep the first record of each event id; a record seen before in an earlier batch is a
        duplicate only if it is a different record (a redelivery of the same one is not)."""
        seen = self._recent_events.lookup({a.event.event_id for a in accepted})
        unique: list[AcceptedEvent] = []
        duplicates: list[AcceptedEvent] = []
        in_batch: set[str] = set()
        for item in sorted(accepted, key=lambda a: a.sequence):
            event_id = item.event.event_id
            earlier = seen.get(event_id)
            is_other_record = earlier is not None and (
                earlier.shard_id != item.coordinates.shard_id or earlier.sequence != item.sequence
            )
            if event_id in in_batch or is_other_record:
                duplicates.append(item)
            else:
                in_batch.add(event_id)
                unique.append(item)
        return unique, duplicates

    def _enrich(self, events: list[AcceptedEvent]) -> list[EnrichedEvent]:
        user_ids = {a.event.user_id for a in events}
        assignments = self._assignments.assignments_for(user_ids) if user_ids else {}
        experiment_ids = {
            assignment.experiment_id for items in assignments.values() for assignment in items
        }
        experiments = self._experiments.experiments(experiment_ids) if experiment_ids else {}
        return attribute_batch(events, assignments, experiments, self._candidates)

    @contextmanager
    def _timed(self, stage: str, timings: dict[str, float]) -> Iterator[None]:
        started = self._clock.monotonic()
        try:
            yield
        finally:
            timings[stage] = self._clock.monotonic() - started


def enriched_records(enriched: list[EnrichedEvent]) -> list[AcceptedEvent]:
    return [e.accepted for e in enriched]


def _lowest_per_shard(items: Sequence[AcceptedEvent | DeadLetter]) -> dict[str, int]:
    lowest: dict[str, int] = {}
    for item in items:
        shard_id = item.coordinates.shard_id
        current = lowest.get(shard_id)
        if current is None or item.sequence < current:
            lowest[shard_id] = item.sequence
    return lowest
