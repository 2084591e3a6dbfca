"""The product's composition root, for tests: `Container()` with the memory back end
(BACK_END=memory) and a test's overrides, never a use case wired by hand."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from application.process_batch import BatchProcessor
from entrypoints.container import Container
from entrypoints.settings import Settings
from infrastructure.in_memory.archive import InMemoryEventArchive
from infrastructure.in_memory.dead_letters import InMemoryDeadLetterQueue
from infrastructure.in_memory.metric_store import InMemoryMetricStore
from infrastructure.in_memory.recent_events import InMemoryRecentEventIndex
from infrastructure.in_memory.repositories import (
    InMemoryAssignmentRepository,
    InMemoryExperimentRepository,
)
from infrastructure.in_memory.telemetry import InMemoryTelemetry
from operations.container import OperationsContainer

AnyContainer = TypeVar("AnyContainer", bound=Container)

SHARED_BETWEEN_CONTAINERS = (
    "in_memory_assignment_repository",
    "in_memory_experiment_repository",
    "in_memory_metric_store",
    "in_memory_event_archive",
    "in_memory_dead_letter_queue",
    "in_memory_durable_event_ids",
    "recent_events_in_memory",
    "in_memory_telemetry",
)
"""What `MemoryBackEnd.container_sharing` hands to each new container: the back end's adapters,
and (as one process's tests have always shared them) the warm memory of event ids and the
telemetry; a test that means a cold start overrides `recent_events_in_memory`."""


def memory_settings(**fields: object) -> Settings:
    """The settings from the environment, with the memory back end and `fields`."""
    return Settings.model_validate(Settings().model_dump() | fields | {"back_end": "memory"})


def memory_container(settings: Settings | None = None, /, **overrides: object) -> Container:
    """`Container()` over the memory back end; each of `overrides` replaces the provider of
    that name (an object, or a provider)."""
    return _overridden(Container(), settings, overrides)


def memory_operations_container(
    settings: Settings | None = None, /, **overrides: object
) -> OperationsContainer:
    """The operators' container (replays, erasure) over the memory back end."""
    return _overridden(OperationsContainer(), settings, overrides)


def _overridden(
    container: AnyContainer, settings: Settings | None, overrides: dict[str, object]
) -> AnyContainer:
    container.settings.override(settings or memory_settings())
    for name, replacement in overrides.items():
        getattr(container, name).override(replacement)
    return container


@dataclass(frozen=True, slots=True)
class MemoryBackEnd:
    """A memory container's in-memory adapters, typed for seeding and for assertions, and more
    containers over the same adapters: processors with other settings or faulty ports, or
    another warm container in front of the same "tables"."""

    container: Container

    @classmethod
    def empty(cls, settings: Settings | None = None) -> MemoryBackEnd:
        return cls(memory_container(settings))

    @property
    def assignments(self) -> InMemoryAssignmentRepository:
        return self.container.in_memory_assignment_repository()

    @property
    def experiments(self) -> InMemoryExperimentRepository:
        return self.container.in_memory_experiment_repository()

    @property
    def metrics(self) -> InMemoryMetricStore:
        return self.container.in_memory_metric_store()

    @property
    def archive(self) -> InMemoryEventArchive:
        return self.container.in_memory_event_archive()

    @property
    def dead_letters(self) -> InMemoryDeadLetterQueue:
        return self.container.in_memory_dead_letter_queue()

    @property
    def recent_events(self) -> InMemoryRecentEventIndex:
        return self.container.recent_events_in_memory()

    @property
    def telemetry(self) -> InMemoryTelemetry:
        return self.container.in_memory_telemetry()

    def container_sharing(
        self, settings: Settings | None = None, /, **overrides: object
    ) -> Container:
        """A new container whose adapters are this one's, then `overrides`."""
        return memory_container(settings, **(self._shared() | overrides))

    def operations_container_sharing(
        self, settings: Settings | None = None, /, **overrides: object
    ) -> OperationsContainer:
        return memory_operations_container(settings, **(self._shared() | overrides))

    def processor(self, settings: Settings | None = None, /, **overrides: object) -> BatchProcessor:
        """A new batch processor over these adapters, as `container_sharing` builds it."""
        return self.container_sharing(settings, **overrides).batch_processor()

    def _shared(self) -> dict[str, object]:
        return {name: getattr(self.container, name)() for name in SHARED_BETWEEN_CONTAINERS}
