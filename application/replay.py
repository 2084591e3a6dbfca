"""The replay use case: feed events back (from the dead-letter queue, a file, the archive)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from application.enrichment import Enricher
from application.ports import (
    AssignmentRepository,
    Clock,
    EventArchive,
    ExperimentRepository,
    NoDeadline,
    ReplayedEvent,
    ReplayMetricStore,
)
from application.process_batch import ProcessingSettings
from domain.archiving import build_archive_objects
from domain.attribution import EnrichedEvent
from domain.decoding import decode_record
from domain.errors import TransientInfrastructureError
from domain.events import AcceptedEvent
from domain.metrics import aggregate
from domain.records import RawRecord
from domain.rejections import DeadLetter, RejectionReason

REPLAY_SHARD_PREFIX = "replay-"
"""Records fed back by a dead-letter or file replay carry a shard id with this prefix, and so
do their archive lines. Their events were counted through the event-id ledger, not under a
stream watermark, so an archive replay must send them back through the ledger too: under the
watermark rule they would be counted again."""
FILE_SHARD = REPLAY_SHARD_PREFIX + "file"


def as_replayed(record: RawRecord) -> RawRecord:
    """The record under its replay shard id (`replay-<original shard>`), which it keeps in the
    archive; a record already under one is unchanged."""
    original = record.coordinates
    if original.shard_id.startswith(REPLAY_SHARD_PREFIX):
        return record
    coordinates = replace(original, shard_id=REPLAY_SHARD_PREFIX + original.shard_id)
    return RawRecord(coordinates, record.data)


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


class ReplayProcessor:
    """Validate, enrich and count replayed events exactly once per event id.

    Records still invalid stay where they are (their outcome says why); events the store could
    not apply now are `failed` and can be replayed again later without double counting.
    """

    def __init__(
        self,
        assignments: AssignmentRepository,
        experiments: ExperimentRepository,
        metrics: ReplayMetricStore,
        archive: EventArchive,
        clock: Clock,
        settings: ProcessingSettings,
    ) -> None:
        self._enricher = Enricher(assignments, experiments)
        self._metrics = metrics
        self._archive = archive
        self._clock = clock
        self._settings = settings

    def replay(self, items: Sequence[ReplayItem], options: ReplayOptions) -> ReplayResult:
        outcomes: dict[str, ItemOutcome] = {}
        now = self._clock.now()
        accepted: list[tuple[str, AcceptedEvent]] = []
        seen: set[str] = set()
        for item in items:
            decoded = decode_record(as_replayed(item.record), self._settings.event_limits, now)
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

        try:
            enriched = self._enricher.enrich([event for _, event in accepted])
        except TransientInfrastructureError as error:
            for source, waiting in accepted:
                outcomes[source] = ItemOutcome(
                    source, ReplayStatus.FAILED, waiting.event.event_id, detail=str(error)
                )
            return self._result(items, outcomes, 0, (str(error),))

        if options.dry_run:
            for (source, _), event in zip(accepted, enriched, strict=True):
                status = ReplayStatus.VALID if event.attributions else ReplayStatus.UNATTRIBUTED
                outcomes[source] = ItemOutcome(source, status, event.accepted.event.event_id)
            return self._result(items, outcomes, 0, ())

        to_apply = [
            ReplayedEvent(event.accepted.event.event_id, tuple(aggregate([event])))
            for event in enriched
            if event.attributions
        ]
        applied = self._metrics.apply_once(to_apply) if to_apply else None
        problems: list[str] = []
        settled: list[EnrichedEvent] = []
        for (source, _), event in zip(accepted, enriched, strict=True):
            event_id = event.accepted.event.event_id
            if not event.attributions:
                status, detail = ReplayStatus.UNATTRIBUTED, ""
            elif applied is not None and event_id in applied.failed:
                status, detail = ReplayStatus.FAILED, applied.failed[event_id]
            elif applied is not None and event_id in applied.already_applied:
                status, detail = ReplayStatus.ALREADY_APPLIED, ""
            else:
                status, detail = ReplayStatus.APPLIED, ""
            outcomes[source] = ItemOutcome(source, status, event_id, detail=detail)
            if status is not ReplayStatus.FAILED:
                settled.append(event)

        archived = 0
        if options.archive and settled:
            objects = build_archive_objects(settled, self._settings.archive_limits)
            report = self._archive.store(objects, NoDeadline())
            archived = len(objects)
            problems.extend(report.problems)
            if not report.complete:
                # An event is settled only once archived too: keep it replayable.
                for source, outcome in list(outcomes.items()):
                    if outcome.status.settled and outcome.event_id is not None:
                        original = next(a for s, a in accepted if s == source)
                        cut = report.unfinished_from.get(original.coordinates.shard_id)
                        if cut is not None and original.sequence >= cut:
                            outcomes[source] = ItemOutcome(
                                source, ReplayStatus.FAILED, outcome.event_id, detail="archive"
                            )
        return self._result(items, outcomes, archived, tuple(problems))

    @staticmethod
    def _result(
        items: Sequence[ReplayItem],
        outcomes: dict[str, ItemOutcome],
        archived: int,
        problems: tuple[str, ...],
    ) -> ReplayResult:
        return ReplayResult(
            tuple(outcomes[item.source] for item in items if item.source in outcomes),
            archived,
            problems,
        )
