"""What the stores and readers downstream accept. The event contract is derived from these
numbers, so that whatever validation accepts can be counted, stored and read everywhere.

The figures are AWS's documented limits; where moto does not enforce one, the tests apply it
(see tests/dynamodb_limits.py)."""

from __future__ import annotations

import decimal
from collections.abc import Iterable
from decimal import Decimal

DYNAMODB_PARTITION_KEY_BYTES = 2048
DYNAMODB_SORT_KEY_BYTES = 1024
DYNAMODB_ITEM_BYTES = 400 * 1024
DYNAMODB_NUMBER_DIGITS = 38
DYNAMODB_NUMBER_MAX_EXPONENT = 125
"""The largest magnitude is 9.9999999999999999999999999999999999999E+125."""
DYNAMODB_NUMBER_MIN_EXPONENT = -130
"""The smallest non-zero magnitude is 1E-130."""
S3_KEY_BYTES = 1024
S3_METADATA_BYTES = 2 * 1024
"""User-defined metadata of one object: the UTF-8 bytes of every name and value, summed."""
SQS_MESSAGE_BYTES = 256 * 1024
"""A message's body and attributes (names, types and values), in bytes."""
KINESIS_SHARD_ID_CHARS = 128
KINESIS_SEQUENCE_NUMBER_DIGITS = 129
"""Kinesis's API: a shard id has at most 128 characters of `[a-zA-Z0-9_.-]`, a sequence number
at most 129 decimal digits. The S3 keys built from them are bounded by these."""

COUNTER_CONTEXT = decimal.Context(
    prec=DYNAMODB_NUMBER_DIGITS,
    Emax=DYNAMODB_NUMBER_MAX_EXPONENT,
    Emin=DYNAMODB_NUMBER_MIN_EXPONENT,
    traps=[
        decimal.InvalidOperation,
        decimal.DivisionByZero,
        decimal.Overflow,
        decimal.Underflow,
        decimal.Subnormal,
        decimal.Inexact,
    ],
)
"""Decimal arithmetic as DynamoDB stores numbers, except that nothing is ever rounded: a sum
that would need more than 38 significant digits, or leave DynamoDB's range, raises
(`decimal.Inexact`, `decimal.Overflow`, ...) instead of being silently rounded. (`Rounded` alone
is not a loss: 0 + 5E+125 drops only zeros.)"""


NUMBER_OVERFLOW = (
    "Number overflow. Attempting to store a number with magnitude larger than supported range"
)
NUMBER_UNDERFLOW = (
    "Number underflow. Attempting to store a number with magnitude smaller than supported range"
)
NUMBER_PRECISION = "Attempting to store more than 38 significant digits in a Number"


def dynamodb_number_problem(value: Decimal) -> str | None:
    """DynamoDB's words for refusing `value` as a number, or None when it is storable."""
    if not value.is_finite():
        return f"{value} is not a finite number"
    if value.is_zero():
        return None
    digits = len(value.normalize(decimal.Context(prec=1000)).as_tuple().digits)
    if digits > DYNAMODB_NUMBER_DIGITS:
        return NUMBER_PRECISION
    if value.adjusted() > DYNAMODB_NUMBER_MAX_EXPONENT:
        return NUMBER_OVERFLOW
    if value.adjusted() < DYNAMODB_NUMBER_MIN_EXPONENT:
        return NUMBER_UNDERFLOW
    return None


_WIDE = decimal.Context(prec=1_000, Emax=999_999, Emin=-999_999)
"""Wide enough to add any numbers the stores could be asked to hold, exactly."""


def counter_sum_problem(*terms: Decimal) -> str | None:
    """DynamoDB's words for refusing the sum of `terms` (or a term itself), or None: what a
    counter's `ADD` of these terms would store."""
    total = Decimal(0)
    for term in terms:
        problem = dynamodb_number_problem(term)
        if problem is not None:
            return problem
        total = _WIDE.add(total, term)
    return dynamodb_number_problem(total)


def delta_sum_problem(values: Iterable[Decimal | None]) -> str | None:
    """DynamoDB's words for refusing the sum of `values` (a counter update's operand), or None:
    what `COUNTER_CONTEXT` would raise on, named."""
    checking = COUNTER_CONTEXT.copy()
    checking.traps = dict.fromkeys(checking.traps, False)
    checking.clear_flags()
    total = Decimal(0)
    for value in values:
        if value is not None:
            total = checking.add(total, value)
    flags = checking.flags
    if flags[decimal.Overflow]:
        return NUMBER_OVERFLOW
    if flags[decimal.Underflow] or flags[decimal.Subnormal]:
        return NUMBER_UNDERFLOW
    if flags[decimal.Inexact] or flags[decimal.InvalidOperation]:
        return NUMBER_PRECISION
    return None


def utf8_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))
