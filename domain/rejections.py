"""Records that can never succeed, and the machine-readable reasons why."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from domain.records import KinesisCoordinates


class Stage(StrEnum):
    DECODE = "decode"
    PARSE = "parse"
    VALIDATE = "validate"
    PROCESS = "process"
    """A pure stage raised from the record's values (defence in depth: the contract should
    have refused it)."""
    STORE = "store"
    """A store refused the record's data for good (defence in depth, as above)."""


class RejectionReason(StrEnum):
    EMPTY_RECORD = "empty_record"
    RECORD_TOO_LARGE = "record_too_large"
    INVALID_BASE64 = "invalid_base64"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    NAIVE_TIMESTAMP = "naive_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    NON_FINITE_NUMBER = "non_finite_number"
    TOO_DEEPLY_NESTED = "too_deeply_nested"
    RESERVED_FIELD = "reserved_field"
    DUPLICATE_KEY = "duplicate_key"
    INVALID_TIMESTAMP = "invalid_timestamp"
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    IDENTIFIER_TOO_LONG = "identifier_too_long"
    UNPROCESSABLE = "unprocessable"
    UNSTORABLE = "unstorable"


STAGE_OF_REASON: dict[RejectionReason, Stage] = {
    RejectionReason.EMPTY_RECORD: Stage.DECODE,
    RejectionReason.RECORD_TOO_LARGE: Stage.DECODE,
    RejectionReason.INVALID_BASE64: Stage.DECODE,
    RejectionReason.INVALID_UTF8: Stage.DECODE,
    RejectionReason.INVALID_JSON: Stage.PARSE,
    RejectionReason.NOT_AN_OBJECT: Stage.PARSE,
    RejectionReason.MISSING_FIELD: Stage.VALIDATE,
    RejectionReason.INVALID_FIELD: Stage.VALIDATE,
    RejectionReason.NAIVE_TIMESTAMP: Stage.VALIDATE,
    RejectionReason.FUTURE_TIMESTAMP: Stage.VALIDATE,
    RejectionReason.NON_FINITE_NUMBER: Stage.VALIDATE,
    RejectionReason.TOO_DEEPLY_NESTED: Stage.VALIDATE,
    RejectionReason.RESERVED_FIELD: Stage.VALIDATE,
    RejectionReason.DUPLICATE_KEY: Stage.VALIDATE,
    RejectionReason.INVALID_TIMESTAMP: Stage.VALIDATE,
    RejectionReason.TIMESTAMP_OUT_OF_RANGE: Stage.VALIDATE,
    RejectionReason.VALUE_OUT_OF_RANGE: Stage.VALIDATE,
    RejectionReason.IDENTIFIER_TOO_LONG: Stage.VALIDATE,
    RejectionReason.UNPROCESSABLE: Stage.PROCESS,
    RejectionReason.UNSTORABLE: Stage.STORE,
}


DEFENCE_IN_DEPTH_REASONS: frozenset[RejectionReason] = frozenset(
    {RejectionReason.UNPROCESSABLE, RejectionReason.UNSTORABLE}
)
"""Reasons no input reaches while the contract holds: a stage or a store refused what the
contract accepted."""

CONTRACT_REASONS: frozenset[RejectionReason] = frozenset(RejectionReason) - DEFENCE_IN_DEPTH_REASONS
"""The reasons the contract itself gives (decode, parse, validate)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A permanently invalid record, kept whole with why it was refused."""

    reason: RejectionReason
    detail: str
    coordinates: KinesisCoordinates
    data: str

    @property
    def stage(self) -> Stage:
        return STAGE_OF_REASON[self.reason]

    @property
    def sequence(self) -> int:
        return self.coordinates.sequence
