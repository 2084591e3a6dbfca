"""Turns a raw Kinesis record into an accepted event or a dead letter (base64 -> UTF-8 -> JSON)."""

from __future__ import annotations

import binascii
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone, tzinfo
from functools import partial

from pybase64 import b64decode
from pydantic import ValidationError
from pydantic_core import ErrorDetails, TzInfo

from domain.event_rules import (
    IDENTIFIER_FIELDS,
    LEAF_TYPES,
    PLAIN_MAX,
    PLAIN_MIN,
    check_rules,
)
from domain.events import (
    AcceptedColumns,
    AcceptedEvent,
    EventLimits,
    ExperimentEvent,
)
from domain.records import RawRecord
from domain.rejections import DeadLetter, RejectionReason
from domain.time import EPOCH, MICROSECOND

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
    problem = check_rules(
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
    rejected: list[tuple[int, DeadLetter]] = []
    take = _FastPath(limits, now, accepted).take
    for position in positions:
        record = records[position]
        taken = take(record)
        if taken is True:
            continue
        outcome = decode_record(record, limits, now) if taken is False else taken
        if isinstance(outcome, AcceptedEvent):
            accepted.append(outcome)
        else:
            rejected.append((position, outcome))
    return accepted, rejected


class _FastPath:
    """`decode_record` for the common record, without building an `AcceptedEvent`: `take`
    appends an accepted event to the columns (True), gives a refused one's dead letter, or
    False where the record is not a plain case and `decode_record` must give the outcome."""

    __slots__ = (
        "_coordinates",
        "_earliest_us",
        "_events",
        "_latest_us",
        "_leaves_are_flat",
        "_limits",
        "_max_bytes",
        "_max_text",
        "_now",
        "_payloads",
        "_times",
        "_zone",
        "_zone_epoch",
        "_zone_offset_us",
    )

    def __init__(self, limits: EventLimits, now: datetime, accepted: AcceptedColumns) -> None:
        # Bound once: an accepted event costs four appends and no object of its own.
        self._events = accepted.events.append
        self._payloads = accepted.payloads.append
        self._coordinates = accepted.coordinates.append
        self._times = accepted.times_us.append
        self._limits = limits
        self._now = now
        self._max_bytes = limits.max_record_bytes
        # `len(text) // 4 * 3 <= max_bytes + 2`, decode_record's bound on the base64 text.
        self._max_text = 4 * ((self._max_bytes + 2) // 3 + 1)
        self._latest_us = _latest_us(limits, now)
        self._earliest_us = _earliest_us(limits)
        self._leaves_are_flat = limits.max_nesting_depth >= 1
        # The epoch in the time zone of the last event, and that zone's offset: pydantic hands
        # out one tzinfo object per offset, and the difference of two datetimes sharing one is
        # plain arithmetic, where comparing across zones calls the tzinfo's utcoffset.
        self._zone: tzinfo | None = None
        self._zone_epoch = EPOCH
        self._zone_offset_us = 0

    def take(self, record: RawRecord) -> bool | DeadLetter:
        text = record.data
        if len(text) >= self._max_text:
            return False
        try:
            payload = b64decode(text, validate=True)
            event: ExperimentEvent = _VALIDATE_JSON(payload)
        except ValueError:  # binascii.Error, ValidationError: decode_record gives the reason
            return False
        if len(payload) > self._max_bytes:
            return False
        moment = event.timestamp
        if moment.tzinfo is self._zone:  # inline: the common case costs no call
            event_us = (moment - self._zone_epoch) // MICROSECOND - self._zone_offset_us
        else:
            event_us = self._microseconds(moment)
        if not self._is_plain(event, payload, event_us):
            problem = check_rules(
                event,
                payload,
                event_us,
                self._limits,
                self._now,
                self._earliest_us,
                self._latest_us,
            )
            if problem is not None:
                return _reject(record, *problem)
        self._events(event)
        self._payloads(payload)
        self._coordinates(record.coordinates)
        self._times(event_us)
        return True

    def _microseconds(self, moment: datetime) -> int:
        """The moment in microseconds since the epoch; its zone becomes the one remembered."""
        offset = moment.utcoffset()
        if offset is not None and type(moment.tzinfo) in _FIXED_OFFSET_ZONES:
            self._zone = moment.tzinfo
            self._zone_epoch = EPOCH.replace(tzinfo=self._zone)
            self._zone_offset_us = offset // MICROSECOND
        return (moment - EPOCH) // MICROSECOND

    def _is_plain(self, event: ExperimentEvent, payload: bytes, event_us: int) -> bool:
        """Every rule holds, each by a cheap sufficient test (see `check_rules` for the rules
        themselves). An ASCII payload without a backslash has no escapes: its identifiers are
        one byte a character (<= 256 by the model). Every '"' of such a payload delimits a
        string, a key or a string value: with exactly two per key and string value the parser
        kept, no key was written twice. Top-level keys are the model's own (no extras),
        distinct in any case; property keys are lower case, so distinct in any case too."""
        value = event.value
        if not (
            self._earliest_us <= event_us <= self._latest_us
            and not event.__pydantic_extra__
            and (value is None or value == 0 or PLAIN_MIN <= abs(value) < PLAIN_MAX)
            and payload.isascii()
            and b"\\" not in payload
        ):
            return False
        strings = (
            len(event.__pydantic_fields_set__)
            + _REQUIRED_STRINGS
            + (event.experiment_id is not None)
            + (event.variant_id is not None)
            + (event.session_id is not None)
            + (type(event.schema_version) is str)
        )
        properties = event.properties
        if properties is not None:
            kinds = list(map(type, properties.values()))
            if not (
                self._leaves_are_flat
                and LEAF_TYPES.issuperset(kinds)
                and all(map(str.islower, properties))
            ):
                return False
            strings += len(kinds) + kinds.count(str)
        return payload.count(b'"') == 2 * strings


_VALIDATE_JSON = ExperimentEvent.__pydantic_validator__.validate_json


def _latest_us(limits: EventLimits, now: datetime) -> int:
    """The latest event time accepted, as `AcceptedEvent.event_time_us`."""
    return (now + limits.max_future_skew - EPOCH) // MICROSECOND


def _earliest_us(limits: EventLimits) -> int:
    """The earliest event time accepted, as `AcceptedEvent.event_time_us`."""
    return (limits.earliest_event_time - EPOCH) // MICROSECOND


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
    elif first["type"] == "string_too_long" and first["loc"][0] in IDENTIFIER_FIELDS:
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
