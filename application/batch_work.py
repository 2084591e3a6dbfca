"""The mutable working state of one segment of a batch, while the use case processes it.

Everything here lives for one segment and is thrown away with it: what the writes need of the
events prepared so far, the dead letters and duplicates found, and the segment's cut. The
domain's values and rules are immutable; these are the use case's scratch pads.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from application.accumulators import ArchiveAccumulator, MetricAccumulator
from application.ports import RecordId, SeenEvent
from application.shard_cut import NO_CUT, ShardCut
from domain.attribution import VariantKey
from domain.events import AcceptedColumns
from domain.records import KinesisCoordinates
from domain.rejections import DeadLetter

STAGES = (
    "decode",
    "deduplicate",
    "enrich",
    "aggregate",
    "write_metrics",
    "archive",
    "dead_letter",
)
"""The stages a batch's time is reported by, in the order they run."""


class FailedStage(StrEnum):
    """A stage before the writes that failed for the whole segment (a port was unavailable)."""

    DEDUPLICATE = "deduplicate"
    """The recent-event index could not be read: no id can be told new, nothing is counted and
    every valid record is redelivered."""
    ENRICH = "enrich"
    """The assignments or experiments could not be read: nothing is counted and every record
    that was to be counted is redelivered (duplicates and dead letters are settled)."""


def cut_of(coordinates: Iterable[KinesisCoordinates]) -> ShardCut:
    """The cut that redelivers each of these records."""
    return ShardCut.of((where.shard_id, where.sequence) for where in coordinates)


@dataclass(slots=True)
class PreparedEvents:
    """The enriched events of a segment, as columns: what the result and the recent-event
    index need of them."""

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

    def cut(self) -> ShardCut:
        """The cut that redelivers every one of these events."""
        return ShardCut.of(zip(self.shard_ids, self.sequences, strict=True))


@dataclass(slots=True)
class Prepared:
    """What the writes need of the events prepared so far: the counters' columns, the archive
    lines (None when the events are not archived) and the events' ids and coordinates."""

    metrics: MetricAccumulator
    archive: ArchiveAccumulator | None
    events: PreparedEvents = field(default_factory=PreparedEvents)

    def restrict(self, keep: Callable[[str, int], bool]) -> None:
        """Forget the records of which `keep(shard_id, sequence)` is false."""
        self.metrics.restrict(keep)
        if self.archive is not None:
            self.archive.restrict(keep)
        self.events.restrict(keep)

    def drop(self, dropped: Collection[RecordId]) -> None:
        """Forget the records `dropped`."""
        self.restrict(lambda shard_id, sequence: (shard_id, sequence) not in dropped)

    def unplaceable(self) -> dict[RecordId, str]:
        """The records whose counters or archive lines cannot be placed, and why."""
        unplaceable = self.metrics.unplaceable()
        if self.archive is not None:
            unplaceable.update(self.archive.unplaceable())
        return unplaceable


@dataclass(slots=True)
class SegmentWork:
    """A segment under way: what is prepared, what is found, and its cut.

    `cut` only moves down; when the segment ends, every record at or above its shard's cut is
    reported for redelivery and none of its effects is written or counted in the result.
    """

    prepared: Prepared
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    problems: list[str] = field(default_factory=list)
    stage_errors: dict[str, int] = field(default_factory=dict)
    rejected: list[tuple[int, DeadLetter]] = field(default_factory=list)
    """Dead letters with their positions in the segment, until sorted into `letters`."""
    letters: list[DeadLetter] = field(default_factory=list)
    duplicates: list[RecordId] = field(default_factory=list)
    in_segment: set[str] = field(default_factory=set)
    """The ids kept so far: a later record with one of them is a duplicate."""
    first_unique: ShardCut = NO_CUT
    """Each shard's lowest record kept by deduplication: the cut should enrichment fail."""
    failed: FailedStage | None = None
    cut: ShardCut = NO_CUT
    metric_keys_updated: int = 0
    archived_objects: int = 0

    def lower_cut(self, *cuts: ShardCut) -> None:
        self.cut = self.cut.merged(*cuts)

    def fail(self, stage: FailedStage, error: Exception, empty: Prepared) -> None:
        """A port failed for the whole segment at `stage`: nothing prepared is written."""
        self.problems.append(str(error))
        self.stage_errors[stage.value] = 1
        self.failed = stage
        self.prepared = empty

    def cut_to_write(self) -> ShardCut:
        """The cut that redelivers every record the writes would count or dead-letter."""
        letters = ShardCut.of((d.coordinates.shard_id, d.sequence) for d in self.letters)
        return self.prepared.events.cut().merged(letters)

    def settle(self) -> None:
        """Forget every effect of the records at or above the cut."""
        if not self.cut:
            return
        keeps = self.cut.keeps
        self.prepared.restrict(keeps)
        self.letters = [d for d in self.letters if keeps(d.coordinates.shard_id, d.sequence)]
        self.duplicates = [d for d in self.duplicates if keeps(*d)]

    def keep_first_of_each_id(
        self, accepted: AcceptedColumns, seen: Mapping[str, SeenEvent]
    ) -> tuple[AcceptedColumns, list[str]]:
        """Keep the first record of each event id (`accepted` comes in sequence order, chunk
        after chunk; `in_segment` holds the ids kept by earlier chunks); a record `seen` in an
        earlier batch is a duplicate only if it is a different record (a redelivery of the
        same one is not). The duplicates are added to `duplicates`; the kept events are
        returned with their ids."""
        event_ids = [event.event_id for event in accepted.events]
        in_batch, duplicates = self.in_segment, self.duplicates
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
