"""The event contract: what a producer may send, and the limits that keep one record harmless."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from domain.records import KinesisCoordinates

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

RESERVED_FIELD = "_pipeline"
"""Top-level field the archive adds to each line; a producer may not send it."""

EventId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
MetricName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=256)]
FiniteNumber = Annotated[float, Field(allow_inf_nan=False)]


class ExperimentEvent(BaseModel):
    """One user action. Unknown top-level fields are kept (they reach the archive untouched)."""

    model_config = ConfigDict(frozen=True, extra="allow", strict=True, allow_inf_nan=False)

    event_id: EventId
    event_type: MetricName
    user_id: UserId
    timestamp: AwareDatetime
    experiment_id: Identifier | None = None
    variant_id: Identifier | None = None
    value: FiniteNumber | None = None
    session_id: Identifier | None = None
    properties: dict[str, JsonValue] | None = None
    schema_version: Identifier | int | None = None


@dataclass(frozen=True, slots=True)
class EventLimits:
    """Bounds on one record; anything beyond them is dead-lettered, never half-processed."""

    max_record_bytes: int = 64 * 1024
    max_nesting_depth: int = 8
    max_future_skew: timedelta = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class AcceptedEvent:
    """A valid event, the exact bytes it arrived as, and where it came from."""

    event: ExperimentEvent
    payload: bytes
    coordinates: KinesisCoordinates
    event_time_us: int = field(init=False, compare=False, repr=False)
    """The event's timestamp as exact integer microseconds since the Unix epoch, computed once
    at construction (the future-timestamp rule, attribution and partitions use it)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_time_us", (self.event.timestamp - _EPOCH) // _MICROSECOND)

    @property
    def sequence(self) -> int:
        return self.coordinates.sequence

    @property
    def timestamp(self) -> datetime:
        return self.event.timestamp


@dataclass(slots=True)
class AcceptedColumns:
    """Accepted events as parallel columns, in the order accepted: what a list of
    `AcceptedEvent`s holds, without an object per event. The batch's hot path carries these;
    `rows()` gives the `AcceptedEvent`s back."""

    events: list[ExperimentEvent] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    coordinates: list[KinesisCoordinates] = field(default_factory=list)
    times_us: list[int] = field(default_factory=list)
    """Each event's `AcceptedEvent.event_time_us`."""

    def __len__(self) -> int:
        return len(self.events)

    def append(self, accepted: AcceptedEvent) -> None:
        self.events.append(accepted.event)
        self.payloads.append(accepted.payload)
        self.coordinates.append(accepted.coordinates)
        self.times_us.append(accepted.event_time_us)

    @classmethod
    def of(cls, accepted: Iterable[AcceptedEvent]) -> AcceptedColumns:
        columns = cls()
        for item in accepted:
            columns.append(item)
        return columns

    def rows(self) -> list[AcceptedEvent]:
        return [
            AcceptedEvent(event, payload, coordinates)
            for event, payload, coordinates in zip(
                self.events, self.payloads, self.coordinates, strict=True
            )
        ]

    def select(self, positions: Iterable[int]) -> AcceptedColumns:
        """The events at `positions`, in that order."""
        positions = list(positions)
        return AcceptedColumns(
            [self.events[i] for i in positions],
            [self.payloads[i] for i in positions],
            [self.coordinates[i] for i in positions],
            [self.times_us[i] for i in positions],
        )
