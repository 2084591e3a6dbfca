"""Attributed events as objects, and the pipeline's kernels driven with them.

The pipeline carries a batch as columns (`AcceptedColumns` and `Matches`); tests find events
as objects easier to build and to read. `EnrichedEvent` is one event and what it counts for;
`attribute_batch`, `aggregate`, `build_archive_objects` and `archive_line` run the production
kernels (the candidate memo and `match_columns`, `MetricAccumulator`, `ArchiveAccumulator`) on
such objects, converting them to columns and back. The straightforward versions the kernels are
checked against are in `tests/reference_pipeline.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from application.accumulators import ArchiveAccumulator, MetricAccumulator
from domain.archiving import ArchiveLimits, ArchiveObject
from domain.attribution import (
    CandidateMemo,
    Candidates,
    Matches,
    match_columns,
    running_candidates,
)
from domain.events import AcceptedColumns, AcceptedEvent
from domain.experiments import Assignment, Experiment
from domain.metrics import Granularity, MetricDelta
from domain.partitions import hour_partition as partition_of_moment
from domain.time import epoch_microseconds

Match = tuple[str, str, float]
"""(experiment_id, variant_id, time_since_assignment_seconds) of one attribution: what an
`Attribution` holds, as a plain tuple."""


@dataclass(frozen=True, slots=True)
class Attribution:
    experiment_id: str
    variant_id: str
    time_since_assignment_seconds: float


@dataclass(frozen=True, slots=True)
class EnrichedEvent:
    """An accepted event and what it counts for.

    `event_time_us` is derived from the event's timestamp (see `epoch_microseconds`) and is
    computed when not given. It takes no part in equality.
    """

    accepted: AcceptedEvent
    attributions: tuple[Attribution, ...]
    event_time_us: int = field(default=-1, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.event_time_us == -1:
            object.__setattr__(
                self, "event_time_us", epoch_microseconds(self.accepted.event.timestamp)
            )

    @property
    def is_attributed(self) -> bool:
        return bool(self.attributions)


def matches_of_event(matches: Matches, index: int) -> tuple[Match, ...]:
    """One event's attributions in `matches`, as plain tuples."""
    return tuple(
        (experiment_id, variant_id, elapsed)
        for (experiment_id, variant_id), elapsed in zip(
            matches.variants[index], matches.elapsed_seconds[index], strict=True
        )
    )


def as_columns(events: Sequence[EnrichedEvent]) -> tuple[AcceptedColumns, Matches]:
    """Enriched events as the pipeline's columns (`attribute_batch` goes the other way)."""
    return (
        AcceptedColumns.of(enriched.accepted for enriched in events),
        Matches(
            [
                tuple([(a.experiment_id, a.variant_id) for a in enriched.attributions])
                for enriched in events
            ],
            [
                tuple([a.time_since_assignment_seconds for a in enriched.attributions])
                for enriched in events
            ],
        ),
    )


def candidates_of_users(
    user_ids: Iterable[str],
    assignments: Mapping[str, Sequence[Assignment]],
    experiments: Mapping[str, Experiment],
    memo: CandidateMemo | None = None,
    experiment_ids: Iterable[str] | None = None,
) -> dict[str, Candidates]:
    """Each user's running candidate assignments, sorted by experiment, through the memo when
    one is given. `experiment_ids`, when given, must hold the experiment id of every assignment
    of these users."""
    if memo is None:
        no_assignments: tuple[Assignment, ...] = ()
        return {
            user_id: running_candidates(assignments.get(user_id, no_assignments), experiments)
            for user_id in user_ids
        }
    return memo.candidates_of(user_ids, assignments, experiments, experiment_ids)


def attribute_batch(
    events: Sequence[AcceptedEvent],
    assignments: Mapping[str, Sequence[Assignment]],
    experiments: Mapping[str, Experiment],
    memo: CandidateMemo | None = None,
) -> list[EnrichedEvent]:
    """The production attribution (`match_columns` on each user's candidates) of a batch, as
    objects: it must equal the reference `[reference_attribute(e, assignments.get(user, ()),
    experiments) for e in events]`."""
    candidates = candidates_of_users(
        dict.fromkeys(a.event.user_id for a in events), assignments, experiments, memo
    )
    times_us = [accepted.event_time_us for accepted in events]
    matches = match_columns([accepted.event for accepted in events], times_us, candidates)
    return [
        EnrichedEvent(
            accepted,
            tuple([Attribution(*match) for match in matches_of_event(matches, index)]),
            event_us,
        )
        for index, (accepted, event_us) in enumerate(zip(events, times_us, strict=True))
    ]


def aggregate(events: Iterable[EnrichedEvent]) -> list[MetricDelta]:
    """The production counters' deltas (`MetricAccumulator`) of these events: one delta per
    (counter, shard), hourly and daily."""
    columns, matches = as_columns(list(events))
    accumulator = MetricAccumulator()
    accumulator.add_columns(columns, matches.variants)
    return accumulator.deltas()


def build_archive_objects(
    events: Iterable[EnrichedEvent], limits: ArchiveLimits
) -> list[ArchiveObject]:
    """The production archive objects (`ArchiveAccumulator`) of these events: grouped by
    (hour of event time, shard) into objects within the size limits."""
    accumulator = ArchiveAccumulator(limits)
    accumulator.add_columns(*as_columns(list(events)))
    return accumulator.objects()


def archive_line(enriched: EnrichedEvent) -> bytes:
    """The production archive line of one event (see `ArchiveLineWriter.lines`)."""
    (item,) = build_archive_objects([enriched], ArchiveLimits())
    return item.body


def hour_partition(enriched: EnrichedEvent) -> str:
    """The archive partition of the event's hour."""
    return partition_of_moment(Granularity.HOUR.window_start(enriched.accepted.event.timestamp))
