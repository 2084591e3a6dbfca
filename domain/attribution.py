"""Which experiments and variants an event counts for.

The rule: an event counts for every running experiment its user was assigned to at or before
the event's time, in experiment order; when the event names an `experiment_id`, only for that
experiment. The variant is the assignment's, which the assignment service owns (the client's
`variant_id` is kept in the archive as sent). `tests/reference_pipeline.py` holds the rule
written object by object, the oracle `match_columns` is checked against."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from domain.events import ExperimentEvent
from domain.experiments import Assignment, Experiment
from domain.time import epoch_microseconds

VariantKey = tuple[str, str]
"""(experiment_id, variant_id): one variant an event counts for."""

_EARLIEST_US = -(2**63)


Candidates = tuple[tuple[VariantKey, ...], tuple[int, ...], int]
"""A user's assignments to running experiments, sorted by experiment (stably): what any event
of the user can count for, prepared once per user. The variants, when each was assigned (epoch
microseconds), and the latest of those instants: an event at or after it that names no
experiment counts for every variant. A plain tuple: one is held per warm user."""

NO_CANDIDATES: Candidates = ((), (), _EARLIEST_US)

_UNSEEN = object()
"""No experiment of that id was shown to the memo yet (not even its absence)."""


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

    The contract with what hands out the assignments and experiments (the warm-container caches,
    `infrastructure.caching`): an entry is reused only while it was computed from equal values,
    the same assignments sequence and, for each of its assignments, the same experiment (or the
    same absence). Equality is checked by identity first: the caches hand out the very same
    objects until they expire, so a reuse costs one `is` per user and batch. Objects that are
    equal but not identical (a cache that copies, a refreshed entry) cost one comparison, after
    which the entry holds the new objects; objects that differ recompute. So the memo's answers
    never depend on identity, only its speed does. `Assignment` and `Experiment` are immutable
    values, so an object equal once stays equal.

    Kept across batches, it is built once by the composition root and injected into the use
    case (`BatchProcessor`, `ReplayProcessor`); one memo serves one processor at a time (it is
    not thread-safe). Bounded: cleared once `max_users` is reached.

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
            if (
                entry is None
                or (entry[0] is not user_assignments and entry[0] != user_assignments)
                or entry[3] < 0
            ):
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
            previous = seen.get(experiment_id, _UNSEEN)
            if previous is not current:
                # Kept as shown now, so that the next batch's check is by identity.
                seen[experiment_id] = current
                changed = changed or previous is _UNSEEN or previous != current
        if changed:
            self._generation += 1
        # Every experiment of these users' assignments is now in `seen` equal to the one in
        # `experiments`: an entry stamped with this generation was computed from equal ones.
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
        if entry is not None and (entry[0] is assignments or entry[0] == assignments):
            consulted = entry[1]
            for index, assignment in enumerate(assignments):
                current = experiments.get(assignment.experiment_id)
                if current is not consulted[index] and current != consulted[index]:
                    break
            else:
                if entry[3] != generation or entry[0] is not assignments:
                    # Stamped with the objects shown now: the next batch's check is by identity.
                    self._entries[user_id] = (assignments, *entry[1:3], generation)
                return entry[2]
        if len(self._variants) >= self._max_users:
            self._variants.clear()
        candidates = running_candidates(assignments, experiments, self._variants)
        if len(self._entries) >= self._max_users:
            self._entries.clear()
        self._entries[user_id] = (
            assignments,
            tuple([experiments.get(a.experiment_id) for a in assignments]),
            candidates,
            generation,
        )
        return candidates


@dataclass(slots=True)
class Matches:
    """The attributions of a list of events, as two columns: for each event, the variants it
    counts for in experiment order, and the time since each of those assignments in
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


def match_columns(
    events: Sequence[ExperimentEvent],
    times_us: Sequence[int],
    candidates: Mapping[str, Candidates],
) -> Matches:
    """Each event's attributions (see the module's docstring), given each event's time in
    epoch microseconds and every event's user's candidates (`CandidateMemo.candidates_of`).

    Instants are compared, and elapsed times computed, in exact integer microseconds, which is
    what timedelta.total_seconds() divides too; the candidates are sorted by experiment
    (stably), so each event's attributions come in experiment order.
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


def running_candidates(
    assignments: Iterable[Assignment],
    experiments: Mapping[str, Experiment],
    shared: dict[VariantKey, VariantKey] | None = None,
) -> Candidates:
    """The user's candidates from their assignments: those to running experiments, sorted by
    experiment (stably). `shared`, when given, keeps one object per variant across calls."""
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
