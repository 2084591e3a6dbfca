"""`invoke`: the Lambda handler once, on a Kinesis event file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from operations.cli.aws_access import aws_environment, run_against_aws
from operations.cli.console import EXIT_FAILURES, EXIT_USAGE, fail
from operations.cli.handler_output import lambda_output_to_stderr
from operations.cli.options import EndpointUrl
from operations.event_source_emulator import lambda_context


def invoke(
    event_file: Annotated[
        Path,
        typer.Argument(
            metavar="EVENT.json",
            help="A Kinesis event as Lambda delivers it ({'Records': [...]}); '-' reads stdin.",
        ),
    ],
    timeout: Annotated[
        float, typer.Option(min=1, help="The function timeout the context counts down from (s).")
    ] = 60.0,
    endpoint_url: EndpointUrl = None,
) -> None:
    """Run the Lambda handler once on a Kinesis event file (as `sam local invoke` would) and
    print its response. Exit code 1 when the response reports failed records."""
    from entrypoints import lambda_handler
    from entrypoints.kinesis_event import MalformedEventError, raw_records
    from operations.cli.stream import load_event

    try:
        text = sys.stdin.read() if str(event_file) == "-" else event_file.read_text()
        event = load_event(text)
    except (OSError, ValueError) as error:
        fail(f"cannot use {event_file} as a Kinesis event: {error}", EXIT_USAGE)
    try:
        raw_records(event)  # refused here, before the handler's logs and metrics begin
    except MalformedEventError as error:
        fail(f"{event_file}: {error}", EXIT_USAGE)
    with aws_environment(endpoint_url), lambda_output_to_stderr():
        lambda_handler.container.cache_clear()
        try:
            response = run_against_aws(
                lambda: lambda_handler.handler(event, lambda_context(timeout_seconds=timeout))
            )
        except MalformedEventError as error:
            fail(f"{event_file}: {error}", EXIT_USAGE)
        finally:
            lambda_handler.container.cache_clear()
    sys.stdout.write(json.dumps(response, indent=2) + "\n")
    if response.get("batchItemFailures"):
        raise typer.Exit(EXIT_FAILURES)
