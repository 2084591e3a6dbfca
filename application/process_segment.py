"""One segment of a batch, as named steps around its cut.

A segment is decoded, deduplicated and prepared chunk by chunk, then written once: the recent
event ids first, then the counters, the archive and the dead letters. Its cut (`ShardCut`, kept
in `SegmentWork`) only moves down as steps fail; at the end every record at or above its
shard's cut is reported for redelivery, and every record below it has all its effects durable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import islice
from operator import le

from application.accumulators import ArchiveAccumulator, MetricAccumulator
from application.batch_work import FailedStage, Prepared, SegmentWork, cut_of
from application.enrichment import EventMatcher
from application.isolation import decode_guarded, letters_for
from application.ports import (
    COMPLETE,
    Clock,
    DeadLetterQueue,
    Deadline,
    EventArchive,
    MetricStore,
    RecentEventIndex,
    RecordId,
    WriteReport,
)
from application.processing_settings import ProcessingSettings
from application.results import BatchResult
from application.shard_cut import ShardCut
from domain.archiving import ArchiveLineWriter
from domain.errors import PipelineError, TransientInfrastructureError
from domain.events import AcceptedColumns
from domain.records import RawRecord
from domain.rejections import DeadLetter, RejectionReason


class SegmentProcessor:
    """Process one segment of a batch, in sequence order, and make what it can durable.

    Failure contract, step by step (each step lowers the segment's cut, never raises it):
    - a permanently invalid record is dead-lettered and acknowledged;
    - the recent-event index cannot be read: nothing of the segment is counted, each shard is
      redelivered from its lowest valid record (`FailedStage.DEDUPLICATE`);
    - the assignments or experiments cannot be read: nothing is counted, each shard is
      redelivered from its lowest record that was to be counted (`FailedStage.ENRICH`);
    - the deadline has passed before the writes, or the index cannot be written: nothing is
      written, each shard is redelivered from its lowest record to count or dead-letter;
    - a write port reports work it could not make durable: its shard is redelivered from the
      lowest such record (the port's `WriteReport.cut`).
    The index is remembered before any write: a crash after the counters' writes then cannot
    leave a counted id unknown to it (a later re-send would be counted again), and a redelivery
    of records remembered but not written is recognised as the same records, not duplicates.
    Redelivered records are never counted twice: the metric store skips records at or below its
    per-shard watermark.
    """

    def __init__(
        self,
        enricher: EventMatcher,
        metrics: MetricStore,
        archive: EventArchive,
        dead_letters: DeadLetterQueue,
        recent_events: RecentEventIndex,
        clock: Clock,
        settings: ProcessingSettings,
        line_writer: ArchiveLineWriter,
    ) -> None:
        self._enricher = enricher
        self._metrics = metrics
        self._archive = archive
        self._dead_letters = dead_letters
        self._recent_events = recent_events
        self._clock = clock
        self._settings = settings
        self._line_writer = line_writer

    def process(self, records: Sequence[RawRecord], deadline: Deadline) -> BatchResult:
        """Process one segment chunk by chunk, in sequence order, then write it.

        Each chunk is decoded, deduplicated, enriched and reduced to what the writes need (the
        counters' columns and the archive lines); its events are dropped before the next chunk,
        so memory holds one chunk of events, not the batch. The writes are issued once, at the
        end, for the whole segment, and the outcome is the same as processing it at once. The
        segment's cut (see `SegmentWork`) decides what of it is written and what redelivered.
        """
        work = SegmentWork(self._new_prepared())
        started = self._clock.monotonic()
        now = self._clock.now()
        order = sequence_order(records)
        work.timings["decode"] += self._clock.monotonic() - started
        chunk_records = self._settings.chunk_records
        for chunk_start in range(0, len(records), chunk_records):
            positions = range(chunk_start, min(chunk_start + chunk_records, len(records)))
            chunk = positions if order is None else order[positions.start : positions.stop]
            self._take_chunk(records, chunk, now, work)
        self._reject_unplaceable(records, work)
        self._settle_before_writing(work, deadline)
        self._remember_ids(work)
        metric_report = self._write_counters(work, deadline)
        archive_report = self._write_archive(work, deadline)
        self._reject_refused(records, work, metric_report, archive_report)
        with self._timed("dead_letter", work.timings):
            dead_letter_report = self._dead_letters.send(work.letters, deadline)
        for stage, report in (
            ("write_metrics", metric_report),
            ("archive", archive_report),
            ("dead_letter", dead_letter_report),
        ):
            work.problems.extend(report.problems)
            if not report.complete:
                work.stage_errors[stage] = 1
            work.lower_cut(report.cut)
        return self._result(records, work)

    # -- the steps of a segment, in the order they run -----------------------------------------

    def _take_chunk(
        self, records: Sequence[RawRecord], chunk: Sequence[int], now: datetime, work: SegmentWork
    ) -> None:
        """Decode, deduplicate and prepare one chunk; once a stage failed for the segment, only
        find what the cut must redeliver."""
        accepted = self._decode(records, chunk, now, work)
        if work.failed is FailedStage.DEDUPLICATE:
            work.lower_cut(cut_of(accepted.coordinates))
            return
        kept = self._deduplicate(accepted, work)
        if kept is None:
            return
        unique, unique_ids = kept
        del accepted
        if work.failed is FailedStage.ENRICH:
            work.lower_cut(cut_of(unique.coordinates))
            return
        started = self._clock.monotonic()
        try:
            self._prepare_or_isolate(records, unique, unique_ids, work)
        except TransientInfrastructureError as error:
            # Nothing of the segment is enriched: drop what earlier chunks prepared.
            work.fail(FailedStage.ENRICH, error, self._new_prepared())
            work.lower_cut(work.first_unique)
            work.timings["enrich"] += self._clock.monotonic() - started

    def _decode(
        self, records: Sequence[RawRecord], chunk: Sequence[int], now: datetime, work: SegmentWork
    ) -> AcceptedColumns:
        """The chunk's valid records; the others become dead letters."""
        started = self._clock.monotonic()
        limits = self._settings.event_limits
        accepted, rejected = decode_guarded(records, chunk, limits, now)
        work.rejected.extend(rejected)
        work.timings["decode"] += self._clock.monotonic() - started
        return accepted

    def _deduplicate(
        self, accepted: AcceptedColumns, work: SegmentWork
    ) -> tuple[AcceptedColumns, list[str]] | None:
        """The chunk's records not seen before, with their ids; None when the recent-event index
        cannot be read (then no id of the segment can be told new: nothing of it is counted, and
        every valid record, a duplicate found so far included, is redelivered)."""
        started = self._clock.monotonic()
        try:
            seen = self._recent_events.lookup([event.event_id for event in accepted.events])
            unique, unique_ids = work.keep_first_of_each_id(accepted, seen)
        except TransientInfrastructureError as error:
            work.fail(FailedStage.DEDUPLICATE, error, self._new_prepared())
            work.lower_cut(
                work.first_unique, ShardCut.of(work.duplicates), cut_of(accepted.coordinates)
            )
            return None
        finally:
            work.timings["deduplicate"] += self._clock.monotonic() - started
        # Chunks come in sequence order: a shard's first unique record is its lowest.
        work.first_unique = work.first_unique.merged(cut_of(unique.coordinates))
        return unique, unique_ids

    def _prepare_or_isolate(
        self,
        records: Sequence[RawRecord],
        unique: AcceptedColumns,
        unique_ids: list[str],
        work: SegmentWork,
    ) -> None:
        """Prepare the chunk; when a stage raises on it, find the records responsible."""
        try:
            self._prepare(unique, unique_ids, work.prepared, work.timings)
        except PipelineError:
            raise  # a port's failure (transient, or configuration: fails loudly)
        except Exception as error:  # defence in depth: see _isolate
            work.rejected.extend(self._isolate(records, unique, unique_ids, work, error))

    def _reject_unplaceable(self, records: Sequence[RawRecord], work: SegmentWork) -> None:
        """Dead-letter the records whose counters or archive lines cannot be placed, then put
        the segment's dead letters in arrival order."""
        unplaceable = work.prepared.unplaceable()
        if unplaceable:
            work.prepared.drop(unplaceable)
            work.rejected.extend(letters_for(records, unplaceable, RejectionReason.UNPROCESSABLE))
        work.in_segment.clear()  # the segment's ids: not held while the writes run
        work.rejected.sort(key=_by_index)  # dead letters go out in arrival order
        work.letters = [letter for _, letter in work.rejected]
        work.rejected.clear()

    @staticmethod
    def _settle_before_writing(work: SegmentWork, deadline: Deadline) -> None:
        """Nothing is written once the deadline has passed: everything is redelivered."""
        if deadline.expired():
            work.problems.append("deadline reached before writing")
            work.lower_cut(work.cut_to_write())
        work.settle()

    def _remember_ids(self, work: SegmentWork) -> None:
        """Remember the ids to count before any write (see the class docstring); when that
        fails, nothing is written and everything to write is redelivered."""
        if not work.prepared.events.event_ids:
            return
        with self._timed("deduplicate", work.timings):
            try:
                self._recent_events.remember(work.prepared.events.seen_events())
            except TransientInfrastructureError as error:
                work.problems.append(str(error))
                work.stage_errors["deduplicate"] = 1
                work.lower_cut(work.cut_to_write())
                work.settle()

    def _write_counters(self, work: SegmentWork, deadline: Deadline) -> WriteReport:
        """Apply the counters; a record the store refused is not archived either (its dead
        letter keeps it)."""
        with self._timed("aggregate", work.timings):
            deltas = work.prepared.metrics.deltas()
            work.prepared.metrics = MetricAccumulator()  # not held while the rest is written
        with self._timed("write_metrics", work.timings):
            report = self._metrics.apply(deltas, deadline)
        work.metric_keys_updated = len(deltas)
        if report.refused:
            work.prepared.drop(report.refused)
        return report

    def _write_archive(self, work: SegmentWork, deadline: Deadline) -> WriteReport:
        with self._timed("archive", work.timings):
            archive = work.prepared.archive
            if archive is None:
                return COMPLETE
            objects = archive.objects()
            work.prepared.archive = None  # built: not held while the rest is written
            work.archived_objects = len(objects)
            return self._archive.store(objects, deadline)

    @staticmethod
    def _reject_refused(
        records: Sequence[RawRecord],
        work: SegmentWork,
        metric_report: WriteReport,
        archive_report: WriteReport,
    ) -> None:
        """Dead-letter the records a store refused for good (`unstorable`)."""
        refused = {**archive_report.refused, **metric_report.refused}
        if not refused:
            return
        work.prepared.drop(refused)
        keeps = work.cut.keeps
        work.letters.extend(
            letter
            for _, letter in letters_for(records, refused, RejectionReason.UNSTORABLE)
            if keeps(letter.coordinates.shard_id, letter.sequence)
        )

    @staticmethod
    def _result(records: Sequence[RawRecord], work: SegmentWork) -> BatchResult:
        """What the segment made durable; every record at or above the cut is a failure."""
        work.settle()
        keeps = work.cut.keeps
        failures = tuple(
            record.coordinates
            for record in records
            if not keeps(record.coordinates.shard_id, record.sequence)
        )
        events = work.prepared.events
        return BatchResult(
            records=len(records),
            processed=len(events.event_ids),
            duplicates=len(work.duplicates),
            dead_lettered=dict(Counter(d.reason for d in work.letters)),
            unattributed=events.attributions.count(0),
            attributions=sum(events.attributions),
            archived_objects=work.archived_objects,
            metric_keys_updated=work.metric_keys_updated,
            failures=failures,
            problems=tuple(work.problems),
            stage_seconds=work.timings,
            stage_errors=work.stage_errors,
        )

    # -- preparing a chunk ------------------------------------------------------------------------

    def _prepare(
        self,
        unique: AcceptedColumns,
        unique_ids: list[str],
        prepared: Prepared,
        timings: dict[str, float],
    ) -> None:
        """Enrich a chunk's unique events and add them to what the writes need."""
        monotonic = self._clock.monotonic
        enriched_at = monotonic()
        matches = self._enricher.match(unique)
        aggregated_at = monotonic()
        timings["enrich"] += aggregated_at - enriched_at
        prepared.metrics.add_columns(unique, matches.variants)
        archived_at = monotonic()
        timings["aggregate"] += archived_at - aggregated_at
        if prepared.archive is not None:
            prepared.archive.add_columns(unique, matches)
        prepared.events.add(unique_ids, unique.coordinates, matches.variants)
        timings["archive"] += monotonic() - archived_at

    def _isolate(
        self,
        records: Sequence[RawRecord],
        unique: AcceptedColumns,
        unique_ids: list[str],
        work: SegmentWork,
        error: Exception,
    ) -> list[tuple[int, DeadLetter]]:
        """A stage raised on a chunk: one record's values must never fail a batch. What the
        chunk added is taken back, each record is prepared alone to find those that raise, and
        the others are prepared again; the ones that raise are dead letters (`unprocessable`).
        Never taken for valid data: the contract should have refused whatever gets here."""
        work.prepared.drop({(where.shard_id, where.sequence) for where in unique.coordinates})
        good: list[int] = []
        failed: dict[RecordId, str] = {}
        for index, where in enumerate(unique.coordinates):
            try:
                self._prepare(
                    unique.select([index]),
                    [unique_ids[index]],
                    self._new_prepared(),
                    dict(work.timings),
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
            unique.select(good), [unique_ids[i] for i in good], work.prepared, work.timings
        )
        return letters_for(records, failed, RejectionReason.UNPROCESSABLE)

    def _new_prepared(self) -> Prepared:
        """Empty; its archive is None when the batch's events are not archived (a replay of
        the archive itself)."""
        settings = self._settings
        archive = (
            ArchiveAccumulator(settings.archive_limits, self._line_writer)
            if settings.archive_events
            else None
        )
        return Prepared(MetricAccumulator(), archive)

    @contextmanager
    def _timed(self, stage: str, timings: dict[str, float]) -> Iterator[None]:
        started = self._clock.monotonic()
        try:
            yield
        finally:
            timings[stage] = timings.get(stage, 0.0) + self._clock.monotonic() - started


def sequence_order(records: Sequence[RawRecord]) -> Sequence[int] | None:
    """The positions of the records in sequence order (a stable sort), or None when they are in
    order already, as Kinesis delivers one shard's records."""
    sequences = [record.coordinates.sequence for record in records]
    if all(map(le, sequences, islice(sequences, 1, None))):
        return None
    return sorted(range(len(records)), key=sequences.__getitem__)


def _by_index(item: tuple[int, DeadLetter]) -> int:
    return item[0]
