"""Provisioning creates what is missing, leaves what exists alone, and can run any number of times."""

from __future__ import annotations

import boto3
from mypy_boto3_dynamodb import DynamoDBClient
from mypy_boto3_kinesis import KinesisClient
from mypy_boto3_s3 import S3Client
from mypy_boto3_sqs import SQSClient

from operations.aws.provisioning import (
    ResourceNames,
    ensure_archive_bucket,
    provision_all,
)
from tests.conftest import REGION


def names_for(unique_name: str) -> ResourceNames:
    return ResourceNames(
        aggregation_table=f"{unique_name}-aggregates",
        archive_bucket=f"{unique_name}-archive",
        dead_letter_queue=f"{unique_name}-dlq",
        stream=f"{unique_name}-events",
        assignments_table=f"{unique_name}-assignments",
        experiments_table=f"{unique_name}-experiments",
        stream_shards=2,
    )


def test_provisioning_creates_every_resource_ready_to_use(
    dynamodb_client: DynamoDBClient,
    s3_client: S3Client,
    sqs_client: SQSClient,
    kinesis_client: KinesisClient,
    unique_name: str,
) -> None:
    names = names_for(unique_name)

    provisioned = provision_all(
        names, dynamodb_client, s3_client, sqs_client, kinesis_client, REGION
    )

    aggregates = dynamodb_client.describe_table(TableName=names.aggregation_table)["Table"]
    assert aggregates["TableStatus"] == "ACTIVE"
    assert aggregates["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {(k["AttributeName"], k["KeyType"]) for k in aggregates["KeySchema"]} == {
        ("partition_key", "HASH"),
        ("sort_key", "RANGE"),
    }
    ttl = dynamodb_client.describe_time_to_live(TableName=names.aggregation_table)
    assert ttl["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED",
        "AttributeName": "expires_at",
    }
    for table, key in (
        (names.assignments_table, "user_id"),
        (names.experiments_table, "experiment_id"),
    ):
        schema = dynamodb_client.describe_table(TableName=table)["Table"]["KeySchema"]
        assert [(k["AttributeName"], k["KeyType"]) for k in schema] == [(key, "HASH")]
    location = s3_client.get_bucket_location(Bucket=names.archive_bucket)
    assert location["LocationConstraint"] == REGION
    assert sqs_client.get_queue_url(QueueName=names.dead_letter_queue)["QueueUrl"] == (
        provisioned.dead_letter_queue_url
    )
    stream = kinesis_client.describe_stream_summary(StreamName=names.stream)[
        "StreamDescriptionSummary"
    ]
    assert (stream["StreamStatus"], stream["OpenShardCount"]) == ("ACTIVE", 2)
    assert stream["StreamARN"] == provisioned.stream_arn


def test_provisioning_twice_changes_nothing(
    dynamodb_client: DynamoDBClient,
    s3_client: S3Client,
    sqs_client: SQSClient,
    kinesis_client: KinesisClient,
    unique_name: str,
) -> None:
    names = names_for(unique_name)
    first = provision_all(names, dynamodb_client, s3_client, sqs_client, kinesis_client, REGION)
    dynamodb_client.put_item(
        TableName=names.aggregation_table,
        Item={"partition_key": {"S": "EXP#kept"}, "sort_key": {"S": "DAY#2026-11-20#a#click"}},
    )
    s3_client.put_object(Bucket=names.archive_bucket, Key="kept", Body=b"x")

    second = provision_all(names, dynamodb_client, s3_client, sqs_client, kinesis_client, REGION)

    assert second == first
    assert dynamodb_client.scan(TableName=names.aggregation_table)["Count"] == 1
    assert s3_client.get_object(Bucket=names.archive_bucket, Key="kept")["Body"].read() == b"x"


def test_a_bucket_in_us_east_1_is_created_without_a_location_constraint(
    endpoint_url: str, unique_name: str
) -> None:
    s3: S3Client = boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1")

    ensure_archive_bucket(s3, unique_name, "us-east-1")
    ensure_archive_bucket(s3, unique_name, "us-east-1")

    assert s3.get_bucket_location(Bucket=unique_name).get("LocationConstraint") in (None, "")
