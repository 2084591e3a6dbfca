"""A hostile corpus for the rule that no user data reaches the logs above DEBUG: every kind of
the bad-record catalogue and valid events alike, carrying users' ids and payload values that are
distinctive markers, so that any output repeating one of them is found by a substring search.

Every marker starts with `MARKER_PREFIX`: a log line that holds a marker cut short still holds the
prefix. Raw record data (base64) is searched for through the base64 forms of each marker.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.experiments import Assignment
from operations.synthetic.bad_records import bad_record_catalogue

MARKER_PREFIX = "pii-"
ASSIGNED_USER = "pii-user-7c1f@example.com"
"""Assigned to `EXPERIMENT` (variant `control`) long before its events."""
MALFORMED_USER = "pii-user-3b9e@example.com"
"""Has only malformed assignments: the repositories skip them."""
UNKNOWN_USER = "pii-user-e4a0@example.com"
"""Not assigned at all."""
BROKEN_ITEM_USER = "pii-user-b81d@example.com"
"""Whose whole item of assignments is malformed (in a table of them)."""
USER_MARKERS = (ASSIGNED_USER, MALFORMED_USER, UNKNOWN_USER, BROKEN_ITEM_USER)
SECRET = "pii-secret-91ab"
"""A property value."""
SESSION = "pii-session-4d8c"
EXTRA = "pii-extra-26f3"
"""The value of a top-level field the contract does not name (archived as it is)."""
PAYLOAD_MARKERS = (SECRET, SESSION, EXTRA)
MARKERS = USER_MARKERS + PAYLOAD_MARKERS
EXPERIMENT = "exp-1"

_CATALOGUE_USERS = {
    b'"bad-user"': ASSIGNED_USER,
    b'"another-user"': MALFORMED_USER,
    b'"another"': UNKNOWN_USER,
}


@dataclass(frozen=True, slots=True)
class HostileRecord:
    kind: str
    partition_key: str
    """The record's Kinesis partition key: its user, as producers partition by user id."""
    payload: bytes
    base64_data: str | None = None
    """The record's data when it is not the base64 of `payload` (hand-built invalid base64)."""

    @property
    def data(self) -> str:
        if self.base64_data is not None:
            return self.base64_data
        return base64.b64encode(self.payload).decode("ascii")


def hostile_records(moment: datetime) -> list[HostileRecord]:
    """Every kind of the bad-record catalogue with marker users (and, where the kind is a JSON
    object without properties, a second time with marker property, session and extra values),
    then valid events of every marker user, one of them delivered twice. Event times are at
    `moment` (aware, in the past)."""
    records: list[HostileRecord] = []
    for bad in bad_record_catalogue(moment):
        if bad.base64_data is not None:
            records.append(HostileRecord(bad.kind, ASSIGNED_USER, b"", bad.base64_data))
            continue
        payload = bad.payload
        for plain, marker in _CATALOGUE_USERS.items():
            payload = payload.replace(plain, json.dumps(marker).encode())
        records.append(HostileRecord(bad.kind, ASSIGNED_USER, payload))
        with_values = _with_marker_values(payload)
        if with_values is not None:
            records.append(HostileRecord(f"{bad.kind}_with_values", ASSIGNED_USER, with_values))
    for number, user in enumerate(USER_MARKERS):
        for event_type in ("exposure", "click", "purchase"):
            event = {
                "event_id": f"valid-{number}-{event_type}",
                "event_type": event_type,
                "user_id": user,
                "timestamp": moment.isoformat(),
                "experiment_id": EXPERIMENT,
                "session_id": SESSION,
                "value": 19.99 if event_type == "purchase" else None,
                "properties": {"note": SECRET, "cart": [{"label": SECRET}]},
                "referrer": EXTRA,
            }
            payload = json.dumps({k: v for k, v in event.items() if v is not None}).encode()
            records.append(HostileRecord(f"valid_{event_type}", user, payload))
    records.append(HostileRecord("duplicate", records[-1].partition_key, records[-1].payload))
    return records


def _with_marker_values(payload: bytes) -> bytes | None:
    """`payload` with marker property, session and extra values added at its end (as text:
    a key the payload writes twice stays written twice), or None when it is no JSON object or
    has one of these fields already."""
    try:
        event = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(event, dict) or {"properties", "session_id", "referrer"} & set(event):
        return None
    values = {"properties": {"note": SECRET}, "session_id": SESSION, "referrer": EXTRA}
    added = json.dumps(values).encode()[1:-1]
    body = payload.rstrip()[:-1]
    return body + (b"," if event else b"") + added + b"}"


def kinesis_event(records: Iterable[HostileRecord], arrival: float) -> dict[str, object]:
    """A Kinesis event of `records` on one shard, as Lambda delivers it."""
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": record.partition_key,
                    "sequenceNumber": str(sequence),
                    "data": record.data,
                    "approximateArrivalTimestamp": arrival,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"shardId-000000000000:{sequence}",
                "eventName": "aws:kinesis:record",
            }
            for sequence, record in enumerate(records, start=1)
        ]
    }


def malformed_assignments(moment: datetime) -> list[Assignment]:
    """Assignments of `MALFORMED_USER` that skip validation (as a repository's rows may), each
    refused for another reason; one names `SECRET` where a time should be."""
    return [
        Assignment.model_construct(
            user_id=MALFORMED_USER, experiment_id=EXPERIMENT, variant_id="", assigned_at=moment
        ),
        Assignment.model_construct(
            user_id=MALFORMED_USER,
            experiment_id="exp-2",
            variant_id="control",
            assigned_at=moment.replace(tzinfo=None),
        ),
        Assignment.model_construct(
            user_id=MALFORMED_USER,
            experiment_id="exp-3",
            variant_id="control",
            assigned_at=SECRET,  # type: ignore[arg-type]  # a row of another type, on purpose
        ),
        Assignment.model_construct(
            user_id=MALFORMED_USER,
            experiment_id="e" * 300,
            variant_id="control",
            assigned_at=moment - timedelta(days=1),
        ),
    ]


def leaks(text: str) -> list[str]:
    """The lines of `text` that hold a marker, the start of one, or a base64 form of one,
    each cut to a readable length around what it holds."""
    found = []
    for line in text.splitlines():
        forms = [MARKER_PREFIX, *(form for marker in MARKERS for form in _base64_forms(marker))]
        at = min((line.find(form) for form in forms if form in line), default=-1)
        if at >= 0:
            found.append(line[max(0, at - 150) : at + 150])
    return found


def _base64_forms(marker: str) -> list[str]:
    """What the base64 of any text holding `marker` holds, whatever the marker's offset: for
    each of the three alignments, the characters that depend on the marker's bytes alone."""
    forms = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + marker.encode()).decode()
        # The first group of four mixes in the bytes before the marker, the last those after it.
        forms.append(encoded[4 if offset else 0 : -4])
    return forms
