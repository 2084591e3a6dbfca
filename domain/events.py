"""The event contract: what a producer may send, and the limits that keep one record harmless."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    JsonValue,
    StringConstraints,
)
from pydantic_core import CoreSchema, core_schema

from domain.records import KinesisCoordinates
from domain.time import epoch_microseconds

RESERVED_FIELD = "_pipeline"
"""Top-level field the archive adds to each line; a producer may not send it (in any case:
the archive's readers compare names case-insensitively)."""

IDENTIFIER_MAX_BYTES = 256
"""UTF-8 bytes of `event_id`, `user_id`, `experiment_id`, `variant_id` and `session_id` (also of
experiment and variant ids read from the assignment service). The DynamoDB keys built from them
fit with room to spare: the longest, the unique-user marker's partition key, holds an
experiment id and a variant id percent-escaped (at most 3x) in DynamoDB's 2,048 bytes."""

VALUE_MAX_MAGNITUDE = 10**12
"""`value` is refused at or beyond a trillion in magnitude..."""
VALUE_MAX_FRACTION_DIGITS = 18
"""...and with more than 18 digits after the decimal point (as the producer wrote it, i.e. the
shortest repr of the double). A counter's sum then has at most 18 fractional digits and, below
10^20 (one hundred million values of the largest magnitude in one counter), at most 38 digits in
all: DynamoDB stores it exactly and no sum is ever rounded (`domain.limits.COUNTER_CONTEXT`)."""

EARLIEST_EVENT_TIME = datetime(2024, 1, 1, tzinfo=UTC)
"""Default lower bound of event times: the first year the archive's Athena projection reads
(template.yaml, `projection.year.range`)."""


def identifier_problem(name: str, value: str) -> str | None:
    """Why `value` cannot be an identifier of the contract, or None."""
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > IDENTIFIER_MAX_BYTES:
        return f"{name} is {size} bytes in UTF-8, limit {IDENTIFIER_MAX_BYTES}"
    return None


EventId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
MetricName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=256)]
FiniteNumber = Annotated[float, Field(allow_inf_nan=False)]

ISO_8601_TIMESTAMP = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?"
    r"(?:[Zz]|[+-][0-9]{2}:?[0-9]{2})?$"
)
"""What a timestamp must look like before it is parsed: a string of a date with a four-digit
year and a time (the zone is checked by the parser, so that a missing zone keeps its own
reason). The parser alone would also take 0, "0" or "1795168800" as seconds since the epoch."""


class _Iso8601Timestamp:
    """An aware datetime written as an ISO 8601 string: from JSON, a string matching
    `ISO_8601_TIMESTAMP` (pydantic-core's regex), then parsed. Both steps run in pydantic-core,
    with no Python call per event."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: object, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        from_text = core_schema.chain_schema(
            [
                core_schema.str_schema(pattern=ISO_8601_TIMESTAMP, strict=True),
                core_schema.datetime_schema(tz_constraint="aware", strict=False),
            ]
        )
        return core_schema.json_or_python_schema(
            json_schema=from_text,
            # Built in Python (tests, replays): an aware datetime as it is, or the same text.
            python_schema=core_schema.union_schema(
                [core_schema.datetime_schema(tz_constraint="aware", strict=True), from_text]
            ),
        )


Iso8601Timestamp = Annotated[datetime, _Iso8601Timestamp]


class ExperimentEvent(BaseModel):
    """One user action. Unknown top-level fields are kept (they reach the archive untouched)."""

    model_config = ConfigDict(frozen=True, extra="allow", strict=True, allow_inf_nan=False)

    event_id: EventId
    event_type: MetricName
    user_id: UserId
    timestamp: Iso8601Timestamp
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
    earliest_event_time: datetime = EARLIEST_EVENT_TIME


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
        object.__setattr__(self, "event_time_us", epoch_microseconds(self.event.timestamp))

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
