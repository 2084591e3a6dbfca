"""The `replay` command's sources: the S3 archive, the dead-letter queue and JSON Lines files.

How each source stays idempotent is in docs/replay.md: the archive goes back through the
stream's own path with the records' original coordinates (per-shard watermarks, nothing archived
again), and so do archive lines in a file; dead letters and other file lines go through the
replay use case under a lane of their own run (event-id claims, then watermarked counters).
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from application.enrichment import ArchivedAttributions, EventMatcher
from application.ports import NoDeadline, ReplayLedger
from application.process_batch import BatchProcessor
from application.replay import (
    REPLAY_SHARD_PREFIX,
    ReplayItem,
    ReplayOptions,
    ReplayProcessor,
    ReplayResult,
    ReplayStatus,
    not_attempted,
)
from domain.archiving import (
    PIPELINE_MEMBER,
    ArchivedRecord,
    ArchiveLineError,
    archived_record_from_line,
)
from domain.decoding import decode_record
from domain.records import KinesisCoordinates, RawRecord
from domain.rejections import DeadLetter

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

    from application.process_batch import ProcessingSettings
    from operations.aws.archive_reader import S3ArchiveReader
    from operations.aws.dead_letter_readers import S3DeadLetterReader, SqsDeadLetterReader


def whole_days(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """[start, end) widened to whole UTC days: a daily counter sums every hour of its day, so an
    archive replay must bring all of them for the watermark rule to hold (docs/replay.md)."""
    first = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    last = end.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if last < end.astimezone(UTC):
        last += timedelta(days=1)
    return first, last


@dataclass(slots=True)
class ReplaySummary:
    """What a replay came to: outcome counts, why records stayed invalid, what is left to do."""

    source: str
    dry_run: bool
    read: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    invalid_reasons: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    deleted_messages: int = 0
    kept_messages: int = 0

    @property
    def failed(self) -> int:
        return self.outcomes.get(ReplayStatus.FAILED.value, 0)

    def add(self, result: ReplayResult) -> None:
        self.outcomes.update(result.counts)
        self.invalid_reasons.update(result.invalid_reasons)
        self.problems.extend(result.problems)
        failures = Counter(
            o.detail or "no detail" for o in result.outcomes if o.status is ReplayStatus.FAILED
        )
        self.problems.extend(f"{n} failed: {detail}" for detail, n in failures.items())

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "dry_run": self.dry_run,
            "read": self.read,
            "outcomes": dict(sorted(self.outcomes.items())),
            "invalid_reasons": dict(sorted(self.invalid_reasons.items())),
            "deleted_messages": self.deleted_messages,
            "kept_messages": self.kept_messages,
            "problems": list(dict.fromkeys(self.problems)),
        }


def _chunks(items: Sequence[ReplayItem], size: int) -> Iterator[Sequence[ReplayItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


STOPPED = "not attempted: an earlier write of this run is unfinished; run the replay again"


@contextmanager
def replay_run(ledger: ReplayLedger, lane: str, dry_run: bool) -> Iterator[str]:
    """A run of `lane`, recorded as over when it ends however it ends (its unfinished claims can
    then be taken over by the next run at once); a dry run claims nothing."""
    if dry_run:
        yield lane
        return
    ledger.start_run(lane)
    try:
        yield lane
    finally:
        ledger.finish_run(lane)


@dataclass(frozen=True, slots=True)
class FileContents:
    """A JSON Lines file, split by what its lines are."""

    events: list[ReplayItem]
    """Plain events, under the run's lane (line numbers as sequence numbers)."""
    archived: list[ArchivedRecord]
    """Lines copied from the archive, under the coordinates they were counted under and with
    the attributions they were counted for."""


def file_items(path: Path, arrival: float, lane: str) -> FileContents:
    """One item per non-empty line. A line copied from the archive (it carries `_pipeline`)
    keeps its stream coordinates, so that it goes back the way `--from-archive` sends it and is
    never counted twice; a line that only looks archived is replayed as it is (validation names
    the field)."""
    events: list[ReplayItem] = []
    archived: list[ArchivedRecord] = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            text = line.strip()
            if not text:
                continue
            if PIPELINE_MEMBER in text:
                with suppress(ArchiveLineError):
                    archived.append(archived_record_from_line(text))
                    continue
            coordinates = KinesisCoordinates(lane, str(number), path.name, arrival)
            record = RawRecord(coordinates, base64.b64encode(text).decode("ascii"))
            events.append(ReplayItem(f"{path}:{number}", record))
    return FileContents(events, archived)


def under_lane(record: RawRecord, lane: str, sequence: int) -> RawRecord:
    """A dead letter's record under its replay run's coordinates."""
    original = record.coordinates
    coordinates = KinesisCoordinates(
        lane, str(sequence), original.partition_key, original.approximate_arrival_timestamp
    )
    return RawRecord(coordinates, record.data)


def replay_items(
    processor: ReplayProcessor,
    items: Sequence[ReplayItem],
    summary: ReplaySummary,
    batch_size: int,
    on_progress: Callable[[int], None] = lambda done: None,
    archive: bool = True,
) -> list[str]:
    """Replay in batches, in order, stopping at the first unfinished write (the items after it
    are reported failed, not attempted); returns the sources whose outcome is settled."""
    settled: list[str] = []
    options = ReplayOptions(archive=archive, dry_run=summary.dry_run)
    stopped = False
    for chunk in _chunks(items, batch_size):
        result = not_attempted(chunk, STOPPED) if stopped else processor.replay(chunk, options)
        stopped = stopped or result.interrupted
        summary.read += len(chunk)
        summary.add(result)
        settled.extend(result.settled_sources())
        on_progress(summary.read)
    return settled


def replay_dead_letters(
    processor: ReplayProcessor,
    reader: SqsDeadLetterReader,
    sqs: SQSClient,
    queue_url: str,
    summary: ReplaySummary,
    lane: str,
    on_progress: Callable[[int], None] = lambda done: None,
) -> None:
    """Receive until the queue has nothing visible; delete a message only once its event is
    settled (applied, already applied, unattributed or a duplicate, and archived). Messages
    kept (still invalid, failed, unreadable, or every message of a dry run) are made visible
    again at the end, for the next run or a person to look at."""
    kept: list[str] = []
    options = ReplayOptions(archive=True, dry_run=summary.dry_run)
    sequence = 0
    while True:
        received = reader.receive()
        if received.empty:
            break
        handles = {letter.message_id: letter.receipt_handle for letter in received.letters}
        items = []
        for letter in received.letters:
            sequence += 1
            record = RawRecord(letter.letter.coordinates, letter.letter.data)
            items.append(ReplayItem(letter.message_id, under_lane(record, lane, sequence)))
        result = processor.replay(items, options) if items else None
        summary.read += len(items) + len(received.unreadable)
        for unreadable in received.unreadable:
            summary.outcomes["unreadable"] += 1
            summary.problems.append(f"message {unreadable.message_id}: {unreadable.problem}")
            kept.append(unreadable.receipt_handle)
        if result is not None:
            summary.add(result)
            settled = set() if summary.dry_run else set(result.settled_sources())
            done = [handles[m] for m in handles if m in settled]
            not_deleted = reader.delete(done) if done else []
            summary.deleted_messages += len(done) - len(not_deleted)
            kept.extend(handles[m] for m in handles if m not in settled)
            kept.extend(not_deleted)
        on_progress(summary.read)
        if result is not None and result.interrupted:
            summary.problems.append(STOPPED.replace("not attempted: ", "stopped: "))
            break
    summary.kept_messages = len(kept)
    _make_visible(sqs, queue_url, kept)


def replay_stored_dead_letters(
    processor: ReplayProcessor,
    reader: S3DeadLetterReader,
    summary: ReplaySummary,
    batch_size: int,
    lane: str,
    on_progress: Callable[[int], None] = lambda done: None,
) -> None:
    """Replay the dead letters kept in S3 (a deployment without a dead-letter queue), a batch
    of objects at a time; delete an object only once its event is settled, as a queue message
    would be. Objects kept (still invalid, failed, unreadable, or every one of a dry run) stay
    for the next run or a person to look at."""
    from infrastructure.aws.dead_letter_format import MalformedDeadLetterError

    options = ReplayOptions(archive=True, dry_run=summary.dry_run)
    keys = list(reader.keys())  # listed first: deleting while paginating would skip keys
    sequence = 0
    for start in range(0, len(keys), batch_size):
        chunk = keys[start : start + batch_size]
        summary.read += len(chunk)
        items = []
        for key in chunk:
            try:
                letter = reader.read(key).letter()
            except MalformedDeadLetterError as error:
                summary.outcomes["unreadable"] += 1
                summary.problems.append(f"object {key}: {error}")
                summary.kept_messages += 1
                continue
            sequence += 1
            record = under_lane(RawRecord(letter.coordinates, letter.data), lane, sequence)
            items.append(ReplayItem(key, record))
        result = processor.replay(items, options) if items else None
        if result is not None:
            summary.add(result)
            settled = set() if summary.dry_run else set(result.settled_sources())
            done = [item.source for item in items if item.source in settled]
            not_deleted = reader.delete(done) if done else []
            summary.deleted_messages += len(done) - len(not_deleted)
            summary.kept_messages += len(items) - len(done) + len(not_deleted)
        on_progress(summary.read)
        if result is not None and result.interrupted:
            summary.kept_messages += len(keys) - start - len(chunk)
            summary.problems.append(STOPPED.replace("not attempted: ", "stopped: "))
            break


def _make_visible(sqs: SQSClient, queue_url: str, receipt_handles: Sequence[str]) -> None:
    for start in range(0, len(receipt_handles), 10):
        chunk = receipt_handles[start : start + 10]
        sqs.change_message_visibility_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for i, handle in enumerate(chunk)
            ],
        )


def archive_records(
    reader: S3ArchiveReader, start: datetime, end: datetime
) -> list[ArchivedRecord]:
    """Every archived record of the objects of [start, end), with its attributions,
    deduplicated by coordinates (an object can be rewritten under another name by a
    redelivery), in (shard, sequence) order."""
    return in_stream_order(
        archived_record_from_line(line)
        for summary in reader.list_objects(start, end)
        for line in reader.read_lines(summary.key)
    )


def in_stream_order(records: Iterable[ArchivedRecord]) -> list[ArchivedRecord]:
    """Records deduplicated by coordinates, in (shard, sequence) order: the order the
    watermark rule needs."""
    unique: dict[tuple[str, int], ArchivedRecord] = {}
    for archived in records:
        unique.setdefault(
            (archived.record.coordinates.shard_id, archived.record.sequence), archived
        )
    return [unique[key] for key in sorted(unique)]


Processor = TypeVar("Processor", covariant=True)


class MatchedBy(Protocol[Processor]):
    """Builds a processor that attributes events through `matcher` (the operations container's
    `archive_replay_processor` and `replay_processor` providers)."""

    def __call__(self, *, matcher: EventMatcher) -> Processor: ...


def replay_archive(
    stream_processor_of: MatchedBy[BatchProcessor],
    replay_processor_of: MatchedBy[ReplayProcessor],
    archived: Sequence[ArchivedRecord],
    summary: ReplaySummary,
    batch_size: int,
    settings: ProcessingSettings,
    on_progress: Callable[[int], None] = lambda done: None,
) -> None:
    """Feed archived records back: the stream's own records through the stream path, one
    shard's batch at a time; records of earlier replays through the event-id ledger. Both count
    each event for the variants its line says it was counted for, not for today's assignments
    and experiments (docs/replay.md)."""
    attributions = ArchivedAttributions(archived)
    processor = stream_processor_of(matcher=attributions)
    replay_processor = replay_processor_of(matcher=attributions)
    by_shard: dict[str, list[RawRecord]] = {}
    replayed: list[ReplayItem] = []
    for record in (a.record for a in archived):
        shard_id = record.coordinates.shard_id
        if shard_id.startswith(REPLAY_SHARD_PREFIX):
            replayed.append(ReplayItem(f"{shard_id}/{record.sequence}", record))
        else:
            by_shard.setdefault(shard_id, []).append(record)
    replay_items(replay_processor, replayed, summary, batch_size, on_progress, archive=False)
    now = datetime.now(UTC)
    for shard_records in by_shard.values():
        for start in range(0, len(shard_records), batch_size):
            batch = shard_records[start : start + batch_size]
            summary.read += len(batch)
            if summary.outcomes.get(ReplayStatus.FAILED.value) and not summary.dry_run:
                # A failed record stops its shard, as Kinesis would: applying the later ones
                # would move the watermarks past it.
                summary.outcomes[ReplayStatus.FAILED.value] += len(shard_records) - start
                summary.read += len(shard_records) - start - len(batch)
                summary.problems.append(STOPPED.replace("not attempted: ", "stopped: "))
                on_progress(summary.read)
                break
            if summary.dry_run:
                _validate(batch, summary, settings, now)
            else:
                counted = replay_processor.already_counted(batch)
                result = processor.process(batch, NoDeadline())
                failed = {(c.shard_id, c.sequence) for c in result.failures}
                already = len(counted - failed)
                outcomes = {
                    ReplayStatus.APPLIED.value: result.processed - result.unattributed - already,
                    ReplayStatus.ALREADY_APPLIED.value: already,
                    "duplicates": result.duplicates,
                    ReplayStatus.UNATTRIBUTED.value: result.unattributed,
                }
                summary.outcomes.update({name: n for name, n in outcomes.items() if n})
                summary.invalid_reasons.update(
                    {r.value: n for r, n in result.dead_lettered.items()}
                )
                if result.dead_lettered_total:
                    summary.outcomes["invalid"] += result.dead_lettered_total
                if result.failures:
                    summary.outcomes[ReplayStatus.FAILED.value] += len(result.failures)
                    summary.problems.extend(result.problems)
            on_progress(summary.read)


def _validate(
    batch: Iterable[RawRecord], summary: ReplaySummary, settings: ProcessingSettings, now: datetime
) -> None:
    for record in batch:
        decoded = decode_record(record, settings.event_limits, now)
        if isinstance(decoded, DeadLetter):
            summary.outcomes["invalid"] += 1
            summary.invalid_reasons[decoded.reason.value] += 1
        else:
            summary.outcomes[ReplayStatus.VALID.value] += 1
