"""The Lambda Kinesis event, read at the edge into the domain's raw records."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from domain.records import SEQUENCE_DIGITS, KinesisCoordinates, RawRecord


class MalformedEventError(ValueError):
    """The invocation payload is not a Kinesis event (a wiring mistake, not bad data): the
    message names the record and the field."""


def raw_records(event: Mapping[str, Any]) -> list[RawRecord]:
    """Every record of the event, in delivery order, with its shard and sequence number.

    The shard id comes from `eventID` (`shardId-000000000000:4954...`), as Lambda sends it. The
    event dict is read directly (the fields Powertools' `KinesisStreamEvent` reads, without
    its per-record wrapper objects, which cost more than the rest of reading a record). An
    event Lambda's Kinesis source would never send raises `MalformedEventError`.
    """
    if not isinstance(event, Mapping) or "Records" not in event:
        raise MalformedEventError("event has no 'Records': not a Kinesis event")
    if not isinstance(event["Records"], list):
        raise MalformedEventError("'Records' is not a list: not a Kinesis event")
    records = []
    shards: dict[str, str] = {}
    for index, record in enumerate(event["Records"]):
        try:
            payload = record["kinesis"]
            shard_id, _, _ = record["eventID"].partition(":")
            shard_id = shards.setdefault(shard_id, shard_id)  # one string per shard, not per record
            arrival = payload["approximateArrivalTimestamp"]
            coordinates = KinesisCoordinates(
                shard_id, payload["sequenceNumber"], payload["partitionKey"], float(arrival)
            )
            data = payload["data"]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise MalformedEventError(_what_is_wrong(index, record)) from None
        if not _well_formed(coordinates, arrival, data):
            raise MalformedEventError(_what_is_wrong(index, record))
        records.append(RawRecord(coordinates, data))
    return records


def _well_formed(coordinates: KinesisCoordinates, arrival: object, data: object) -> bool:
    sequence = coordinates.sequence_number
    return (
        _is_time(arrival)
        and isinstance(data, str)
        and isinstance(coordinates.partition_key, str)
        and bool(coordinates.shard_id)
        and isinstance(sequence, str)
        and sequence.isascii()
        and sequence.isdigit()
        and len(sequence) <= SEQUENCE_DIGITS
    )


def _what_is_wrong(index: int, record: object) -> str:
    """Which field of record `index` a Kinesis event record would have otherwise."""
    where = f"record {index}"
    if not isinstance(record, Mapping):
        return f"{where} is {type(record).__name__}, not an object: not a Kinesis event"
    source = record.get("eventSource")
    if "kinesis" not in record:
        kind = f"an {source} record" if isinstance(source, str) else "not a Kinesis record"
        return f"{where} has no 'kinesis' field: {kind}"
    event_id = record.get("eventID")
    if not isinstance(event_id, str) or not event_id.partition(":")[0]:
        return f"{where}: 'eventID' must be '<shard id>:<sequence number>', got {event_id!r}"
    payload = record["kinesis"]
    if not isinstance(payload, Mapping):
        return f"{where}: 'kinesis' is {type(payload).__name__}, not an object"
    for name in ("sequenceNumber", "partitionKey", "data"):
        if name not in payload:
            return f"{where} ({event_id}): 'kinesis.{name}' is missing"
        if not isinstance(payload[name], str):
            return f"{where} ({event_id}): 'kinesis.{name}' is not a string"
    sequence = payload["sequenceNumber"]
    if not (sequence.isascii() and sequence.isdigit()) or len(sequence) > SEQUENCE_DIGITS:
        return (
            f"{where} ({event_id}): 'kinesis.sequenceNumber' must be up to {SEQUENCE_DIGITS} "
            f"decimal digits, got {sequence[:80]!r}"
        )
    if not _is_time(payload.get("approximateArrivalTimestamp")):
        return (
            f"{where} ({event_id}): 'kinesis.approximateArrivalTimestamp' is not a finite "
            "number of seconds"
        )
    return f"{where} ({event_id}) is not a Kinesis event record"


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
