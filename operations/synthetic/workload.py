"""The reference workload: a seeded, realistic stream of experiment events (and a few bad ones).

One generator serves the demo, the benchmark and the tests, so that they all speak of the same
traffic: experiments with 2-3 variants (one is `control`), users assigned to about three
experiments each, exposures 40%, clicks 30%, conversions 20%, purchases 10% (with a value),
timestamps spread over a time span, 0.5% invalid records and 0.5% duplicated event ids.

Two shapes of traffic. The reference one draws a user at random for every event: 20,000 users
over two hours, fewer than one event per user and hour. With `events_per_user_hour` set, the
traffic is user sessions instead: fewer users are active, each sending about that many events an
hour in sessions of `events_per_session` events a few minutes long, in the order they happen.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from domain.experiments import Assignment, Experiment, ExperimentStatus, Variant
from domain.records import KinesisCoordinates, RawRecord

EVENT_TYPES: tuple[tuple[str, float], ...] = (
    ("exposure", 0.40),
    ("click", 0.30),
    ("conversion", 0.20),
    ("purchase", 0.10),
)
DEFAULT_START = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
DEFAULT_SHARD = "shardId-000000000000"


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    events: int = 10_000
    experiments: int = 10
    users: int = 20_000
    experiments_per_user: float = 3.0
    start: datetime = DEFAULT_START
    span: timedelta = timedelta(hours=2)
    invalid_fraction: float = 0.005
    duplicate_fraction: float = 0.005
    seed: int = 7
    events_per_user_hour: float | None = None
    """None: the reference traffic. A number: user sessions, each active user sending about this
    many events an hour (about 20 for an app in use)."""
    events_per_session: int = 10
    session_minutes: float = 10.0


USER_SESSIONS = WorkloadSpec(events_per_user_hour=20.0)
"""The user-session workload beside the reference one: about 20 events per active user and hour."""


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One record to put on the stream: its payload bytes and partition key."""

    data: bytes
    partition_key: str
    valid: bool = True


@dataclass(slots=True)
class Workload:
    spec: WorkloadSpec
    experiments: list[Experiment]
    assignments: list[Assignment]
    entries: list[StreamEntry] = field(default_factory=list)

    def records(
        self, shard_id: str = DEFAULT_SHARD, first_sequence: int = 1, arrival: float | None = None
    ) -> list[RawRecord]:
        """The entries as a Kinesis batch from one shard, with consecutive sequence numbers."""
        arrived = arrival if arrival is not None else self.spec.start.timestamp()
        records = []
        for offset, entry in enumerate(self.entries):
            data = base64.b64encode(entry.data).decode("ascii")
            coordinates = KinesisCoordinates(
                shard_id, str(first_sequence + offset), entry.partition_key, arrived
            )
            records.append(RawRecord(coordinates, data))
        return records


def generate(spec: WorkloadSpec) -> Workload:
    rng = random.Random(spec.seed)
    experiments = _experiments(spec, rng)
    assignments = _assignments(spec, rng, experiments)
    workload = Workload(spec, experiments, assignments)
    by_user: dict[str, list[Assignment]] = {}
    for assignment in assignments:
        by_user.setdefault(assignment.user_id, []).append(assignment)
    user_ids = [f"user-{index:06d}" for index in range(spec.users)]
    names = [name for name, _ in EVENT_TYPES]
    weights = [weight for _, weight in EVENT_TYPES]
    span_seconds = spec.span.total_seconds()
    sent: list[StreamEntry] = []
    sessions = _session_slots(spec, rng, user_ids) if spec.events_per_user_hour else None
    for index in range(spec.events):
        roll = rng.random()
        if roll < spec.invalid_fraction:
            sent.append(_invalid_entry(rng))
            continue
        if roll < spec.invalid_fraction + spec.duplicate_fraction and sent:
            original = sent[-rng.randint(1, min(20, len(sent)))]
            sent.append(original)
            continue
        if sessions is None:
            user_id = rng.choice(user_ids)
            event_type = rng.choices(names, weights)[0]
            moment = spec.start + timedelta(seconds=rng.random() * span_seconds)
            session_id = None
        else:
            user_id, moment, session_id = sessions[index]
            event_type = rng.choices(names, weights)[0]
        event: dict[str, object] = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "event_type": event_type,
            "user_id": user_id,
            "timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "session_id": session_id or f"s-{rng.getrandbits(40):010x}",
            "schema_version": "1",
            "properties": {
                "page": rng.choice(("/home", "/search", "/product", "/cart", "/checkout")),
                "device": rng.choice(("ios", "android", "web")),
                "country": rng.choice(("DE", "US", "FR", "JP", "BR", "IN")),
                "locale": rng.choice(("de-DE", "en-US", "fr-FR", "ja-JP", "pt-BR", "hi-IN")),
                "app_version": f"5.{rng.randint(0, 9)}.{rng.randint(0, 30)}",
            },
        }
        user_assignments = by_user.get(user_id)
        if user_assignments and rng.random() < 0.25:
            chosen = rng.choice(user_assignments)
            event["experiment_id"] = chosen.experiment_id
            event["variant_id"] = chosen.variant_id
        if event_type == "purchase":
            event["value"] = round(rng.uniform(5, 250), 2)
        data = json.dumps(event, separators=(",", ":")).encode()
        sent.append(StreamEntry(data, user_id))
    workload.entries = sent
    return workload


def _session_slots(
    spec: WorkloadSpec, rng: random.Random, user_ids: list[str]
) -> list[tuple[str, datetime, str]]:
    """(user, moment, session id) for every event of a session workload, in time order: the
    active users (as many as the rate per user and hour asks for), each with sessions of
    `events_per_session` events spread over `session_minutes`, starting anywhere in the span."""
    assert spec.events_per_user_hour is not None
    hours = spec.span.total_seconds() / 3_600
    active = max(1, min(len(user_ids), round(spec.events / (spec.events_per_user_hour * hours))))
    users = rng.sample(user_ids, active)
    span_seconds = spec.span.total_seconds()
    session_seconds = min(span_seconds, spec.session_minutes * 60)
    slots: list[tuple[str, datetime, str]] = []
    while len(slots) < spec.events:
        user_id = users[len(slots) // spec.events_per_session % active]
        session_id = f"s-{rng.getrandbits(40):010x}"
        begins = rng.random() * (span_seconds - session_seconds)
        for _ in range(spec.events_per_session):
            offset = begins + rng.random() * session_seconds
            slots.append((user_id, spec.start + timedelta(seconds=offset), session_id))
    slots = slots[: spec.events]
    slots.sort(key=lambda slot: slot[1])
    return slots


def _experiments(spec: WorkloadSpec, rng: random.Random) -> list[Experiment]:
    experiments = []
    for index in range(spec.experiments):
        count = rng.choice((2, 3))
        variants = [Variant(variant_id="control", weight=1.0)]
        variants += [Variant(variant_id=f"treatment-{v}", weight=1.0) for v in range(1, count)]
        experiments.append(
            Experiment(
                experiment_id=f"exp-{index:02d}",
                name=f"Experiment {index:02d}",
                status=ExperimentStatus.RUNNING,
                variants=tuple(variants),
            )
        )
    return experiments


def _assignments(
    spec: WorkloadSpec, rng: random.Random, experiments: list[Experiment]
) -> list[Assignment]:
    if not experiments:
        return []
    probability = min(1.0, spec.experiments_per_user / len(experiments))
    assignments = []
    for index in range(spec.users):
        user_id = f"user-{index:06d}"
        for experiment in experiments:
            if rng.random() >= probability:
                continue
            variant = rng.choice(experiment.variants)
            assigned_at = spec.start - timedelta(seconds=rng.uniform(60, 2 * 86_400))
            assignments.append(
                Assignment(
                    user_id=user_id,
                    experiment_id=experiment.experiment_id,
                    variant_id=variant.variant_id,
                    assigned_at=assigned_at,
                )
            )
    return assignments


_INVALID_PAYLOADS: tuple[bytes, ...] = (
    b'{"event_id": "x", "event_type": "click"',
    b'{"event_type": "click", "user_id": "u", "timestamp": "2026-11-20T10:00:00Z"}',
    b'{"event_id": "n1", "event_type": "click", "user_id": "u", "timestamp": "2026-11-20T10:00:00"}',
    b'{"event_id": "n2", "event_type": "Click!", "user_id": "u", "timestamp": "2026-11-20T10:00:00Z"}',
    b"[1, 2, 3]",
    b"\xff\xfe not utf-8",
)


def _invalid_entry(rng: random.Random) -> StreamEntry:
    payload = rng.choice(_INVALID_PAYLOADS)
    return StreamEntry(payload, f"bad-{rng.getrandbits(32):08x}", valid=False)
