"""What the stores and readers downstream accept. The event contract is derived from these
numbers, so that whatever validation accepts can be counted, stored and read everywhere.

The figures are AWS's documented limits; where moto does not enforce one, the tests apply it
(see tests/dynamodb_limits.py)."""

from __future__ import annotations

import decimal
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
SQS_MESSAGE_BYTES = 256 * 1024

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
        decimal.Rounded,
    ],
)
"""Decimal arithmetic as DynamoDB stores numbers, except that nothing is ever rounded: a sum
that would need more than 38 significant digits, or leave DynamoDB's range, raises
(`decimal.Inexact`, `decimal.Overflow`, ...) instead of being silently rounded."""


def dynamodb_number_problem(value: Decimal) -> str | None:
    """Why DynamoDB would refuse `value` as a number, or None when it is storable."""
    if not value.is_finite():
        return f"{value} is not a finite number"
    if value.is_zero():
        return None
    digits = len(value.normalize(decimal.Context(prec=1000)).as_tuple().digits)
    if digits > DYNAMODB_NUMBER_DIGITS:
        return f"{value} has {digits} significant digits, more than {DYNAMODB_NUMBER_DIGITS}"
    magnitude = value.copy_abs()
    if magnitude.adjusted() > DYNAMODB_NUMBER_MAX_EXPONENT:
        return f"{value} is larger in magnitude than DynamoDB's range (9.99E+125)"
    if magnitude.adjusted() < DYNAMODB_NUMBER_MIN_EXPONENT:
        return f"{value} is smaller in magnitude than DynamoDB's range (1E-130)"
    return None


def utf8_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))
