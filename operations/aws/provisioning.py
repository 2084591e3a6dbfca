"""Creates the AWS resources the processor uses, if missing, and waits until they are usable.

Every function is idempotent: run it against an account that already has the resource and it
changes nothing. Used by the integration tests, the CLI's `provision` command and the demo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from botocore.exceptions import ClientError

from infrastructure.aws.dynamodb_repositories import ASSIGNMENTS_TABLE, EXPERIMENTS_TABLE
from infrastructure.dynamodb_layout import TTL_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeDefinitionTypeDef, KeySchemaElementTypeDef
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType
    from mypy_boto3_sqs import SQSClient

DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600
WAIT_DELAY_SECONDS = 2
WAIT_ATTEMPTS = 90


@dataclass(frozen=True, slots=True)
class ResourceNames:
    aggregation_table: str
    archive_bucket: str
    dead_letter_queue: str
    stream: str
    assignments_table: str = ASSIGNMENTS_TABLE
    experiments_table: str = EXPERIMENTS_TABLE
    stream_shards: int = 1


@dataclass(frozen=True, slots=True)
class ProvisionedResources:
    names: ResourceNames
    dead_letter_queue_url: str
    stream_arn: str


def _string_keys(
    *names: str,
) -> tuple[list[KeySchemaElementTypeDef], list[AttributeDefinitionTypeDef]]:
    schema: list[KeySchemaElementTypeDef] = [
        {"AttributeName": name, "KeyType": "HASH" if index == 0 else "RANGE"}
        for index, name in enumerate(names)
    ]
    definitions: list[AttributeDefinitionTypeDef] = [
        {"AttributeName": name, "AttributeType": "S"} for name in names
    ]
    return schema, definitions


def ensure_table(client: DynamoDBClient, table_name: str, *key_names: str) -> None:
    """An on-demand table with string keys (partition key first, then the sort key if any)."""
    schema, definitions = _string_keys(*key_names)
    try:
        client.create_table(
            TableName=table_name,
            KeySchema=schema,
            AttributeDefinitions=definitions,
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
    client.get_waiter("table_exists").wait(
        TableName=table_name,
        WaiterConfig={"Delay": WAIT_DELAY_SECONDS, "MaxAttempts": WAIT_ATTEMPTS},
    )


def ensure_aggregation_table(client: DynamoDBClient, table_name: str) -> None:
    """Counters and unique-user markers (docs/storage.md); markers expire via TTL."""
    ensure_table(client, table_name, "partition_key", "sort_key")
    described = client.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    if described.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        return
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    )


def ensure_assignments_table(client: DynamoDBClient, table_name: str = ASSIGNMENTS_TABLE) -> None:
    ensure_table(client, table_name, "user_id")


def ensure_experiments_table(client: DynamoDBClient, table_name: str = EXPERIMENTS_TABLE) -> None:
    ensure_table(client, table_name, "experiment_id")


def ensure_archive_bucket(client: S3Client, bucket: str, region: str) -> None:
    try:
        if region == "us-east-1":
            # us-east-1 is the default location and rejects being named as a constraint.
            client.create_bucket(Bucket=bucket)
        else:
            client.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={
                    "LocationConstraint": cast("BucketLocationConstraintType", region)
                },
            )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise
    client.get_waiter("bucket_exists").wait(
        Bucket=bucket, WaiterConfig={"Delay": WAIT_DELAY_SECONDS, "MaxAttempts": WAIT_ATTEMPTS}
    )


def ensure_dead_letter_queue(client: SQSClient, queue_name: str) -> str:
    """The queue's URL. CreateQueue returns the existing queue when its attributes match."""
    response = client.create_queue(
        QueueName=queue_name,
        Attributes={"MessageRetentionPeriod": str(DEAD_LETTER_RETENTION_SECONDS)},
    )
    return response["QueueUrl"]


def ensure_stream(client: KinesisClient, stream_name: str, shard_count: int = 1) -> str:
    """The stream's ARN. An existing stream keeps its shard count."""
    try:
        client.create_stream(StreamName=stream_name, ShardCount=shard_count)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
    client.get_waiter("stream_exists").wait(
        StreamName=stream_name,
        WaiterConfig={"Delay": WAIT_DELAY_SECONDS, "MaxAttempts": WAIT_ATTEMPTS},
    )
    summary = client.describe_stream_summary(StreamName=stream_name)
    return summary["StreamDescriptionSummary"]["StreamARN"]


def provision_all(
    names: ResourceNames,
    dynamodb: DynamoDBClient,
    s3: S3Client,
    sqs: SQSClient,
    kinesis: KinesisClient,
    region: str,
) -> ProvisionedResources:
    ensure_aggregation_table(dynamodb, names.aggregation_table)
    ensure_assignments_table(dynamodb, names.assignments_table)
    ensure_experiments_table(dynamodb, names.experiments_table)
    ensure_archive_bucket(s3, names.archive_bucket, region)
    queue_url = ensure_dead_letter_queue(sqs, names.dead_letter_queue)
    stream_arn = ensure_stream(kinesis, names.stream, names.stream_shards)
    return ProvisionedResources(names, queue_url, stream_arn)
