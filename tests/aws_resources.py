"""Buckets and queues for adapter tests, created directly on the moto server."""

from __future__ import annotations

from mypy_boto3_s3 import S3Client
from mypy_boto3_sqs import SQSClient


def create_bucket(s3: S3Client, name: str) -> str:
    # The tests' region (tests.conftest.REGION), spelled as the literal the stubs require.
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return name


def create_queue(sqs: SQSClient, name: str) -> str:
    return sqs.create_queue(QueueName=name)["QueueUrl"]
