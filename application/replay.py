"""The replay use case: feed events back (from the dead-letter queue, a file, the archive)."""

from __future__ import annotations

import secrets
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from application.enrichment import Enricher
from application.ports import (
    AssignmentRepository,
    Clock,
    EventArchive,
    ExperimentRepository,
    MetricStore,
    NoDeadline,
    ReplayClaim,
    ReplayLedger,
    counter_id,
)
from application.process_batch import ProcessingSettings
from domain.archiving import build_archive_objects
from domain.attribution import EnrichedEvent
from domain.decoding import decode_record
from domain.errors import TransientInfrastructureError
from domain.events import AcceptedEvent
from domain.metrics import MetricDelta, MetricKey, aggregate
from domain.records import RawRecord
from domain.rejections import DeadLetter, RejectionReason

REPLAY_SHARD_PREFIX = "replay-"
"""Events fed back by a dead-letter or file replay are counted under a lane of their run: a shard
id `replay-<run>` whose sequence numbers are the run's own (1, 2, ... in the order read), and they
keep those coordinates in the archive. An archive replay sends them back through the ledger
under the same coordinates, never through the stream's path."""

CLAIM_LEASE = timedelta(minutes=15)
"""How long a claim of a run that did not say it finished protects its event: a run applies a
batch seconds after claiming it, so an older claim whose counters are not all applied belongs
to a run that was interrupted, and another run takes the event over."""


def new_lane(moment: datetime) -> str:
    """A run's own lane: never reused, so that its sequence numbers only move forward."""
    return f"{REPLAY_SHARD_PREFIX}{moment.astimezone(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


class ReplayStatus(StrEnum):
    APPLIED = "applied"
    ALREADY_APPLIED = "already_applied"
    UNATTRIBUTED = "unattributed"
    DUPLICATE = "duplicate"
    INVALID = "invalid"
    FAILED = "failed"
    VALID = "valid"
    """Dry run only: the event would be replayed."""

    @property
    def settled(self) -> bool:
        """Done for good: a dead-letter message in this state may be deleted."""
        return self in {
            ReplayStatus.APPLIED,
            ReplayStatus.ALREADY_APPLIED,
            ReplayStatus.UNATTRIBUTED,
            ReplayStatus.DUPLICATE,
        }


@dataclass(frozen=True, slots=True)
class ReplayItem:
    """A record to replay and a handle on where it came from (a message, a file line)."""

    source: str
    record: RawRecord


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    source: str
    status: ReplayStatus
    event_id: str | None = None
    reason: RejectionReason | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ReplayResult:
    outcomes: tuple[ItemOutcome, ...]
    archived_objects: int = 0
    problems: tuple[str, ...] = ()
    interrupted: bool = False
    """A write of this call is unfinished: the run must stop here (its lane's later events
    would move watermarks past the unfinished ones), and be run again."""

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(outcome.status.value for outcome in self.outcomes))

    @property
    def invalid_reasons(self) -> dict[str, int]:
        return dict(Counter(o.reason.value for o in self.outcomes if o.reason is not None))

    def settled_sources(self) -> list[str]:
        return [o.source for o in self.outcomes if o.status.settled]


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    archive: bool = True
    """False for replays of the archive itself: those events are archived already."""
    dry_run: bool = False


def not_attempted(items: Sequence[ReplayItem], why: str) -> ReplayResult:
    """The outcome of items a run did not get to (it stopped at an unfinished write)."""
    return ReplayResult(
        tuple(ItemOutcome(item.source, ReplayStatus.FAILED, detail=why) for item in items)
    )


@dataclass(slots=True)
class _Pending:
    """One attributed event of the call and what is known of its claim."""

    source: str
    event: EnrichedEvent
    held: ReplayClaim | None = None
    existed: bool = False
    applied: frozenset[MetricKey] = frozenset()
    orphaned: bool = False
    """Held by a run that is over (or whose claim outlived the lease): nobody else will
    archive the event."""
    status: ReplayStatus | None = None
    detail: str = ""

    @property
    def event_id(self) -> str:
        return self.event.accepted.event.event_id

    @property
    def coordinates(self) -> tuple[str, int]:
        return self.event.accepted.coordinates.shard_id, self.event.accepted.sequence


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
    ) -> None:
        self._enricher = Enricher(assignments, experiments)
        self._metrics = metrics
        self._ledger = ledger
        self._archive = archive
        self._clock = clock
        self._settings = settings
        self._lease = lease

    def replay(self, items: Sequence[ReplayItem], options: ReplayOptions) -> ReplayResult:
        outcomes: dict[str, ItemOutcome] = {}
        now = self._clock.now()
        accepted = self._accept(items, now, outcomes)
        try:
            enriched = self._enricher.enrich([event for _, event in accepted])
        except TransientInfrastructureError as error:
            for source, unread in accepted:
                outcomes[source] = ItemOutcome(
                    source, ReplayStatus.FAILED, unread.event.event_id, detail=str(error)
                )
            return self._result(items, outcomes, 0, (str(error),), interrupted=False)
        pending = self._attributed(accepted, enriched, outcomes)
        if options.dry_run or not pending:
            status = ReplayStatus.VALID
            for waiting in pending:
                outcomes[waiting.source] = ItemOutcome(waiting.source, status, waiting.event_id)
            return self._result(items, outcomes, 0, (), interrupted=False)
        try:
            to_apply = self._claim(pending, now)
        except TransientInfrastructureError as error:
            # Some claims may be written: nothing of this lane may be applied past them.
            for waiting in pending:
                outcomes[waiting.source] = ItemOutcome(
                    waiting.source, ReplayStatus.FAILED, waiting.event_id, detail=str(error)
                )
            return self._result(items, outcomes, 0, (str(error),), interrupted=True)
        problems: list[str] = []
        interrupted = self._apply_counters(to_apply, problems)
        to_archive = [w for w in pending if options.archive and self._to_archive(w)]
        archived, archive_interrupted = self._archive_events(to_archive, problems)
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
    ) -> list[tuple[str, AcceptedEvent]]:
        """The valid items, the first of each event id; the others' outcomes."""
        accepted: list[tuple[str, AcceptedEvent]] = []
        seen: set[str] = set()
        for item in items:
            decoded = decode_record(item.record, self._settings.event_limits, now)
            if isinstance(decoded, DeadLetter):
                outcomes[item.source] = ItemOutcome(
                    item.source, ReplayStatus.INVALID, None, decoded.reason, decoded.detail
                )
            elif decoded.event.event_id in seen:
                outcomes[item.source] = ItemOutcome(
                    item.source, ReplayStatus.DUPLICATE, decoded.event.event_id
                )
            else:
                seen.add(decoded.event.event_id)
                accepted.append((item.source, decoded))
        return accepted

    @staticmethod
    def _attributed(
        accepted: Sequence[tuple[str, AcceptedEvent]],
        enriched: Sequence[EnrichedEvent],
        outcomes: dict[str, ItemOutcome],
    ) -> list[_Pending]:
        """The attributed events, to claim; the others are `unattributed`."""
        pending: list[_Pending] = []
        for (source, _), event in zip(accepted, enriched, strict=True):
            if event.attributions:
                pending.append(_Pending(source, event))
            else:
                status = ReplayStatus.UNATTRIBUTED
                outcomes[source] = ItemOutcome(source, status, event.accepted.event.event_id)
        return pending

    def _apply_counters(self, to_apply: Sequence[_Pending], problems: list[str]) -> bool:
        """Apply the claimed events' counters; True when some write is unfinished."""
        if not to_apply:
            return False
        report = self._metrics.apply(self._deltas(to_apply), NoDeadline())
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

    def _to_archive(self, waiting: _Pending) -> bool:
        """Applied now, or applied by a holder that will not archive it (itself, or a run
        that is over) and not archived yet."""
        if waiting.status is ReplayStatus.APPLIED:
            return True
        held = waiting.held
        return (
            waiting.status is ReplayStatus.ALREADY_APPLIED
            and held is not None
            and (waiting.orphaned or self._is_own(waiting))
            and not (held.archived or held.complete)
        )

    def _archive_events(
        self, to_archive: Sequence[_Pending], problems: list[str]
    ) -> tuple[int, bool]:
        """Archive the events; the objects written and whether some write is unfinished."""
        if not to_archive:
            return 0, False
        objects = build_archive_objects(
            [waiting.event for waiting in to_archive], self._settings.archive_limits
        )
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
        now = self._clock.now()
        events = [
            decoded
            for record in records
            if not isinstance(
                decoded := decode_record(record, self._settings.event_limits, now), DeadLetter
            )
        ]
        if not events:
            return set()
        deltas = aggregate(event for event in self._enricher.enrich(events) if event.attributions)
        by_shard: dict[str, list[MetricDelta]] = defaultdict(list)
        for delta in deltas:
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

    def _claim(self, pending: list[_Pending], now: datetime) -> list[_Pending]:
        """Claim every event; return those with counters to apply under their coordinates."""
        asked = [
            ReplayClaim(waiting.event_id, *waiting.coordinates, claimed_at=now)
            for waiting in pending
        ]
        answers = self._ledger.claim(asked)
        for waiting in pending:
            waiting.held, waiting.existed = answers[waiting.event_id]
        self._read_applied(pending)
        finished = self._ledger.finished_runs(
            {w.held.lane for w in pending if w.held is not None and not self._is_own(w)}
        )
        to_apply = []
        for waiting in pending:
            held = waiting.held
            assert held is not None
            waiting.orphaned = held.lane in finished or held.claimed_at + self._lease <= now
            if self._decide(waiting, held, now):
                to_apply.append(waiting)
        return to_apply

    def _read_applied(self, pending: Sequence[_Pending]) -> None:
        """What earlier holders applied: their lanes' watermarks on the event's counters."""
        by_lane: dict[str, list[_Pending]] = defaultdict(list)
        for waiting in pending:
            assert waiting.held is not None
            if waiting.existed and not waiting.held.complete:
                by_lane[waiting.held.lane].append(waiting)
        for lane, waiting_events in by_lane.items():
            keys = {key for waiting in waiting_events for key in _keys(waiting.event)}
            watermarks = self._metrics.watermarks(keys, lane)
            for waiting in waiting_events:
                assert waiting.held is not None
                waiting.applied = frozenset(
                    key
                    for key in _keys(waiting.event)
                    if counter_id(key) in waiting.held.applied
                    or watermarks.get(key, -1) >= waiting.held.sequence
                )

    def _decide(self, waiting: _Pending, held: ReplayClaim, now: datetime) -> bool:
        """True when this call applies the event's counters: its own claim, or one taken over
        from a run that is over; otherwise the event's status says why not."""
        if held.complete or waiting.applied >= _keys(waiting.event):
            waiting.status = ReplayStatus.ALREADY_APPLIED
            return False
        if self._is_own(waiting):
            return True
        if waiting.orphaned:
            new = ReplayClaim(
                waiting.event_id,
                *waiting.coordinates,
                claimed_at=now,
                applied=frozenset(counter_id(key) for key in waiting.applied),
            )
            if self._ledger.take_over(held, new):
                waiting.held = new
                return True
            waiting.status = ReplayStatus.FAILED
            waiting.detail = "another run took this event over meanwhile; run again"
            return False
        waiting.status = ReplayStatus.FAILED
        waiting.detail = (
            f"held by replay run {held.lane} since {held.claimed_at:%Y-%m-%d %H:%M:%S} "
            f"UTC (running, or interrupted: taken over from "
            f"{held.claimed_at + self._lease:%H:%M:%S} UTC on)"
        )
        return False

    @staticmethod
    def _is_own(waiting: _Pending) -> bool:
        held = waiting.held
        return held is not None and (held.lane, held.sequence) == waiting.coordinates

    @staticmethod
    def _deltas(to_apply: Sequence[_Pending]) -> list[MetricDelta]:
        """The counters still to apply, under each event's coordinates: those an earlier holder
        applied are left out, record by record."""
        deltas = aggregate([waiting.event for waiting in to_apply])
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


def _keys(event: EnrichedEvent) -> frozenset[MetricKey]:
    """The counters an event adds to (hourly and daily, per attribution)."""
    return frozenset(delta.key for delta in aggregate([event]))
