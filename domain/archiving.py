"""The archive's shape: JSON Lines grouped by the hour of event time, bounded in size."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring

from domain.attribution import EnrichedEvent, Matches, Variant
from domain.events import RESERVED_FIELD, AcceptedColumns
from domain.metrics import Granularity
from domain.records import KinesisCoordinates, RawRecord, padded_sequence

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


_HOUR_US = 3_600_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _partition_of_hour(hour_us: int) -> str:
    start = _EPOCH + timedelta(microseconds=hour_us)
    return start.strftime("year=%Y/month=%m/day=%d/hour=%H/")


_json_string: Callable[[str], str] = encode_basestring
"""A str as JSON, as json.dumps(..., ensure_ascii=False) writes it (the C encoder when built)."""


def _json_number(number: float) -> str:
    # json.dumps writes a finite float as float.__repr__; anything else goes through json.dumps.
    if type(number) is float and number - number == 0.0:
        return float.__repr__(number)
    return json.dumps(number)


class ArchiveLineWriter:
    """Builds archive lines from one bytes template per (shard, attributed variants): the JSON
    of everything but the event, its elapsed times and its record's coordinates is written
    once, and each line is one C-level format of the template. Keep one writer across batches
    (the templates and partition keys repeat); it holds at most `max_entries` templates and as
    many encoded partition keys."""

    __slots__ = ("_max_entries", "_partition_keys", "_template_count", "_templates")

    def __init__(self, max_entries: int = 50_000) -> None:
        self._max_entries = max_entries
        self._templates: dict[str, dict[tuple[Variant, ...], bytes]] = {}
        self._template_count = 0
        self._partition_keys: dict[str, bytes] = {}

    def line(self, enriched: EnrichedEvent) -> bytes:
        attributions = enriched.attributions
        return self.matched_line(
            enriched.accepted.payload,
            enriched.accepted.coordinates,
            tuple([(a.experiment_id, a.variant_id) for a in attributions]),
            tuple([a.time_since_assignment_seconds for a in attributions]),
        )

    def matched_line(
        self,
        payload: bytes,
        coordinates: KinesisCoordinates,
        variants: tuple[Variant, ...],
        elapsed_seconds: tuple[float, ...],
    ) -> bytes:
        """The line of one event; `elapsed_seconds` are finite (as `attribute` computes them)."""
        by_variants = self._templates.get(coordinates.shard_id)
        template = None if by_variants is None else by_variants.get(variants)
        if template is None:
            template = self._new_template(coordinates.shard_id, variants)
        partition_key = self._partition_keys.get(coordinates.partition_key)
        if partition_key is None:
            partition_key = self._encoded_partition_key(coordinates.partition_key)
        sequence_number = coordinates.sequence_number
        arrival = coordinates.approximate_arrival_timestamp
        payload = payload.rstrip()
        if b"\n" in payload or b"\r" in payload:
            payload = payload.replace(b"\r", b" ").replace(b"\n", b" ")
        # The payload is a validated, non-empty JSON object: it ends with "}" and has members.
        # `%r` of a finite float is float.__repr__, which is what json.dumps writes for it. A
        # Kinesis sequence number is decimal digits: its JSON is itself in quotes.
        if (
            type(arrival) is float
            and arrival - arrival == 0.0
            and sequence_number.isdigit()
            and sequence_number.isascii()
        ):
            return template % (
                payload[:-1],
                *elapsed_seconds,
                sequence_number.encode(),
                partition_key,
                arrival,
            )
        return template.replace(b'"%s","partition_key"', b'%s,"partition_key"').replace(
            b'"approximate_arrival_timestamp":%r', b'"approximate_arrival_timestamp":%s'
        ) % (
            payload[:-1],
            *elapsed_seconds,
            _json_string(sequence_number).encode(),
            partition_key,
            _json_number(arrival).encode(),
        )

    def _new_template(self, shard_id: str, variants: tuple[Variant, ...]) -> bytes:
        if self._template_count >= self._max_entries:
            self._templates.clear()
            self._template_count = 0
        attributions = ",".join(
            f'{{"experiment_id":{_template_text(experiment_id)},'
            f'"variant_id":{_template_text(variant_id)},"time_since_assignment_seconds":%r}}'
            for experiment_id, variant_id in variants
        )
        template = (
            f'%s,"{RESERVED_FIELD}":{{"attributions":[{attributions}],'
            f'"kinesis":{{"shard_id":{_template_text(shard_id)},"sequence_number":"%s",'
            '"partition_key":%s,"approximate_arrival_timestamp":%r},'
            f'"archive_schema_version":{ARCHIVE_SCHEMA_VERSION_JSON}}}}}\n'
        ).encode()
        self._templates.setdefault(shard_id, {})[variants] = template
        self._template_count += 1
        return template

    def _encoded_partition_key(self, partition_key: str) -> bytes:
        if len(self._partition_keys) >= self._max_entries:
            self._partition_keys.clear()
        encoded = self._partition_keys[partition_key] = _json_string(partition_key).encode()
        return encoded


def _template_text(text: str) -> str:
    """A str as JSON, escaped for a %-format template."""
    return _json_string(text).replace("%", "%%")


ARCHIVE_SCHEMA_VERSION_JSON = json.dumps(ARCHIVE_SCHEMA_VERSION)


def archive_line(enriched: EnrichedEvent) -> bytes:
    """The event exactly as received plus a `_pipeline` field with its enrichment and origin.

    The producer's bytes are kept (no re-serialisation: unknown fields, key order and number
    formatting survive); newlines between JSON tokens become spaces so that one event is one
    line. The `_pipeline` object is what `json.dumps(..., separators=(",", ":"),
    ensure_ascii=False)` would write, built from pre-encoded pieces.
    """
    return ArchiveLineWriter().line(enriched)


def build_archive_objects(
    events: Iterable[EnrichedEvent], limits: ArchiveLimits
) -> list[ArchiveObject]:
    """Group events by (hour of event time, shard) into objects within the size limits."""
    accumulator = ArchiveAccumulator(limits)
    accumulator.add(events)
    return accumulator.objects()


_Member = tuple[int, bytes, str]
"""(sequence, archive line, event id) of one event."""


class ArchiveAccumulator:
    """`build_archive_objects` in installments: each event is turned into its archive line
    when added (a batch processed in chunks keeps the lines, not its events), and `objects()`
    is what `build_archive_objects` of all the events added, in the order added, returns."""

    __slots__ = ("_groups", "_limits", "_writer")

    def __init__(self, limits: ArchiveLimits, writer: ArchiveLineWriter | None = None) -> None:
        self._limits = limits
        self._writer = writer or ArchiveLineWriter()
        self._groups: dict[tuple[int, str], list[_Member]] = {}

    def add(self, events: Iterable[EnrichedEvent]) -> None:
        events = list(events)
        self.add_columns(
            AcceptedColumns.of(enriched.accepted for enriched in events),
            Matches(
                [
                    tuple([(a.experiment_id, a.variant_id) for a in enriched.attributions])
                    for enriched in events
                ],
                [
                    tuple([a.time_since_assignment_seconds for a in enriched.attributions])
                    for enriched in events
                ],
            ),
        )

    def add_columns(self, events: AcceptedColumns, matches: Matches) -> None:
        """`add` for the pipeline's columns: the events and their attributions (see
        `domain.attribution.match_columns`)."""
        groups = self._groups
        line_of = self._writer.matched_line
        for event, payload, coordinates, event_us, variants, elapsed in zip(
            events.events,
            events.payloads,
            events.coordinates,
            events.times_us,
            matches.variants,
            matches.elapsed_seconds,
            strict=True,
        ):
            key = (event_us - event_us % _HOUR_US, coordinates.shard_id)
            member = (
                coordinates.sequence,
                line_of(payload, coordinates, variants, elapsed),
                event.event_id,
            )
            group = groups.get(key)
            if group is None:
                groups[key] = [member]
            else:
                group.append(member)

    def restrict(self, keep: Callable[[str, int], bool]) -> None:
        """Forget the events of which `keep(shard_id, sequence)` is false."""
        for key in list(self._groups):
            shard_id = key[1]
            kept = [member for member in self._groups[key] if keep(shard_id, member[0])]
            if kept:
                self._groups[key] = kept
            else:
                del self._groups[key]

    def objects(self) -> list[ArchiveObject]:
        """The objects, in (partition, shard) order; the lines are handed over (this empties
        the accumulator), so that each line is held once, in its object's body."""
        limits = self._limits
        groups = self._groups
        self._groups = {}
        partitions = {hour_us: _partition_of_hour(hour_us) for hour_us, _ in groups}
        objects: list[ArchiveObject] = []
        for hour_us, shard_id in sorted(groups, key=lambda key: (partitions[key[0]], key[1])):
            partition = partitions[hour_us]
            members = groups.pop((hour_us, shard_id))
            members.sort(key=_by_sequence)
            lines: list[bytes] = []
            ids: list[str] = []
            first = last = 0
            size = 0
            for sequence, line, event_id in members:
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
                        )
                    )
                    lines, ids, size = [], [], 0
                if not lines:
                    first = sequence
                last = sequence
                lines.append(line)
                ids.append(event_id)
                size += len(line)
            del members
            if lines:
                objects.append(
                    ArchiveObject(
                        partition, shard_id, first, last, len(lines), b"".join(lines), tuple(ids)
                    )
                )
        return objects


def _by_sequence(member: _Member) -> int:
    return member[0]


class ArchiveLineError(ValueError):
    """An archive line without the pipeline's `_pipeline` member: not written by this pipeline."""


PIPELINE_MEMBER = b',"' + RESERVED_FIELD.encode() + b'":'


def record_from_archive_line(line: bytes) -> RawRecord:
    """The inverse of `archive_line`: the producer's event exactly as received (without the
    `_pipeline` member the archive appended) under its original Kinesis coordinates."""
    body = line.rstrip()
    cut = body.rfind(PIPELINE_MEMBER)
    if cut < 0 or not body.endswith(b"}"):
        raise ArchiveLineError(f"no {RESERVED_FIELD!r} member")
    try:
        origin = json.loads(body[cut + len(PIPELINE_MEMBER) : -1])
        kinesis = origin["kinesis"]
        coordinates = KinesisCoordinates(
            str(kinesis["shard_id"]),
            str(kinesis["sequence_number"]),
            str(kinesis["partition_key"]),
            float(kinesis["approximate_arrival_timestamp"]),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise ArchiveLineError(f"unreadable {RESERVED_FIELD!r} member: {error}") from None
    payload = body[:cut] + b"}"
    return RawRecord(coordinates, base64.b64encode(payload).decode("ascii"))
