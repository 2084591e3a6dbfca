"""What processing one batch came to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from domain.records import KinesisCoordinates
from domain.rejections import RejectionReason


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Counts per outcome; every input record is in exactly one of processed, duplicates,
    dead-lettered or failures (reported back to Kinesis for redelivery)."""

    records: int
    processed: int
    duplicates: int
    dead_lettered: Mapping[RejectionReason, int]
    unattributed: int
    attributions: int
    archived_objects: int
    metric_keys_updated: int
    failures: tuple[KinesisCoordinates, ...]
    problems: tuple[str, ...] = ()
    stage_seconds: Mapping[str, float] = field(default_factory=dict)
    stage_errors: Mapping[str, int] = field(default_factory=dict)
    """Stages whose port reported work it could not finish (deduplicate: the recent-event index,
    enrich, write_metrics, archive, dead_letter), so that each kind of infrastructure trouble has
    its own alarm."""

    @property
    def dead_lettered_total(self) -> int:
        return sum(self.dead_lettered.values())

    def batch_item_failures(self) -> list[dict[str, str]]:
        """The Kinesis partial batch response items: Lambda redelivers from the lowest of them."""
        return [{"itemIdentifier": c.sequence_number} for c in self.failures]
