"""The dead-letter message format: what is written reads back as the same letter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.records import KinesisCoordinates
from domain.rejections import DeadLetter, RejectionReason
from infrastructure.aws.dead_letter_format import (
    DataLocation,
    MalformedDeadLetterError,
    dead_letter_key,
    decode_letter,
    encode_letter,
)

WHEN = datetime(2026, 11, 20, 12, 0, 0, 123000, tzinfo=UTC)

letters = st.builds(
    DeadLetter,
    st.sampled_from(list(RejectionReason)),
    st.text(),
    st.builds(
        KinesisCoordinates,
        st.from_regex(r"shardId-[0-9]{12}", fullmatch=True),
        st.integers(min_value=0, max_value=10**56).map(str),
        st.text(min_size=1, max_size=256),
        st.floats(min_value=0, max_value=4e9, allow_nan=False),
    ),
    st.text(),
)


@given(letters)
def test_every_letter_reads_back_as_itself_from_ascii_json(letter: DeadLetter) -> None:
    body = encode_letter(letter, WHEN)

    envelope = decode_letter(body)

    assert body.isascii()
    assert envelope.letter() == letter
    assert envelope.dead_lettered_at == WHEN
    assert envelope.data_location is None


def test_a_pointer_letter_carries_its_location_instead_of_its_data() -> None:
    letter = DeadLetter(
        RejectionReason.RECORD_TOO_LARGE,
        "too large",
        KinesisCoordinates("shardId-000000000003", "42", "pk", 1.5),
        "QUJD",
    )

    envelope = decode_letter(encode_letter(letter, WHEN, DataLocation("bucket", "key.json")))

    assert envelope.data is None
    assert envelope.data_location == DataLocation("bucket", "key.json")
    assert envelope.letter("QUJD") == letter
    with pytest.raises(MalformedDeadLetterError):
        envelope.letter()


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"format_version": "2"}',
        b'{"format_version": "1", "reason": "invalid_json"}',
        b'{"format_version": "1", "reason": "no_such_reason", "detail": "", "kinesis": {}}',
    ],
)
def test_anything_else_is_refused_as_malformed(body: bytes) -> None:
    with pytest.raises(MalformedDeadLetterError):
        decode_letter(body)


def test_the_key_is_dated_by_arrival_and_ordered_by_sequence() -> None:
    arrived = datetime(2026, 1, 2, 23, 59, tzinfo=UTC).timestamp()
    letter = DeadLetter(
        RejectionReason.INVALID_JSON, "", KinesisCoordinates("shardId-1", "77", "pk", arrived), ""
    )

    key = dead_letter_key("dead-letters/", letter)

    assert key == f"dead-letters/year=2026/month=01/day=02/shardId-1-{'77'.rjust(64, '0')}.json"
