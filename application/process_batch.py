"""The use case: process one batch of Kinesis records through the ports."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from application.enrichment import Enricher, EventMatcher
from application.ports import (
    AssignmentRepository,
    Clock,
    DeadLetterQueue,
    Deadline,
    EventArchive,
    ExperimentRepository,
    MetricStore,
    NoDeadline,
    RecentEventIndex,
    Telemetry,
)
from application.process_segment import SegmentProcessor, sequence_order
from application.processing_settings import ProcessingSettings
from application.results import BatchResult
from domain.archiving import ArchiveLineWriter
from domain.attribution import CandidateMemo
from domain.records import KinesisCoordinates, RawRecord
from domain.rejections import RejectionReason

__all__ = ["SEGMENT_TIME_SHARE", "BatchProcessor", "ProcessingSettings"]


SEGMENT_TIME_SHARE = 0.5
"""The share of the time left that the next segment is sized to fill at the pace of the last
(a segment's writes grow more slowly than its records, so the estimate errs on the safe side)."""


class BatchProcessor:
    """Parse, validate, enrich, aggregate, archive and dead-letter one batch.

    The batch is cut into segments (see `process`), each processed by a `SegmentProcessor`,
    whose docstring states the failure contract: a permanently invalid record is dead-lettered
    and acknowledged; what a port could not make durable is redelivered, per shard from the
    lowest such record on (the segment's `ShardCut`), and everything below it has every effect
    durable. Redelivered records are never counted twice because the metric store skips
    records at or below its per-shard watermark.
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
        memo: CandidateMemo | None = None,
        line_writer: ArchiveLineWriter | None = None,
        matcher: EventMatcher | None = None,
    ) -> None:
        """`memo` and `line_writer` are the caches kept across batches of a warm container,
        built once by the composition root (see their docstrings for what they require); a
        processor of its own, as in a test, gets fresh ones. `matcher` replaces the enrichment
        through `assignments` and `experiments` (an archive replay counts each event for the
        variants the archive holds for it: `ArchivedAttributions`)."""
        self._clock = clock
        self._telemetry = telemetry
        self._settings = settings
        self._segments = SegmentProcessor(
            matcher if matcher is not None else Enricher(assignments, experiments, memo),
            metrics,
            archive,
            dead_letters,
            recent_events,
            clock,
            settings,
            line_writer if line_writer is not None else ArchiveLineWriter(),
        )

    def process(
        self, records: Sequence[RawRecord], deadline: Deadline | None = None
    ) -> BatchResult:
        """Process the batch as consecutive segments in sequence order, each made fully durable
        before the next is begun, so that an invocation whose time runs out has still made a
        prefix of the batch durable and the checkpoint moves: a batch larger than one invocation
        can write drains over several, and its redelivery costs only what is not yet durable.

        A batch of at most `segment_records`, or one with no time limit, is one segment (the
        writes of each counter are amortised over the whole batch). Otherwise the first
        segment has `segment_records` records and each next one is sized to fill
        `SEGMENT_TIME_SHARE` of the time left at the pace of the last. Processing stops after a
        segment that could not make everything durable, or when that share of the time left is
        shorter than the last segment took; every record not begun is reported for redelivery.
        """
        deadline = deadline or NoDeadline()
        order = sequence_order(records)
        ordered = records if order is None else [records[i] for i in order]
        monotonic = self._clock.monotonic
        segments: list[BatchResult] = []
        start = 0
        size = (
            len(ordered)
            if math.isinf(deadline.remaining_seconds())
            else min(len(ordered), self._settings.segment_records)
        )
        while True:
            begun = monotonic()
            segment = ordered[start : start + size]
            result = self._segments.process(segment, deadline)
            segments.append(result)
            start += len(segment)
            left = len(ordered) - start
            if not left or result.failures or deadline.expired():
                break
            size = self._next_segment_size(len(segment), monotonic() - begun, deadline, left)
            if not size:
                break
        not_begun = [r.coordinates for r in ordered[start:]]
        if not_begun:
            why = (
                "a segment before them is not yet durable"
                if result.failures
                else "too little time is left to make them durable"
            )
            problems: tuple[str, ...] = (f"{len(not_begun)} records not begun: {why}",)
        else:
            problems = ()
        combined = _combined(len(records), segments, not_begun, problems)
        self._telemetry.publish(combined)
        return combined

    @staticmethod
    def _next_segment_size(done: int, seconds: float, deadline: Deadline, left: int) -> int:
        """How many records the next segment takes: as many as fill `SEGMENT_TIME_SHARE` of
        the time left at the pace of the last segment, and 0 when that share is shorter than the
        last segment took. A segment's cost is partly fixed (its counters and markers are
        written once whatever its size), so a smaller segment is not assumed to be quicker."""
        budget = deadline.remaining_seconds() * SEGMENT_TIME_SHARE
        if seconds <= 0 or math.isinf(budget):
            return left
        if budget < seconds:
            return 0
        return min(left, int(done * budget / seconds))


def _combined(
    records: int,
    segments: Sequence[BatchResult],
    not_begun: Sequence[KinesisCoordinates],
    problems_of_batch: Sequence[str],
) -> BatchResult:
    """One result for the batch from its segments' and the records of segments not begun."""
    if len(segments) == 1 and not not_begun:
        return segments[0]
    dead_lettered: Counter[RejectionReason] = Counter()
    stage_seconds: Counter[str] = Counter()
    stage_errors: dict[str, int] = {}
    for segment in segments:
        dead_lettered.update(segment.dead_lettered)
        stage_seconds.update(segment.stage_seconds)
        for stage, errors in segment.stage_errors.items():
            stage_errors[stage] = max(stage_errors.get(stage, 0), errors)
    problems = [p for segment in segments for p in segment.problems]
    problems.extend(problems_of_batch)
    return BatchResult(
        records=records,
        processed=sum(s.processed for s in segments),
        duplicates=sum(s.duplicates for s in segments),
        dead_lettered=dict(dead_lettered),
        unattributed=sum(s.unattributed for s in segments),
        attributions=sum(s.attributions for s in segments),
        archived_objects=sum(s.archived_objects for s in segments),
        metric_keys_updated=sum(s.metric_keys_updated for s in segments),
        failures=(*(c for s in segments for c in s.failures), *not_begun),
        problems=tuple(dict.fromkeys(problems)),
        stage_seconds=dict(stage_seconds),
        stage_errors=stage_errors,
    )
