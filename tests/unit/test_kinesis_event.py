from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from entrypoints.kinesis_event import MalformedEventError, raw_records


def kinesis_event(*sequences: str, shard: str = "shardId-000000000003") -> dict[str, object]:
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": f"pk-{seq}",
                    "sequenceNumber": seq,
                    "data": base64.b64encode(b'{"a": 1}').decode(),
                    "approximateArrivalTimestamp": 1732617600.123,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard}:{seq}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/processor",
                "awsRegion": "eu-west-1",
                "eventSourceARN": "arn:aws:kinesis:eu-west-1:123456789012:stream/events",
            }
            for seq in sequences
        ]
    }


def test_reads_shard_sequence_partition_key_arrival_and_data_of_every_record() -> None:
    big = "49590338271490256608559692538361571095921575989136588898"
    records = raw_records(kinesis_event("1", big))
    assert [r.coordinates.sequence for r in records] == [1, int(big)]
    first = records[0].coordinates
    assert (first.shard_id, first.partition_key, first.approximate_arrival_timestamp) == (
        "shardId-000000000003",
        "pk-1",
        1732617600.123,
    )
    assert base64.b64decode(records[0].data) == b'{"a": 1}'


def test_an_empty_batch_has_no_records() -> None:
    assert raw_records({"Records": []}) == []


def test_a_payload_that_is_not_a_kinesis_event_is_refused_loudly() -> None:
    with pytest.raises(MalformedEventError):
        raw_records({"body": "from somewhere else"})


def sqs_event() -> dict[str, object]:
    return {
        "Records": [
            {
                "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
                "body": "test",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:my-queue",
            }
        ]
    }


def with_second_record(change: Callable[[dict[str, Any]], None]) -> dict[str, object]:
    event = kinesis_event("1", "2")
    records = event["Records"]
    assert isinstance(records, list)
    change(records[1])
    return event


def without(field: str) -> Callable[[dict[str, Any]], None]:
    return lambda record: record["kinesis"].pop(field)


def setting(field: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda record: record["kinesis"].__setitem__(field, value)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"Records": "x"}, "'Records' is not a list"),
        (sqs_event(), "record 0 has no 'kinesis' field: an aws:sqs record"),
        ({"Records": [7]}, "record 0 is int, not an object"),
        (with_second_record(lambda r: r.pop("kinesis")), "record 1 has no 'kinesis' field"),
        (with_second_record(lambda r: r.pop("eventID")), "record 1: 'eventID' must be"),
        (with_second_record(lambda r: r.__setitem__("eventID", ":2")), "record 1: 'eventID'"),
        (with_second_record(lambda r: r.__setitem__("kinesis", [])), "'kinesis' is list"),
        (
            with_second_record(without("data")),
            "record 1 (shardId-000000000003:2): 'kinesis.data' is missing",
        ),
        (with_second_record(setting("data", None)), "'kinesis.data' is not a string"),
        (with_second_record(without("sequenceNumber")), "'kinesis.sequenceNumber' is missing"),
        (with_second_record(setting("sequenceNumber", "4x9")), "'kinesis.sequenceNumber' must be"),
        (with_second_record(setting("sequenceNumber", " 12")), "'kinesis.sequenceNumber' must be"),
        (with_second_record(setting("sequenceNumber", "-12")), "'kinesis.sequenceNumber' must be"),
        (with_second_record(setting("sequenceNumber", "1_2")), "'kinesis.sequenceNumber' must be"),
        (with_second_record(setting("sequenceNumber", 12)), "'kinesis.sequenceNumber' is not a"),
        (with_second_record(setting("sequenceNumber", "9" * 65)), "up to 64 decimal digits"),
        (with_second_record(without("partitionKey")), "'kinesis.partitionKey' is missing"),
        (
            with_second_record(setting("approximateArrivalTimestamp", "soon")),
            "'kinesis.approximateArrivalTimestamp' is not a finite number",
        ),
        (
            with_second_record(setting("approximateArrivalTimestamp", float("nan"))),
            "'kinesis.approximateArrivalTimestamp' is not a finite number",
        ),
        (
            with_second_record(setting("approximateArrivalTimestamp", True)),
            "'kinesis.approximateArrivalTimestamp' is not a finite number",
        ),
    ],
)
def test_a_malformed_invocation_names_the_record_and_the_field(
    event: dict[str, object], message: str
) -> None:
    with pytest.raises(MalformedEventError) as raised:
        raw_records(event)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_an_empty_data_field_is_a_record_for_the_pipeline_to_judge() -> None:
    records = raw_records(with_second_record(setting("data", "")))
    assert [r.data for r in records][1] == ""
