"""The dead-letter message format, shared by the writers (SQS, S3) and the replay readers.

One letter is one JSON object (ASCII only, so SQS's character rules can never refuse it):
`format_version`, `reason`, `stage`, `detail`, `kinesis` (the record's coordinates),
`dead_lettered_at`, and either `data` (the record's base64 text exactly as Kinesis gave it) or,
when the letter is too large for a queue message, `data_location` ({bucket, key} of an S3
object holding the complete letter in this same format, with `data`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from domain.partitions import day_partition
from domain.records import KinesisCoordinates, padded_sequence
from domain.rejections import DeadLetter, RejectionReason

DEAD_LETTER_FORMAT_VERSION = "1"
DEFAULT_DEAD_LETTER_PREFIX = "dead-letters/"


class MalformedDeadLetterError(ValueError):
    """A message or object that is not a dead letter in this format."""


@dataclass(frozen=True, slots=True)
class DataLocation:
    bucket: str
    key: str


@dataclass(frozen=True, slots=True)
class DeadLetterEnvelope:
    """A letter as stored: its fields, when it was dead-lettered, and where its data is."""

    reason: RejectionReason
    detail: str
    coordinates: KinesisCoordinates
    dead_lettered_at: datetime
    data: str | None
    data_location: DataLocation | None

    def letter(self, data: str | None = None) -> DeadLetter:
        """The domain letter; `data` must be given when it lives at `data_location`."""
        body = self.data if data is None else data
        if body is None:
            raise MalformedDeadLetterError("the letter's data is elsewhere: fetch data_location")
        return DeadLetter(self.reason, self.detail, self.coordinates, body)


def encode_letter(
    letter: DeadLetter, dead_lettered_at: datetime, data_location: DataLocation | None = None
) -> bytes:
    """The letter as JSON; with `data_location` the data is left out and pointed to instead."""
    coordinates = letter.coordinates
    document: dict[str, Any] = {
        "format_version": DEAD_LETTER_FORMAT_VERSION,
        "reason": letter.reason.value,
        "stage": letter.stage.value,
        "detail": letter.detail,
        "kinesis": {
            "shard_id": coordinates.shard_id,
            "sequence_number": coordinates.sequence_number,
            "partition_key": coordinates.partition_key,
            "approximate_arrival_timestamp": coordinates.approximate_arrival_timestamp,
        },
        "dead_lettered_at": dead_lettered_at.astimezone(UTC).isoformat(timespec="milliseconds"),
    }
    if data_location is None:
        document["data"] = letter.data
    else:
        document["data_location"] = {"bucket": data_location.bucket, "key": data_location.key}
    # ensure_ascii: undecodable or control characters in `detail` or `data` travel as \u escapes,
    # which SQS accepts and json.loads restores exactly.
    return json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def decode_letter(body: bytes | str) -> DeadLetterEnvelope:
    try:
        document = json.loads(body)
        if not isinstance(document, dict):
            raise MalformedDeadLetterError("a dead letter is a JSON object")
        version = document.get("format_version")
        if version != DEAD_LETTER_FORMAT_VERSION:
            raise MalformedDeadLetterError(f"unknown dead-letter format version {version!r}")
        kinesis = document["kinesis"]
        coordinates = KinesisCoordinates(
            shard_id=_text(kinesis["shard_id"]),
            sequence_number=_text(kinesis["sequence_number"]),
            partition_key=_text(kinesis["partition_key"]),
            approximate_arrival_timestamp=float(kinesis["approximate_arrival_timestamp"]),
        )
        location = document.get("data_location")
        data = document.get("data")
        if (location is None) == (data is None):
            raise MalformedDeadLetterError("a dead letter has exactly one of data, data_location")
        return DeadLetterEnvelope(
            reason=RejectionReason(document["reason"]),
            detail=_text(document["detail"]),
            coordinates=coordinates,
            dead_lettered_at=datetime.fromisoformat(_text(document["dead_lettered_at"])),
            data=None if data is None else _text(data),
            data_location=None
            if location is None
            else DataLocation(_text(location["bucket"]), _text(location["key"])),
        )
    except MalformedDeadLetterError:
        raise
    except (ValueError, KeyError, TypeError) as error:
        raise MalformedDeadLetterError(
            f"not a dead letter: {type(error).__name__}: {error}"
        ) from error


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise MalformedDeadLetterError(f"expected a string, got {type(value).__name__}")
    return value


def dead_letter_key(prefix: str, letter: DeadLetter) -> str:
    """`<prefix>year=/month=/day=/<shard>-<padded sequence>.json`.

    Dated by the record's arrival in the stream, not by when it was dead-lettered: a retry of the
    same record on another day still writes the same key, so retries overwrite instead of piling up.
    """
    coordinates = letter.coordinates
    arrived = datetime.fromtimestamp(coordinates.approximate_arrival_timestamp, UTC)
    return (
        f"{prefix}{day_partition(arrived)}"
        f"{coordinates.shard_id}-{padded_sequence(letter.sequence)}.json"
    )
