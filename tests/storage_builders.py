"""Builders of archive objects and dead letters, made the way the pipeline makes them."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta

from domain.archiving import ArchiveLimits, ArchiveObject
from domain.decoding import decode_record
from domain.events import AcceptedEvent, EventLimits
from domain.records import KinesisCoordinates
from domain.rejections import DeadLetter, RejectionReason
from tests.enriched_events import EnrichedEvent, build_archive_objects
from tests.factories import NOW, SHARD, event_payload, record_of


def archive_objects(
    count: int,
    shard_id: str = SHARD,
    first_sequence: int = 100,
    hour: datetime = NOW - timedelta(hours=1),
    events_per_object: int = 3,
) -> list[ArchiveObject]:
    """`count` objects of one shard and one hour, each `events_per_object` events long."""
    enriched = []
    for index in range(count * events_per_object):
        sequence = first_sequence + index
        payload = event_payload(
            event_id=f"evt-{shard_id}-{sequence}",
            user_id=f"user-{index % 7}",
            timestamp=(hour + timedelta(seconds=index)).isoformat().replace("+00:00", "Z"),
            properties={"note": "ünïcode\u2028kept", "n": index},
        )
        outcome = decode_record(record_of(payload, sequence, shard_id), EventLimits(), NOW)
        assert isinstance(outcome, AcceptedEvent), outcome
        enriched.append(EnrichedEvent(outcome, ()))  # attributed to nothing
    limits = ArchiveLimits(max_events_per_object=events_per_object)
    objects = build_archive_objects(enriched, limits)
    assert len(objects) == count
    return objects


def dead_letter(
    sequence: int,
    shard_id: str = SHARD,
    data: str | None = None,
    reason: RejectionReason = RejectionReason.INVALID_JSON,
    arrived: datetime = NOW,
) -> DeadLetter:
    text = (
        data
        if data is not None
        else base64.b64encode(b'{"broken": ' + str(sequence).encode()).decode()
    )
    return DeadLetter(
        reason,
        f"record {sequence} is not JSON: Expecting value, line 1 \u00e9\x07",
        KinesisCoordinates(shard_id, str(sequence), f"pk-{sequence}", arrived.timestamp()),
        text,
    )


def large_data(size: int) -> str:
    """Base64 text of about `size` characters, not compressible to anything small."""
    raw = json.dumps({"blob": [index * 7919 % 100_003 for index in range(size // 4)]}).encode()
    return base64.b64encode(raw).decode()[:size]
