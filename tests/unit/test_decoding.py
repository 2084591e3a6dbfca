from __future__ import annotations

import base64
import json

import pytest

from domain.decoding import decode_record
from domain.events import AcceptedEvent, EventLimits
from domain.rejections import DeadLetter, RejectionReason, Stage
from tests.factories import NOW, event_payload, record_of

LIMITS = EventLimits()


def rejection_of(data: bytes | str | dict[str, object]) -> DeadLetter:
    outcome = decode_record(record_of(data), LIMITS, NOW)
    assert isinstance(outcome, DeadLetter), outcome
    return outcome


def test_accepts_a_valid_event_and_keeps_its_exact_bytes() -> None:
    payload = json.dumps(event_payload(value=19.99, properties={"a": [1, {"b": None}]})).encode()
    outcome = decode_record(record_of(payload), LIMITS, NOW)
    assert isinstance(outcome, AcceptedEvent)
    assert outcome.payload == payload
    assert outcome.event.value == 19.99


def test_unicode_of_any_script_passes_through_unchanged() -> None:
    payload = json.dumps(
        event_payload(user_id="ユーザー😀", properties={"名前": "Ünïcødé ✓"}), ensure_ascii=False
    )
    outcome = decode_record(record_of(payload.encode()), LIMITS, NOW)
    assert isinstance(outcome, AcceptedEvent)
    assert outcome.event.user_id == "ユーザー😀"
    assert outcome.payload.decode() == payload


def test_unknown_top_level_fields_are_preserved() -> None:
    outcome = decode_record(record_of(event_payload(campaign={"id": 7})), LIMITS, NOW)
    assert isinstance(outcome, AcceptedEvent)
    assert outcome.event.model_extra == {"campaign": {"id": 7}}


@pytest.mark.parametrize(
    ("data", "reason", "stage"),
    [
        ("", RejectionReason.EMPTY_RECORD, Stage.DECODE),
        ("not base64!!", RejectionReason.INVALID_BASE64, Stage.DECODE),
        (b"   ", RejectionReason.EMPTY_RECORD, Stage.DECODE),
        (b"\xff\xfe{}", RejectionReason.INVALID_UTF8, Stage.DECODE),
        (b'{"event_id": "x"', RejectionReason.INVALID_JSON, Stage.PARSE),
        (b"[1, 2]", RejectionReason.NOT_AN_OBJECT, Stage.PARSE),
        (b'"just a string"', RejectionReason.NOT_AN_OBJECT, Stage.PARSE),
        (b"x" * (70 * 1024), RejectionReason.RECORD_TOO_LARGE, Stage.DECODE),
    ],
)
def test_undecodable_records_are_rejected_with_a_machine_readable_reason(
    data: bytes | str, reason: RejectionReason, stage: Stage
) -> None:
    letter = rejection_of(data)
    assert letter.reason is reason
    assert letter.stage is stage
    assert letter.detail


@pytest.mark.parametrize("field", ["event_id", "event_type", "user_id", "timestamp"])
def test_each_required_field_is_required(field: str) -> None:
    payload = event_payload()
    del payload[field]
    letter = rejection_of(payload)
    assert letter.reason is RejectionReason.MISSING_FIELD
    assert field in letter.detail


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"event_id": ""}, RejectionReason.INVALID_FIELD),
        ({"event_id": 42}, RejectionReason.INVALID_FIELD),
        ({"event_type": "Click"}, RejectionReason.INVALID_FIELD),
        ({"event_type": "a" * 65}, RejectionReason.INVALID_FIELD),
        ({"user_id": "u" * 257}, RejectionReason.INVALID_FIELD),
        ({"value": "12.5"}, RejectionReason.INVALID_FIELD),
        ({"properties": [1, 2]}, RejectionReason.INVALID_FIELD),
        ({"timestamp": "2026-11-20T11:30:00"}, RejectionReason.NAIVE_TIMESTAMP),
        ({"timestamp": "2026-11-20T13:30:00Z"}, RejectionReason.FUTURE_TIMESTAMP),
        ({"timestamp": "yesterday"}, RejectionReason.INVALID_FIELD),
        ({"_pipeline": {}}, RejectionReason.RESERVED_FIELD),
    ],
)
def test_schema_violations_are_rejected(
    overrides: dict[str, object], reason: RejectionReason
) -> None:
    assert rejection_of(event_payload(**overrides)).reason is reason


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event_id":"e","event_type":"click","user_id":"u","timestamp":"2026-11-20T11:00:00Z","value":NaN}',
        b'{"event_id":"e","event_type":"click","user_id":"u","timestamp":"2026-11-20T11:00:00Z","value":Infinity}',
        b'{"event_id":"e","event_type":"click","user_id":"u","timestamp":"2026-11-20T11:00:00Z","properties":{"x":[-Infinity]}}',
        b'{"event_id":"e","event_type":"click","user_id":"u","timestamp":"2026-11-20T11:00:00Z","extra":NaN}',
    ],
)
def test_non_finite_numbers_anywhere_are_rejected(raw: bytes) -> None:
    assert rejection_of(raw).reason is RejectionReason.NON_FINITE_NUMBER


def test_properties_nested_beyond_the_limit_are_rejected() -> None:
    nested: object = "leaf"
    for _ in range(LIMITS.max_nesting_depth + 1):
        nested = {"deeper": nested}
    assert (
        rejection_of(event_payload(properties=nested)).reason is RejectionReason.TOO_DEEPLY_NESTED
    )


def test_a_timestamp_within_the_allowed_skew_is_accepted() -> None:
    outcome = decode_record(
        record_of(event_payload(timestamp="2026-11-20T12:59:00+00:00")), LIMITS, NOW
    )
    assert isinstance(outcome, AcceptedEvent)


def test_a_dead_letter_keeps_the_original_data_and_coordinates() -> None:
    data = base64.b64encode(b"{broken").decode()
    record = record_of(data, sequence=77)
    letter = decode_record(record, LIMITS, NOW)
    assert isinstance(letter, DeadLetter)
    assert letter.data == data
    assert letter.coordinates == record.coordinates
