"""Which experiments and variants an event counts for."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from domain.events import AcceptedEvent
from domain.experiments import Assignment, Experiment


@dataclass(frozen=True, slots=True)
class Attribution:
    experiment_id: str
    variant_id: str
    time_since_assignment_seconds: float


@dataclass(frozen=True, slots=True)
class EnrichedEvent:
    accepted: AcceptedEvent
    attributions: tuple[Attribution, ...]

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
