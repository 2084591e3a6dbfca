"""Which experiments and variants an event counts for."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from domain.events import AcceptedColumns, AcceptedEvent, ExperimentEvent
from domain.experiments import Assignment, Experiment

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def epoch_microseconds(moment: datetime) -> int:
    """An aware moment as exact integer microseconds since the Unix epoch (no float rounding)."""
    return (moment - _EPOCH) // _MICROSECOND


@dataclass(frozen=True, slots=True)
class Attribution:
    experiment_id: str
    variant_id: str
    time_since_assignment_seconds: float


@dataclass(frozen=True, slots=True)
class EnrichedEvent:
    """An accepted event and what it counts for.

    `event_time_us` is derived from the event's timestamp (see `epoch_microseconds`) and is
    computed when not given; later stages window and partition on it without datetime
    arithmetic. It takes no part in equality.
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


def attribute(
    accepted: AcceptedEvent,
    assignments: Iterable[Assignment],
    experiments: Mapping[str, Experiment],
) -> EnrichedEvent:
    """Attribute an event to every running experiment the user was assigned to before it happened.

    When the event names an `experiment_id`, only that experiment is considered. The variant
    is the assignment's, which the assignment service owns; the client's `variant_id` is kept
    in the archive as sent.
    """
    event = accepted.event
    attributions = []
    for assignment in assignments:
        if event.experiment_id is not None and assignment.experiment_id != event.experiment_id:
            continue
        experiment = experiments.get(assignment.experiment_id)
        if experiment is None or not experiment.is_running:
            continue
        if not assignment.precedes(event.timestamp):
            continue
        elapsed = (event.timestamp - assignment.assigned_at).total_seconds()
        attributions.append(Attribution(assignment.experiment_id, assignment.variant_id, elapsed))
    attributions.sort(key=lambda a: a.experiment_id)
    return EnrichedEvent(accepted, tuple(attributions))


VariantKey = tuple[str, str]
"""(experiment_id, variant_id): one variant an event counts for."""

_EARLIEST_US = -(2**63)


Candidates = tuple[tuple[VariantKey, ...], tuple[int, ...], int]
"""A user's assignments to running experiments, sorted by experiment (stably): what any event
of the user can count for, prepared once per user. The variants, when each was assigned (epoch
microseconds), and the latest of those instants: an event at or after it that names no
experiment counts for every variant. A plain tuple: one is held per warm user."""

NO_CANDIDATES: Candidates = ((), (), _EARLIEST_US)


def candidates_from(running: Sequence[tuple[VariantKey, int]]) -> Candidates:
    """From (variant, assigned at) pairs sorted by experiment."""
    if not running:
        return NO_CANDIDATES
    return (
        tuple([variant for variant, _ in running]),
        tuple([assigned for _, assigned in running]),
        max(assigned for _, assigned in running),
    )


class CandidateMemo:
    """Each user's candidate assignments, kept across batches of a warm container.

    An entry is reused only while it was computed from the very same objects: the same
    assignments sequence and, for each of its assignments, the same experiment object (or the
    same absence). The warm-container caches hand out the same objects until they expire, so
    a reuse is exact; anything else recomputes. Bounded: cleared once `max_users` is reached.

    `candidates_of` checks the experiments once per batch instead of once per user: it counts
    a generation up whenever an experiment it is shown differs from the one it saw last under
    that id, and an entry stamped with the current generation needs no per-assignment check.
    """

    __slots__ = ("_entries", "_generation", "_max_users", "_seen", "_variants")

    def __init__(self, max_users: int = 200_000) -> None:
        self._max_users = max_users
        self._entries: dict[
            str,
            tuple[Sequence[Assignment], tuple[Experiment | None, ...], Candidates, int],
        ] = {}
        self._seen: dict[str, Experiment | None] = {}
        self._generation = 0
        self._variants: dict[VariantKey, VariantKey] = {}
        """One `VariantKey` object per variant, shared by every user's candidates."""

    def candidates(
        self,
        user_id: str,
        assignments: Sequence[Assignment],
        experiments: Mapping[str, Experiment],
    ) -> Candidates:
        return self._candidates(user_id, assignments, experiments, -1)

    def experiment_ids_for(
        self, user_ids: Iterable[str], assignments: Mapping[str, Sequence[Assignment]]
    ) -> set[str]:
        """The experiment ids to look up for `candidates_of` these users: every experiment this
        memo has seen (the experiments of each entry it holds were seen when it was made), and
        the experiments of the assignments it holds no entry for. This is every experiment of
        these users' assignments, without reading the assignments of users already prepared."""
        experiment_ids = set(self._seen)
        entries = self._entries
        for user_id in user_ids:
            user_assignments = assignments.get(user_id)
            if not user_assignments:
                continue
            entry = entries.get(user_id)
            if entry is None or entry[0] is not user_assignments or entry[3] < 0:
                experiment_ids.update([a.experiment_id for a in user_assignments])
        return experiment_ids

    def candidates_of(
        self,
        user_ids: Iterable[str],
        assignments: Mapping[str, Sequence[Assignment]],
        experiments: Mapping[str, Experiment],
        experiment_ids: Iterable[str] | None = None,
    ) -> dict[str, Candidates]:
        """Each user's candidates. `experiment_ids`, when given, must hold the experiment id of
        every assignment of these users (it is computed when not given)."""
        user_ids = list(user_ids)
        no_assignments: tuple[Assignment, ...] = ()
        if experiment_ids is None:
            experiment_ids = {
                a.experiment_id for user_id in user_ids for a in assignments.get(user_id, ())
            }
        seen = self._seen
        changed = False
        for experiment_id in experiment_ids:
            current = experiments.get(experiment_id)
            if experiment_id not in seen or seen[experiment_id] is not current:
                seen[experiment_id] = current
                changed = True
        if changed:
            self._generation += 1
        # Every experiment of these users' assignments is now in `seen` as in `experiments`:
        # an entry stamped with this generation was computed from the same objects.
        generation = self._generation
        entries = self._entries
        prepared: dict[str, Candidates] = {}
        for user_id in user_ids:
            user_assignments = assignments.get(user_id, no_assignments)
            entry = entries.get(user_id)
            if entry is not None and entry[3] == generation and entry[0] is user_assignments:
                prepared[user_id] = entry[2]
            else:
                prepared[user_id] = self._candidates(
                    user_id, user_assignments, experiments, generation
                )
        return prepared

    def _candidates(
        self,
        user_id: str,
        assignments: Sequence[Assignment],
        experiments: Mapping[str, Experiment],
        generation: int,
    ) -> Candidates:
        entry = self._entries.get(user_id)
        if entry is not None and entry[0] is assignments:
            consulted = entry[1]
            for index, assignment in enumerate(assignments):
                if experiments.get(assignment.experiment_id) is not consulted[index]:
                    break
            else:
                if entry[3] != generation:
                    self._entries[user_id] = (*entry[:3], generation)
                return entry[2]
        if len(self._variants) >= self._max_users:
            self._variants.clear()
        candidates = _candidates(assignments, experiments, self._variants)
        if len(self._entries) >= self._max_users:
            self._entries.clear()
        self._entries[user_id] = (
            assignments,
            tuple([experiments.get(a.experiment_id) for a in assignments]),
            candidates,
            generation,
        )
        return candidates


Match = tuple[str, str, float]
"""(experiment_id, variant_id, time_since_assignment_seconds) of one attribution: what an
`Attribution` holds, as a plain tuple."""


@dataclass(slots=True)
class Matches:
    """The attributions of a list of events, as two columns: for each event, the variants it
    counts for in `attribute`'s order, and the time since each of those assignments in
    seconds. The variants of an event that counts for all of its user's candidates are the
    user's `Candidates.variants` object itself."""

    variants: list[tuple[VariantKey, ...]]
    elapsed_seconds: list[tuple[float, ...]]

    def __len__(self) -> int:
        return len(self.variants)

    def select(self, positions: Sequence[int]) -> Matches:
        """The attributions of the events at `positions`, in that order."""
        return Matches(
            [self.variants[i] for i in positions], [self.elapsed_seconds[i] for i in positions]
        )

    def of_event(self, index: int) -> tuple[Match, ...]:
        return tuple(
            [
                (experiment_id, variant_id, elapsed)
                for (experiment_id, variant_id), elapsed in zip(
                    self.variants[index], self.elapsed_seconds[index], strict=True
                )
            ]
        )


def as_columns(events: Sequence[EnrichedEvent]) -> tuple[AcceptedColumns, Matches]:
    """Enriched events as the hot path's columns (`attribute_batch` goes the other way)."""
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
    """Each user's running candidate assignments, sorted by experiment (see `attribute_batch`).
    `experiment_ids`, when given, must hold the experiment id of every assignment of these
    users."""
    if memo is None:
        no_assignments: tuple[Assignment, ...] = ()
        return {
            user_id: _candidates(assignments.get(user_id, no_assignments), experiments)
            for user_id in user_ids
        }
    return memo.candidates_of(user_ids, assignments, experiments, experiment_ids)


def match_columns(
    events: Sequence[ExperimentEvent],
    times_us: Sequence[int],
    candidates: Mapping[str, Candidates],
) -> Matches:
    """Each event's attributions in `attribute`'s order, given each event's time in epoch
    microseconds and every event's user's candidates (`candidates_of_users`).

    The pipeline's hot path carries these columns instead of `EnrichedEvent`/`Attribution`
    objects; `attribute_batch` builds the domain objects from them.
    """
    variants_column: list[tuple[VariantKey, ...]] = []
    elapsed_column: list[tuple[float, ...]] = []
    add_variants = variants_column.append
    add_elapsed = elapsed_column.append
    m = 1_000_000
    for event, event_us in zip(events, times_us, strict=True):
        only = event.experiment_id
        if only is None:
            variants, assigned, latest = candidates[event.user_id]
        else:  # only that experiment's variants (usually one)
            variants, assigned, latest = _of_experiment(candidates[event.user_id], only)
        if latest <= event_us:  # every one of them (or none)
            add_variants(variants)
            # Unrolled for the usual counts: a comprehension costs more than the arithmetic.
            count = len(assigned)
            if count == 0:
                add_elapsed(assigned)
            elif count == 1:
                add_elapsed(((event_us - assigned[0]) / m,))
            elif count == 2:
                a, b = assigned
                add_elapsed(((event_us - a) / m, (event_us - b) / m))
            elif count == 3:
                a, b, c = assigned
                add_elapsed(((event_us - a) / m, (event_us - b) / m, (event_us - c) / m))
            else:
                add_elapsed(tuple([(event_us - at) / m for at in assigned]))
            continue
        kept = [index for index, at in enumerate(assigned) if at <= event_us]
        add_variants(tuple([variants[index] for index in kept]))
        add_elapsed(tuple([(event_us - assigned[index]) / m for index in kept]))
    return Matches(variants_column, elapsed_column)


def _of_experiment(candidates: Candidates, experiment_id: str) -> Candidates:
    """The candidates of one experiment."""
    variants, assigned, _ = candidates
    chosen = [index for index, variant in enumerate(variants) if variant[0] == experiment_id]
    if len(chosen) == len(variants):
        return candidates
    kept = tuple([assigned[index] for index in chosen])
    return tuple([variants[index] for index in chosen]), kept, max(kept, default=_EARLIEST_US)


def attribute_batch(
    events: Sequence[AcceptedEvent],
    assignments: Mapping[str, Sequence[Assignment]],
    experiments: Mapping[str, Experiment],
    memo: CandidateMemo | None = None,
) -> list[EnrichedEvent]:
    """`attribute` over a batch, with each user's candidate assignments prepared once.

    The outcome equals `[attribute(e, assignments.get(user, ()), experiments) for e in events]`:
    the running-experiment filter does not depend on the event, so it is applied per user;
    sorting the candidates by experiment first (stably) leaves each event's attributions in the
    order `attribute` sorts them into; and instants are compared, and elapsed times computed,
    in exact integer microseconds, which is what timedelta.total_seconds() divides too.
    """
    candidates = candidates_of_users(
        dict.fromkeys(a.event.user_id for a in events), assignments, experiments, memo
    )
    times_us = [accepted.event_time_us for accepted in events]
    matches = match_columns([accepted.event for accepted in events], times_us, candidates)
    return [
        EnrichedEvent(
            accepted,
            tuple([Attribution(*match) for match in matches.of_event(index)]),
            event_us,
        )
        for index, (accepted, event_us) in enumerate(zip(events, times_us, strict=True))
    ]


def _candidates(
    assignments: Iterable[Assignment],
    experiments: Mapping[str, Experiment],
    shared: dict[VariantKey, VariantKey] | None = None,
) -> Candidates:
    """`shared`, when given, keeps one object per variant across calls."""
    running = []
    for assignment in assignments:
        experiment = experiments.get(assignment.experiment_id)
        if experiment is None or not experiment.is_running:
            continue
        variant = (assignment.experiment_id, assignment.variant_id)
        if shared is not None:
            variant = shared.setdefault(variant, variant)
        running.append((variant, epoch_microseconds(assignment.assigned_at)))
    running.sort(key=lambda candidate: candidate[0][0])
    return candidates_from(running)
