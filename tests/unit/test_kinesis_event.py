from __future__ import annotations

import base64

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
