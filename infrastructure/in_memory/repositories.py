"""Assignments and experiments held in memory: the local back end and the unit tests' data."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable

from application.ports import AssignmentRepository, ExperimentRepository
from domain.experiments import Assignment, Experiment


class InMemoryAssignmentRepository(AssignmentRepository):
    def __init__(self, assignments: Iterable[Assignment] = ()) -> None:
        self._lock = threading.Lock()
        self._by_user: dict[str, dict[str, Assignment]] = {}
        self.lookups = 0
        self.put_all(assignments)

    def put_all(self, assignments: Iterable[Assignment]) -> None:
        with self._lock:
            for assignment in assignments:
                self._by_user.setdefault(assignment.user_id, {})[assignment.experiment_id] = (
                    assignment
                )

    def assignments_for(self, user_ids: Collection[str]) -> dict[str, tuple[Assignment, ...]]:
        with self._lock:
            self.lookups += 1
            return {
                user_id: tuple(self._by_user[user_id].values())
                for user_id in user_ids
                if user_id in self._by_user
            }


class InMemoryExperimentRepository(ExperimentRepository):
    def __init__(self, experiments: Iterable[Experiment] = ()) -> None:
        self._lock = threading.Lock()
        self._experiments: dict[str, Experiment] = {}
        self.lookups = 0
        self.put_all(experiments)

    def put_all(self, experiments: Iterable[Experiment]) -> None:
        with self._lock:
            for experiment in experiments:
                self._experiments[experiment.experiment_id] = experiment

    def experiments(self, experiment_ids: Collection[str]) -> dict[str, Experiment]:
        with self._lock:
            self.lookups += 1
            return {i: self._experiments[i] for i in experiment_ids if i in self._experiments}

    def all(self) -> list[Experiment]:
        with self._lock:
            return sorted(self._experiments.values(), key=lambda e: e.experiment_id)
