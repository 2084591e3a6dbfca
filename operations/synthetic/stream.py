"""A seeded stream for the exactly-once proof: valid events, exact duplicates and bad records.

The experiments and assignments come from the reference workload's generator; the events are
spread over two days (some with non-UTC offsets), some name an experiment the user is not in,
some come from users without assignments, purchases carry values with cents. An exact duplicate
re-sends an earlier valid record unchanged a few records later under the same partition key, so
it lands on the same shard after its original. Every kind of bad record of the catalogue is
mixed in. The generator keeps its own list of what it sent, for computing expectations without
the pipeline's code.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import TYPE_CHECKING

from domain.experiments import Assignment, Experiment
from operations.aws.kinesis_producer import OutgoingRecord, PlacedRecord, put_records
from operations.synthetic.bad_records import BadRecord, stream_safe_catalogue
from operations.synthetic.workload import WorkloadSpec, generate

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient


DEFAULT_STREAM_START = datetime(2026, 11, 18, 0, 0, tzinfo=UTC)

_EVENT_TYPES = (("exposure", 0.4), ("click", 0.3), ("conversion", 0.2), ("purchase", 0.1))
_OFFSETS = (UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30)))


class EntryKind(StrEnum):
    VALID = "valid"
    DUPLICATE = "duplicate"
    BAD = "bad"


@dataclass(frozen=True, slots=True)
class StreamSpec:
    valid_events: int = 3_000
    experiments: int = 4
    users: int = 400
    start: datetime = DEFAULT_STREAM_START
    span: timedelta = timedelta(days=2)
    duplicate_fraction: float = 0.03
    bad_record_copies: int = 1
    """How many times each stream-safe kind of bad record is sent."""
    seed: int = 1
    time_ordered: bool = False
    """Events advance through the span in stream order (with jitter), as a live stream's do, so
    a batch touches a few hours rather than all of them; otherwise times are drawn at random."""


@dataclass(frozen=True, slots=True)
class StreamEntry:
    kind: EntryKind
    payload: bytes
    partition_key: str
    bad: BadRecord | None = None
    duplicate_of: int | None = None
    """For a duplicate: the index of the entry it repeats."""


PutResult = PlacedRecord
"""Where one entry of the stream landed."""


@dataclass(slots=True)
class GeneratedStream:
    spec: StreamSpec
    experiments: list[Experiment]
    assignments: list[Assignment]
    entries: list[StreamEntry] = field(default_factory=list)

    def of_kind(self, kind: EntryKind) -> Iterator[tuple[int, StreamEntry]]:
        return ((i, e) for i, e in enumerate(self.entries) if e.kind is kind)

    def put_into(self, kinesis: KinesisClient, stream_name: str) -> list[PutResult]:
        """PutRecords in order, within the call limits; refused entries are put again."""
        records = [OutgoingRecord(e.payload, e.partition_key) for e in self.entries]
        return put_records(kinesis, stream_name, records).placed


def generate_stream(spec: StreamSpec) -> GeneratedStream:
    rng = random.Random(spec.seed)
    workload = generate(
        WorkloadSpec(
            events=0,
            experiments=spec.experiments,
            users=spec.users,
            experiments_per_user=max(1.0, spec.experiments * 0.6),
            start=spec.start,
            seed=spec.seed,
        )
    )
    stream = GeneratedStream(spec, workload.experiments, workload.assignments)
    by_user: dict[str, list[Assignment]] = {}
    for assignment in workload.assignments:
        by_user.setdefault(assignment.user_id, []).append(assignment)
    # A few users beyond the assigned population send events that count nowhere.
    user_ids = [f"user-{i:06d}" for i in range(spec.users + max(1, spec.users // 20))]
    names = [name for name, _ in _EVENT_TYPES]
    weights = [weight for _, weight in _EVENT_TYPES]
    experiment_ids = [e.experiment_id for e in workload.experiments]

    valid: list[StreamEntry] = []
    for index in range(spec.valid_events):
        user_id = rng.choice(user_ids)
        event_type = rng.choices(names, weights)[0]
        share = rng.random()
        if spec.time_ordered:
            share = (index + share) / spec.valid_events
        moment = spec.start + timedelta(seconds=share * spec.span.total_seconds())
        offset = rng.choice(_OFFSETS)
        event: dict[str, object] = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "event_type": event_type,
            "user_id": user_id,
            "timestamp": moment.astimezone(offset).isoformat(timespec="milliseconds"),
        }
        roll = rng.random()
        assigned = by_user.get(user_id)
        if roll < 0.2 and assigned:
            chosen = rng.choice(assigned)
            event["experiment_id"] = chosen.experiment_id
            event["variant_id"] = chosen.variant_id
        elif roll < 0.25:
            event["experiment_id"] = rng.choice(experiment_ids)
        if event_type == "purchase":
            event["value"] = round(rng.uniform(0.5, 400), 2)
        elif rng.random() < 0.05:
            event["value"] = rng.choice((0, 1, 2.5, -3.75))
        if rng.random() < 0.3:
            event["properties"] = {"page": rng.choice(("/", "/cart", "/checkout")), "n": [1, 2]}
        payload = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        valid.append(StreamEntry(EntryKind.VALID, payload, user_id))

    entries: list[StreamEntry] = []
    for entry in valid:
        entries.append(entry)
        if rng.random() < spec.duplicate_fraction:
            # Re-send a recent valid record: the same bytes, the same partition key.
            recent = list(range(max(0, len(entries) - 30), len(entries)))
            original = rng.choice([i for i in recent if entries[i].kind is EntryKind.VALID])
            source = entries[original]
            entries.append(
                StreamEntry(
                    EntryKind.DUPLICATE, source.payload, source.partition_key, duplicate_of=original
                )
            )
    bad_kinds = stream_safe_catalogue(spec.start + spec.span / 2)
    for copy in range(spec.bad_record_copies):
        for bad in bad_kinds:
            position = rng.randrange(len(entries) + 1)
            key = f"bad-{bad.kind}-{copy}"
            entries.insert(position, StreamEntry(EntryKind.BAD, bad.payload, key, bad=bad))
    # Inserting bad records shifted indices: renumber the duplicates' originals.
    index_of = {id(entry): i for i, entry in enumerate(entries)}
    stream.entries = [
        entry
        if entry.duplicate_of is None
        else StreamEntry(
            entry.kind,
            entry.payload,
            entry.partition_key,
            duplicate_of=_find_original(entries, index_of[id(entry)], entry.payload),
        )
        for entry in entries
    ]
    return stream


def _find_original(entries: Sequence[StreamEntry], index: int, payload: bytes) -> int:
    for earlier in range(index - 1, -1, -1):
        if entries[earlier].kind is EntryKind.VALID and entries[earlier].payload == payload:
            return earlier
    raise ValueError(f"duplicate at {index} has no original")
