"""The handler's world: resources provisioned at the moto server and the environment naming them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from mypy_boto3_dynamodb import DynamoDBClient
from mypy_boto3_kinesis import KinesisClient
from mypy_boto3_s3 import S3Client
from mypy_boto3_sqs import SQSClient

from entrypoints import lambda_handler
from operations.aws.provisioning import ProvisionedResources, ResourceNames, provision_all
from tests.conftest import REGION
from tests.faults.aws_world import AdminClients, service_environment


@dataclass(frozen=True)
class Deployment:
    resources: ProvisionedResources

    @property
    def names(self) -> ResourceNames:
        return self.resources.names


def point_the_service_at(
    resources: ProvisionedResources, endpoint_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment the Lambda would be deployed with, naming these resources."""
    for variable, value in service_environment(resources, endpoint_url).items():
        monkeypatch.setenv(variable, value)


@pytest.fixture
def admin(
    dynamodb_client: DynamoDBClient,
    s3_client: S3Client,
    sqs_client: SQSClient,
    kinesis_client: KinesisClient,
) -> AdminClients:
    """Fault-free clients straight to moto."""
    return AdminClients(dynamodb_client, s3_client, sqs_client, kinesis_client)


@pytest.fixture
def deployment(
    unique_name: str,
    endpoint_url: str,
    dynamodb_client: DynamoDBClient,
    s3_client: S3Client,
    sqs_client: SQSClient,
    kinesis_client: KinesisClient,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Deployment]:
    names = ResourceNames(
        aggregation_table=f"{unique_name}-aggregations",
        archive_bucket=f"{unique_name}-archive",
        dead_letter_queue=f"{unique_name}-dlq",
        stream=f"{unique_name}-events",
        assignments_table=f"{unique_name}-assignments",
        experiments_table=f"{unique_name}-experiments",
    )
    resources = provision_all(names, dynamodb_client, s3_client, sqs_client, kinesis_client, REGION)
    point_the_service_at(resources, endpoint_url, monkeypatch)
    lambda_handler.container.cache_clear()
    yield Deployment(resources)
    lambda_handler.container.cache_clear()
