"""How a batch is processed: limits, chunk and segment sizes."""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.archiving import ArchiveLimits
from domain.events import EventLimits


@dataclass(frozen=True, slots=True)
class ProcessingSettings:
    event_limits: EventLimits = field(default_factory=EventLimits)
    archive_limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    archive_events: bool = True
    """False only when replaying the archive itself: those events are archived already."""
    chunk_records: int = 2_500
    """Records decoded and enriched at a time: memory holds one chunk's events, not the batch's
    (see docs/performance.md). The outcome does not depend on it."""
    segment_records: int = 1_000
    """When the invocation's time is limited, the first part of a larger batch that is made
    fully durable (counted, marked, archived, dead-lettered) before the rest is begun; each
    later part is sized to the time left (see `BatchProcessor.process`)."""

    def __post_init__(self) -> None:
        if self.chunk_records < 1 or self.segment_records < 1:
            raise ValueError("chunk_records and segment_records must be at least 1")
