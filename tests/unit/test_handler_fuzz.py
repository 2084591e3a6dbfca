"""The Lambda handler fuzzed (hypothesis) over the limit-enforcing in-memory back end.

Batches mix arbitrary bytes, arbitrary JSON, event-shaped objects with hostile values, and every
kind of the bad-record catalogue. Whatever comes: no exception escapes the handler, every record
ends in exactly one outcome (archived as counted, dropped as a duplicate, or dead-lettered with a
reason; with no deadline and no fault nothing is reported for redelivery), and delivering the
batch again changes no counter, no archived record and no dead-lettered record.

The default run is small and derandomised (CI is deterministic); `FUZZ_EXAMPLES=2000` runs more.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import event as event_kind
from hypothesis import strategies as st

from domain.archiving import record_from_archive_line
from domain.metrics import Granularity
from domain.rejections import RejectionReason
from entrypoints import lambda_handler
from operations.synthetic.bad_records import bad_record_catalogue
from tests.containers import MemoryBackEnd
from tests.factories import assignment, experiment
from tests.lambda_support import fresh_context

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
NOW = datetime.now(UTC).replace(microsecond=0)
USERS = [f"user-{n}" for n in range(4)]
CATALOGUE = [record.data for record in bad_record_catalogue(NOW)]


def encoded(payload: bytes) -> str:
    return base64.b64encode(payload).decode("ascii")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)

timestamps = st.one_of(
    st.integers(-48, 1).map(lambda h: (NOW + timedelta(hours=h)).isoformat()),
    st.sampled_from(["0", "1795168800", "0001-01-01T00:00:00+14:00", "2026-13-40T00:00:00Z", ""]),
    st.datetimes(timezones=st.just(UTC)).map(lambda moment: moment.isoformat()),
)

values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e200, 1e-200, 5e125, 1e25, 0.001, -3.5, 19.99]),
    st.integers(-(10**40), 10**40),
)

event_like = st.fixed_dictionaries(
    {
        "event_id": st.sampled_from(["e1", "e2", "e3", "e4"]) | st.text(max_size=300),
        "event_type": st.sampled_from(["exposure", "click", "purchase", "Exposure", ""]),
        "user_id": st.sampled_from(USERS) | st.text(max_size=70),
        "timestamp": timestamps,
    },
    optional={
        "value": values,
        "experiment_id": st.sampled_from(["exp-1", "exp-unknown"]),
        "properties": st.dictionaries(st.text(max_size=8), json_values, max_size=3),
        "_pipeline": json_values,
    },
)

valid_event = st.fixed_dictionaries(
    {
        "event_id": st.sampled_from(["v1", "v2", "v3", "v4", "v5", "v6"]),
        "event_type": st.sampled_from(["exposure", "click", "purchase"]),
        "user_id": st.sampled_from(USERS),
        "timestamp": st.integers(-48, 0).map(lambda h: (NOW + timedelta(hours=h)).isoformat()),
    },
    optional={"value": st.sampled_from([1, 19.99, 0.001, 123456.78])},
)

record_data = st.one_of(
    valid_event.map(lambda event: encoded(json.dumps(event).encode())),
    valid_event.map(lambda event: encoded(json.dumps(event).encode())),
    st.binary(max_size=64).map(encoded),
    json_values.map(lambda value: encoded(json.dumps(value).encode())),
    event_like.map(lambda event: encoded(json.dumps(event).encode())),
    st.sampled_from(CATALOGUE),
    st.text(max_size=16),  # not base64 at all
)


def kinesis_event(data: list[str]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "fuzz",
                    "sequenceNumber": str(sequence),
                    "data": item,
                    "approximateArrivalTimestamp": NOW.timestamp(),
                },
                "eventSource": "aws:kinesis",
                "eventID": f"shardId-000000000000:{sequence}",
            }
            for sequence, item in enumerate(data, start=1)
        ]
    }


def fresh_world() -> MemoryBackEnd:
    world = MemoryBackEnd.empty()
    world.experiments.put_all([experiment("exp-1")])
    world.assignments.put_all(
        [assignment(user, "exp-1", assigned_at=NOW - timedelta(days=30)) for user in USERS]
    )
    return world


def counters(world: MemoryBackEnd) -> list[tuple[object, ...]]:
    return sorted(
        (
            str(s.key),
            s.measures.event_count,
            s.measures.value_sum,
            s.measures.value_count,
            s.unique_users,
        )
        for granularity in Granularity
        for s in world.metrics.snapshots("exp-1", granularity)
    )


def archived(world: MemoryBackEnd) -> set[int]:
    return {record_from_archive_line(line).coordinates.sequence for line in world.archive.lines()}


def dead_lettered(world: MemoryBackEnd) -> dict[int, RejectionReason]:
    return {letter.sequence: letter.reason for letter in world.dead_letters.letters()}


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="FUZZ_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(record_data, min_size=1, max_size=16))
def test_no_record_escapes_its_one_outcome_and_a_redelivery_changes_nothing(
    data: list[str],
) -> None:
    world = fresh_world()
    event = kinesis_event(data)
    with lambda_handler.container.replaced_by(world.container):
        response = lambda_handler.handler(event, fresh_context())
        once = counters(world), archived(world), dead_lettered(world)
        again = lambda_handler.handler(event, fresh_context())

    assert response == {"batchItemFailures": []}
    assert again == {"batchItemFailures": []}
    counted, letters = once[1], once[2]
    event_kind("some counted" if once[0] else "none counted")
    [first, _] = world.telemetry.results()
    assert not counted & set(letters), "a record both archived and dead-lettered"
    assert all(isinstance(reason, RejectionReason) for reason in letters.values())
    assert len(counted) + len(letters) + first.duplicates == len(data), "a record has no outcome"
    assert (counters(world), archived(world), set(dead_lettered(world))) == (
        once[0],
        once[1],
        set(letters),
    ), "delivering the batch again changed what is stored"
