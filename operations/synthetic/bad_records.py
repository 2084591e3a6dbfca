"""A catalogue of bad input, each kind with the rejection reason the pipeline must give it.

Every kind but one can travel through Kinesis: `PutRecord` takes bytes and Lambda base64-encodes
them, so invalid base64 only exists in hand-built events (`stream_safe=False`). Kinesis refuses
empty data, so "empty" is sent as whitespace, which decodes to nothing.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime

from domain.rejections import RejectionReason

SQS_MESSAGE_LIMIT = 256 * 1024
"""A dead letter bigger than this cannot travel in an SQS message (it overflows to S3)."""


@dataclass(frozen=True, slots=True)
class BadRecord:
    """One kind of bad input: `payload` is what the producer put on the stream, except when
    `stream_safe` is false, where `base64_data` is the record's data as Lambda would deliver it."""

    kind: str
    payload: bytes
    reason: RejectionReason
    stream_safe: bool = True
    base64_data: str | None = None

    @property
    def data(self) -> str:
        """The record's data field as Lambda delivers it (base64 text)."""
        if self.base64_data is not None:
            return self.base64_data
        return base64.b64encode(self.payload).decode("ascii")


def _event(timestamp: str, **overrides: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": "bad-event",
        "event_type": "click",
        "user_id": "bad-user",
        "timestamp": timestamp,
    }
    event.update(overrides)
    return event


def _json(event: dict[str, object]) -> bytes:
    return json.dumps(event, separators=(",", ":"), allow_nan=True).encode()


def _without(event: dict[str, object], field: str) -> dict[str, object]:
    return {k: v for k, v in event.items() if k != field}


def _nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = {"deeper": value}
    return value


def bad_record_catalogue(moment: datetime, max_nesting_depth: int = 8) -> list[BadRecord]:
    """Every kind of bad input, with valid-looking timestamps at `moment` (aware, in the past)."""
    ts = moment.isoformat().replace("+00:00", "Z")
    naive = moment.replace(tzinfo=None).isoformat()
    base = _event(ts)
    too_deep = _nested(max_nesting_depth + 2)
    r = RejectionReason
    return [
        BadRecord("whitespace_only", b" ", r.EMPTY_RECORD),
        BadRecord("blank_lines", b"\n\t \r\n", r.EMPTY_RECORD),
        BadRecord(
            "invalid_base64",
            b"",
            r.INVALID_BASE64,
            stream_safe=False,
            base64_data="eyJldmVudF9pZCI6!!not-base64",
        ),
        BadRecord("truncated_json", _json(base)[:-9], r.INVALID_JSON),
        BadRecord("trailing_garbage", _json(base) + b" trailing", r.INVALID_JSON),
        BadRecord("single_quoted_json", _json(base).replace(b'"', b"'"), r.INVALID_JSON),
        BadRecord(
            "invalid_utf8",
            _json(base).replace(b"bad-user", b"bad-\xff\xfe-user"),
            r.INVALID_UTF8,
        ),
        BadRecord("latin1_text", '{"user_id": "Jürgen"}'.encode("latin-1"), r.INVALID_UTF8),
        BadRecord("json_array", b'[{"event_id": "a"}]', r.NOT_AN_OBJECT),
        BadRecord("json_string", b'"click"', r.NOT_AN_OBJECT),
        BadRecord("json_number", b"42", r.NOT_AN_OBJECT),
        BadRecord("json_null", b"null", r.NOT_AN_OBJECT),
        BadRecord("json_boolean", b"true", r.NOT_AN_OBJECT),
        *(
            BadRecord(f"missing_{field}", _json(_without(base, field)), r.MISSING_FIELD)
            for field in ("event_id", "event_type", "user_id", "timestamp")
        ),
        BadRecord("event_id_number", _json({**base, "event_id": 42}), r.INVALID_FIELD),
        BadRecord("event_type_list", _json({**base, "event_type": ["click"]}), r.INVALID_FIELD),
        BadRecord("user_id_number", _json({**base, "user_id": 1234}), r.INVALID_FIELD),
        BadRecord("user_id_null", _json({**base, "user_id": None}), r.INVALID_FIELD),
        BadRecord(
            "timestamp_epoch_number", _json({**base, "timestamp": 1.7e9}), r.INVALID_TIMESTAMP
        ),
        BadRecord("value_string", _json({**base, "value": "12.50"}), r.INVALID_FIELD),
        BadRecord("value_boolean", _json({**base, "value": True}), r.INVALID_FIELD),
        BadRecord("properties_list", _json({**base, "properties": [1, 2]}), r.INVALID_FIELD),
        BadRecord("experiment_id_number", _json({**base, "experiment_id": 7}), r.INVALID_FIELD),
        BadRecord("session_id_object", _json({**base, "session_id": {"a": 1}}), r.INVALID_FIELD),
        BadRecord("empty_event_id", _json({**base, "event_id": ""}), r.INVALID_FIELD),
        BadRecord("empty_user_id", _json({**base, "user_id": ""}), r.INVALID_FIELD),
        BadRecord("empty_event_type", _json({**base, "event_type": ""}), r.INVALID_FIELD),
        BadRecord(
            "event_id_too_long", _json({**base, "event_id": "e" * 257}), r.IDENTIFIER_TOO_LONG
        ),
        BadRecord("user_id_too_long", _json({**base, "user_id": "u" * 257}), r.IDENTIFIER_TOO_LONG),
        BadRecord("event_type_too_long", _json({**base, "event_type": "a" * 65}), r.INVALID_FIELD),
        BadRecord(
            "event_type_pattern", _json({**base, "event_type": "Add To Cart!"}), r.INVALID_FIELD
        ),
        BadRecord(
            "timestamp_unparsable", _json({**base, "timestamp": "yesterday"}), r.INVALID_TIMESTAMP
        ),
        BadRecord(
            "timestamp_impossible_date",
            _json({**base, "timestamp": "2026-02-30T10:00:00Z"}),
            r.INVALID_TIMESTAMP,
        ),
        BadRecord("timestamp_naive", _json({**base, "timestamp": naive}), r.NAIVE_TIMESTAMP),
        BadRecord(
            "timestamp_far_future",
            _json({**base, "timestamp": "2999-01-01T00:00:00Z"}),
            r.FUTURE_TIMESTAMP,
        ),
        BadRecord("value_nan", _json({**base, "value": float("nan")}), r.NON_FINITE_NUMBER),
        BadRecord("value_infinity", _json({**base, "value": float("inf")}), r.NON_FINITE_NUMBER),
        BadRecord(
            "properties_negative_infinity",
            _json({**base, "properties": {"x": [float("-inf")]}}),
            r.NON_FINITE_NUMBER,
        ),
        BadRecord("unknown_field_nan", _json({**base, "score": float("nan")}), r.NON_FINITE_NUMBER),
        BadRecord(
            "properties_too_deep", _json({**base, "properties": too_deep}), r.TOO_DEEPLY_NESTED
        ),
        BadRecord(
            "unknown_field_too_deep", _json({**base, "extra": too_deep}), r.TOO_DEEPLY_NESTED
        ),
        BadRecord(
            "runaway_nesting",
            _json(base)[:-1] + b',"extra":' + b"[" * 5_000 + b"]" * 5_000 + b"}",
            r.TOO_DEEPLY_NESTED,
        ),
        BadRecord("reserved_pipeline_field", _json({**base, "_pipeline": {}}), r.RESERVED_FIELD),
        BadRecord("reserved_field_other_case", _json({**base, "_Pipeline": {}}), r.RESERVED_FIELD),
        BadRecord("contract_field_other_case", _json({**base, "VALUE": 5}), r.RESERVED_FIELD),
        BadRecord(
            "timestamp_offset_hours_only",
            _json({**base, "timestamp": "2026-11-20T10:00+00"}),
            r.INVALID_TIMESTAMP,
        ),
        # Keys the archive's readers cannot tell apart (Athena's JSON SerDe).
        BadRecord(
            "duplicate_top_level_key",
            _json(base)[:-1] + b',"user_id":"another-user"}',
            r.DUPLICATE_KEY,
        ),
        BadRecord(
            "duplicate_key_spaced_before_colon",
            _json(base)[:-1] + b',"user_id" : "another-user"}',
            r.DUPLICATE_KEY,
        ),
        BadRecord(
            "key_differing_only_in_case", _json({**base, "USER_ID": "another"}), r.DUPLICATE_KEY
        ),
        BadRecord(
            "duplicate_property_key",
            _json(base)[:-1] + b',"properties":{"page":"/a","page":"/b"}}',
            r.DUPLICATE_KEY,
        ),
        BadRecord(
            "nested_keys_differing_only_in_case",
            _json({**base, "properties": {"cart": [{"sku": 1, "SKU": 2}]}}),
            r.DUPLICATE_KEY,
        ),
        # Timestamps: ISO 8601 strings with a four-digit year, inside the event window.
        BadRecord("timestamp_zero", _json({**base, "timestamp": 0}), r.INVALID_TIMESTAMP),
        BadRecord("timestamp_zero_string", _json({**base, "timestamp": "0"}), r.INVALID_TIMESTAMP),
        BadRecord(
            "timestamp_epoch_string",
            _json({**base, "timestamp": "1795168800"}),
            r.INVALID_TIMESTAMP,
        ),
        BadRecord(
            "timestamp_short_year",
            _json({**base, "timestamp": "1-01-01T05:00:00Z"}),
            r.INVALID_TIMESTAMP,
        ),
        BadRecord(
            "timestamp_five_digit_year",
            _json({**base, "timestamp": "12026-11-20T10:00:00Z"}),
            r.INVALID_TIMESTAMP,
        ),
        BadRecord(
            "timestamp_year_one_east_of_utc",
            _json({**base, "timestamp": "0001-01-01T00:00:00+14:00"}),
            r.TIMESTAMP_OUT_OF_RANGE,
        ),
        BadRecord(
            "timestamp_epoch_start",
            _json({**base, "timestamp": "1970-01-01T00:00:00Z"}),
            r.TIMESTAMP_OUT_OF_RANGE,
        ),
        # Values every counter sums exactly in DynamoDB's 38 digits.
        BadRecord(
            "value_beyond_dynamodb_range", _json({**base, "value": 1e200}), r.VALUE_OUT_OF_RANGE
        ),
        BadRecord(
            "value_below_dynamodb_range", _json({**base, "value": 1e-200}), r.VALUE_OUT_OF_RANGE
        ),
        BadRecord(
            "value_half_the_dynamodb_maximum", _json({**base, "value": 5e125}), r.VALUE_OUT_OF_RANGE
        ),
        BadRecord("value_a_trillion", _json({**base, "value": 1e12}), r.VALUE_OUT_OF_RANGE),
        BadRecord(
            "value_too_many_fraction_digits",
            _json({**base, "value": 1.5e-19}),
            r.VALUE_OUT_OF_RANGE,
        ),
        # Identifiers whose DynamoDB keys would not fit.
        BadRecord(
            "user_id_of_1024_utf8_bytes",
            json.dumps({**base, "user_id": "\U0001f600" * 256}, ensure_ascii=False).encode(),
            r.IDENTIFIER_TOO_LONG,
        ),
        BadRecord(
            "user_id_of_1024_utf8_bytes_escaped",
            _json({**base, "user_id": "\U0001f600" * 256}),
            r.IDENTIFIER_TOO_LONG,
        ),
        BadRecord(
            "variant_id_over_256_utf8_bytes",
            _json({**base, "variant_id": "\u00e9" * 129}),
            r.IDENTIFIER_TOO_LONG,
        ),
        BadRecord(
            "experiment_id_over_256_utf8_bytes",
            json.dumps({**base, "experiment_id": "\u00e9" * 129}, ensure_ascii=False).encode(),
            r.IDENTIFIER_TOO_LONG,
        ),
        BadRecord(
            "session_id_too_long", _json({**base, "session_id": "s" * 257}), r.IDENTIFIER_TOO_LONG
        ),
        BadRecord(
            "huge_property_string",
            _json({**base, "properties": {"blob": "x" * (80 * 1024)}}),
            r.RECORD_TOO_LARGE,
        ),
        BadRecord(
            "oversize_beyond_sqs_limit",
            _json({**base, "properties": {"blob": "y" * (300 * 1024)}}),
            r.RECORD_TOO_LARGE,
        ),
    ]


def stream_safe_catalogue(moment: datetime, max_nesting_depth: int = 8) -> list[BadRecord]:
    """The kinds that can be put on a Kinesis stream (all but hand-built base64)."""
    return [b for b in bad_record_catalogue(moment, max_nesting_depth) if b.stream_safe]
