"""The archive's shape: JSON Lines grouped by the hour of event time, bounded in size."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from domain.attribution import EnrichedEvent
from domain.events import RESERVED_FIELD
from domain.metrics import Granularity
from domain.records import padded_sequence

ARCHIVE_SCHEMA_VERSION = "1"


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_events_per_object: int = 1_000
    max_bytes_per_object: int = 5 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ArchiveObject:
    """One archive file: the JSON Lines of events from one shard and one hour, in sequence order."""

    partition: str
    shard_id: str
    first_sequence: int
    last_sequence: int
    event_count: int
    body: bytes
    event_ids: tuple[str, ...]

    @property
    def name_stem(self) -> str:
        """Unique per shard and sequence range; the adapter appends a content digest."""
        return (
            f"{self.partition}{self.shard_id}-{padded_sequence(self.first_sequence)}"
            f"-{padded_sequence(self.last_sequence)}"
        )


def hour_partition(enriched: EnrichedEvent) -> str:
    start = Granularity.HOUR.window_start(enriched.accepted.event.timestamp)
    return start.strftime("year=%Y/month=%m/day=%d/hour=%H/")


def archive_line(enriched: EnrichedEvent) -> bytes:
    """The event exactly as received plus a `_pipeline` field with its enrichment and origin.

    The producer's bytes are kept (no re-serialisation: unknown fields, key order and number
    formatting survive); newlines between JSON tokens become spaces so that one event is one line.
    """
    accepted = enriched.accepted
    coordinates = accepted.coordinates
    pipeline = {
        "attributions": [
            {
                "experiment_id": a.experiment_id,
                "variant_id": a.variant_id,
                "time_since_assignment_seconds": a.time_since_assignment_seconds,
            }
            for a in enriched.attributions
        ],
        "kinesis": {
            "shard_id": coordinates.shard_id,
            "sequence_number": coordinates.sequence_number,
            "partition_key": coordinates.partition_key,
            "approximate_arrival_timestamp": coordinates.approximate_arrival_timestamp,
        },
        "archive_schema_version": ARCHIVE_SCHEMA_VERSION,
    }
    payload = accepted.payload.rstrip()
    if b"\n" in payload or b"\r" in payload:
        payload = payload.replace(b"\r", b" ").replace(b"\n", b" ")
    suffix = json.dumps(pipeline, separators=(",", ":"), ensure_ascii=False).encode()
    # The payload is a validated, non-empty JSON object: it ends with "}" and has members.
    return b'%s,"%s":%s}\n' % (payload[:-1], RESERVED_FIELD.encode(), suffix)


def build_archive_objects(
    events: Iterable[EnrichedEvent], limits: ArchiveLimits
) -> list[ArchiveObject]:
    """Group events by (hour of event time, shard) into objects within the size limits."""
    groups: dict[tuple[str, str], list[EnrichedEvent]] = {}
    for enriched in events:
        key = (hour_partition(enriched), enriched.accepted.coordinates.shard_id)
        groups.setdefault(key, []).append(enriched)
    objects: list[ArchiveObject] = []
    for (partition, shard_id), members in sorted(groups.items()):
        members.sort(key=lambda enriched: enriched.accepted.sequence)
        lines: list[bytes] = []
        ids: list[str] = []
        first = last = 0
        size = 0
        for enriched in members:
            line = archive_line(enriched)
            full = len(lines) >= limits.max_events_per_object
            if lines and (full or size + len(line) > limits.max_bytes_per_object):
                objects.append(
                    ArchiveObject(
                        partition, shard_id, first, last, len(lines), b"".join(lines), tuple(ids)
                    )
                )
                lines, ids, size = [], [], 0
            if not lines:
                first = enriched.accepted.sequence
            last = enriched.accepted.sequence
            lines.append(line)
            ids.append(enriched.accepted.event.event_id)
            size += len(line)
        if lines:
            objects.append(
                ArchiveObject(
                    partition, shard_id, first, last, len(lines), b"".join(lines), tuple(ids)
                )
            )
    return objects
