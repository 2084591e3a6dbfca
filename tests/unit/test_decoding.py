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
        ({"user_id": "u" * 257}, RejectionReason.IDENTIFIER_TOO_LONG),
        ({"value": "12.5"}, RejectionReason.INVALID_FIELD),
        ({"properties": [1, 2]}, RejectionReason.INVALID_FIELD),
        ({"timestamp": "2026-11-20T11:30:00"}, RejectionReason.NAIVE_TIMESTAMP),
        ({"timestamp": "2026-11-20T13:30:00Z"}, RejectionReason.FUTURE_TIMESTAMP),
        ({"timestamp": "yesterday"}, RejectionReason.INVALID_TIMESTAMP),
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


def _raw_event(**fields: str) -> bytes:
    """An event written by hand: each field's JSON text as given."""
    parts = {
        "event_id": '"e"',
        "event_type": '"click"',
        "user_id": '"u"',
        "timestamp": '"2026-11-20T11:00:00Z"',
        **fields,
    }
    return ("{" + ",".join(f'"{name}":{value}' for name, value in parts.items()) + "}").encode()


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event_id":"e","event_type":"click","user_id":"a","user_id":"b","timestamp":"2026-11-20T11:00:00Z"}',
        b'{"event_id" : "e","event_type":"click","user_id":"a","user_id" : "b","timestamp":"2026-11-20T11:00:00Z"}',
        b'{"event_id":"e","event_type":"click","user_id":"a","USER_ID":"b","timestamp":"2026-11-20T11:00:00Z"}',
        b'{"event_id":"e","event_type":"click","user_id":"u","timestamp":"2026-11-20T11:00:00Z","properties":{"a":1,"a":2}}',
        b'{"event_id":"e","event_type":"click","user_id":"u","timestamp":"2026-11-20T11:00:00Z","properties":{"Page":1,"page":2}}',
        b'{"event_id":"e","event_type":"click","user_id":"u","timestamp":"2026-11-20T11:00:00Z","properties":{"x":[{"k":1,"K":2}]}}',
        b'{"event_id":"e","event_type":"click","user_id":"u","timestamp":"2026-11-20T11:00:00Z","extra":{"k":1,"k":2}}',
    ],
)
def test_keys_that_the_archive_readers_cannot_tell_apart_are_refused(raw: bytes) -> None:
    assert rejection_of(raw).reason is RejectionReason.DUPLICATE_KEY


@pytest.mark.parametrize("name", ["_Pipeline", "_PIPELINE", "_pipeline"])
def test_the_reserved_field_is_refused_in_any_case(name: str) -> None:
    assert rejection_of(_raw_event(**{name: "{}"})).reason is RejectionReason.RESERVED_FIELD


@pytest.mark.parametrize(
    "fields",
    [{"VALUE": "5"}, {"Properties": "{}"}, {"Experiment_Id": '"exp"'}, {"SESSION_ID": '"s"'}],
)
def test_a_contract_field_in_another_case_is_refused(fields: dict[str, str]) -> None:
    """Athena's SerDe folds case: it would read `VALUE` as the value the pipeline found absent."""
    rejection = rejection_of(_raw_event(**fields))
    assert rejection.reason is RejectionReason.RESERVED_FIELD
    assert next(iter(fields)) in rejection.detail


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [
        ("0", RejectionReason.INVALID_TIMESTAMP),
        ('"0"', RejectionReason.INVALID_TIMESTAMP),
        ('"1795168800"', RejectionReason.INVALID_TIMESTAMP),
        ('"1-01-01T05:00:00Z"', RejectionReason.INVALID_TIMESTAMP),
        ('"12026-11-20T11:00:00Z"', RejectionReason.INVALID_TIMESTAMP),
        ('"2026-11-20T11:00:00+01"', RejectionReason.INVALID_TIMESTAMP),
        ('"2026-11-20T11:00+00"', RejectionReason.INVALID_TIMESTAMP),
        ('"0001-01-01T00:00:00+14:00"', RejectionReason.TIMESTAMP_OUT_OF_RANGE),
        ('"1970-01-01T00:00:00Z"', RejectionReason.TIMESTAMP_OUT_OF_RANGE),
        ('"2023-12-31T23:59:59.999999Z"', RejectionReason.TIMESTAMP_OUT_OF_RANGE),
    ],
)
def test_timestamps_outside_the_iso_8601_strings_of_the_event_window_are_refused(
    timestamp: str, reason: RejectionReason
) -> None:
    assert rejection_of(_raw_event(timestamp=timestamp)).reason is reason


@pytest.mark.parametrize(
    "timestamp",
    ["2024-01-01T00:00:00Z", "2026-11-20 11:00:00+01:00", "2026-11-20T11:00:00.123456789+0530"],
)
def test_timestamps_in_the_window_are_accepted_in_every_iso_8601_form(timestamp: str) -> None:
    outcome = decode_record(record_of(event_payload(timestamp=timestamp)), LIMITS, NOW)
    assert isinstance(outcome, AcceptedEvent)


@pytest.mark.parametrize("value", [1e200, -1e12, 1e12, 1e-200, 1.5e-19, 5e-324])
def test_values_no_counter_could_sum_exactly_are_refused(value: float) -> None:
    assert rejection_of(event_payload(value=value)).reason is RejectionReason.VALUE_OUT_OF_RANGE


@pytest.mark.parametrize("value", [0.0, -0.0, 999_999_999_999.99, 0.30000000000000004, 1.5e-17])
def test_values_a_counter_sums_exactly_are_accepted(value: float) -> None:
    outcome = decode_record(record_of(event_payload(value=value)), LIMITS, NOW)
    assert isinstance(outcome, AcceptedEvent)


@pytest.mark.parametrize(
    "field", ["event_id", "user_id", "experiment_id", "variant_id", "session_id"]
)
@pytest.mark.parametrize("identifier", ["😀" * 65, "é" * 129, "u" * 257])
def test_identifiers_over_256_utf8_bytes_are_refused(field: str, identifier: str) -> None:
    for ensure_ascii in (True, False):
        payload = json.dumps(event_payload(**{field: identifier}), ensure_ascii=ensure_ascii)
        assert rejection_of(payload.encode()).reason is RejectionReason.IDENTIFIER_TOO_LONG


def test_identifiers_of_256_utf8_bytes_are_accepted() -> None:
    payload = json.dumps(event_payload(user_id="😀" * 64, event_id="é" * 128), ensure_ascii=False)
    assert isinstance(decode_record(record_of(payload.encode()), LIMITS, NOW), AcceptedEvent)
