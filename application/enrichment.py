"""Enrichment: each distinct user's assignments and each experiment's metadata, looked up once
per batch, then every event attributed."""

from __future__ import annotations

from collections.abc import Sequence
from sys import intern

from application.ports import AssignmentRepository, ExperimentRepository
from domain.attribution import (
    Attribution,
    CandidateMemo,
    EnrichedEvent,
    Matches,
    candidates_of_users,
    match_columns,
)
from domain.events import AcceptedColumns, AcceptedEvent


class Enricher:
    def __init__(
        self,
        assignments: AssignmentRepository,
        experiments: ExperimentRepository,
        memo: CandidateMemo | None = None,
    ) -> None:
        self._assignments = assignments
        self._experiments = experiments
        self._memo = memo if memo is not None else CandidateMemo()

    def enrich(self, events: Sequence[AcceptedEvent]) -> list[EnrichedEvent]:
        """Raises TransientInfrastructureError when a lookup cannot be made now."""
        columns = AcceptedColumns.of(events)
        matches = self.match(columns)
        return [
            EnrichedEvent(
                accepted,
                tuple([Attribution(*match) for match in matches.of_event(index)]),
                event_us,
            )
            for index, (accepted, event_us) in enumerate(zip(events, columns.times_us, strict=True))
        ]

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
        candidates = candidates_of_users(
            users, assignments, experiments, self._memo, experiment_ids
        )
        return match_columns(events.events, events.times_us, candidates)
