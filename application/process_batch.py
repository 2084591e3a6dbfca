"""The use case: process one batch of Kinesis records through the ports."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from operator import le

from application.enrichment import Enricher
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
    RecordId,
    SeenEvent,
    Telemetry,
    merge_unfinished,
)
from application.results import BatchResult
from domain.archiving import ArchiveAccumulator, ArchiveLimits, ArchiveLineWriter
from domain.attribution import VariantKey
from domain.decoding import decode_record, decode_records
from domain.errors import PipelineError, TransientInfrastructureError
from domain.events import AcceptedColumns, EventLimits
from domain.metrics import MetricAccumulator
from domain.records import KinesisCoordinates, RawRecord
from domain.rejections import DeadLetter, RejectionReason


@dataclass(frozen=True, slots=True)
class ProcessingSettings:
    event_limits: EventLimits = field(default_factory=EventLimits)
    archive_limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    archive_events: bool = True
    """False only when replaying the archive itself: those events are archived already."""
    chunk_records: int = 2_500
    """Records decoded and enriched at a time: memory holds one chunk's events, not the batch's
    (see docs/performance.md). The outcome does not depend on it."""
    segment_records: int = 1_000
    """When the invocation's time is limited, the first part of a larger batch that is made
    fully durable (counted, marked, archived, dead-lettered) before the rest is begun; each
    later part is sized to the time left (see `BatchProcessor.process`)."""

    def __post_init__(self) -> None:
        if self.chunk_records < 1 or self.segment_records < 1:
            raise ValueError("chunk_records and segment_records must be at least 1")


SEGMENT_TIME_SHARE = 0.5
"""The share of the time left that the next segment is sized to fill at the pace of the last
(a segment's writes grow more slowly than its records, so the estimate errs on the safe side)."""


class BatchProcessor:
    """Parse, validate, enrich, aggregate, archive and dead-letter one batch.

    Failure contract: a permanently invalid record is dead-lettered and acknowledged. When a
    port reports work it could not make durable, every record of that shard from the lowest such
    sequence number on is reported as a failure, so Kinesis redelivers exactly that suffix; all
    records below it have every effect durable. Redelivered records are never counted twice
    because the metric store skips records at or below its per-shard watermark.

    The recent-event index is remembered first, before any write of the batch: a crash after the
    counters' writes then cannot leave a counted id unknown to it (a later re-send would be
    counted again), and a redelivery of records remembered but not written is recognised as the
    same records, not as duplicates. When the index cannot be read, nothing of the batch is
    counted and each shard is redelivered from its lowest valid record; when it cannot be
    written, nothing is written and each shard is redelivered from its lowest record that was to
    be counted or dead-lettered.
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
        self._metrics = metrics
        self._archive = archive
        self._dead_letters = dead_letters
        self._recent_events = recent_events
        self._clock = clock
        self._telemetry = telemetry
        self._settings = settings
        self._enricher = Enricher(assignments, experiments)
        self._line_writer = ArchiveLineWriter()

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
        order = _sequence_order(records)
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
            result = self._process_segment(segment, deadline)
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

    def _process_segment(self, records: Sequence[RawRecord], deadline: Deadline) -> BatchResult:
        """Process one segment chunk by chunk, in sequence order.

        Each chunk is decoded, deduplicated, enriched and reduced to what the writes need (the
        counters' columns and the archive lines); its events are dropped before the next chunk,
        so memory holds one chunk of events, not the batch. The writes are issued once, at the
        end, for the whole batch, and the outcome is the same as processing the batch at once.
        """
        timings = dict.fromkeys(_STAGES, 0.0)
        problems: list[str] = []
        unfinished: dict[str, int] = {}
        stage_errors: dict[str, int] = {}
        monotonic = self._clock.monotonic
        settings = self._settings
        limits = settings.event_limits
        chunk_records = max(1, settings.chunk_records)

        started = monotonic()
        now = self._clock.now()
        order = _sequence_order(records)
        timings["decode"] += monotonic() - started

        metrics = MetricAccumulator()
        archive = self._new_archive()
        rejected: list[tuple[int, DeadLetter]] = []
        duplicates: list[tuple[str, int]] = []
        done = _Done()
        in_batch: set[str] = set()
        lowest_unique: dict[str, int] = {}
        enrichment_failed = False
        lookup_failed = False
        lowest_valid: dict[str, int] = {}
        """Filled only once the index could not be read: each shard's lowest valid record."""

        for chunk_start in range(0, len(records), chunk_records):
            started = monotonic()
            positions = range(chunk_start, min(chunk_start + chunk_records, len(records)))
            chunk_positions = (
                positions if order is None else order[positions.start : positions.stop]
            )
            try:
                accepted, chunk_rejected = decode_records(records, chunk_positions, limits, now)
            except Exception as error:  # defence in depth: see _decode_one_by_one
                accepted, chunk_rejected = _decode_one_by_one(
                    records, chunk_positions, limits, now, error
                )
            rejected.extend(chunk_rejected)
            decoded = monotonic()
            timings["decode"] += decoded - started

            if lookup_failed:
                _lower_each(lowest_valid, accepted.coordinates)
                timings["deduplicate"] += monotonic() - decoded
                continue
            try:
                unique, unique_ids = self._drop_duplicates(accepted, in_batch, duplicates)
            except TransientInfrastructureError as error:
                lookup_failed = True
                # No id of this batch can be told new: nothing of it is counted, and every valid
                # record (a duplicate found so far included) is redelivered.
                metrics, archive = self._discarded(error, "deduplicate", problems, stage_errors)
                done.clear()
                lowest_valid = merge_unfinished(lowest_unique)
                for shard_id, sequence in duplicates:
                    _lower(lowest_valid, shard_id, sequence)
                _lower_each(lowest_valid, accepted.coordinates)
                timings["deduplicate"] += monotonic() - decoded
                continue
            del accepted
            # Chunks come in sequence order: a shard's first unique record is its lowest.
            for shard_id, sequence in {
                c.shard_id: c.sequence for c in reversed(unique.coordinates)
            }.items():
                lowest_unique.setdefault(shard_id, sequence)
            enriched_at = monotonic()
            timings["deduplicate"] += enriched_at - decoded

            if enrichment_failed:
                continue
            try:
                try:
                    self._prepare(unique, unique_ids, metrics, archive, done, timings)
                except PipelineError:
                    raise  # a port's failure (transient, or configuration: fails loudly)
                except Exception as error:  # defence in depth: see _isolate
                    rejected.extend(
                        self._isolate(
                            records, unique, unique_ids, metrics, archive, done, timings, error
                        )
                    )
            except TransientInfrastructureError as error:
                enrichment_failed = True
                # Nothing of this batch is enriched: drop what earlier chunks prepared.
                metrics, archive = self._discarded(error, "enrich", problems, stage_errors)
                done.clear()
                timings["enrich"] += monotonic() - enriched_at
                continue
            del unique, unique_ids

        unplaceable = metrics.unplaceable()
        if archive is not None:
            unplaceable.update(archive.unplaceable())
        if unplaceable:
            self._drop(unplaceable, metrics, archive, done)
            rejected.extend(_letters(records, unplaceable, RejectionReason.UNPROCESSABLE))

        del in_batch  # the batch's ids: not held while the writes run
        if enrichment_failed:
            unfinished = merge_unfinished(unfinished, lowest_unique)
        if lookup_failed:
            unfinished = merge_unfinished(unfinished, lowest_valid)
        rejected.sort(key=_by_index)  # dead letters go out in arrival order
        letters = [letter for _, letter in rejected]
        del rejected

        if deadline.expired():
            problems.append("deadline reached before writing")
            unfinished = merge_unfinished(unfinished, _lowest_to_write(done, letters))

        def below_cut(shard_id: str, sequence: int) -> bool:
            return _before_cut(unfinished, shard_id, sequence)

        if unfinished:
            done.restrict(below_cut)
            letters = [d for d in letters if below_cut(d.coordinates.shard_id, d.sequence)]
            metrics.restrict(below_cut)
            if archive is not None:
                archive.restrict(below_cut)

        if done.event_ids:
            # Remembered first: see the class docstring.
            started = monotonic()
            try:
                self._recent_events.remember(done.seen_events())
            except TransientInfrastructureError as error:
                problems.append(str(error))
                stage_errors["deduplicate"] = 1
                unfinished = merge_unfinished(unfinished, _lowest_to_write(done, letters))
                done.restrict(below_cut)
                letters = [d for d in letters if below_cut(d.coordinates.shard_id, d.sequence)]
                metrics.restrict(below_cut)
                if archive is not None:
                    archive.restrict(below_cut)
            timings["deduplicate"] += monotonic() - started

        started = monotonic()
        deltas = metrics.deltas()
        del metrics
        timings["aggregate"] += monotonic() - started
        with self._timed("write_metrics", timings):
            metric_report = self._metrics.apply(deltas, deadline)
        metric_keys_updated = len(deltas)
        del deltas  # written: not held while the archive objects are built
        if metric_report.refused:
            # Not archived either: the dead letter keeps the record.
            self._drop(metric_report.refused, None, archive, done)
        with self._timed("archive", timings):
            if archive is not None:
                objects = archive.objects()
                archive_report = self._archive.store(objects, deadline)
            else:
                objects, archive_report = [], COMPLETE
        refused = {**archive_report.refused, **metric_report.refused}
        if refused:
            done.restrict(lambda shard_id, sequence: (shard_id, sequence) not in refused)
            letters.extend(
                letter
                for _, letter in _letters(records, refused, RejectionReason.UNSTORABLE)
                if below_cut(letter.coordinates.shard_id, letter.sequence)
            )
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

        failures: tuple[KinesisCoordinates, ...] = ()
        if unfinished:
            done.restrict(below_cut)
            failures = tuple(
                record.coordinates
                for record in records
                if not below_cut(record.coordinates.shard_id, record.sequence)
            )
            duplicates = [d for d in duplicates if below_cut(*d)]
            letters = [d for d in letters if below_cut(d.coordinates.shard_id, d.sequence)]
        attributions = sum(done.attributions)
        return BatchResult(
            records=len(records),
            processed=len(done.event_ids),
            duplicates=len(duplicates),
            dead_lettered=dict(Counter(d.reason for d in letters)),
            unattributed=done.attributions.count(0),
            attributions=attributions,
            archived_objects=len(objects),
            metric_keys_updated=metric_keys_updated,
            failures=failures,
            problems=tuple(problems),
            stage_seconds=timings,
            stage_errors=stage_errors,
        )

    def _prepare(
        self,
        unique: AcceptedColumns,
        unique_ids: list[str],
        metrics: MetricAccumulator,
        archive: ArchiveAccumulator | None,
        done: _Done,
        timings: dict[str, float],
    ) -> None:
        """Enrich a chunk's unique events and add them to what the writes need."""
        monotonic = self._clock.monotonic
        enriched_at = monotonic()
        matches = self._enricher.match(unique)
        aggregated_at = monotonic()
        timings["enrich"] += aggregated_at - enriched_at
        metrics.add_columns(unique, matches.variants)
        archived_at = monotonic()
        timings["aggregate"] += archived_at - aggregated_at
        if archive is not None:
            archive.add_columns(unique, matches)
        done.add(unique_ids, unique.coordinates, matches.variants)
        timings["archive"] += monotonic() - archived_at

    def _isolate(
        self,
        records: Sequence[RawRecord],
        unique: AcceptedColumns,
        unique_ids: list[str],
        metrics: MetricAccumulator,
        archive: ArchiveAccumulator | None,
        done: _Done,
        timings: dict[str, float],
        error: Exception,
    ) -> list[tuple[int, DeadLetter]]:
        """A stage raised on a chunk: one record's values must never fail a batch. What the
        chunk added is taken back, each record is prepared alone to find those that raise, and
        the others are prepared again; the ones that raise are dead letters (`unprocessable`).
        Never taken for valid data: the contract should have refused whatever gets here."""
        chunk = {(where.shard_id, where.sequence) for where in unique.coordinates}
        self._drop(chunk, metrics, archive, done)
        good: list[int] = []
        failed: dict[RecordId, str] = {}
        for index, where in enumerate(unique.coordinates):
            try:
                self._prepare(
                    unique.select([index]),
                    [unique_ids[index]],
                    MetricAccumulator(),
                    self._new_archive(),
                    _Done(),
                    dict(timings),
                )
            except PipelineError:
                raise
            except Exception as single:
                failed[(where.shard_id, where.sequence)] = f"{type(single).__name__}: {single}"
            else:
                good.append(index)
        if not failed:
            raise error  # not one record's doing: a defect, which must not pass as bad data
        self._prepare(
            unique.select(good), [unique_ids[i] for i in good], metrics, archive, done, timings
        )
        return _letters(records, failed, RejectionReason.UNPROCESSABLE)

    @staticmethod
    def _drop(
        dropped: Collection[RecordId],
        metrics: MetricAccumulator | None,
        archive: ArchiveAccumulator | None,
        done: _Done,
    ) -> None:
        """Forget the records `dropped` in what the writes would make of them."""

        def keep(shard_id: str, sequence: int) -> bool:
            return (shard_id, sequence) not in dropped

        if metrics is not None:
            metrics.restrict(keep)
        if archive is not None:
            archive.restrict(keep)
        done.restrict(keep)

    def _discarded(
        self,
        error: TransientInfrastructureError,
        stage: str,
        problems: list[str],
        stage_errors: dict[str, int],
    ) -> tuple[MetricAccumulator, ArchiveAccumulator | None]:
        """Record a stage's failure; the empty accumulators that replace what earlier chunks
        prepared (nothing of the batch is written)."""
        problems.append(str(error))
        stage_errors[stage] = 1
        return MetricAccumulator(), self._new_archive()

    def _new_archive(self) -> ArchiveAccumulator | None:
        """None when the batch's events are not archived (a replay of the archive itself)."""
        settings = self._settings
        if not settings.archive_events:
            return None
        return ArchiveAccumulator(settings.archive_limits, self._line_writer)

    def _drop_duplicates(
        self,
        accepted: AcceptedColumns,
        in_batch: set[str],
        duplicates: list[tuple[str, int]],
    ) -> tuple[AcceptedColumns, list[str]]:
        """Keep the first record of each event id (`accepted` comes in sequence order, chunk
        after chunk; `in_batch` holds the ids kept by earlier chunks); a record seen before in
        an earlier batch is a duplicate only if it is a different record (a redelivery of the
        same one is not). The duplicates' (shard, sequence) are appended to `duplicates`; the
        kept events are returned with their ids."""
        event_ids = [event.event_id for event in accepted.events]
        seen = self._recent_events.lookup(event_ids)
        positions = dict(zip(event_ids, range(len(event_ids)), strict=True))
        if len(positions) == len(event_ids) and in_batch.isdisjoint(event_ids):
            # No id twice: only ids seen in earlier batches can be duplicates, and those only
            # if they came in another record (a redelivery of the same record is not one).
            where = accepted.coordinates
            for event_id, (shard_id, sequence) in seen.items():
                other = where[positions[event_id]]
                if other.sequence != sequence or other.shard_id != shard_id:
                    break
            else:
                in_batch.update(event_ids)
                return accepted, event_ids  # the common case
        keep: list[int] = []
        for index, (event_id, coordinates) in enumerate(
            zip(event_ids, accepted.coordinates, strict=True)
        ):
            earlier = seen.get(event_id)
            is_other_record = earlier is not None and earlier != (
                coordinates.shard_id,
                coordinates.sequence,
            )
            if event_id in in_batch or is_other_record:
                duplicates.append((coordinates.shard_id, coordinates.sequence))
            else:
                in_batch.add(event_id)
                keep.append(index)
        if len(keep) == len(event_ids):
            return accepted, event_ids
        return accepted.select(keep), [event_ids[i] for i in keep]

    @contextmanager
    def _timed(self, stage: str, timings: dict[str, float]) -> Iterator[None]:
        started = self._clock.monotonic()
        try:
            yield
        finally:
            timings[stage] = timings.get(stage, 0.0) + self._clock.monotonic() - started


_STAGES = (
    "decode",
    "deduplicate",
    "enrich",
    "aggregate",
    "write_metrics",
    "archive",
    "dead_letter",
)


@dataclass(slots=True)
class _Done:
    """The enriched events of a batch, as columns: what the result and the recent-event index
    need of them."""

    event_ids: list[str] = field(default_factory=list)
    shard_ids: list[str] = field(default_factory=list)
    sequences: list[int] = field(default_factory=list)
    attributions: list[int] = field(default_factory=list)

    def add(
        self,
        event_ids: list[str],
        coordinates: list[KinesisCoordinates],
        variants: list[tuple[VariantKey, ...]],
    ) -> None:
        self.event_ids.extend(event_ids)
        self.shard_ids.extend([c.shard_id for c in coordinates])
        self.sequences.extend([c.sequence for c in coordinates])
        self.attributions.extend(map(len, variants))

    def clear(self) -> None:
        for column in (self.event_ids, self.shard_ids, self.sequences, self.attributions):
            column.clear()

    def restrict(self, keep: Callable[[str, int], bool]) -> None:
        """Forget the events of which `keep(shard_id, sequence)` is false."""
        kept = [
            index
            for index, (shard_id, sequence) in enumerate(
                zip(self.shard_ids, self.sequences, strict=True)
            )
            if keep(shard_id, sequence)
        ]
        if len(kept) < len(self.event_ids):
            self.event_ids = [self.event_ids[i] for i in kept]
            self.shard_ids = [self.shard_ids[i] for i in kept]
            self.sequences = [self.sequences[i] for i in kept]
            self.attributions = [self.attributions[i] for i in kept]

    def seen_events(self) -> dict[str, SeenEvent]:
        return dict(
            zip(self.event_ids, zip(self.shard_ids, self.sequences, strict=True), strict=True)
        )


def _decode_one_by_one(
    records: Sequence[RawRecord],
    positions: Sequence[int],
    limits: EventLimits,
    now: datetime,
    error: Exception,
) -> tuple[AcceptedColumns, list[tuple[int, DeadLetter]]]:
    """`decode_records` record by record, after it raised: a record whose decoding raises is a
    dead letter (`unprocessable`) instead of failing the batch. Decoding never raises for bad
    input by design; if no single record raises, the defect is not the data's."""
    accepted = AcceptedColumns()
    rejected: list[tuple[int, DeadLetter]] = []
    for position in positions:
        record = records[position]
        try:
            outcome = decode_record(record, limits, now)
        except Exception as single:
            outcome = DeadLetter(
                RejectionReason.UNPROCESSABLE,
                f"decode: {type(single).__name__}: {single}",
                record.coordinates,
                record.data,
            )
        if isinstance(outcome, DeadLetter):
            rejected.append((position, outcome))
        else:
            accepted.append(outcome)
    if not any(letter.reason is RejectionReason.UNPROCESSABLE for _, letter in rejected):
        raise error
    return accepted, rejected


def _letters(
    records: Sequence[RawRecord], why: Mapping[RecordId, str], reason: RejectionReason
) -> list[tuple[int, DeadLetter]]:
    """Dead letters of `reason` for the records named in `why`, with their positions."""
    return [
        (position, DeadLetter(reason, why[where], record.coordinates, record.data))
        for position, record in enumerate(records)
        if (where := (record.coordinates.shard_id, record.sequence)) in why
    ]


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


def _sequence_order(records: Sequence[RawRecord]) -> Sequence[int] | None:
    """The positions of the records in sequence order (a stable sort), or None when they are in
    order already, as Kinesis delivers one shard's records."""
    sequences = [record.coordinates.sequence for record in records]
    if all(map(le, sequences, islice(sequences, 1, None))):
        return None
    return sorted(range(len(records)), key=sequences.__getitem__)


def _by_index(item: tuple[int, DeadLetter]) -> int:
    return item[0]


def _before_cut(cuts: Mapping[str, int], shard_id: str, sequence: int) -> bool:
    """Below its shard's cut (or in a shard without one): every effect of the record is kept."""
    cut = cuts.get(shard_id)
    return cut is None or sequence < cut


def _lower(lowest: dict[str, int], shard_id: str, sequence: int) -> None:
    current = lowest.get(shard_id)
    if current is None or sequence < current:
        lowest[shard_id] = sequence


def _lower_each(lowest: dict[str, int], coordinates: Sequence[KinesisCoordinates]) -> None:
    for where in coordinates:
        _lower(lowest, where.shard_id, where.sequence)


def _lowest_to_write(done: _Done, letters: Sequence[DeadLetter]) -> dict[str, int]:
    """Each shard's lowest record that the batch's writes would count or dead-letter."""
    lowest: dict[str, int] = {}
    for shard_id, sequence in zip(done.shard_ids, done.sequences, strict=True):
        _lower(lowest, shard_id, sequence)
    for letter in letters:
        _lower(lowest, letter.coordinates.shard_id, letter.sequence)
    return lowest
