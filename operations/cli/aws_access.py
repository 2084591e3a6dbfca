"""How a command reaches AWS: the endpoint, the operators' container built from the environment,
and back-end failures turned into one clear message and an exit code."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from domain.errors import InfrastructureConfigurationError, PipelineError
from infrastructure.aws.errors import translate
from operations.cli.console import EXIT_USAGE, fail
from operations.cli.stream import environment

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

    from entrypoints.settings import Settings
    from operations.aws.provisioning import ProvisionedResources, ResourceNames
    from operations.container import OperationsContainer

NO_REGION = "no AWS region configured: set AWS_DEFAULT_REGION or AWS_REGION"
NO_CREDENTIALS = (
    "no AWS credentials found: configure a profile (AWS_PROFILE) or "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (an emulator takes any)"
)
_AWS_HOSTS = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")

T = TypeVar("T")


@contextmanager
def aws_environment(endpoint_url: str | None) -> Iterator[None]:
    """Point every boto3 client built inside at `endpoint_url` (boto3 reads AWS_ENDPOINT_URL),
    the Lambda handler's own container included; the environment is restored afterwards."""
    if endpoint_url is None:
        yield
        return
    with environment({"AWS_ENDPOINT_URL": endpoint_url}):
        yield


def build_container() -> OperationsContainer:
    """The composition root, configured from the environment (built per command)."""
    from pydantic import ValidationError

    from operations.container import OperationsContainer

    container = OperationsContainer()
    try:
        container.settings()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in error.errors()
        )
        fail(f"bad configuration in the environment: {problems}", EXIT_USAGE)
    if not container.session().region_name:
        fail(NO_REGION, EXIT_USAGE)  # before any client is built: boto3 would raise there
    return container


def run_against_aws(work: Callable[[], T]) -> T:
    """Run `work`, turning a back-end failure into a clear message and exit code 1, and a
    missing region or missing credentials (configuration) into exit code 2."""
    try:
        try:
            return work()
        except (BotoCoreError, ClientError) as error:
            raise translate(error, "AWS") from error
    except PipelineError as error:
        cause = error.__cause__
        if isinstance(cause, NoRegionError):
            fail(NO_REGION, EXIT_USAGE)
        if isinstance(cause, NoCredentialsError):
            fail(NO_CREDENTIALS, EXIT_USAGE)
        if isinstance(error, InfrastructureConfigurationError):
            fail(f"{error} (is the endpoint right, and the resources provisioned?)")
        fail(str(error))


def kinesis_client(container: OperationsContainer) -> KinesisClient:
    client: KinesisClient = container.kinesis_client()
    return client


def region_of(container: OperationsContainer) -> str:
    name = container.session().region_name
    if not name:
        fail(NO_REGION, EXIT_USAGE)
    return str(name)


def real_account(endpoint_url: str | None) -> bool:
    """Whether the command would reach AWS itself: no emulator endpoint is configured."""
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return True
    host = urlsplit(endpoint).hostname or ""
    return host.endswith(_AWS_HOSTS)


def resource_names(settings: Settings, queue: str, stream: str, shards: int = 1) -> ResourceNames:
    """The resources the configuration names, plus the queue and stream it leaves to the caller."""
    from operations.aws.provisioning import ResourceNames

    return ResourceNames(
        aggregation_table=settings.dynamodb_table,
        archive_bucket=settings.s3_bucket,
        dead_letter_queue=queue,
        stream=stream,
        assignments_table=settings.assignments_table,
        experiments_table=settings.experiments_table,
        stream_shards=shards,
    )


def provision_resources(
    container: OperationsContainer, names: ResourceNames
) -> ProvisionedResources:
    """The named resources made (or found) in the account the container reaches."""
    from operations.aws.provisioning import provision_all

    return run_against_aws(
        lambda: provision_all(
            names,
            container.dynamodb_client(),
            container.s3_client(),
            container.sqs_client(),
            kinesis_client(container),
            region_of(container),
        )
    )
