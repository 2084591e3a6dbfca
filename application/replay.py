"""The replay use case: feed events back (from the dead-letter queue, a file, the archive).

A replay runs on the batch's kernel: its records are decoded into columns by the batch's
guarded decode step, matched by the enricher, and counted and archived by the same
accumulators; no event becomes an object on the way."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from application.accumulators import ArchiveAccumulator, MetricAccumulator
from application.enrichment import Enricher, EventMatcher
from application.isolation import decode_guarded
from application.ports import (
    AssignmentRepository,
    Clock,
    EarlierRecords,
    EventArchive,
    ExperimentRepository,
    MetricStore,
    NoDeadline,
    ReplayLedger,
)
from application.processing_settings import ProcessingSettings
from application.replay_claims import PendingEvent, ReplayClaims
from application.replay_outcomes import (
    CLAIM_LEASE,
    REPLAY_SHARD_PREFIX,
    ItemOutcome,
    ReplayItem,
    ReplayOptions,
    ReplayResult,
    ReplayStatus,
    new_lane,
    not_attempted,
)
from domain.archiving import ArchiveLineWriter
from domain.attribution import CandidateMemo, Matches
from domain.errors import TransientInfrastructureError
from domain.events import AcceptedColumns
from domain.metrics import MetricDelta
from domain.records import RawRecord

__all__ = [
    "CLAIM_LEASE",
    "REPLAY_SHARD_PREFIX",
    "ItemOutcome",
    "ReplayItem",
    "ReplayOptions",
    "ReplayProcessor",
    "ReplayResult",
    "ReplayStatus",
    "new_lane",
    "not_attempted",
]


@dataclass(frozen=True, slots=True)
class _Accepted:
    """The call's valid events, the first of each event id, as columns with their sources and
    attributions."""

    sources: list[str]
    columns: AcceptedColumns
    matches: Matches

    def select(self, pending: Sequence[PendingEvent]) -> tuple[AcceptedColumns, Matches]:
        positions = [waiting.position for waiting in pending]
        return self.columns.select(positions), self.matches.select(positions)


class ReplayProcessor:
    """Validate, enrich and count replayed events exactly once per event id, without
    transactions (docs/replay.md).

    Each item carries the coordinates it is counted under: a lane of its run (`replay-<run>`,
    with the run's own sequence numbers) or, from the archive, the lane it was counted under
    before. An event is first claimed in the ledger for those coordinates; its counters are then
    applied through the metric store's watermarked path under the same coordinates, so a retry
    whose response was lost, or a second run of the archive, adds nothing. An event another run
    holds is already counted where that run's watermarks show it, and is taken over for the rest
    once that run is over (or its claim older than `CLAIM_LEASE`).

    Records still invalid stay where they are (their outcome says why); events the stores could
    not write now are `failed`, and the result says the run must stop (`interrupted`).
    """

    def __init__(
        self,
        assignments: AssignmentRepository,
        experiments: ExperimentRepository,
        metrics: MetricStore,
        ledger: ReplayLedger,
        archive: EventArchive,
        clock: Clock,
        settings: ProcessingSettings,
        lease: timedelta = CLAIM_LEASE,
        memo: CandidateMemo | None = None,
        line_writer: ArchiveLineWriter | None = None,
        matcher: EventMatcher | None = None,
    ) -> None:
        """`memo` and `line_writer` are the cross-batch caches (see their docstrings for what
        they require); a processor of its own gets fresh ones. `matcher` replaces the enrichment
        through `assignments` and `experiments` (an archive replay of lines an earlier replay
        archived counts them for the variants the archive holds: `ArchivedAttributions`)."""
        self._enricher: EventMatcher = (
            matcher if matcher is not None else Enricher(assignments, experiments, memo)
        )
        self._metrics = metrics
        self._ledger = ledger
        self._claims = ReplayClaims(ledger, metrics, lease)
        self._archive = archive
        self._clock = clock
        self._settings = settings
        self._line_writer = line_writer if line_writer is not None else ArchiveLineWriter()

    def replay(self, items: Sequence[ReplayItem], options: ReplayOptions) -> ReplayResult:
        outcomes: dict[str, ItemOutcome] = {}
        now = self._clock.now()
        sources, columns = self._accept(items, now, outcomes)
        try:
            matches = self._enricher.match(columns)
        except TransientInfrastructureError as error:
            for source, event in zip(sources, columns.events, strict=True):
                outcomes[source] = ItemOutcome(
                    source, ReplayStatus.FAILED, event.event_id, detail=str(error)
                )
            return self._result(items, outcomes, 0, (str(error),), interrupted=False)
        accepted = _Accepted(sources, columns, matches)
        pending = self._attributed(accepted, outcomes)
        if options.dry_run or not pending:
            status = ReplayStatus.VALID
            for waiting in pending:
                outcomes[waiting.source] = ItemOutcome(waiting.source, status, waiting.event_id)
            return self._result(items, outcomes, 0, (), interrupted=False)
        try:
            to_apply = self._claims.claim(pending, now)
        except TransientInfrastructureError as error:
            # Some claims may be written: nothing of this lane may be applied past them.
            for waiting in pending:
                outcomes[waiting.source] = ItemOutcome(
                    waiting.source, ReplayStatus.FAILED, waiting.event_id, detail=str(error)
                )
            return self._result(items, outcomes, 0, (str(error),), interrupted=True)
        problems: list[str] = []
        interrupted = self._apply_counters(accepted, to_apply, problems)
        to_archive = [w for w in pending if options.archive and self._claims.to_archive(w)]
        archived, archive_interrupted = self._archive_events(accepted, to_archive, problems)
        for waiting in pending:
            assert waiting.status is not None
            outcomes[waiting.source] = ItemOutcome(
                waiting.source, waiting.status, waiting.event_id, detail=waiting.detail
            )
        return self._result(
            items, outcomes, archived, tuple(problems), interrupted or archive_interrupted
        )

    def _accept(
        self, items: Sequence[ReplayItem], now: datetime, outcomes: dict[str, ItemOutcome]
    ) -> tuple[list[str], AcceptedColumns]:
        """The valid items, the first of each event id, with their sources; the others'
        outcomes. Decoded as a batch decodes, a record that makes the decoder raise included
        (it is `invalid`, `unprocessable`)."""
        records = [item.record for item in items]
        accepted, rejected = decode_guarded(
            records, range(len(records)), self._settings.event_limits, now
        )
        for position, letter in rejected:
            source = items[position].source
            outcomes[source] = ItemOutcome(
                source, ReplayStatus.INVALID, None, letter.reason, letter.detail
            )
        invalid = {position for position, _ in rejected}
        valid = [item.source for position, item in enumerate(items) if position not in invalid]
        keep: list[int] = []
        seen: set[str] = set()
        for index, (source, event) in enumerate(zip(valid, accepted.events, strict=True)):
            if event.event_id in seen:
                outcomes[source] = ItemOutcome(source, ReplayStatus.DUPLICATE, event.event_id)
            else:
                seen.add(event.event_id)
                keep.append(index)
        if len(keep) < len(valid):
            accepted = accepted.select(keep)
        return [valid[index] for index in keep], accepted

    @staticmethod
    def _attributed(accepted: _Accepted, outcomes: dict[str, ItemOutcome]) -> list[PendingEvent]:
        """The attributed events, to claim; the others are `unattributed`."""
        pending: list[PendingEvent] = []
        columns = accepted.columns
        for position, (source, event, where, event_us, variants) in enumerate(
            zip(
                accepted.sources,
                columns.events,
                columns.coordinates,
                columns.times_us,
                accepted.matches.variants,
                strict=True,
            )
        ):
            if variants:
                pending.append(
                    PendingEvent(
                        source,
                        position,
                        event.event_id,
                        (where.shard_id, where.sequence),
                        event.event_type,
                        event_us,
                        variants,
                    )
                )
            else:
                outcomes[source] = ItemOutcome(source, ReplayStatus.UNATTRIBUTED, event.event_id)
        return pending

    def _apply_counters(
        self, accepted: _Accepted, to_apply: Sequence[PendingEvent], problems: list[str]
    ) -> bool:
        """Apply the claimed events' counters; True when some write is unfinished."""
        if not to_apply:
            return False
        report = self._metrics.apply(
            self._deltas(accepted, to_apply), NoDeadline(), self._earlier_records(to_apply)
        )
        problems.extend(report.problems)
        for waiting in to_apply:
            lane, sequence = waiting.coordinates
            refused = report.refused.get((lane, sequence))
            if refused is not None:
                waiting.status = ReplayStatus.INVALID
                waiting.detail = refused
            elif report.cut.cuts(lane, sequence):
                waiting.status = ReplayStatus.FAILED
                waiting.detail = "; ".join(report.problems) or "counters not written"
            elif waiting.status is None:
                waiting.status = ReplayStatus.APPLIED
        return not report.complete

    @staticmethod
    def _earlier_records(to_apply: Sequence[PendingEvent]) -> EarlierRecords:
        """Per event taken over, its earlier holders' records: the first-seen markers they
        wrote before they died are the event's own, to count now (docs/replay.md)."""
        return {
            waiting.coordinates: waiting.held.earlier_holders
            for waiting in to_apply
            if waiting.held is not None and waiting.held.earlier_holders
        }

    def _archive_events(
        self, accepted: _Accepted, to_archive: Sequence[PendingEvent], problems: list[str]
    ) -> tuple[int, bool]:
        """Archive the events; the objects written and whether some write is unfinished."""
        if not to_archive:
            return 0, False
        lines = ArchiveAccumulator(self._settings.archive_limits, self._line_writer)
        lines.add_columns(*accepted.select(to_archive))
        objects = lines.objects()
        report = self._archive.store(objects, NoDeadline())
        problems.extend(report.problems)
        written = []
        for waiting in to_archive:
            if report.cut.cuts(*waiting.coordinates):
                # An event is settled only once archived too: keep it replayable.
                waiting.status, waiting.detail = ReplayStatus.FAILED, "archive"
            else:
                written.append(waiting.event_id)
        if written:
            try:
                self._ledger.mark_archived(written)
            except TransientInfrastructureError as error:
                # Archived but not recorded as such: a later run archives them again
                # (the archive's readers deduplicate by event id, docs/replay.md).
                problems.append(str(error))
        return len(objects), len(written) < len(to_archive)

    def already_counted(self, records: Sequence[RawRecord]) -> set[tuple[str, int]]:
        """The (shard, sequence) of those records every counter of which already holds them
        (by the counters' watermarks for their shard): what an archive replay of them would
        skip. Records invalid or unattributed now are not in it."""
        accepted, _ = decode_guarded(
            records, range(len(records)), self._settings.event_limits, self._clock.now()
        )
        if not accepted:
            return set()
        counters = MetricAccumulator()
        counters.add_columns(accepted, self._enricher.match(accepted).variants)
        by_shard: dict[str, list[MetricDelta]] = defaultdict(list)
        for delta in counters.deltas():
            by_shard[delta.shard_id].append(delta)
        counted: set[tuple[str, int]] = set()
        for shard_id, shard_deltas in by_shard.items():
            watermarks = self._metrics.watermarks({d.key for d in shard_deltas}, shard_id)
            held: dict[int, bool] = {}
            for delta in shard_deltas:
                mark = watermarks.get(delta.key, -1)
                for sequence in delta.sequences:
                    held[sequence] = held.get(sequence, True) and sequence <= mark
            counted.update((shard_id, sequence) for sequence, yes in held.items() if yes)
        return counted

    @staticmethod
    def _deltas(accepted: _Accepted, to_apply: Sequence[PendingEvent]) -> list[MetricDelta]:
        """The counters still to apply, under each event's coordinates: those an earlier holder
        applied are left out, record by record."""
        counters = MetricAccumulator()
        columns, matches = accepted.select(to_apply)
        counters.add_columns(columns, matches.variants)
        deltas = counters.deltas()
        skip = {(key, waiting.coordinates): None for waiting in to_apply for key in waiting.applied}
        if not skip:
            return deltas
        kept = []
        for delta in deltas:
            rows = [
                i
                for i, sequence in enumerate(delta.sequences)
                if (delta.key, (delta.shard_id, sequence)) not in skip
            ]
            if rows:
                kept.append(
                    MetricDelta(
                        delta.key,
                        delta.shard_id,
                        tuple(delta.sequences[i] for i in rows),
                        tuple(delta.user_ids[i] for i in rows),
                        tuple(delta.values[i] for i in rows),
                    )
                )
        return kept

    @staticmethod
    def _result(
        items: Sequence[ReplayItem],
        outcomes: dict[str, ItemOutcome],
        archived: int,
        problems: tuple[str, ...],
        interrupted: bool,
    ) -> ReplayResult:
        return ReplayResult(
            tuple(outcomes[item.source] for item in items if item.source in outcomes),
            archived,
            problems,
            interrupted,
        )
