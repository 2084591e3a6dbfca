"""The bad-record catalogue: every kind is refused by the decoder with the reason it claims."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.decoding import decode_record
from domain.events import EventLimits
from domain.records import KinesisCoordinates, RawRecord
from domain.rejections import CONTRACT_REASONS, DeadLetter
from operations.synthetic.bad_records import (
    SQS_MESSAGE_LIMIT,
    BadRecord,
    bad_record_catalogue,
    stream_safe_catalogue,
)

MOMENT = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
NOW = MOMENT + timedelta(days=3)
CATALOGUE = bad_record_catalogue(MOMENT)


@pytest.mark.parametrize("bad", CATALOGUE, ids=[b.kind for b in CATALOGUE])
def test_each_bad_record_is_rejected_with_its_expected_reason(bad: BadRecord) -> None:
    record = RawRecord(KinesisCoordinates("shardId-0", "7", "pk", 0.0), bad.data)
    outcome = decode_record(record, EventLimits(), NOW)
    assert isinstance(outcome, DeadLetter), bad.kind
    assert outcome.reason is bad.reason
    assert outcome.data == bad.data


def test_the_catalogue_has_at_least_thirty_kinds_covering_every_reason_of_the_contract() -> None:
    kinds = [b.kind for b in CATALOGUE]
    assert len(kinds) >= 30
    assert len(set(kinds)) == len(kinds)
    assert {b.reason for b in CATALOGUE} == CONTRACT_REASONS


def test_only_invalid_base64_cannot_travel_through_kinesis() -> None:
    unsafe = {b.kind for b in CATALOGUE if not b.stream_safe}
    assert unsafe == {"invalid_base64"}
    assert all(b.payload for b in stream_safe_catalogue(MOMENT)), "Kinesis refuses empty data"


def test_an_oversize_record_cannot_fit_an_sqs_message() -> None:
    oversize = next(b for b in CATALOGUE if b.kind == "oversize_beyond_sqs_limit")
    assert len(oversize.payload) > SQS_MESSAGE_LIMIT
    assert len(oversize.payload) < 1024 * 1024, "a Kinesis record holds at most 1 MiB"
