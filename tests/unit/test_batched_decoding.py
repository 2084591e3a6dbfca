"""The batch decoder's fast path gives, record for record, what `decode_record` gives."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime, timedelta

import pybase64
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.decoding import decode_record, decode_records
from domain.events import AcceptedEvent, EventLimits
from domain.records import KinesisCoordinates, RawRecord
from operations.synthetic.bad_records import bad_record_catalogue

MOMENT = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
NOW = MOMENT + timedelta(days=3)
CATALOGUE = bad_record_catalogue(MOMENT)
BASE64_TEXT = st.text(
    alphabet=st.sampled_from(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n\r.é"
    ),
    max_size=40,
)


def _decoded_by_binascii(text: str) -> bytes | None:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return None


@settings(max_examples=2_000, deadline=None)
@given(
    text=st.one_of(
        BASE64_TEXT,
        st.binary(max_size=30).map(lambda data: base64.b64encode(data).decode()),
        st.tuples(st.binary(max_size=30), BASE64_TEXT, st.integers(0, 40)).map(
            lambda t: (lambda e: e[: t[2]] + t[1] + e[t[2] :])(base64.b64encode(t[0]).decode())
        ),
    )
)
def test_what_pybase64_accepts_strict_binascii_accepts_as_the_same_bytes(text: str) -> None:
    try:
        fast = pybase64.b64decode(text, validate=True)
    except ValueError:
        return  # refused: the record goes through decode_record, which uses binascii
    assert _decoded_by_binascii(text) == fast


def _record(data: str, sequence: int) -> RawRecord:
    return RawRecord(KinesisCoordinates("shardId-0", str(sequence), "pk", 1.5), data)


def _valid_payload(draw: st.DrawFn) -> bytes:
    event: dict[str, object] = {
        "event_id": draw(st.sampled_from(["e-1", "e-2", "ë", ""])),
        "event_type": draw(st.sampled_from(["click", "purchase", "Bad"])),
        "user_id": "u-1",
        "timestamp": draw(
            st.sampled_from(
                [
                    "2026-11-20T11:30:00Z",
                    "2026-11-21T12:30:00+01:00",
                    "2026-11-21T06:00:00.5-05:30",
                    "2026-11-20T11:30:00+00:00",
                    "2026-11-21T13:00:00.000001Z",  # beyond the skew
                    "2026-11-21T13:00:00Z",  # at the bound
                    "1969-12-31T23:59:59.999999Z",
                    "2026-11-20T11:30:00",
                ]
            )
        ),
    }
    if draw(st.booleans()):
        event["properties"] = draw(
            st.sampled_from(
                [{"a": 1}, {"a": [1, {"b": 2}]}, {"a": 1.5}, {}, {"deep": [[[[[[[[[1]]]]]]]]]}]
            )
        )
    if draw(st.booleans()):
        event[draw(st.sampled_from(["extra", "_pipeline"]))] = draw(
            st.sampled_from([1, "x", [1, 2], {"k": {"k": 1}}])
        )
    if draw(st.booleans()):
        event["value"] = draw(st.sampled_from([1, 2.5, "3"]))
    text = json.dumps(event)
    if draw(st.booleans()):
        text = text.replace(": ", ":\n ") + draw(st.sampled_from(["", " ", "\n"]))
    return text.encode()


@st.composite
def records(draw: st.DrawFn) -> list[RawRecord]:
    items = []
    for sequence in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            data = base64.b64encode(_valid_payload(draw)).decode()
        elif kind == 1:
            data = draw(st.sampled_from(CATALOGUE)).data
        elif kind == 2:
            data = draw(BASE64_TEXT)
        else:
            data = base64.b64encode(draw(st.binary(max_size=40))).decode()
        items.append(_record(data, sequence))
    return items


@settings(max_examples=400, deadline=None)
@given(
    batch=records(),
    limits=st.sampled_from(
        [EventLimits(), EventLimits(max_record_bytes=120), EventLimits(max_nesting_depth=0)]
    ),
    reverse=st.booleans(),
)
def test_decoding_a_batch_gives_what_decoding_each_record_gives(
    batch: list[RawRecord], limits: EventLimits, reverse: bool
) -> None:
    positions = list(range(len(batch)))[:: -1 if reverse else 1]
    accepted, rejected = decode_records(batch, positions, limits, NOW)

    expected = [(position, decode_record(batch[position], limits, NOW)) for position in positions]
    assert accepted.rows() == [o for _, o in expected if isinstance(o, AcceptedEvent)]
    assert accepted.times_us == [
        o.event_time_us for _, o in expected if isinstance(o, AcceptedEvent)
    ]
    assert rejected == [(p, o) for p, o in expected if not isinstance(o, AcceptedEvent)]


def test_every_catalogued_bad_record_is_rejected_by_the_batch_decoder_as_by_the_record_one() -> (
    None
):
    batch = [_record(bad.data, sequence) for sequence, bad in enumerate(CATALOGUE)]
    _, rejected = decode_records(batch, range(len(batch)), EventLimits(), NOW)
    assert [letter.reason for _, letter in rejected] == [bad.reason for bad in CATALOGUE]


@settings(max_examples=500, deadline=None)
@given(
    keys=st.lists(
        st.sampled_from(["user_id", "USER_ID", "a", "A", "_pipeline", "_Pipeline", "x\u00e9"]),
        max_size=4,
    ),
    in_properties=st.booleans(),
    separator=st.sampled_from([":", " :", ": ", "\n:"]),
    value=st.sampled_from(["1", '"v"', '"a\\":b"', "1e-300", "1e300", '"\\u00e9"']),
)
def test_hand_written_keys_are_judged_by_the_batch_decoder_as_by_the_record_one(
    keys: list[str], in_properties: bool, separator: str, value: str
) -> None:
    fields = [
        f'"event_id"{separator}"e"',
        f'"event_type"{separator}"click"',
        f'"user_id"{separator}"u"',
        f'"timestamp"{separator}"2026-11-20T11:00:00Z"',
    ]
    extra = [f'"{key}"{separator}{value}' for key in keys]
    if in_properties:
        fields.append(f'"properties"{separator}{{' + ",".join(extra) + "}")
    else:
        fields.extend(extra)
    payload = ("{" + ",".join(fields) + "}").encode()
    record = RawRecord(
        KinesisCoordinates("shardId-0", "1", "pk", 0.0), base64.b64encode(payload).decode()
    )
    expected = decode_record(record, EventLimits(), NOW)
    accepted, rejected = decode_records([record], [0], EventLimits(), NOW)
    if isinstance(expected, AcceptedEvent):
        assert accepted.rows() == [expected]
    else:
        assert [letter for _, letter in rejected] == [expected]
