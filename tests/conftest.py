"""Shared fixtures: a moto server over real HTTP on 127.0.0.1, and clients pointed at it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import boto3
import pytest
from hypothesis import settings
from mypy_boto3_dynamodb import DynamoDBClient
from mypy_boto3_kinesis import KinesisClient
from mypy_boto3_s3 import S3Client
from mypy_boto3_sqs import SQSClient

from operations.local_aws import LocalAws

# No time limit per example: `make test` runs four workers on two cores shared with other runs,
# where hypothesis's default 200 ms deadline failed a statistics test that takes 3 ms idle. What
# the property tests check is their outcome, not the machine's speed.
settings.register_profile("shared-machine", deadline=None)
settings.load_profile("shared-machine")

REGION = "eu-west-1"


@pytest.fixture(scope="session", autouse=True)
def _no_real_aws_credentials() -> None:
    """Tests never reach AWS: fake credentials, a fixed region, no shared config files."""
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    os.environ["AWS_SESSION_TOKEN"] = "testing"
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_ENDPOINT_URL", None)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[LocalAws]:
    server = LocalAws.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def endpoint_url(moto_server: LocalAws) -> str:
    return moto_server.endpoint_url


@pytest.fixture
def unique_name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def dynamodb_client(endpoint_url: str) -> DynamoDBClient:
    return boto3.client("dynamodb", endpoint_url=endpoint_url, region_name=REGION)


@pytest.fixture
def s3_client(endpoint_url: str) -> S3Client:
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=REGION)


@pytest.fixture
def sqs_client(endpoint_url: str) -> SQSClient:
    return boto3.client("sqs", endpoint_url=endpoint_url, region_name=REGION)


@pytest.fixture
def kinesis_client(endpoint_url: str) -> KinesisClient:
    return boto3.client("kinesis", endpoint_url=endpoint_url, region_name=REGION)
