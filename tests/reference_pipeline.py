"""The pipeline's straightforward first implementations, kept as the reference (the oracle) that
the production kernels must agree with (see tests/unit/test_fast_paths_match_reference.py and
tests/enriched_events.py, which drives the kernels with the same objects)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal

from domain.archiving import ARCHIVE_SCHEMA_VERSION, ArchiveLimits, ArchiveObject
from domain.events import RESERVED_FIELD, AcceptedEvent, EventLimits
from domain.experiments import Assignment, Experiment
from domain.metrics import GRANULARITIES, Granularity, MetricDelta, MetricKey, to_decimal
from domain.partitions import HOUR_PARTITION_FORMAT
from domain.rejections import RejectionReason
from tests.enriched_events import Attribution, EnrichedEvent


def reference_attribute(
    accepted: AcceptedEvent,
    assignments: Iterable[Assignment],
    experiments: Mapping[str, Experiment],
) -> EnrichedEvent:
    """Attribute an event to every running experiment the user was assigned to before it happened.

    When the event names an `experiment_id`, only that experiment is considered. The variant
    is the assignment's, which the assignment service owns; the client's `variant_id` is kept
    in the archive as sent.
    """
    event = accepted.event
    attributions = []
    for assignment in assignments:
        if event.experiment_id is not None and assignment.experiment_id != event.experiment_id:
            continue
        experiment = experiments.get(assignment.experiment_id)
        if experiment is None or not experiment.is_running:
            continue
        if not assignment.precedes(event.timestamp):
            continue
        elapsed = (event.timestamp - assignment.assigned_at).total_seconds()
        attributions.append(Attribution(assignment.experiment_id, assignment.variant_id, elapsed))
    attributions.sort(key=lambda a: a.experiment_id)
    return EnrichedEvent(accepted, tuple(attributions))


def reference_aggregate(events: Iterable[EnrichedEvent]) -> list[MetricDelta]:
    """Pre-aggregate a batch into one delta per (counter, shard), hourly and daily."""
    columns: dict[tuple[MetricKey, str], tuple[list[int], list[str], list[Decimal | None]]] = {}
    window_cache: dict[tuple[Granularity, datetime], datetime] = {}
    for enriched in events:
        if not enriched.attributions:
            continue
        accepted = enriched.accepted
        event = accepted.event
        sequence = accepted.sequence
        shard_id = accepted.coordinates.shard_id
        value = None if event.value is None else to_decimal(event.value)
        for granularity in GRANULARITIES:
            cache_key = (granularity, event.timestamp)
            window_start = window_cache.get(cache_key)
            if window_start is None:
                window_start = granularity.window_start(event.timestamp)
                window_cache[cache_key] = window_start
            for attribution in enriched.attributions:
                key = MetricKey(
                    attribution.experiment_id,
                    attribution.variant_id,
                    event.event_type,
                    granularity,
                    window_start,
                )
                column = columns.get((key, shard_id))
                if column is None:
                    column = ([], [], [])
                    columns[(key, shard_id)] = column
                column[0].append(sequence)
                column[1].append(event.user_id)
                column[2].append(value)
    deltas = []
    for (key, shard_id), (sequences, user_ids, values) in columns.items():
        order = sorted(range(len(sequences)), key=sequences.__getitem__)
        deltas.append(
            MetricDelta(
                key,
                shard_id,
                tuple(sequences[i] for i in order),
                tuple(user_ids[i] for i in order),
                tuple(values[i] for i in order),
            )
        )
    deltas.sort(key=lambda delta: (delta.key, delta.shard_id))
    return deltas


def reference_hour_partition(enriched: EnrichedEvent) -> str:
    start = Granularity.HOUR.window_start(enriched.accepted.event.timestamp)
    return start.strftime(HOUR_PARTITION_FORMAT)


def reference_archive_line(enriched: EnrichedEvent) -> bytes:
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
    suffix = json.dumps(pipeline, separators=(",", ":"), ensure_ascii=False)
    # Elapsed times are written to the microsecond, always with six decimals.
    for attribution in enriched.attributions:
        elapsed = f'"time_since_assignment_seconds":{attribution.time_since_assignment_seconds!r}'
        fixed = f'"time_since_assignment_seconds":{attribution.time_since_assignment_seconds:.6f}'
        suffix = suffix.replace(elapsed + "}", fixed + "}", 1)
    # The payload is a validated, non-empty JSON object: it ends with "}" and has members.
    return b'%s,"%s":%s}\n' % (payload[:-1], RESERVED_FIELD.encode(), suffix.encode())


def reference_build_archive_objects(
    events: Iterable[EnrichedEvent], limits: ArchiveLimits
) -> list[ArchiveObject]:
    """Group events by (hour of event time, shard) into objects within the size limits."""
    groups: dict[tuple[str, str], list[EnrichedEvent]] = {}
    for enriched in events:
        key = (reference_hour_partition(enriched), enriched.accepted.coordinates.shard_id)
        groups.setdefault(key, []).append(enriched)
    objects: list[ArchiveObject] = []
    for (partition, shard_id), members in sorted(groups.items()):
        members.sort(key=lambda enriched: enriched.accepted.sequence)
        lines: list[bytes] = []
        ids: list[str] = []
        sequences: list[int] = []
        first = last = 0
        size = 0
        for enriched in members:
            line = reference_archive_line(enriched)
            full = len(lines) >= limits.max_events_per_object
            if lines and (full or size + len(line) > limits.max_bytes_per_object):
                objects.append(
                    ArchiveObject(
                        partition,
                        shard_id,
                        first,
                        last,
                        len(lines),
                        b"".join(lines),
                        tuple(ids),
                        tuple(sequences),
                    )
                )
                lines, ids, sequences, size = [], [], [], 0
            if not lines:
                first = enriched.accepted.sequence
            last = enriched.accepted.sequence
            lines.append(line)
            ids.append(enriched.accepted.event.event_id)
            sequences.append(enriched.accepted.sequence)
            size += len(line)
        if lines:
            objects.append(
                ArchiveObject(
                    partition,
                    shard_id,
                    first,
                    last,
                    len(lines),
                    b"".join(lines),
                    tuple(ids),
                    tuple(sequences),
                )
            )
    return objects


def reference_check_json_value(
    value: object, depth: int, limits: EventLimits
) -> tuple[RejectionReason, str] | None:
    """Reject NaN/Infinity (valid in no JSON consumer downstream) and runaway nesting."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return RejectionReason.NON_FINITE_NUMBER, f"non-finite number {value!r} in payload"
        return None
    if isinstance(value, dict | list):
        if depth > limits.max_nesting_depth:
            return (
                RejectionReason.TOO_DEEPLY_NESTED,
                f"nesting deeper than {limits.max_nesting_depth} levels",
            )
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            problem = reference_check_json_value(child, depth + 1, limits)
            if problem is not None:
                return problem
    return None


def reference_key_rules(document: object) -> tuple[RejectionReason, str] | None:
    """The first two keys of one object, depth first in document order, that are equal but for
    case (a parsed document holds no key twice)."""
    if isinstance(document, dict):
        first_of: dict[str, str] = {}
        for name in document:
            if name.lower() in first_of:
                return (
                    RejectionReason.DUPLICATE_KEY,
                    f"keys {first_of[name.lower()]!r} and {name!r} differ only in case",
                )
            first_of[name.lower()] = name
        children: list[object] = list(document.values())
    elif isinstance(document, list):
        children = document
    else:
        return None
    for child in children:
        problem = reference_key_rules(child)
        if problem is not None:
            return problem
    return None


def reference_json_rules(
    extra: dict[str, object], properties: object, limits: EventLimits
) -> tuple[RejectionReason, str] | None:
    """The first non-finite number or over-deep nesting among the extras, then the properties."""
    nested: list[object] = list(extra.values())
    if properties is not None:
        nested.append(properties)
    for value in nested:
        problem = reference_check_json_value(value, depth=1, limits=limits)
        if problem is not None:
            return problem
    return None
