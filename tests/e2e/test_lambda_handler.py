from __future__ import annotations

import gzip
import json
import warnings
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from mypy_boto3_dynamodb import DynamoDBClient
from mypy_boto3_kinesis import KinesisClient
from mypy_boto3_s3 import S3Client
from mypy_boto3_sqs import SQSClient

from domain.experiments import Assignment, Experiment, ExperimentStatus, Variant
from domain.partitions import hour_partition
from domain.time import DAY_LABEL_FORMAT
from entrypoints.lambda_handler import handler
from operations.aws.reference_data import DynamoDbReferenceDataWriter
from tests.counter_items import summed_counters
from tests.e2e.conftest import Deployment
from tests.lambda_support import fresh_context

EVENT_TIME = datetime.now(UTC).replace(minute=5, second=0, microsecond=0) - timedelta(hours=1)


def seed(client: DynamoDBClient, deployment: Deployment) -> None:
    writer = DynamoDbReferenceDataWriter(
        client, deployment.names.assignments_table, deployment.names.experiments_table
    )
    writer.write_experiments(
        [
            Experiment(
                experiment_id="checkout-button",
                name="Checkout button colour",
                status=ExperimentStatus.RUNNING,
                variants=(Variant(variant_id="control"), Variant(variant_id="green")),
            )
        ]
    )
    writer.write_assignments(
        [
            Assignment(
                user_id=user,
                experiment_id="checkout-button",
                variant_id=variant,
                assigned_at=EVENT_TIME - timedelta(days=1),
            )
            for user, variant in (("alice", "control"), ("bob", "green"), ("carol", "green"))
        ]
    )


def event(event_id: str, user_id: str, event_type: str, **extra: object) -> bytes:
    body: dict[str, object] = {
        "event_id": event_id,
        "event_type": event_type,
        "user_id": user_id,
        "timestamp": EVENT_TIME.isoformat(),
        **extra,
    }
    return json.dumps(body).encode()


def lambda_event_from_stream(kinesis: KinesisClient, deployment: Deployment) -> dict[str, Any]:
    """Read the stream back and shape the records exactly as Lambda delivers them."""
    stream = deployment.names.stream
    shard_id = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator, Limit=1000)["Records"]
    import base64

    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r["PartitionKey"],
                    "sequenceNumber": r["SequenceNumber"],
                    "data": base64.b64encode(r["Data"]).decode(),
                    "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp(),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard_id}:{r['SequenceNumber']}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/event-processor",
                "awsRegion": "eu-west-1",
                "eventSourceARN": deployment.resources.stream_arn,
            }
            for r in records
        ]
    }


def test_a_kinesis_batch_is_counted_archived_and_dead_lettered_end_to_end(
    deployment: Deployment,
    dynamodb_client: DynamoDBClient,
    kinesis_client: KinesisClient,
    s3_client: S3Client,
    sqs_client: SQSClient,
) -> None:
    seed(dynamodb_client, deployment)
    payloads = [
        event("e1", "alice", "exposure"),
        event("e2", "bob", "exposure"),
        event("e3", "bob", "purchase", value=12.5),
        event("e4", "carol", "purchase", value=7.25, properties={"coupon": "ÉTÉ-☀"}),
        event("e4", "carol", "purchase", value=7.25, properties={"coupon": "ÉTÉ-☀"}),
        b'{"event_id": "broken"',
        event("e5", "dave", "click"),
    ]
    kinesis_client.put_records(
        StreamName=deployment.names.stream,
        Records=[{"Data": p, "PartitionKey": f"pk-{i}"} for i, p in enumerate(payloads)],
    )
    lambda_event = lambda_event_from_stream(kinesis_client, deployment)

    response = handler(lambda_event, fresh_context())

    assert response == {"batchItemFailures": []}
    day = EVENT_TIME.strftime(DAY_LABEL_FORMAT)
    counters = summed_counters(
        dynamodb_client, deployment.names.aggregation_table, "checkout-button", f"DAY#{day}"
    )
    assert counters == {
        f"DAY#{day}#control#exposure": (1, Decimal(0)),
        f"DAY#{day}#green#exposure": (1, Decimal(0)),
        f"DAY#{day}#green#purchase": (2, Decimal("19.75")),
    }

    objects = s3_client.list_objects_v2(Bucket=deployment.names.archive_bucket)["Contents"]
    [archived] = objects
    hour = hour_partition(EVENT_TIME)
    assert archived["Key"].startswith(f"events/{hour}")
    body = s3_client.get_object(Bucket=deployment.names.archive_bucket, Key=archived["Key"])
    assert body["ContentEncoding"] == "gzip"
    lines = [json.loads(line) for line in gzip.decompress(body["Body"].read()).splitlines()]
    assert [line["event_id"] for line in lines] == ["e1", "e2", "e3", "e4", "e5"]
    assert lines[3]["properties"] == {"coupon": "ÉTÉ-☀"}
    assert lines[4]["_pipeline"]["attributions"] == []

    messages = sqs_client.receive_message(
        QueueUrl=deployment.resources.dead_letter_queue_url, MaxNumberOfMessages=10
    )["Messages"]
    [letter] = [json.loads(m["Body"]) for m in messages]
    assert letter["reason"] == "invalid_json"
    assert letter["stage"] == "parse"
    assert (
        letter["kinesis"]["sequence_number"]
        == lambda_event["Records"][5]["kinesis"]["sequenceNumber"]
    )


def test_an_invocation_without_time_left_asks_for_the_whole_batch_again(
    deployment: Deployment, dynamodb_client: DynamoDBClient, kinesis_client: KinesisClient
) -> None:
    seed(dynamodb_client, deployment)
    kinesis_client.put_records(
        StreamName=deployment.names.stream,
        Records=[{"Data": event(f"t{i}", "alice", "click"), "PartitionKey": "a"} for i in range(3)],
    )
    lambda_event = lambda_event_from_stream(kinesis_client, deployment)

    response = handler(lambda_event, fresh_context(timeout_ms=0))

    expected = [r["kinesis"]["sequenceNumber"] for r in lambda_event["Records"]]
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == expected


def test_a_missing_table_fails_the_invocation_loudly(
    deployment: Deployment,
    dynamodb_client: DynamoDBClient,
    kinesis_client: KinesisClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed(dynamodb_client, deployment)
    monkeypatch.setenv("DYNAMODB_TABLE", "no-such-table")
    kinesis_client.put_records(
        StreamName=deployment.names.stream,
        Records=[{"Data": event("m1", "alice", "click"), "PartitionKey": "a"}],
    )
    from domain.errors import InfrastructureConfigurationError

    with pytest.raises(InfrastructureConfigurationError):
        handler(lambda_event_from_stream(kinesis_client, deployment), fresh_context())


def test_an_event_that_is_not_from_kinesis_fails_the_invocation_with_a_named_field(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from entrypoints.kinesis_event import MalformedEventError

    sqs_shaped = {"Records": [{"messageId": "m-1", "body": "{}", "eventSource": "aws:sqs"}]}

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Powertools' "No application metrics to publish"
        with pytest.raises(MalformedEventError, match="record 0 has no 'kinesis' field"):
            handler(sqs_shaped, fresh_context())

    [emf] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    assert emf["MalformedInvocations"] == [1.0]
    [logged] = [r for r in caplog.records if r.getMessage() == "malformed invocation event"]
    assert logged.levelname == "ERROR"
    assert "aws:sqs" in logged.__dict__["problem"]


def test_the_metrics_name_their_stack_and_dead_letters_their_reason(
    deployment: Deployment,
    dynamodb_client: DynamoDBClient,
    kinesis_client: KinesisClient,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from entrypoints import lambda_handler

    monkeypatch.setenv("METRICS_STACK_NAME", "experimently-staging")
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    lambda_handler.container.cache_clear()
    seed(dynamodb_client, deployment)
    kinesis_client.put_records(
        StreamName=deployment.names.stream,
        Records=[
            {"Data": event("e1", "alice", "exposure"), "PartitionKey": "a"},
            {"Data": b'{"event_id": "broken"', "PartitionKey": "b"},
        ],
    )
    capsys.readouterr()
    try:
        handler(lambda_event_from_stream(kinesis_client, deployment), fresh_context())
    finally:
        lambda_handler.metrics.clear_default_dimensions()

    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf, "no metrics published"
    assert all(line.get("stack") == "experimently-staging" for line in emf), emf
    [by_reason] = [line for line in emf if "reason" in line]
    assert (by_reason["reason"], by_reason["DeadLetters"]) == ("invalid_json", [1.0])
