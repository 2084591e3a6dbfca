"""The archive's shape: JSON Lines grouped by the hour of event time, bounded in size."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring

from domain.attribution import Matches, VariantKey
from domain.events import RESERVED_FIELD, AcceptedColumns
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
    sequences: tuple[int, ...]
    """The sequence number of each line's record, in line order: the records a store's refusal
    of this object concerns."""

    @property
    def name_stem(self) -> str:
        """Unique per shard and sequence range; the adapter appends a content digest."""
        return (
            f"{self.partition}{self.shard_id}-{padded_sequence(self.first_sequence)}"
            f"-{padded_sequence(self.last_sequence)}"
        )


_json_string: Callable[[str], str] = encode_basestring
"""A str as JSON, as json.dumps(..., ensure_ascii=False) writes it (the C encoder when built)."""


def _json_number(number: float) -> str:
    # json.dumps writes a finite float as float.__repr__; anything else goes through json.dumps.
    if type(number) is float and number - number == 0.0:
        return float.__repr__(number)
    return json.dumps(number)


class ArchiveLineWriter:
    """What archive lines are built from, kept across batches: one bytes template per (shard,
    attributed variants), holding the JSON of everything but the event, its elapsed times and
    its record's coordinates, and the JSON of recent arrival times (the records of one put
    share theirs). Each cache holds at most `max_entries` entries (a template is ~600 bytes).

    Its caches are keyed by value (shard id, variants, arrival time), so its lines never depend
    on which objects it is handed: identity only saves work (a shard's templates are looked up
    again only when the shard id object changes, and the variants of one user's events are one
    tuple, see `Matches`). Kept across batches, it is built once by the composition root and
    injected into the use case (`BatchProcessor`, `ReplayProcessor`); one writer serves one
    processor at a time (it is not thread-safe)."""

    __slots__ = ("_arrivals", "_max_entries", "_template_count", "_templates")

    def __init__(self, max_entries: int = 10_000) -> None:
        self._max_entries = max_entries
        self._templates: dict[str, dict[tuple[VariantKey, ...], bytes]] = {}
        self._template_count = 0
        self._arrivals: dict[float, bytes] = {}

    def templates_of_shard(self, shard_id: str) -> dict[tuple[VariantKey, ...], bytes]:
        if self._template_count >= self._max_entries:
            self._templates.clear()
            self._template_count = 0
        templates = self._templates.get(shard_id)
        if templates is None:
            templates = self._templates[shard_id] = {}
        return templates

    def new_template(self, shard_id: str, variants: tuple[VariantKey, ...]) -> bytes:
        """The line of an event of `shard_id` attributed to `variants` is this template
        formatted with the event's JSON without its closing brace, the elapsed seconds of each
        attribution (`%.6f`: to the microsecond), the JSON of the sequence number and of the
        partition key without their quotes, and the JSON of the arrival time."""
        attributions = ",".join(
            f'{{"experiment_id":{_template_text(experiment_id)},'
            f'"variant_id":{_template_text(variant_id)},"time_since_assignment_seconds":%.6f}}'
            for experiment_id, variant_id in variants
        )
        template = (
            f'%s,"{RESERVED_FIELD}":{{"attributions":[{attributions}],'
            f'"kinesis":{{"shard_id":{_template_text(shard_id)},"sequence_number":"%s",'
            '"partition_key":"%s","approximate_arrival_timestamp":%s},'
            f'"archive_schema_version":{ARCHIVE_SCHEMA_VERSION_JSON}}}}}\n'
        ).encode()
        self.templates_of_shard(shard_id)[variants] = template
        self._template_count += 1
        return template

    def lines(self, events: AcceptedColumns, matches: Matches) -> list[bytes]:
        """Each event's archive line: the event exactly as received plus a `_pipeline` field
        with its enrichment and origin.

        The producer's bytes are kept (no re-serialisation: unknown fields, key order and
        number formatting survive); newlines between JSON tokens become spaces so that one
        event is one line. The `_pipeline` object is what `json.dumps(..., separators=(",",
        ":"), ensure_ascii=False)` would write, except that elapsed times are written with six
        decimals (to the microsecond); it is built from a template (see `new_template`)."""
        coordinates = events.coordinates
        lines: list[bytes] = []
        add = lines.append
        shard_id = None
        templates: dict[tuple[VariantKey, ...], bytes] = {}
        for payload, where, variants, elapsed, sequence, partition_key, arrival in zip(
            events.payloads,
            coordinates,
            matches.variants,
            matches.elapsed_seconds,
            _sequence_numbers_json(coordinates),
            _partition_keys_json(coordinates),
            self._arrivals_json(coordinates),
            strict=True,
        ):
            if where.shard_id is not shard_id:  # one shard per Lambda batch
                shard_id = where.shard_id
                templates = self.templates_of_shard(shard_id)
            template = templates.get(variants)
            if template is None:
                template = self.new_template(shard_id, variants)
            # A validated JSON object ends with "}"; line breaks can only be whitespace.
            if payload[-1] != 125 or b"\n" in payload or b"\r" in payload:
                payload = _one_line(payload)
            add(template % (payload[:-1], *elapsed, sequence, partition_key, arrival))
        return lines

    def _arrivals_json(self, coordinates: Sequence[KinesisCoordinates]) -> list[bytes]:
        """The JSON of each record's arrival time; the records of one put share theirs, so
        each is written once and kept."""
        arrivals = self.arrivals
        written: list[bytes] = []
        for where in coordinates:
            arrival_time = where.approximate_arrival_timestamp
            # Only positive floats are cached: no other value equals one of them (an int may
            # equal a float, -0.0 equals 0.0, and NaN nothing) while writing otherwise.
            if type(arrival_time) is float and arrival_time > 0.0:
                arrival = arrivals.get(arrival_time)
                if arrival is None:
                    arrival = arrivals[arrival_time] = _json_number(arrival_time).encode()
            else:
                arrival = _json_number(arrival_time).encode()
            written.append(arrival)
        return written

    @property
    def arrivals(self) -> dict[float, bytes]:
        if len(self._arrivals) >= self._max_entries:
            self._arrivals.clear()
        return self._arrivals


def _json_content(text: str) -> bytes:
    """A str as JSON, without its quotes (skipped for the usual sequence numbers and partition
    keys, which need no escaping)."""
    return _json_string(text)[1:-1].encode()


def _sequence_numbers_json(coordinates: Sequence[KinesisCoordinates]) -> list[bytes]:
    """Each record's sequence number as JSON without its quotes; a Kinesis one is decimal
    digits, which need no escaping."""
    return [
        number.encode()
        if (number := where.sequence_number).isdigit() and number.isascii()
        else _json_content(number)
        for where in coordinates
    ]


def _partition_keys_json(coordinates: Sequence[KinesisCoordinates]) -> list[bytes]:
    """Each record's partition key as JSON without its quotes; the usual one needs no
    escaping."""
    return [
        key.encode()
        if (key := where.partition_key).isascii()
        and key.isprintable()
        and '"' not in key
        and "\\" not in key
        else _json_content(key)
        for where in coordinates
    ]


def _one_line(payload: bytes) -> bytes:
    """The payload without trailing whitespace, its line breaks (between JSON tokens: a valid
    JSON string holds none) turned into spaces."""
    payload = payload.rstrip()
    if b"\n" in payload or b"\r" in payload:
        payload = payload.replace(b"\r", b" ").replace(b"\n", b" ")
    return payload


def _template_text(text: str) -> str:
    """A str as JSON, escaped for a %-format template."""
    return _json_string(text).replace("%", "%%")


ARCHIVE_SCHEMA_VERSION_JSON = json.dumps(ARCHIVE_SCHEMA_VERSION)


class ArchiveLineError(ValueError):
    """An archive line without the pipeline's `_pipeline` member: not written by this pipeline."""


PIPELINE_MEMBER = b',"' + RESERVED_FIELD.encode() + b'":'


@dataclass(frozen=True, slots=True)
class ArchivedRecord:
    """An archive line read back: the producer's record under its original Kinesis coordinates,
    and what the pipeline counted it for when it archived it (`_pipeline.attributions`, in
    their order; none for an event that was unattributed)."""

    record: RawRecord
    variants: tuple[VariantKey, ...]
    elapsed_seconds: tuple[float, ...]
    """The time since each of those assignments, in seconds, as archived."""


def record_from_archive_line(line: bytes) -> RawRecord:
    """The inverse of `ArchiveLineWriter.lines`: the producer's event exactly as received (without the
    `_pipeline` member the archive appended) under its original Kinesis coordinates."""
    return _read_archive_line(line)[0]


def archived_record_from_line(line: bytes) -> ArchivedRecord:
    """The record of an archive line (see `record_from_archive_line`) with the attributions
    the archive holds for it. A line whose attributions cannot be read is as unreadable as one
    without coordinates: every line this pipeline writes has both."""
    record, origin = _read_archive_line(line)
    try:
        attributions = origin["attributions"]
        if not isinstance(attributions, list):
            raise TypeError(f"attributions is {type(attributions).__name__}, not a list")
        read = [_attribution(attribution) for attribution in attributions]
    except (ValueError, KeyError, TypeError) as error:
        raise ArchiveLineError(f"unreadable {RESERVED_FIELD!r} member: {error!r}") from None
    return ArchivedRecord(
        record, tuple([variant for variant, _ in read]), tuple([elapsed for _, elapsed in read])
    )


def _attribution(attribution: object) -> tuple[VariantKey, float]:
    if not isinstance(attribution, dict):
        raise TypeError(f"an attribution is {type(attribution).__name__}, not an object")
    experiment_id, variant_id = attribution["experiment_id"], attribution["variant_id"]
    if not isinstance(experiment_id, str) or not isinstance(variant_id, str):
        raise TypeError("an attribution's experiment_id or variant_id is not a string")
    variant = (experiment_id, variant_id)
    return variant, float(attribution["time_since_assignment_seconds"])


def _read_archive_line(line: bytes) -> tuple[RawRecord, dict[str, object]]:
    """The line's record and its `_pipeline` member, parsed."""
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
    return RawRecord(coordinates, base64.b64encode(payload).decode("ascii")), origin
