"""Where a record came from: its Kinesis coordinates and its raw payload."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class KinesisCoordinates:
    """Identifies one record in a stream; `sequence` is the sequence number as an integer.

    Kinesis sequence numbers are decimal strings of varying length (56 digits on AWS,
    short counters on emulators), so they are compared as integers, never as strings.
    """

    shard_id: str
    sequence_number: str
    partition_key: str
    approximate_arrival_timestamp: float
    sequence: int = field(init=False, compare=False, repr=False)
    """`sequence_number` as an integer, parsed once (every stage orders and cuts by it)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "sequence", int(self.sequence_number))


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as Kinesis hands it over: base64 text plus coordinates."""

    coordinates: KinesisCoordinates
    data: str

    @property
    def sequence(self) -> int:
        return self.coordinates.sequence


SEQUENCE_DIGITS = 64


def padded_sequence(sequence: int) -> str:
    """A sequence number as a fixed-width string, so that strings order like the numbers."""
    return str(sequence).zfill(SEQUENCE_DIGITS)
