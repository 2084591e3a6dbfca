"""The Lambda Kinesis event, read at the edge into the domain's raw records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent

from domain.records import KinesisCoordinates, RawRecord


class MalformedEventError(ValueError):
    """The invocation payload is not a Kinesis event at all (a wiring mistake, not bad data)."""


def raw_records(event: Mapping[str, Any]) -> list[RawRecord]:
    """Every record of the event, in delivery order, with its shard and sequence number.

    The shard id comes from `eventID` (`shardId-000000000000:4954...`), as Lambda sends it.
    """
    if "Records" not in event:
        raise MalformedEventError("event has no 'Records': not a Kinesis event")
    records = []
    for record in KinesisStreamEvent(dict(event)).records:
        payload = record.kinesis
        shard_id, _, _ = record.event_id.partition(":")
        coordinates = KinesisCoordinates(
            shard_id=shard_id,
            sequence_number=payload.sequence_number,
            partition_key=payload.partition_key,
            approximate_arrival_timestamp=float(payload.approximate_arrival_timestamp),
        )
        records.append(RawRecord(coordinates, payload.data or ""))
    return records
