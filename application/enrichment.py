"""Enrichment: which variants each event of a batch counts for.

Two ways, one interface (`EventMatcher`): the stream's (`Enricher`: each distinct user's
assignments and each experiment's metadata, looked up once per batch, then every event
attributed by the rule of `domain.attribution`), and an archive replay's
(`ArchivedAttributions`: what the archive says each record was counted for)."""

from __future__ import annotations

import abc
from collections.abc import Iterable
from sys import intern

from application.ports import AssignmentRepository, ExperimentRepository
from domain.archiving import ArchivedRecord
from domain.attribution import CandidateMemo, Matches, VariantKey, match_columns
from domain.events import AcceptedColumns


class EventMatcher(abc.ABC):
    """The enrichment step of the batch's path: each event's attributions."""

    @abc.abstractmethod
    def match(self, events: AcceptedColumns) -> Matches:
        """Each event's variants, in experiment order, and the time since each assignment (see
        `Matches`). Raises TransientInfrastructureError when that cannot be known now."""


class Enricher(EventMatcher):
    """Looks up the batch's users and experiments through the repositories (in production the
    warm-container caches, `infrastructure.caching`, which hand out the same objects until
    they expire) and attributes every event through `memo`, the candidates prepared in earlier
    batches (see `CandidateMemo` for the contract between the two: reuse is by equal values,
    checked by identity first)."""

    def __init__(
        self,
        assignments: AssignmentRepository,
        experiments: ExperimentRepository,
        memo: CandidateMemo | None = None,
    ) -> None:
        self._assignments = assignments
        self._experiments = experiments
        self._memo = memo if memo is not None else CandidateMemo()

    def match(self, events: AcceptedColumns) -> Matches:
        """Each event's attributions as plain tuples (see `domain.attribution.match_columns`),
        for the batch's hot path. Raises TransientInfrastructureError when a lookup cannot be
        made now."""
        # Interned, so that the warm cache keys and the counters' rows share one string per
        # user (see MetricAccumulator.add_columns).
        users = dict.fromkeys([intern(event.user_id) for event in events.events])
        user_ids = users.keys()
        assignments = self._assignments.assignments_for(user_ids) if user_ids else {}
        experiment_ids = self._memo.experiment_ids_for(user_ids, assignments)
        experiments = self._experiments.experiments(experiment_ids) if experiment_ids else {}
        candidates = self._memo.candidates_of(users, assignments, experiments, experiment_ids)
        return match_columns(events.events, events.times_us, candidates)


class ArchivedAttributions(EventMatcher):
    """The attributions the archive holds for its records, keyed by their Kinesis coordinates
    (shard id, sequence number): what an archive replay counts each event for.

    An archive replay rebuilds counters as the stream counted them (docs/replay.md); the
    assignments and experiments of today may differ from those of the event's time (the
    experiment stopped, the user re-assigned, the assignment expired), the archive's line does
    not. An event the archive holds no attribution for (it was unattributed, or it is not one of
    the records this was built from) counts for nothing."""

    __slots__ = ("_by_coordinates",)

    def __init__(self, records: Iterable[ArchivedRecord]) -> None:
        shared: dict[tuple[VariantKey, ...], tuple[VariantKey, ...]] = {}
        self._by_coordinates: dict[
            tuple[str, int], tuple[tuple[VariantKey, ...], tuple[float, ...]]
        ]
        self._by_coordinates = {
            (archived.record.coordinates.shard_id, archived.record.sequence): (
                # One object per set of variants, as the stream's matches share theirs.
                shared.setdefault(archived.variants, archived.variants),
                archived.elapsed_seconds,
            )
            for archived in records
        }

    def match(self, events: AcceptedColumns) -> Matches:
        unattributed: tuple[tuple[VariantKey, ...], tuple[float, ...]] = ((), ())
        variants_column: list[tuple[VariantKey, ...]] = []
        elapsed_column: list[tuple[float, ...]] = []
        for where in events.coordinates:
            variants, elapsed = self._by_coordinates.get(
                (where.shard_id, where.sequence), unattributed
            )
            variants_column.append(variants)
            elapsed_column.append(elapsed)
        return Matches(variants_column, elapsed_column)
