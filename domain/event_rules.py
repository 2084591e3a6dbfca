"""The rules of an event that its model cannot state: keys every archive reader can tell apart,
the accepted time window, identifiers and values every store can hold, JSON every reader accepts."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime

import jiter

from domain.events import (
    RESERVED_FIELD,
    VALUE_MAX_FRACTION_DIGITS,
    VALUE_MAX_MAGNITUDE,
    EventLimits,
    ExperimentEvent,
    identifier_problem,
)
from domain.metrics import to_decimal
from domain.rejections import RejectionReason

Problem = tuple[RejectionReason, str]
"""Why an event is refused: the reason and a detail for the dead letter."""

PLAIN_MIN = 0.01
"""A double of at least this magnitude has at most 18 digits after the point in its shortest
repr (17 significant digits, at most one zero after the point): no exact check needed."""
PLAIN_MAX = float(VALUE_MAX_MAGNITUDE)

IDENTIFIER_FIELDS = ("event_id", "user_id", "experiment_id", "variant_id", "session_id")


def check_rules(
    event: ExperimentEvent,
    payload: bytes,
    event_us: int,
    limits: EventLimits,
    now: datetime,
    earliest_us: int,
    latest_us: int,
) -> Problem | None:
    """The rules the model cannot state, in order: keys the archive's readers can tell apart,
    the time window, identifiers and values every store can hold, then JSON that every reader
    accepts."""
    return (
        _key_problem(payload, event.__pydantic_extra__)
        or _time_problem(event, event_us, limits, now, earliest_us, latest_us)
        or _identifier_problem(event)
        or (None if event.value is None else _value_problem(event.value))
        or _json_problem(event, limits)
    )


def _time_problem(
    event: ExperimentEvent,
    event_us: int,
    limits: EventLimits,
    now: datetime,
    earliest_us: int,
    latest_us: int,
) -> Problem | None:
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
    return None


def _identifier_problem(event: ExperimentEvent) -> Problem | None:
    for name in IDENTIFIER_FIELDS:
        identifier = getattr(event, name)
        if identifier is not None:
            too_long = identifier_problem(name, identifier)
            if too_long is not None:
                return RejectionReason.IDENTIFIER_TOO_LONG, too_long
    return None


def _json_problem(event: ExperimentEvent, limits: EventLimits) -> Problem | None:
    """Values no JSON reader downstream accepts (non-finite numbers) and runaway nesting."""
    extra = event.__pydantic_extra__
    if extra:
        for value in extra.values():
            if type(value) not in LEAF_TYPES:
                problem = _check_json_value(value, depth=1, limits=limits)
                if problem is not None:
                    return problem
    properties = event.properties
    if properties is not None:
        if limits.max_nesting_depth < 1:
            return _check_json_value(properties, depth=1, limits=limits)
        # Most properties are leaves: only the others cost a call.
        for value in properties.values():
            if type(value) not in LEAF_TYPES:
                return _check_json_value(properties, depth=1, limits=limits)
    return None


def _value_problem(value: float) -> Problem | None:
    if value == 0 or PLAIN_MIN <= abs(value) < PLAIN_MAX:
        return None
    if abs(value) >= PLAIN_MAX:
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


def _key_problem(payload: bytes, extra: dict[str, object] | None) -> Problem | None:
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
        if type(child) not in LEAF_TYPES:
            collision = _case_collision(child)
            if collision is not None:
                return collision
    return None


LEAF_TYPES: frozenset[type] = frozenset({str, int, bool, type(None)})
"""Values that can be neither non-finite nor nested: skipped without a call (most of them)."""


def _check_json_value(value: object, depth: int, limits: EventLimits) -> Problem | None:
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
            if type(child) in LEAF_TYPES:
                continue
            problem = _check_json_value(child, depth + 1, limits)
            if problem is not None:
                return problem
    return None
