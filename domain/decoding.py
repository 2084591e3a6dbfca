"""Turns a raw Kinesis record into an accepted event or a dead letter (base64 -> UTF-8 -> JSON)."""

from __future__ import annotations

import binascii
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import partial

import jiter
from pybase64 import b64decode
from pydantic import ValidationError
from pydantic_core import ErrorDetails, TzInfo

from domain.events import (
    RESERVED_FIELD,
    VALUE_MAX_FRACTION_DIGITS,
    VALUE_MAX_MAGNITUDE,
    AcceptedColumns,
    AcceptedEvent,
    EventLimits,
    ExperimentEvent,
    identifier_problem,
)
from domain.metrics import to_decimal
from domain.records import RawRecord
from domain.rejections import DeadLetter, RejectionReason

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_Rejector = Callable[[RejectionReason, str], DeadLetter]

_FIXED_OFFSET_ZONES: frozenset[type] = frozenset({TzInfo, timezone})
"""Time zones whose offset is the same at every instant (what pydantic gives aware datetimes)."""


def _validate_json(payload: bytes) -> ExperimentEvent:
    """`ExperimentEvent.model_validate_json(payload)` without its Python wrapper (which only
    checks keyword arguments this call does not pass)."""
    event: ExperimentEvent = ExperimentEvent.__pydantic_validator__.validate_json(payload)
    return event


_PYDANTIC_ERROR_REASONS: dict[str, RejectionReason] = {
    "missing": RejectionReason.MISSING_FIELD,
    "timezone_aware": RejectionReason.NAIVE_TIMESTAMP,
    "finite_number": RejectionReason.NON_FINITE_NUMBER,
    "model_type": RejectionReason.NOT_AN_OBJECT,
    "model_attributes_type": RejectionReason.NOT_AN_OBJECT,
}


def decode_record(
    record: RawRecord, limits: EventLimits, now: datetime
) -> AcceptedEvent | DeadLetter:
    """Decode and validate one record. Never raises for bad input: bad input is a dead letter."""
    text = record.data
    if not text:
        return _reject(record, RejectionReason.EMPTY_RECORD, "record data is empty")
    # Base64 inflates by 4/3: refuse oversize records before paying to decode them.
    if len(text) // 4 * 3 > limits.max_record_bytes + 2:
        return _reject(
            record,
            RejectionReason.RECORD_TOO_LARGE,
            f"record is about {len(text) // 4 * 3} bytes, limit {limits.max_record_bytes}",
        )
    try:
        payload = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError) as error:
        return _reject(record, RejectionReason.INVALID_BASE64, f"data is not valid base64: {error}")
    if not payload or payload.isspace():
        return _reject(record, RejectionReason.EMPTY_RECORD, "record data decodes to nothing")
    if len(payload) > limits.max_record_bytes:
        return _reject(
            record,
            RejectionReason.RECORD_TOO_LARGE,
            f"record is {len(payload)} bytes, limit {limits.max_record_bytes}",
        )
    try:
        event = _validate_json(payload)
    except ValidationError as error:
        return _classify_validation_error(error, payload, partial(_reject, record))
    accepted = AcceptedEvent(event, payload, record.coordinates)
    problem = _check_rules(
        event,
        payload,
        accepted.event_time_us,
        limits,
        now,
        _earliest_us(limits),
        _latest_us(limits, now),
    )
    if problem is not None:
        return _reject(record, *problem)
    return accepted


def decode_records(
    records: Sequence[RawRecord], positions: Iterable[int], limits: EventLimits, now: datetime
) -> tuple[AcceptedColumns, list[tuple[int, DeadLetter]]]:
    """`decode_record` of the records at `positions`, in that order: the accepted events as
    columns, and each dead letter with its record's position.

    The outcome is `decode_record`'s, record for record. A record is accepted here directly
    only when it passes the same steps (size bound, strict base64, validation from bytes, the
    rules); any record that fails a step, or is not a plain case of the rules, goes through
    `decode_record` itself, which gives the reason. Base64 is decoded here by pybase64 (SIMD),
    which accepts a subset of what strict `binascii` accepts, with the same bytes (a property
    test checks it); what it refuses goes through `decode_record`.
    """
    accepted = AcceptedColumns()
    events, payloads, coordinates, times = (
        accepted.events,
        accepted.payloads,
        accepted.coordinates,
        accepted.times_us,
    )
    rejected: list[tuple[int, DeadLetter]] = []
    max_bytes = limits.max_record_bytes
    # `len(text) // 4 * 3 <= max_bytes + 2`, decode_record's bound on the base64 text.
    max_text = 4 * ((max_bytes + 2) // 3 + 1)
    latest_us = _latest_us(limits, now)
    earliest_us = _earliest_us(limits)
    leaves_are_flat = limits.max_nesting_depth >= 1
    leaf_types = _LEAF_TYPES
    validate = ExperimentEvent.__pydantic_validator__.validate_json
    epoch, microsecond = _EPOCH, _MICROSECOND
    # The epoch in the time zone of the last event, and that zone's offset: pydantic hands out
    # one tzinfo object per offset, and the difference of two datetimes sharing one is plain
    # arithmetic, where comparing across zones calls the tzinfo's Python-level utcoffset.
    zone: tzinfo | None = None
    zone_epoch = epoch
    zone_offset_us = 0
    for position in positions:
        record = records[position]
        text = record.data
        if len(text) < max_text:
            try:
                payload = b64decode(text, validate=True)
                event: ExperimentEvent = validate(payload)
            except ValueError:  # binascii.Error, ValidationError: decode_record gives the reason
                pass
            else:
                if len(payload) <= max_bytes:
                    moment = event.timestamp
                    if moment.tzinfo is zone:
                        event_us = (moment - zone_epoch) // microsecond - zone_offset_us
                    else:
                        event_us = (moment - epoch) // microsecond
                        offset = moment.utcoffset()
                        if offset is not None and type(moment.tzinfo) in _FIXED_OFFSET_ZONES:
                            zone = moment.tzinfo
                            zone_epoch = datetime(1970, 1, 1, tzinfo=zone)
                            zone_offset_us = offset // microsecond
                    properties = event.properties
                    value = event.value
                    # The plain case, each rule by a cheap sufficient test (see _check_rules
                    # for the rules themselves). An ASCII payload without a backslash has no
                    # escapes: its identifiers are one byte a character (<= 256 by the model).
                    # Every '"' of such a payload delimits a string, a key or a string value:
                    # with exactly two per key and string value the parser kept, no key was
                    # written twice. Top-level keys are the model's own (no extras), distinct
                    # in any case; property keys are lower case, so distinct in any case too.
                    if (
                        earliest_us <= event_us <= latest_us
                        and not event.__pydantic_extra__
                        and (value is None or value == 0 or _PLAIN_MIN <= abs(value) < _PLAIN_MAX)
                        and payload.isascii()
                        and b"\\" not in payload
                    ):
                        strings = (
                            len(event.__pydantic_fields_set__)
                            + _REQUIRED_STRINGS
                            + (event.experiment_id is not None)
                            + (event.variant_id is not None)
                            + (event.session_id is not None)
                            + (type(event.schema_version) is str)
                        )
                        if properties is None:
                            plain = True
                        else:
                            kinds = list(map(type, properties.values()))
                            plain = (
                                leaves_are_flat
                                and leaf_types.issuperset(kinds)
                                and all(map(str.islower, properties))
                            )
                            strings += len(kinds) + kinds.count(str)
                        plain = plain and payload.count(b'"') == 2 * strings
                    else:
                        plain = False
                    if plain:
                        problem = None
                    else:
                        problem = _check_rules(
                            event, payload, event_us, limits, now, earliest_us, latest_us
                        )
                    if problem is None:
                        events.append(event)
                        payloads.append(payload)
                        coordinates.append(record.coordinates)
                        times.append(event_us)
                    else:
                        rejected.append((position, _reject(record, *problem)))
                    continue
        outcome = decode_record(record, limits, now)
        if isinstance(outcome, AcceptedEvent):
            accepted.append(outcome)
        else:
            rejected.append((position, outcome))
    return accepted, rejected


def _latest_us(limits: EventLimits, now: datetime) -> int:
    """The latest event time accepted, as `AcceptedEvent.event_time_us`."""
    return (now + limits.max_future_skew - _EPOCH) // _MICROSECOND


def _earliest_us(limits: EventLimits) -> int:
    """The earliest event time accepted, as `AcceptedEvent.event_time_us`."""
    return (limits.earliest_event_time - _EPOCH) // _MICROSECOND


_PLAIN_MIN = 0.01
"""A double of at least this magnitude has at most 18 digits after the point in its shortest
repr (17 significant digits, at most one zero after the point): no exact check needed."""
_PLAIN_MAX = float(VALUE_MAX_MAGNITUDE)

_IDENTIFIER_FIELDS = ("event_id", "user_id", "experiment_id", "variant_id", "session_id")

_REQUIRED_STRINGS = 4
"""`event_id`, `event_type`, `user_id` and `timestamp`: string values in every valid event."""


def _reject(record: RawRecord, reason: RejectionReason, detail: str) -> DeadLetter:
    return DeadLetter(reason, detail, record.coordinates, record.data)


def _classify_validation_error(
    error: ValidationError,
    payload: bytes,
    reject: _Rejector,
) -> DeadLetter:
    details = error.errors(include_url=False, include_input=False)
    first = details[0]
    if first["type"] == "json_invalid":
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as utf8_error:
            return reject(RejectionReason.INVALID_UTF8, f"data is not valid UTF-8: {utf8_error}")
        if "recursion" in first["msg"]:
            return reject(
                RejectionReason.TOO_DEEPLY_NESTED, f"JSON nesting too deep: {first['msg']}"
            )
        return reject(RejectionReason.INVALID_JSON, f"data is not valid JSON: {first['msg']}")
    reason = _PYDANTIC_ERROR_REASONS.get(first["type"], RejectionReason.INVALID_FIELD)
    if first["loc"] == ("timestamp",) and reason is RejectionReason.INVALID_FIELD:
        reason = RejectionReason.INVALID_TIMESTAMP
    elif first["type"] == "string_too_long" and first["loc"][0] in _IDENTIFIER_FIELDS:
        reason = RejectionReason.IDENTIFIER_TOO_LONG
    return reject(reason, _describe(details))


def _describe(details: list[ErrorDetails]) -> str:
    parts = []
    for detail in details[:5]:
        location = ".".join(str(part) for part in detail["loc"]) or "<record>"
        parts.append(f"{location}: {detail['msg']} [{detail['type']}]")
    more = len(details) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _check_rules(
    event: ExperimentEvent,
    payload: bytes,
    event_us: int,
    limits: EventLimits,
    now: datetime,
    earliest_us: int,
    latest_us: int,
) -> tuple[RejectionReason, str] | None:
    """The rules the model cannot state, in order: keys the archive's readers can tell apart,
    the time window, identifiers and values every store can hold, then JSON that every reader
    accepts."""
    extra = event.__pydantic_extra__
    problem = _key_problem(payload, extra)
    if problem is not None:
        return problem
    # In exact integer microseconds: comparing pydantic's `TzInfo` datetimes calls back into
    # Python for their offsets.
    if event_us > latest_us:
        return (
            RejectionReason.FUTURE_TIMESTAMP,
            f"timestamp {event.timestamp.isoformat()} is more than "
            f"{limits.max_future_skew} after {now.isoformat()}",
        )
    if event_us < earliest_us:
        return (
            RejectionReason.TIMESTAMP_OUT_OF_RANGE,
            f"timestamp {event.timestamp.isoformat()} is before the earliest event time "
            f"accepted, {limits.earliest_event_time.isoformat()}",
        )
    for name in _IDENTIFIER_FIELDS:
        identifier = getattr(event, name)
        if identifier is not None:
            too_long = identifier_problem(name, identifier)
            if too_long is not None:
                return RejectionReason.IDENTIFIER_TOO_LONG, too_long
    if event.value is not None:
        problem = _value_problem(event.value)
        if problem is not None:
            return problem
    if extra:
        for value in extra.values():
            if type(value) not in _LEAF_TYPES:
                problem = _check_json_value(value, depth=1, limits=limits)
                if problem is not None:
                    return problem
    properties = event.properties
    if properties is not None:
        if limits.max_nesting_depth < 1:
            return _check_json_value(properties, depth=1, limits=limits)
        # Most properties are leaves: only the others cost a call.
        for value in properties.values():
            if type(value) not in _LEAF_TYPES:
                return _check_json_value(properties, depth=1, limits=limits)
    return None


def _value_problem(value: float) -> tuple[RejectionReason, str] | None:
    if value == 0 or _PLAIN_MIN <= abs(value) < _PLAIN_MAX:
        return None
    if abs(value) >= _PLAIN_MAX:
        return (
            RejectionReason.VALUE_OUT_OF_RANGE,
            f"value {value!r} is not below {VALUE_MAX_MAGNITUDE:.0e} in magnitude",
        )
    exponent = to_decimal(value).as_tuple().exponent
    assert isinstance(exponent, int)  # a finite number: the model refuses NaN and Infinity
    if -exponent > VALUE_MAX_FRACTION_DIGITS:
        return (
            RejectionReason.VALUE_OUT_OF_RANGE,
            f"value {value!r} has {-exponent} digits after the decimal point, "
            f"at most {VALUE_MAX_FRACTION_DIGITS}",
        )
    return None


def _key_problem(
    payload: bytes, extra: dict[str, object] | None
) -> tuple[RejectionReason, str] | None:
    """Keys every reader of the archive can tell apart: none written twice in one object, at
    any depth, and none equal to another but for case (Athena's JSON SerDe folds case), the
    reserved field in no case at all."""
    if extra:
        for name in extra:
            if name.lower() == RESERVED_FIELD:
                return (
                    RejectionReason.RESERVED_FIELD,
                    f"top-level field {name!r} is reserved ({RESERVED_FIELD!r} in any case)",
                )
    try:
        parsed = jiter.from_json(payload, catch_duplicate_keys=True, cache_mode="keys")
    except ValueError as error:
        if "duplicate key" in str(error):
            return RejectionReason.DUPLICATE_KEY, f"a key is written twice: {error}"
        return None  # the model accepted it: any other complaint is not about keys
    collision = _case_collision(parsed)
    if collision is not None:
        return (
            RejectionReason.DUPLICATE_KEY,
            f"keys {collision[0]!r} and {collision[1]!r} differ only in case",
        )
    if extra:
        for name in extra:
            field = _FIELDS_BY_LOWER_NAME.get(name.lower())
            if field is not None:
                # Athena's SerDe would read it as the field the pipeline found absent.
                return (
                    RejectionReason.RESERVED_FIELD,
                    f"top-level field {name!r} is the contract's field {field!r} in another case",
                )
    return None


_FIELDS_BY_LOWER_NAME = {name.lower(): name for name in ExperimentEvent.model_fields}


def _case_collision(value: object) -> tuple[str, str] | None:
    """Two keys of one object, at any depth, that are equal ignoring case."""
    if isinstance(value, dict):
        if len(value) > 1:
            first_of: dict[str, str] = {}
            for name in value:
                lowered = name.lower()
                other = first_of.setdefault(lowered, name)
                if other != name:
                    return other, name
        children: Iterable[object] = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return None
    for child in children:
        if type(child) not in _LEAF_TYPES:
            collision = _case_collision(child)
            if collision is not None:
                return collision
    return None


_LEAF_TYPES: frozenset[type] = frozenset({str, int, bool, type(None)})
"""Values that can be neither non-finite nor nested: skipped without a call (most of them)."""


def _check_json_value(
    value: object, depth: int, limits: EventLimits
) -> tuple[RejectionReason, str] | None:
    """Reject NaN/Infinity (valid in no JSON consumer downstream) and runaway nesting."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return RejectionReason.NON_FINITE_NUMBER, f"non-finite number {value!r} in payload"
        return None
    if isinstance(value, dict | list):
        if depth > limits.max_nesting_depth:
            return (
                RejectionReason.TOO_DEEPLY_NESTED,
                f"nesting deeper than {limits.max_nesting_depth} levels",
            )
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if type(child) in _LEAF_TYPES:
                continue
            problem = _check_json_value(child, depth + 1, limits)
            if problem is not None:
                return problem
    return None
