"""The production kernels agree with the straightforward reference on every input."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from application.accumulators import ArchiveAccumulator, MetricAccumulator
from domain.archiving import ArchiveLimits
from domain.attribution import CandidateMemo
from domain.decoding import decode_record
from domain.events import AcceptedEvent, EventLimits, ExperimentEvent
from domain.experiments import Assignment, Experiment, ExperimentStatus, Variant
from domain.records import KinesisCoordinates
from domain.rejections import DeadLetter
from domain.time import epoch_microseconds
from tests.enriched_events import (
    Attribution,
    EnrichedEvent,
    aggregate,
    archive_line,
    as_columns,
    attribute_batch,
    build_archive_objects,
)
from tests.factories import NOW, record_of
from tests.reference_pipeline import (
    reference_aggregate,
    reference_archive_line,
    reference_attribute,
    reference_build_archive_objects,
    reference_json_rules,
    reference_key_rules,
)

EXPERIMENT_IDS = ("exp-a", "exp-b", 'exp-"c"', "éxp-ü")
USERS = ("u-1", "u-2", "u-3", "ユーザー")
SHARDS = ("shardId-000000000000", "shardId-000000000001")
ZONES = (UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30)))

moments = st.builds(
    lambda minutes, micros, zone: (
        NOW - timedelta(minutes=minutes, microseconds=micros)
    ).astimezone(zone),
    st.integers(0, 3 * 24 * 60),
    st.integers(0, 999_999),
    st.sampled_from(ZONES),
)


def event_of(
    sequence: int, user_id: str, moment: datetime, shard_id: str, **fields: object
) -> AcceptedEvent:
    body: dict[str, object] = {
        "event_id": f"e-{sequence}",
        "event_type": fields.pop("event_type", "click"),
        "user_id": user_id,
        "timestamp": moment.isoformat(),
        **fields,
    }
    payload = json.dumps(body, ensure_ascii=False).encode()
    event = ExperimentEvent.model_validate_json(payload)
    coordinates = KinesisCoordinates(
        shard_id, str(sequence), f"pk-{user_id}", NOW.timestamp() + sequence / 1000
    )
    return AcceptedEvent(event, payload, coordinates)


@st.composite
def accepted_events(draw: st.DrawFn) -> list[AcceptedEvent]:
    count = draw(st.integers(0, 30))
    sequences = draw(st.permutations(range(1, count + 1)))
    events = []
    for sequence in sequences:
        fields: dict[str, object] = {
            "event_type": draw(st.sampled_from(["exposure", "click", "purchase"]))
        }
        if draw(st.booleans()):
            fields["value"] = draw(
                st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.integers(-5, 5))
            )
        if draw(st.integers(0, 3)) == 0:
            fields["experiment_id"] = draw(st.sampled_from(EXPERIMENT_IDS))
        events.append(
            event_of(
                sequence,
                draw(st.sampled_from(USERS)),
                draw(moments),
                draw(st.sampled_from(SHARDS)),
                **fields,
            )
        )
    return events


@st.composite
def reference_data(
    draw: st.DrawFn,
) -> tuple[dict[str, tuple[Assignment, ...]], dict[str, Experiment]]:
    experiments = {
        experiment_id: Experiment(
            experiment_id=experiment_id,
            name=experiment_id,
            status=draw(st.sampled_from([ExperimentStatus.RUNNING, ExperimentStatus.PAUSED])),
            variants=(Variant(variant_id="control"),),
        )
        for experiment_id in EXPERIMENT_IDS
        if draw(st.integers(0, 4))
    }
    assignments = {
        user_id: tuple(
            Assignment(
                user_id=user_id,
                experiment_id=experiment_id,
                variant_id=draw(st.sampled_from(["control", "treatment", 'tré"atment'])),
                assigned_at=draw(moments),
            )
            for experiment_id in draw(st.permutations(EXPERIMENT_IDS))
            if draw(st.booleans())
        )
        for user_id in USERS
        if draw(st.integers(0, 5))
    }
    return assignments, experiments


@settings(max_examples=100, deadline=None)
@given(events=accepted_events(), data=reference_data())
def test_batch_attribution_equals_attributing_each_event(
    events: list[AcceptedEvent],
    data: tuple[dict[str, tuple[Assignment, ...]], dict[str, Experiment]],
) -> None:
    assignments, experiments = data
    expected = [
        reference_attribute(e, assignments.get(e.event.user_id, ()), experiments) for e in events
    ]
    memo = CandidateMemo()
    assert attribute_batch(events, assignments, experiments) == expected
    assert attribute_batch(events, assignments, experiments, memo) == expected
    assert attribute_batch(events, assignments, experiments, memo) == expected
    for batch_result, single in zip(
        attribute_batch(events, assignments, experiments, memo), expected, strict=True
    ):
        assert batch_result.event_time_us == single.event_time_us
        assert [a.time_since_assignment_seconds for a in batch_result.attributions] == [
            a.time_since_assignment_seconds for a in single.attributions
        ]


def test_the_candidate_memo_notices_an_experiment_that_stopped() -> None:
    moment = NOW - timedelta(hours=1)
    events = [event_of(1, "u-1", moment, SHARDS[0])]
    running = Experiment(experiment_id="exp-a", name="a", status=ExperimentStatus.RUNNING)
    paused = running.model_copy(update={"status": ExperimentStatus.PAUSED})
    assignments = {
        "u-1": (
            Assignment(
                user_id="u-1",
                experiment_id="exp-a",
                variant_id="control",
                assigned_at=NOW - timedelta(days=1),
            ),
        )
    }
    memo = CandidateMemo()
    first = attribute_batch(events, assignments, {"exp-a": running}, memo)
    later = attribute_batch(events, assignments, {"exp-a": paused}, memo)
    assert [e.attributions for e in first] == [(Attribution("exp-a", "control", 82_800.0),)]
    assert [e.attributions for e in later] == [()]


@settings(max_examples=100, deadline=None)
@given(events=accepted_events(), data=reference_data())
def test_aggregation_equals_the_reference(
    events: list[AcceptedEvent],
    data: tuple[dict[str, tuple[Assignment, ...]], dict[str, Experiment]],
) -> None:
    assignments, experiments = data
    enriched = attribute_batch(events, assignments, experiments)
    assert aggregate(enriched) == reference_aggregate(enriched)
    in_sequence_order = sorted(enriched, key=lambda e: e.accepted.sequence)
    assert aggregate(in_sequence_order) == reference_aggregate(in_sequence_order)


@settings(max_examples=100, deadline=None)
@given(
    events=accepted_events(),
    data=reference_data(),
    max_events=st.integers(1, 8),
    max_bytes=st.integers(200, 3_000),
)
def test_archive_objects_equal_the_reference_and_every_line_is_json(
    events: list[AcceptedEvent],
    data: tuple[dict[str, tuple[Assignment, ...]], dict[str, Experiment]],
    max_events: int,
    max_bytes: int,
) -> None:
    assignments, experiments = data
    enriched = attribute_batch(events, assignments, experiments)
    limits = ArchiveLimits(max_events_per_object=max_events, max_bytes_per_object=max_bytes)
    objects = build_archive_objects(enriched, limits)
    assert objects == reference_build_archive_objects(enriched, limits)
    for item in objects:
        for line in item.body.splitlines():
            assert "_pipeline" in json.loads(line)


@given(
    partition_key=st.text(max_size=20),
    shard_id=st.text(min_size=1, max_size=20),
    sequence_number=st.integers(0, 10**60).map(str),
    arrival=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(0, 2**40)),
    elapsed=st.floats(0, 1e9),
    experiment_id=st.text(min_size=1, max_size=10),
    payload_spacing=st.sampled_from(["", " ", "\n", "\r\n  "]),
)
def test_an_archive_line_is_byte_for_byte_the_reference(
    partition_key: str,
    shard_id: str,
    sequence_number: str,
    arrival: float,
    elapsed: float,
    experiment_id: str,
    payload_spacing: str,
) -> None:
    body = {"event_id": "e", "event_type": "click", "user_id": "u", "timestamp": NOW.isoformat()}
    payload = json.dumps(body, indent=1 if payload_spacing else None).encode()
    payload += payload_spacing.encode()
    accepted = AcceptedEvent(
        ExperimentEvent.model_validate_json(payload),
        payload,
        KinesisCoordinates(shard_id, sequence_number, partition_key, arrival),
    )
    enriched = EnrichedEvent(accepted, (Attribution(experiment_id, "control", elapsed),))
    try:
        expected = reference_archive_line(enriched)
    except UnicodeEncodeError:
        expected = None
    if expected is None:
        return
    assert archive_line(enriched) == expected


@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(
        st.tuples(
            st.sampled_from(["user-1", 'p"k', "p\\k", "ü", "a b", "\x01", "", "50%"]),
            st.sampled_from(["1", "00042", "١٢", " 7 ", "1_000", "49590338271490256608"]),
            st.sampled_from(
                [0.0, -0.0, 5, 5.0, 1.5, float("nan"), float("inf"), 1_795_168_800.123]
            ),
            st.sampled_from([(), (("exp-%s", "control"),), (("a", "b"), ("c", "d%"))]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_the_lines_of_one_batch_share_their_caches_and_are_byte_for_byte_the_reference(
    records: list[tuple[str, str, float, tuple[tuple[str, str], ...]]],
) -> None:
    events = []
    for index, (partition_key, sequence_number, arrival, variants) in enumerate(records):
        body = {"event_id": f"e{index}", "event_type": "click", "user_id": "u"}
        payload = json.dumps({**body, "timestamp": NOW.isoformat()}).encode()
        accepted = AcceptedEvent(
            ExperimentEvent.model_validate_json(payload),
            payload,
            KinesisCoordinates("shard-1", sequence_number, partition_key, arrival),
        )
        attributions = tuple(Attribution(e, v, 1.5 + index) for e, v in variants)
        events.append(EnrichedEvent(accepted, attributions))
    limits = ArchiveLimits(max_events_per_object=5)
    assert build_archive_objects(events, limits) == reference_build_archive_objects(events, limits)


def test_epoch_microseconds_are_exact_for_any_offset() -> None:
    moment = datetime(2026, 11, 20, 10, 0, 0, 123_457, tzinfo=timezone(timedelta(hours=5)))
    assert epoch_microseconds(moment) == 1_795_150_800_123_457


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(
    properties=st.dictionaries(st.text(max_size=4), json_values, max_size=4),
    extra=json_values,
)
def test_the_json_rules_reject_exactly_what_the_full_walk_rejects(
    properties: dict[str, object], extra: object
) -> None:
    limits = EventLimits()
    body = {
        "event_id": "e",
        "event_type": "click",
        "user_id": "u",
        "timestamp": "2026-11-20T11:00:00Z",
        "properties": properties,
        "extra": extra,
    }
    outcome = decode_record(record_of(json.dumps(body).encode()), limits, NOW)
    parsed = ExperimentEvent.model_validate_json(json.dumps(body))
    expected = reference_key_rules(body) or reference_json_rules(
        parsed.model_extra or {}, parsed.properties, limits
    )
    if expected is None:
        assert isinstance(outcome, AcceptedEvent)
    else:
        assert isinstance(outcome, DeadLetter)
        assert (outcome.reason, outcome.detail) == expected


def kept_by(cuts: dict[str, int]) -> Callable[[str, int], bool]:
    def keep(shard_id: str, sequence: int) -> bool:
        cut = cuts.get(shard_id)
        return cut is None or sequence < cut

    return keep


@settings(max_examples=100, deadline=None)
@given(
    events=accepted_events(),
    data=reference_data(),
    chunk=st.integers(1, 8),
    cuts=st.dictionaries(st.sampled_from(SHARDS), st.integers(0, 31)),
)
def test_aggregation_in_chunks_and_restricted_equals_the_reference_of_the_kept_events(
    events: list[AcceptedEvent],
    data: tuple[dict[str, tuple[Assignment, ...]], dict[str, Experiment]],
    chunk: int,
    cuts: dict[str, int],
) -> None:
    assignments, experiments = data
    enriched = attribute_batch(events, assignments, experiments)
    accumulator = MetricAccumulator()
    for start in range(0, len(enriched), chunk):
        columns, matches = as_columns(enriched[start : start + chunk])
        accumulator.add_columns(columns, matches.variants)
    keep = kept_by(cuts)
    accumulator.restrict(keep)
    kept = [e for e in enriched if keep(e.accepted.coordinates.shard_id, e.accepted.sequence)]
    assert accumulator.deltas() == reference_aggregate(kept)


@settings(max_examples=100, deadline=None)
@given(
    events=accepted_events(),
    data=reference_data(),
    chunk=st.integers(1, 8),
    max_events=st.integers(1, 8),
    cuts=st.dictionaries(st.sampled_from(SHARDS), st.integers(0, 31)),
)
def test_archive_objects_in_chunks_and_restricted_equal_the_reference_of_the_kept_events(
    events: list[AcceptedEvent],
    data: tuple[dict[str, tuple[Assignment, ...]], dict[str, Experiment]],
    chunk: int,
    max_events: int,
    cuts: dict[str, int],
) -> None:
    assignments, experiments = data
    enriched = attribute_batch(events, assignments, experiments)
    limits = ArchiveLimits(max_events_per_object=max_events, max_bytes_per_object=2_000)
    accumulator = ArchiveAccumulator(limits)
    for start in range(0, len(enriched), chunk):
        accumulator.add_columns(*as_columns(enriched[start : start + chunk]))
    keep = kept_by(cuts)
    accumulator.restrict(keep)
    kept = [e for e in enriched if keep(e.accepted.coordinates.shard_id, e.accepted.sequence)]
    assert accumulator.objects() == reference_build_archive_objects(kept, limits)
