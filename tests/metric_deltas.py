"""Builds metric deltas the way a batch does: from attributed events, through `aggregate`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from domain.events import AcceptedEvent, ExperimentEvent
from domain.metrics import MetricDelta
from domain.records import KinesisCoordinates
from tests.enriched_events import Attribution, EnrichedEvent, aggregate

SHARD_A = "shardId-000000000000"
SHARD_B = "shardId-000000000001"


@dataclass(frozen=True, slots=True)
class Seen:
    """One record: which user did what, when, and where it sits in the stream."""

    sequence: int
    user_id: str
    timestamp: datetime
    metric: str = "click"
    value: float | None = None
    shard_id: str = SHARD_A
    experiment_id: str = "exp-1"
    variant_id: str = "control"

    def event(self) -> ExperimentEvent:
        """The event the contract makes of it (raises when the contract refuses it)."""
        return ExperimentEvent(
            event_id=f"{self.shard_id}-{self.sequence}",
            event_type=self.metric,
            user_id=self.user_id,
            timestamp=self.timestamp,
            value=self.value,
        )


def enriched(seen: Seen) -> EnrichedEvent:
    event = seen.event()
    coordinates = KinesisCoordinates(
        seen.shard_id, str(seen.sequence), seen.user_id, seen.timestamp.timestamp()
    )
    accepted = AcceptedEvent(event, b"{}", coordinates)
    return EnrichedEvent(accepted, (Attribution(seen.experiment_id, seen.variant_id, 60.0),))


def deltas_of(records: Iterable[Seen]) -> list[MetricDelta]:
    return aggregate(enriched(seen) for seen in records)
