"""Records that can never succeed, and the machine-readable reasons why."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from domain.records import KinesisCoordinates


class Stage(StrEnum):
    DECODE = "decode"
    PARSE = "parse"
    VALIDATE = "validate"


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
}


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
