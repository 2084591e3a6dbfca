"""The Lambda Kinesis event, read at the edge into the domain's raw records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.records import KinesisCoordinates, RawRecord


class MalformedEventError(ValueError):
    """The invocation payload is not a Kinesis event at all (a wiring mistake, not bad data)."""


def raw_records(event: Mapping[str, Any]) -> list[RawRecord]:
    """Every record of the event, in delivery order, with its shard and sequence number.

    The shard id comes from `eventID` (`shardId-000000000000:4954...`), as Lambda sends it. The
    event dict is read directly (the fields Powertools' `KinesisStreamEvent` reads, without
    its per-record wrapper objects, which cost more than the rest of reading a record).
    """
    if "Records" not in event:
        raise MalformedEventError("event has no 'Records': not a Kinesis event")
    records = []
    shards: dict[str, str] = {}
    for record in event["Records"]:
        payload = record["kinesis"]
        shard_id, _, _ = record["eventID"].partition(":")
        shard_id = shards.setdefault(shard_id, shard_id)  # one string per shard, not per record
        coordinates = KinesisCoordinates(
            shard_id,
            payload["sequenceNumber"],
            payload["partitionKey"],
            float(payload["approximateArrivalTimestamp"]),
        )
        records.append(RawRecord(coordinates, payload.get("data") or ""))
    return records
