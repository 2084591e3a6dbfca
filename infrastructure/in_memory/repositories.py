"""Assignments and experiments held in memory: the local back end and the unit tests' data."""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable

from pydantic import ValidationError

from application.ports import AssignmentRepository, ExperimentRepository
from domain.experiments import Assignment, Experiment
from infrastructure.malformed_reference_data import (
    MalformedReferenceData,
    Skipped,
    validation_reason,
)

SOURCE = "in-memory reference data"


def _fields_of(model: Assignment | Experiment) -> dict[str, object]:
    """A model's fields as they are, to validate again. Without serializer warnings: one built
    without validation warns with the very value it holds (a user id, say), and a warning goes
    to stderr, which is the function's log."""
    return model.model_dump(warnings=False)


class InMemoryAssignmentRepository(AssignmentRepository):
    """Skips, as the DynamoDB repository does, an assignment its model refuses (one built
    without validation): counted in `malformed_items` and logged without its user id."""

    def __init__(self, assignments: Iterable[Assignment] = ()) -> None:
        self._lock = threading.Lock()
        self._by_user: dict[str, dict[str, Assignment]] = {}
        self._malformed = MalformedReferenceData(SOURCE)
        self.lookups = 0
        self.put_all(assignments)

    @property
    def malformed_items(self) -> int:
        return self._malformed.count

    def put_all(self, assignments: Iterable[Assignment]) -> None:
        skipped: list[Skipped] = []
        usable: list[Assignment] = []
        for assignment in assignments:
            try:
                usable.append(Assignment.model_validate(_fields_of(assignment)))
            except ValidationError as error:
                reason = validation_reason(error)
                skipped.append(Skipped("assignment", assignment.experiment_id, reason))
        self._malformed.report(skipped)
        with self._lock:
            for assignment in usable:
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
    """Skips, as the DynamoDB repository does, an experiment its model refuses."""

    def __init__(self, experiments: Iterable[Experiment] = ()) -> None:
        self._lock = threading.Lock()
        self._experiments: dict[str, Experiment] = {}
        self._malformed = MalformedReferenceData(SOURCE)
        self.lookups = 0
        self.put_all(experiments)

    @property
    def malformed_items(self) -> int:
        return self._malformed.count

    def put_all(self, experiments: Iterable[Experiment]) -> None:
        skipped: list[Skipped] = []
        usable: list[Experiment] = []
        for experiment in experiments:
            try:
                usable.append(Experiment.model_validate(_fields_of(experiment)))
            except ValidationError as error:
                reason = validation_reason(error)
                skipped.append(Skipped("experiment", experiment.experiment_id, reason))
        self._malformed.report(skipped)
        with self._lock:
            for experiment in usable:
                self._experiments[experiment.experiment_id] = experiment

    def experiments(self, experiment_ids: Collection[str]) -> dict[str, Experiment]:
        with self._lock:
            self.lookups += 1
            return {i: self._experiments[i] for i in experiment_ids if i in self._experiments}

    def all(self) -> list[Experiment]:
        with self._lock:
            return sorted(self._experiments.values(), key=lambda e: e.experiment_id)
