"""Enrichment: each distinct user's assignments and each experiment's metadata, looked up once
per batch, then every event attributed."""

from __future__ import annotations

from sys import intern

from application.ports import AssignmentRepository, ExperimentRepository
from domain.attribution import CandidateMemo, Matches, match_columns
from domain.events import AcceptedColumns


class Enricher:
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
