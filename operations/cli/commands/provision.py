"""`provision`: the stream, tables, bucket and queue in an emulator."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from operations.cli.aws_access import (
    aws_environment,
    build_container,
    provision_resources,
    real_account,
    resource_names,
)
from operations.cli.console import EXIT_USAGE, fail, stdout_console
from operations.cli.options import EndpointUrl, StreamName, SummaryFormat
from operations.cli.report_output import OutputFormat
from operations.cli.stream import DEFAULT_QUEUE, DEFAULT_STREAM


def provision(
    stream: StreamName = DEFAULT_STREAM,
    shards: Annotated[int, typer.Option(min=1, max=64, help="Shards of a new stream.")] = 1,
    queue: Annotated[
        str, typer.Option(help="Dead-letter queue name (its URL is printed; export it as DLQ_URL).")
    ] = DEFAULT_QUEUE,
    output: SummaryFormat = OutputFormat.TABLE,
    endpoint_url: EndpointUrl = None,
) -> None:
    """Create the stream, the tables, the bucket and the queue in an emulator if missing
    (idempotent: run it again and nothing changes), and wait until they are usable. In an AWS
    account the stack is deployed from template.yaml instead (`make deploy`)."""

    if real_account(endpoint_url):
        fail(
            "provision creates bare resources for an emulator (give --endpoint-url or "
            "AWS_ENDPOINT_URL); in an AWS account deploy the stack with `make deploy`, whose "
            "template adds encryption, backups, policies and alarms (docs/deployment.md)",
            EXIT_USAGE,
        )

    with aws_environment(endpoint_url):
        container = build_container()
        settings = container.settings()
        names = resource_names(settings, queue, stream, shards)
        resources = provision_resources(container, names)
    described = {
        "stream": names.stream,
        "stream_arn": resources.stream_arn,
        "aggregation_table": names.aggregation_table,
        "assignments_table": names.assignments_table,
        "experiments_table": names.experiments_table,
        "archive_bucket": names.archive_bucket,
        "dead_letter_queue_url": resources.dead_letter_queue_url,
    }
    if output is OutputFormat.JSON:
        sys.stdout.write(json.dumps(described, indent=2) + "\n")
        return
    console = stdout_console()
    for name, value in described.items():
        console.print(f"{name:<22} {value}")
    console.print(f"\nexport DLQ_URL={resources.dead_letter_queue_url}")
